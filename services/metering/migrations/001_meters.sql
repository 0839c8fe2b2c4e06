CREATE TABLE metering.meters (
    tenancy_id uuid NOT NULL,
    service_id text NOT NULL,
    meter_key text NOT NULL,
    aggregation text NOT NULL,
    unit text NOT NULL,
    opened_at timestamptz NOT NULL DEFAULT now(),
    closed_at timestamptz,
    PRIMARY KEY (tenancy_id, meter_key)
);
