-- Council reorganisation (issue 18): a plan applied for a vesting day, locked as it was shown,
-- and one move per predecessor tenancy into its successor's.
CREATE TABLE onboarding.reorganisations (
    vesting date PRIMARY KEY,
    hosts jsonb NOT NULL,
    plan jsonb NOT NULL,
    plan_sha256 text NOT NULL,
    applied_by text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE onboarding.reorganisation_moves (
    -- A tenancy moves once: a second plan cannot send it elsewhere.
    source_tenancy_id uuid PRIMARY KEY REFERENCES onboarding.tenancies (id),
    vesting date NOT NULL REFERENCES onboarding.reorganisations (vesting),
    target_tenancy_id uuid NOT NULL,
    kind text NOT NULL,
    service_id text NOT NULL,
    tier text NOT NULL,
    request jsonb NOT NULL,
    status text NOT NULL,
    failed_step text,
    reason text,
    tables jsonb,
    attempts integer NOT NULL DEFAULT 1,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX reorganisation_moves_target ON onboarding.reorganisation_moves (target_tenancy_id);

ALTER TABLE onboarding.tenancies
    ADD COLUMN reorganised_at timestamptz,
    ADD COLUMN reorganised_into uuid;

-- A reorganised tenancy has left its service, like an offboarded one.
DROP INDEX onboarding.tenancies_one_live;
CREATE UNIQUE INDEX tenancies_one_live
    ON onboarding.tenancies (council_gss, service_id)
    WHERE state NOT IN ('failed', 'offboarded', 'reorganised');
