-- Retiring a reorganised predecessor (issue 18): once its move is verified, its frozen data are
-- exported as offboarding's are and then dropped with its role. Beside its move: where that
-- stands, and the export's archive, checksum and row counts.
ALTER TABLE onboarding.reorganisation_moves
    ADD COLUMN retirement text,
    ADD COLUMN retirement_reason text,
    ADD COLUMN retirement_requested_at timestamptz,
    ADD COLUMN retired_at timestamptz,
    ADD COLUMN archive text,
    ADD COLUMN archive_sha256 text,
    ADD COLUMN exported jsonb;
