-- The token of a shared service's software: it may fetch its tenancies' credentials and report
-- their usage, and it is always narrowed to exactly one service.
ALTER TABLE api.tokens DROP CONSTRAINT tokens_role_check;
ALTER TABLE api.tokens ADD CONSTRAINT tokens_role_check
    CHECK (role IN ('operator', 'council-admin', 'finance', 'auditor', 'service'));
ALTER TABLE api.tokens ADD CONSTRAINT tokens_service_scope
    CHECK (role <> 'service' OR (service IS NOT NULL AND council IS NULL));
