//! Delivery through a real HTTP server on 127.0.0.1: the spec's acceptance cases (section 6), the
//! request rules, outcomes and retries.

use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine as _;
use jsonnet_courier::config::Config;
use jsonnet_courier::delivery::{AttemptClass, Courier, ErrorKind, Outcome};
use jsonnet_courier::message::{samples, Message, MessageType, TemplateType};
use jsonnet_courier::template::Ctx;
use serde_json::{json, Value};

use crate::support::{Reply, Server, Start as _};

const TEST_BODY: &str = "function(ctx) { from: ctx.from, to: ctx.to, body: ctx.body }";
const EXPECTED_JSON: &str = r#"{"body":"test-sms-body","from":"+13104661805","to":"+14134242223"}"#;

fn raw_ctx() -> Ctx {
    Ctx::Value(json!({"to": "+14134242223", "from": "+13104661805", "body": "test-sms-body"}))
}

/// A courier from YAML, with templates written into a temp dir that is the config's directory.
async fn courier(dir: &Path, yaml: &str) -> Courier {
    std::fs::write(dir.join("test_body.jsonnet"), TEST_BODY).unwrap();
    let config = Config::parse(yaml, false, Some(dir.to_path_buf()), &|_| None).unwrap();
    Courier::new(config).await.unwrap()
}

/// Sends the raw acceptance ctx through the `sms` channel configured by `request_config`.
async fn send_raw(request_config: &str, server: &Server) -> jsonnet_courier::delivery::Attempt {
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "courier:\n  delivery_strategy: smtp\n  channels:\n    - id: sms\n      type: http\n      request_config:\n{}\n",
        request_config
            .replace("URL", &server.url("/send"))
            .lines()
            .map(|l| format!("        {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let c = courier(dir.path(), &yaml).await;
    c.attempt_with_ctx("sms", raw_ctx(), 1).await
}

#[tokio::test]
async fn post_without_auth_sends_the_rendered_json() {
    let server = Server::status(200).await;
    let a = send_raw(
        "url: URL\nmethod: POST\nbody: file://./test_body.jsonnet",
        &server,
    )
    .await;
    assert_eq!(a.class, AttemptClass::Delivered, "{a:?}");
    let req = server.request(0);
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/send");
    assert_eq!(req.text(), EXPECTED_JSON);
    assert_eq!(req.header("content-type"), Some("application/json"));
    assert_eq!(
        req.header("content-length"),
        Some(&*EXPECTED_JSON.len().to_string())
    );
    assert!(req.header("authorization").is_none());
    assert_eq!(
        req.header("user-agent"),
        Some(jsonnet_courier::http::USER_AGENT)
    );
}

#[tokio::test]
async fn legacy_bare_path_and_base64_templates_send_the_same_json() {
    let server = Server::status(200).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("test_body.jsonnet"), TEST_BODY).unwrap();
    let bare = dir.path().join("test_body.jsonnet");
    send_raw(&format!("url: URL\nbody: {}", bare.display()), &server).await;
    let b64 = base64::engine::general_purpose::STANDARD.encode(TEST_BODY);
    send_raw(&format!("url: URL\nbody: base64://{b64}"), &server).await;
    assert_eq!(server.count(), 2);
    assert_eq!(server.request(0).text(), EXPECTED_JSON);
    assert_eq!(server.request(1).text(), EXPECTED_JSON);
}

#[tokio::test]
async fn custom_headers_are_sent() {
    let server = Server::status(200).await;
    send_raw(
        "url: URL\nbody: file://./test_body.jsonnet\nheaders:\n  Custom-Header: test",
        &server,
    )
    .await;
    assert_eq!(server.request(0).header("custom-header"), Some("test"));
}

#[tokio::test]
async fn get_carries_the_body_and_basic_auth() {
    let server = Server::status(200).await;
    send_raw(
        "url: URL\nmethod: GET\nbody: file://./test_body.jsonnet\nauth:\n  type: basic_auth\n  config:\n    user: test-api-user\n    password: secret",
        &server,
    )
    .await;
    let req = server.request(0);
    assert_eq!(req.method, "GET");
    assert_eq!(req.text(), EXPECTED_JSON);
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("test-api-user:secret")
    );
    assert_eq!(req.header("authorization"), Some(expected.as_str()));
}

#[tokio::test]
async fn get_without_a_body_template_sends_no_body() {
    let server = Server::status(200).await;
    let a = send_raw(
        "url: URL\nmethod: GET\nauth:\n  type: basic_auth\n  config:\n    user: test-api-user\n    password: secret",
        &server,
    )
    .await;
    assert_eq!(a.class, AttemptClass::Delivered, "{a:?}");
    let req = server.request(0);
    assert!(req.body.is_empty());
    assert!(req.header("content-type").is_none());
    assert!(req.header("authorization").unwrap().starts_with("Basic "));
}

#[tokio::test]
async fn delete_carries_the_body_and_an_api_key_header() {
    let server = Server::status(200).await;
    send_raw(
        "url: URL\nmethod: DELETE\nbody: file://./test_body.jsonnet\nheaders:\n  my-api-key: configured\nauth:\n  type: api_key\n  config:\n    name: my-api-key\n    value: secret\n    in: header",
        &server,
    )
    .await;
    let req = server.request(0);
    assert_eq!(req.method, "DELETE");
    assert_eq!(req.text(), EXPECTED_JSON);
    let values: Vec<_> = req.headers.get_all("my-api-key").iter().collect();
    assert_eq!(
        values,
        ["secret"],
        "the API key replaces the configured header"
    );
}

#[tokio::test]
async fn form_body_and_api_key_cookie_match_byte_for_byte() {
    let server = Server::status(200).await;
    send_raw(
        "url: URL\nbody: file://./test_body.jsonnet\nheaders:\n  Content-Type: application/x-www-form-urlencoded\nauth:\n  type: api_key\n  config:\n    name: my-api-key\n    value: secret\n    in: cookie",
        &server,
    )
    .await;
    let req = server.request(0);
    assert_eq!(
        req.text(),
        "body=test-sms-body&from=%2B13104661805&to=%2B14134242223"
    );
    assert_eq!(req.header("cookie"), Some("my-api-key=secret"));
    assert_eq!(
        req.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
}

#[tokio::test]
async fn cookie_key_joins_a_configured_cookie_and_charset_is_accepted() {
    let server = Server::status(200).await;
    send_raw(
        "url: URL\nbody: file://./test_body.jsonnet\nheaders:\n  Content-Type: application/json; charset=utf-8\n  Cookie: session=abc\nauth:\n  type: api_key\n  config:\n    name: my-api-key\n    value: secret\n    in: cookie",
        &server,
    )
    .await;
    let req = server.request(0);
    assert_eq!(req.header("cookie"), Some("session=abc; my-api-key=secret"));
    assert_eq!(
        req.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(req.text(), EXPECTED_JSON);
}

#[tokio::test]
async fn every_method_but_trace_carries_the_body() {
    let server = Server::status(200).await;
    for m in ["PUT", "PATCH", "OPTIONS", "GET", "POST", "DELETE"] {
        send_raw(
            &format!("url: URL\nmethod: {m}\nbody: file://./test_body.jsonnet"),
            &server,
        )
        .await;
    }
    // TRACE renders nothing: a template that would fail is never evaluated.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("fails.jsonnet"),
        "function(ctx) error 'must not render'",
    )
    .unwrap();
    let yaml = format!(
        "courier:\n  delivery_strategy: smtp\n  channels:\n    - id: t\n      type: http\n      request_config:\n        url: {}\n        method: TRACE\n        body: file://./fails.jsonnet\n",
        server.url("/trace")
    );
    let c = courier(dir.path(), &yaml).await;
    let a = c.attempt_with_ctx("t", raw_ctx(), 1).await;
    assert_eq!(a.class, AttemptClass::Delivered, "{a:?}");
    let all = server.requests.lock().unwrap().clone();
    for req in &all[..6] {
        assert_eq!(req.text(), EXPECTED_JSON, "{}", req.method);
    }
    assert_eq!(all[6].method, "TRACE");
    assert!(all[6].body.is_empty());
}

#[tokio::test]
async fn cancel_sends_nothing() {
    let server = Server::status(200).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("cancel.jsonnet"),
        "function(ctx) error 'cancel'",
    )
    .unwrap();
    let yaml = format!(
        "courier:\n  http:\n    request_config:\n      url: {}\n      body: file://./cancel.jsonnet\n",
        server.url("/")
    );
    let c = courier(dir.path(), &yaml).await;
    let msg = samples::message(TemplateType::Stub, MessageType::Email).unwrap();
    let report = c.deliver(&msg).await;
    assert_eq!(report.outcome, Outcome::Cancelled);
    assert_eq!(report.attempts.len(), 1);
    assert_eq!(report.attempts[0].error_kind, Some(ErrorKind::Cancelled));
    assert_eq!(server.count(), 0);
}

fn stub(to: &str, subject: &str) -> Message {
    Message::from_json(
        json!({"recipient": to, "template_type": "stub", "subject": subject, "body": "body of ".to_owned() + subject,
               "template_data": {"to": to, "subject": subject, "body": "body of ".to_owned() + subject}})
        .to_string()
        .as_bytes(),
    )
    .unwrap()
}

#[tokio::test]
async fn queued_stub_emails_arrive_in_order_with_basic_auth_and_202_is_success() {
    let server = Server::status(202).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("email.jsonnet"),
        r#"function(ctx) {
  recipient: ctx.Recipient,
  template_type: ctx.TemplateType,
  to: if "To" in ctx.TemplateData then ctx.TemplateData.To else null,
  subject: ctx.Subject,
  body: ctx.Body,
  html_body: if "HTMLBody" in ctx then ctx.HTMLBody else null,
}"#,
    )
    .unwrap();
    let yaml = format!(
        "courier:\n  http:\n    request_config:\n      url: {}\n      body: file://./email.jsonnet\n      auth:\n        type: basic_auth\n        config:\n          user: me\n          password: \"12345\"\n",
        server.url("/email")
    );
    let c = courier(dir.path(), &yaml).await;
    for (to, subject) in [("one@example.com", "first"), ("two@example.com", "second")] {
        let report = c.deliver(&stub(to, subject)).await;
        assert_eq!(report.outcome, Outcome::Delivered);
        assert_eq!(report.attempts.len(), 1, "202 is success: no retry");
        assert_eq!(report.attempts[0].status, Some(202));
    }
    assert_eq!(server.count(), 2);
    for (i, (to, subject)) in [("one@example.com", "first"), ("two@example.com", "second")]
        .into_iter()
        .enumerate()
    {
        let req = server.request(i);
        assert_eq!(req.header("authorization"), Some("Basic bWU6MTIzNDU="));
        let body: Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(
            body,
            json!({"recipient": to, "template_type": "stub", "to": to, "subject": subject, "body": format!("body of {subject}"), "html_body": null})
        );
    }
}

#[tokio::test]
async fn sms_channel_posts_the_reference_payload() {
    let server = Server::status(200).await;
    let dir = tempfile::tempdir().unwrap();
    let b64 = base64::engine::general_purpose::STANDARD
        .encode(r#"function(ctx) { from: "Test Sender", to: ctx.Recipient, body: ctx.Body }"#);
    let yaml = format!(
        "courier:\n  delivery_strategy: smtp\n  channels:\n    - id: sms\n      type: http\n      request_config:\n        url: {}\n        body: base64://{b64}\n",
        server.url("/sms")
    );
    let c = courier(dir.path(), &yaml).await;
    let msg = samples::message(TemplateType::LoginCodeValid, MessageType::Sms).unwrap();
    assert_eq!(c.deliver(&msg).await.outcome, Outcome::Delivered);
    let body: Value = serde_json::from_slice(&server.request(0).body).unwrap();
    assert_eq!(
        body,
        json!({"from": "Test Sender", "to": msg.recipient, "body": msg.body})
    );
}

/// A courier whose email channel posts the default template to `server`, with fast retries.
async fn retrying(server: &Server, extra: &str) -> Courier {
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "courier:\n  message_retries: 3\n  http:\n    request_config:\n      url: {}\njsonnet_courier:\n  retry:\n    initial_backoff: 10ms\n    max_backoff: 40ms\n{extra}",
        server.url("/")
    );
    courier(dir.path(), &yaml).await
}

fn sample() -> Message {
    samples::message(TemplateType::RecoveryCodeValid, MessageType::Email).unwrap()
}

#[tokio::test]
async fn a_5xx_is_retried_until_delivered_and_every_attempt_is_recorded() {
    let server = Server::start(|n, _| {
        if n < 2 {
            Reply::status(503).body("busy")
        } else {
            Reply::status(200).body("ok")
        }
    })
    .await;
    let c = retrying(&server, "").await;
    let report = c.deliver(&sample()).await;
    assert_eq!(report.outcome, Outcome::Delivered);
    let statuses: Vec<_> = report.attempts.iter().map(|a| a.status).collect();
    assert_eq!(statuses, [Some(503), Some(503), Some(200)]);
    let numbers: Vec<_> = report.attempts.iter().map(|a| a.number).collect();
    assert_eq!(numbers, [1, 2, 3]);
    assert_eq!(
        report.attempts[0].response_body.as_deref(),
        Some("busy"),
        "5xx bodies are kept"
    );
    assert_eq!(report.attempts[0].class, AttemptClass::Retryable);
    assert_eq!(report.attempts[0].error_kind, Some(ErrorKind::Status));
    assert_eq!(server.count(), 3);
    assert_eq!(
        server.connections.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "one kept-alive connection"
    );
    let payloads: Vec<_> = (0..3).map(|i| server.request(i).body).collect();
    assert!(
        payloads.iter().all(|p| p == &payloads[0]),
        "every attempt sends the same payload"
    );
}

#[tokio::test]
async fn retries_stop_after_message_retries_plus_one_attempts() {
    let server = Server::status(500).await;
    let c = retrying(&server, "").await;
    let report = c.deliver(&sample()).await;
    assert_eq!(report.outcome, Outcome::Abandoned);
    assert_eq!(report.attempts.len(), 4);
    assert_eq!(server.count(), 4);
}

#[tokio::test]
async fn other_4xx_fail_permanently_without_retry() {
    let server =
        Server::start(|_, _| Reply::status(422).body(r#"{"error":"bad recipient"}"#)).await;
    let c = retrying(&server, "").await;
    let report = c.deliver(&sample()).await;
    assert_eq!(report.outcome, Outcome::Failed);
    assert_eq!(report.attempts.len(), 1);
    assert_eq!(report.attempts[0].class, AttemptClass::Permanent);
    assert_eq!(
        report.attempts[0].response_body.as_deref(),
        Some(r#"{"error":"bad recipient"}"#)
    );
}

#[tokio::test]
async fn status_classes_are_configurable() {
    let server = Server::start(|n, _| {
        if n == 0 {
            Reply::status(409)
        } else {
            Reply::status(200)
        }
    })
    .await;
    let c = retrying(&server, "    retryable_statuses: [409, \"5xx\"]\n").await;
    let report = c.deliver(&sample()).await;
    assert_eq!(report.outcome, Outcome::Delivered);
    assert_eq!(report.attempts.len(), 2);
}

#[tokio::test]
async fn redirects_are_failed_attempts_and_not_followed() {
    let server = Server::start(|_, _| Reply::status(302).header("location", "/elsewhere")).await;
    let c = retrying(&server, "").await;
    let report = c.deliver(&sample()).await;
    assert_eq!(report.outcome, Outcome::Failed);
    assert_eq!(report.attempts[0].error_kind, Some(ErrorKind::Redirect));
    assert_eq!(report.attempts[0].status, Some(302));
    assert_eq!(server.count(), 1);
    assert_eq!(server.request(0).path, "/");
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let server = Server::start(|n, _| {
        if n == 0 {
            Reply::status(429).header("retry-after", "1")
        } else {
            Reply::status(200)
        }
    })
    .await;
    let c = retrying(&server, "    retry_after_max: 5s\n").await;
    let started = Instant::now();
    let report = c.deliver(&sample()).await;
    assert_eq!(report.outcome, Outcome::Delivered);
    assert_eq!(report.attempts[0].retry_after_s, Some(1.0));
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "waited {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_hanging_endpoint_times_out_and_is_retried() {
    let server = Server::start(|n, _| {
        if n == 0 {
            Reply::status(200).delay(Duration::from_secs(5))
        } else {
            Reply::status(200)
        }
    })
    .await;
    let c = retrying(&server, "  http:\n    timeout: 200ms\n").await;
    let report = c.deliver(&sample()).await;
    assert_eq!(report.outcome, Outcome::Delivered);
    assert_eq!(report.attempts[0].error_kind, Some(ErrorKind::Timeout));
    assert_eq!(report.attempts[0].class, AttemptClass::Retryable);
    assert!(report.attempts[0].latency_ms < 2000.0);
}

#[tokio::test]
async fn connection_errors_are_retried_then_abandoned() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener); // nothing listens there now
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "courier:\n  message_retries: 1\n  http:\n    request_config:\n      url: http://{addr}/\njsonnet_courier:\n  retry:\n    initial_backoff: 10ms\n"
    );
    let c = courier(dir.path(), &yaml).await;
    let report = c.deliver(&sample()).await;
    assert_eq!(report.outcome, Outcome::Abandoned);
    assert_eq!(report.attempts.len(), 2);
    assert!(
        report
            .attempts
            .iter()
            .all(|a| a.error_kind == Some(ErrorKind::Connect)),
        "{report:?}"
    );
}

#[tokio::test]
async fn dropped_connections_are_retryable_transport_errors() {
    let server = Server::start(|n, _| {
        if n == 0 {
            Reply::dropped()
        } else {
            Reply::status(200)
        }
    })
    .await;
    let c = retrying(&server, "").await;
    let report = c.deliver(&sample()).await;
    assert_eq!(report.outcome, Outcome::Delivered);
    assert_eq!(
        report.attempts[0].error_kind,
        Some(ErrorKind::Transport),
        "{report:?}"
    );
}

#[tokio::test]
async fn response_bodies_are_capped() {
    let server = Server::start(|_, _| Reply::status(400).body(vec![b'x'; 100_000])).await;
    let c = retrying(&server, "  http:\n    max_response_body_bytes: 1000\n").await;
    let report = c.deliver(&sample()).await;
    assert_eq!(
        report.attempts[0].response_body.as_ref().map(String::len),
        Some(1000)
    );
}

#[tokio::test]
async fn unknown_channels_and_template_errors_fail_permanently() {
    let server = Server::status(200).await;
    let c = retrying(&server, "").await;
    let mut msg = sample();
    msg.channel = Some("pigeon".into());
    let report = c.deliver(&msg).await;
    assert_eq!(report.outcome, Outcome::Failed);
    assert_eq!(report.attempts[0].error_kind, Some(ErrorKind::Channel));
    assert!(report.attempts[0]
        .error
        .as_ref()
        .unwrap()
        .contains("\"pigeon\""));

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("t.jsonnet"),
        "function(ctx) {code: ctx.TemplateData.LoginCode}",
    )
    .unwrap();
    let yaml = format!(
        "courier:\n  http:\n    request_config:\n      url: {}\n      body: file://./t.jsonnet\n",
        server.url("/")
    );
    let c = courier(dir.path(), &yaml).await;
    let report = c.deliver(&sample()).await;
    assert_eq!(report.outcome, Outcome::Failed);
    let a = &report.attempts[0];
    assert_eq!(a.error_kind, Some(ErrorKind::Render));
    assert!(
        a.error
            .as_ref()
            .unwrap()
            .starts_with("t.jsonnet:1:39: no such field: LoginCode\n"),
        "{a:?}"
    );
    assert_eq!(server.count(), 0);
}

#[tokio::test]
async fn bad_templates_are_config_errors_with_key_paths() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.jsonnet"), "function(ctx) {a: }").unwrap();
    let yaml = "courier:\n  http:\n    request_config:\n      url: http://127.0.0.1:9/\n      body: file://./bad.jsonnet\n  channels:\n    - id: sms\n      type: http\n      request_config:\n        url: http://127.0.0.1:9/\n        body: file://./missing.jsonnet\n";
    let config = Config::parse(yaml, false, Some(dir.path().to_path_buf()), &|_| None).unwrap();
    let err = Courier::new(config).await.err().unwrap().to_string();
    assert!(
        err.contains("courier.http.request_config.body: bad.jsonnet:1:19: syntax error"),
        "{err}"
    );
    assert!(
        err.contains("courier.channels[0].request_config.body: "),
        "{err}"
    );
    assert!(err.contains("missing.jsonnet"), "{err}");
}

#[tokio::test]
async fn remote_templates_are_fetched_once() {
    let templates = Server::start(|_, _| Reply::status(200).body(TEST_BODY)).await;
    let sink = Server::status(200).await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "courier:\n  delivery_strategy: smtp\n  channels:\n    - id: a\n      type: http\n      request_config:\n        url: {}\n        body: {}\n    - id: b\n      type: http\n      request_config:\n        url: {}\n        body: {}\n",
        sink.url("/a"),
        templates.url("/t.jsonnet"),
        sink.url("/b"),
        templates.url("/t.jsonnet"),
    );
    let c = courier(dir.path(), &yaml).await;
    for ch in ["a", "b", "a"] {
        let a = c.attempt_with_ctx(ch, raw_ctx(), 1).await;
        assert_eq!(a.class, AttemptClass::Delivered, "{a:?}");
    }
    assert_eq!(
        templates.count(),
        1,
        "one fetch for both channels and every send"
    );
    assert_eq!(sink.count(), 3);
    assert_eq!(sink.request(2).text(), EXPECTED_JSON);
}
