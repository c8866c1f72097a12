//! The embedded SQLite backend of [`MessageStore`]: one database file, zero setup.
//!
//! SQLite allows one writer at a time (and many readers in WAL mode), so writes go through a pool
//! of one connection — in-process writers queue fairly in the pool instead of spinning in SQLite's
//! busy handler — and reads through a small pool of their own. Another process writing the same
//! file is still safe: write transactions start with `BEGIN IMMEDIATE` and wait up to the busy
//! timeout for the lock.

use std::str::FromStr;
use std::time::{Duration, SystemTime};

use super::{
    assemble, claimed, decode_status, duration_millis, empty_page, encode_attempt,
    first_per_message, ids_json, insert_error, list_plan, new_rows, page_of, recorded_due,
    recorded_status, replay, sql_limit, stats_of, to_millis, AttemptUpdate, ClaimRow, Claimed,
    IdempotencyKey, Idempotent, ListFilter, Message, MessageRow, MessageStore, NewRow, Page,
    Requeue, StoreError, StoreStats, StoredMessage, MESSAGE_COLUMNS,
};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

/// How long a statement waits for another connection's (or process's) write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a caller waits for a pooled connection before the store reports itself unavailable.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);
/// Read connections: WAL readers do not block each other or the writer.
const READERS: u32 = 4;

/// A row's effective channel (its own, else its message type), kept in a column at insert: the
/// message itself is compressed.
const SQLITE_CHANNEL: &str = "channel";

/// The SQLite [`MessageStore`].
#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// One connection: SQLite has a single writer anyway.
    writer: SqlitePool,
    /// Readers; the writer pool itself for an in-memory database.
    reader: SqlitePool,
}

/// Rows per multi-row statement: 5 parameters each stays below SQLite's 32,766 limit, and a whole
/// group commit of the API fits in one statement.
const ROWS_PER_STATEMENT: usize = 2048;

/// Multi-row statements of at most this many rows stay in sqlx's per-connection statement cache;
/// larger ones are prepared each time. Every row count is a different statement, and a cache of
/// a hundred large prepared statements holds tens of megabytes.
const CACHED_ROWS: usize = 32;

/// `INSERT` of `rows`, queued and due at `now`.
fn insert_statement(rows: &[NewRow], now: i64) -> sqlx::QueryBuilder<'_, sqlx::Sqlite> {
    let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
        "INSERT INTO messages (id, recipient, template_type, channel, message, status, \
         send_count, created_at, updated_at, next_attempt_at) \
         SELECT column1, column2, column3, column4, column5, 'queued', 0, ",
    );
    // Bound once for all rows, leaving the parameters to the rows.
    q.push_bind(now)
        .push(", ")
        .push_bind(now)
        .push(", ")
        .push_bind(now)
        .push(" FROM (");
    q.push_values(rows, |mut b, row| {
        b.push_bind(&row.id)
            .push_bind(&row.recipient)
            .push_bind(row.template_type)
            .push_bind(&row.channel)
            .push_bind(&row.message);
    });
    // VALUES rows are read in order, so `seq` follows the batch.
    q.push(")");
    q
}

fn db_err(e: sqlx::Error) -> StoreError {
    super::unavailable(e, None)
}

/// Inserts `rows` as queued messages, in statements of up to [`ROWS_PER_STATEMENT`] rows.
async fn insert_rows(
    tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
    rows: &[NewRow],
    now: i64,
) -> Result<(), sqlx::Error> {
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        insert_statement(chunk, now)
            .build()
            .persistent(chunk.len() <= CACHED_ROWS)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

impl SqliteStore {
    /// The error for a failed insert of `rows`: tried again row by row (and rolled back) only to
    /// say which id failed (a duplicate, usually).
    async fn insert_failure(&self, rows: &[NewRow], now: i64, e: sqlx::Error) -> StoreError {
        let diagnose = async {
            let mut tx = self.begin_write().await?;
            for row in rows {
                insert_statement(std::slice::from_ref(row), now)
                    .build()
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| insert_error(e, &row.id))?;
            }
            tx.rollback().await.map_err(db_err)
        };
        match diagnose.await {
            Err(found) => found,
            Ok(()) => db_err(e),
        }
    }

    /// Opens (creating it if missing) the database at `url` — `sqlite://PATH`, `sqlite:PATH`, or
    /// `sqlite::memory:` for a private in-memory database that lives as long as the store — and
    /// runs the embedded migrations.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the file cannot be opened or migrated.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(db_err)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL fsyncs the WAL at every commit. NORMAL (the usual WAL pairing) may lose the last
            // commits on a power loss, but a 202 from the API promises the message is durable.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");

        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(ACQUIRE_TIMEOUT);
        // An in-memory database disappears with its last connection: keep that one forever.
        let writer = if in_memory {
            writer
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
        } else {
            writer
        };
        let writer = writer.connect_with(options.clone()).await.map_err(db_err)?;
        sqlx::migrate!("migrations/sqlite")
            .run(&writer)
            .await
            .map_err(|e| super::unavailable(format!("migrating {url}: {e}"), None))?;

        // In-memory databases use a shared cache, whose table locks are not covered by the busy
        // timeout: one connection does everything there.
        let reader = if in_memory {
            writer.clone()
        } else {
            SqlitePoolOptions::new()
                .max_connections(READERS)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .connect_with(options)
                .await
                .map_err(db_err)?
        };
        Ok(Self { writer, reader })
    }

    /// Closes both pools, waiting for connections in use to be returned.
    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }

    /// Starts a write transaction that holds the write lock from its first statement, so it never
    /// fails half-way because another process wrote first.
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, StoreError> {
        self.writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db_err)
    }
}

#[async_trait::async_trait]
impl MessageStore for SqliteStore {
    async fn insert(&self, messages: &[Message]) -> Result<Vec<String>, StoreError> {
        let rows = new_rows(messages)?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let now = to_millis(SystemTime::now());
        // A batch that fits one statement runs it alone, atomic without an explicit transaction:
        // each statement is a round trip to sqlx's SQLite thread, and those round trips (not
        // SQLite) dominated the cost of small inserts.
        if rows.len() <= ROWS_PER_STATEMENT {
            if let Err(e) = insert_statement(&rows, now)
                .build()
                .persistent(rows.len() <= CACHED_ROWS)
                .execute(&self.writer)
                .await
            {
                return Err(self.insert_failure(&rows, now, e).await);
            }
            return Ok(rows.into_iter().map(|r| r.id).collect());
        }
        let mut tx = self.begin_write().await?;
        if let Err(e) = insert_rows(&mut tx, &rows, now).await {
            tx.rollback().await.map_err(db_err)?;
            return Err(self.insert_failure(&rows, now, e).await);
        }
        tx.commit().await.map_err(db_err)?;
        Ok(rows.into_iter().map(|r| r.id).collect())
    }

    async fn insert_once(
        &self,
        key: &IdempotencyKey,
        messages: &[Message],
    ) -> Result<Idempotent, StoreError> {
        let rows = new_rows(messages)?;
        let now = to_millis(SystemTime::now());
        // The write lock is held from the lookup on: two requests with one key serialize here.
        let mut tx = self.begin_write().await?;
        let found: Option<(String, String)> = sqlx::query_as(
            "SELECT body_hash, ids FROM idempotency_keys WHERE scope = ?1 AND key = ?2",
        )
        .bind(&key.scope)
        .bind(&key.key)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?;
        if let Some((hash, ids)) = found {
            tx.rollback().await.map_err(db_err)?;
            return replay(key, &hash, &ids);
        }
        if let Err(e) = insert_rows(&mut tx, &rows, now).await {
            tx.rollback().await.map_err(db_err)?;
            return Err(self.insert_failure(&rows, now, e).await);
        }
        sqlx::query(
            "INSERT INTO idempotency_keys (scope, key, body_hash, ids, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .bind(&key.scope)
        .bind(&key.key)
        .bind(&key.body_hash)
        .bind(ids_json(&rows))
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(Idempotent::Inserted(
            rows.into_iter().map(|r| r.id).collect(),
        ))
    }

    async fn claim_due(
        &self,
        worker: &str,
        now: SystemTime,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<Claimed>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let now = to_millis(now);
        // One statement: it holds the write lock from the selection to the update, so two
        // claimers (even in two processes) never select the same row.
        let rows: Vec<ClaimRow> = sqlx::query_as(
            // Expired leases and due messages are picked by two index-ordered scans (an OR of
            // the two would read and sort every due row on each claim), then merged.
            "UPDATE messages SET status = 'processing', lease_owner = ?1, lease_until = ?2, \
             updated_at = ?3 \
             WHERE id IN (SELECT id FROM ( \
                 SELECT * FROM (SELECT id, next_attempt_at, seq FROM messages \
                     WHERE status = 'processing' AND lease_until < ?3 \
                     ORDER BY next_attempt_at, seq LIMIT ?4) \
                 UNION ALL \
                 SELECT * FROM (SELECT id, next_attempt_at, seq FROM messages \
                     WHERE status = 'queued' AND next_attempt_at <= ?3 \
                     ORDER BY next_attempt_at, seq LIMIT ?4)) \
                 ORDER BY next_attempt_at, seq LIMIT ?4) \
             RETURNING id, message, send_count, next_attempt_at, seq",
        )
        .bind(worker)
        .bind(now.saturating_add(duration_millis(lease)))
        .bind(now)
        .bind(sql_limit(limit))
        .fetch_all(&self.writer)
        .await
        .map_err(db_err)?;
        Ok(claimed(rows))
    }

    async fn record(&self, updates: &[AttemptUpdate]) -> Result<usize, StoreError> {
        let updates = first_per_message(updates);
        if updates.is_empty() {
            return Ok(0);
        }
        let now = to_millis(SystemTime::now());
        let mut records = std::collections::HashMap::with_capacity(updates.len());
        for u in &updates {
            records.insert(
                u.id.as_str(),
                (u.attempt.number, encode_attempt(&u.id, &u.attempt)?),
            );
        }
        let mut applied = 0;
        let mut tx = self.begin_write().await?;
        for chunk in updates.chunks(ROWS_PER_STATEMENT) {
            // Only messages still leased by the update's worker change; RETURNING says which.
            let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                "UPDATE messages SET status = v.status, send_count = v.n, next_attempt_at = v.due, \
                 updated_at = ",
            );
            q.push_bind(now);
            q.push(
                ", lease_owner = NULL, lease_until = NULL FROM (SELECT column1 AS id, \
                 column2 AS status, column3 AS n, column4 AS due, column5 AS worker FROM (",
            );
            q.push_values(chunk, |mut b, u| {
                b.push_bind(&u.id)
                    .push_bind(recorded_status(u.status))
                    .push_bind(i64::from(u.attempt.number))
                    .push_bind(recorded_due(u, now))
                    .push_bind(&u.worker);
            });
            q.push(
                ")) AS v WHERE messages.id = v.id AND messages.status = 'processing' \
                 AND messages.lease_owner = v.worker RETURNING messages.id",
            );
            let done: Vec<String> = q
                .build_query_scalar()
                .persistent(chunk.len() <= CACHED_ROWS)
                .fetch_all(&mut *tx)
                .await
                .map_err(db_err)?;
            if done.is_empty() {
                continue; // none leased by these workers any more
            }
            applied += done.len();
            // A repeated attempt number replaces the record rather than failing the batch.
            let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                "INSERT INTO attempts (message_id, number, record) ",
            );
            q.push_values(
                done.iter()
                    .filter_map(|id| records.get(id.as_str()).map(|r| (id, r))),
                |mut b, (id, (n, record))| {
                    b.push_bind(id).push_bind(i64::from(*n)).push_bind(record);
                },
            );
            q.push(" ON CONFLICT (message_id, number) DO UPDATE SET record = excluded.record");
            q.build()
                .persistent(done.len() <= CACHED_ROWS)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)?;
        Ok(applied)
    }

    async fn release(&self, worker: &str, ids: &[String]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let now = to_millis(SystemTime::now());
        let mut tx = self.begin_write().await?;
        for id in ids {
            sqlx::query(
                "UPDATE messages SET status = 'queued', next_attempt_at = ?1, updated_at = ?1, \
                 lease_owner = NULL, lease_until = NULL \
                 WHERE id = ?2 AND status = 'processing' AND lease_owner = ?3",
            )
            .bind(now)
            .bind(id)
            .bind(worker)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)
    }

    async fn get(&self, id: &str) -> Result<Option<StoredMessage>, StoreError> {
        let rows: Vec<MessageRow> = sqlx::query_as(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages m \
             LEFT JOIN attempts a ON a.message_id = m.id \
             WHERE m.id = ?1 ORDER BY a.number"
        ))
        .bind(id)
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?;
        Ok(assemble(rows)?.into_iter().next().map(|(_, m)| m))
    }

    async fn list(
        &self,
        filter: &ListFilter,
        page_token: Option<&str>,
        limit: usize,
    ) -> Result<Page, StoreError> {
        let Some((sql, before)) = list_plan(
            filter,
            page_token,
            limit,
            |_| "?".to_owned(),
            SQLITE_CHANNEL,
        ) else {
            return Ok(empty_page());
        };
        let mut query = sqlx::query_as::<_, MessageRow>(&sql);
        if let Some(status) = filter.status {
            query = query.bind(status.as_str());
        }
        if let Some(recipient) = &filter.recipient {
            query = query.bind(recipient.as_str());
        }
        if let Some(template_type) = filter.template_type {
            query = query.bind(template_type.as_str());
        }
        if let Some(channel) = &filter.channel {
            query = query.bind(channel.as_str());
        }
        if let Some(seq) = before {
            query = query.bind(seq);
        }
        let rows = query
            .bind(sql_limit(limit).saturating_add(1))
            .fetch_all(&self.reader)
            .await
            .map_err(db_err)?;
        page_of(rows, limit)
    }

    async fn requeue(&self, id: &str, now: SystemTime) -> Result<Requeue, StoreError> {
        let now = to_millis(now);
        let done = sqlx::query(
            "UPDATE messages SET status = 'queued', next_attempt_at = ?1, updated_at = ?1, \
             lease_owner = NULL, lease_until = NULL \
             WHERE id = ?2 AND status IN ('abandoned', 'cancelled')",
        )
        .bind(now)
        .bind(id)
        .execute(&self.writer)
        .await
        .map_err(db_err)?;
        if done.rows_affected() == 1 {
            return Ok(Requeue::Requeued);
        }
        let status: Option<String> =
            sqlx::query_scalar("SELECT status FROM messages WHERE id = ?1")
                .bind(id)
                .fetch_optional(&self.reader)
                .await
                .map_err(db_err)?;
        match status {
            None => Ok(Requeue::NotFound),
            Some(s) => Ok(Requeue::NotFinal(decode_status(id, &s)?)),
        }
    }

    async fn delete_finished_before(&self, cutoff: SystemTime) -> Result<u64, StoreError> {
        // Attempts go with their message (ON DELETE CASCADE; foreign keys are on). A finished
        // message's next_attempt_at is when it finished (see `recorded_due`).
        let done = sqlx::query(
            "DELETE FROM messages WHERE status IN ('sent', 'cancelled') AND next_attempt_at < ?1",
        )
        .bind(to_millis(cutoff))
        .execute(&self.writer)
        .await
        .map_err(db_err)?;
        sqlx::query("DELETE FROM idempotency_keys WHERE created_at < ?1")
            .bind(to_millis(cutoff))
            .execute(&self.writer)
            .await
            .map_err(db_err)?;
        Ok(done.rows_affected())
    }

    async fn stats(&self) -> Result<StoreStats, StoreError> {
        let counts: Vec<(String, i64)> =
            sqlx::query_as("SELECT status, COUNT(*) FROM messages GROUP BY status")
                .fetch_all(&self.reader)
                .await
                .map_err(db_err)?;
        let oldest: Option<i64> =
            sqlx::query_scalar("SELECT MIN(created_at) FROM messages WHERE status = 'queued'")
                .fetch_one(&self.reader)
                .await
                .map_err(db_err)?;
        stats_of(counts, oldest)
    }

    async fn footprint(&self) -> Result<u64, StoreError> {
        // Checkpointed first, so the pages counted are the database's, not the log's.
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&self.writer)
            .await
            .map_err(db_err)?;
        let (pages, free, size): (i64, i64, i64) = sqlx::query_as(
            "SELECT (SELECT page_count FROM pragma_page_count()), \
             (SELECT freelist_count FROM pragma_freelist_count()), \
             (SELECT page_size FROM pragma_page_size())",
        )
        .fetch_one(&self.writer)
        .await
        .map_err(db_err)?;
        Ok(u64::try_from((pages - free) * size).unwrap_or(0))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.reader)
            .await
            .map_err(db_err)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn rows_stored_as_json_text_read_back_and_new_rows_are_compressed() {
        let store = SqliteStore::open("sqlite::memory:").await.unwrap();
        // A row as the first schema wrote it: the message as JSON text.
        sqlx::query(
            "INSERT INTO messages (id, status, recipient, template_type, message, send_count, \
             created_at, updated_at, next_attempt_at) \
             VALUES ('old', 'queued', 'a@b.c', 'stub', ?1, 0, 0, 0, 0)",
        )
        .bind(r#"{"id":"old","recipient":"a@b.c","template_type":"stub"}"#)
        .execute(&store.writer)
        .await
        .unwrap();
        let old = store.get("old").await.unwrap().unwrap();
        assert_eq!(old.message.recipient, "a@b.c");
        let claimed = store
            .claim_due("w", SystemTime::now(), 10, Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(claimed.len(), 1);
        assert_eq!(claimed[0].message.recipient, "a@b.c");

        let sample = crate::message::samples::message(
            crate::message::TemplateType::RecoveryCodeValid,
            crate::message::MessageType::Email,
        )
        .unwrap();
        let json_len = serde_json::to_string(&sample).unwrap().len();
        let ids = store.insert(std::slice::from_ref(&sample)).await.unwrap();
        let (kind, len): (String, i64) =
            sqlx::query_as("SELECT typeof(message), length(message) FROM messages WHERE id = ?1")
                .bind(&ids[0])
                .fetch_one(&store.writer)
                .await
                .unwrap();
        assert_eq!(kind, "blob");
        assert!(
            (len as usize) * 10 < json_len * 7,
            "{len} bytes stored for {json_len} bytes of JSON"
        );
        let back = store.get(&ids[0]).await.unwrap().unwrap();
        assert_eq!(back.message.recipient, sample.recipient);
        assert_eq!(back.message.template_data, sample.template_data);
    }
}
