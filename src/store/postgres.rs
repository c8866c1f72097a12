//! The PostgreSQL backend of [`MessageStore`], for several `courier serve` processes sharing the
//! work: claims lock rows with `FOR UPDATE SKIP LOCKED`, so concurrent claimers never take the
//! same message and never wait for each other.

use std::collections::HashSet;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection};

use super::{
    assemble, claimed, decode_status, duration_millis, empty_page, encode_attempt,
    first_per_message, ids_json, list_plan, new_rows, page_of, recorded_due, recorded_status,
    replay, sql_limit, stats_of, to_millis, url_password, AttemptUpdate, ClaimRow, Claimed,
    IdempotencyKey, Idempotent, ListFilter, Message, MessageRow, MessageStore, NewRow, Page,
    Requeue, Status, StoreError, StoreStats, StoredMessage, MESSAGE_COLUMNS,
};

/// Connections per process: inserts and API reads run concurrently.
const MAX_CONNECTIONS: u32 = 8;
/// Connections per process for the worker's claims, records and releases (see
/// [`worker_options`]): the claim loop and the record writer, one spare.
const WORKER_CONNECTIONS: u32 = 3;
/// How long a caller waits for a pooled connection before the store reports itself unavailable.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// A row's effective channel (its own, else its message type), kept in a column at insert: the
/// message itself is compressed.
const PG_CHANNEL: &str = "channel";

/// A row's status as reported, of `messages m`: a claim leaves `status` 'queued' and sets only
/// the lease columns, none of them indexed, so that its update is HOT (migration 0005). Only a
/// claim sets the lease owner, only on a 'queued' row, and records, releases and requeues clear
/// it: any row with an owner is a claimed one.
const PG_STATUS: &str = "CASE WHEN m.status = 'queued' AND m.lease_owner IS NOT NULL \
     THEN 'processing' ELSE m.status END";

/// The worker's claim (see `claim_due`): $1 worker, $2 lease end, $3 now, $4 limit.
const CLAIM: &str = "WITH pick AS (SELECT id FROM messages \
        WHERE status = 'queued' AND next_attempt_at <= $3 \
        AND (lease_until IS NULL OR lease_until < $3) \
        ORDER BY next_attempt_at, seq LIMIT $4 FOR UPDATE SKIP LOCKED), \
    claim AS (UPDATE messages SET lease_owner = $1, lease_until = $2, updated_at = $3 \
        WHERE id IN (SELECT id FROM pick) \
        RETURNING id, send_count, next_attempt_at, seq) \
    SELECT c.id, b.message, c.send_count, c.next_attempt_at, c.seq \
    FROM claim c JOIN message_bodies b ON b.id = c.id";

/// The worker's record of attempts (see `record`): $1..$6 arrays (id, status, attempt number,
/// due time, worker, record), $7 now.
const RECORD: &str =
    "WITH v AS (SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::bigint[], \
        $5::text[], $6::text[]) AS v(id, status, n, due, worker, record)), \
    upd AS (UPDATE messages m SET status = v.status, send_count = v.n, \
        next_attempt_at = v.due, updated_at = $7, lease_owner = NULL, lease_until = NULL \
        FROM v WHERE m.id = v.id AND m.lease_owner = v.worker \
        RETURNING m.id, v.n, v.record), \
    ins AS (INSERT INTO attempts (message_id, number, record) \
        SELECT id, n, record FROM upd \
        ON CONFLICT (message_id, number) DO UPDATE SET record = EXCLUDED.record \
        RETURNING 1) \
    SELECT count(*) FROM ins";

/// Hands leases back: $1 now, $2 ids, $3 worker.
const RELEASE: &str =
    "UPDATE messages SET status = 'queued', next_attempt_at = $1, updated_at = $1, \
    lease_owner = NULL, lease_until = NULL \
    WHERE id = ANY($2) AND lease_owner = $3";

/// Messages with their bodies, which live in a table of their own (migration 0004), and their
/// status as reported ([`PG_STATUS`]), for `get` and `list`. With `status`, only the messages in
/// it, by a condition on the stored columns that the claim index `(status, ...)` serves
/// (the reported status is computed). PostgreSQL 15 wants an alias on a subquery.
fn pg_messages(status: Option<Status>) -> String {
    let only = match status {
        None => String::new(),
        Some(Status::Processing) => {
            "WHERE m.status = 'queued' AND m.lease_owner IS NOT NULL".to_owned()
        }
        Some(Status::Queued) => "WHERE m.status = 'queued' AND m.lease_owner IS NULL".to_owned(),
        Some(s) => format!("WHERE m.status = '{}'", s.as_str()),
    };
    format!(
        "(SELECT m.id, m.seq, {PG_STATUS} AS status, m.recipient, m.template_type, m.channel, \
         m.send_count, m.created_at, m.updated_at, m.next_attempt_at, b.message \
         FROM messages m JOIN message_bodies b ON b.id = m.id {only}) pm"
    )
}

/// The PostgreSQL [`MessageStore`].
#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
    /// The worker's claims, records and releases, on connections whose plans stay index lookups
    /// (see [`worker_options`]).
    worker: PgPool,
    /// The URL's password, scrubbed from every error message.
    secret: Option<String>,
    /// The options without `search_path`, and the schema, when opened in one.
    base: PgConnectOptions,
    schema: Option<String>,
}

// By hand: the connect options hold the password.
impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("pool_size", &self.pool.size())
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Inserts `rows` as queued messages, bodies apart (see migration 0004), in one statement:
    /// outside a transaction it commits alone, atomically, in one round trip. ORDER BY ord gives
    /// `seq` the batch's order. An id that already exists fails the whole statement; the caller
    /// then names it with [`existing_id`](Self::existing_id).
    async fn insert_rows<'e, E>(executor: E, rows: &[NewRow]) -> Result<(), sqlx::Error>
    where
        E: sqlx::Executor<'e, Database = sqlx::Postgres>,
    {
        let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
        let recipients: Vec<&str> = rows.iter().map(|r| r.recipient.as_str()).collect();
        let types: Vec<&str> = rows.iter().map(|r| r.template_type).collect();
        let channels: Vec<&str> = rows.iter().map(|r| r.channel.as_str()).collect();
        let stored: Vec<&[u8]> = rows.iter().map(|r| r.message.as_slice()).collect();
        let now = to_millis(SystemTime::now());
        sqlx::query(
            "WITH u AS (SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], \
                 $5::bytea[]) WITH ORDINALITY AS u(id, recipient, template_type, channel, \
                 message, ord)), \
             b AS (INSERT INTO message_bodies (id, message) SELECT id, message FROM u) \
             INSERT INTO messages (id, status, recipient, template_type, channel, send_count, \
                 created_at, updated_at, next_attempt_at) \
             SELECT id, 'queued', recipient, template_type, channel, 0, $6, $6, $6 \
             FROM u ORDER BY ord",
        )
        .bind(&ids)
        .bind(&recipients)
        .bind(&types)
        .bind(&channels)
        .bind(&stored)
        .bind(now)
        .execute(executor)
        .await?;
        Ok(())
    }

    /// The error of a failed [`insert_rows`](Self::insert_rows): [`StoreError::Duplicate`] with
    /// the id that exists when the cause was a unique violation.
    async fn insert_error(&self, e: sqlx::Error, rows: &[NewRow]) -> StoreError {
        let unique = matches!(&e, sqlx::Error::Database(d) if d.code().as_deref() == Some("23505"));
        if !unique {
            return self.err(e);
        }
        let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
        let existing: Option<String> =
            sqlx::query_scalar("SELECT id FROM message_bodies WHERE id = ANY($1) LIMIT 1")
                .bind(&ids)
                .fetch_optional(&self.pool)
                .await
                .ok()
                .flatten();
        // Gone again (retention) by now: the conflict was still real when the insert ran.
        StoreError::Duplicate(existing.unwrap_or_default())
    }

    /// Connects to `url` (`postgres://…` or `postgresql://…`, every libpq-style parameter sqlx
    /// understands) and runs the embedded migrations (serialized between processes by sqlx's
    /// advisory lock).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the database cannot be reached or migrated; the message
    /// never contains the URL's password.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        Self::connect(url, None).await
    }

    /// Like [`open`](Self::open), but every table (and sqlx's migration table) lives in `schema`,
    /// which is created if missing: several independent stores in one database, as the contract
    /// tests use to run in parallel. `schema` must be a lowercase SQL identifier
    /// (`[a-z_][a-z0-9_]*`, at most 63 bytes).
    ///
    /// # Errors
    /// As [`open`](Self::open); [`StoreError::BadUrl`] for an invalid schema name.
    pub async fn open_in_schema(url: &str, schema: &str) -> Result<Self, StoreError> {
        let valid = !schema.is_empty()
            && schema.len() <= 63
            && schema
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            && !schema.as_bytes()[0].is_ascii_digit();
        if !valid {
            return Err(StoreError::BadUrl(format!(
                "{} (invalid schema name {schema:?})",
                crate::config::mask_url(url)
            )));
        }
        Self::connect(url, Some(schema)).await
    }

    async fn connect(url: &str, schema: Option<&str>) -> Result<Self, StoreError> {
        let secret = url_password(url);
        let err = |e: &dyn std::fmt::Display| super::unavailable(e, secret.as_deref());
        let base = PgConnectOptions::from_str(url).map_err(|e| err(&e))?;
        let options = match schema {
            Some(schema) => {
                // The identifier was validated by the caller, so quoting it is enough.
                let mut conn = base.connect().await.map_err(|e| err(&e))?;
                sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""))
                    .execute(&mut conn)
                    .await
                    .map_err(|e| err(&e))?;
                conn.close().await.map_err(|e| err(&e))?;
                base.clone().options([("search_path", schema)])
            }
            None => base.clone(),
        };
        // The claim wants the first rows of the claim index in its order. Where it estimated few
        // due rows (no statistics until something ANALYZEs the table, a queue's counts move
        // faster than they would anyway), the planner read every due row by a bitmap scan and
        // sorted them, 3-10 ms per claim with thousands due. Every statement here is a lookup
        // or an ordered range that a plain index scan serves.
        let options = options.options([("enable_bitmapscan", "off")]);
        let worker = PgPoolOptions::new()
            .max_connections(WORKER_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_lazy_with(worker_options(options.clone()));
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(|e| err(&e))?;
        sqlx::migrate!("migrations/postgres")
            .run(&pool)
            .await
            .map_err(|e| err(&format!("migrating: {e}")))?;
        Ok(Self {
            pool,
            worker,
            secret,
            base,
            schema: schema.map(str::to_owned),
        })
    }

    /// Closes the pool, waiting for connections in use to be returned.
    pub async fn close(&self) {
        self.worker.close().await;
        self.pool.close().await;
    }

    /// Closes the pool and drops the schema this store was opened in by
    /// [`open_in_schema`](Self::open_in_schema), with everything in it: the clean-up of a
    /// throwaway schema (tests, CI). Does nothing else for a store opened with [`open`](Self::open).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the database cannot be reached.
    pub async fn drop_schema(&self) -> Result<(), StoreError> {
        self.close().await;
        let Some(schema) = &self.schema else {
            return Ok(());
        };
        let mut conn = self.base.connect().await.map_err(|e| self.err(e))?;
        sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
            .execute(&mut conn)
            .await
            .map_err(|e| self.err(e))?;
        conn.close().await.map_err(|e| self.err(e))
    }

    fn err(&self, e: sqlx::Error) -> StoreError {
        super::unavailable(e, self.secret.as_deref())
    }
}

/// The settings of the worker's connections, which claim, record and release.
///
/// Their statements touch a batch of rows found by key (ids, or the first entries of the claim
/// index), however large the table. A session caches a generic plan after five executions,
/// planned for the table's size at that moment: a record first run on a young table was planned
/// as a sequential scan of `messages` and a hash join, and kept that plan as the table grew
/// (2.6 ms per record at 20,000 rows, against 0.3 ms by index). Without sequential scans and hash
/// or merge joins, every plan of these statements is index lookups, at any size.
fn worker_options(options: PgConnectOptions) -> PgConnectOptions {
    options.options([
        ("enable_seqscan", "off"),
        ("enable_hashjoin", "off"),
        ("enable_mergejoin", "off"),
    ])
}

/// [`StoreError::Duplicate`] for an id given twice in one batch, which the database would
/// report as a unique violation without naming it.
fn duplicate_in(rows: &[NewRow]) -> Result<(), StoreError> {
    let mut seen = HashSet::with_capacity(rows.len());
    match rows.iter().find(|r| !seen.insert(r.id.as_str())) {
        Some(dup) => Err(StoreError::Duplicate(dup.id.clone())),
        None => Ok(()),
    }
}

#[async_trait::async_trait]
impl MessageStore for PostgresStore {
    async fn insert(&self, messages: &[Message]) -> Result<Vec<String>, StoreError> {
        let rows = new_rows(messages)?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        duplicate_in(&rows)?;
        if let Err(e) = Self::insert_rows(&self.pool, &rows).await {
            return Err(self.insert_error(e, &rows).await);
        }
        Ok(rows.into_iter().map(|r| r.id).collect())
    }

    async fn insert_once(
        &self,
        key: &IdempotencyKey,
        messages: &[Message],
    ) -> Result<Idempotent, StoreError> {
        let rows = new_rows(messages)?;
        let now = to_millis(SystemTime::now());
        // A second request with the key waits on the first one's uncommitted key row, then
        // finds it (DO NOTHING) and reads it; if the first rolled back, the key is free again.
        for _ in 0..3 {
            let mut tx = self.pool.begin().await.map_err(|e| self.err(e))?;
            let claimed: Option<String> = sqlx::query_scalar(
                "INSERT INTO idempotency_keys (scope, key, body_hash, ids, created_at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (scope, key) DO NOTHING RETURNING key",
            )
            .bind(&key.scope)
            .bind(&key.key)
            .bind(&key.body_hash)
            .bind(ids_json(&rows))
            .bind(now)
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
            if claimed.is_some() {
                let inserted = match duplicate_in(&rows) {
                    Ok(()) => Self::insert_rows(&mut *tx, &rows).await,
                    Err(dup) => {
                        tx.rollback().await.map_err(|e| self.err(e))?;
                        return Err(dup);
                    }
                };
                if let Err(e) = inserted {
                    tx.rollback().await.map_err(|e| self.err(e))?;
                    return Err(self.insert_error(e, &rows).await);
                }
                tx.commit().await.map_err(|e| self.err(e))?;
                return Ok(Idempotent::Inserted(
                    rows.into_iter().map(|r| r.id).collect(),
                ));
            }
            tx.rollback().await.map_err(|e| self.err(e))?;
            let found: Option<(String, String)> = sqlx::query_as(
                "SELECT body_hash, ids FROM idempotency_keys WHERE scope = $1 AND key = $2",
            )
            .bind(&key.scope)
            .bind(&key.key)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
            if let Some((hash, ids)) = found {
                return replay(key, &hash, &ids);
            }
        }
        Err(StoreError::Unavailable(format!(
            "idempotency key {:?} is contended; try again",
            key.key
        )))
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
        // SKIP LOCKED: rows another claimer is taking right now are passed over, not waited for
        // and never taken twice. Under READ COMMITTED a row changed since the snapshot is
        // re-checked against the WHERE once locked, so a just-claimed row is not claimed again.
        // A claimed row stays 'queued' (see PG_STATUS), so one index-ordered scan finds both
        // the due messages and the expired leases (whose due time passed before their claim);
        // it steps over the live leases, at most the messages in flight.
        let rows: Vec<ClaimRow> = sqlx::query_as(CLAIM)
            .bind(worker)
            .bind(now.saturating_add(duration_millis(lease)))
            .bind(now)
            .bind(sql_limit(limit))
            .fetch_all(&self.worker)
            .await
            .map_err(|e| self.err(e))?;
        Ok(claimed(rows))
    }

    async fn record(&self, updates: &[AttemptUpdate]) -> Result<usize, StoreError> {
        let updates = first_per_message(updates);
        if updates.is_empty() {
            return Ok(0);
        }
        let mut records = Vec::with_capacity(updates.len());
        for u in &updates {
            records.push(encode_attempt(&u.id, &u.attempt)?);
        }
        let ids: Vec<&str> = updates.iter().map(|u| u.id.as_str()).collect();
        let statuses: Vec<&str> = updates.iter().map(|u| recorded_status(u.status)).collect();
        let numbers: Vec<i64> = updates
            .iter()
            .map(|u| i64::from(u.attempt.number))
            .collect();
        let now = to_millis(SystemTime::now());
        let due: Vec<i64> = updates.iter().map(|u| recorded_due(u, now)).collect();
        let workers: Vec<&str> = updates.iter().map(|u| u.worker.as_str()).collect();
        // One statement for the batch: only messages still leased by the update's worker change,
        // and only their attempts are appended (the update returns them: no join). Any row with a lease owner is a claimed one (see
        // PG_STATUS); a condition on `status` as well led the planner to read every queued row
        // through the claim index rather than look the batch up by id. A repeated attempt number
        // replaces the record rather than failing the whole batch.
        let applied: i64 = sqlx::query_scalar(RECORD)
            .bind(&ids)
            .bind(&statuses)
            .bind(&numbers)
            .bind(&due)
            .bind(&workers)
            .bind(&records)
            .bind(now)
            .fetch_one(&self.worker)
            .await
            .map_err(|e| self.err(e))?;
        Ok(usize::try_from(applied).unwrap_or(0))
    }

    async fn release(&self, worker: &str, ids: &[String]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        sqlx::query(RELEASE)
            .bind(to_millis(SystemTime::now()))
            .bind(ids)
            .bind(worker)
            .execute(&self.worker)
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    async fn get(&self, id: &str) -> Result<Option<StoredMessage>, StoreError> {
        let rows: Vec<MessageRow> = sqlx::query_as(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM (SELECT * FROM {}) m \
             LEFT JOIN attempts a ON a.message_id = m.id \
             WHERE m.id = $1 ORDER BY a.number",
            pg_messages(None)
        ))
        .bind(id)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
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
            |n| format!("${n}"),
            PG_CHANNEL,
            &pg_messages(filter.status),
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
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        page_of(rows, limit)
    }

    async fn requeue(&self, id: &str, now: SystemTime) -> Result<Requeue, StoreError> {
        let now = to_millis(now);
        let done = sqlx::query(
            "UPDATE messages SET status = 'queued', next_attempt_at = $1, updated_at = $1, \
             lease_owner = NULL, lease_until = NULL \
             WHERE id = $2 AND status IN ('abandoned', 'cancelled')",
        )
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        if done.rows_affected() == 1 {
            return Ok(Requeue::Requeued);
        }
        let status: Option<String> = sqlx::query_scalar(&format!(
            "SELECT {PG_STATUS} FROM messages m WHERE m.id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        match status {
            None => Ok(Requeue::NotFound),
            Some(s) => Ok(Requeue::NotFinal(decode_status(id, &s)?)),
        }
    }

    async fn delete_finished_before(&self, cutoff: SystemTime) -> Result<u64, StoreError> {
        // Body and attempts go with their message, in the same statement. A finished message's
        // next_attempt_at is when it finished (see `recorded_due`).
        let done: i64 = sqlx::query_scalar(
            "WITH gone AS (DELETE FROM messages \
                 WHERE status IN ('sent', 'cancelled') AND next_attempt_at < $1 RETURNING id), \
             b AS (DELETE FROM message_bodies WHERE id IN (SELECT id FROM gone)), \
             a AS (DELETE FROM attempts WHERE message_id IN (SELECT id FROM gone)) \
             SELECT count(*) FROM gone",
        )
        .bind(to_millis(cutoff))
        .fetch_one(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1")
            .bind(to_millis(cutoff))
            .execute(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        Ok(u64::try_from(done).unwrap_or(0))
    }

    async fn stats(&self) -> Result<StoreStats, StoreError> {
        let counts: Vec<(String, i64)> = sqlx::query_as(&format!(
            "SELECT {PG_STATUS} AS s, COUNT(*) FROM messages m GROUP BY s"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        let oldest: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(created_at) FROM messages \
                 WHERE status = 'queued' AND lease_owner IS NULL",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        stats_of(counts, oldest)
    }

    fn concurrent_writes(&self) -> usize {
        // Concurrent commits share WAL flushes; the rest of the pool serves claims and reads.
        4
    }

    async fn footprint(&self) -> Result<u64, StoreError> {
        // Tables, their indexes and TOAST, in this store's schema.
        let bytes: i64 = sqlx::query_scalar(
            "SELECT pg_total_relation_size('messages') + pg_total_relation_size('message_bodies') \
             + pg_total_relation_size('attempts')",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        Ok(u64::try_from(bytes).unwrap_or(0))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worker's statements, planned generically (as a session does after five executions) on
    /// an empty table, where a scan of the whole table is cheapest: on its connections, each is
    /// still index lookups, so a plan cached while the table was young stays right as it grows.
    #[tokio::test]
    #[ignore = "needs COURIER_TEST_POSTGRES_URL"]
    async fn worker_plans_are_index_lookups_on_a_young_table() {
        let url = std::env::var("COURIER_TEST_POSTGRES_URL").expect("COURIER_TEST_POSTGRES_URL");
        let schema = format!("plans_{}", std::process::id());
        let store = PostgresStore::open_in_schema(&url, &schema)
            .await
            .expect("open");
        let mut conn = store.worker.acquire().await.expect("worker connection");
        sqlx::query("SET plan_cache_mode = force_generic_plan")
            .execute(&mut *conn)
            .await
            .expect("set");
        let statements = [
            (CLAIM, "'w', 2, 1, 64"),
            (RECORD, "'{a}', '{sent}', '{1}', '{1}', '{w}', '{r}', 1"),
            (RELEASE, "1, '{a}', 'w'"),
        ];
        for (i, (sql, args)) in statements.into_iter().enumerate() {
            sqlx::raw_sql(&format!("PREPARE s{i} AS {sql}"))
                .execute(&mut *conn)
                .await
                .expect("prepare");
            let plan: Vec<String> = sqlx::query_scalar(&format!("EXPLAIN EXECUTE s{i}({args})"))
                .fetch_all(&mut *conn)
                .await
                .expect("explain");
            let plan = plan.join("\n");
            assert!(plan.contains("Index Scan using messages_"), "{plan}");
            for scan in ["Seq Scan", "Hash Join", "Merge Join", "Bitmap"] {
                assert!(!plan.contains(scan), "{scan} in the plan of s{i}:\n{plan}");
            }
        }
        drop(conn);
        store.drop_schema().await.expect("drop schema");
    }
}
