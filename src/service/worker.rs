//! The delivery worker: claims due messages in batches, delivers them with bounded concurrency,
//! and records the outcomes through one batching writer, so that the store sees few, large
//! transactions on the hot path.
//!
//! Retries are persisted, not slept: a retryable failure stores the next attempt time, so a
//! restart keeps the schedule. A message whose worker dies stays leased until the lease expires,
//! then any worker takes it over (at-least-once delivery).

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{mpsc, watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use crate::config::settings::ServeSettings;
use crate::delivery::{Attempt, Courier, Decision, RetryPolicy};
use crate::metrics::Metrics;
use crate::store::{AttemptUpdate, Claimed, MessageStore, Status, StoreError};

/// Most messages claimed, and most updates written, in one store call.
const BATCH: usize = 256;

/// What a worker needs.
pub struct Worker {
    /// This worker's lease owner name (unique per process).
    pub(crate) id: String,
    pub(crate) store: Arc<dyn MessageStore>,
    pub(crate) courier: Arc<Courier>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) settings: ServeSettings,
    /// Notified when the API stores new messages, so they go out without waiting for a poll.
    pub(crate) wake: Arc<Notify>,
    /// Set while the claim loop runs (for readiness).
    pub(crate) running: Arc<AtomicBool>,
}

/// The status and due time that follow an attempt: the policy's decision, persisted.
pub fn next_state(policy: &RetryPolicy, a: &Attempt, now: SystemTime) -> (Status, SystemTime) {
    match policy.decide(a) {
        Decision::Retry { after, .. } => (Status::Queued, now + after),
        end => (end.outcome().map_or(Status::Queued, Status::from), now),
    }
}

/// Claimed messages waiting for a delivery slot, with when each was claimed. Claiming ahead in
/// batches keeps store round trips few; the lease covers the short wait.
type Backlog = VecDeque<(Claimed, Instant)>;

/// Deliveries running, and the ids they hold leases on.
#[derive(Default)]
struct InFlight {
    tasks: JoinSet<()>,
    ids: Arc<Mutex<HashSet<String>>>,
}

impl Worker {
    /// Runs until `shutdown` turns true, then stops claiming, gives in-flight deliveries the grace
    /// period, releases the leases of those still running, and flushes every recorded attempt.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let sem = Arc::new(Semaphore::new(self.settings.concurrency.max(1)));
        let (tx, rx) = mpsc::unbounded_channel::<(AttemptUpdate, OwnedSemaphorePermit)>();
        let writer = tokio::spawn(write_updates(Arc::clone(&self.store), rx));
        let mut inflight = InFlight::default();
        self.running.store(true, Ordering::Release);
        tracing::info!(worker = %self.id, concurrency = self.settings.concurrency, "worker started");
        let mut backlog = Backlog::new();
        let stale_after = self.settings.lease / 2;
        let mut drained = false;
        loop {
            // Reap finished deliveries so the set stays small.
            while inflight.tasks.try_join_next().is_some() {}
            if *shutdown.borrow() {
                break;
            }
            if !drained {
                match self.claim(&mut backlog).await {
                    Ok(more) => drained = !more,
                    Err(e) => {
                        tracing::warn!("claiming messages failed: {e}; retrying");
                        let wait = self.settings.poll_interval.max(Duration::from_millis(500));
                        self.idle(&mut shutdown, wait).await;
                        continue;
                    }
                }
            }
            let Some((next, claimed_at)) = backlog.pop_front() else {
                // Wait for new messages, the poll interval (retries falling due, other
                // processes' inserts), or shutdown.
                self.idle(&mut shutdown, self.settings.poll_interval).await;
                drained = false;
                continue;
            };
            let permit = tokio::select! {
                p = Arc::clone(&sem).acquire_owned() => match p { Ok(p) => p, Err(_) => { backlog.push_front((next, claimed_at)); break } },
                _ = shutdown.changed() => { backlog.push_front((next, claimed_at)); break }
            };
            // An entry that waited half its lease is handed back rather than risk another
            // process taking it over mid-delivery.
            if claimed_at.elapsed() > stale_after {
                drop(permit);
                self.release_stale(next, &mut backlog).await;
                continue;
            }
            self.dispatch(next, permit, &tx, &mut inflight);
        }
        self.running.store(false, Ordering::Release);
        drop(tx);
        self.drain(inflight, backlog, writer).await;
    }

    /// Claim phase: tops the backlog up to one round of deliveries. Returns whether more may be
    /// due (false when the store had fewer than asked).
    async fn claim(&self, backlog: &mut Backlog) -> Result<bool, StoreError> {
        let ahead = self.settings.concurrency.max(1);
        if backlog.len() > ahead / 2 {
            return Ok(true);
        }
        let want = (ahead - backlog.len()).clamp(1, BATCH);
        let claimed = self
            .store
            .claim_due(&self.id, SystemTime::now(), want, self.settings.lease)
            .await?;
        let more = claimed.len() >= want;
        let at = Instant::now();
        backlog.extend(claimed.into_iter().map(|c| (c, at)));
        Ok(more)
    }

    /// Hands `next` and the rest of the backlog back to the store.
    async fn release_stale(&self, next: Claimed, backlog: &mut Backlog) {
        let stale: Vec<String> = std::iter::once(next.id)
            .chain(backlog.drain(..).map(|(c, _)| c.id))
            .collect();
        tracing::warn!(
            count = stale.len(),
            "claimed messages waited half their lease for a slot; releasing them"
        );
        if let Err(e) = self.store.release(&self.id, &stale).await {
            tracing::warn!("releasing stale claims failed ({e}); their leases expire");
        }
    }

    /// Dispatch phase: delivers `next` in its own task holding `permit` until the outcome is
    /// stored (see [`write_updates`]).
    fn dispatch(
        &self,
        next: Claimed,
        permit: OwnedSemaphorePermit,
        tx: &mpsc::UnboundedSender<(AttemptUpdate, OwnedSemaphorePermit)>,
        inflight: &mut InFlight,
    ) {
        if let Ok(mut ids) = inflight.ids.lock() {
            ids.insert(next.id.clone());
        }
        let (courier, metrics, tx, ids) = (
            Arc::clone(&self.courier),
            Arc::clone(&self.metrics),
            tx.clone(),
            Arc::clone(&inflight.ids),
        );
        let worker = self.id.clone();
        inflight.tasks.spawn(async move {
            let update = deliver_one(&courier, &metrics, &worker, next).await;
            if let Ok(mut ids) = ids.lock() {
                ids.remove(&update.id);
            }
            let _ = tx.send((update, permit));
        });
    }

    /// Drain phase: lets in-flight deliveries finish within the grace period, waits for every
    /// recorded attempt to be written, then releases what never finished or never started.
    async fn drain(
        &self,
        mut inflight: InFlight,
        backlog: Backlog,
        writer: tokio::task::JoinHandle<()>,
    ) {
        tracing::info!(
            inflight = inflight.tasks.len(),
            "worker stopping: no more claims"
        );
        let grace = tokio::time::sleep(self.settings.shutdown_grace);
        tokio::pin!(grace);
        loop {
            tokio::select! {
                next = inflight.tasks.join_next() => if next.is_none() { break },
                _ = &mut grace => {
                    inflight.tasks.abort_all();
                    break;
                }
            }
        }
        while inflight.tasks.join_next().await.is_some() {}
        let mut unfinished: Vec<String> = inflight
            .ids
            .lock()
            .map(|ids| ids.iter().cloned().collect())
            .unwrap_or_default();
        // Claimed but never started: hand them back at once rather than at lease expiry.
        unfinished.extend(backlog.into_iter().map(|(c, _)| c.id));
        // Every recorded attempt reaches the store before the leases of the rest are released
        // (the writer ends once every delivery task has dropped its sender).
        let _ = writer.await;
        if !unfinished.is_empty() {
            tracing::warn!(
                count = unfinished.len(),
                "releasing messages still in flight after the grace period"
            );
            if let Err(e) = self.store.release(&self.id, &unfinished).await {
                tracing::error!("releasing leases failed ({e}); they expire after the lease time");
            }
        }
        tracing::info!("worker stopped");
    }

    async fn idle(&self, shutdown: &mut watch::Receiver<bool>, wait: Duration) {
        tokio::select! {
            _ = self.wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => {}
        }
    }
}

async fn deliver_one(
    courier: &Courier,
    metrics: &Metrics,
    worker: &str,
    c: Claimed,
) -> AttemptUpdate {
    let attempt = courier.attempt(&c.message, c.send_count + 1).await;
    metrics.attempt(&attempt);
    let (status, next_attempt_at) = next_state(&courier.policy(), &attempt, SystemTime::now());
    if status == Status::Abandoned {
        tracing::warn!(id = %c.id, attempts = attempt.number, error = attempt.error.as_deref().unwrap_or(""), "message abandoned");
    }
    AttemptUpdate {
        id: c.id,
        worker: worker.to_owned(),
        attempt,
        status,
        next_attempt_at,
    }
}

/// Writes attempt updates in batches: whatever has accumulated while the previous write ran goes
/// in the next transaction. A failed write is retried until it succeeds; nothing is dropped.
///
/// Each update travels with its delivery slot's permit, released only after the write: so at most
/// `concurrency` messages are ever delivered but unrecorded (what a crash would send twice; a
/// power loss, with SQLite, also the records of the last few milliseconds), and claiming slows
/// down when the store falls behind.
async fn write_updates(
    store: Arc<dyn MessageStore>,
    mut rx: mpsc::UnboundedReceiver<(AttemptUpdate, OwnedSemaphorePermit)>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut permits = Vec::with_capacity(BATCH);
    while let Some((first, permit)) = rx.recv().await {
        batch.push(first);
        permits.push(permit);
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok((u, p)) => {
                    batch.push(u);
                    permits.push(p);
                }
                Err(_) => break,
            }
        }
        let mut backoff = Duration::from_millis(50);
        loop {
            match store.record(&batch).await {
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(
                        "recording {} attempts failed: {e}; retrying in {backoff:?}",
                        batch.len()
                    );
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        batch.clear();
        permits.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::settings::RetrySettings;
    use crate::delivery::AttemptClass;

    fn attempt(number: u32, class: AttemptClass, retry_after_s: Option<f64>) -> Attempt {
        Attempt {
            number,
            started_at: SystemTime::UNIX_EPOCH,
            latency_ms: 1.0,
            render_ms: None,
            class,
            status: None,
            error_kind: None,
            error: None,
            response_body: None,
            retry_after_s,
            notes: Vec::new(),
        }
    }

    #[test]
    fn next_state_follows_the_policy() {
        let p = RetryPolicy::new(2, RetrySettings::default());
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        assert_eq!(
            next_state(&p, &attempt(1, AttemptClass::Delivered, None), now),
            (Status::Sent, now)
        );
        assert_eq!(
            next_state(&p, &attempt(1, AttemptClass::Cancelled, None), now).0,
            Status::Cancelled
        );
        assert_eq!(
            next_state(&p, &attempt(1, AttemptClass::Permanent, None), now).0,
            Status::Abandoned
        );
        let (s, due) = next_state(&p, &attempt(1, AttemptClass::Retryable, None), now);
        assert_eq!(s, Status::Queued);
        assert!(due >= now && due <= now + Duration::from_secs(1));
        let (_, due) = next_state(&p, &attempt(2, AttemptClass::Retryable, Some(30.0)), now);
        assert_eq!(due, now + Duration::from_secs(30), "Retry-After wins");
        assert_eq!(
            next_state(&p, &attempt(3, AttemptClass::Retryable, None), now).0,
            Status::Abandoned
        );
    }
}
