-- HOT claims. A claim used to set status = 'processing', an indexed column, so every claim wrote
-- a new row version with an entry in each of the four indexes. A claim now sets only the lease
-- columns (and updated_at), none indexed, and leaves status 'queued': with room on the page the
-- new version is a heap-only tuple (HOT), no index entry written. A message is reported as
-- `processing` while it is 'queued' with a lease owner: a claim sets the owner, and every record,
-- release or requeue clears it. Stored status 'processing' is no longer written.
UPDATE messages SET status = 'queued' WHERE status = 'processing';
-- Room on each page for a claim's new version (HOT needs it on the same page); new pages only.
ALTER TABLE messages SET (fillfactor = 70);
-- The claim's order, whole: `ORDER BY next_attempt_at, seq LIMIT n` reads the first n entries
-- and sorts nothing. With (status, next_attempt_at) alone, the planner, whose estimates of the
-- due rows are poor (claimed rows stay 'queued'; nothing may ever ANALYZE the table), often
-- read and sorted every due row on each claim: 3 ms per claim with 7,000 due.
CREATE INDEX messages_claim ON messages (status, next_attempt_at, seq);
DROP INDEX messages_due;
