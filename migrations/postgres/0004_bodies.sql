-- Small hot rows. Every claim and every record writes a new version of a messages row (status
-- and due time are indexed, so no update is HOT), and each copied the message, ~1.2 KB and
-- never changed, into the heap and the WAL. The message moves to a table written once; the
-- dropped column's bytes in existing rows go as those rows are rewritten or deleted.
CREATE TABLE message_bodies (
    id      TEXT  PRIMARY KEY,
    message BYTEA NOT NULL
);
-- Already compressed (see 0003).
ALTER TABLE message_bodies ALTER COLUMN message SET STORAGE EXTERNAL;
INSERT INTO message_bodies (id, message) SELECT id, message FROM messages;
ALTER TABLE messages DROP COLUMN message;
-- The foreign key's per-row check cost every recorded attempt; retention now deletes a
-- message's attempts and body in the statement that deletes the message.
ALTER TABLE attempts DROP CONSTRAINT IF EXISTS attempts_message_id_fkey;
