-- A split's inter-authority agreement (issue 18): on the host's tenancy, each council's exact
-- share of its invoices, from the instant the agreement starts (the predecessor's close);
-- on each invoice, the parts of its total those shares come to.
ALTER TABLE metering.tenancies ADD COLUMN cost_shares jsonb NOT NULL DEFAULT '[]';
ALTER TABLE metering.tenancies ADD COLUMN shared_from timestamptz;
ALTER TABLE metering.invoices ADD COLUMN parties jsonb NOT NULL DEFAULT '[]';
