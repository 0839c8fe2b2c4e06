-- Council reorganisation (issue 18): a predecessor's meters close at the instant its successor's
-- billing begins (closed_at), and its usage from then on counts for the successor's tenancy.
ALTER TABLE metering.tenancies ADD COLUMN reorganised_into uuid;
-- On a split's host: the councils it serves, whose shares of its costs the agreement settles.
ALTER TABLE metering.tenancies ADD COLUMN shared_with text[] NOT NULL DEFAULT '{}';
