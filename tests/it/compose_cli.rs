//! Message templates (Go templates) through the `courier` binary: `render X.gotmpl`, `preview`,
//! `check --messages`, with override folders and a template served over HTTP.

use std::path::Path;

use crate::cli::{courier_stdin as courier, text};
use crate::support::{Reply, Server, Start};

fn write(dir: &Path, rel: &str, body: &str) -> String {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, body).unwrap();
    p.display().to_string()
}

#[test]
fn render_go_template_over_data_and_samples() {
    let dir = tempfile::tempdir().unwrap();
    let html = write(
        dir.path(),
        "email.body.gotmpl",
        r#"<a href="{{ .RecoveryURL }}">{{ .To }}</a>"#,
    );
    let data = r#"{"To":"<x>@example.com","RecoveryURL":"javascript:alert(1)"}"#;
    // email.body.gotmpl is html/template by the reference's naming rule.
    let out = courier(&["render", &html, "--data", "-"], data);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        r##"<a href="#ZgotmplZ">&lt;x&gt;@example.com</a>"##
    );
    let out = courier(&["render", &html, "--data", "-", "--text"], data);
    assert_eq!(
        text(&out.stdout),
        r#"<a href="javascript:alert(1)"><x>@example.com</a>"#
    );

    let out = courier(
        &[
            "render",
            "templates/recovery_code/valid/sms.body.gotmpl",
            "--type",
            "recovery_code_valid",
            "--sms",
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("361508 is your account recovery code."),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn render_template_errors_exit_1_with_position() {
    let dir = tempfile::tempdir().unwrap();
    let bad = write(dir.path(), "email.subject.gotmpl", "Hi\n  {{ if .To }");
    let out = courier(&["render", &bad, "--type", "login_code_valid"], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("template: email.subject.gotmpl:2:"),
        "{}",
        text(&out.stderr)
    );
    let fails = write(
        dir.path(),
        "x.gotmpl",
        "{{ index .Identity.recovery_addresses 7 }}",
    );
    let out = courier(&["render", &fails, "--type", "login_code_valid"], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("template: x.gotmpl: "),
        "{}",
        text(&out.stderr)
    );
    let out = courier(&["render", &fails, "--data", "-", "--html", "--text"], "{}");
    assert_eq!(out.status.code(), Some(2));
}

/// A config with a subject served over HTTP, an override folder with language files, and a
/// plain-text override that fails at render: preview shows the result and the fallback, check
/// lists every language and the failure.
#[tokio::test]
async fn preview_and_check_use_the_configured_templates() {
    let server = Server::start(|_, _| {
        Reply::status(200).body("  Code {{ .RecoveryCode }} ({{ .Identity.traits.lang }})  \n")
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let d = "recovery_code/valid";
    write(
        dir.path(),
        &format!("over/{d}/email.body.gotmpl"),
        r#"{{ if eq .Identity.traits.lang "fr" }}{{ template "fr" . }}{{ else }}{{ template "en" . }}{{ end }}"#,
    );
    write(
        dir.path(),
        &format!("over/{d}/email.body.fr.gotmpl"),
        r#"{{ define "fr" }}<p>Code : {{ .RecoveryCode }}</p>{{ end }}"#,
    );
    write(
        dir.path(),
        &format!("over/{d}/email.body.en.gotmpl"),
        r#"{{ define "en" }}<p>Code: {{ .RecoveryCode }}</p>{{ end }}"#,
    );
    write(
        dir.path(),
        "over/login_code/valid/email.body.plaintext.gotmpl",
        "{{ index .Identity.recovery_addresses 7 }}",
    );
    let config = write(
        dir.path(),
        "courier.yaml",
        &format!(
            "courier:\n  template_override_path: over\n  templates:\n    recovery_code:\n      valid:\n        email:\n          subject: {}\n",
            server.url("/subject.gotmpl")
        ),
    );
    let html_out = dir.path().join("mail.html");
    let html_arg = html_out.display().to_string();

    let config1 = config.clone();
    let out = tokio::task::spawn_blocking(move || {
        courier(
            &[
                "preview",
                "--config",
                &config1,
                "--type",
                "recovery_code_valid",
                "--html-out",
                &html_arg,
            ],
            "",
        )
    })
    .await
    .unwrap();
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains(
            "== subject (courier.templates.recovery_code.valid.email.subject)\nCode 730219 (es)\n"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("== text (built-in)\nRecover access"),
        "{stdout}"
    );
    assert_eq!(
        std::fs::read_to_string(&html_out).unwrap(),
        "<p>Code: 730219</p>"
    );
    assert_eq!(server.count(), 1);

    let config2 = config.clone();
    let out = tokio::task::spawn_blocking(move || {
        courier(
            &["preview", "-c", &config2, "--type", "login_code_valid"],
            "",
        )
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("warning: text template ") && stderr.contains("used the built-in one"),
        "{stderr}"
    );
    assert!(
        text(&out.stdout).contains("== text ("),
        "{}",
        text(&out.stdout)
    );

    let out =
        tokio::task::spawn_blocking(move || courier(&["check", "--messages", "-c", &config], ""))
            .await
            .unwrap();
    let table = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{table}");
    let rows: Vec<&str> = table
        .lines()
        .filter(|l| l.starts_with("recovery_code_valid ") && l.contains(" html "))
        .collect();
    assert_eq!(rows.len(), 3, "{table}");
    assert!(
        rows[1].contains(" en ") && rows[1].contains(" ok "),
        "{}",
        rows[1]
    );
    assert!(
        rows[2].contains(" fr ") && rows[2].contains(" ok "),
        "{}",
        rows[2]
    );
    assert!(
        table.lines().any(|l| l.starts_with("login_code_valid ")
            && l.contains(" text ")
            && l.contains(" error ")),
        "{table}"
    );
    assert!(
        table.contains("message templates: 43 ok, 1 failed"),
        "{table}"
    );
}
