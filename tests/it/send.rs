//! `courier send`, `courier config check` and `courier bench` as a user runs them.

use std::process::{Command, Output};

use serde_json::Value;

use crate::support::{Reply, Server, Start as _};

fn courier(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_courier"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("COURIER_TEST_KEY", "key-from-env")
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn write_config(dir: &std::path::Path, url: &str, extra: &str) -> String {
    let path = dir.join("courier.yaml");
    std::fs::write(
        &path,
        format!(
            "courier:\n  message_retries: 2\n  http:\n    request_config:\n      url: {url}\n      auth:\n        type: api_key\n        config:\n          name: X-Api-Key\n          value: ${{COURIER_TEST_KEY}}\n          in: header\n{extra}jsonnet_courier:\n  retry:\n    initial_backoff: 10ms\n"
        ),
    )
    .unwrap();
    path.to_string_lossy().into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_delivers_a_sample_and_prints_the_report() {
    let server = Server::start(|n, _| {
        if n == 0 {
            Reply::status(503).body("try later")
        } else {
            Reply::status(202)
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &server.url("/mail"), "");
    let out = tokio::task::spawn_blocking(move || {
        courier(&["send", "--config", &cfg, "--type", "recovery_code_valid"])
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["outcome"], "delivered");
    assert_eq!(report["channel"], "email");
    assert_eq!(report["attempts"].as_array().unwrap().len(), 2);
    assert_eq!(report["attempts"][0]["status"], 503);
    assert_eq!(report["attempts"][0]["response_body"], "try later");
    assert_eq!(report["attempts"][1]["status"], 202);
    assert!(report["attempts"][0]["started_at"]
        .as_str()
        .unwrap()
        .ends_with('Z'));
    let req = server.request(1);
    assert_eq!(req.header("x-api-key"), Some("key-from-env"));
    let payload: Value = serde_json::from_slice(&req.body).unwrap();
    assert_eq!(payload["template_type"], "recovery_code_valid");
    assert!(!text(&out.stderr).contains("key-from-env"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_exits_1_when_not_delivered_and_reads_messages_from_files() {
    let server = Server::start(|_, _| Reply::status(400).body("bad request")).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &server.url("/mail"), "");
    let msg = dir.path().join("m.json");
    std::fs::write(
        &msg,
        r#"{"Recipient":"a@example.com","TemplateType":"stub","Subject":"s","Body":"b"}"#,
    )
    .unwrap();
    let msg = msg.to_string_lossy().into_owned();
    let out = tokio::task::spawn_blocking(move || courier(&["send", "-c", &cfg, "-m", &msg]))
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["outcome"], "failed");
    assert_eq!(report["attempts"][0]["class"], "permanent");
    assert!(
        text(&out.stderr).contains("not delivered: failed after 1 attempt"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn send_rejects_bad_input_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), "http://127.0.0.1:9/", "");
    let out = courier(&[
        "send",
        "--config",
        &cfg,
        "--type",
        "stub",
        "--channel",
        "fax",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("no channel \"fax\""),
        "{}",
        text(&out.stderr)
    );
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "courier:\n  http:\n    request_config:\n      url: nowhere\n",
    )
    .unwrap();
    let out = courier(&["send", "--config", bad.to_str().unwrap(), "--type", "stub"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr)
        .contains("courier.http.request_config.url: nowhere is not an absolute http(s) URL"));
}

#[test]
fn config_check_prints_the_effective_config_with_secrets_masked() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("body.jsonnet"),
        "function(ctx) {to: ctx.Recipient}",
    )
    .unwrap();
    let cfg = write_config(
        dir.path(),
        "https://user:pa55@api.example.com/send",
        "  channels:\n    - id: sms\n      type: http\n      request_config:\n        url: https://sms.example.com/\n        body: body.jsonnet\n        headers:\n          Authorization: Bearer tok-123\n",
    );
    let out = courier(&["config", "check", &cfg]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let shown: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        shown["channels"][0]["url"],
        "https://user:***@api.example.com/send"
    );
    assert_eq!(shown["channels"][0]["auth"]["value"], "***");
    assert_eq!(shown["channels"][1]["headers"]["authorization"], "***");
    assert_eq!(shown["jsonnet_courier"]["retry"]["initial_backoff"], "10ms");
    for secret in ["pa55", "key-from-env", "tok-123"] {
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "{secret} leaked"
        );
    }
    assert!(
        stderr.contains("deprecated"),
        "a bare template path warns: {stderr}"
    );
    assert!(
        stderr.contains(
            "channel sms: template \"body.jsonnet\", ctx style pascal (the template reads ctx.Recipient)"
        ),
        "config check says which style and why: {stderr}"
    );

    std::fs::write(dir.path().join("body.jsonnet"), "function(a, b) {}").unwrap();
    let out = courier(&["config", "check", &cfg]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("courier.channels[0].request_config.body: body.jsonnet: "),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn bench_runs_and_reports_the_ratio() {
    let out = courier(&["bench", "-n", "400", "-c", "8", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["courier"]["count"], 400);
    assert_eq!(v["courier"]["failed"], 0);
    assert_eq!(v["ceiling"]["count"], 400);
    assert!(v["ratio"].as_f64().unwrap() > 0.0);
}

#[test]
fn service_bench_delivers_everything_and_accounts_for_the_cpu() {
    let out = courier(&[
        "bench",
        "--service",
        "--batch",
        "10",
        "-n",
        "300",
        "--posters",
        "4",
        "--rate",
        "200",
        "--seconds",
        "1",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let t = &v["throughput"][0];
    assert_eq!(t["posters"], 4);
    assert_eq!(t["stats"]["missing"], 0);
    assert_eq!(t["stats"]["duplicates"], 0);
    let l = &v["latency"][0];
    assert_eq!(l["missing"], 0);
    // Every core-second of the latency phase is someone's: the parts, the rest of the machine
    // and idle add up to wall time × cores (within /proc's 10 ms ticks and the read's skew).
    let cpu = &l["cpu"];
    let parts = cpu["parts"].as_array().unwrap();
    let names: Vec<&str> = parts.iter().map(|p| p["part"].as_str().unwrap()).collect();
    assert!(
        names.contains(&"idle") && names.contains(&"rest of the machine"),
        "{names:?}"
    );
    let sum: f64 = parts.iter().map(|p| p["seconds"].as_f64().unwrap()).sum();
    let capacity = cpu["wall_seconds"].as_f64().unwrap() * cpu["machine_cores"].as_f64().unwrap();
    assert!(
        (sum - capacity).abs() < 0.2 * capacity,
        "parts add up to {sum} core-seconds of {capacity}: {cpu}"
    );
    assert!(
        names.iter().any(|n| n.starts_with("service")) && names.contains(&"load generator + sink"),
        "{names:?}"
    );
}

#[test]
fn signing_bench_alternates_unsigned_and_signed_runs_that_really_sign() {
    let out = courier(&[
        "bench",
        "--service",
        "--signing-pairs",
        "2",
        "--batch",
        "10",
        "-n",
        "200",
        "--posters",
        "4",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let runs = v["runs"].as_array().unwrap();
    let order: Vec<bool> = runs
        .iter()
        .map(|r| r["signed"].as_bool().unwrap())
        .collect();
    // A B, then B A: drift falls on both sides alike.
    assert_eq!(order, [false, true, true, false]);
    for r in runs {
        assert_eq!(r["stats"]["missing"], 0, "{r}");
        assert_eq!(r["stats"]["duplicates"], 0, "{r}");
        // One request per message, each signed on the signed channel only.
        let expected = if r["signed"] == true { 200 } else { 0 };
        assert_eq!(r["signed_requests"], expected, "{r}");
        assert!(r["service_cpu_us_per_message"].as_f64().unwrap() >= 0.0);
    }
    assert_eq!(v["summary"]["pairs"], 2);
    assert!(v["summary"]["cpu_change_percent"]
        .as_f64()
        .unwrap()
        .is_finite());
}

#[test]
fn sink_prints_what_send_delivers_with_secrets_masked() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let sink = Command::new(env!("CARGO_BIN_EXE_courier"))
        .args([
            "sink", "--listen", &listen, "--count", "1", "--status", "202",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &format!("http://{listen}/hook"), "");
    // The sink may take a moment to bind: retry the send a few times (bounded).
    let mut out = courier(&["send", "--config", &cfg, "--type", "login_code_valid"]);
    for _ in 0..20 {
        if out.status.code() == Some(0) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        out = courier(&["send", "--config", &cfg, "--type", "login_code_valid"]);
    }
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    let printed = sink.wait_with_output().unwrap();
    let stdout = text(&printed.stdout);
    assert!(stdout.starts_with("#1 POST /hook"), "{stdout}");
    assert!(stdout.contains("x-api-key: ***"), "{stdout}");
    assert!(!stdout.contains("key-from-env"));
    assert!(
        stdout.contains("\"template_type\":\"login_code_valid\""),
        "{stdout}"
    );
}
