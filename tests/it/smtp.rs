//! SMTP delivery against real SMTP servers on 127.0.0.1 (the crate's own [`SmtpSink`]), with a
//! throwaway CA and certificates made here: the six security modes (verified, untrusted, skipped,
//! `server_name` right and wrong), replies 550 / 451 / 535, invalid recipients, and the bytes
//! the server received.

use std::sync::Arc;

use jsonnet_courier::config::Config;
use jsonnet_courier::message::Message;
use jsonnet_courier::smtp::sink::{SinkOptions, SinkTls, SmtpSink};
use jsonnet_courier::smtp::{FailureKind, Mailer, Step, TransportOptions};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A throwaway CA.
pub struct Ca {
    pub der: Vec<u8>,
    pub pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    pub fn new() -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "courier test CA");
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca {
            der: cert.der().to_vec(),
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A leaf certificate for `names` (DNS names or IP addresses): (chain DER, key DER, PEMs).
    pub fn leaf(&self, names: &[&str]) -> Leaf {
        let params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            chain: vec![cert.der().clone(), CertificateDer::from(self.der.clone())],
            key_der: key.serialize_der(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// A server config presenting a certificate for `names`.
    pub fn server(&self, names: &[&str]) -> Arc<rustls::ServerConfig> {
        let leaf = self.leaf(names);
        Arc::new(
            rustls::ServerConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                leaf.chain,
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf.key_der)),
            )
            .unwrap(),
        )
    }
}

pub struct Leaf {
    pub chain: Vec<CertificateDer<'static>>,
    pub key_der: Vec<u8>,
    pub cert_pem: String,
    pub key_pem: String,
}

const USER: &str = "some-user@mailgun.example.org";
const PASSWORD: &str = "p@ss/w:rd";
/// `USER` and `PASSWORD` URL-encoded, as the seeds write them.
const USERINFO: &str = "some-user%40mailgun.example.org:p%40ss%2Fw%3Ard";

async fn sink(tls: SinkTls) -> SmtpSink {
    SmtpSink::start(
        "127.0.0.1:0".parse().unwrap(),
        SinkOptions {
            tls,
            users: vec![(USER.into(), PASSWORD.into())],
            any_user: false,
            keep: true,
            on_mail: None,
        },
    )
    .await
    .unwrap()
}

fn config(uri: &str) -> Config {
    let yaml = format!(
        r#"
courier:
  delivery_strategy: smtp
  smtp:
    connection_uri: "{uri}"
    from_address: hello@example.org
    from_name: "Zoë Ops"
    headers:
      X-SES-CONFIGURATION-SET: my-set
    local_name: courier.test
"#
    );
    Config::parse(&yaml, false, None, &|_| None).unwrap()
}

fn mailer(uri: &str, trusted: &Ca) -> Mailer {
    let c = config(uri);
    Mailer::new(
        c.smtp_channel("email").unwrap(),
        TransportOptions {
            platform_roots: false,
            extra_roots: vec![trusted.der.clone()],
            ..TransportOptions::default()
        },
    )
    .unwrap()
}

fn message(recipient: &str) -> Message {
    let mut m = Message::from_json(
        br#"{"id":"msg-0001","recipient":"ann@example.com","template_type":"stub",
             "subject":"Your code","body":"Your code is 123456\r\n.leading dot line"}"#,
    )
    .unwrap();
    m.recipient = recipient.to_owned();
    m.html_body = Some("<p>Your code is <b>123456</b></p>".into());
    m
}

fn text(data: &[u8]) -> String {
    String::from_utf8(data.to_vec()).unwrap()
}

#[tokio::test]
async fn starttls_verified_delivers_headers_both_parts_and_auth_on_one_pooled_connection() {
    let ca = Ca::new();
    let s = sink(SinkTls::StartTls(ca.server(&["127.0.0.1"]))).await;
    let m = mailer(
        &format!("smtp://{USERINFO}@127.0.0.1:{}/", s.addr().port()),
        &ca,
    );
    let prepared = m.prepare(&message("ann@example.com")).unwrap();
    let ok = m.send(&prepared).await.unwrap();
    assert_eq!(ok.code, 250);
    m.send(&m.prepare(&message("bob@example.com")).unwrap())
        .await
        .unwrap();
    let got = s.received();
    assert_eq!(got.len(), 2);
    assert_eq!(s.connections(), 1, "the second mail reused the connection");
    let r = &got[0];
    assert!(r.tls, "sent after STARTTLS");
    assert_eq!(r.helo, "courier.test");
    let auth = r.auth.as_ref().unwrap();
    assert_eq!(
        (auth.user.as_str(), auth.password.expose()),
        (USER, PASSWORD)
    );
    assert_eq!(r.mail_from, "hello@example.org");
    assert_eq!(r.rcpt_to, ["ann@example.com"]);
    let mail = text(&r.data);
    for want in [
        "From: =?utf-8?b?Wm/DqyBPcHM=?= <hello@example.org>\r\n",
        "To: ann@example.com\r\n",
        "Subject: Your code\r\n",
        "Message-ID: <msg-0001@example.org>\r\n",
        "X-SES-CONFIGURATION-SET: my-set\r\n",
        "MIME-Version: 1.0\r\n",
        "Content-Type: multipart/alternative;",
        "Content-Type: text/plain; charset=utf-8\r\n",
        "Your code is 123456\r\n.leading dot line",
        "Content-Type: text/html; charset=utf-8\r\n",
        "<p>Your code is <b>123456</b></p>",
    ] {
        assert!(mail.contains(want), "missing {want:?} in\n{mail}");
    }
    assert!(mail.contains("\r\nDate: "), "{mail}");
    assert!(
        mail.find("text/plain").unwrap() < mail.find("text/html").unwrap(),
        "plain first, HTML preferred last"
    );
    assert_eq!(got[1].rcpt_to, ["bob@example.com"]);
    let log = s.commands().join("\n");
    assert!(!log.contains(PASSWORD) && log.contains("STARTTLS"), "{log}");
}

/// One security mode against one server: `Ok(tls)` when delivered, else the failure's step.
async fn attempt(tls: SinkTls, uri_tail: &str, scheme: &str, trusted: &Ca) -> Result<bool, Step> {
    let s = sink(tls).await;
    let uri = format!(
        "{scheme}://{USERINFO}@127.0.0.1:{}/{uri_tail}",
        s.addr().port()
    );
    let m = mailer(&uri, trusted);
    match m
        .send(&m.prepare(&message("ann@example.com")).unwrap())
        .await
    {
        Ok(_) => {
            let got = s.received();
            assert_eq!(got.len(), 1);
            Ok(got[0].tls)
        }
        Err(e) => {
            assert!(e.is_transient(), "{uri}: {e}");
            assert!(s.received().is_empty());
            let shown = e.to_string();
            assert!(
                !shown.contains(PASSWORD) && !shown.contains("p%40ss"),
                "{shown}"
            );
            Err(e.step)
        }
    }
}

/// (name, server TLS, scheme, URI tail, expected: `Ok(encrypted)` or the failing step).
type Case = (
    &'static str,
    SinkTls,
    &'static str,
    &'static str,
    Result<bool, Step>,
);

#[tokio::test]
async fn every_security_mode() {
    let ca = Ca::new();
    let other = Ca::new();
    let good = || ca.server(&["127.0.0.1"]);
    let untrusted = || other.server(&["127.0.0.1"]);
    let named = || ca.server(&["mail.courier.test"]);
    use SinkTls::{Implicit, StartTls};
    let cases: Vec<Case> = vec![
        // 1. STARTTLS, verified.
        ("starttls verified", StartTls(good()), "smtp", "", Ok(true)),
        (
            "starttls untrusted",
            StartTls(untrusted()),
            "smtp",
            "",
            Err(Step::Tls),
        ),
        (
            "starttls required, not offered",
            SinkTls::None,
            "smtp",
            "",
            Err(Step::Tls),
        ),
        // 2. STARTTLS without verification.
        (
            "starttls skip",
            StartTls(untrusted()),
            "smtp",
            "?skip_ssl_verify=true",
            Ok(true),
        ),
        // server_name applies to STARTTLS too.
        (
            "starttls server_name",
            StartTls(named()),
            "smtp",
            "?server_name=mail.courier.test",
            Ok(true),
        ),
        (
            "starttls wrong server_name",
            StartTls(named()),
            "smtp",
            "?server_name=other.courier.test",
            Err(Step::Tls),
        ),
        (
            "starttls host is not the name",
            StartTls(named()),
            "smtp",
            "",
            Err(Step::Tls),
        ),
        // 3. disable_starttls: opportunistic, as the reference; cleartext when not offered.
        (
            "disable_starttls, offered",
            StartTls(good()),
            "smtp",
            "?disable_starttls=true",
            Ok(true),
        ),
        (
            "disable_starttls, not offered",
            SinkTls::None,
            "smtp",
            "?disable_starttls=true",
            Ok(false),
        ),
        (
            "disable_starttls, offered, untrusted",
            StartTls(untrusted()),
            "smtp",
            "?disable_starttls=true",
            Err(Step::Tls),
        ),
        // 4. Implicit TLS, verified.
        ("smtps verified", Implicit(good()), "smtps", "", Ok(true)),
        (
            "smtps untrusted",
            Implicit(untrusted()),
            "smtps",
            "",
            Err(Step::Tls),
        ),
        // 5. Implicit TLS without verification.
        (
            "smtps skip",
            Implicit(untrusted()),
            "smtps",
            "?skip_ssl_verify=true",
            Ok(true),
        ),
        // 6. Implicit TLS verified against server_name.
        (
            "smtps server_name",
            Implicit(named()),
            "smtps",
            "?server_name=mail.courier.test",
            Ok(true),
        ),
        (
            "smtps wrong server_name",
            Implicit(named()),
            "smtps",
            "?server_name=other.courier.test",
            Err(Step::Tls),
        ),
    ];
    let mut failures = Vec::new();
    for (name, tls, scheme, tail, want) in cases {
        let got = attempt(tls, tail, scheme, &ca).await;
        if got != want {
            failures.push(format!("{name}: got {got:?}, want {want:?}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[tokio::test]
async fn server_name_is_sent_as_sni() {
    let ca = Ca::new();
    let s = sink(SinkTls::Implicit(ca.server(&["mail.courier.test"]))).await;
    let m = mailer(
        &format!(
            "smtps://{USERINFO}@127.0.0.1:{}/?server_name=mail.courier.test",
            s.addr().port()
        ),
        &ca,
    );
    m.send(&m.prepare(&message("ann@example.com")).unwrap())
        .await
        .unwrap();
    assert_eq!(s.received()[0].sni.as_deref(), Some("mail.courier.test"));
}

#[tokio::test]
async fn replies_classify_and_keep_code_text_and_step() {
    let ca = Ca::new();
    let s = sink(SinkTls::StartTls(ca.server(&["127.0.0.1"]))).await;
    let m = mailer(
        &format!("smtp://{USERINFO}@127.0.0.1:{}/", s.addr().port()),
        &ca,
    );
    let mail = m.prepare(&message("ann@example.com")).unwrap();

    s.script("RCPT", "550 5.1.1 no such user here");
    let e = m.send(&mail).await.unwrap_err();
    assert_eq!(
        (e.step, e.kind, e.code, e.text.as_str()),
        (
            Step::Rcpt,
            FailureKind::Reply,
            Some(550),
            "5.1.1 no such user here"
        )
    );
    assert!(!e.is_transient());

    s.script("MAIL", "451 4.3.0 try again later");
    let e = m.send(&mail).await.unwrap_err();
    assert_eq!((e.step, e.code), (Step::Mail, Some(451)));
    assert!(e.is_transient());

    s.script(".", "452 4.3.1 out of storage");
    let e = m.send(&mail).await.unwrap_err();
    assert_eq!((e.step, e.code), (Step::Data, Some(452)));
    assert!(e.is_transient());

    // The refused transactions were reset and the connection kept; now it goes through.
    m.send(&mail).await.unwrap();
    assert_eq!(s.received().len(), 1);
    assert_eq!(s.connections(), 1, "{:?}", s.commands());
    assert!(s.commands().iter().any(|c| c == "RSET"));
}

#[tokio::test]
async fn a_bad_password_is_permanent() {
    let ca = Ca::new();
    let s = sink(SinkTls::Implicit(ca.server(&["127.0.0.1"]))).await;
    let m = mailer(
        &format!(
            "smtps://{}:wrong%20secret@127.0.0.1:{}/",
            "some-user%40mailgun.example.org",
            s.addr().port()
        ),
        &ca,
    );
    let e = m
        .send(&m.prepare(&message("ann@example.com")).unwrap())
        .await
        .unwrap_err();
    assert_eq!((e.step, e.code), (Step::Auth, Some(535)), "{e}");
    assert!(!e.is_transient());
    assert!(!e.to_string().contains("wrong secret"), "{e}");
    assert!(s.received().is_empty());
}

#[tokio::test]
async fn the_password_is_not_sent_in_cleartext_to_another_host() {
    // `localhost` and 127.0.0.1 are allowed (as the reference's Go client); we can only test the
    // loopback side here, so check that cleartext AUTH to loopback works and is recorded.
    let s = sink(SinkTls::None).await;
    let ca = Ca::new();
    let m = mailer(
        &format!(
            "smtp://{USERINFO}@127.0.0.1:{}/?disable_starttls=true",
            s.addr().port()
        ),
        &ca,
    );
    m.send(&m.prepare(&message("ann@example.com")).unwrap())
        .await
        .unwrap();
    let r = &s.received()[0];
    assert!(!r.tls && r.auth.is_some());
}

#[tokio::test]
async fn an_invalid_recipient_is_refused_before_any_connection() {
    let ca = Ca::new();
    let s = sink(SinkTls::StartTls(ca.server(&["127.0.0.1"]))).await;
    let m = mailer(
        &format!("smtp://{USERINFO}@127.0.0.1:{}/", s.addr().port()),
        &ca,
    );
    for bad in [
        "ann@example.com\r\nBcc: victim@example.com",
        "not-an-address",
        "ann@example.com, bob@example.com",
    ] {
        let e = m.prepare(&message(bad)).unwrap_err();
        assert_eq!((e.step, e.kind), (Step::Compose, FailureKind::Invalid));
        assert!(!e.is_transient());
    }
    assert_eq!(s.connections(), 0);
}

// ---------------------------------------------------------------------------------------------
// Through the courier: `delivery_strategy: smtp` and `type: smtp` channels, with the retry policy.

fn courier_yaml(uri: &str, retries: u32) -> String {
    format!(
        r#"
courier:
  delivery_strategy: smtp
  message_retries: {retries}
  smtp:
    connection_uri: "{uri}"
    from_address: hello@example.org
  channels:
    - id: sms
      type: http
      request_config: {{ url: "http://127.0.0.1:9/" }}
jsonnet_courier:
  retry: {{ initial_backoff: 10ms, max_backoff: 20ms }}
  serve: {{ poll_interval: 20ms }}
"#
    )
}

fn header<'a>(mail: &'a str, name: &str) -> &'a str {
    let start = mail.find(&format!("\r\n{name}: ")).unwrap() + name.len() + 4;
    let end = mail[start..].find("\r\n").unwrap() + start;
    &mail[start..end]
}

#[tokio::test]
async fn the_courier_retries_a_451_and_keeps_the_message_id() {
    let s = sink(SinkTls::None).await;
    let uri = format!(
        "smtp://{USERINFO}@127.0.0.1:{}/?disable_starttls=true",
        s.addr().port()
    );
    let config = Config::parse(&courier_yaml(&uri, 3), false, None, &|_| None).unwrap();
    assert_eq!(
        config.channel("sms").unwrap().id,
        "sms",
        "other channels stay http"
    );
    let courier = jsonnet_courier::delivery::Courier::new(config)
        .await
        .unwrap();
    let mut msg = message("ann@example.com");
    msg.id = None;
    s.script(".", "451 4.3.0 greylisted, try again");
    let report = courier.deliver(&msg).await;
    assert_eq!(
        report.outcome,
        jsonnet_courier::delivery::Outcome::Delivered,
        "{report:#?}"
    );
    assert_eq!(report.attempts.len(), 2);
    let first = &report.attempts[0];
    assert_eq!(first.status, Some(451));
    assert_eq!(
        first.class,
        jsonnet_courier::delivery::AttemptClass::Retryable
    );
    assert_eq!(
        first.error.as_deref(),
        Some("DATA failed: 451 4.3.0 greylisted, try again")
    );
    assert_eq!(report.attempts[1].status, Some(250));
    let refused = text(&s.rejected()[0]);
    let sent = text(&s.received()[0].data);
    assert_eq!(header(&refused, "Message-ID"), header(&sent, "Message-ID"));
    assert_eq!(header(&refused, "Date"), header(&sent, "Date"));
    let shown = serde_json::to_string(&report).unwrap();
    assert!(!shown.contains(PASSWORD), "{shown}");
}

#[tokio::test]
async fn the_courier_fails_a_550_and_an_invalid_recipient_at_once() {
    let s = sink(SinkTls::None).await;
    let uri = format!(
        "smtp://{USERINFO}@127.0.0.1:{}/?disable_starttls=true",
        s.addr().port()
    );
    let config = Config::parse(&courier_yaml(&uri, 3), false, None, &|_| None).unwrap();
    let courier = jsonnet_courier::delivery::Courier::new(config)
        .await
        .unwrap();

    let report = courier
        .deliver(&message("a@b.example\r\nBcc: x@example.com"))
        .await;
    assert_eq!(report.outcome, jsonnet_courier::delivery::Outcome::Failed);
    assert_eq!(report.attempts.len(), 1);
    assert!(report.attempts[0]
        .error
        .as_deref()
        .unwrap()
        .starts_with("compose failed: "));
    assert_eq!(s.connections(), 0, "no connection for an invalid recipient");

    s.script("RCPT", "550 5.1.1 mailbox unavailable");
    let report = courier.deliver(&message("ann@example.com")).await;
    assert_eq!(report.outcome, jsonnet_courier::delivery::Outcome::Failed);
    assert_eq!(report.attempts.len(), 1);
    assert_eq!(report.attempts[0].status, Some(550));
    assert_eq!(
        report.attempts[0].response_body.as_deref(),
        Some("5.1.1 mailbox unavailable")
    );
    assert!(s.received().is_empty());
}

async fn serve_delivers_queued_email_over_smtp(
    store: Arc<dyn jsonnet_courier::store::MessageStore>,
) {
    use crate::serve::{ids_of, start, stub, wait_status};
    use jsonnet_courier::store::Status;
    let s = sink(SinkTls::None).await;
    let uri = format!(
        "smtp://{USERINFO}@127.0.0.1:{}/?disable_starttls=true",
        s.addr().port()
    );
    let config = Config::parse(&courier_yaml(&uri, 3), false, None, &|_| None).unwrap();
    let svc = start(store, config, |_| {}).await;
    s.script("RCPT", "451 4.7.1 try later");
    let r = crate::support::post_json(
        svc.addr,
        "/messages",
        &[],
        stub("ann@example.com").to_string(),
    )
    .await;
    let id = ids_of(&r).remove(0);
    let m = wait_status(
        svc.addr,
        &id,
        Status::Sent,
        std::time::Duration::from_secs(10),
    )
    .await;
    assert_eq!(m.send_count, 2);
    assert_eq!(m.attempts[0].status, Some(451));
    let got = s.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].rcpt_to, ["ann@example.com"]);
    let mail = text(&got[0].data);
    assert!(
        mail.contains(&format!("Message-ID: <{id}@example.org>")),
        "{mail}"
    );
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_delivers_queued_email_over_smtp_sqlite() {
    crate::backend::with_store(
        crate::backend::Backend::SqliteFile,
        serve_delivers_queued_email_over_smtp,
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// Client certificates, platform roots (SSL_CERT_FILE) and the command line.

impl Ca {
    /// A server config for `names` that requires a client certificate issued by `clients`.
    pub fn server_requiring_client(
        &self,
        names: &[&str],
        clients: &Ca,
    ) -> Arc<rustls::ServerConfig> {
        let leaf = self.leaf(names);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from(clients.der.clone()))
            .unwrap();
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        .unwrap();
        Arc::new(
            rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_client_cert_verifier(verifier)
                .with_single_cert(
                    leaf.chain,
                    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf.key_der)),
                )
                .unwrap(),
        )
    }
}

#[tokio::test]
async fn a_client_certificate_is_presented_when_configured() {
    let ca = Ca::new();
    let clients = Ca::new();
    let s = sink(SinkTls::Implicit(
        ca.server_requiring_client(&["127.0.0.1"], &clients),
    ))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let client = clients.leaf(&["courier.test"]);
    std::fs::write(dir.path().join("client.pem"), &client.cert_pem).unwrap();
    std::fs::write(dir.path().join("client.key"), &client.key_pem).unwrap();
    let uri = format!("smtps://{USERINFO}@127.0.0.1:{}/", s.addr().port());
    let yaml = format!(
        "courier:\n  delivery_strategy: smtp\n  smtp:\n    connection_uri: \"{uri}\"\n    client_cert_path: {}\n    client_key_path: {}\n",
        dir.path().join("client.pem").display(),
        dir.path().join("client.key").display()
    );
    let options = || TransportOptions {
        platform_roots: false,
        extra_roots: vec![ca.der.clone()],
        ..TransportOptions::default()
    };
    let with = Config::parse(&yaml, false, None, &|_| None).unwrap();
    let m = Mailer::new(with.smtp_channel("email").unwrap(), options()).unwrap();
    m.send(&m.prepare(&message("ann@example.com")).unwrap())
        .await
        .unwrap();
    assert_eq!(s.received().len(), 1);

    let without = config(&uri);
    let m = Mailer::new(without.smtp_channel("email").unwrap(), options()).unwrap();
    let e = m
        .send(&m.prepare(&message("ann@example.com")).unwrap())
        .await
        .unwrap_err();
    assert_eq!(
        s.received().len(),
        1,
        "refused without a client certificate: {e}"
    );
}

fn courier_bin(args: &[&str], envs: &[(&str, &std::path::Path)]) -> std::process::Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_courier"));
    cmd.args(args)
        .env_remove("SSL_CERT_DIR")
        .env_remove("SSL_CERT_FILE");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn courier_send_verifies_with_ssl_cert_file_and_config_check_masks_the_password() {
    let ca = Ca::new();
    let s = sink(SinkTls::StartTls(ca.server(&["127.0.0.1"]))).await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.pem).unwrap();
    let cfg = dir.path().join("courier.yaml");
    let uri = format!("smtp://{USERINFO}@127.0.0.1:{}/", s.addr().port());
    std::fs::write(&cfg, courier_yaml(&uri, 0)).unwrap();
    let cfg_s = cfg.to_str().unwrap().to_owned();

    let (c, f) = (cfg_s.clone(), ca_file.clone());
    let out = tokio::task::spawn_blocking(move || {
        courier_bin(
            &["send", "--config", &c, "--type", "recovery_code_valid"],
            &[("SSL_CERT_FILE", &f)],
        )
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["outcome"], "delivered");
    assert_eq!(report["attempts"][0]["status"], 250);
    let got = s.received();
    assert!(got[0].tls);
    assert!(
        text(&got[0].data).contains("Content-Type: text/html"),
        "the sample has an HTML body"
    );

    // Without the CA in SSL_CERT_FILE the same server is not trusted.
    let c = cfg_s.clone();
    let out = tokio::task::spawn_blocking(move || {
        courier_bin(
            &["send", "--config", &c, "--type", "recovery_code_valid"],
            &[],
        )
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("TLS failed"), "{stdout}");
    assert_eq!(s.received().len(), 1);

    let c = cfg_s.clone();
    let out = tokio::task::spawn_blocking(move || courier_bin(&["config", "check", &c], &[]))
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("some-user%40mailgun.example.org:***@127.0.0.1"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("p%40ss") && !stdout.contains(PASSWORD),
        "{stdout}"
    );
}

#[tokio::test]
async fn a_message_with_only_type_and_data_is_composed_from_the_built_in_templates() {
    let s = sink(SinkTls::None).await;
    let uri = format!(
        "smtp://{USERINFO}@127.0.0.1:{}/?disable_starttls=true",
        s.addr().port()
    );
    let config = Config::parse(&courier_yaml(&uri, 0), false, None, &|_| None).unwrap();
    let courier = jsonnet_courier::delivery::Courier::new(config)
        .await
        .unwrap();
    let msg = Message::from_json(
        br#"{"id":"msg-0002","recipient":"ann@example.com","template_type":"recovery_code_valid",
             "template_data":{"to":"ann@example.com","recovery_code":"482913","expires_in_minutes":15}}"#,
    )
    .unwrap();
    let report = courier.deliver(&msg).await;
    assert_eq!(
        report.outcome,
        jsonnet_courier::delivery::Outcome::Delivered,
        "{report:#?}"
    );
    let mail = text(&s.received()[0].data);
    let subject = header(&mail, "Subject");
    assert!(subject.contains("482913"), "subject: {subject}");
    assert!(mail.contains("Content-Type: text/plain"), "{mail}");
    assert!(mail.contains("Content-Type: text/html"), "{mail}");
    // The code reaches both parts (quoted-printable or not, the digits stay together).
    assert!(mail.matches("482913").count() >= 3, "{mail}");
}
