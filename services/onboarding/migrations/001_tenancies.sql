CREATE TABLE onboarding.services (
    id text PRIMARY KEY,
    name text NOT NULL,
    owner_council text NOT NULL,
    manifest jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE onboarding.tenancies (
    id uuid PRIMARY KEY,
    council_gss text NOT NULL,
    council_name text NOT NULL,
    service_id text NOT NULL,
    state text NOT NULL,
    failed_step text,
    reason text,
    contact jsonb NOT NULL,
    brand jsonb,
    requested_at timestamptz NOT NULL DEFAULT now(),
    registered_at timestamptz,
    active_at timestamptz,
    failed_at timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- A council holds at most one live tenancy in a service.
CREATE UNIQUE INDEX tenancies_one_live
    ON onboarding.tenancies (council_gss, service_id)
    WHERE state NOT IN ('failed', 'offboarded');
CREATE INDEX tenancies_state ON onboarding.tenancies (state, updated_at);

CREATE TABLE onboarding.tenancy_steps (
    tenancy_id uuid NOT NULL REFERENCES onboarding.tenancies (id),
    step text NOT NULL,
    status text NOT NULL,
    detail jsonb NOT NULL DEFAULT '{}',
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenancy_id, step)
);
