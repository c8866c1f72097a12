//! Messages with only a template type and data, delivered: `courier send` and `courier serve`
//! compose subject and bodies from the configured message templates (an override folder with a
//! subject, an HTML body, and a plain-text body that fails and falls back), the Jsonnet body
//! template sees them, and the sink on 127.0.0.1 receives them. A message with its own subject
//! and body is delivered as given.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use jsonnet_courier::config::Config;
use jsonnet_courier::store::Status;
use serde_json::{json, Value};

use crate::backend::{with_store, Backend};
use crate::serve::{fetch, ids_of, start, wait_status};
use crate::support::{get, post_json, Server, Start as _};

/// The Jsonnet body: what the channel posts is exactly what the message templates produced.
const BODY: &str = "function(ctx) { subject: ctx.Subject, text: ctx.Body, \
                    html: if std.objectHas(ctx, 'HTMLBody') then ctx.HTMLBody else null }";

fn override_folder(dir: &Path) {
    let d = dir.join("over/recovery_code/valid");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(
        d.join("email.subject.gotmpl"),
        "  Code {{ .RecoveryCode | upper }} ({{ .ExpiresInMinutes }} min)\n",
    )
    .unwrap();
    std::fs::write(
        d.join("email.body.gotmpl"),
        r#"<p>Hi {{ .Identity.traits.name | default "there" }}, code {{ .RecoveryCode }}</p>"#,
    )
    .unwrap();
    std::fs::write(
        d.join("email.body.plaintext.gotmpl"),
        r#"{{ fail "no plain text today" }}"#,
    )
    .unwrap();
}

fn yaml(dir: &Path, sink: &str) -> String {
    let body = base64::engine::general_purpose::STANDARD.encode(BODY);
    format!(
        "courier:\n  message_retries: 0\n  template_override_path: {}\n  http:\n    request_config:\n      url: {sink}\n      body: base64://{body}\n\
         jsonnet_courier:\n  serve:\n    poll_interval: 20ms\n",
        dir.join("over").display()
    )
}

fn bare(to: &str) -> Value {
    json!({"recipient": to, "template_type": "recovery_code_valid",
           "template_data": {"recovery_code": "abc123", "expires_in_minutes": 15,
                             "identity": {"traits": {"name": "<Ann>"}}}})
}

fn given(to: &str) -> Value {
    json!({"recipient": to, "template_type": "recovery_code_valid",
           "subject": "As given", "body": "given body",
           "template_data": {"recovery_code": "abc123"}})
}

/// The posted payload of a composed message: overrides rendered (HTML escaped, subject trimmed),
/// the failing plain-text override replaced by the built-in one.
fn assert_composed(payload: &Value) {
    assert_eq!(payload["subject"], "Code ABC123 (15 min)");
    assert_eq!(payload["html"], "<p>Hi &lt;Ann&gt;, code abc123</p>");
    let text = payload["text"].as_str().unwrap();
    assert!(
        text.contains("abc123") && !text.contains("no plain text"),
        "{text}"
    );
}

fn assert_fallback_note(attempt: &Value) {
    let notes = attempt["notes"].as_array().expect("notes in the attempt");
    assert_eq!(notes.len(), 1, "{notes:?}");
    let note = notes[0].as_str().unwrap();
    assert!(
        note.contains("email.body.plaintext.gotmpl") && note.contains("no plain text today"),
        "{note}"
    );
}

/// `courier send -c CFG -m FILE` with `msg` written to `file`; the report (exit 0 asserted).
fn send(cfg: &Path, file: &Path, msg: &Value) -> Value {
    std::fs::write(file, msg.to_string()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_courier"))
        .args(["send", "-c"])
        .arg(cfg)
        .arg("-m")
        .arg(file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_composes_a_message_without_subject_and_body() {
    let sink = Server::status(202).await;
    let dir = tempfile::tempdir().unwrap();
    override_folder(dir.path());
    let cfg = dir.path().join("courier.yaml");
    std::fs::write(&cfg, yaml(dir.path(), &sink.url("/mail"))).unwrap();
    let (c, m) = (cfg.clone(), dir.path().join("a.json"));
    let report = tokio::task::spawn_blocking(move || send(&c, &m, &bare("ann@example.com")))
        .await
        .unwrap();
    assert_eq!(report["outcome"], "delivered");
    assert_fallback_note(&report["attempts"][0]);
    assert_composed(&serde_json::from_slice(&sink.request(0).body).unwrap());

    let m = dir.path().join("b.json");
    let report = tokio::task::spawn_blocking(move || send(&cfg, &m, &given("bo@example.com")))
        .await
        .unwrap();
    assert!(report["attempts"][0].get("notes").is_none(), "{report}");
    let payload: Value = serde_json::from_slice(&sink.request(1).body).unwrap();
    assert_eq!(
        payload,
        json!({"subject": "As given", "text": "given body", "html": null})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_composes_a_message_without_subject_and_body() {
    with_store(Backend::SqliteFile, |store| async move {
        let sink = Server::status(202).await;
        let dir = tempfile::tempdir().unwrap();
        override_folder(dir.path());
        let config = Config::parse(&yaml(dir.path(), &sink.url("/mail")), false, None, &|_| {
            None
        })
        .unwrap();
        let svc = start(store, config, |_| {}).await;
        let body = json!([bare("ann@example.com"), given("bo@example.com")]).to_string();
        let ids = ids_of(&post_json(svc.addr, "/messages", &[], body).await);
        assert_eq!(ids.len(), 2);
        wait_status(svc.addr, &ids[0], Status::Sent, Duration::from_secs(10)).await;
        wait_status(svc.addr, &ids[1], Status::Sent, Duration::from_secs(10)).await;
        let composed = fetch(svc.addr, &ids[0], &[]).await;
        assert_fallback_note(&serde_json::to_value(&composed.attempts[0]).unwrap());
        let payloads: Vec<Value> = (0..2)
            .map(|n| serde_json::from_slice(&sink.request(n).body).unwrap())
            .collect();
        let composed = payloads
            .iter()
            .find(|p| p["subject"] != "As given")
            .unwrap();
        assert_composed(composed);
        assert!(
            payloads.contains(&json!({"subject": "As given", "text": "given body", "html": null}))
        );
        let as_given = fetch(svc.addr, &ids[1], &[]).await;
        assert!(as_given.attempts[0].notes.is_empty());
        let metrics = get(svc.addr, "/metrics", &[]).await.text();
        assert!(
            metrics.contains("courier_template_fallbacks_total 1\n"),
            "{metrics}"
        );
        svc.stop().await;
    })
    .await;
}

/// A message template that does not parse is a config error at `Courier::new`, naming the file.
#[tokio::test]
async fn a_broken_message_template_fails_at_load() {
    let dir = tempfile::tempdir().unwrap();
    override_folder(dir.path());
    std::fs::write(
        dir.path()
            .join("over/recovery_code/valid/email.subject.gotmpl"),
        "{{ now }}",
    )
    .unwrap();
    let config = Config::parse(
        &yaml(dir.path(), "http://127.0.0.1:9/"),
        false,
        None,
        &|_| None,
    )
    .unwrap();
    let e = jsonnet_courier::delivery::Courier::new(config)
        .await
        .err()
        .expect("a load error")
        .to_string();
    assert!(
        e.contains("recovery_code/valid/email.subject.gotmpl")
            && e.contains("function \"now\" not defined"),
        "{e}"
    );
    let e = Config::parse(
        "courier:\n  templates:\n    recovery_code:\n      valid:\n        email:\n          subject: 5\n",
        false,
        None,
        &|_| None,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("courier.templates.recovery_code.valid.email.subject"),
        "{e}"
    );
}
