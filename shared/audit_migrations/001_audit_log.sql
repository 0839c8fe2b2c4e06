-- The audit log: one row per recorded action, each hash-chained to the one before it.
-- Rows are only ever inserted; the triggers below refuse every other change, so rewriting
-- history needs the table's owner or a superuser to disable them first, which the chain reveals.
CREATE TABLE audit.log (
    seq bigint PRIMARY KEY CHECK (seq > 0),
    at timestamptz NOT NULL,
    actor text NOT NULL,
    action text NOT NULL,
    tenancy_id uuid,
    trace_id text,
    detail jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(detail) = 'object'),
    prev_hash text NOT NULL CHECK (prev_hash ~ '^[0-9a-f]{64}$'),
    hash text NOT NULL CHECK (hash ~ '^[0-9a-f]{64}$')
);
-- `tenancy audit list --tenancy` pages through one tenancy's entries in order.
CREATE INDEX log_tenancy ON audit.log (tenancy_id, seq) WHERE tenancy_id IS NOT NULL;

CREATE FUNCTION audit.refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only'
        USING HINT = 'audit entries are never changed or removed; append a correcting entry';
END
$$;

CREATE TRIGGER log_append_only
    BEFORE UPDATE OR DELETE ON audit.log
    FOR EACH ROW EXECUTE FUNCTION audit.refuse_change();
-- TRUNCATE skips row triggers, so it needs a statement trigger of its own.
CREATE TRIGGER log_no_truncate
    BEFORE TRUNCATE ON audit.log
    FOR EACH STATEMENT EXECUTE FUNCTION audit.refuse_change();
