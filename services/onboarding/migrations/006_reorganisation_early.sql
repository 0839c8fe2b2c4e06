-- A plan applied before its vesting day (issue 18) says why: the predecessors' tenancies end and
-- their data move before the councils legally change, so the reason stays beside the plan.
ALTER TABLE onboarding.reorganisations ADD COLUMN applied_early text;
