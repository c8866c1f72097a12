//! The dashboard in a real browser: Chromium headless driven through chromedriver (WebDriver),
//! against a real service over SQLite with API tokens and a real sink. Ignored unless run with
//! `--ignored` on a machine with Debian's `chromium` and `chromium-driver` packages (or set
//! `CHROMIUM` and `CHROMEDRIVER` to the binaries). Screenshots of every page land in
//! `target/screenshots/`.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use fantoccini::{Client, ClientBuilder, Locator};
use jsonnet_courier::config::{Config, Secret};
use jsonnet_courier::message::{samples, MessageType, TemplateType};
use jsonnet_courier::store::Status;
use serde_json::json;

use crate::backend::{with_store, Backend};
use crate::dashboard::wait_status;
use crate::serve::{ids_of, start};
use crate::support::{post_json, Reply, Server, Start as _};

const TOKEN: &str = "browser-t0ken-s3cret";

/// chromedriver on a free loopback port, killed on drop.
struct Driver {
    child: Child,
    port: u16,
    _profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

async fn browser() -> (Driver, Client) {
    let driver_bin =
        std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into());
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let port = free_port();
    let child = Command::new(&driver_bin)
        .arg(format!("--port={port}"))
        .arg("--allowed-ips=127.0.0.1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start {driver_bin}: {e} (apt-get install chromium-driver)")
        });
    let profile = tempfile::tempdir().unwrap();
    let driver = Driver {
        child,
        port,
        _profile: profile,
    };
    let addr = SocketAddr::from(([127, 0, 0, 1], driver.port));
    crate::support::wait_for(
        "chromedriver to listen",
        Duration::from_secs(20),
        || async { tokio::net::TcpStream::connect(addr).await.ok().map(|_| ()) },
    )
    .await;
    let args = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1280,1000",
    ];
    let mut args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
    args.push(format!(
        "--user-data-dir={}",
        driver._profile.path().display()
    ));
    let mut caps = serde_json::Map::new();
    caps.insert("browserName".into(), json!("chrome"));
    caps.insert(
        "goog:chromeOptions".into(),
        json!({"binary": chromium, "args": args}),
    );
    let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a WebDriver session");
    (driver, client)
}

async fn screenshot(client: &Client, name: &str) {
    let png = client.screenshot().await.expect("screenshot");
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

/// Polls `check` (a WebDriver read) every 100 ms for at most 30 s (the machine may be loaded).
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    for _ in 0..300 {
        if let Some(v) = check().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out after 30 s waiting for {what}");
}

async fn text_of(client: &Client, css: &str) -> String {
    match client.find(Locator::Css(css)).await {
        Ok(e) => e.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium and chromedriver (apt-get install chromium chromium-driver)"]
async fn the_dashboard_in_chromium() {
    with_store(Backend::SqliteFile, |store| async move {
        let failing = Arc::new(AtomicBool::new(true));
        let f = Arc::clone(&failing);
        let sink = Server::start(move |_, r| {
            if r.text().contains("flaky@") && f.load(Ordering::SeqCst) {
                Reply::status(503).body("<h1>down for maintenance</h1>")
            } else {
                Reply::status(200).body(r#"{"queued": true}"#)
            }
        })
        .await;
        // message_retries 1: two attempts, then abandoned.
        let sms_body = base64::engine::general_purpose::STANDARD
            .encode("function(ctx) { to: ctx.Recipient, text: ctx.Body }");
        let yaml = format!(
            "courier:\n  message_retries: 1\n  http:\n    request_config:\n      url: {url}\n  channels:\n    - id: sms\n      type: http\n      request_config:\n        url: {url}\n        body: base64://{sms_body}\n\
             jsonnet_courier:\n  retry:\n    initial_backoff: 10ms\n    max_backoff: 50ms\n  serve:\n    poll_interval: 20ms\n",
            url = sink.url("/hook")
        );
        let config = Config::parse(&yaml, false, None, &|_| None).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        let svc = start(store, config, |s| {
            s.tokens = vec![Secret::new(TOKEN)];
        })
        .await;
        let bearer = format!("Bearer {TOKEN}");
        let auth = [("authorization", bearer.as_str())];
        let mut batch = Vec::new();
        for (t, kind) in [
            (TemplateType::VerificationCodeValid, MessageType::Email),
            (TemplateType::RecoveryCodeValid, MessageType::Email),
            (TemplateType::LoginCodeValid, MessageType::Sms),
        ] {
            batch.push(serde_json::to_value(samples::message(t, kind).unwrap()).unwrap());
        }
        batch.push(json!({"recipient": "flaky@example.com", "template_type": "stub",
            "subject": "Hello", "body": "Hi there"}));
        let ids = ids_of(&post_json(svc.addr, "/messages", &auth, json!(batch).to_string()).await);
        let flaky = ids[3].clone();
        for id in &ids[..3] {
            wait_status(svc.addr, id, Status::Sent, &auth).await;
        }
        wait_status(svc.addr, &flaky, Status::Abandoned, &auth).await;

        let (_driver, client) = browser().await;
        let base = format!("http://{}", svc.addr);
        let result = crate::support::catch_unwind(async {
            // Login: the page asks for a token.
            client.goto(&format!("{base}/ui/")).await.unwrap();
            let token_field = client.wait().for_element(Locator::Id("token")).await.unwrap();
            screenshot(&client, "login").await;
            token_field.send_keys(TOKEN).await.unwrap();
            client
                .find(Locator::Css("form.login button"))
                .await
                .unwrap()
                .click()
                .await
                .unwrap();

            // The list: every message, newest first, with counts per status.
            client.wait().for_element(Locator::Css("table.messages")).await.unwrap();
            let rows = client.find_all(Locator::Css("table.messages tbody tr")).await.unwrap();
            assert_eq!(rows.len(), 4);
            assert!(rows[0].text().await.unwrap().contains("flaky@example.com"), "newest first");
            assert_eq!(text_of(&client, r#"[data-status="sent"]"#).await, "3");
            assert_eq!(text_of(&client, r#"[data-status="abandoned"]"#).await, "1");
            assert!(!client.source().await.unwrap().contains(TOKEN));
            screenshot(&client, "list").await;

            // Filter by status with the form, by keyboard-free clicks.
            client
                .find(Locator::Id("status"))
                .await
                .unwrap()
                .select_by_value("abandoned")
                .await
                .unwrap();
            client
                .find(Locator::Css("form.filters button[type=submit]"))
                .await
                .unwrap()
                .click()
                .await
                .unwrap();
            eventually("the abandoned filter", || async {
                let url = client.current_url().await.ok()?;
                url.as_str().contains("status=abandoned").then_some(())
            })
            .await;
            let rows = client.find_all(Locator::Css("table.messages tbody tr")).await.unwrap();
            assert_eq!(rows.len(), 1);

            // The detail page: both attempts on the timeline, the response body as text.
            client
                .find(Locator::Css("table.messages tbody tr a"))
                .await
                .unwrap()
                .click()
                .await
                .unwrap();
            client.wait().for_element(Locator::Css("ol.timeline")).await.unwrap();
            let attempts = client.find_all(Locator::Css("ol.timeline li")).await.unwrap();
            assert_eq!(attempts.len(), 2);
            let first = attempts[0].text().await.unwrap();
            assert!(first.contains("HTTP 503 (retryable)"), "{first}");
            assert!(first.contains("retried: attempt 2"), "{first}");
            let last = attempts[1].text().await.unwrap();
            assert!(last.contains("out of attempts (2 allowed): abandoned"), "{last}");
            // Open the response body and read it as text, tags and all.
            client
                .find(Locator::Css("ol.timeline li details summary"))
                .await
                .unwrap()
                .click()
                .await
                .unwrap();
            assert_eq!(
                text_of(&client, "ol.timeline li pre.body").await,
                "<h1>down for maintenance</h1>"
            );
            assert!(text_of(&client, "#payload").await.contains("flaky@example.com"));
            screenshot(&client, "detail").await;

            // Retry: the sink recovers, the button queues it, the worker delivers it.
            failing.store(false, Ordering::SeqCst);
            client.find(Locator::Id("retry")).await.unwrap().click().await.unwrap();
            eventually("the retried message to be sent", || async {
                client.refresh().await.ok()?;
                let badge = text_of(&client, "dl.facts .badge").await;
                (badge == "sent").then_some(())
            })
            .await;
            let attempts = client.find_all(Locator::Css("ol.timeline li")).await.unwrap();
            assert_eq!(attempts.len(), 3);
            assert!(attempts[2].text().await.unwrap().contains("HTTP 200 (delivered)"));
            assert!(client.find(Locator::Id("retry")).await.is_err(), "no retry for a sent message");
            screenshot(&client, "detail-retried").await;

            // The overview: charts of the last hour.
            client.goto(&format!("{base}/ui/overview")).await.unwrap();
            client.wait().for_element(Locator::Css("figure#delivered svg")).await.unwrap();
            let totals = text_of(&client, "#hour-totals").await;
            assert_eq!(
                totals,
                "Last hour: 4 delivered, 2 retryable failures, 0 permanent failures, 0 cancelled."
            );
            let points = client.find_all(Locator::Css("figure#delivered svg polyline, figure#delivered svg circle")).await.unwrap();
            assert!(!points.is_empty(), "the delivered chart draws the deliveries");
            screenshot(&client, "overview").await;

            // The playground: type a template, see the payload.
            client.goto(&format!("{base}/ui/playground")).await.unwrap();
            let editor = client.wait().for_element(Locator::Id("template")).await.unwrap();
            eventually("the initial render", || async {
                let s = text_of(&client, "#status").await;
                s.starts_with("Rendered").then_some(())
            })
            .await;
            editor.clear().await.unwrap();
            editor
                .send_keys("function(ctx) {\n  to: ctx.Recipient,\n  code: ctx.TemplateData.VerificationCode,\n}")
                .await
                .unwrap();
            let sample = serde_json::to_value(
                samples::message(TemplateType::VerificationCodeValid, MessageType::Email).unwrap(),
            )
            .unwrap();
            // Jsonnet writes object fields in sorted order.
            let want = serde_json::to_string_pretty(&json!({
                "code": sample["template_data"]["verification_code"],
                "to": sample["recipient"],
            }))
            .unwrap();
            eventually("the typed template's payload", || async {
                (text_of(&client, "#payload").await == want).then_some(())
            })
            .await;
            client.find(Locator::Id("check-all")).await.unwrap().click().await.unwrap();
            let rows = eventually("the check table", || async {
                let rows = client.find_all(Locator::Css("#check-table tbody tr")).await.ok()?;
                (!rows.is_empty()).then_some(rows.len())
            })
            .await;
            assert_eq!(rows, samples::all().count());
            screenshot(&client, "playground").await;

            // A syntax error on line 3 is marked at line 3.
            editor.clear().await.unwrap();
            editor
                .send_keys("function(ctx) {\n  to: ctx.Recipient,\n  code: ,\n}")
                .await
                .unwrap();
            let marked = eventually("the error's line in the gutter", || async {
                let e = client.find(Locator::Css("#gutter div.err")).await.ok()?;
                e.attr("data-line").await.ok().flatten()
            })
            .await;
            assert_eq!(marked, "3");
            let error = text_of(&client, "#error").await;
            assert!(error.contains("line 3 column"), "{error}");
            assert_eq!(editor.attr("aria-invalid").await.unwrap().as_deref(), Some("true"));
            assert_eq!(text_of(&client, "#payload").await, "");
            screenshot(&client, "playground-error").await;

            // Readable on a phone.
            client.set_window_size(390, 844).await.unwrap();
            client.goto(&format!("{base}/ui/")).await.unwrap();
            client.wait().for_element(Locator::Css("table.messages")).await.unwrap();
            screenshot(&client, "list-phone").await;
        })
        .await;
        let _ = client.close().await;
        svc.stop().await;
        if let Err(panic) = result {
            std::panic::resume_unwind(panic);
        }
    })
    .await;
}
