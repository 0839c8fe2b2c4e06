-- What each counted event added, beside its id: the counting sums the rows it has just
-- inserted, as the insert returns them, without joining them back to the batch. (Events
-- counted before this column existed have none; their totals are unchanged.)
ALTER TABLE metering.usage_events ADD COLUMN quantity numeric, ADD COLUMN value text;
