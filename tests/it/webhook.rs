//! Standard Webhooks signatures: the `courier webhook` commands, and signed deliveries as a
//! receiver sees them.

use std::io::Write as _;
use std::process::{Command, Output, Stdio};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
const BODY: &str = r#"{"test": 2432232314}"#;
const VECTOR: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

fn courier(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_courier"))
        .args(args)
        .env_remove("COURIER_WEBHOOK_SECRET")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).trim().to_owned()
}

fn verify(secret: &str, ts: &str, sig: &str, body: &str, tolerance: &str) -> Output {
    courier(
        &[
            "webhook",
            "verify",
            "--secret",
            secret,
            "--id",
            ID,
            "--timestamp",
            ts,
            "--signature",
            sig,
            "--tolerance",
            tolerance,
        ],
        body,
    )
}

#[test]
fn sign_prints_the_published_vector() {
    let out = courier(
        &[
            "webhook",
            "sign",
            "--secret",
            SECRET,
            "--id",
            ID,
            "--timestamp",
            "1614265330",
        ],
        BODY,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), VECTOR);
}

#[test]
fn verify_accepts_the_vector_and_refuses_changes() {
    let ok = verify(SECRET, "1614265330", VECTOR, BODY, "0");
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok.stderr));
    let tampered = verify(SECRET, "1614265330", VECTOR, r#"{"test": 1}"#, "0");
    assert_eq!(tampered.status.code(), Some(1));
    assert!(text(&tampered.stderr).contains("no signature matches"));
    // The default tolerance (300 s) refuses a 2021 timestamp.
    let stale = courier(
        &[
            "webhook",
            "verify",
            "--secret",
            SECRET,
            "--id",
            ID,
            "--timestamp",
            "1614265330",
            "--signature",
            VECTOR,
        ],
        BODY,
    );
    assert_eq!(stale.status.code(), Some(1));
    assert!(
        text(&stale.stderr).contains("tolerance"),
        "{}",
        text(&stale.stderr)
    );
    // A malformed secret is a usage error, and is not echoed.
    let bad = verify("whsec_not base64!", "1614265330", VECTOR, BODY, "0");
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        !text(&bad.stderr).contains("not base64!"),
        "{}",
        text(&bad.stderr)
    );
}

#[test]
fn verify_accepts_what_sign_makes_now_with_ed25519_and_rotation() {
    let whsk = "whsk_nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=";
    let out = courier(
        &[
            "webhook", "sign", "--secret", SECRET, "--secret", whsk, "--id", ID,
        ],
        BODY,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let sig = text(&out.stdout);
    assert!(sig.starts_with("v1,") && sig.contains(" v1a,"), "{sig}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // The RFC 8032 test key's public half verifies the v1a signature alone.
    let whpk = "whpk_11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";
    for key in [SECRET, whsk, whpk] {
        let v = verify(key, &now.to_string(), &sig, BODY, "60");
        assert_eq!(v.status.code(), Some(0), "{key}: {}", text(&v.stderr));
    }
    let v = verify(whpk, &now.to_string(), VECTOR, BODY, "0");
    assert_eq!(v.status.code(), Some(1));
}
