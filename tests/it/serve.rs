//! `courier serve` in process: the HTTP API and the worker over a SQLite file in a temp dir, and
//! over PostgreSQL (a fresh schema per test; ignored unless run with `--ignored` and
//! `COURIER_TEST_POSTGRES_URL`). Each behaviour is one `async fn` below, run once per backend by
//! the `backend_tests!` list at the end (`serve::sqlite::NAME`, `serve::postgres::NAME`).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use jsonnet_courier::config::settings::ServeSettings;
use jsonnet_courier::config::{Config, Secret};
use jsonnet_courier::delivery::{AttemptClass, ErrorKind};
use jsonnet_courier::message::{DataKey, Message};
use jsonnet_courier::service::{ServeError, Service};
use jsonnet_courier::store::{MessageStore, SqliteStore, Status, StoredMessage};
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::backend::{with_store, Backend};
use crate::support::{
    get, http_request, post_json, wait_for, HttpReply, Reply, Server, Start as _,
};

// ---------------------------------------------------------------------------------------------
// Harness: a fresh store per test (`backend.rs`), a service on 127.0.0.1:0, a config from YAML.

/// A config delivering email to `sink` with fast retries; `body` is a Jsonnet template (the
/// default template when `None`); `extra` is appended inside `jsonnet_courier:`.
pub(crate) fn config(sink: &str, retries: u32, body: Option<&str>, extra: &str) -> Config {
    let body = body
        .map(|b| {
            format!(
                "      body: base64://{}\n",
                base64::engine::general_purpose::STANDARD.encode(b)
            )
        })
        .unwrap_or_default();
    let yaml = format!(
        "courier:\n  message_retries: {retries}\n  http:\n    request_config:\n      url: {sink}\n{body}\
         jsonnet_courier:\n  retry:\n    initial_backoff: 10ms\n    max_backoff: 50ms\n  serve:\n    poll_interval: 20ms\n{extra}"
    );
    Config::parse(&yaml, false, None, &|_| None).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
}

/// A service running in this process.
pub(crate) struct Running {
    pub addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Triggers shutdown and waits (at most 30 s) for `run` to return; returns how long it took.
    pub async fn stop(self) -> Duration {
        let start = Instant::now();
        self.shutdown.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("the service did not stop within 30 s")
            .expect("the service task panicked");
        start.elapsed()
    }
}

/// Starts a service on 127.0.0.1:0 with `config`'s serve settings, changed by `tweak`.
pub(crate) async fn start(
    store: Arc<dyn MessageStore>,
    config: Config,
    tweak: impl FnOnce(&mut ServeSettings),
) -> Running {
    let mut config = config;
    config.settings.serve.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    tweak(&mut config.settings.serve);
    let service = Service::new(config, store).await.unwrap();
    let listener = service.bind().await.expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = watch::channel(false);
    let task = tokio::spawn(service.run(listener, rx));
    Running {
        addr,
        shutdown: tx,
        task,
    }
}

/// `GET /messages/{id}` as a stored message (asserting 200).
pub(crate) async fn fetch(addr: SocketAddr, id: &str, auth: &[(&str, &str)]) -> StoredMessage {
    let r = get(addr, &format!("/messages/{id}"), auth).await;
    assert_eq!(r.status, 200, "GET /messages/{id}: {}", r.text());
    serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("{e}: {}", r.text()))
}

/// Waits (at most `limit`) until message `id` has `status`; returns it.
pub(crate) async fn wait_status(
    addr: SocketAddr,
    id: &str,
    status: Status,
    limit: Duration,
) -> StoredMessage {
    let mut last = None;
    let found = tokio::time::timeout(limit, async {
        loop {
            let m = fetch(addr, id, &[]).await;
            if m.status == status {
                return m;
            }
            last = Some(m);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    found.unwrap_or_else(|_| panic!("message {id} is not {status:?} after {limit:?}: {last:#?}"))
}

/// The ids of a 202 answer to `POST /messages`.
pub(crate) fn ids_of(r: &HttpReply) -> Vec<String> {
    assert_eq!(r.status, 202, "POST /messages: {}", r.text());
    r.json()["ids"]
        .as_array()
        .unwrap_or_else(|| panic!("no ids: {}", r.text()))
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

/// A minimal stub message to `to`, as JSON.
pub(crate) fn stub(to: &str) -> Value {
    json!({"recipient": to, "template_type": "stub", "subject": "Hello", "body": "Hi there"})
}

/// Number of stored messages, all statuses.
pub(crate) async fn stored_count(store: &dyn MessageStore) -> u64 {
    store
        .stats()
        .await
        .unwrap()
        .by_status
        .iter()
        .map(|(_, n)| n)
        .sum()
}

/// The JSON error body every 4xx carries: `{"error": {"code", "status", "reason"}}`.
fn assert_error(r: &HttpReply, code: u16, reason_has: &str) {
    assert_eq!(r.status, code, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v = r.json();
    assert_eq!(v["error"]["code"], code, "{v}");
    let reason = v["error"]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains(reason_has),
        "reason {reason:?} should contain {reason_has:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// 1. The reference courier's own body, in both key styles.

const CODE: &str = "731995";
const SUBJECT: &str = "Recover access to your account";
const BODY: &str =
    "Hi, please recover access to your account by entering the following code:\n\n731995\n";

/// What the reference courier posts with `body: function(ctx) ctx` when its data model has no JSON
/// tags (PascalCase keys, as the documentation's examples show).
fn reference_pascal(to: &str) -> Value {
    json!({
        "Recipient": to,
        "Subject": SUBJECT,
        "Body": BODY,
        "TemplateType": "recovery_code_valid",
        "TemplateData": {
            "To": to,
            "RecoveryCode": CODE,
            "Identity": {
                "id": "28ff0bca-2e4e-4d35-a0a0-5fa8d8d2dd6b",
                "schema_id": "default",
                "state": "active",
                "traits": {"email": to, "name": {"first": "Ada"}},
                "metadata_public": null
            },
            "RequestURL": "https://auth.example.com/self-service/recovery?flow=4d3c",
            "TransientPayload": {"locale": "en"},
            "ExpiresInMinutes": 15
        },
        "MessageType": "email"
    })
}

/// The same with the snake_case JSON tags of newer releases, request headers included.
fn reference_snake(to: &str) -> Value {
    json!({
        "recipient": to,
        "subject": SUBJECT,
        "body": BODY,
        "template_type": "recovery_code_valid",
        "template_data": {
            "to": to,
            "recovery_code": CODE,
            "identity": {
                "id": "28ff0bca-2e4e-4d35-a0a0-5fa8d8d2dd6b",
                "schema_id": "default",
                "state": "active",
                "traits": {"email": to, "name": {"first": "Ada"}},
                "metadata_public": null
            },
            "request_url": "https://auth.example.com/self-service/recovery?flow=4d3c",
            "transient_payload": {"locale": "en"},
            "expires_in_minutes": 15
        },
        "message_type": "email",
        "request_headers": {"User-Agent": ["Mozilla/5.0"], "Accept-Language": ["en-US,en;q=0.9"]}
    })
}

/// The default template's payload for the messages above.
fn default_payload(to: &str) -> Value {
    json!({
        "body": BODY,
        "login_code": null,
        "recipient": to,
        "recovery_code": CODE,
        "recovery_url": null,
        "registration_code": null,
        "subject": SUBJECT,
        "template_type": "recovery_code_valid",
        "to": to,
        "verification_code": null,
        "verification_url": null
    })
}

async fn accepts_the_reference_body_in_both_key_styles(store: Arc<dyn MessageStore>) {
    let sink = Server::status(200).await;
    let svc = start(store, config(&sink.url("/send"), 3, None, ""), |_| {}).await;
    let before = SystemTime::now() - Duration::from_secs(1);

    let mut ids = Vec::new();
    for (to, msg) in [
        ("pascal@example.com", reference_pascal("pascal@example.com")),
        ("snake@example.com", reference_snake("snake@example.com")),
    ] {
        let r = post_json(svc.addr, "/messages", &[], msg.to_string()).await;
        assert_eq!(r.status, 202, "{to}: {}", r.text());
        assert_eq!(r.header("content-type"), Some("application/json"));
        let v = r.json();
        let id = v["id"]
            .as_str()
            .expect("a single message gets an id")
            .to_owned();
        assert_eq!(v["ids"], json!([id]));
        ids.push((to, id));
    }

    for (to, id) in &ids {
        let m = wait_status(svc.addr, id, Status::Sent, Duration::from_secs(10)).await;
        assert_eq!(&m.id, id);
        assert_eq!(m.message.id.as_deref(), Some(id.as_str()));
        assert_eq!(m.message.recipient, *to);
        let data = &m.message.template_data;
        assert_eq!(data.text(DataKey::RecoveryCode), Some(CODE));
        assert_eq!(
            data.json(DataKey::Identity).unwrap()["traits"]["name"]["first"],
            "Ada"
        );
        assert_eq!(m.send_count, 1);
        assert_eq!(m.attempts.len(), 1, "{m:#?}");
        let a = &m.attempts[0];
        assert_eq!(a.number, 1);
        assert_eq!(a.class, AttemptClass::Delivered);
        assert_eq!(a.status, Some(200));
        assert_eq!(a.error_kind, None);
        assert!(a.latency_ms >= 0.0 && a.latency_ms < 10_000.0, "{a:?}");
        assert!(a.render_ms.is_some(), "{a:?}");
        assert!(
            m.created_at >= before && m.created_at <= SystemTime::now(),
            "{m:#?}"
        );
        assert!(m.created_at <= a.started_at, "{m:#?}");
        assert!(a.started_at <= m.updated_at, "{m:#?}");
        // The raw JSON: the documented field names and RFC 3339 times.
        let raw = get(svc.addr, &format!("/messages/{id}"), &[]).await.json();
        assert_eq!(raw["status"], "sent");
        assert_eq!(raw["send_count"], 1);
        assert_eq!(raw["attempts"][0]["status"], 200);
        for k in ["created_at", "updated_at", "next_attempt_at"] {
            let t = raw[k].as_str().unwrap_or_else(|| panic!("{k}: {raw}"));
            assert!(humantime::parse_rfc3339(t).is_ok(), "{k} = {t}");
        }
    }
    let snake = fetch(svc.addr, &ids[1].1, &[]).await;
    assert_eq!(
        snake.message.request_headers.as_ref().unwrap()["User-Agent"],
        json!(["Mozilla/5.0"])
    );

    assert_eq!(sink.count(), 2, "one delivery each");
    for (to, _) in &ids {
        let reqs: Vec<_> = sink
            .requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| serde_json::from_slice::<Value>(&r.body).unwrap()["recipient"] == *to)
            .cloned()
            .collect();
        assert_eq!(reqs.len(), 1, "{to}");
        assert_eq!(reqs[0].method, "POST");
        assert_eq!(reqs[0].path, "/send");
        assert_eq!(reqs[0].header("content-type"), Some("application/json"));
        let payload: Value = serde_json::from_slice(&reqs[0].body).unwrap();
        assert_eq!(payload, default_payload(to));
    }
    svc.stop().await;
}

// ---------------------------------------------------------------------------------------------
// 2. Arrays, listing, filters, pagination.

async fn arrays_listing_and_pagination(store: Arc<dyn MessageStore>) {
    let sink = Server::status(200).await;
    let svc = start(store, config(&sink.url("/"), 3, None, ""), |_| {}).await;

    let batch: Vec<Value> = (0..3)
        .map(|i| stub(&format!("list{i}@example.com")))
        .collect();
    let r = post_json(svc.addr, "/messages", &[], Value::from(batch).to_string()).await;
    assert!(
        r.json().get("id").is_none(),
        "an array gets only ids: {}",
        r.text()
    );
    let mut ids = ids_of(&r);
    assert_eq!(ids.len(), 3);
    for (i, id) in ids.iter().enumerate() {
        let m = fetch(svc.addr, id, &[]).await;
        assert_eq!(
            m.message.recipient,
            format!("list{i}@example.com"),
            "ids in order"
        );
    }
    // Four more, one of them with characters that need escaping in a query.
    for to in [
        "list3@example.com",
        "list+4@example.com",
        "list5@example.com",
        "list6@example.com",
    ] {
        let r = post_json(svc.addr, "/messages", &[], stub(to).to_string()).await;
        ids.extend(ids_of(&r));
    }
    assert_eq!(ids.len(), 7);
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 7, "unique ids");
    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();

    let list = |query: &'static str| async move {
        let r = get(svc.addr, &format!("/messages{query}"), &[]).await;
        assert_eq!(r.status, 200, "{query}: {}", r.text());
        let v = r.json();
        let ids: Vec<String> = v["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_owned())
            .collect();
        (ids, v["next_page_token"].as_str().map(str::to_owned))
    };
    wait_for("all 7 sent", Duration::from_secs(10), || async {
        (list("?status=sent&limit=500").await.0.len() == 7).then_some(())
    })
    .await;
    assert_eq!(sink.count(), 7);

    let (sent, token) = list("?status=sent").await;
    assert_eq!(sent, newest_first, "newest first");
    assert_eq!(token, None);
    assert_eq!(list("?status=queued").await, (vec![], None));
    assert_eq!(list("?status=abandoned").await, (vec![], None));
    let (one, _) = list("?recipient=list%2B4%40example.com").await;
    assert_eq!(one, vec![ids[4].clone()]);
    let (both, _) = list("?recipient=list5%40example.com&status=sent").await;
    assert_eq!(both, vec![ids[5].clone()]);
    assert_eq!(
        list("?recipient=nobody%40example.com").await.0,
        Vec::<String>::new()
    );

    // Pages of 3: 3 + 3 + 1, newest first, no duplicates, no gaps.
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = Vec::new();
    for _ in 0..10 {
        let path = match &token {
            None => "/messages?limit=3".to_owned(),
            Some(t) => format!("/messages?limit=3&page_token={t}"),
        };
        let r = get(svc.addr, &path, &[]).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let v = r.json();
        let page: Vec<String> = v["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_owned())
            .collect();
        pages.push(page.len());
        seen.extend(page);
        token = v["next_page_token"].as_str().map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    assert_eq!(pages, [3, 3, 1]);
    assert_eq!(seen, newest_first);
    // The same with a filter: pages of 2 over the sent ones.
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..10 {
        let path = match &token {
            None => "/messages?status=sent&limit=2".to_owned(),
            Some(t) => format!("/messages?status=sent&limit=2&page_token={t}"),
        };
        let v = get(svc.addr, &path, &[]).await.json();
        seen.extend(
            v["messages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["id"].as_str().unwrap().to_owned()),
        );
        token = v["next_page_token"].as_str().map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    assert_eq!(seen, newest_first);

    let r = get(svc.addr, "/messages?status=bogus", &[]).await;
    assert_error(&r, 400, "unknown status \"bogus\"");
    assert_error(&get(svc.addr, "/messages?limit=0", &[]).await, 400, "limit");
    assert_error(
        &get(svc.addr, "/messages?limit=501", &[]).await,
        400,
        "limit",
    );
    assert_error(
        &get(svc.addr, "/messages?page_token=abc", &[]).await,
        400,
        "page_token",
    );
    assert_error(
        &get(svc.addr, "/messages?colour=red", &[]).await,
        400,
        "colour",
    );
    svc.stop().await;
}

// ---------------------------------------------------------------------------------------------
// 3. Bad input: the right 4xx, nothing stored, the service unaffected.

const TOKEN: &str = "s3cret-token-0123";

async fn bad_input_is_rejected_and_nothing_is_stored(store: Arc<dyn MessageStore>) {
    let sink = Server::status(200).await;
    let svc = start(
        Arc::clone(&store),
        config(&sink.url("/"), 3, None, ""),
        |s| {
            s.tokens = vec![Secret::new("another-token"), Secret::new(TOKEN)];
            s.max_body_bytes = 2048;
        },
    )
    .await;
    let bearer = format!("Bearer {TOKEN}");
    let auth: &[(&str, &str)] = &[("authorization", bearer.as_str())];
    let valid = stub("valid@example.com").to_string();
    let nothing_stored = |case: String| {
        let store = Arc::clone(&store);
        async move {
            assert_eq!(
                stored_count(&*store).await,
                0,
                "{case}: something was stored"
            );
            let r = get(
                svc.addr,
                "/messages",
                &[("authorization", &format!("Bearer {TOKEN}"))],
            )
            .await;
            assert_eq!(r.json()["messages"], json!([]), "{case}");
        }
    };

    // Authentication.
    let r = post_json(svc.addr, "/messages", &[], valid.clone()).await;
    assert_error(&r, 401, "missing bearer token");
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    nothing_stored("no token".into()).await;
    let wrong_tokens = [
        "Bearer wrong",
        "Bearer s3cret-token-0124",
        "Bearer s3cret-token-01234",
        "Bearer ",
    ];
    for wrong in wrong_tokens {
        let r = post_json(
            svc.addr,
            "/messages",
            &[("authorization", wrong)],
            valid.clone(),
        )
        .await;
        assert_error(&r, 401, "bearer token");
        nothing_stored(format!("token {wrong:?}")).await;
    }
    let r = post_json(
        svc.addr,
        "/messages",
        &[("authorization", "Bearer wrong")],
        valid.clone(),
    )
    .await;
    assert_error(&r, 401, "invalid bearer token");
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer error=\"invalid_token\"")
    );
    let r = post_json(
        svc.addr,
        "/messages",
        &[("authorization", &format!("Basic {TOKEN}"))],
        valid.clone(),
    )
    .await;
    assert_error(&r, 401, "missing bearer token");
    // Reads need the token too; the probes do not.
    assert_error(&get(svc.addr, "/messages", &[]).await, 401, "bearer");
    assert_error(&get(svc.addr, "/metrics", &[]).await, 401, "bearer");
    assert_eq!(get(svc.addr, "/health/alive", &[]).await.status, 200);
    assert_eq!(get(svc.addr, "/health/ready", &[]).await.status, 200);

    // Bodies.
    let cases: Vec<(&str, String, u16, &str)> = vec![
        (
            "truncated JSON",
            r#"{"recipient": "a@example.com", "template_type": "#.into(),
            400,
            "malformed JSON: EOF while parsing a value at line 1 column 48",
        ),
        ("not JSON", "recipient=a@example.com".into(), 400, "malformed JSON: expected value at line 1 column 1"),
        ("a number", "42".into(), 400, "expected a message object or an array"),
        ("empty body", String::new(), 400, "malformed JSON"),
        (
            "unknown template type",
            r#"{"recipient": "a@example.com", "template_type": "password_reset"}"#.into(),
            400,
            "unknown variant `password_reset`",
        ),
        (
            "missing recipient",
            r#"{"template_type": "stub", "subject": "s"}"#.into(),
            400,
            "missing field `recipient`",
        ),
        (
            "blank recipient",
            r#"{"recipient": "  ", "template_type": "stub"}"#.into(),
            400,
            "recipient: must not be empty",
        ),
        (
            "missing template type",
            r#"{"recipient": "a@example.com"}"#.into(),
            400,
            "missing field `template_type`",
        ),
        (
            "one bad element spoils the array",
            json!([stub("ok@example.com"), {"recipient": "b@example.com", "template_type": "nope"}]).to_string(),
            400,
            "messages[1]: unknown variant `nope`",
        ),
        ("empty array", "[]".into(), 400, "the array is empty"),
        (
            "oversize",
            json!({"recipient": "big@example.com", "template_type": "stub", "body": "x".repeat(4096)}).to_string(),
            413,
            "larger than 2048 bytes",
        ),
    ];
    for (case, body, code, reason) in &cases {
        let r = post_json(svc.addr, "/messages", auth, body.clone()).await;
        assert_error(&r, *code, reason);
        nothing_stored(case.to_string()).await;
    }
    // Oversize without a Content-Length: cut off while reading.
    let big =
        json!({"recipient": "big@example.com", "template_type": "stub", "body": "y".repeat(8192)})
            .to_string();
    let r = http_request(
        svc.addr,
        "POST",
        "/messages",
        &[
            ("authorization", bearer.as_str()),
            ("content-type", "application/json"),
        ],
        big,
        true,
    )
    .await;
    assert_error(&r, 413, "larger than 2048 bytes");
    nothing_stored("chunked oversize".into()).await;
    // Exactly at the limit is fine.
    let mut at_limit = stub("limit@example.com");
    at_limit["body"] = Value::from("");
    let base = at_limit.to_string().len();
    at_limit["body"] = Value::from("z".repeat(2048 - base));
    assert_eq!(at_limit.to_string().len(), 2048, "test setup");

    // Routes and methods.
    assert_error(
        &get(svc.addr, "/nope", auth).await,
        404,
        "no route GET /nope",
    );
    assert_error(
        &get(svc.addr, "/messages/no-such-id", auth).await,
        404,
        "no message with id",
    );
    for (method, path, allow) in [
        ("DELETE", "/messages", "GET, POST"),
        ("PUT", "/messages", "GET, POST"),
        ("PUT", "/messages/some-id", "GET"),
        ("DELETE", "/messages/some-id", "GET"),
        ("GET", "/messages/some-id/retry", "POST"),
        ("POST", "/metrics", "GET"),
    ] {
        let r = http_request(svc.addr, method, path, auth, "", false).await;
        assert_error(&r, 405, "method not allowed");
        assert_eq!(r.header("allow"), Some(allow), "{method} {path}");
    }
    nothing_stored("routes".into()).await;
    assert_eq!(sink.count(), 0);

    // The service is unaffected: a valid request right after is accepted and delivered.
    let r = post_json(svc.addr, "/messages", auth, valid.clone()).await;
    let ids = ids_of(&r);
    assert_eq!(stored_count(&*store).await, 1);
    let r = http_request(
        svc.addr,
        "POST",
        "/messages",
        &[("authorization", bearer.as_str())],
        at_limit.to_string(),
        false,
    )
    .await;
    ids_of(&r);
    assert_eq!(stored_count(&*store).await, 2);
    let m = wait_for(
        "the valid message is sent",
        Duration::from_secs(10),
        || async {
            let m = fetch(svc.addr, &ids[0], auth).await;
            (m.status == Status::Sent).then_some(m)
        },
    )
    .await;
    assert_eq!(m.send_count, 1);
    svc.stop().await;
}

// ---------------------------------------------------------------------------------------------
// 4. Retries, abandon, requeue.

async fn failing_messages_are_abandoned_then_retried_on_request(store: Arc<dyn MessageStore>) {
    let failing = Arc::new(AtomicBool::new(true));
    let f = Arc::clone(&failing);
    let sink = Server::start(move |_, _| {
        if f.load(Ordering::SeqCst) {
            Reply::status(500).body("down for maintenance")
        } else {
            Reply::status(200)
        }
    })
    .await;
    // message_retries 2: three attempts.
    let svc = start(store, config(&sink.url("/"), 2, None, ""), |_| {}).await;
    let r = post_json(
        svc.addr,
        "/messages",
        &[],
        stub("retry@example.com").to_string(),
    )
    .await;
    let id = ids_of(&r).remove(0);

    let m = wait_status(svc.addr, &id, Status::Abandoned, Duration::from_secs(10)).await;
    assert_eq!(m.send_count, 3);
    assert_eq!(m.attempts.len(), 3, "{m:#?}");
    for (i, a) in m.attempts.iter().enumerate() {
        assert_eq!(a.number, i as u32 + 1);
        assert_eq!(a.class, AttemptClass::Retryable);
        assert_eq!(a.status, Some(500));
        assert_eq!(a.error_kind, Some(ErrorKind::Status));
        assert_eq!(a.response_body.as_deref(), Some("down for maintenance"));
        assert_eq!(
            a.error.as_deref(),
            Some("the endpoint answered 500 Internal Server Error")
        );
    }
    for w in m.attempts.windows(2) {
        assert!(w[0].started_at <= w[1].started_at, "attempts in order");
    }
    assert_eq!(sink.count(), 3, "no attempt after the last");
    // Abandoned is final: nothing more happens by itself.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(sink.count(), 3);

    failing.store(false, Ordering::SeqCst);
    let r = http_request(
        svc.addr,
        "POST",
        &format!("/messages/{id}/retry"),
        &[],
        "",
        false,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), json!({"id": id, "status": "queued"}));
    let m = wait_status(svc.addr, &id, Status::Sent, Duration::from_secs(10)).await;
    assert_eq!(m.send_count, 4);
    assert_eq!(m.attempts.len(), 4);
    assert_eq!(m.attempts[3].number, 4);
    assert_eq!(m.attempts[3].class, AttemptClass::Delivered);
    assert_eq!(m.attempts[3].status, Some(200));
    assert_eq!(m.attempts[0].status, Some(500), "earlier attempts are kept");
    assert_eq!(sink.count(), 4);

    let r = http_request(
        svc.addr,
        "POST",
        &format!("/messages/{id}/retry"),
        &[],
        "",
        false,
    )
    .await;
    assert_error(&r, 409, "the message is sent");
    let r = http_request(
        svc.addr,
        "POST",
        "/messages/no-such-id/retry",
        &[],
        "",
        false,
    )
    .await;
    assert_error(&r, 404, "no message with id \"no-such-id\"");
    assert_eq!(fetch(svc.addr, &id, &[]).await.status, Status::Sent);
    svc.stop().await;
}

async fn a_permanent_failure_is_abandoned_at_once(store: Arc<dyn MessageStore>) {
    let sink = Server::start(|_, _| Reply::status(422).body("bad address")).await;
    let svc = start(store, config(&sink.url("/"), 5, None, ""), |_| {}).await;
    let id = ids_of(
        &post_json(
            svc.addr,
            "/messages",
            &[],
            stub("bad@example.com").to_string(),
        )
        .await,
    )
    .remove(0);
    let m = wait_status(svc.addr, &id, Status::Abandoned, Duration::from_secs(10)).await;
    assert_eq!(m.send_count, 1);
    assert_eq!(m.attempts[0].class, AttemptClass::Permanent);
    assert_eq!(m.attempts[0].status, Some(422));
    assert_eq!(m.attempts[0].response_body.as_deref(), Some("bad address"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(sink.count(), 1);
    svc.stop().await;
}

// ---------------------------------------------------------------------------------------------
// 5. Cancel.

async fn a_cancelling_template_cancels_and_sends_nothing(store: Arc<dyn MessageStore>) {
    let sink = Server::status(200).await;
    let svc = start(
        store,
        config(
            &sink.url("/"),
            3,
            Some("function(ctx) error \"cancel\""),
            "",
        ),
        |_| {},
    )
    .await;
    let id = ids_of(
        &post_json(
            svc.addr,
            "/messages",
            &[],
            stub("cancel@example.com").to_string(),
        )
        .await,
    )
    .remove(0);
    let m = wait_status(svc.addr, &id, Status::Cancelled, Duration::from_secs(10)).await;
    assert_eq!(m.send_count, 1);
    assert_eq!(m.attempts.len(), 1);
    assert_eq!(m.attempts[0].class, AttemptClass::Cancelled);
    assert_eq!(m.attempts[0].error_kind, Some(ErrorKind::Cancelled));
    assert_eq!(m.attempts[0].status, None);
    // Cancelled is final; a requeue runs the template again, which cancels again.
    let r = http_request(
        svc.addr,
        "POST",
        &format!("/messages/{id}/retry"),
        &[],
        "",
        false,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let m = wait_for("cancelled again", Duration::from_secs(10), || async {
        let m = fetch(svc.addr, &id, &[]).await;
        (m.status == Status::Cancelled && m.send_count == 2).then_some(m)
    })
    .await;
    assert_eq!(m.attempts.len(), 2);
    assert_eq!(sink.count(), 0, "nothing was sent");
    let metrics = get(svc.addr, "/metrics", &[]).await.text();
    assert!(
        metrics.contains("courier_messages{status=\"cancelled\"} 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("courier_attempts_total{class=\"cancelled\"} 2\n"),
        "{metrics}"
    );
    svc.stop().await;
}

// ---------------------------------------------------------------------------------------------
// 6. Health and metrics.

async fn health_and_metrics(store: Arc<dyn MessageStore>) {
    // One recipient is refused permanently; the rest are delivered.
    let sink = Server::start(|_, r| {
        if r.text().contains("refused@example.com") {
            Reply::status(400)
        } else {
            Reply::status(200)
        }
    })
    .await;
    let svc = start(store, config(&sink.url("/"), 3, None, ""), |_| {}).await;
    let alive = get(svc.addr, "/health/alive", &[]).await;
    assert_eq!((alive.status, alive.json()), (200, json!({"status": "ok"})));
    let ready = wait_for("ready", Duration::from_secs(5), || async {
        let r = get(svc.addr, "/health/ready", &[]).await;
        (r.status == 200).then_some(r)
    })
    .await;
    assert_eq!(ready.json(), json!({"status": "ok"}));

    let batch = json!([
        stub("m1@example.com"),
        stub("m2@example.com"),
        stub("m3@example.com"),
        stub("refused@example.com")
    ]);
    let ids = ids_of(&post_json(svc.addr, "/messages", &[], batch.to_string()).await);
    for id in &ids[..3] {
        wait_status(svc.addr, id, Status::Sent, Duration::from_secs(10)).await;
    }
    wait_status(
        svc.addr,
        &ids[3],
        Status::Abandoned,
        Duration::from_secs(10),
    )
    .await;

    let r = get(svc.addr, "/metrics", &[]).await;
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("application/openmetrics-text"),
        "{:?}",
        r.header("content-type")
    );
    let text = r.text();
    let lines: Vec<&str> = text.lines().collect();
    for expected in [
        "courier_messages{status=\"sent\"} 3",
        "courier_messages{status=\"abandoned\"} 1",
        "courier_messages{status=\"queued\"} 0",
        "courier_messages{status=\"processing\"} 0",
        "courier_messages{status=\"cancelled\"} 0",
        "courier_queue_depth 0",
        "courier_messages_accepted_total 4",
        "courier_attempts_total{class=\"delivered\"} 3",
        "courier_attempts_total{class=\"permanent\"} 1",
        "courier_delivery_latency_seconds_count 4",
        "courier_delivery_latency_seconds_bucket{le=\"+Inf\"} 4",
        "courier_render_latency_seconds_count 4",
        "courier_oldest_queued_age_seconds 0.0",
        "# EOF",
    ] {
        assert!(lines.contains(&expected), "missing {expected:?} in\n{text}");
    }
    assert!(lines
        .iter()
        .any(|l| l.starts_with("# TYPE courier_delivery_latency_seconds histogram")));
    assert!(lines
        .iter()
        .any(|l| l.starts_with("courier_render_latency_seconds_sum ")));
    assert_eq!(lines.last(), Some(&"# EOF"));
    svc.stop().await;
}

/// Queue depth and the age of the oldest queued message, while nothing can be delivered.
async fn metrics_show_the_queue(store: Arc<dyn MessageStore>) {
    let sink = Server::status(200).await;
    // Inserted straight into the store before any worker runs, then held by a dead worker's
    // long lease: one processing; two queued but not due for an hour.
    let ids = store
        .insert(&[
            message("q1@example.com"),
            message("q2@example.com"),
            message("q3@example.com"),
        ])
        .await
        .unwrap();
    let claimed = store
        .claim_due(
            "dead-worker",
            SystemTime::now(),
            1,
            Duration::from_secs(3600),
        )
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // Not due yet: a retry scheduled far ahead by another (live) worker.
    let later = store
        .claim_due("other", SystemTime::now(), 2, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(later.len(), 2);
    let updates: Vec<_> = later
        .iter()
        .map(|c| jsonnet_courier::store::AttemptUpdate {
            id: c.id.clone(),
            worker: "other".into(),
            attempt: jsonnet_courier::delivery::Attempt {
                number: 1,
                started_at: SystemTime::now(),
                latency_ms: 1.0,
                render_ms: None,
                class: AttemptClass::Retryable,
                status: Some(503),
                error_kind: Some(ErrorKind::Status),
                error: None,
                response_body: None,
                retry_after_s: None,
                notes: Vec::new(),
            },
            status: Status::Queued,
            next_attempt_at: SystemTime::now() + Duration::from_secs(3600),
        })
        .collect();
    assert_eq!(store.record(&updates).await.unwrap(), 2);
    let svc = start(store, config(&sink.url("/"), 3, None, ""), |_| {}).await;
    let text = get(svc.addr, "/metrics", &[]).await.text();
    assert!(text.contains("courier_queue_depth 2\n"), "{text}");
    assert!(
        text.contains("courier_messages{status=\"queued\"} 2\n"),
        "{text}"
    );
    assert!(
        text.contains("courier_messages{status=\"processing\"} 1\n"),
        "{text}"
    );
    let age: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("courier_oldest_queued_age_seconds "))
        .unwrap_or_else(|| panic!("no age in {text}"))
        .parse()
        .unwrap();
    assert!((1.0..60.0).contains(&age), "oldest queued age {age}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(sink.count(), 0, "nothing was due");
    assert_eq!(ids.len(), 3);
    svc.stop().await;
}

fn message(to: &str) -> Message {
    serde_json::from_value(stub(to)).unwrap()
}

// ---------------------------------------------------------------------------------------------
// 8. Graceful shutdown.

async fn shutdown_lets_an_inflight_delivery_finish(store: Arc<dyn MessageStore>) {
    let sink = Server::start(|_, _| Reply::status(200).delay(Duration::from_millis(500))).await;
    let grace = Duration::from_secs(3);
    let svc = start(
        Arc::clone(&store),
        config(&sink.url("/"), 3, None, ""),
        |s| {
            s.shutdown_grace = grace;
        },
    )
    .await;
    let addr = svc.addr;
    let id = ids_of(&post_json(addr, "/messages", &[], stub("slow@example.com").to_string()).await)
        .remove(0);
    wait_for(
        "the sink has the request",
        Duration::from_secs(5),
        || async { (sink.count() == 1).then_some(()) },
    )
    .await;
    let took = svc.stop().await;
    assert!(
        took >= Duration::from_millis(300),
        "run returned after {took:?}: it did not wait for the delivery"
    );
    assert!(
        took < grace,
        "run returned after {took:?}, past the grace period {grace:?}"
    );
    let m = store.get(&id).await.unwrap().unwrap();
    assert_eq!(m.status, Status::Sent, "{m:#?}");
    assert_eq!(m.send_count, 1);
    assert_eq!(m.attempts.len(), 1);
    assert_eq!(m.attempts[0].status, Some(200));
    assert!(m.attempts[0].latency_ms >= 450.0, "{:?}", m.attempts[0]);
    // Stopped: no longer listening, nothing else sent.
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "still listening"
    );
    assert_eq!(sink.count(), 1);
}

async fn shutdown_releases_deliveries_that_outlive_the_grace(store: Arc<dyn MessageStore>) {
    let slow = Arc::new(AtomicBool::new(true));
    let s = Arc::clone(&slow);
    let sink = Server::start(move |_, _| {
        if s.load(Ordering::SeqCst) {
            Reply::status(200).delay(Duration::from_secs(5))
        } else {
            Reply::status(200)
        }
    })
    .await;
    let grace = Duration::from_millis(300);
    let cfg = || config(&sink.url("/"), 3, None, "");
    let svc = start(Arc::clone(&store), cfg(), |s| s.shutdown_grace = grace).await;
    let id = ids_of(
        &post_json(
            svc.addr,
            "/messages",
            &[],
            stub("stuck@example.com").to_string(),
        )
        .await,
    )
    .remove(0);
    wait_for(
        "the sink has the request",
        Duration::from_secs(5),
        || async { (sink.count() == 1).then_some(()) },
    )
    .await;
    let took = svc.stop().await;
    assert!(
        took < Duration::from_secs(2),
        "run returned after {took:?} (grace {grace:?})"
    );
    let m = store.get(&id).await.unwrap().unwrap();
    assert_eq!(
        m.status,
        Status::Queued,
        "released, not left processing: {m:#?}"
    );
    assert_eq!(m.send_count, 0);
    assert!(m.attempts.is_empty());
    // The next process takes it over at once (no lease to wait for).
    slow.store(false, Ordering::SeqCst);
    let svc = start(Arc::clone(&store), cfg(), |_| {}).await;
    let started = Instant::now();
    let m = wait_status(svc.addr, &id, Status::Sent, Duration::from_secs(10)).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "waited for a lease"
    );
    assert_eq!(m.send_count, 1);
    assert_eq!(
        sink.count(),
        2,
        "at least once: the interrupted delivery is repeated"
    );
    svc.stop().await;
}

// ---------------------------------------------------------------------------------------------
// 9. A dead worker's lease.

async fn a_dead_workers_message_is_delivered_after_its_lease(store: Arc<dyn MessageStore>) {
    let first_request: Arc<Mutex<Option<Instant>>> = Arc::default();
    let fr = Arc::clone(&first_request);
    let sink = Server::start(move |_, _| {
        fr.lock().unwrap().get_or_insert_with(Instant::now);
        Reply::status(200)
    })
    .await;
    let ids = store
        .insert(&[message("orphan@example.com")])
        .await
        .unwrap();
    let lease = Duration::from_millis(600);
    let claimed_at = Instant::now();
    let claimed = store
        .claim_due("dead-worker", SystemTime::now(), 10, lease)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].id, ids[0]);

    let svc = start(
        Arc::clone(&store),
        config(&sink.url("/"), 3, None, ""),
        |s| {
            s.poll_interval = Duration::from_millis(20);
        },
    )
    .await;
    let m = fetch(svc.addr, &ids[0], &[]).await;
    if claimed_at.elapsed() < lease {
        assert_eq!(m.status, Status::Processing, "still leased");
    }
    let m = wait_status(svc.addr, &ids[0], Status::Sent, Duration::from_secs(10)).await;
    let delivered_at = first_request.lock().unwrap().expect("the sink saw it");
    let waited = delivered_at - claimed_at;
    assert!(
        waited >= lease - Duration::from_millis(5),
        "delivered {waited:?} after the claim, before the {lease:?} lease expired"
    );
    assert!(waited < lease + Duration::from_secs(3), "took {waited:?}");
    assert_eq!(m.send_count, 1);
    assert_eq!(sink.count(), 1);
    svc.stop().await;
}

// ---------------------------------------------------------------------------------------------
// 7. Binding rules (no store backend involved).

#[tokio::test]
async fn refuses_a_non_loopback_address_without_tokens() {
    let store: Arc<dyn MessageStore> =
        Arc::new(SqliteStore::open("sqlite::memory:").await.unwrap());
    let listening = |listen: SocketAddr| {
        let mut config = config("http://127.0.0.1:9/", 0, None, "");
        config.settings.serve = ServeSettings {
            listen,
            ..ServeSettings::default()
        };
        Service::new(config, Arc::clone(&store))
    };
    for addr in ["0.0.0.0:0", "[::]:0", "192.0.2.1:4480"] {
        let addr: SocketAddr = addr.parse().unwrap();
        let service = listening(addr).await.unwrap();
        match service.bind().await {
            Err(e @ ServeError::NoTokens(a)) => {
                assert_eq!(a, addr);
                assert!(e.to_string().contains("without API tokens"), "{e}");
            }
            Err(other) => panic!("{addr}: expected NoTokens, got {other}"),
            Ok(l) => panic!("{addr}: bound {:?} without tokens", l.local_addr()),
        }
    }
    // Loopback needs none.
    let service = listening(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let l = service.bind().await.unwrap();
    assert!(l.local_addr().unwrap().ip().is_loopback());
}

#[test]
fn the_binary_refuses_a_non_loopback_address_without_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("c.db").display());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_courier"))
        .args(["serve", "--listen", "0.0.0.0:0", "--database", &db])
        .args(["--deliver-to", "http://127.0.0.1:9/"])
        .env_remove("COURIER_API_TOKENS")
        .env_remove("COURIER_DATABASE_URL")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("refusing to listen on 0.0.0.0:0 without API tokens"),
        "{stderr}"
    );
    assert!(!stderr.contains("API on http://"), "{stderr}");
}

// ---------------------------------------------------------------------------------------------

/// `?channel=` routes what a reference courier's sms channel posts (its ctx names no channel).
async fn the_channel_query_routes_messages_that_name_none(store: Arc<dyn MessageStore>) {
    let sink = Server::status(200).await;
    let yaml = format!(
        "courier:\n  http:\n    request_config:\n      url: {}\n  channels:\n    - id: sms\n      type: http\n      request_config:\n        url: {}\n        body: base64://{}\njsonnet_courier:\n  serve:\n    poll_interval: 20ms\n",
        sink.url("/email"),
        sink.url("/sms"),
        base64::engine::general_purpose::STANDARD
            .encode(r#"function(ctx) { to: ctx.Recipient, body: ctx.Body }"#)
    );
    let config = Config::parse(&yaml, false, None, &|_| None).unwrap();
    let svc = start(store, config, |_| {}).await;
    let sms = json!({"Recipient": "+14155550123", "TemplateType": "login_code_valid", "Body": "Your code is 123456",
                     "TemplateData": {"LoginCode": "123456"}});
    let r = post_json(svc.addr, "/messages?channel=sms", &[], sms.to_string()).await;
    let id = ids_of(&r).remove(0);
    // A message that names its channel keeps it.
    let own = json!({"recipient": "a@example.com", "template_type": "stub", "channel": "email"});
    let r = post_json(svc.addr, "/messages?channel=sms", &[], own.to_string()).await;
    let own_id = ids_of(&r).remove(0);
    wait_status(svc.addr, &id, Status::Sent, Duration::from_secs(10)).await;
    wait_status(svc.addr, &own_id, Status::Sent, Duration::from_secs(10)).await;
    let reqs = sink.requests.lock().unwrap().clone();
    let to_sms: Vec<_> = reqs.iter().filter(|r| r.path == "/sms").collect();
    assert_eq!(to_sms.len(), 1, "{reqs:#?}");
    assert_eq!(
        serde_json::from_slice::<Value>(&to_sms[0].body).unwrap(),
        json!({"to": "+14155550123", "body": "Your code is 123456"})
    );
    assert_eq!(reqs.iter().filter(|r| r.path == "/email").count(), 1);
    svc.stop().await;
}

async fn idempotency_keys_answer_retries_once_per_token(store: Arc<dyn MessageStore>) {
    let sink = Server::status(200).await;
    let svc = start(
        Arc::clone(&store),
        config(&sink.url("/"), 3, None, ""),
        |s| {
            s.tokens = vec![Secret::new("token-b"), Secret::new(TOKEN)];
        },
    )
    .await;
    let (a, b) = (format!("Bearer {TOKEN}"), "Bearer token-b".to_owned());
    let post = |auth: String, key: &'static str, body: String| async move {
        post_json(
            svc.addr,
            "/messages",
            &[("authorization", auth.as_str()), ("idempotency-key", key)],
            body,
        )
        .await
    };
    let first_body = stub("idem@example.com").to_string();
    let first = post(a.clone(), "order-17", first_body.clone()).await;
    let ids = ids_of(&first);
    assert_eq!(first.json()["id"], ids[0]);
    // A retry: the first answer, byte for byte, and nothing stored twice.
    let again = post(a.clone(), "order-17", first_body.clone()).await;
    assert_eq!(again.status, 202);
    assert_eq!(again.json(), first.json());
    assert_eq!(stored_count(&*store).await, 1);
    // The same key for a different request.
    let other = post(a.clone(), "order-17", stub("else@example.com").to_string()).await;
    assert_error(&other, 409, "Idempotency-Key \"order-17\" was already used");
    assert_eq!(stored_count(&*store).await, 1);
    // Another token's key of the same name is another key.
    let theirs = post(b.clone(), "order-17", first_body.clone()).await;
    let their_ids = ids_of(&theirs);
    assert_ne!(their_ids, ids);
    assert_eq!(stored_count(&*store).await, 2);
    let bad = post(a.clone(), " ", first_body.clone()).await;
    assert_error(&bad, 400, "Idempotency-Key");
    // Both stored messages are delivered, each once.
    for id in ids.iter().chain(&their_ids) {
        wait_for("delivery", Duration::from_secs(10), || {
            let store = Arc::clone(&store);
            async move {
                let m = store.get(id).await.unwrap().unwrap();
                (m.status == Status::Sent).then_some(())
            }
        })
        .await;
    }
    assert_eq!(sink.count(), 2);
    let again = post(a, "order-17", first_body).await;
    assert_eq!(again.json(), first.json());
    assert_eq!(sink.count(), 2);
    svc.stop().await;
}

macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::with_store(super::Backend::SqliteFile, super::$name).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[ignore = "needs COURIER_TEST_POSTGRES_URL"]
                async fn $name() {
                    super::with_store(super::Backend::Postgres, super::$name).await;
                }
            )*
        }
    };
}

backend_tests!(
    accepts_the_reference_body_in_both_key_styles,
    arrays_listing_and_pagination,
    bad_input_is_rejected_and_nothing_is_stored,
    failing_messages_are_abandoned_then_retried_on_request,
    a_permanent_failure_is_abandoned_at_once,
    a_cancelling_template_cancels_and_sends_nothing,
    health_and_metrics,
    metrics_show_the_queue,
    shutdown_lets_an_inflight_delivery_finish,
    shutdown_releases_deliveries_that_outlive_the_grace,
    a_dead_workers_message_is_delivered_after_its_lease,
    the_channel_query_routes_messages_that_name_none,
    idempotency_keys_answer_retries_once_per_token,
);
