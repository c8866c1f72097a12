-- Courier message store, SQLite. Times are integer milliseconds since the Unix epoch.

CREATE TABLE messages (
    -- Insertion order: stable newest-first listing and page tokens. AUTOINCREMENT never reuses a
    -- value, even after the newest rows are deleted.
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    id              TEXT    NOT NULL UNIQUE,
    status          TEXT    NOT NULL
        CHECK (status IN ('queued', 'processing', 'sent', 'abandoned', 'cancelled')),
    recipient       TEXT    NOT NULL,
    template_type   TEXT    NOT NULL,
    -- The Message as JSON (serde_json), its id included.
    message         TEXT    NOT NULL,
    send_count      INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    lease_owner     TEXT,
    lease_until     INTEGER
);

-- Claims: queued and due, or processing with an expired lease.
CREATE INDEX messages_due ON messages (status, next_attempt_at);
-- Listing by recipient, newest first.
CREATE INDEX messages_recipient ON messages (recipient, seq);
-- Retention: finished messages by age.
CREATE INDEX messages_finished ON messages (status, updated_at);

CREATE TABLE attempts (
    message_id TEXT    NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    number     INTEGER NOT NULL,
    -- The Attempt as JSON (serde_json).
    record     TEXT    NOT NULL,
    PRIMARY KEY (message_id, number)
);
