//! Durable message storage for `courier serve`: one trait, [`MessageStore`], with an embedded
//! SQLite backend (the zero-setup default) and a PostgreSQL backend for several processes sharing
//! the work. Both run the same contract tests.
//!
//! Lifecycle of a stored message: `queued` → (claimed) `processing` → `sent` | `queued` again with a
//! later `next_attempt_at` | `abandoned` | `cancelled`. A claim is a lease: a process that dies
//! leaves its messages `processing` with an expired lease, and the next claim takes them over.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::delivery::Attempt;
use crate::message::Message;

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
    /// Its id.
    pub id: String,
    /// The message.
    pub message: Message,
    /// Attempts made before this claim.
    pub send_count: u32,
}

/// What a worker decided after one attempt of a claimed message.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptUpdate {
    /// The message.
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

/// Durable message storage. All methods that write do so in one transaction, and are safe to call
/// concurrently from several processes sharing one database.
#[async_trait::async_trait]
pub trait MessageStore: Send + Sync {
    /// Stores new messages (`queued`, due now) in one transaction and returns their ids in order,
    /// assigning a UUID v4 to each message without one. Nothing is stored if any insert fails.
    async fn insert(&self, messages: &[Message]) -> Result<Vec<String>, StoreError>;

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

    /// Deletes `sent` and `cancelled` messages last updated before `cutoff`; returns how many.
    async fn delete_finished_before(&self, cutoff: SystemTime) -> Result<u64, StoreError>;

    /// Counts by status and the age of the oldest queued message.
    async fn stats(&self) -> Result<StoreStats, StoreError>;

    /// Checks that the database answers.
    async fn ping(&self) -> Result<(), StoreError>;
}
