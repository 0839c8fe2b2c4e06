-- A plan scheduled ahead of its vesting day (issue 18): the hosts and shares the operator chose
-- and who accepts the novated agreements, so that the onboarding worker can carry out a day
-- with a split itself at the start of vesting day. One per day: scheduling again replaces it,
-- and cancelling removes it (the audit trail keeps each). It stays once the day is applied.
CREATE TABLE onboarding.reorganisation_arrangements (
    vesting date PRIMARY KEY,
    hosts jsonb NOT NULL,
    shares jsonb NOT NULL,
    accepted_by text NOT NULL,
    accepted_role text NOT NULL,
    arranged_by text NOT NULL,
    arranged_at timestamptz NOT NULL DEFAULT now()
);
