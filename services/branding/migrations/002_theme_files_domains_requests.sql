-- Where each version's files were published, relative to the themes folder.
ALTER TABLE branding.brand_versions ADD COLUMN paths jsonb NOT NULL DEFAULT '{}';

-- A custom domain stays pending until its TXT record is seen; the token survives new versions.
CREATE TABLE branding.domains (
    tenancy_id uuid NOT NULL,
    domain text NOT NULL,
    token text NOT NULL,
    status text NOT NULL DEFAULT 'pending verification'
        CHECK (status IN ('pending verification', 'verified')),
    claimed_at timestamptz NOT NULL DEFAULT now(),
    verified_at timestamptz,
    PRIMARY KEY (tenancy_id, domain)
);

-- Changes asked for after go-live, and what became of each, so the one who asked gets an answer.
CREATE TABLE branding.requests (
    id uuid PRIMARY KEY,
    tenancy_id uuid NOT NULL,
    kind text NOT NULL CHECK (kind IN ('change', 'rollback')),
    status text NOT NULL DEFAULT 'requested'
        CHECK (status IN ('requested', 'applied', 'unchanged', 'refused')),
    version integer,
    problems jsonb NOT NULL DEFAULT '[]',
    requested_at timestamptz NOT NULL DEFAULT now(),
    resolved_at timestamptz
);
CREATE INDEX requests_by_tenancy ON branding.requests (tenancy_id, requested_at);
