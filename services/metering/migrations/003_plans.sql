-- Each service's manifest as its latest tenancy registered it: the scheduler closes its periods.
CREATE TABLE metering.plans (
    service_id text PRIMARY KEY,
    manifest jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
