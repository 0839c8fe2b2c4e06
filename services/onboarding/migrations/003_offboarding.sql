-- Offboarding: when it was asked for and finished, and where the council's export archive is.
ALTER TABLE onboarding.tenancies
    ADD COLUMN offboarding_at timestamptz,
    ADD COLUMN offboarded_at timestamptz,
    ADD COLUMN archive text,
    ADD COLUMN archive_sha256 text;
