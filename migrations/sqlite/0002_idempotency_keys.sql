-- Idempotency keys of POST /messages: one row per (API token, key), written in the transaction
-- that inserts the messages. Times are integer milliseconds since the Unix epoch.
CREATE TABLE idempotency_keys (
    -- A hash of the API token the key was sent with ('' without authentication).
    scope      TEXT    NOT NULL,
    key        TEXT    NOT NULL,
    -- SHA-256 of the request body, to tell a retry from a different request reusing the key.
    body_hash  TEXT    NOT NULL,
    -- The ids the first request got, as a JSON array.
    ids        TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (scope, key)
);

-- Retention: keys by age.
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
