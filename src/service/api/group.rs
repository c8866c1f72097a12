//! Group commit for the API's inserts: the messages of every request waiting while the store is
//! busy go into the next transaction (one fsync with SQLite), so concurrency turns into larger
//! transactions instead of a longer queue. The 202 is sent only after that transaction commits.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

use crate::message::Message;
use crate::store::{MessageStore, StoreError};

/// Most messages committed in one transaction.
const MAX_GROUP: usize = 1024;

/// How long a group waits for stragglers when far fewer requests are waiting than the previous
/// group had (see [`run`]); the timer's resolution.
const LINGER: Duration = Duration::from_millis(1);

/// The ids assigned to a request's messages, or why they were not stored.
pub(super) type InsertReply = oneshot::Sender<Result<Vec<String>, StoreError>>;

/// One request's messages and where its answer goes.
pub(super) type Pending = (Vec<Message>, InsertReply);

/// Commits what `rx` brings, at most `writers` transactions at a time.
///
/// A group is formed when a writer is free, from every request waiting at that moment: while a
/// transaction runs, the next group fills. Clients that post one message, wait for the answer and
/// post again come back together, just after the group that answered them was cut; so when far
/// fewer requests wait than the previous group held, the group waits up to [`LINGER`] for them
/// rather than committing one message now and the rest one transaction later.
pub(super) async fn run(
    store: Arc<dyn MessageStore>,
    mut rx: mpsc::Receiver<Pending>,
    writers: usize,
) {
    let slots = Arc::new(Semaphore::new(writers.max(1)));
    let mut previous = 0usize;
    while let Some(first) = rx.recv().await {
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let mut group = vec![first];
        let mut total = group[0].0.len();
        drain(&mut rx, &mut group, &mut total);
        if group.len() * 4 < previous && total < MAX_GROUP {
            let deadline = tokio::time::Instant::now() + LINGER;
            while group.len() * 2 < previous && total < MAX_GROUP {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(next)) => {
                        total += next.0.len();
                        group.push(next);
                        drain(&mut rx, &mut group, &mut total);
                    }
                    Ok(None) | Err(_) => break,
                }
            }
        }
        previous = group.len();
        if writers <= 1 {
            commit(&*store, group, slot).await;
        } else {
            let store = Arc::clone(&store);
            tokio::spawn(async move { commit(&*store, group, slot).await });
        }
    }
}

/// Moves every request already waiting into `group`, up to [`MAX_GROUP`] messages.
fn drain(rx: &mut mpsc::Receiver<Pending>, group: &mut Vec<Pending>, total: &mut usize) {
    while *total < MAX_GROUP {
        match rx.try_recv() {
            Ok(next) => {
                *total += next.0.len();
                group.push(next);
            }
            Err(_) => break,
        }
    }
}

/// Stores `group` in one transaction and answers each request. If that fails (say one request
/// repeats an existing id), each request is retried alone so that one bad request cannot fail
/// the others.
async fn commit(store: &dyn MessageStore, group: Vec<Pending>, _slot: OwnedSemaphorePermit) {
    if group.len() == 1 {
        let Some((messages, reply)) = group.into_iter().next() else {
            return;
        };
        let _ = reply.send(store.insert_owned(messages).await.map_err(|(e, _)| e));
        return;
    }
    let mut all = Vec::with_capacity(group.iter().map(|(m, _)| m.len()).sum());
    let mut replies = Vec::with_capacity(group.len());
    for (messages, reply) in group {
        replies.push((messages.len(), reply));
        all.extend(messages);
    }
    match store.insert_owned(all).await {
        Ok(ids) => {
            let mut ids = ids.into_iter();
            for (n, reply) in replies {
                let _ = reply.send(Ok(ids.by_ref().take(n).collect()));
            }
        }
        Err((_, all)) => {
            let mut from = 0;
            for (n, reply) in replies {
                let _ = reply.send(store.insert(&all[from..from + n]).await);
                from += n;
            }
        }
    }
}
