-- Compact storage. The message column now holds bytes: JSON text as before, or an LZ4 block
-- marked by a first byte 0x01 (see src/store/codec.rs); a TEXT column keeps BLOB values as they
-- are, so existing rows stay readable untouched. template_type was written and never read.
-- Retention finds finished messages through messages_due: a finished message's next_attempt_at
-- is when it finished.
ALTER TABLE messages DROP COLUMN template_type;
DROP INDEX messages_finished;
