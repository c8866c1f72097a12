//! Channel hardening end to end through `Courier`: Standard Webhooks signatures and the
//! idempotency key across retries, the SSRF guard from the configuration, bearer and OAuth2
//! auth, TLS settings, and requests shaped by the template.

use std::time::Duration;

use base64::Engine as _;
use jsonnet_courier::config::{Config, Secret};
use jsonnet_courier::delivery::{Courier, DeliveryReport, ErrorKind, Outcome};
use jsonnet_courier::message::{samples, Message, MessageType, TemplateType};
use jsonnet_courier::webhook::Verifier;
use serde_json::{json, Value};

use crate::support::{Reply, Server, Start as _};
use crate::tls::{Pki, TlsServer};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const BODY: &str = "function(ctx) { to: ctx.Recipient, subject: ctx.Subject }";

fn b64(s: &str) -> String {
    format!(
        "base64://{}",
        base64::engine::general_purpose::STANDARD.encode(s)
    )
}

/// A courier whose `email` channel has `request_config` (the template defaults to [`BODY`]),
/// with `extra` merged at the top level and quick retries.
async fn courier(mut request_config: Value, extra: Value) -> Courier {
    if request_config.get("body").is_none() {
        request_config["body"] = json!(b64(BODY));
    }
    let mut cfg = json!({
        "courier": { "message_retries": 3, "http": { "request_config": request_config } },
        "jsonnet_courier": { "retry": { "initial_backoff": "5ms", "max_backoff": "10ms" } },
    });
    if let (Value::Object(top), Value::Object(more)) = (&mut cfg, extra) {
        for (k, v) in more {
            match (top.get_mut(&k), v) {
                (Some(Value::Object(a)), Value::Object(b)) => a.extend(b),
                (_, v) => {
                    top.insert(k, v);
                }
            }
        }
    }
    let config = Config::parse(&cfg.to_string(), true, None, &|_| None).unwrap();
    Courier::new(config).await.unwrap()
}

fn message(id: &str) -> Message {
    let mut m = samples::message(TemplateType::RecoveryCodeValid, MessageType::Email).unwrap();
    m.id = Some(id.to_owned());
    m
}

fn report_text(r: &DeliveryReport) -> String {
    serde_json::to_string(r).unwrap()
}

#[tokio::test]
async fn signatures_and_the_idempotency_key_hold_across_retries() {
    let server = Server::start(|n, _| Reply::status(if n == 0 { 503 } else { 200 })).await;
    let c = courier(
        json!({
            "url": server.url("/hook"),
            "signing": { "secrets": [SECRET] },
            "idempotency": true,
        }),
        json!({}),
    )
    .await;
    let report = c.deliver(&message("msg_2KWPBgLlAfxdpx2AI54pPJ85f4W")).await;
    assert_eq!(
        report.outcome,
        Outcome::Delivered,
        "{}",
        report_text(&report)
    );
    assert_eq!(server.count(), 2);
    let verifier = Verifier::new(&[Secret::new(SECRET)]).unwrap();
    for n in 0..2 {
        let r = server.request(n);
        assert_eq!(
            r.header("webhook-id"),
            Some("msg_2KWPBgLlAfxdpx2AI54pPJ85f4W")
        );
        assert_eq!(
            r.header("idempotency-key"),
            Some("msg_2KWPBgLlAfxdpx2AI54pPJ85f4W")
        );
        let ts = r.header("webhook-timestamp").unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        verifier
            .verify(
                "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W",
                ts,
                &r.body,
                r.header("webhook-signature").unwrap(),
                now,
                60,
            )
            .unwrap();
        // What a receiver would check with the command line.
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_courier"))
            .args(["webhook", "verify", "--secret", SECRET, "--id"])
            .arg(r.header("webhook-id").unwrap())
            .args(["--timestamp", ts, "--signature"])
            .arg(r.header("webhook-signature").unwrap())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write as _;
                child.stdin.take().unwrap().write_all(&r.body)?;
                child.wait_with_output()
            })
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[tokio::test]
async fn the_guard_from_the_reference_settings_refuses_loopback_permanently() {
    let server = Server::status(200).await;
    let url = server.url("/hook");
    let c = courier(
        json!({ "url": url }),
        json!({ "clients": { "http": { "disallow_private_ip_ranges": true } } }),
    )
    .await;
    let report = c.deliver(&message("m1")).await;
    assert_eq!(report.outcome, Outcome::Failed, "{}", report_text(&report));
    assert_eq!(report.attempts.len(), 1, "a refusal is not retried");
    let a = &report.attempts[0];
    assert_eq!(a.error_kind, Some(ErrorKind::Refused));
    let e = a.error.as_deref().unwrap();
    assert!(e.contains("127.0.0.1") && e.contains("loopback"), "{e}");
    assert_eq!(server.count(), 0);

    // The reference's exception list lets that URL through...
    let c = courier(
        json!({ "url": url }),
        json!({ "clients": { "http": {
            "disallow_private_ip_ranges": true,
            "private_ip_exception_urls": [url],
        } } }),
    )
    .await;
    assert_eq!(c.deliver(&message("m2")).await.outcome, Outcome::Delivered);
    // ...and so does an allowed network of ours.
    let c = courier(
        json!({ "url": url }),
        json!({
            "clients": { "http": { "disallow_private_ip_ranges": true } },
            "jsonnet_courier": { "http": { "guard": { "allow_cidrs": ["127.0.0.1/32"] } } },
        }),
    )
    .await;
    assert_eq!(c.deliver(&message("m3")).await.outcome, Outcome::Delivered);
    assert_eq!(server.count(), 2);
}

#[tokio::test]
async fn bearer_tokens_are_sent_and_never_reported() {
    let server = Server::status(401).await;
    let c = courier(
        json!({ "url": server.url("/hook"),
                "auth": { "type": "bearer", "config": { "token": "tok-123-secret" } } }),
        json!({}),
    )
    .await;
    let report = c.deliver(&message("m1")).await;
    assert_eq!(report.outcome, Outcome::Failed);
    assert_eq!(
        server.request(0).header("authorization"),
        Some("Bearer tok-123-secret")
    );
    assert!(!report_text(&report).contains("tok-123"));
}

/// A token endpoint handing out `tok-1`, `tok-2`... valid for `expires_in` seconds.
async fn token_server(expires_in: u64) -> Server {
    Server::start(move |n, _| {
        Reply::status(200)
            .header("content-type", "application/json")
            .body(
                json!({"access_token": format!("tok-{}", n + 1), "token_type": "Bearer",
                       "expires_in": expires_in})
                .to_string(),
            )
    })
    .await
}

fn oauth2(token: &Server) -> Value {
    json!({
        "type": "oauth2_client_credentials",
        "config": {
            "token_url": token.url("/oauth/token"),
            "client_id": "courier app",
            "client_secret": "s3cret/+",
            "scopes": ["messages:send", "profile"],
            "audience": "https://api.example.com",
        }
    })
}

#[tokio::test]
async fn oauth2_tokens_are_fetched_once_cached_and_sent() {
    let token = token_server(3600).await;
    let api = Server::status(202).await;
    let c = courier(
        json!({ "url": api.url("/hook"), "auth": oauth2(&token) }),
        json!({}),
    )
    .await;
    for id in ["m1", "m2", "m3"] {
        let r = c.deliver(&message(id)).await;
        assert_eq!(r.outcome, Outcome::Delivered, "{}", report_text(&r));
        assert!(!report_text(&r).contains("tok-"), "{}", report_text(&r));
    }
    assert_eq!(token.count(), 1, "the token is cached");
    for n in 0..3 {
        assert_eq!(api.request(n).header("authorization"), Some("Bearer tok-1"));
    }
    let t = token.request(0);
    assert_eq!(t.method, "POST");
    assert_eq!(
        t.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(
        t.text(),
        "grant_type=client_credentials&scope=messages%3Asend+profile&audience=https%3A%2F%2Fapi.example.com"
    );
    // client_secret_basic: id and secret form-encoded, then Basic.
    let basic = base64::engine::general_purpose::STANDARD.encode("courier+app:s3cret%2F%2B");
    assert_eq!(
        t.header("authorization"),
        Some(format!("Basic {basic}").as_str())
    );
}

#[tokio::test]
async fn a_401_fetches_a_fresh_token_once() {
    let token = token_server(3600).await;
    // The API refuses tok-1 (revoked) and accepts anything else.
    let api = Server::start(|_, r| {
        Reply::status(if r.header("authorization") == Some("Bearer tok-1") {
            401
        } else {
            200
        })
    })
    .await;
    let c = courier(
        json!({ "url": api.url("/hook"), "auth": oauth2(&token) }),
        json!({}),
    )
    .await;
    let r = c.deliver(&message("m1")).await;
    assert_eq!(r.outcome, Outcome::Delivered, "{}", report_text(&r));
    assert_eq!(r.attempts.len(), 1);
    assert_eq!(token.count(), 2);
    assert_eq!(api.count(), 2);
    assert_eq!(api.request(1).header("authorization"), Some("Bearer tok-2"));
    // A 401 on the fresh token too is the attempt's answer: no loop.
    let always = Server::status(401).await;
    let c = courier(
        json!({ "url": always.url("/hook"), "auth": oauth2(&token) }),
        json!({}),
    )
    .await;
    let r = c.deliver(&message("m2")).await;
    assert_eq!(r.outcome, Outcome::Failed);
    assert_eq!(r.attempts[0].status, Some(401));
    assert_eq!(always.count(), 2);
}

#[tokio::test]
async fn tokens_are_renewed_before_they_expire() {
    // Valid 1 s: renewed after half of it.
    let token = token_server(1).await;
    let api = Server::status(200).await;
    let c = courier(
        json!({ "url": api.url("/hook"), "auth": oauth2(&token) }),
        json!({}),
    )
    .await;
    assert_eq!(c.deliver(&message("m1")).await.outcome, Outcome::Delivered);
    assert_eq!(c.deliver(&message("m2")).await.outcome, Outcome::Delivered);
    assert_eq!(token.count(), 1);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(c.deliver(&message("m3")).await.outcome, Outcome::Delivered);
    assert_eq!(token.count(), 2);
    assert_eq!(api.request(2).header("authorization"), Some("Bearer tok-2"));
}

#[tokio::test]
async fn token_endpoint_refusals_are_permanent_and_name_the_error_code() {
    let token = Server::start(|_, _| {
        Reply::status(401).body(r#"{"error":"invalid_client","error_description":"bad secret"}"#)
    })
    .await;
    let api = Server::status(200).await;
    let c = courier(
        json!({ "url": api.url("/hook"), "auth": oauth2(&token) }),
        json!({}),
    )
    .await;
    let r = c.deliver(&message("m1")).await;
    assert_eq!(r.outcome, Outcome::Failed, "{}", report_text(&r));
    assert_eq!(r.attempts[0].error_kind, Some(ErrorKind::Auth));
    let e = r.attempts[0].error.as_deref().unwrap();
    assert!(e.contains("401") && e.contains("invalid_client"), "{e}");
    assert!(!report_text(&r).contains("s3cret"));
    assert_eq!(api.count(), 0);
}

#[tokio::test]
async fn mutual_tls_with_an_extra_ca_over_http2() {
    let pki = Pki::new();
    let server = TlsServer::start(&pki, true).await;
    let c = courier(
        json!({
            "url": server.url(),
            "tls": { "ca": pki.ca_pem, "client_cert": pki.client_pem, "client_key": pki.client_key_pem },
            "signing": { "secrets": [SECRET] },
        }),
        json!({}),
    )
    .await;
    let r = c.deliver(&message("m-tls")).await;
    assert_eq!(r.outcome, Outcome::Delivered, "{}", report_text(&r));
    let seen = server.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].version, hyper::Version::HTTP_2);
    assert_eq!(seen[0].headers["webhook-id"], "m-tls");
    assert!(String::from_utf8_lossy(&seen[0].body).contains("\"to\""));
    // Without the client certificate the handshake fails: a connect error, retried.
    let c = courier(
        json!({ "url": server.url(), "tls": { "ca": pki.ca_pem } }),
        json!({ "courier": { "message_retries": 0 } }),
    )
    .await;
    let r = c.deliver(&message("m-no-cert")).await;
    assert_eq!(r.outcome, Outcome::Abandoned, "{}", report_text(&r));
    assert_eq!(server.seen.lock().unwrap().len(), 1);
}

const SHAPED: &str = r#"function(ctx) {
  url: ctx.TemplateData.To,
  method: "GET",
  query: { to: ctx.Recipient, code: ctx.TemplateData.RecoveryCode },
  headers: { "X-Tenant": "7" },
}"#;

#[tokio::test]
async fn template_requests_are_guarded_and_keep_the_channel_auth() {
    let gateway = Server::status(200).await;
    let fixed = Server::status(200).await;
    let mut m = message("m1");
    // The template takes its URL from the message's template data.
    m.template_data.to = Some(Some(gateway.url("/sms/send?key=k1")));
    let shaped = |extra: Value| {
        let gateway_rc = json!({
            "url": fixed.url("/fixed"),
            "body": b64(SHAPED),
            "template_request": true,
            "auth": { "type": "basic_auth", "config": { "user": "me", "password": "12345" } },
        });
        courier(gateway_rc, extra)
    };
    // On by default for URLs from the template: 127.0.0.1 is refused.
    let r = shaped(json!({})).await.deliver(&m).await;
    assert_eq!(r.outcome, Outcome::Failed, "{}", report_text(&r));
    assert_eq!(r.attempts[0].error_kind, Some(ErrorKind::Refused));
    assert_eq!(gateway.count() + fixed.count(), 0);
    // Allowed, the request is the template's, with the channel's auth.
    let allow =
        json!({ "jsonnet_courier": { "http": { "guard": { "allow_cidrs": ["127.0.0.0/8"] } } } });
    let r = shaped(allow).await.deliver(&m).await;
    assert_eq!(r.outcome, Outcome::Delivered, "{}", report_text(&r));
    let req = gateway.request(0);
    assert_eq!(req.method, "GET");
    // Jsonnet objects come out with their fields sorted.
    assert_eq!(
        req.path,
        "/sms/send?key=k1&code=730219&to=jose.alvarez%40example.com"
    );
    assert_eq!(req.header("x-tenant"), Some("7"));
    assert_eq!(req.header("authorization"), Some("Basic bWU6MTIzNDU="));
    assert!(req.body.is_empty());
    assert_eq!(fixed.count(), 0);
}

#[tokio::test]
async fn a_template_may_not_replace_credentials_unless_allowed() {
    let server = Server::status(200).await;
    let steal = r#"function(ctx) { headers: { Authorization: "Bearer mine" }, body: { to: ctx.Recipient } }"#;
    let rc = |allow: bool| {
        json!({
            "url": server.url("/hook"),
            "body": b64(steal),
            "template_request": { "allow_authorization": allow },
            "auth": { "type": "bearer", "config": { "token": "configured" } },
        })
    };
    let r = courier(rc(false), json!({}))
        .await
        .deliver(&message("m1"))
        .await;
    assert_eq!(r.outcome, Outcome::Failed, "{}", report_text(&r));
    assert_eq!(r.attempts[0].error_kind, Some(ErrorKind::Render));
    assert!(r.attempts[0]
        .error
        .as_deref()
        .unwrap()
        .contains("headers.Authorization"));
    assert_eq!(server.count(), 0);
    let r = courier(rc(true), json!({}))
        .await
        .deliver(&message("m2"))
        .await;
    assert_eq!(r.outcome, Outcome::Delivered, "{}", report_text(&r));
    let req = server.request(0);
    assert_eq!(req.header("authorization"), Some("Bearer mine"));
    assert_eq!(req.text(), r#"{"to":"jose.alvarez@example.com"}"#);
}

#[tokio::test]
async fn a_message_without_an_id_gets_one_for_all_its_attempts() {
    let server = Server::start(|n, _| Reply::status(if n < 2 { 500 } else { 200 })).await;
    let c = courier(
        json!({ "url": server.url("/hook"), "idempotency": { "header": "X-Request-Id" } }),
        json!({}),
    )
    .await;
    let mut m = message("unused");
    m.id = None;
    let r = c.deliver(&m).await;
    assert_eq!(r.outcome, Outcome::Delivered, "{}", report_text(&r));
    let id = r.message_id.clone().expect("the report names the id used");
    assert_eq!(server.count(), 3);
    for n in 0..3 {
        assert_eq!(server.request(n).header("x-request-id"), Some(id.as_str()));
    }
}
