-- Courier message store, PostgreSQL. Times are BIGINT milliseconds since the Unix epoch, as in
-- the SQLite schema, so both backends share their semantics and their code for times.

CREATE TABLE messages (
    id              TEXT   PRIMARY KEY,
    -- Insertion order: stable newest-first listing and page tokens.
    seq             BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
    status          TEXT   NOT NULL
        CHECK (status IN ('queued', 'processing', 'sent', 'abandoned', 'cancelled')),
    recipient       TEXT   NOT NULL,
    template_type   TEXT   NOT NULL,
    -- The Message as JSON text (serde_json): TEXT rather than JSONB keeps it byte for byte,
    -- key order included.
    message         TEXT   NOT NULL,
    send_count      BIGINT NOT NULL DEFAULT 0,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    lease_owner     TEXT,
    lease_until     BIGINT
);

-- Claims: queued and due, or processing with an expired lease.
CREATE INDEX messages_due ON messages (status, next_attempt_at);
-- Listing by recipient, newest first.
CREATE INDEX messages_recipient ON messages (recipient, seq);
-- Retention: finished messages by age.
CREATE INDEX messages_finished ON messages (status, updated_at);

CREATE TABLE attempts (
    message_id TEXT   NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    number     BIGINT NOT NULL,
    -- The Attempt as JSON text (serde_json).
    record     TEXT   NOT NULL,
    PRIMARY KEY (message_id, number)
);
