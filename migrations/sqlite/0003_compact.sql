-- Compact storage. The message column now holds bytes: JSON text as before, or an LZ4 block
-- marked by a first byte 0x01 (see src/store/codec.rs); a TEXT column keeps BLOB values as they
-- are, so existing rows stay readable untouched. SQL cannot read a compressed message, so the
-- effective channel (the list filter's) gets a column of its own. Retention finds finished
-- messages through messages_due: a finished message's next_attempt_at is when it finished.
ALTER TABLE messages ADD COLUMN channel TEXT;
UPDATE messages SET channel =
    COALESCE(NULLIF(json_extract(message, '$.channel'), ''), json_extract(message, '$.message_type'));
DROP INDEX messages_finished;
