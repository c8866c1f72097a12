//! The `MessageStore` contract, as tests every backend runs (through the shared harness in
//! `backend.rs`): SQLite on a temporary file and in memory always; PostgreSQL when run with
//! `--ignored` and `COURIER_TEST_POSTGRES_URL` naming a database.
//!
//! One async function per behaviour, taking the store; the macros at the end run each on each
//! backend.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use jsonnet_courier::delivery::{Attempt, AttemptClass, ErrorKind};
use jsonnet_courier::message::Message;
use jsonnet_courier::store::*;

use crate::backend::{Backend, TestStore};

const MINUTE: Duration = Duration::from_secs(60);
const SECOND: Duration = Duration::from_secs(1);

// ---------------------------------------------------------------------------------------------
// Fixtures

/// A message using every field, with a key order that JSONB would not keep.
fn message(recipient: &str, id: Option<&str>) -> Message {
    let mut v = serde_json::json!({
        "recipient": recipient,
        "template_type": "verification_code_valid",
        "template_data": {
            "to": recipient,
            "verification_code": "123456",
            "identity": {"id": "u-1", "traits": {"email": recipient, "name": {"last": "L", "first": "F"}}},
            "zz_custom": {"z": 1, "a": [1, "two", null, 2.5]},
            "aa_custom": "ünïcödé ✓"
        },
        "subject": "Verify your account",
        "body": "Your code is 123456",
        "html_body": "<b>123456</b>",
        "message_type": "email",
        "channel": "email-eu",
        "request_headers": {"User-Agent": ["curl/8"], "Accept-Language": ["fr"]}
    });
    if let Some(id) = id {
        v["id"] = id.into();
    }
    serde_json::from_value(v).expect("fixture is a valid message")
}

fn messages(n: usize, prefix: &str) -> Vec<Message> {
    (0..n)
        .map(|i| message(&format!("{prefix}{i}@example.com"), None))
        .collect()
}

fn attempt(number: u32, class: AttemptClass) -> Attempt {
    let failed = class != AttemptClass::Delivered;
    Attempt {
        number,
        started_at: SystemTime::UNIX_EPOCH
            + Duration::from_millis(1_763_700_000_000 + u64::from(number)),
        latency_ms: 12.5 * f64::from(number),
        render_ms: Some(0.25),
        class,
        status: Some(if failed { 503 } else { 202 }),
        error_kind: failed.then_some(ErrorKind::Status),
        error: failed.then(|| format!("attempt {number} failed")),
        response_body: Some(format!("{{\"n\":{number}}}")),
        retry_after_s: failed.then_some(1.5),
        notes: if failed {
            Vec::new()
        } else {
            vec![format!("subject template of attempt {number} fell back")]
        },
    }
}

fn update(id: &str, worker: &str, number: u32, status: Status, due: SystemTime) -> AttemptUpdate {
    let class = match status {
        Status::Sent => AttemptClass::Delivered,
        Status::Queued => AttemptClass::Retryable,
        Status::Cancelled => AttemptClass::Cancelled,
        _ => AttemptClass::Permanent,
    };
    AttemptUpdate {
        id: id.to_owned(),
        worker: worker.to_owned(),
        attempt: attempt(number, class),
        status,
        next_attempt_at: due,
    }
}

/// `t` at the stores' precision (milliseconds).
fn ms(t: SystemTime) -> SystemTime {
    let since = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("test times are after 1970");
    SystemTime::UNIX_EPOCH + Duration::from_millis(since.as_millis() as u64)
}

async fn must_get(store: &dyn MessageStore, id: &str) -> StoredMessage {
    store
        .get(id)
        .await
        .expect("get")
        .unwrap_or_else(|| panic!("message {id} not found"))
}

async fn claim_ids(
    store: &dyn MessageStore,
    worker: &str,
    now: SystemTime,
    limit: usize,
) -> Vec<String> {
    store
        .claim_due(worker, now, limit, MINUTE)
        .await
        .expect("claim")
        .into_iter()
        .map(|c| c.id)
        .collect()
}

async fn count(store: &dyn MessageStore, status: Status) -> u64 {
    let stats = store.stats().await.expect("stats");
    stats
        .by_status
        .iter()
        .find(|(s, _)| *s == status)
        .map(|(_, n)| *n)
        .expect("every status is counted")
}

fn ids_of(page: &Page) -> Vec<String> {
    page.messages.iter().map(|m| m.id.clone()).collect()
}

// ---------------------------------------------------------------------------------------------
// Behaviours

async fn insert_get_round_trip(store: &dyn MessageStore) {
    let rich = message("ann@example.com", None);
    let given = message("bob@example.com", Some("given-1"));
    let before = ms(SystemTime::now());
    let ids = store
        .insert(&[rich.clone(), given.clone()])
        .await
        .expect("insert");
    let after = SystemTime::now();

    assert_eq!(ids.len(), 2);
    assert_eq!(ids[1], "given-1");
    let uuid = uuid::Uuid::parse_str(&ids[0]).expect("assigned id is a UUID");
    // Time-ordered, so the id index grows at its end.
    assert_eq!(uuid.get_version_num(), 7);

    let got = must_get(store, &ids[0]).await;
    let mut expected = rich.clone();
    expected.id = Some(ids[0].clone());
    assert_eq!(got.id, ids[0]);
    assert_eq!(got.message, expected);
    // Byte for byte, key order included (Map equality ignores order).
    assert_eq!(
        serde_json::to_string(&got.message).unwrap(),
        serde_json::to_string(&expected).unwrap()
    );
    assert_eq!(got.status, Status::Queued);
    assert_eq!(got.send_count, 0);
    assert!(got.attempts.is_empty());
    assert!(
        got.created_at >= before && got.created_at <= after,
        "{got:?}"
    );
    assert_eq!(got.updated_at, got.created_at);
    assert_eq!(got.next_attempt_at, got.created_at);

    let got = must_get(store, "given-1").await;
    assert_eq!(got.message, given);
    assert!(store.get("missing").await.unwrap().is_none());

    // A duplicate anywhere in a batch stores nothing of it.
    let err = store
        .insert(&[message("c@example.com", Some("fresh-1")), given.clone()])
        .await
        .expect_err("duplicate id");
    assert!(
        matches!(&err, StoreError::Duplicate(id) if id == "given-1"),
        "{err:?}"
    );
    assert!(store.get("fresh-1").await.unwrap().is_none());
    let same = message("d@example.com", Some("twice"));
    let err = store
        .insert(&[same.clone(), same])
        .await
        .expect_err("repeated id in one batch");
    assert!(
        matches!(&err, StoreError::Duplicate(id) if id == "twice"),
        "{err:?}"
    );
    assert!(store.get("twice").await.unwrap().is_none());
    assert_eq!(count(store, Status::Queued).await, 2);

    // An empty id is treated as none.
    let ids = store
        .insert(&[message("e@example.com", Some(""))])
        .await
        .unwrap();
    assert!(uuid::Uuid::parse_str(&ids[0]).is_ok(), "{ids:?}");
    assert_eq!(store.insert(&[]).await.unwrap(), Vec::<String>::new());
    store.ping().await.expect("ping");
}

async fn claim_only_due_in_order(store: &dyn MessageStore) {
    let t0 = SystemTime::now();
    let ids = store.insert(&messages(5, "due")).await.unwrap();

    assert!(claim_ids(store, "w1", t0 - MINUTE, 10).await.is_empty());
    let first = store.claim_due("w1", t0 + SECOND, 2, MINUTE).await.unwrap();
    assert_eq!(
        first.iter().map(|c| &c.id).collect::<Vec<_>>(),
        [&ids[0], &ids[1]]
    );
    assert_eq!(first[0].send_count, 0);
    assert_eq!(first[0].message.id.as_deref(), Some(ids[0].as_str()));
    assert_eq!(first[0].message.recipient, "due0@example.com");
    assert_eq!(must_get(store, &ids[0]).await.status, Status::Processing);
    assert_eq!(claim_ids(store, "w1", t0 + SECOND, 10).await, &ids[2..]);
    assert!(claim_ids(store, "w2", t0 + SECOND, 10).await.is_empty());
    assert!(claim_ids(store, "w1", t0 + SECOND, 0).await.is_empty());

    // Due time, not insertion, orders claims; expired leases (due at insertion) come first.
    let applied = store
        .record(&[
            update(&ids[0], "w1", 1, Status::Queued, t0 + 10 * MINUTE),
            update(&ids[1], "w1", 1, Status::Queued, t0 + 5 * MINUTE),
            update(&ids[2], "w1", 1, Status::Queued, t0 + 20 * MINUTE),
        ])
        .await
        .unwrap();
    assert_eq!(applied, 3);
    let claimed = store
        .claim_due("w2", t0 + 15 * MINUTE, 3, MINUTE)
        .await
        .unwrap();
    let got: Vec<_> = claimed.iter().map(|c| c.id.clone()).collect();
    assert_eq!(got, [ids[3].as_str(), &ids[4], &ids[1]]);
    assert_eq!(claimed[2].send_count, 1);
    assert_eq!(claimed[0].send_count, 0);
    let rest = claim_ids(store, "w2", t0 + 15 * MINUTE, 10).await;
    assert_eq!(rest, [ids[0].as_str()]);
}

async fn concurrent_claims(a: Arc<dyn MessageStore>, b: Arc<dyn MessageStore>) {
    let mut all = Vec::new();
    for batch in 0..4 {
        all.extend(
            a.insert(&messages(50, &format!("c{batch}-")))
                .await
                .unwrap(),
        );
    }
    let now = SystemTime::now() + SECOND;
    let mut tasks = tokio::task::JoinSet::new();
    for (i, store) in [a.clone(), b.clone(), a.clone(), b.clone()]
        .into_iter()
        .enumerate()
    {
        tasks.spawn(async move {
            let worker = format!("w{i}");
            let mut mine = Vec::new();
            loop {
                let got = claim_ids(&*store, &worker, now, 7).await;
                if got.is_empty() {
                    return mine;
                }
                mine.extend(got);
            }
        });
    }
    let mut claimed = Vec::new();
    while let Some(mine) = tasks.join_next().await {
        claimed.extend(mine.expect("claimer panicked"));
    }
    let unique: HashSet<&String> = claimed.iter().collect();
    assert_eq!(unique.len(), claimed.len(), "a message was claimed twice");
    assert_eq!(unique, all.iter().collect::<HashSet<_>>());
    assert_eq!(count(&*a, Status::Processing).await, 200);
    assert_eq!(count(&*b, Status::Queued).await, 0);
}

async fn expired_lease_is_reclaimed(store: &dyn MessageStore) {
    let ids = store.insert(&messages(1, "lease")).await.unwrap();
    let t = SystemTime::now() + SECOND;
    let old = store.claim_due("old", t, 10, 30 * SECOND).await.unwrap();
    assert_eq!(old.len(), 1);
    assert!(claim_ids(store, "new", t + 10 * SECOND, 10)
        .await
        .is_empty());
    let new = store
        .claim_due("new", t + 31 * SECOND, 10, 30 * SECOND)
        .await
        .unwrap();
    assert_eq!(new.len(), 1);
    assert_eq!(new[0].id, ids[0]);
    assert_eq!(new[0].send_count, 0);

    // The old worker lost its lease: its result is ignored.
    let stale = update(&ids[0], "old", 1, Status::Abandoned, t);
    assert_eq!(store.record(&[stale]).await.unwrap(), 0);
    let got = must_get(store, &ids[0]).await;
    assert_eq!(got.status, Status::Processing);
    assert!(got.attempts.is_empty());
    assert_eq!(got.send_count, 0);

    let fresh = update(&ids[0], "new", 1, Status::Sent, t);
    assert_eq!(store.record(std::slice::from_ref(&fresh)).await.unwrap(), 1);
    let got = must_get(store, &ids[0]).await;
    assert_eq!(got.status, Status::Sent);
    assert_eq!(got.attempts, std::slice::from_ref(&fresh.attempt));
    assert_eq!(got.send_count, 1);
    // Recorded once: the lease is gone.
    assert_eq!(store.record(&[fresh]).await.unwrap(), 0);
}

async fn record_transitions(store: &dyn MessageStore) {
    let ids = store.insert(&messages(4, "rec")).await.unwrap();
    let t = ms(SystemTime::now() + SECOND);
    assert_eq!(claim_ids(store, "w", t, 10).await, ids);
    let updates = [
        update(&ids[0], "w", 1, Status::Sent, t),
        update(&ids[1], "w", 1, Status::Queued, t + 5 * MINUTE),
        update(&ids[2], "w", 1, Status::Abandoned, t),
        update(&ids[3], "w", 1, Status::Cancelled, t),
        update("no-such-id", "w", 1, Status::Sent, t),
        update(&ids[0], "intruder", 2, Status::Abandoned, t),
    ];
    assert_eq!(store.record(&updates).await.unwrap(), 4);
    for (u, id) in updates.iter().zip(&ids) {
        let got = must_get(store, id).await;
        assert_eq!(got.status, u.status, "{id}");
        assert_eq!(got.send_count, 1);
        assert_eq!(got.attempts, std::slice::from_ref(&u.attempt));
        assert!(got.updated_at >= got.created_at);
    }
    assert_eq!(
        must_get(store, &ids[1]).await.next_attempt_at,
        ms(t + 5 * MINUTE)
    );

    // The retry is not claimable before it is due, then it is, with its count.
    assert!(claim_ids(store, "w", t + MINUTE, 10).await.is_empty());
    let again = store
        .claim_due("w", t + 5 * MINUTE, 10, MINUTE)
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].id, ids[1]);
    assert_eq!(again[0].send_count, 1);
    let second = update(&ids[1], "w", 2, Status::Sent, t);
    assert_eq!(
        store.record(std::slice::from_ref(&second)).await.unwrap(),
        1
    );
    let got = must_get(store, &ids[1]).await;
    assert_eq!(got.status, Status::Sent);
    assert_eq!(got.send_count, 2);
    assert_eq!(got.attempts, [updates[1].attempt.clone(), second.attempt]);

    // A full batch in one call.
    let ids = store.insert(&messages(64, "batch")).await.unwrap();
    assert_eq!(claim_ids(store, "b", t, 64).await.len(), 64);
    let batch: Vec<_> = ids
        .iter()
        .map(|id| update(id, "b", 1, Status::Sent, t))
        .collect();
    assert_eq!(store.record(&batch).await.unwrap(), 64);
    assert_eq!(count(store, Status::Sent).await, 66);
    assert_eq!(store.record(&[]).await.unwrap(), 0);
}

async fn release_returns_to_queue(store: &dyn MessageStore) {
    let ids = store.insert(&messages(3, "rel")).await.unwrap();
    let t = SystemTime::now() + SECOND;
    assert_eq!(claim_ids(store, "w1", t, 10).await, ids);
    store
        .release("w1", &[ids[0].clone(), ids[1].clone(), "unknown".into()])
        .await
        .unwrap();
    store.release("w2", &[ids[2].clone()]).await.unwrap(); // not w2's
    store.release("w1", &[]).await.unwrap();
    for id in &ids[..2] {
        let got = must_get(store, id).await;
        assert_eq!(got.status, Status::Queued);
        assert_eq!(got.send_count, 0);
        assert!(got.attempts.is_empty());
    }
    assert_eq!(must_get(store, &ids[2]).await.status, Status::Processing);
    // Due now: claimable at once, by anyone, in order.
    assert_eq!(claim_ids(store, "w3", t, 10).await, &ids[..2]);
}

async fn list_pagination(store: &dyn MessageStore) {
    let ids = store.insert(&messages(25, "page")).await.unwrap();
    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();

    let mut seen = Vec::new();
    let mut sizes = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = store
            .list(&ListFilter::default(), token.as_deref(), 10)
            .await
            .unwrap();
        sizes.push(page.messages.len());
        seen.extend(ids_of(&page));
        match page.next_page_token {
            Some(t) => {
                assert!(is_valid_page_token(&t), "{t:?}");
                token = Some(t);
            }
            None => break,
        }
        assert!(sizes.len() < 10, "pagination does not end");
    }
    assert_eq!(sizes, [10, 10, 5]);
    assert_eq!(seen, newest_first);

    // An exact multiple ends without an empty extra page.
    let page = store.list(&ListFilter::default(), None, 25).await.unwrap();
    assert_eq!(ids_of(&page), newest_first);
    assert_eq!(page.next_page_token, None);
    let mut pages = 0;
    let mut token: Option<String> = None;
    loop {
        let page = store
            .list(&ListFilter::default(), token.as_deref(), 5)
            .await
            .unwrap();
        assert_eq!(page.messages.len(), 5);
        pages += 1;
        match page.next_page_token {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    assert_eq!(pages, 5);

    // Pages carry attempts, in order; a token this store did not make gives an empty last page.
    let t = SystemTime::now() + SECOND;
    assert_eq!(claim_ids(store, "w", t, 1).await, [ids[0].as_str()]);
    let retry = update(&ids[0], "w", 1, Status::Queued, t - MINUTE); // due before the rest
    store.record(std::slice::from_ref(&retry)).await.unwrap();
    assert_eq!(claim_ids(store, "w", t, 1).await, [ids[0].as_str()]);
    let sent = update(&ids[0], "w", 2, Status::Sent, t);
    store.record(std::slice::from_ref(&sent)).await.unwrap();
    let page = store.list(&ListFilter::default(), None, 25).await.unwrap();
    let first = page.messages.last().expect("oldest is last");
    assert_eq!(first.id, ids[0]);
    assert_eq!(first.attempts, [retry.attempt, sent.attempt]);
    assert_eq!(first.status, Status::Sent);
    assert_eq!(first.send_count, 2);
    assert_eq!(page.messages[0].message.recipient, "page24@example.com");
    for bad in ["garbage", "-1", ""] {
        let page = store
            .list(&ListFilter::default(), Some(bad), 10)
            .await
            .unwrap();
        assert!(
            page.messages.is_empty() && page.next_page_token.is_none(),
            "{bad:?}"
        );
    }
}

async fn list_filters(store: &dyn MessageStore) {
    let batch: Vec<Message> = ["a0", "b0", "a1", "b1", "a2", "b2"]
        .into_iter()
        .map(|r| message(&format!("{}@x.test", &r[..1]), Some(r)))
        .collect();
    store.insert(&batch).await.unwrap();
    let t = SystemTime::now() + SECOND;
    assert_eq!(claim_ids(store, "w", t, 2).await, ["a0", "b0"]);
    store
        .record(&[
            update("a0", "w", 1, Status::Sent, t),
            update("b0", "w", 1, Status::Abandoned, t),
        ])
        .await
        .unwrap();

    let list = |status: Option<Status>, recipient: Option<&str>, token: Option<String>, limit| {
        let filter = ListFilter {
            status,
            recipient: recipient.map(str::to_owned),
            ..ListFilter::default()
        };
        async move { store.list(&filter, token.as_deref(), limit).await.unwrap() }
    };
    assert_eq!(
        ids_of(&list(Some(Status::Sent), None, None, 10).await),
        ["a0"]
    );
    assert_eq!(
        ids_of(&list(Some(Status::Abandoned), None, None, 10).await),
        ["b0"]
    );
    assert!(list(Some(Status::Cancelled), None, None, 10)
        .await
        .messages
        .is_empty());
    assert_eq!(
        ids_of(&list(Some(Status::Queued), None, None, 10).await),
        ["b2", "a2", "b1", "a1"]
    );
    assert_eq!(
        ids_of(&list(None, Some("a@x.test"), None, 10).await),
        ["a2", "a1", "a0"]
    );
    assert!(list(None, Some("A@x.test"), None, 10)
        .await
        .messages
        .is_empty());
    let p1 = list(Some(Status::Queued), Some("a@x.test"), None, 1).await;
    assert_eq!(ids_of(&p1), ["a2"]);
    let p2 = list(
        Some(Status::Queued),
        Some("a@x.test"),
        p1.next_page_token,
        1,
    )
    .await;
    assert_eq!(ids_of(&p2), ["a1"]);
    assert_eq!(p2.next_page_token, None);
    let none = list(None, Some("nobody@x.test"), None, 10).await;
    assert!(none.messages.is_empty() && none.next_page_token.is_none());
}

async fn list_by_template_type_and_channel(store: &dyn MessageStore) {
    let mut batch = Vec::new();
    for (id, template_type, message_type, channel) in [
        ("e-stub", "stub", "email", None),
        ("e-code", "verification_code_valid", "email", None),
        ("s-code", "verification_code_valid", "sms", None),
        (
            "w-code",
            "verification_code_valid",
            "email",
            Some("webhook"),
        ),
        ("x-code", "login_code_valid", "sms", Some("")),
    ] {
        let mut m = message("t@x.test", Some(id));
        m.template_type = template_type.parse().unwrap();
        m.message_type = serde_json::from_value(serde_json::json!(message_type)).unwrap();
        m.channel = channel.map(str::to_owned);
        batch.push(m);
    }
    store.insert(&batch).await.unwrap();
    let list = |template_type: Option<&str>, channel: Option<&str>, status: Option<Status>| {
        let filter = ListFilter {
            status,
            template_type: template_type.map(|t| t.parse().unwrap()),
            channel: channel.map(str::to_owned),
            ..ListFilter::default()
        };
        async move { ids_of(&store.list(&filter, None, 10).await.unwrap()) }
    };
    assert_eq!(
        list(Some("verification_code_valid"), None, None).await,
        ["w-code", "s-code", "e-code"]
    );
    // The effective channel: an absent or empty one is the message type's.
    assert_eq!(list(None, Some("email"), None).await, ["e-code", "e-stub"]);
    assert_eq!(list(None, Some("sms"), None).await, ["x-code", "s-code"]);
    assert_eq!(list(None, Some("webhook"), None).await, ["w-code"]);
    assert_eq!(
        list(
            Some("verification_code_valid"),
            Some("sms"),
            Some(Status::Queued)
        )
        .await,
        ["s-code"]
    );
    assert!(list(Some("stub"), Some("sms"), None).await.is_empty());
    assert!(list(None, Some("email"), Some(Status::Sent))
        .await
        .is_empty());
    // Paging keeps the filters.
    let filter = ListFilter {
        template_type: Some("verification_code_valid".parse().unwrap()),
        ..ListFilter::default()
    };
    let p1 = store.list(&filter, None, 2).await.unwrap();
    assert_eq!(ids_of(&p1), ["w-code", "s-code"]);
    let p2 = store
        .list(&filter, p1.next_page_token.as_deref(), 2)
        .await
        .unwrap();
    assert_eq!(ids_of(&p2), ["e-code"]);
    assert_eq!(p2.next_page_token, None);
}

async fn requeue_rules(store: &dyn MessageStore) {
    let ids = store.insert(&messages(5, "rq")).await.unwrap();
    let t = SystemTime::now() + SECOND;
    assert_eq!(claim_ids(store, "w", t, 4).await, &ids[..4]);
    store
        .record(&[
            update(&ids[0], "w", 1, Status::Abandoned, t),
            update(&ids[1], "w", 1, Status::Cancelled, t),
            update(&ids[2], "w", 1, Status::Sent, t),
        ])
        .await
        .unwrap();

    let when = ms(t + SECOND);
    assert_eq!(
        store.requeue("missing", when).await.unwrap(),
        Requeue::NotFound
    );
    assert_eq!(
        store.requeue(&ids[2], when).await.unwrap(),
        Requeue::NotFinal(Status::Sent)
    );
    assert_eq!(
        store.requeue(&ids[3], when).await.unwrap(),
        Requeue::NotFinal(Status::Processing)
    );
    assert_eq!(
        store.requeue(&ids[4], when).await.unwrap(),
        Requeue::NotFinal(Status::Queued)
    );
    for id in &ids[..2] {
        assert_eq!(store.requeue(id, when).await.unwrap(), Requeue::Requeued);
        let got = must_get(store, id).await;
        assert_eq!(got.status, Status::Queued);
        assert_eq!(got.next_attempt_at, when);
        assert_eq!(got.send_count, 1, "attempts are kept");
        assert_eq!(got.attempts.len(), 1);
    }
    assert_eq!(
        store.requeue(&ids[0], when).await.unwrap(),
        Requeue::NotFinal(Status::Queued)
    );
    // Due at `when`: not before.
    assert_eq!(claim_ids(store, "w2", t, 10).await, [ids[4].as_str()]);
    assert_eq!(claim_ids(store, "w2", when, 10).await, &ids[..2]);
}

async fn retention_deletes_old_finished(store: &dyn MessageStore) {
    let names = [
        "ret-sent",
        "ret-cancelled",
        "ret-abandoned",
        "ret-queued",
        "ret-processing",
        "ret-late",
    ];
    let batch: Vec<Message> = names
        .into_iter()
        .map(|id| message("r@x.test", Some(id)))
        .collect();
    store.insert(&batch).await.unwrap();
    let t = SystemTime::now();
    assert_eq!(claim_ids(store, "w", t + SECOND, 10).await.len(), 6);
    store
        .record(&[
            update("ret-sent", "w", 1, Status::Sent, t),
            update("ret-cancelled", "w", 1, Status::Cancelled, t),
            update("ret-abandoned", "w", 1, Status::Abandoned, t),
            update("ret-queued", "w", 1, Status::Queued, t + MINUTE),
        ])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let cutoff = SystemTime::now();
    tokio::time::sleep(Duration::from_millis(20)).await;
    store
        .record(&[update("ret-late", "w", 1, Status::Sent, t)])
        .await
        .unwrap();

    assert_eq!(store.delete_finished_before(cutoff).await.unwrap(), 2);
    assert!(store.get("ret-sent").await.unwrap().is_none());
    assert!(store.get("ret-cancelled").await.unwrap().is_none());
    for id in &names[2..] {
        assert!(store.get(id).await.unwrap().is_some(), "{id} was deleted");
    }
    assert_eq!(store.delete_finished_before(cutoff).await.unwrap(), 0);

    // The attempts went with the message: the id starts afresh.
    store
        .insert(&[message("r@x.test", Some("ret-sent"))])
        .await
        .unwrap();
    assert!(must_get(store, "ret-sent").await.attempts.is_empty());

    assert_eq!(
        store
            .delete_finished_before(SystemTime::now() + MINUTE)
            .await
            .unwrap(),
        1
    );
    assert!(store.get("ret-late").await.unwrap().is_none());
}

async fn stats_counts_and_oldest(store: &dyn MessageStore) {
    let empty = store.stats().await.unwrap();
    assert_eq!(
        empty.by_status,
        Status::ALL.iter().map(|s| (*s, 0)).collect::<Vec<_>>()
    );
    assert_eq!(empty.oldest_queued_at, None);

    let first = store.insert(&messages(1, "st")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let rest = store.insert(&messages(3, "st-b")).await.unwrap();
    let t = SystemTime::now() + SECOND;
    assert_eq!(
        claim_ids(store, "w", t, 2).await,
        [first[0].as_str(), &rest[0]]
    );
    store
        .record(&[update(&first[0], "w", 1, Status::Sent, t)])
        .await
        .unwrap();

    let stats = store.stats().await.unwrap();
    assert_eq!(
        stats.by_status,
        [
            (Status::Queued, 2),
            (Status::Processing, 1),
            (Status::Sent, 1),
            (Status::Abandoned, 0),
            (Status::Cancelled, 0),
        ]
    );
    let oldest_queued = must_get(store, &rest[1]).await.created_at;
    assert!(oldest_queued > must_get(store, &first[0]).await.created_at);
    assert_eq!(stats.oldest_queued_at, Some(oldest_queued));

    claim_ids(store, "w", t, 10).await;
    let stats = store.stats().await.unwrap();
    assert_eq!(stats.oldest_queued_at, None);
    assert_eq!(stats.by_status[1], (Status::Processing, 3));
}

fn idem(scope: &str, key: &str, body: &str) -> IdempotencyKey {
    IdempotencyKey {
        scope: scope.to_owned(),
        key: key.to_owned(),
        body_hash: body.to_owned(),
    }
}

async fn total(store: &dyn MessageStore) -> u64 {
    let stats = store.stats().await.unwrap();
    stats.by_status.iter().map(|(_, n)| n).sum()
}

async fn idempotency_keys(store: &dyn MessageStore) {
    let batch = messages(2, "idem");
    let Idempotent::Inserted(ids) = store
        .insert_once(&idem("tok-a", "k1", "h1"), &batch)
        .await
        .unwrap()
    else {
        panic!("a new key inserts")
    };
    assert_eq!(ids.len(), 2);
    assert_eq!(total(store).await, 2);
    // The same key and body: the first answer, nothing stored twice.
    assert_eq!(
        store
            .insert_once(&idem("tok-a", "k1", "h1"), &messages(2, "idem"))
            .await
            .unwrap(),
        Idempotent::Replayed(ids.clone())
    );
    assert_eq!(total(store).await, 2);
    // The same key with another body is a conflict, and stores nothing.
    assert_eq!(
        store
            .insert_once(&idem("tok-a", "k1", "h2"), &messages(1, "other"))
            .await
            .unwrap(),
        Idempotent::Conflict
    );
    assert_eq!(total(store).await, 2);
    // Another token's key of the same name is its own.
    let Idempotent::Inserted(other) = store
        .insert_once(&idem("tok-b", "k1", "h1"), &messages(2, "idem"))
        .await
        .unwrap()
    else {
        panic!("keys are per token")
    };
    assert!(other.iter().all(|id| !ids.contains(id)));
    assert_eq!(total(store).await, 4);
    // A failed insert (a duplicate id) stores neither the messages nor the key.
    let dup = vec![message("d@example.com", Some(&ids[0]))];
    assert!(matches!(
        store.insert_once(&idem("tok-a", "k2", "h3"), &dup).await,
        Err(StoreError::Duplicate(id)) if id == ids[0]
    ));
    let fresh = vec![message("d@example.com", None)];
    assert!(matches!(
        store.insert_once(&idem("tok-a", "k2", "h3"), &fresh).await,
        Ok(Idempotent::Inserted(_))
    ));
    // Retention forgets keys: the same key then inserts again.
    store
        .delete_finished_before(SystemTime::now() + MINUTE)
        .await
        .unwrap();
    assert!(matches!(
        store.insert_once(&idem("tok-a", "k1", "h1"), &batch).await,
        Ok(Idempotent::Inserted(_))
    ));
}

async fn concurrent_idempotent_inserts(a: Arc<dyn MessageStore>, b: Arc<dyn MessageStore>) {
    // Two processes get the same request at once: one stores it, both answer with its ids.
    let mut tasks = Vec::new();
    for (i, store) in [a.clone(), b, a.clone(), a.clone()].into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            let batch = messages(3, &format!("race{i}-"));
            store
                .insert_once(&idem("tok", "same", "body"), &batch)
                .await
                .unwrap()
        }));
    }
    let mut inserted = 0;
    let mut answers = HashSet::new();
    for t in tasks {
        match t.await.unwrap() {
            Idempotent::Inserted(ids) => {
                inserted += 1;
                answers.insert(ids);
            }
            Idempotent::Replayed(ids) => {
                answers.insert(ids);
            }
            Idempotent::Conflict => panic!("same body"),
        }
    }
    assert_eq!(inserted, 1);
    assert_eq!(answers.len(), 1, "every caller got the first answer");
    assert_eq!(total(&*a).await, 3);
}

/// The tests of one backend: `single` behaviours take the store, `pair` ones two stores on one
/// database. `attr` goes on each test: `ignore` for a backend a bare machine lacks, else the
/// always-true `cfg(all())`.
macro_rules! backend_tests {
    ($backend:expr, #[$attr:meta]; single: [$($single:ident),*]; pair: [$($pair:ident),*]) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[$attr]
            async fn $single() {
                let h = TestStore::new($backend).await;
                let store = h.store.clone();
                h.run(async move { super::$single(&*store).await }).await;
            }
        )*
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[$attr]
            async fn $pair() {
                let mut h = TestStore::new($backend).await;
                let (a, b) = (h.store.clone(), h.another().await);
                h.run(async move { super::$pair(a, b).await }).await;
            }
        )*
    };
}

macro_rules! contract_tests {
    ($($args:tt)*) => {
        mod sqlite_file {
            use super::*;
            backend_tests!(Backend::SqliteFile, #[cfg(all())]; $($args)*);
        }
        mod sqlite_memory {
            use super::*;
            backend_tests!(Backend::SqliteMemory, #[cfg(all())]; $($args)*);
        }
        mod postgres {
            use super::*;
            backend_tests!(
                Backend::Postgres, #[ignore = "needs COURIER_TEST_POSTGRES_URL"];
                $($args)*
            );
        }
    };
}

contract_tests!(
    single: [
        insert_get_round_trip,
        claim_only_due_in_order,
        expired_lease_is_reclaimed,
        record_transitions,
        release_returns_to_queue,
        list_pagination,
        list_filters,
        list_by_template_type_and_channel,
        requeue_rules,
        retention_deletes_old_finished,
        stats_counts_and_oldest,
        idempotency_keys
    ];
    pair: [concurrent_claims, concurrent_idempotent_inserts]
);

/// A fresh schema migrated with the PostgreSQL migrations before `first_missing` only, as a
/// database left by an earlier release has them: its URL, name, connect options and a
/// connection in it.
async fn postgres_schema_before(
    first_missing: &str,
) -> (
    String,
    String,
    sqlx::postgres::PgConnectOptions,
    sqlx::postgres::PgConnection,
) {
    use sqlx::{ConnectOptions, Connection};
    use std::str::FromStr;

    let url = crate::backend::postgres_url();
    let schema = crate::backend::fresh_schema();
    let base = sqlx::postgres::PgConnectOptions::from_str(&url).expect("url");
    let mut conn = base.connect().await.expect("connect");
    sqlx::query(&format!("CREATE SCHEMA \"{schema}\""))
        .execute(&mut conn)
        .await
        .expect("create schema");
    conn.close().await.expect("close");
    let mut conn = base
        .clone()
        .options([("search_path", schema.as_str())])
        .connect()
        .await
        .expect("connect in schema");
    let earlier = tempfile::tempdir().expect("temp dir");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/postgres");
    for entry in std::fs::read_dir(&dir).expect("migrations") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        if name.as_str() < first_missing {
            std::fs::copy(&path, earlier.path().join(&name)).expect("copy migration");
        }
    }
    sqlx::migrate::Migrator::new(earlier.path())
        .await
        .expect("migrator")
        .run(&mut conn)
        .await
        .expect("migrate");
    (url, schema, base, conn)
}

/// A PostgreSQL database migrated before 0004 (bodies in the messages row, attempts under a
/// foreign key) migrates: its messages read back whole, attempts included, new ones go in
/// beside them, and retention removes the old ones with their bodies and attempts.
#[tokio::test]
#[ignore = "needs COURIER_TEST_POSTGRES_URL"]
async fn postgres_database_from_0003_migrates() {
    use sqlx::{ConnectOptions, Connection};

    let (url, schema, base, mut conn) = postgres_schema_before("0004").await;
    let old = message("old@example.com", Some("old-1"));
    let record = serde_json::to_string(&attempt(1, AttemptClass::Delivered)).unwrap();
    sqlx::query(
        "INSERT INTO messages (id, status, recipient, template_type, channel, message, \
         send_count, created_at, updated_at, next_attempt_at) \
         VALUES ('old-1', 'sent', 'old@example.com', 'verification_code_valid', 'email-eu', $1, \
         1, 1000, 1000, 1000)",
    )
    .bind(serde_json::to_vec(&old).unwrap())
    .execute(&mut conn)
    .await
    .expect("old row");
    sqlx::query("INSERT INTO attempts (message_id, number, record) VALUES ('old-1', 1, $1)")
        .bind(&record)
        .execute(&mut conn)
        .await
        .expect("old attempt");
    conn.close().await.expect("close");

    let store = PostgresStore::open_in_schema(&url, &schema)
        .await
        .expect("open and migrate");
    let got = store.get("old-1").await.unwrap().expect("old message kept");
    assert_eq!(got.message, old);
    assert_eq!(got.status, Status::Sent);
    assert_eq!(got.attempts, vec![attempt(1, AttemptClass::Delivered)]);
    let new = store.insert(&messages(1, "new")).await.unwrap();
    let page = store.list(&ListFilter::default(), None, 10).await.unwrap();
    let listed: Vec<&str> = page.messages.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(listed, vec![new[0].as_str(), "old-1"]);
    assert_eq!(
        store
            .delete_finished_before(SystemTime::UNIX_EPOCH + Duration::from_secs(2))
            .await
            .unwrap(),
        1
    );
    assert!(store.get("old-1").await.unwrap().is_none());
    // Nothing of it is left behind: body and attempts are no longer removed by a cascade.
    let mut conn = base
        .options([("search_path", schema.as_str())])
        .connect()
        .await
        .expect("connect in schema");
    let left: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM message_bodies WHERE id = 'old-1') \
         + (SELECT count(*) FROM attempts WHERE message_id = 'old-1')",
    )
    .fetch_one(&mut conn)
    .await
    .expect("count");
    assert_eq!(left, 0);
    conn.close().await.expect("close");
    store.drop_schema().await.expect("drop schema");
}

/// Messages claimed before 0005 (stored status 'processing') read as processing afterwards and
/// keep their leases: the live one is not claimed again and its owner records it; the expired
/// one is claimed by another worker.
#[tokio::test]
#[ignore = "needs COURIER_TEST_POSTGRES_URL"]
async fn postgres_claims_from_0004_migrate() {
    use sqlx::Connection;

    let (url, schema, _base, mut conn) = postgres_schema_before("0005").await;
    let now = SystemTime::now();
    let now_ms = i64::try_from(
        now.duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap();
    for (id, lease_until) in [("live", now_ms + 600_000), ("expired", now_ms - 1_000)] {
        sqlx::query(
            "INSERT INTO messages (id, status, recipient, template_type, channel, send_count, \
             created_at, updated_at, next_attempt_at, lease_owner, lease_until) \
             VALUES ($1, 'processing', 'old@example.com', 'verification_code_valid', \
             'email-eu', 0, $2, $2, $2, 'old-worker', $3)",
        )
        .bind(id)
        .bind(now_ms - 60_000)
        .bind(lease_until)
        .execute(&mut conn)
        .await
        .expect("claimed row");
        sqlx::query("INSERT INTO message_bodies (id, message) VALUES ($1, $2)")
            .bind(id)
            .bind(serde_json::to_vec(&message("old@example.com", Some(id))).unwrap())
            .execute(&mut conn)
            .await
            .expect("body");
    }
    conn.close().await.expect("close");

    let store = PostgresStore::open_in_schema(&url, &schema)
        .await
        .expect("open and migrate");
    assert_eq!(must_get(&store, "live").await.status, Status::Processing);
    assert_eq!(count(&store, Status::Processing).await, 2);
    let filter = ListFilter {
        status: Some(Status::Processing),
        ..ListFilter::default()
    };
    let page = store.list(&filter, None, 10).await.unwrap();
    assert_eq!(ids_of(&page), vec!["expired".to_owned(), "live".to_owned()]);
    assert_eq!(
        claim_ids(&store, "new-worker", now, 10).await,
        vec!["expired".to_owned()]
    );
    let done = update("live", "old-worker", 1, Status::Sent, now);
    assert_eq!(store.record(&[done]).await.unwrap(), 1);
    assert_eq!(must_get(&store, "live").await.status, Status::Sent);
    assert_eq!(count(&store, Status::Processing).await, 1);
    store.drop_schema().await.expect("drop schema");
}
