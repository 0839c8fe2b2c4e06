CREATE TABLE branding.brand_versions (
    tenancy_id uuid NOT NULL,
    version integer NOT NULL CHECK (version >= 1),
    brand jsonb NOT NULL,
    content_hash text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenancy_id, version)
);
CREATE TABLE branding.current_theme (
    tenancy_id uuid PRIMARY KEY,
    version integer NOT NULL,
    FOREIGN KEY (tenancy_id, version) REFERENCES branding.brand_versions (tenancy_id, version)
);
