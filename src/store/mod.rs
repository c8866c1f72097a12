//! Durable message storage for `courier serve`: one trait, [`MessageStore`], with an embedded
//! SQLite backend (the zero-setup default) and a PostgreSQL backend for several processes sharing
//! the work. Both run the same contract tests (`tests/it/store.rs`).
//!
//! Lifecycle of a stored message: `queued` → (claimed) `processing` → `sent` | `queued` again with a
//! later `next_attempt_at` | `abandoned` | `cancelled`. A claim is a lease: a process that dies
//! leaves its messages `processing` with an expired lease, and the next claim takes them over.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::config::mask_url;
use crate::delivery::{Attempt, Outcome};
use crate::message::{Message, TemplateType};

/// Where a stored message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Waiting for its next attempt (due at `next_attempt_at`).
    Queued,
    /// Claimed by a worker, under a lease.
    Processing,
    /// Delivered.
    Sent,
    /// Out of attempts, or failed permanently.
    Abandoned,
    /// The template cancelled it.
    Cancelled,
}

impl From<Outcome> for Status {
    /// A delivery's end state as the message's final status: both ways of failing (permanently
    /// or out of attempts) are `abandoned`.
    fn from(outcome: Outcome) -> Self {
        match outcome {
            Outcome::Delivered => Status::Sent,
            Outcome::Failed | Outcome::Abandoned => Status::Abandoned,
            Outcome::Cancelled => Status::Cancelled,
        }
    }
}

impl Status {
    /// The wire and column name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Processing => "processing",
            Status::Sent => "sent",
            Status::Abandoned => "abandoned",
            Status::Cancelled => "cancelled",
        }
    }

    /// Every status.
    pub const ALL: [Status; 5] = [
        Status::Queued,
        Status::Processing,
        Status::Sent,
        Status::Abandoned,
        Status::Cancelled,
    ];
}

impl std::str::FromStr for Status {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Status::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                format!("unknown status {s:?}; expected queued, processing, sent, abandoned or cancelled")
            })
    }
}

/// A message as stored, with its history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredMessage {
    /// The id (assigned at insert when the message had none).
    pub id: String,
    /// Where it stands.
    pub status: Status,
    /// Attempts made so far.
    pub send_count: u32,
    /// The message itself.
    pub message: Message,
    /// Every attempt, oldest first.
    pub attempts: Vec<Attempt>,
    /// When it was accepted.
    #[serde(with = "crate::delivery::rfc3339")]
    pub created_at: SystemTime,
    /// When it last changed.
    #[serde(with = "crate::delivery::rfc3339")]
    pub updated_at: SystemTime,
    /// When it is due (meaningful while queued).
    #[serde(with = "crate::delivery::rfc3339")]
    pub next_attempt_at: SystemTime,
}

/// A message claimed for delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct Claimed {
    /// The message's id in the store.
    pub id: String,
    /// The message as accepted.
    pub message: Message,
    /// Attempts made before this claim.
    pub send_count: u32,
}

/// What a worker decided after one attempt of a claimed message.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptUpdate {
    /// The message's id.
    pub id: String,
    /// The worker that holds the lease; an update from a worker that lost its lease is ignored.
    pub worker: String,
    /// The attempt to append (its `number` is the new send count).
    pub attempt: Attempt,
    /// The new status: `Sent`, `Queued` (retry at `next_attempt_at`), `Abandoned` or `Cancelled`.
    pub status: Status,
    /// When a `Queued` message is due again.
    pub next_attempt_at: SystemTime,
}

/// Filters for [`MessageStore::list`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListFilter {
    /// Only messages with this status.
    pub status: Option<Status>,
    /// Only messages to this recipient (exact match).
    pub recipient: Option<String>,
    /// Only messages of this template type.
    pub template_type: Option<TemplateType>,
    /// Only messages delivered by this channel (their own, else `email`/`sms` by message type,
    /// as [`Message::channel`] says).
    pub channel: Option<String>,
}

/// One page of [`MessageStore::list`]: newest first.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// The messages of this page.
    pub messages: Vec<StoredMessage>,
    /// Pass this to get the next page; `None` on the last page.
    pub next_page_token: Option<String>,
}

/// Counts for metrics and readiness.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoreStats {
    /// Messages per status (every status present, possibly 0).
    pub by_status: Vec<(Status, u64)>,
    /// `created_at` of the oldest queued message, if any.
    pub oldest_queued_at: Option<SystemTime>,
}

/// The result of [`MessageStore::requeue`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requeue {
    /// It was abandoned or cancelled and is queued again, due now.
    Requeued,
    /// No such message.
    NotFound,
    /// It is queued, processing or sent: nothing to do (the status is given).
    NotFinal(Status),
}

/// A storage failure. `Unavailable` errors are transient (the database is down or busy).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached or answered with an error.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// An id that already exists was inserted.
    #[error("a message with id {0:?} already exists")]
    Duplicate(String),
    /// The database URL is not one this build understands.
    #[error("unsupported database URL {0:?}: use sqlite://PATH or postgres://...")]
    BadUrl(String),
    /// Stored data could not be decoded (written by an incompatible version?).
    #[error("corrupt stored data for message {id}: {reason}")]
    Corrupt {
        /// The message.
        id: String,
        /// What was wrong.
        reason: String,
    },
}

/// An `Idempotency-Key` as the API received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey {
    /// Whose key it is: a hash of the API token ('' without authentication). Keys of different
    /// tokens never meet.
    pub scope: String,
    /// The key as sent.
    pub key: String,
    /// A hash of the request body.
    pub body_hash: String,
}

/// What an insert under an idempotency key did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Idempotent {
    /// The key was new: the messages were stored under these ids.
    Inserted(Vec<String>),
    /// The key was used before with the same body: nothing was stored; these are the first
    /// request's ids.
    Replayed(Vec<String>),
    /// The key was used before with a different body: nothing was stored.
    Conflict,
}

/// Durable message storage. All methods that write do so in one transaction, and are safe to call
/// concurrently from several processes sharing one database.
#[async_trait::async_trait]
pub trait MessageStore: Send + Sync {
    /// Stores new messages (`queued`, due now) in one transaction and returns their ids in order,
    /// assigning a UUID v4 to each message without one. Nothing is stored if any insert fails.
    async fn insert(&self, messages: &[Message]) -> Result<Vec<String>, StoreError>;

    /// [`MessageStore::insert`] of messages the caller has no further use for, so that the store
    /// may keep them (SQLite hands them to its own worker's claims); on failure they come back.
    async fn insert_owned(
        &self,
        messages: Vec<Message>,
    ) -> Result<Vec<String>, (StoreError, Vec<Message>)> {
        match self.insert(&messages).await {
            Ok(ids) => Ok(ids),
            Err(e) => Err((e, messages)),
        }
    }

    /// Like [`MessageStore::insert`], under an idempotency key, in the same transaction as the
    /// key: a key seen before (and not yet deleted by [`MessageStore::delete_finished_before`])
    /// stores nothing and says what the first request got.
    async fn insert_once(
        &self,
        key: &IdempotencyKey,
        messages: &[Message],
    ) -> Result<Idempotent, StoreError>;

    /// Claims up to `limit` due messages for `worker`: `queued` with `next_attempt_at <= now`, and
    /// `processing` whose lease has expired (their worker died). Claimed messages become
    /// `processing` with a lease until `now + lease`. Two concurrent claims never return the same
    /// message. Oldest due first.
    async fn claim_due(
        &self,
        worker: &str,
        now: SystemTime,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<Claimed>, StoreError>;

    /// Applies attempt results in one transaction: appends each attempt, sets status, send count
    /// (= attempt number) and next attempt time, and releases the lease. Updates whose message is
    /// no longer leased by `worker` are skipped; returns how many were applied.
    async fn record(&self, updates: &[AttemptUpdate]) -> Result<usize, StoreError>;

    /// Returns `worker`'s leased messages among `ids` to `queued` (due now) without recording an
    /// attempt: used at shutdown for claimed messages that were not attempted.
    async fn release(&self, worker: &str, ids: &[String]) -> Result<(), StoreError>;

    /// One message with its attempts.
    async fn get(&self, id: &str) -> Result<Option<StoredMessage>, StoreError>;

    /// A page of messages, newest first, at most `limit`; `page_token` from the previous page.
    async fn list(
        &self,
        filter: &ListFilter,
        page_token: Option<&str>,
        limit: usize,
    ) -> Result<Page, StoreError>;

    /// Queues an abandoned or cancelled message again, due now (its attempts are kept).
    async fn requeue(&self, id: &str, now: SystemTime) -> Result<Requeue, StoreError>;

    /// Deletes `sent` and `cancelled` messages last updated before `cutoff`, and idempotency keys
    /// created before it; returns how many messages.
    async fn delete_finished_before(&self, cutoff: SystemTime) -> Result<u64, StoreError>;

    /// Counts by status and the age of the oldest queued message.
    async fn stats(&self) -> Result<StoreStats, StoreError>;

    /// Checks that the database answers.
    async fn ping(&self) -> Result<(), StoreError>;

    /// How many write transactions are worth running at once: 1 for a single-writer database.
    fn concurrent_writes(&self) -> usize {
        1
    }

    /// Bytes the stored messages and attempts take on disk, indexes included (for benches and
    /// capacity planning).
    async fn footprint(&self) -> Result<u64, StoreError>;
}

// ---------------------------------------------------------------------------------------------
// Backends, and what they share: time and row encoding, URL dispatch, error mapping.

mod codec;
mod postgres;
mod sqlite;

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// Opens the store a database URL names: `sqlite://PATH` (created when missing), `sqlite::memory:`,
/// or `postgres://…` / `postgresql://…`. Migrations run before this returns.
///
/// # Errors
/// [`StoreError::BadUrl`] for any other scheme; [`StoreError::Unavailable`] when the database
/// cannot be opened or migrated (the message never contains the URL's password).
pub async fn open(url: &str) -> Result<std::sync::Arc<dyn MessageStore>, StoreError> {
    if url.starts_with("sqlite:") {
        Ok(std::sync::Arc::new(SqliteStore::open(url).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(std::sync::Arc::new(PostgresStore::open(url).await?))
    } else {
        Err(StoreError::BadUrl(mask_url(url)))
    }
}

/// Whether `token` could have come from [`Page::next_page_token`]. Both backends answer an invalid
/// token with an empty last page (the trait has no error for it), so an API that wants to reject
/// a malformed token with a client error checks it here first.
pub fn is_valid_page_token(token: &str) -> bool {
    parse_page_token(token).is_some()
}

/// The token is the `seq` of the last message of the page: the next page is `seq < token`.
/// A plain number keeps it debuggable; clients are told it is opaque.
fn parse_page_token(token: &str) -> Option<i64> {
    token
        .parse::<i64>()
        .ok()
        .filter(|seq| *seq > 0 && !token.starts_with('+'))
}

/// Times are stored as milliseconds since the Unix epoch in both backends: one integer type,
/// indexable, identical semantics everywhere.
fn to_millis(t: SystemTime) -> i64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_millis()).map_or(i64::MIN, |ms| -ms),
    }
}

fn from_millis(ms: i64) -> SystemTime {
    let magnitude = Duration::from_millis(ms.unsigned_abs());
    if ms >= 0 {
        SystemTime::UNIX_EPOCH + magnitude
    } else {
        SystemTime::UNIX_EPOCH - magnitude
    }
}

fn duration_millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// `usize` limits become SQL `LIMIT`s.
fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// A message ready to insert: its id (given or assigned) and its JSON with that id inside, so a
/// stored message is self-describing, encoded for the `message` column (see [`codec`]).
struct NewRow {
    id: String,
    recipient: String,
    template_type: &'static str,
    /// The effective channel ([`Message::channel`]), for the list filter.
    channel: String,
    message: Vec<u8>,
}

/// A message serialized with an id it did not carry, without copying the message.
#[derive(Serialize)]
struct WithId<'a> {
    id: &'a str,
    #[serde(flatten)]
    message: &'a Message,
}

/// The answer for a key found in the store with `stored_hash` and `ids` (a JSON array).
fn replay(key: &IdempotencyKey, stored_hash: &str, ids: &str) -> Result<Idempotent, StoreError> {
    if stored_hash != key.body_hash {
        return Ok(Idempotent::Conflict);
    }
    serde_json::from_str(ids)
        .map(Idempotent::Replayed)
        .map_err(|e| StoreError::Corrupt {
            id: format!("idempotency key {:?}", key.key),
            reason: e.to_string(),
        })
}

fn ids_json(rows: &[NewRow]) -> String {
    serde_json::to_string(&rows.iter().map(|r| r.id.as_str()).collect::<Vec<_>>())
        .unwrap_or_else(|_| "[]".to_owned())
}

fn new_rows(messages: &[Message]) -> Result<Vec<NewRow>, StoreError> {
    messages
        .iter()
        .map(|m| {
            // An empty id is treated as none: it could never be addressed by `get`. New ids are
            // time-ordered (UUIDv7), so the id index grows at its end instead of splitting pages
            // at random.
            let (id, json) = match &m.id {
                Some(id) if !id.is_empty() => (id.clone(), serde_json::to_string(m)),
                None => {
                    let id = uuid::Uuid::now_v7().to_string();
                    let json = serde_json::to_string(&WithId {
                        id: &id,
                        message: m,
                    });
                    (id, json)
                }
                Some(_) => {
                    let id = uuid::Uuid::now_v7().to_string();
                    let mut m = m.clone();
                    m.id = Some(id.clone());
                    (id, serde_json::to_string(&m))
                }
            };
            let json = json.map_err(|e| StoreError::Corrupt {
                id: id.clone(),
                reason: format!("cannot encode message: {e}"),
            })?;
            Ok(NewRow {
                id,
                recipient: m.recipient.clone(),
                template_type: m.template_type.as_str(),
                channel: m.channel().to_owned(),
                message: codec::encode(&json),
            })
        })
        .collect()
}

fn encode_attempt(id: &str, attempt: &Attempt) -> Result<String, StoreError> {
    serde_json::to_string(attempt).map_err(|e| StoreError::Corrupt {
        id: id.to_owned(),
        reason: format!("cannot encode attempt: {e}"),
    })
}

/// The SQL and page position of a [`MessageStore::list`] call, shared by both backends;
/// `placeholder(n)` writes the n-th (1-based) bind parameter in the backend's syntax. `None` means
/// the answer is an empty page (limit 0, or a token this store did not make). Parameters bind in
/// order: status, recipient, template type, channel, seq (each only when used), then the limit.
/// `channel_expr` is the backend's SQL for a row's effective channel (the `channel` column);
/// `messages` its SQL for the rows with every message column.
fn list_plan(
    filter: &ListFilter,
    page_token: Option<&str>,
    limit: usize,
    placeholder: fn(usize) -> String,
    channel_expr: &str,
    messages: &str,
) -> Option<(String, Option<i64>)> {
    let before = match page_token.map(parse_page_token) {
        None => None,
        Some(Some(seq)) => Some(seq),
        // Not a token this store made: an empty last page (see `is_valid_page_token`).
        Some(None) => return None,
    };
    if limit == 0 {
        return None;
    }
    // Only the filters in use appear in the SQL, so each shape gets the index it needs.
    let mut conditions = Vec::new();
    let channel_condition = format!("{channel_expr} =");
    for (used, column) in [
        (filter.status.is_some(), "status ="),
        (filter.recipient.is_some(), "recipient ="),
        (filter.template_type.is_some(), "template_type ="),
        (filter.channel.is_some(), channel_condition.as_str()),
        (before.is_some(), "seq <"),
    ] {
        if used {
            conditions.push(format!("{column} {}", placeholder(conditions.len() + 1)));
        }
    }
    let limit_param = placeholder(conditions.len() + 1);
    let where_clause = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    // One more than asked tells whether there is a next page.
    let sql = format!(
        "SELECT {MESSAGE_COLUMNS} FROM \
         (SELECT * FROM {messages} {where_clause} ORDER BY seq DESC LIMIT {limit_param}) m \
         LEFT JOIN attempts a ON a.message_id = m.id \
         ORDER BY m.seq DESC, a.number"
    );
    Some((sql, before))
}

/// The first update of each message, in order: one attempt clears the lease, so a second update
/// of the same message in one batch would be skipped anyway.
fn first_per_message(updates: &[AttemptUpdate]) -> Vec<&AttemptUpdate> {
    let mut seen = std::collections::HashSet::with_capacity(updates.len());
    updates
        .iter()
        .filter(|u| seen.insert(u.id.as_str()))
        .collect()
}

/// The status column a recorded update writes. `Processing` would leave a message leased by no one
/// (and so never claimed again): it is stored as `Queued`, due at `next_attempt_at`.
fn recorded_status(status: Status) -> &'static str {
    match status {
        Status::Processing => Status::Queued.as_str(),
        s => s.as_str(),
    }
}

/// The `next_attempt_at` a recorded update writes: its due time while it waits for another
/// attempt; for a finished message, the time it finished (`now`, also its `updated_at`), so that
/// retention finds finished messages by age through the claim index `(status, next_attempt_at)`.
fn recorded_due(u: &AttemptUpdate, now: i64) -> i64 {
    match u.status {
        Status::Queued | Status::Processing => to_millis(u.next_attempt_at),
        Status::Sent | Status::Abandoned | Status::Cancelled => now,
    }
}

fn decode_message(id: &str, stored: &[u8]) -> Result<Message, StoreError> {
    codec::decode(id, stored)
}

fn decode_status(id: &str, s: &str) -> Result<Status, StoreError> {
    s.parse().map_err(|reason| StoreError::Corrupt {
        id: id.to_owned(),
        reason,
    })
}

fn decode_count(id: &str, n: i64) -> Result<u32, StoreError> {
    u32::try_from(n).map_err(|_| StoreError::Corrupt {
        id: id.to_owned(),
        reason: format!("send count {n} out of range"),
    })
}

/// One message joined with one of its attempts (or none): what `get` and `list` read in a single
/// statement, so a message and its attempts come from one snapshot.
#[derive(sqlx::FromRow)]
struct MessageRow {
    id: String,
    status: String,
    send_count: i64,
    message: Vec<u8>,
    created_at: i64,
    updated_at: i64,
    next_attempt_at: i64,
    seq: i64,
    attempt: Option<String>,
}

/// The columns [`MessageRow`] reads, from `messages m LEFT JOIN attempts a`.
const MESSAGE_COLUMNS: &str = "m.id, m.status, m.send_count, m.message, m.created_at, \
     m.updated_at, m.next_attempt_at, m.seq, a.record AS attempt";

/// Folds rows ordered by message then attempt number into messages; returns each with its `seq`.
fn assemble(rows: Vec<MessageRow>) -> Result<Vec<(i64, StoredMessage)>, StoreError> {
    let mut out: Vec<(i64, StoredMessage)> = Vec::new();
    for row in rows {
        let attempt =
            match &row.attempt {
                Some(json) => Some(serde_json::from_str::<Attempt>(json).map_err(|e| {
                    StoreError::Corrupt {
                        id: row.id.clone(),
                        reason: format!("attempt: {e}"),
                    }
                })?),
                None => None,
            };
        if let Some((_, last)) = out.last_mut().filter(|(_, m)| m.id == row.id) {
            last.attempts.extend(attempt);
            continue;
        }
        out.push((
            row.seq,
            StoredMessage {
                status: decode_status(&row.id, &row.status)?,
                send_count: decode_count(&row.id, row.send_count)?,
                message: decode_message(&row.id, &row.message)?,
                attempts: attempt.into_iter().collect(),
                created_at: from_millis(row.created_at),
                updated_at: from_millis(row.updated_at),
                next_attempt_at: from_millis(row.next_attempt_at),
                id: row.id,
            },
        ));
    }
    Ok(out)
}

/// A row a claim returns.
#[derive(sqlx::FromRow)]
struct ClaimRow {
    id: String,
    message: Vec<u8>,
    send_count: i64,
    next_attempt_at: i64,
    seq: i64,
}

/// Claimed rows in claim order, oldest due first (`RETURNING` order is unspecified).
///
/// A row that cannot be decoded is left out and logged: it stays `processing` under this lease,
/// visible in the stats and the API, instead of failing every claim that would include it.
fn claimed(mut rows: Vec<ClaimRow>) -> Vec<Claimed> {
    rows.sort_by_key(|r| (r.next_attempt_at, r.seq));
    rows.into_iter()
        .filter_map(|r| {
            let decoded = decode_message(&r.id, &r.message)
                .and_then(|m| Ok((m, decode_count(&r.id, r.send_count)?)));
            match decoded {
                Ok((message, send_count)) => Some(Claimed {
                    id: r.id,
                    message,
                    send_count,
                }),
                Err(e) => {
                    tracing::error!(error = %e, "claimed message cannot be decoded; left processing");
                    None
                }
            }
        })
        .collect()
}

/// Stats from per-status counts (statuses with no messages are absent) and the oldest queued
/// `created_at`.
fn stats_of(
    counts: Vec<(String, i64)>,
    oldest_queued: Option<i64>,
) -> Result<StoreStats, StoreError> {
    let mut by_status: Vec<(Status, u64)> = Status::ALL.iter().map(|s| (*s, 0)).collect();
    for (status, n) in counts {
        let status = decode_status("(stats)", &status)?;
        if let Some(slot) = by_status.iter_mut().find(|(s, _)| *s == status) {
            slot.1 = u64::try_from(n).unwrap_or(0);
        }
    }
    Ok(StoreStats {
        by_status,
        oldest_queued_at: oldest_queued.map(from_millis),
    })
}

fn empty_page() -> Page {
    Page {
        messages: Vec::new(),
        next_page_token: None,
    }
}

/// Turns fetched rows (at most `limit + 1` messages, newest first) into a page.
fn page_of(rows: Vec<MessageRow>, limit: usize) -> Result<Page, StoreError> {
    let mut messages = assemble(rows)?;
    let next_page_token = if messages.len() > limit {
        messages.truncate(limit);
        messages.last().map(|(seq, _)| seq.to_string())
    } else {
        None
    };
    Ok(Page {
        messages: messages.into_iter().map(|(_, m)| m).collect(),
        next_page_token,
    })
}

/// Maps a driver error; `secret` (the URL's password, if any) is scrubbed from the text.
fn unavailable(e: impl std::fmt::Display, secret: Option<&str>) -> StoreError {
    let mut msg = e.to_string();
    if let Some(secret) = secret.filter(|s| !s.is_empty()) {
        msg = msg.replace(secret, "***");
    }
    StoreError::Unavailable(msg)
}

/// The password in a URL's userinfo or `password=` parameter, for scrubbing error messages.
fn url_password(url: &str) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let from_userinfo = authority
        .rsplit_once('@')
        .and_then(|(userinfo, _)| userinfo.split_once(':'))
        .map(|(_, password)| password.to_owned());
    let from_query = url
        .split_once('?')
        .and_then(|(_, query)| query.split('&').find_map(|kv| kv.strip_prefix("password=")))
        .map(str::to_owned);
    from_userinfo.or(from_query).filter(|p| !p.is_empty())
}

#[cfg(test)]
mod helper_tests {
    use super::*;

    #[test]
    fn millis_round_trip_both_sides_of_the_epoch() {
        for ms in [0_i64, 1, 1_763_700_000_123, -1, -86_400_000] {
            assert_eq!(to_millis(from_millis(ms)), ms);
        }
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            mask_url("postgres://app:s3cret@db:5432/courier"),
            "postgres://app:***@db:5432/courier"
        );
        assert_eq!(
            mask_url("postgres://db/courier?user=app&password=s3cret"),
            "postgres://db/courier?user=***&password=***"
        );
        assert_eq!(mask_url("sqlite://courier.db"), "sqlite://courier.db");
        let e = unavailable("auth failed for s3cret", Some("s3cret"));
        assert_eq!(e.to_string(), "store unavailable: auth failed for ***");
    }

    #[test]
    fn page_tokens() {
        assert!(is_valid_page_token("42"));
        for bad in ["", "0", "-3", "+4", "x", "4.0", "99999999999999999999"] {
            assert!(!is_valid_page_token(bad), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn open_dispatches_on_the_scheme() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new.db");
        let store = open(&format!("sqlite://{}", path.display())).await.unwrap();
        assert!(path.exists(), "the database file is created");
        let ids = store.insert(&[sample()]).await.unwrap();
        assert!(store.get(&ids[0]).await.unwrap().is_some());
        drop(store);
        // Reopening finds the data (and the migrations already applied).
        let store = open(&format!("sqlite:{}", path.display())).await.unwrap();
        assert!(store.get(&ids[0]).await.unwrap().is_some());

        let memory = open("sqlite::memory:").await.unwrap();
        memory.ping().await.unwrap();
        assert!(memory.get(&ids[0]).await.unwrap().is_none());

        let missing_dir = dir.path().join("no/such/dir/x.db");
        let err = open(&format!("sqlite://{}", missing_dir.display()))
            .await
            .err();
        assert!(matches!(err, Some(StoreError::Unavailable(_))), "{err:?}");
    }

    fn sample() -> Message {
        serde_json::from_value(serde_json::json!({
            "recipient": "a@example.com",
            "template_type": "stub"
        }))
        .unwrap()
    }

    #[tokio::test]
    async fn unknown_schemes_are_rejected_without_the_password() {
        let err = open("mysql://root:hunter2@db/x").await.err();
        match err {
            Some(StoreError::BadUrl(url)) => assert_eq!(url, "mysql://root:***@db/x"),
            other => panic!("expected BadUrl, got {other:?}"),
        }
    }
}
