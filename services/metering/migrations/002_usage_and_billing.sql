-- The tenancies metering bills: who they are, for invoices, and when their meters closed.
CREATE TABLE metering.tenancies (
    tenancy_id uuid PRIMARY KEY,
    service_id text NOT NULL,
    council_gss text NOT NULL,
    council_name text NOT NULL,
    council_nation text NOT NULL,
    purchase_order text,
    period_kind text NOT NULL DEFAULT 'month' CHECK (period_kind IN ('month', 'financial_year')),
    opened_at timestamptz NOT NULL DEFAULT now(),
    closed_at timestamptz
);
CREATE INDEX tenancies_by_service ON metering.tenancies (service_id);

-- Every usage event counted, by (source, id), written in the same transaction as its quantity:
-- a repeat is recognised, and one with a different payload is refused.
CREATE TABLE metering.usage_events (
    source text NOT NULL,
    id text NOT NULL,
    payload_sha256 text NOT NULL,
    tenancy_id uuid NOT NULL,
    meter_key text NOT NULL,
    month text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, id)
);

-- Running aggregates per tenancy, meter and calendar month; a financial year adds its months.
CREATE TABLE metering.usage_totals (
    tenancy_id uuid NOT NULL,
    meter_key text NOT NULL,
    month text NOT NULL,
    events bigint NOT NULL DEFAULT 0,
    total numeric NOT NULL DEFAULT 0,
    peak numeric,
    PRIMARY KEY (tenancy_id, meter_key, month)
);
CREATE TABLE metering.unique_values (
    tenancy_id uuid NOT NULL,
    meter_key text NOT NULL,
    month text NOT NULL,
    value text NOT NULL,
    PRIMARY KEY (tenancy_id, meter_key, month, value)
);

-- Billing periods frozen by `tenancy billing close`, per service.
CREATE TABLE metering.closed_periods (
    service_id text NOT NULL,
    period text NOT NULL,
    closed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (service_id, period)
);

-- One invoice per tenancy and period; money in integer pence.
CREATE TABLE metering.invoices (
    id uuid PRIMARY KEY,
    tenancy_id uuid NOT NULL,
    service_id text NOT NULL,
    period text NOT NULL,
    council_gss text NOT NULL,
    council_name text NOT NULL,
    purchase_order text,
    lines jsonb NOT NULL,
    total_pence bigint NOT NULL,
    final boolean NOT NULL DEFAULT false,
    issued_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenancy_id, period)
);
CREATE INDEX invoices_by_service ON metering.invoices (service_id, period);

-- What has been billed per tenancy, period and meter (the invoice plus later adjustments), so
-- usage that arrives after a period closed is billed as the difference on the next invoice.
CREATE TABLE metering.billed (
    tenancy_id uuid NOT NULL,
    period text NOT NULL,
    meter_key text NOT NULL,
    quantity numeric NOT NULL,
    amount_pence bigint NOT NULL,
    PRIMARY KEY (tenancy_id, period, meter_key)
);
CREATE TABLE metering.late_usage (
    tenancy_id uuid NOT NULL,
    period text NOT NULL,
    PRIMARY KEY (tenancy_id, period)
);
