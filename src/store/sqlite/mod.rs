//! The embedded SQLite backend of [`MessageStore`]: one database file, zero setup.
//!
//! SQLite allows one writer at a time (and many readers in WAL mode). Every write of this process
//! runs on one connection owned by a thread of our own ([`thread::Writer`]): a store call is one
//! hand-off to it, and the writes waiting together (the API's inserts, the worker's claims and
//! records) share one transaction and one fsync. Reads use a few connections of their own.
//! Another process writing the same file is still safe: write transactions start with
//! `BEGIN IMMEDIATE` and wait up to the busy timeout for the lock.

mod migrate;
mod thread;

use std::time::{Duration, SystemTime};

use rusqlite::types::{Value, ValueRef};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Row};

use super::{
    assemble, claimed, decode_count, decode_status, duration_millis, empty_page, encode_attempt,
    first_per_message, ids_json, list_plan, new_rows, page_of, recorded_due, recorded_status,
    replay, sql_limit, stats_of, to_millis, AttemptUpdate, ClaimRow, Claimed, IdempotencyKey,
    Idempotent, ListFilter, Message, MessageRow, MessageStore, NewRow, Page, Requeue, StoreError,
    StoreStats, StoredMessage, MESSAGE_COLUMNS,
};
use thread::{Readers, Writer};

/// How long a write waits for another process's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Read connections: WAL readers do not block each other or the writer.
const READERS: usize = 4;
/// Prepared statements kept per connection (the list filters' shapes, the hot writes).
const STATEMENT_CACHE: usize = 64;

/// A row's effective channel (its own, else its message type), kept in a column at insert: the
/// message itself is compressed.
const SQLITE_CHANNEL: &str = "channel";

/// The SQLite [`MessageStore`].
#[derive(Debug, Clone)]
pub struct SqliteStore {
    writer: Writer,
    /// Read connections; `None` for an in-memory database, whose only connection is the writer's.
    readers: Option<std::sync::Arc<Readers>>,
    /// The messages this store inserted last, for its own claims.
    recent: std::sync::Arc<Recent>,
}

/// Messages inserted most recently, by `seq`: the local worker's claim takes them from here
/// instead of decompressing and parsing the stored copy (the costliest part of a claim). A
/// message never changes once stored, and `seq` is never reused (AUTOINCREMENT) once committed,
/// so an entry can only be the stored message itself. Kept after the commit only; bounded by
/// count, oldest dropped first, so entries that another process claims do not accumulate.
#[derive(Debug, Default)]
struct Recent {
    inner: std::sync::Mutex<RecentInner>,
}

#[derive(Debug, Default)]
struct RecentInner {
    by_seq: std::collections::HashMap<i64, Message>,
    order: std::collections::VecDeque<i64>,
}

/// Most messages kept in [`Recent`]: a few claim batches' worth (a few MB); a backlog longer
/// than this is read back from the store as before.
const RECENT: usize = 1024;

impl Recent {
    fn keep(&self, entries: impl Iterator<Item = (i64, Message)>) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        for (seq, message) in entries {
            inner.by_seq.insert(seq, message);
            inner.order.push_back(seq);
        }
        while inner.order.len() > RECENT {
            if let Some(old) = inner.order.pop_front() {
                inner.by_seq.remove(&old);
            }
        }
    }

    fn take(&self, seq: i64) -> Option<Message> {
        self.inner.lock().ok()?.by_seq.remove(&seq)
    }
}

/// Where a `sqlite:` URL points.
enum Target {
    /// A private in-memory database.
    Memory,
    /// A file, as an SQLite URI (`file:PATH?PARAMS`).
    File(String),
}

/// `sqlite://PATH`, `sqlite:PATH` (each with optional `?PARAMS`, passed to SQLite as URI
/// parameters) or `sqlite::memory:`.
fn target(url: &str) -> Result<Target, StoreError> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .ok_or_else(|| StoreError::BadUrl(url.to_owned()))?;
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let memory = path == ":memory:" || query.split('&').any(|kv| kv == "mode=memory");
    if memory {
        return Ok(Target::Memory);
    }
    if path.is_empty() {
        return Err(StoreError::BadUrl(url.to_owned()));
    }
    // In a URI, these three would end or escape the path.
    let path = path
        .replace('%', "%25")
        .replace('?', "%3f")
        .replace('#', "%23");
    Ok(Target::File(if query.is_empty() {
        format!("file:{path}")
    } else {
        format!("file:{path}?{query}")
    }))
}

fn db_err(e: rusqlite::Error) -> StoreError {
    super::unavailable(e, None)
}

/// Opens and configures one connection. FULL fsyncs the WAL at every commit: NORMAL (the usual
/// WAL pairing) may lose the last commits on a power loss, but a 202 from the API promises the
/// message is durable.
fn connect(target: &Target) -> Result<Connection, StoreError> {
    let conn = match target {
        Target::Memory => Connection::open_in_memory(),
        Target::File(uri) => Connection::open_with_flags(
            uri,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_URI
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        ),
    }
    .map_err(db_err)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(db_err)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    if matches!(target, Target::File(_)) {
        let _: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(db_err)?;
    }
    // The writer's savepoints keep their undo pages in a statement journal: in memory, not in
    // a temp file written for every page a job touches.
    conn.execute_batch(
        "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY;",
    )
    .map_err(db_err)?;
    Ok(conn)
}

/// The error of a failed insert of `id`: a unique violation means the id exists (or repeats
/// within the batch).
fn insert_error(e: rusqlite::Error, id: &str) -> StoreError {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::ConstraintViolation) => StoreError::Duplicate(id.to_owned()),
        _ => db_err(e),
    }
}

/// Inserts `rows` as queued messages, due at `now`; returns their `seq`s. On the writer's thread
/// one prepared statement per row costs microseconds: no multi-row statements needed.
fn insert_rows(conn: &Connection, rows: &[NewRow], now: i64) -> Result<Vec<i64>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "INSERT INTO messages (id, recipient, template_type, channel, message, status, \
             send_count, created_at, updated_at, next_attempt_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, 'queued', 0, ?6, ?6, ?6)",
        )
        .map_err(db_err)?;
    // Rows are inserted in order, so `seq` follows the batch.
    let mut seqs = Vec::with_capacity(rows.len());
    for row in rows {
        stmt.execute(params![
            row.id,
            row.recipient,
            row.template_type,
            row.channel,
            row.message,
            now
        ])
        .map_err(|e| insert_error(e, &row.id))?;
        seqs.push(conn.last_insert_rowid());
    }
    Ok(seqs)
}

/// A column holding bytes: a message is a BLOB (compressed) or TEXT (stored as JSON).
fn bytes(row: &Row<'_>, idx: usize) -> rusqlite::Result<Vec<u8>> {
    match row.get_ref(idx)? {
        ValueRef::Blob(b) | ValueRef::Text(b) => Ok(b.to_vec()),
        other => Err(rusqlite::Error::InvalidColumnType(
            idx,
            "message".into(),
            other.data_type(),
        )),
    }
}

/// A row of [`MESSAGE_COLUMNS`].
fn message_row(r: &Row<'_>) -> rusqlite::Result<MessageRow> {
    Ok(MessageRow {
        id: r.get(0)?,
        status: r.get(1)?,
        send_count: r.get(2)?,
        message: bytes(r, 3)?,
        created_at: r.get(4)?,
        updated_at: r.get(5)?,
        next_attempt_at: r.get(6)?,
        seq: r.get(7)?,
        attempt: r.get(8)?,
    })
}

/// A message and its attempts, read in one statement (so from one snapshot).
fn get_rows(conn: &Connection, id: &str) -> Result<Vec<MessageRow>, StoreError> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages m \
             LEFT JOIN attempts a ON a.message_id = m.id \
             WHERE m.id = ?1 ORDER BY a.number"
        ))
        .map_err(db_err)?;
    let rows = stmt
        .query_map([id], message_row)
        .map_err(db_err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(db_err);
    rows
}

/// Claims up to `limit` due rows for `worker`, in one statement: it holds the write lock from
/// the selection to the update, so two claimers (even in two processes) never select the same
/// row. Expired leases and due messages are picked by two index-ordered scans (an OR of the two
/// would read and sort every due row on each claim), then merged.
fn claim_rows(
    conn: &Connection,
    worker: &str,
    now: i64,
    until: i64,
    limit: i64,
) -> Result<Vec<ClaimRow>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
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
        .map_err(db_err)?;
    let rows = stmt
        .query_map(params![worker, until, now, limit], |r| {
            Ok(ClaimRow {
                id: r.get(0)?,
                message: bytes(r, 1)?,
                send_count: r.get(2)?,
                next_attempt_at: r.get(3)?,
                seq: r.get(4)?,
            })
        })
        .map_err(db_err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(db_err);
    rows
}

/// An update ready to write: everything encoded off the writer's thread.
struct Recorded {
    id: String,
    worker: String,
    status: &'static str,
    number: i64,
    due: i64,
    record: String,
}

/// Applies `updates` whose message is still leased by the update's worker; returns how many.
fn record_rows(conn: &Connection, updates: &[Recorded], now: i64) -> Result<usize, StoreError> {
    let mut update = conn
        .prepare_cached(
            "UPDATE messages SET status = ?1, send_count = ?2, next_attempt_at = ?3, \
             updated_at = ?4, lease_owner = NULL, lease_until = NULL \
             WHERE id = ?5 AND status = 'processing' AND lease_owner = ?6",
        )
        .map_err(db_err)?;
    // A repeated attempt number replaces the record rather than failing the batch.
    let mut insert = conn
        .prepare_cached(
            "INSERT INTO attempts (message_id, number, record) VALUES (?1, ?2, ?3) \
             ON CONFLICT (message_id, number) DO UPDATE SET record = excluded.record",
        )
        .map_err(db_err)?;
    let mut applied = 0;
    for u in updates {
        let changed = update
            .execute(params![u.status, u.number, u.due, now, u.id, u.worker])
            .map_err(db_err)?;
        if changed == 0 {
            continue; // no longer leased by this worker
        }
        applied += 1;
        insert
            .execute(params![u.id, u.number, u.record])
            .map_err(db_err)?;
    }
    Ok(applied)
}

impl SqliteStore {
    /// Opens (creating it if missing) the database at `url` — `sqlite://PATH`, `sqlite:PATH`, or
    /// `sqlite::memory:` for a private in-memory database that lives as long as the store — and
    /// runs the embedded migrations.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the file cannot be opened or migrated.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let target = target(url)?;
        let (conn, target) = tokio::task::spawn_blocking(move || {
            let conn = connect(&target)?;
            migrate::run(&conn)?;
            Ok::<_, StoreError>((conn, target))
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("opening {url}: {e}")))??;
        let writer = Writer::start(conn)?;
        let readers = match target {
            Target::Memory => None,
            file @ Target::File(_) => Some(std::sync::Arc::new(Readers::new(READERS, move || {
                connect(&file)
            }))),
        };
        Ok(Self {
            writer,
            readers,
            recent: std::sync::Arc::default(),
        })
    }

    /// Closes the connections, after the writes already handed over.
    pub async fn close(&self) {
        if let Some(readers) = &self.readers {
            readers.close();
        }
        self.writer.close().await;
    }

    /// Runs a read on a reader connection (on the writer's, in memory).
    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        match &self.readers {
            Some(readers) => readers.read(f).await,
            None => self.writer.write(f).await,
        }
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
        self.writer
            .write(move |conn| {
                insert_rows(conn, &rows, now)?;
                Ok(rows.into_iter().map(|r| r.id).collect())
            })
            .await
    }

    async fn insert_owned(
        &self,
        messages: Vec<Message>,
    ) -> Result<Vec<String>, (StoreError, Vec<Message>)> {
        let rows = match new_rows(&messages) {
            Ok(rows) if !rows.is_empty() => rows,
            Ok(_) => return Ok(Vec::new()),
            Err(e) => return Err((e, messages)),
        };
        let now = to_millis(SystemTime::now());
        let done = self
            .writer
            .write(move |conn| {
                let seqs = insert_rows(conn, &rows, now)?;
                Ok((rows.into_iter().map(|r| r.id).collect::<Vec<_>>(), seqs))
            })
            .await;
        let (ids, seqs) = match done {
            Ok(done) => done,
            Err(e) => return Err((e, messages)),
        };
        // Committed: this process's worker may claim them from memory. Kept with their id, as
        // they were stored.
        self.recent.keep(
            seqs.into_iter()
                .zip(messages)
                .zip(&ids)
                .map(|((seq, mut m), id)| {
                    m.id = Some(id.clone());
                    (seq, m)
                }),
        );
        Ok(ids)
    }

    async fn insert_once(
        &self,
        key: &IdempotencyKey,
        messages: &[Message],
    ) -> Result<Idempotent, StoreError> {
        let rows = new_rows(messages)?;
        let now = to_millis(SystemTime::now());
        let key = key.clone();
        // The write lock is held from the lookup on: two requests with one key serialize here.
        self.writer
            .write(move |conn| {
                let found: Option<(String, String)> = conn
                    .prepare_cached(
                        "SELECT body_hash, ids FROM idempotency_keys WHERE scope = ?1 AND key = ?2",
                    )
                    .and_then(|mut s| {
                        s.query_row([&key.scope, &key.key], |r| Ok((r.get(0)?, r.get(1)?)))
                            .optional()
                    })
                    .map_err(db_err)?;
                if let Some((hash, ids)) = found {
                    return replay(&key, &hash, &ids);
                }
                insert_rows(conn, &rows, now)?;
                conn.prepare_cached(
                    "INSERT INTO idempotency_keys (scope, key, body_hash, ids, created_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        key.scope,
                        key.key,
                        key.body_hash,
                        ids_json(&rows),
                        now
                    ])
                })
                .map_err(db_err)?;
                Ok(Idempotent::Inserted(
                    rows.into_iter().map(|r| r.id).collect(),
                ))
            })
            .await
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
        let until = now.saturating_add(duration_millis(lease));
        let (worker, limit) = (worker.to_owned(), sql_limit(limit));
        let mut rows = self
            .writer
            .write_lazy(move |conn| claim_rows(conn, &worker, now, until, limit))
            .await?;
        // The messages this store inserted come from memory; the rest are decoded here, not on
        // the writer's thread. Claim order: oldest due first, as `claimed` gives it.
        rows.sort_by_key(|r| (r.next_attempt_at, r.seq));
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            match self.recent.take(row.seq) {
                Some(message) => match decode_count(&row.id, row.send_count) {
                    Ok(send_count) => out.push(Claimed {
                        id: row.id,
                        message,
                        send_count,
                    }),
                    Err(e) => {
                        tracing::error!(error = %e, "claimed message cannot be decoded; left processing");
                    }
                },
                None => out.extend(claimed(vec![row])),
            }
        }
        Ok(out)
    }

    async fn record(&self, updates: &[AttemptUpdate]) -> Result<usize, StoreError> {
        let updates = first_per_message(updates);
        if updates.is_empty() {
            return Ok(0);
        }
        let now = to_millis(SystemTime::now());
        let recorded = updates
            .iter()
            .map(|u| {
                Ok(Recorded {
                    id: u.id.clone(),
                    worker: u.worker.clone(),
                    status: recorded_status(u.status),
                    number: i64::from(u.attempt.number),
                    due: recorded_due(u, now),
                    record: encode_attempt(&u.id, &u.attempt)?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        // Lazy: a record lost to a power cut (never to a crash of this process) leaves its
        // message leased, to be delivered again once the lease expires; at most SYNC_WITHIN
        // (10 ms) of records can be lost that way, see `thread.rs`.
        self.writer
            .write_lazy(move |conn| record_rows(conn, &recorded, now))
            .await
    }

    async fn release(&self, worker: &str, ids: &[String]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let now = to_millis(SystemTime::now());
        let (worker, ids) = (worker.to_owned(), ids.to_vec());
        self.writer
            .write(move |conn| {
                let mut stmt = conn
                    .prepare_cached(
                        "UPDATE messages SET status = 'queued', next_attempt_at = ?1, \
                         updated_at = ?1, lease_owner = NULL, lease_until = NULL \
                         WHERE id = ?2 AND status = 'processing' AND lease_owner = ?3",
                    )
                    .map_err(db_err)?;
                for id in &ids {
                    stmt.execute(params![now, id, worker]).map_err(db_err)?;
                }
                Ok(())
            })
            .await
    }

    async fn get(&self, id: &str) -> Result<Option<StoredMessage>, StoreError> {
        let id = id.to_owned();
        let rows = self.read(move |conn| get_rows(conn, &id)).await?;
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
            |n| format!("?{n}"),
            SQLITE_CHANNEL,
            "messages",
        ) else {
            return Ok(empty_page());
        };
        let mut binds: Vec<Value> = Vec::new();
        if let Some(status) = filter.status {
            binds.push(Value::Text(status.as_str().to_owned()));
        }
        if let Some(recipient) = &filter.recipient {
            binds.push(Value::Text(recipient.clone()));
        }
        if let Some(template_type) = filter.template_type {
            binds.push(Value::Text(template_type.as_str().to_owned()));
        }
        if let Some(channel) = &filter.channel {
            binds.push(Value::Text(channel.clone()));
        }
        if let Some(seq) = before {
            binds.push(Value::Integer(seq));
        }
        binds.push(Value::Integer(sql_limit(limit).saturating_add(1)));
        let rows = self
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(&sql).map_err(db_err)?;
                let rows = stmt
                    .query_map(rusqlite::params_from_iter(binds), message_row)
                    .map_err(db_err)?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(db_err);
                rows
            })
            .await?;
        page_of(rows, limit)
    }

    async fn requeue(&self, id: &str, now: SystemTime) -> Result<Requeue, StoreError> {
        let now = to_millis(now);
        let id = id.to_owned();
        self.writer
            .write(move |conn| {
                let done = conn
                    .prepare_cached(
                        "UPDATE messages SET status = 'queued', next_attempt_at = ?1, \
                         updated_at = ?1, lease_owner = NULL, lease_until = NULL \
                         WHERE id = ?2 AND status IN ('abandoned', 'cancelled')",
                    )
                    .and_then(|mut s| s.execute(params![now, id]))
                    .map_err(db_err)?;
                if done == 1 {
                    return Ok(Requeue::Requeued);
                }
                let status: Option<String> = conn
                    .prepare_cached("SELECT status FROM messages WHERE id = ?1")
                    .and_then(|mut s| s.query_row([&id], |r| r.get(0)).optional())
                    .map_err(db_err)?;
                match status {
                    None => Ok(Requeue::NotFound),
                    Some(s) => Ok(Requeue::NotFinal(decode_status(&id, &s)?)),
                }
            })
            .await
    }

    async fn delete_finished_before(&self, cutoff: SystemTime) -> Result<u64, StoreError> {
        let cutoff = to_millis(cutoff);
        self.writer
            .write(move |conn| {
                // Attempts go with their message (ON DELETE CASCADE; foreign keys are on). A
                // finished message's next_attempt_at is when it finished (see `recorded_due`).
                let done = conn
                    .execute(
                        "DELETE FROM messages WHERE status IN ('sent', 'cancelled') \
                         AND next_attempt_at < ?1",
                        [cutoff],
                    )
                    .map_err(db_err)?;
                conn.execute(
                    "DELETE FROM idempotency_keys WHERE created_at < ?1",
                    [cutoff],
                )
                .map_err(db_err)?;
                Ok(u64::try_from(done).unwrap_or(u64::MAX))
            })
            .await
    }

    async fn stats(&self) -> Result<StoreStats, StoreError> {
        let (counts, oldest) = self
            .read(|conn| {
                let counts = conn
                    .prepare_cached("SELECT status, COUNT(*) FROM messages GROUP BY status")
                    .and_then(|mut s| {
                        s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                            .collect::<Result<Vec<(String, i64)>, _>>()
                    })
                    .map_err(db_err)?;
                let oldest: Option<i64> = conn
                    .query_row(
                        "SELECT MIN(created_at) FROM messages WHERE status = 'queued'",
                        [],
                        |r| r.get(0),
                    )
                    .map_err(db_err)?;
                Ok((counts, oldest))
            })
            .await?;
        stats_of(counts, oldest)
    }

    async fn footprint(&self) -> Result<u64, StoreError> {
        self.writer
            .alone(|conn| {
                // Checkpointed first, so the pages counted are the database's, not the log's.
                conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
                    .map_err(db_err)?;
                let (pages, free, size): (i64, i64, i64) = conn
                    .query_row(
                        "SELECT (SELECT page_count FROM pragma_page_count()), \
                         (SELECT freelist_count FROM pragma_freelist_count()), \
                         (SELECT page_size FROM pragma_page_size())",
                        [],
                        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                    )
                    .map_err(db_err)?;
                Ok(u64::try_from((pages - free) * size).unwrap_or(0))
            })
            .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.read(|conn| conn.query_row("SELECT 1", [], |_| Ok(())).map_err(db_err))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn rows_stored_as_json_text_read_back_and_new_rows_are_compressed() {
        let store = SqliteStore::open("sqlite::memory:").await.unwrap();
        // A row as the first schema wrote it: the message as JSON text.
        store
            .writer
            .write(|conn| {
                conn.execute(
                    "INSERT INTO messages (id, status, recipient, template_type, message, \
                     send_count, created_at, updated_at, next_attempt_at) \
                     VALUES ('old', 'queued', 'a@b.c', 'stub', ?1, 0, 0, 0, 0)",
                    [r#"{"id":"old","recipient":"a@b.c","template_type":"stub"}"#],
                )
                .map_err(db_err)
            })
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
        let id = ids[0].clone();
        let (kind, len): (String, i64) = store
            .writer
            .write(move |conn| {
                conn.query_row(
                    "SELECT typeof(message), length(message) FROM messages WHERE id = ?1",
                    [id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .map_err(db_err)
            })
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

    #[tokio::test]
    async fn own_inserts_are_claimed_from_memory_as_stored() {
        let store = SqliteStore::open("sqlite::memory:").await.unwrap();
        let samples: Vec<Message> = crate::message::samples::all().map(|(_, _, m)| m).collect();
        let ids = store.insert_owned(samples.clone()).await.unwrap();
        let claimed = store
            .claim_due("w", SystemTime::now(), 100, Duration::from_secs(30))
            .await
            .unwrap();
        assert!(
            store.recent.inner.lock().unwrap().by_seq.is_empty(),
            "every claim came from memory"
        );
        let claimed_ids: Vec<&str> = claimed.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(claimed_ids, ids, "in insert order");
        for (c, sample) in claimed.iter().zip(&samples) {
            // What the store holds, decoded: the message from memory must be the same.
            let stored = store.get(&c.id).await.unwrap().unwrap();
            assert_eq!(c.message, stored.message);
            assert_eq!(c.message.id.as_deref(), Some(c.id.as_str()));
            assert_eq!(c.message.template_data, sample.template_data);
            assert_eq!(c.send_count, 0);
        }
    }
}
