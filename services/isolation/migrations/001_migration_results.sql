-- One row per tenancy per rollout (`tenancy migrate`): the CLI polls it for its progress bar
-- and result table. Written in the same transaction as the consumed event's inbox claim.
CREATE TABLE isolation.migration_results (
    run_id uuid NOT NULL,
    tenancy_id uuid NOT NULL,
    service_id text NOT NULL,
    ok boolean NOT NULL,
    version integer NOT NULL,
    applied integer[] NOT NULL,
    error text,
    at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, tenancy_id)
);
