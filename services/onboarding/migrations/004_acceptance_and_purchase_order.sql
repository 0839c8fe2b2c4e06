-- The agreement accepted on the council's behalf, and its purchase order for invoices; both are
-- needed again when a failed tenancy is retried.
ALTER TABLE onboarding.tenancies
    ADD COLUMN acceptance jsonb,
    ADD COLUMN purchase_order text,
    ADD COLUMN retries integer NOT NULL DEFAULT 0;
