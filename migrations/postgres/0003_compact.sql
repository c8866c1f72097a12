-- Compact storage. The message column holds bytes: JSON text as before, or an LZ4 block marked
-- by a first byte 0x01 (see src/store/codec.rs); existing rows are converted to their UTF-8
-- bytes. Already compressed, it is kept out of PostgreSQL's own compression. SQL cannot read a
-- compressed message, so the effective channel (the list filter's) gets a column of its own.
-- Retention finds finished messages through messages_due: a finished message's
-- next_attempt_at is when it finished.
ALTER TABLE messages ADD COLUMN channel TEXT;
UPDATE messages SET channel =
    COALESCE(NULLIF(message::jsonb ->> 'channel', ''), message::jsonb ->> 'message_type');
DROP INDEX messages_finished;
ALTER TABLE messages ALTER COLUMN message TYPE BYTEA USING convert_to(message, 'UTF8');
ALTER TABLE messages ALTER COLUMN message SET STORAGE EXTERNAL;
