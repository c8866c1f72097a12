//! Remote templates refreshed in the background: a real template server on 127.0.0.1 that
//! counts requests, answers conditionally and says how long its copies are good.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jsonnet_courier::config::Config;
use jsonnet_courier::delivery::{Courier, Outcome, RefreshOutcome, RemoteTemplate};
use jsonnet_courier::message::Message;
use serde_json::{json, Value};

use crate::support::{wait_for, Reply, Server, Start as _};

const LAST_MODIFIED: &str = "Wed, 02 Dec 2026 10:00:00 GMT";

/// A template server: `/body.jsonnet` serves `bodies[version]`, `/subject.gotmpl` serves
/// `subjects[version]`, each with an ETag per version, a fixed Last-Modified and `cache`
/// as Cache-Control; a request whose If-None-Match is the current ETag gets a 304. It records
/// when each request came.
struct Templates {
    server: Server,
    version: Arc<AtomicUsize>,
    /// Set: every request has its connection closed unanswered (the sink's open connections
    /// outlive dropping it).
    down: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

/// A request to the template server: path, arrival, conditional headers.
#[derive(Clone)]
struct Seen {
    path: String,
    at: Instant,
    if_none_match: Option<String>,
    if_modified_since: Option<String>,
}

impl Templates {
    async fn start(bodies: &'static [&'static str], subjects: &'static [&'static str]) -> Self {
        Self::start_with(bodies, subjects, "max-age=1").await
    }

    async fn start_with(
        bodies: &'static [&'static str],
        subjects: &'static [&'static str],
        cache: &'static str,
    ) -> Self {
        let version = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let down = Arc::new(AtomicBool::new(false));
        let (v, t, d) = (Arc::clone(&version), Arc::clone(&seen), Arc::clone(&down));
        let server = Server::start(move |_, req| {
            t.lock().unwrap().push(Seen {
                path: req.path.clone(),
                at: Instant::now(),
                if_none_match: req.header("if-none-match").map(str::to_owned),
                if_modified_since: req.header("if-modified-since").map(str::to_owned),
            });
            if d.load(Ordering::SeqCst) {
                return Reply::dropped();
            }
            let n = v.load(Ordering::SeqCst);
            let (text, tag) = if req.path.starts_with("/subject") {
                (subjects[n], format!("\"s{n}\""))
            } else {
                (bodies[n], format!("\"b{n}\""))
            };
            if req.header("if-none-match") == Some(tag.as_str()) {
                return Reply::status(304).header("cache-control", cache);
            }
            Reply::status(200)
                .header("etag", &tag)
                .header("last-modified", LAST_MODIFIED)
                .header("cache-control", cache)
                .body(text)
        })
        .await;
        Self {
            server,
            version,
            down,
            seen,
        }
    }

    fn requests(&self, path: &str) -> Vec<Seen> {
        let seen = self.seen.lock().unwrap();
        seen.iter().filter(|s| s.path == path).cloned().collect()
    }
}

fn config(sink: &str, templates: &Server) -> Config {
    let yaml = format!(
        "courier:\n  http:\n    request_config:\n      url: {sink}\n      body: {}\n  \
         templates:\n    verification_code:\n      valid:\n        email:\n          subject: {}\n",
        templates.url("/body.jsonnet"),
        templates.url("/subject.gotmpl"),
    );
    Config::parse(&yaml, false, None, &|_| None).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
}

/// A message composed from its type's templates (no subject of its own).
fn message() -> Message {
    Message::from_json(
        json!({
            "recipient": "lea@example.org",
            "template_type": "verification_code_valid",
            "template_data": {"to": "lea@example.org", "verification_code": "417205"}
        })
        .to_string()
        .as_bytes(),
    )
    .unwrap()
}

/// Delivers a message and returns the payload the sink received.
async fn payload(courier: &Courier, sink: &Server) -> Value {
    let before = sink.count();
    let report = courier.deliver(&message()).await;
    assert_eq!(report.outcome, Outcome::Delivered, "{report:?}");
    serde_json::from_slice(&sink.request(before).body).unwrap()
}

fn status(courier: &Courier, path: &str) -> RemoteTemplate {
    courier
        .remote_templates()
        .into_iter()
        .find(|r| r.uri.ends_with(path))
        .unwrap_or_else(|| panic!("no remote template {path}"))
}

/// Waits until `path`'s refresh count passes `after` and returns its state.
async fn next_refresh(courier: &Courier, path: &str, after: u64) -> RemoteTemplate {
    wait_for("a refresh", Duration::from_secs(15), || async {
        let s = status(courier, path);
        (s.refreshes > after).then_some(s)
    })
    .await
}

/// Waits until a refresh of `path` ends with `outcome` (a refresh in flight when the server
/// changed may still see the old state) and returns the state.
async fn refreshed(courier: &Courier, path: &str, outcome: RefreshOutcome) -> RemoteTemplate {
    wait_for(outcome.as_str(), Duration::from_secs(15), || async {
        let s = status(courier, path);
        (s.last == Some(outcome)).then_some(s)
    })
    .await
}

static BODIES: &[&str] = &[
    "function(ctx) {v: 1, subject: ctx.subject}",
    "function(ctx) {v: 2, subject: ctx.subject}",
    "function(ctx) {v: 3, subject: ",
    "function(ctx) {v: 3, subject: ",
];
static SUBJECTS: &[&str] = &[
    "code {{ .VerificationCode }} s1",
    "code {{ .VerificationCode }} s1",
    "code {{ .VerificationCode }} s2",
    "code {{ .VerificationCode ",
];

/// A courier over the templates server with its background refresher running; send `true` on
/// the returned sender to stop the refresher.
async fn refreshing(
    sink: &Server,
    templates: &Templates,
) -> (
    Arc<Courier>,
    tokio::sync::watch::Sender<bool>,
    tokio::task::JoinHandle<()>,
) {
    let courier = Arc::new(
        Courier::new(config(&sink.url("/"), &templates.server))
            .await
            .unwrap(),
    );
    let (stop, rx) = tokio::sync::watch::channel(false);
    let refresher = tokio::spawn({
        let courier = Arc::clone(&courier);
        async move { courier.keep_remotes_fresh(rx).await }
    });
    (courier, stop, refresher)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_templates_refresh_conditionally_when_they_expire_and_keep_the_last_good_copy() {
    let sink = Server::status(200).await;
    let templates = Templates::start(BODIES, SUBJECTS).await;
    let (courier, stop, refresher) = refreshing(&sink, &templates).await;
    assert_eq!(
        templates.requests("/body.jsonnet").len(),
        1,
        "fetched once at load"
    );
    let first = templates.requests("/body.jsonnet").remove(0);
    assert_eq!(
        first.if_none_match, None,
        "the first fetch is unconditional"
    );
    assert_eq!(
        payload(&courier, &sink).await,
        json!({"v": 1, "subject": "code 417205 s1"})
    );

    // Expired after max-age=1: a conditional GET, answered 304, keeps the copy.
    let s = next_refresh(&courier, "/body.jsonnet", 0).await;
    assert_eq!(s.last, Some(RefreshOutcome::Unchanged));
    assert_eq!(s.etag.as_deref(), Some("\"b0\""));
    assert_eq!(s.fresh_for, Duration::from_secs(1));
    let second = templates.requests("/body.jsonnet").remove(1);
    assert!(
        second.at - first.at >= Duration::from_millis(950),
        "refreshed before max-age passed: {:?}",
        second.at - first.at
    );
    assert_eq!(second.if_none_match.as_deref(), Some("\"b0\""));
    assert_eq!(second.if_modified_since.as_deref(), Some(LAST_MODIFIED));
    assert_eq!(
        payload(&courier, &sink).await,
        json!({"v": 1, "subject": "code 417205 s1"})
    );

    // A changed body: compiled and in use for the next message; the subject template is served
    // unchanged (same text under a new ETag) and stays.
    templates.version.store(1, Ordering::SeqCst);
    let s = refreshed(&courier, "/body.jsonnet", RefreshOutcome::Updated).await;
    assert_eq!(s.etag.as_deref(), Some("\"b1\""));
    assert_eq!(
        payload(&courier, &sink).await,
        json!({"v": 2, "subject": "code 417205 s1"})
    );

    // A body that no longer compiles is refused, the last good one keeps rendering; a changed
    // message template is swapped in alongside.
    templates.version.store(2, Ordering::SeqCst);
    let s = refreshed(&courier, "/body.jsonnet", RefreshOutcome::Rejected).await;
    let why = s.last_error.unwrap();
    assert!(why.contains("body.jsonnet:1:"), "{why}");
    refreshed(&courier, "/subject.gotmpl", RefreshOutcome::Updated).await;
    assert_eq!(
        payload(&courier, &sink).await,
        json!({"v": 2, "subject": "code 417205 s2"})
    );

    // A message template that no longer parses is refused too.
    templates.version.store(3, Ordering::SeqCst);
    let s = refreshed(&courier, "/subject.gotmpl", RefreshOutcome::Rejected).await;
    assert!(s.last_error.unwrap().contains("subject"));

    // The server goes away: the refresh fails, the last good copies keep rendering.
    templates.down.store(true, Ordering::SeqCst);
    let s = refreshed(&courier, "/body.jsonnet", RefreshOutcome::Failed).await;
    assert!(s.last_error.is_some(), "{s:?}");
    // And when nothing listens any more.
    let seen = Arc::clone(&templates.seen);
    drop(templates.server);
    let s = next_refresh(&courier, "/body.jsonnet", s.refreshes).await;
    assert_eq!(s.last, Some(RefreshOutcome::Failed), "{s:?}");
    assert_eq!(
        payload(&courier, &sink).await,
        json!({"v": 2, "subject": "code 417205 s2"})
    );

    // Bounded: about one request per template per second of the test, never a busy loop.
    let elapsed = first.at.elapsed().as_secs() + 2;
    let total = seen.lock().unwrap().len() as u64;
    assert!(total <= 2 * elapsed + 2, "{total} requests in {elapsed} s");
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), refresher)
        .await
        .expect("the refresher stops on shutdown")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_server_that_says_no_cache_is_fetched_again_after_the_default_interval() {
    let sink = Server::status(200).await;
    let templates = Templates::start_with(BODIES, SUBJECTS, "no-cache").await;
    let (courier, stop, refresher) = refreshing(&sink, &templates).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(templates.requests("/body.jsonnet").len(), 1);
    let s = status(&courier, "/body.jsonnet");
    assert_eq!(s.fresh_for, Duration::from_secs(300));
    assert_eq!(s.refreshes, 0);
    stop.send(true).unwrap();
    refresher.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_refreshes_a_remote_body_template_without_a_signal() {
    use crate::proof::Proc;
    use crate::serve::{ids_of, wait_status};
    use crate::support::post_json;
    use jsonnet_courier::store::Status;

    let sink = Server::status(200).await;
    let templates = Templates::start(BODIES, SUBJECTS).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("courier.yaml");
    std::fs::write(
        &cfg,
        format!(
            "courier:\n  delivery_strategy: http\n  http:\n    request_config:\n      url: {}\n      body: {}\njsonnet_courier:\n  serve:\n    listen: 127.0.0.1:0\n    database: sqlite://{}\n    poll_interval: 20ms\n",
            sink.url("/mail"),
            templates.server.url("/body.jsonnet"),
            dir.path().join("courier.db").display()
        ),
    )
    .unwrap();
    let proc = Proc::start("serve", &cfg, &[]).await;
    let send = |n: usize| {
        let (sink, proc) = (&sink, &proc);
        async move {
            let msg =
                json!({"recipient": "a@example.com", "template_type": "stub", "subject": "s"});
            let id =
                ids_of(&post_json(proc.addr, "/messages", &[], msg.to_string()).await).remove(0);
            wait_status(proc.addr, &id, Status::Sent, Duration::from_secs(20)).await;
            serde_json::from_slice::<Value>(&sink.request(n).body).unwrap()["v"].clone()
        }
    };
    assert_eq!(send(0).await, 1);
    templates.version.store(1, Ordering::SeqCst);
    wait_for("an updated template", Duration::from_secs(15), || async {
        let m = crate::support::get(proc.addr, "/metrics", &[]).await.text();
        m.contains("courier_template_refreshes_total{outcome=\"updated\"} 1")
            .then_some(())
    })
    .await;
    assert_eq!(send(1).await, 2);
    let refreshes = templates.requests("/body.jsonnet");
    assert!(refreshes.len() >= 2);
    assert!(
        refreshes[1..]
            .iter()
            .all(|s| s.if_none_match.is_some() && s.if_modified_since.is_some()),
        "refreshes are conditional"
    );
}
