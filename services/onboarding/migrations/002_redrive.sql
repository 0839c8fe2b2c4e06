ALTER TABLE onboarding.tenancies ADD COLUMN redrive_attempts integer NOT NULL DEFAULT 0;
