-- API tokens: only a hash is kept; the token itself is shown once, when it is made.
CREATE TABLE api.tokens (
    id uuid PRIMARY KEY,
    token_sha256 text NOT NULL UNIQUE,
    role text NOT NULL CHECK (role IN ('operator', 'council-admin', 'finance', 'auditor')),
    council text,
    service text,
    label text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz,
    CHECK (role <> 'council-admin' OR council IS NOT NULL)
);
