//! Switching from the reference courier: its configs, its default template and the messages it
//! posts work unchanged, against real servers on 127.0.0.1 and the real binary.

use std::process::{Command, Output};
use std::time::Duration;

use base64::Engine as _;
use jsonnet_courier::config::Config;
use jsonnet_courier::delivery::{Courier, Outcome};
use jsonnet_courier::message::{ctx, CtxStyle, Message, MessageType, TemplateType};
use jsonnet_courier::store::Status;
use jsonnet_courier::template::{Engine, Limits, Template};
use serde_json::{json, Value};

use crate::proof::Proc;
use crate::serve::{ids_of, wait_status};
use crate::support::{post_json, Reply, Server, Start as _};

/// An email exactly as the reference posts it for `function(ctx) ctx`: the typed model of the
/// type, with the zero values and nulls of fields its producer left empty.
fn email_post() -> Value {
    json!({
        "recipient": "lea@example.org",
        "subject": "Use code 417205 to verify your account",
        "body": "Hi,\n\nplease verify your account with this code:\n\n417205\n",
        "template_type": "verification_code_valid",
        "template_data": {
            "to": "lea@example.org",
            "verification_url": "https://id.example.org/self-service/verification?flow=1f0c&code=417205",
            "verification_code": "417205",
            "identity": null,
            "request_url": "",
            "transient_payload": null,
            "expires_in_minutes": 60
        },
        "message_type": "email",
        "request_headers": null
    })
}

/// An SMS as the reference posts it.
fn sms_post() -> Value {
    json!({
        "recipient": "+4915112345678",
        "subject": "",
        "body": "Your login code is: 902113",
        "template_type": "login_code_valid",
        "template_data": {
            "to": "+4915112345678",
            "login_code": "902113",
            "identity": {"id": "0c9a3f0e-5d1b-4f61-9a47-3c2f1d0e8b11", "traits": {"phone": "+4915112345678"}},
            "request_url": "https://id.example.org/self-service/login?flow=77aa",
            "request_url_domain": "id.example.org",
            "transient_payload": null,
            "expires_in_minutes": 10
        },
        "message_type": "sms",
        "request_headers": {}
    })
}

/// The spec's documented default body template, in snake style: the reference's own default
/// reads these names.
const SNAKE_DEFAULT: &str = r#"function(ctx) {
  recipient: ctx.recipient,
  template_type: ctx.template_type,
  to: if "template_data" in ctx && "to" in ctx.template_data then ctx.template_data.to else null,
  recovery_code: if "template_data" in ctx && "recovery_code" in ctx.template_data then ctx.template_data.recovery_code else null,
  recovery_url: if "template_data" in ctx && "recovery_url" in ctx.template_data then ctx.template_data.recovery_url else null,
  verification_url: if "template_data" in ctx && "verification_url" in ctx.template_data then ctx.template_data.verification_url else null,
  verification_code: if "template_data" in ctx && "verification_code" in ctx.template_data then ctx.template_data.verification_code else null,
  login_code: if "template_data" in ctx && "login_code" in ctx.template_data then ctx.template_data.login_code else null,
  subject: ctx.subject,
  body: ctx.body,
}
"#;

fn courier(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_courier"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phone_password_quickstart_config_delivers_a_form_encoded_sms() {
    let server = Server::start(|_, _| Reply::status(201)).await;
    let dir = tempfile::tempdir().unwrap();
    // The quickstart's shape: only an sms channel, no delivery_strategy, a pascal base64 body
    // and a form-encoded Twilio-style request with basic auth.
    let body = "function(ctx) {\nTo: ctx.Recipient,\nBody: ctx.Body,\n}";
    let cfg = dir.path().join("kratos.yml");
    std::fs::write(
        &cfg,
        format!(
            "version: v1.3.0\ndsn: memory\nidentity:\n  default_schema_id: default\ncourier:\n  channels:\n    - id: sms\n      type: http\n      request_config:\n        url: {}\n        method: POST\n        body: base64://{}\n        headers:\n          Content-Type: application/x-www-form-urlencoded\n        auth:\n          type: basic_auth\n          config:\n            user: AC0000\n            password: quickstart-secret\n",
            server.url("/2010-04-01/Accounts/AC0000/Messages.json"),
            b64(body)
        ),
    )
    .unwrap();
    let msg = dir.path().join("sms.json");
    std::fs::write(&msg, sms_post().to_string()).unwrap();
    let (cfg, msg) = (
        cfg.to_str().unwrap().to_owned(),
        msg.to_str().unwrap().to_owned(),
    );

    let check = {
        let cfg = cfg.clone();
        tokio::task::spawn_blocking(move || courier(&["config", "check", &cfg]))
            .await
            .unwrap()
    };
    let stderr = text(&check.stderr);
    assert_eq!(check.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("email has no route"), "{stderr}");
    assert!(
        stderr.contains("channel sms: template \"base64://ZnVuY3Rpb24o…\", ctx style pascal (the template reads ctx.Recipient)"),
        "{stderr}"
    );

    let out = tokio::task::spawn_blocking(move || {
        courier(&["send", "--config", &cfg, "--message", &msg])
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(server.count(), 1);
    let req = server.request(0);
    assert_eq!(req.path, "/2010-04-01/Accounts/AC0000/Messages.json");
    assert_eq!(
        req.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    let basic = format!("Basic {}", b64("AC0000:quickstart-secret"));
    assert_eq!(req.header("authorization"), Some(basic.as_str()));
    assert_eq!(
        req.text(),
        "Body=Your+login+code+is%3A+902113&To=%2B4915112345678"
    );
}

#[tokio::test]
async fn the_references_default_template_needs_no_style_setting() {
    let server = Server::start(|_, _| Reply::status(200)).await;
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("body.jsonnet");
    std::fs::write(&t, SNAKE_DEFAULT).unwrap();
    let yaml = format!(
        "courier:\n  delivery_strategy: http\n  http:\n    request_config:\n      url: {}\n      body: file://{}\n",
        server.url("/mail"),
        t.display()
    );
    let config = Config::parse(&yaml, false, Some(dir.path().to_path_buf()), &|_| None).unwrap();
    let courier = Courier::new(config).await.unwrap();
    let route = &courier.routes()[0];
    assert_eq!(route.style.style, CtxStyle::Snake);
    assert_eq!(
        route.style.to_string(),
        "snake (the template reads ctx.recipient)"
    );

    let message = Message::from_json(email_post().to_string().as_bytes()).unwrap();
    let report = courier.deliver(&message).await;
    assert_eq!(report.outcome, Outcome::Delivered, "{report:?}");
    let sent: Value = serde_json::from_slice(&server.request(0).body).unwrap();
    assert_eq!(
        sent,
        json!({
            "recipient": "lea@example.org",
            "template_type": "verification_code_valid",
            "to": "lea@example.org",
            "recovery_code": null,
            "recovery_url": null,
            "verification_url": "https://id.example.org/self-service/verification?flow=1f0c&code=417205",
            "verification_code": "417205",
            "login_code": null,
            "subject": "Use code 417205 to verify your account",
            "body": "Hi,\n\nplease verify your account with this code:\n\n417205\n"
        })
    );
}

#[tokio::test]
async fn identity_template_gives_back_what_the_reference_posted() {
    let mut engine = Engine::new(Limits::default()).unwrap();
    let t = Template::new("identity.jsonnet", "function(ctx) ctx");
    for post in [email_post(), sms_post()] {
        let message = Message::from_json(post.to_string().as_bytes()).unwrap();
        let out = engine
            .render_json(&t, &ctx::to_json(&message, CtxStyle::Snake))
            .unwrap();
        let back: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(back, post);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_delivers_reference_posts_through_an_identity_template() {
    let server = Server::start(|_, _| Reply::status(200)).await;
    let dir = tempfile::tempdir().unwrap();
    let identity = b64("function(ctx) ctx");
    let cfg = dir.path().join("courier.yaml");
    std::fs::write(
        &cfg,
        format!(
            "courier:\n  delivery_strategy: http\n  http:\n    request_config:\n      url: {mail}\n      body: base64://{identity}\n  channels:\n    - id: sms\n      type: http\n      request_config:\n        url: {sms}\n        body: base64://{identity}\njsonnet_courier:\n  serve:\n    listen: 127.0.0.1:0\n    database: sqlite://{db}\n    poll_interval: 20ms\n",
            mail = server.url("/mail"),
            sms = server.url("/sms"),
            db = dir.path().join("courier.db").display()
        ),
    )
    .unwrap();
    let proc = Proc::start("serve", &cfg, &[]).await;
    for post in [email_post(), sms_post()] {
        let r = post_json(proc.addr, "/messages", &[], post.to_string()).await;
        let id = ids_of(&r).remove(0);
        wait_status(proc.addr, &id, Status::Sent, Duration::from_secs(20)).await;
    }
    assert_eq!(server.count(), 2);
    let mail = server.request(0);
    assert_eq!(mail.path, "/mail");
    assert_eq!(
        serde_json::from_slice::<Value>(&mail.body).unwrap(),
        email_post()
    );
    let sms = server.request(1);
    assert_eq!(sms.path, "/sms");
    assert_eq!(
        serde_json::from_slice::<Value>(&sms.body).unwrap(),
        sms_post()
    );
}

/// The fields every template type's data has, by kind, from the spec's section 3 (`?` fields,
/// omitted when empty, are not listed).
const EMAIL_SHAPES: &[(&str, &[&str])] = &[
    (
        "recovery_invalid",
        &["to", "request_url", "transient_payload"],
    ),
    (
        "recovery_valid",
        &[
            "to",
            "recovery_url",
            "identity",
            "request_url",
            "transient_payload",
            "expires_in_minutes",
        ],
    ),
    (
        "recovery_code_invalid",
        &["to", "request_url", "transient_payload"],
    ),
    (
        "recovery_code_valid",
        &[
            "to",
            "recovery_code",
            "identity",
            "request_url",
            "transient_payload",
            "expires_in_minutes",
        ],
    ),
    (
        "verification_invalid",
        &["to", "request_url", "transient_payload"],
    ),
    (
        "verification_valid",
        &[
            "to",
            "verification_url",
            "identity",
            "request_url",
            "transient_payload",
            "expires_in_minutes",
        ],
    ),
    (
        "verification_code_invalid",
        &["to", "request_url", "transient_payload"],
    ),
    (
        "verification_code_valid",
        &[
            "to",
            "verification_url",
            "verification_code",
            "identity",
            "request_url",
            "transient_payload",
            "expires_in_minutes",
        ],
    ),
    (
        "login_code_valid",
        &[
            "to",
            "login_code",
            "identity",
            "request_url",
            "transient_payload",
            "expires_in_minutes",
        ],
    ),
    (
        "registration_code_valid",
        &[
            "to",
            "traits",
            "registration_code",
            "request_url",
            "transient_payload",
            "expires_in_minutes",
        ],
    ),
    (
        "verifiable_address_changed",
        &["to", "identity", "changed_at", "transient_payload"],
    ),
    (
        "authenticator_key_added",
        &["to", "identity", "added_at", "transient_payload"],
    ),
    ("stub", &["to", "subject", "body"]),
];

const SMS_SHAPES: &[(&str, &[&str])] = &[
    (
        "recovery_code_valid",
        &[
            "to",
            "verification_code",
            "identity",
            "request_url",
            "request_url_domain",
            "transient_payload",
            "expires_in_minutes",
        ],
    ),
    (
        "verification_code_valid",
        &[
            "to",
            "verification_code",
            "identity",
            "request_url",
            "request_url_domain",
            "transient_payload",
            "expires_in_minutes",
        ],
    ),
    (
        "login_code_valid",
        &[
            "to",
            "login_code",
            "identity",
            "request_url",
            "request_url_domain",
            "transient_payload",
            "expires_in_minutes",
        ],
    ),
    (
        "registration_code_valid",
        &[
            "to",
            "registration_code",
            "identity",
            "request_url",
            "request_url_domain",
            "transient_payload",
            "expires_in_minutes",
        ],
    ),
    (
        "verifiable_address_changed",
        &["to", "identity", "changed_at", "transient_payload"],
    ),
    (
        "authenticator_key_added",
        &["to", "identity", "added_at", "transient_payload"],
    ),
    ("stub", &["to", "body", "identity"]),
];

fn zero(field: &str) -> Value {
    match field {
        "expires_in_minutes" => json!(0),
        "identity" | "traits" | "transient_payload" => Value::Null,
        _ => json!(""),
    }
}

#[test]
fn producers_that_omit_fields_give_templates_the_full_typed_shape() {
    let mut engine = Engine::new(Limits::default()).unwrap();
    let snake = Template::new("s.jsonnet", "function(ctx) ctx.template_data");
    let pascal = Template::new("p.jsonnet", "function(ctx) ctx.TemplateData");
    let mut cases = 0;
    for (kind, shapes) in [("email", EMAIL_SHAPES), ("sms", SMS_SHAPES)] {
        for (template_type, fields) in shapes {
            let message = Message::from_json(
                json!({"recipient": "r", "template_type": template_type, "message_type": kind})
                    .to_string()
                    .as_bytes(),
            )
            .unwrap();
            let expected: serde_json::Map<String, Value> =
                fields.iter().map(|f| (f.to_string(), zero(f))).collect();
            let got = engine
                .render_json(&snake, &ctx::to_json(&message, CtxStyle::Snake))
                .unwrap();
            let got: Value = serde_json::from_str(&got).unwrap();
            assert_eq!(
                got,
                Value::Object(expected.clone()),
                "{kind} {template_type}"
            );
            // The same shape in the other style: same values, pascal names.
            let got = engine
                .render_json(&pascal, &ctx::to_json(&message, CtxStyle::Pascal))
                .unwrap();
            let got: serde_json::Map<String, Value> = serde_json::from_str(&got).unwrap();
            assert_eq!(got.len(), expected.len(), "{kind} {template_type}");
            assert!(got
                .keys()
                .all(|k| k.starts_with(|c: char| c.is_ascii_uppercase())));
            let mut got: Vec<&Value> = got.values().collect();
            let mut want: Vec<&Value> = expected.values().collect();
            got.sort_by_key(|v| v.to_string());
            want.sort_by_key(|v| v.to_string());
            assert_eq!(got, want, "{kind} {template_type}");
            cases += 1;
        }
    }
    assert_eq!(cases, TemplateType::ALL.len() + TemplateType::SMS.len());

    // A producer's null stays null, `?` fields appear when set, the SMS recovery code is read
    // under verification_code, and html_body is left out when empty.
    let message = Message::from_json(
        json!({
            "recipient": "+1555", "template_type": "recovery_code_valid", "message_type": "sms",
            "html_body": "",
            "template_data": {"to": null, "recovery_code": "123456", "custom": {"k": 1}}
        })
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    assert_eq!(message.message_type, MessageType::Sms);
    let all = Template::new("a.jsonnet", "function(ctx) ctx");
    let got: Value = serde_json::from_str(
        &engine
            .render_json(&all, &ctx::to_json(&message, CtxStyle::Snake))
            .unwrap(),
    )
    .unwrap();
    assert!(got.get("html_body").is_none(), "{got}");
    assert_eq!(got["request_headers"], Value::Null);
    let data = &got["template_data"];
    assert_eq!(data["to"], Value::Null);
    assert_eq!(data["verification_code"], "123456");
    assert_eq!(data["recovery_code"], "123456");
    assert_eq!(data["custom"], json!({"k": 1}));
    let message = Message::from_json(
        json!({
            "recipient": "a@b.c", "template_type": "login_code_valid",
            "template_data": {"oauth2_login_request": {"challenge": "c"}}
        })
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    let got: Value = serde_json::from_str(
        &engine
            .render_json(&all, &ctx::to_json(&message, CtxStyle::Snake))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        got["template_data"]["oauth2_login_request"],
        json!({"challenge": "c"})
    );
}

/// Waits until `proc`'s log has `count` lines containing `needle`.
async fn wait_log(proc: &Proc, needle: &str, count: usize) {
    crate::support::wait_for(needle, Duration::from_secs(20), || async {
        (proc.log().matches(needle).count() >= count).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_reloads_on_sighup_and_on_template_edits_and_keeps_a_good_config() {
    let server = Server::start(|_, _| Reply::status(200)).await;
    let dir = tempfile::tempdir().unwrap();
    let body = dir.path().join("body.jsonnet");
    let version = |v: u32| format!("function(ctx) {{to: ctx.recipient, v: {v}}}");
    std::fs::write(&body, version(1)).unwrap();
    let cfg = dir.path().join("courier.yaml");
    let good = format!(
        "courier:\n  delivery_strategy: http\n  http:\n    request_config:\n      url: {}\n      body: file://{}\njsonnet_courier:\n  serve:\n    listen: 127.0.0.1:0\n    database: sqlite://{}\n    poll_interval: 20ms\n",
        server.url("/mail"),
        body.display(),
        dir.path().join("courier.db").display()
    );
    std::fs::write(&cfg, &good).unwrap();
    let proc = Proc::start("serve", &cfg, &[]).await;
    let send_and_read = |n: usize| {
        let server = &server;
        let proc = &proc;
        async move {
            let msg = json!({"recipient": format!("r{n}@example.com"), "template_type": "stub"});
            let id =
                ids_of(&post_json(proc.addr, "/messages", &[], msg.to_string()).await).remove(0);
            wait_status(proc.addr, &id, Status::Sent, Duration::from_secs(20)).await;
            assert_eq!(server.count(), n + 1);
            serde_json::from_slice::<Value>(&server.request(n).body).unwrap()["v"].clone()
        }
    };
    assert_eq!(send_and_read(0).await, 1);

    // SIGHUP with a changed template: the next payload changes.
    std::fs::write(&body, version(2)).unwrap();
    proc.signal("HUP");
    wait_log(&proc, "configuration reloaded", 1).await;
    assert_eq!(send_and_read(1).await, 2);

    // SIGHUP with a broken config: reported, and the running one keeps serving.
    std::fs::write(
        &cfg,
        good.replace("body: file://", "body: file:///nonexistent"),
    )
    .unwrap();
    proc.signal("HUP");
    wait_log(&proc, "configuration reload failed (SIGHUP)", 1).await;
    assert_eq!(send_and_read(2).await, 2);
    let metrics = crate::support::get(proc.addr, "/metrics", &[]).await.text();
    assert!(
        metrics.contains("courier_config_reloads_total{outcome=\"failed\"} 1"),
        "{metrics}"
    );

    // A template edited on disk, no signal: picked up by the file check.
    std::fs::write(&cfg, &good).unwrap();
    proc.signal("HUP");
    wait_log(&proc, "configuration reloaded", 2).await;
    std::fs::write(&body, version(30)).unwrap();
    wait_log(&proc, "configuration reloaded (a template file changed)", 1).await;
    assert_eq!(send_and_read(3).await, 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_picks_up_edited_message_templates_from_the_override_folder_and_template_uris() {
    let server = Server::start(|_, _| Reply::status(200)).await;
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("overrides/verification_code/valid");
    std::fs::create_dir_all(&folder).unwrap();
    let subject = folder.join("email.subject.gotmpl");
    std::fs::write(&subject, "A {{ .VerificationCode }}").unwrap();
    let text = dir.path().join("text.gotmpl");
    std::fs::write(&text, "one {{ .VerificationCode }}").unwrap();
    let cfg = dir.path().join("courier.yaml");
    std::fs::write(
        &cfg,
        format!(
            "courier:\n  template_override_path: {}\n  templates:\n    verification_code:\n      valid:\n        email:\n          body:\n            plaintext: file://{}\n  delivery_strategy: http\n  http:\n    request_config:\n      url: {}\n      body: base64://{}\njsonnet_courier:\n  serve:\n    listen: 127.0.0.1:0\n    database: sqlite://{}\n    poll_interval: 20ms\n",
            dir.path().join("overrides").display(),
            text.display(),
            server.url("/mail"),
            b64("function(ctx) {subject: ctx.subject, body: ctx.body}"),
            dir.path().join("courier.db").display()
        ),
    )
    .unwrap();
    let proc = Proc::start("serve", &cfg, &[]).await;
    let send_and_read = |n: usize| {
        let server = &server;
        let proc = &proc;
        async move {
            let msg = json!({
                "recipient": "lea@example.org",
                "template_type": "verification_code_valid",
                "template_data": {"to": "lea@example.org", "verification_code": format!("{n}")}
            });
            let id =
                ids_of(&post_json(proc.addr, "/messages", &[], msg.to_string()).await).remove(0);
            wait_status(proc.addr, &id, Status::Sent, Duration::from_secs(20)).await;
            assert_eq!(server.count(), n + 1);
            serde_json::from_slice::<Value>(&server.request(n).body).unwrap()
        }
    };
    assert_eq!(
        send_and_read(0).await,
        json!({"subject": "A 0", "body": "one 0"})
    );

    // An override file edited on disk: the next composed mail changes.
    std::fs::write(&subject, "B {{ .VerificationCode }} (edited)").unwrap();
    wait_log(&proc, "configuration reloaded (a template file changed)", 1).await;
    assert_eq!(
        send_and_read(1).await,
        json!({"subject": "B 1 (edited)", "body": "one 1"})
    );

    // A `courier.templates` file:// template edited on disk, likewise.
    std::fs::write(&text, "two {{ .VerificationCode }}").unwrap();
    wait_log(&proc, "configuration reloaded (a template file changed)", 2).await;
    assert_eq!(
        send_and_read(2).await,
        json!({"subject": "B 2 (edited)", "body": "two 2"})
    );
}
