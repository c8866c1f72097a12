//! The `courier` binary as a user runs it: exit codes, stdout, stderr.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use crate::support::{Reply, Server, Start as _};

fn courier(args: &[&str]) -> Output {
    courier_stdin(args, "")
}

/// Runs the real binary in the crate root with `stdin` as its input.
pub(crate) fn courier_stdin(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_courier"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
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

pub(crate) fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn render_sample_prints_the_payload() {
    let out = courier(&[
        "render",
        "jsonnet/default.jsonnet",
        "--type",
        "recovery_code_valid",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let payload: Value = serde_json::from_slice(&out.stdout).unwrap();
    let sample: Value = serde_json::from_str(
        &std::fs::read_to_string("testdata/messages/email/recovery_code_valid.json").unwrap(),
    )
    .unwrap();
    assert_eq!(
        payload["recovery_code"],
        sample["template_data"]["recovery_code"]
    );
    assert_eq!(payload["recipient"], sample["recipient"]);
    assert_eq!(payload["subject"], sample["subject"]);
    assert_eq!(payload["recovery_url"], Value::Null);
}

#[test]
fn render_sms_sample_in_snake_style() {
    let out = courier(&[
        "render",
        "jsonnet/default.snake.jsonnet",
        "--type",
        "login_code_valid",
        "--sms",
        "--style",
        "snake",
        "--pretty",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with("{\n  \"body\""), "{stdout}");
    let payload: Value = serde_json::from_str(&stdout).unwrap();
    assert!(payload["recipient"].as_str().unwrap().starts_with('+'));
    assert_eq!(payload["subject"], "");
}

#[test]
fn render_form_matches_the_spec_byte_for_byte() {
    let out = courier_stdin(
        &["render", "base64://ZnVuY3Rpb24oY3R4KSB7IGZyb206IGN0eC5mcm9tLCB0bzogY3R4LnRvLCBib2R5OiBjdHguYm9keSB9", "--ctx", "-", "--format", "form"],
        r#"{"to": "+14134242223", "from": "+13104661805", "body": "test-sms-body"}"#,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "body=test-sms-body&from=%2B13104661805&to=%2B14134242223\n"
    );
}

#[test]
fn render_message_in_either_key_style() {
    let dir = tempfile::tempdir().unwrap();
    let msg = dir.path().join("m.json");
    std::fs::write(&msg, r#"{"Recipient":"a@example.com","TemplateType":"login_code_valid","Subject":"S","Body":"B","TemplateData":{"LoginCode":"123456","Custom":1}}"#).unwrap();
    for style in ["pascal", "snake"] {
        let template = if style == "pascal" {
            "jsonnet/default.jsonnet"
        } else {
            "jsonnet/default.snake.jsonnet"
        };
        let out = courier(&[
            "render",
            template,
            "--message",
            msg.to_str().unwrap(),
            "--style",
            style,
        ]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let payload: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(payload["login_code"], "123456");
    }
}

#[test]
fn render_errors_exit_1_with_location_and_caret() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("bad.jsonnet");
    std::fs::write(
        &t,
        "function(ctx) {\n  to: ctx.Recipient,\n  subject: ,\n}\n",
    )
    .unwrap();
    let out = courier(&["render", t.to_str().unwrap(), "--type", "stub"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("bad.jsonnet:3:12: syntax error"),
        "{stderr}"
    );
    assert!(
        stderr.contains("    3 |   subject: ,\n      |            ^"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn usage_errors_exit_2() {
    let out = courier(&[
        "render",
        "jsonnet/default.jsonnet",
        "--type",
        "password_reset",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("recovery_code_valid"),
        "lists the types"
    );
    let out = courier(&["render", "jsonnet/default.jsonnet"]);
    assert_eq!(out.status.code(), Some(2), "an input is required");
    let out = courier(&[
        "render",
        "jsonnet/default.jsonnet",
        "--type",
        "recovery_valid",
        "--sms",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("no SMS sample for recovery_valid"));
    let out = courier(&["render", "ftp://x/y.jsonnet", "--type", "stub"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("file://, base64://, http://, https://"));
    let out = courier(&["render", "/nonexistent/t.jsonnet", "--type", "stub"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("/nonexistent/t.jsonnet"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_templates_are_fetched_and_failures_name_the_uri() {
    let server = Server::start(|_, req| match req.path.as_str() {
        "/t.jsonnet" => Reply::status(200).body("function(ctx) {remote: ctx.Recipient}"),
        _ => Reply::status(404).body("nope"),
    })
    .await;
    let url = server.url("/t.jsonnet");
    let out = tokio::task::spawn_blocking(move || courier(&["render", &url, "--type", "stub"]))
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("{\"remote\":"));
    assert_eq!(server.count(), 1);

    let url = server.url("/missing.jsonnet?token=secret-token");
    let out = tokio::task::spawn_blocking(move || courier(&["render", &url, "--type", "stub"]))
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!("http://{}/missing.jsonnet", server.addr)),
        "{stderr}"
    );
    assert!(stderr.contains("404"), "{stderr}");
    assert!(
        !stderr.contains("secret-token"),
        "query strings are not echoed: {stderr}"
    );
}

#[test]
fn check_and_render_explain_which_path_a_template_takes() {
    let out = courier(&["check", "jsonnet/slack.jsonnet"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("render path: compiled fast path"),
        "{}",
        text(&out.stdout)
    );

    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("sorted.jsonnet");
    std::fs::write(
        &t,
        "function(ctx) {\n  to: ctx.Recipient,\n  keys: std.objectFields(ctx),\n}\n",
    )
    .unwrap();
    let out = courier(&["render", "--explain", "--type", "stub", t.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains(
            "render path: evaluator (std.objectFields at line 3 column 25 is outside the fast path's subset)"
        ),
        "{}",
        text(&out.stderr)
    );
    // The payload itself is unchanged by --explain.
    assert!(
        text(&out.stdout).contains("\"to\""),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn check_prints_a_row_per_sample() {
    let out = courier(&["check", "jsonnet/default.jsonnet"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert_eq!(
        stdout.lines().filter(|l| l.contains(" ok ")).count(),
        20,
        "{stdout}"
    );
    assert!(stdout.contains("20 ok, 0 cancelled, 0 failed"));
    assert!(
        stdout.contains("ctx style: pascal (the template reads ctx.Recipient)"),
        "{stdout}"
    );

    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("codes.jsonnet");
    std::fs::write(&t, "function(ctx) if ctx.MessageType == 'sms' then error 'cancel' else {code: ctx.TemplateData.RecoveryCode}").unwrap();
    let out = courier(&["check", t.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    let row = stdout
        .lines()
        .find(|l| l.starts_with("login_code_valid") && l.contains("email"))
        .unwrap();
    assert!(
        row.contains("error")
            && row.contains(
                "codes.jsonnet:1:92: no such field: RecoveryCode (output field \"code\")"
            ),
        "{row}"
    );
    assert!(stdout.lines().any(|l| l.starts_with("recovery_code_valid")
        && l.contains("email")
        && l.contains(" ok ")));
    assert!(stdout.contains("1 ok, 7 cancelled, 12 failed"), "{stdout}");
    assert!(
        !stdout.contains("-style name"),
        "no style hint when the name is simply absent: {stdout}"
    );
}

#[test]
fn golden_tests_pass_for_the_shipped_templates() {
    let out = courier(&["test", "testdata/golden", "--templates", "jsonnet"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    let cases = std::fs::read_dir("testdata/golden")
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".expected.json")
        })
        .count();
    assert!(cases >= 40);
    assert!(
        stdout.contains(&format!("{cases} passed, 0 failed")),
        "{stdout}"
    );
}

#[test]
fn golden_mismatches_print_a_diff_and_fail() {
    let dir = tempfile::tempdir().unwrap();
    for f in ["mailgun.stub.message.json", "mailgun.stub.expected.json"] {
        std::fs::copy(Path::new("testdata/golden").join(f), dir.path().join(f)).unwrap();
    }
    let expected = dir.path().join("mailgun.stub.expected.json");
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&expected).unwrap()).unwrap();
    v["subject"] = Value::String("Something else".into());
    v["extra"] = Value::Bool(true);
    std::fs::write(&expected, v.to_string()).unwrap();
    let out = courier(&[
        "test",
        dir.path().to_str().unwrap(),
        "--templates",
        "jsonnet",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("FAIL  mailgun.stub (mailgun.jsonnet)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("subject: expected \"Something else\", got "),
        "{stdout}"
    );
    assert!(
        stdout.contains("extra: missing (expected true)"),
        "{stdout}"
    );
    assert!(stdout.contains("0 passed, 1 failed"));

    // --update writes what the template renders now, and the suite passes again.
    let out = courier(&[
        "test",
        dir.path().to_str().unwrap(),
        "--templates",
        "jsonnet",
        "--update",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let out = courier(&[
        "test",
        dir.path().to_str().unwrap(),
        "--templates",
        "jsonnet",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
}

#[test]
fn help_teaches() {
    let out = courier(&["render", "--help"]);
    let help = text(&out.stdout);
    assert!(
        help.contains("courier render jsonnet/default.jsonnet --type recovery_code_valid"),
        "{help}"
    );
    assert!(help.contains("--import-dir"));
}

#[test]
fn a_closed_pipe_ends_output_quietly() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_courier"))
        // 200 KB of output: more than a pipe buffers, so writing must hit the closed pipe.
        .args([
            "render",
            "base64://ZnVuY3Rpb24oY3R4KSB7YTogc3RkLnJlcGVhdCgneCcsIDIwMDAwMCl9",
            "--ctx",
            "-",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"{}").unwrap();
    // Read one byte, then close our end, as `| head -c1` would.
    let mut stdout = child.stdout.take().unwrap();
    let mut one = [0u8; 1];
    std::io::Read::read_exact(&mut stdout, &mut one).unwrap();
    drop(stdout);
    let out = child.wait_with_output().unwrap();
    let stderr = text(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
}
