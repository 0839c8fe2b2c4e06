-- Usage events received over HTTP (POST /usage), one row per (source, id), with the digest the
-- metering worker computes of the event: the same event sent again is answered as a duplicate
-- and not published again; the same id with other content is refused.
CREATE TABLE api.usage_received (
    source text NOT NULL,
    id text NOT NULL,
    digest text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, id)
);
