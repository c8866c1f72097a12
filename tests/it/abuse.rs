//! `courier serve`'s API under abuse, against a real service on 127.0.0.1 and raw TCP clients:
//! slow request heads and bodies are cut, the connection cap refuses with a 503, the per-token
//! rate limit answers 429 with `Retry-After`, and thousands of malformed requests of many kinds
//! each get the right answer and leave the service healthy and the store unchanged.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jsonnet_courier::config::{Config, Secret};
use jsonnet_courier::store::{MessageStore, Status};
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::backend::{with_store, Backend};
use crate::serve::{config, ids_of, start, stored_count, stub};
use crate::support::{get, post_json, wait_for, Server, Start as _};

const TOKEN: &str = "abuse-token-0123456789";

// ---------------------------------------------------------------------------------------------
// A raw HTTP/1.1 client: bytes out, bytes in, and whether the server closed.

/// What a raw client saw.
#[derive(Debug)]
struct Seen {
    /// Everything the server sent.
    bytes: Vec<u8>,
    /// Whether the server closed the connection (end of stream or reset) within the limit.
    closed: bool,
    /// From connecting to the close (or to the limit).
    elapsed: Duration,
}

/// One answer parsed from the bytes.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl Seen {
    /// The complete answers, in order; trailing bytes that are not one are a failure.
    fn answers(&self) -> Vec<Answer> {
        let mut out = Vec::new();
        let mut rest = &self.bytes[..];
        while !rest.is_empty() {
            let end = rest
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .unwrap_or_else(|| panic!("a partial answer: {:?}", String::from_utf8_lossy(rest)));
            let head = std::str::from_utf8(&rest[..end]).expect("an ASCII head");
            let mut lines = head.split("\r\n");
            let status_line = lines.next().unwrap();
            let status = status_line
                .strip_prefix("HTTP/1.1 ")
                .and_then(|s| s.get(..3))
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("not a status line: {status_line:?}"));
            let headers: Vec<(String, String)> = lines
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                .collect();
            let len: usize = headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                .map_or(0, |(_, v)| v.parse().unwrap());
            let body_start = end + 4;
            assert!(
                rest.len() >= body_start + len,
                "a truncated answer body: {:?}",
                String::from_utf8_lossy(rest)
            );
            out.push(Answer {
                status,
                headers,
                body: rest[body_start..body_start + len].to_vec(),
            });
            rest = &rest[body_start + len..];
        }
        out
    }
}

/// Connects, sends `parts` (waiting `pause` after each), half-closes when `half_close`, and reads
/// until the server closes or `limit` passes. A write the server refuses ends the sending.
async fn raw(
    addr: SocketAddr,
    parts: &[Vec<u8>],
    pause: Duration,
    half_close: bool,
    limit: Duration,
) -> Seen {
    let start = Instant::now();
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut reader, mut writer) = stream.into_split();
    let parts = parts.to_vec();
    let sending = tokio::spawn(async move {
        for part in parts {
            if writer.write_all(&part).await.is_err() {
                return writer;
            }
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
        }
        if half_close {
            let _ = writer.shutdown().await;
        }
        writer
    });
    let mut bytes = Vec::new();
    let mut buf = [0u8; 8192];
    let closed = tokio::time::timeout(limit, async {
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => bytes.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .is_ok();
    let elapsed = start.elapsed();
    sending.abort();
    Seen {
        bytes,
        closed,
        elapsed,
    }
}

/// A request with `Host` and `Connection: close`, plus `headers` and, when `body` is `Some`,
/// a `Content-Length` and the body.
fn request(method: &str, path: &str, headers: &[(&str, &[u8])], body: Option<&[u8]>) -> Vec<u8> {
    let mut out = format!("{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n")
        .into_bytes();
    for (k, v) in headers {
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v);
        out.extend_from_slice(b"\r\n");
    }
    if let Some(body) = body {
        out.extend_from_slice(format!("content-length: {}\r\n\r\n", body.len()).as_bytes());
        out.extend_from_slice(body);
    } else {
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Asserts the API's JSON error answer: `status`, `application/json`, `{"error": {"code", ...}}`.
fn assert_json_error(a: &Answer, status: u16, what: &str) -> Value {
    assert_eq!(
        a.status,
        status,
        "{what}: {}",
        String::from_utf8_lossy(&a.body)
    );
    assert_eq!(a.header("content-type"), Some("application/json"), "{what}");
    let v: Value = serde_json::from_slice(&a.body).unwrap_or_else(|e| {
        panic!(
            "{what}: not JSON ({e}): {}",
            String::from_utf8_lossy(&a.body)
        )
    });
    assert_eq!(v["error"]["code"], status, "{what}: {v}");
    assert!(
        v["error"]["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "{what}: {v}"
    );
    v
}

/// The value of the metric line `name` (labels included) in `GET /metrics`.
async fn metric(addr: SocketAddr, auth: &[(&str, &str)], name: &str) -> Option<f64> {
    let r = get(addr, "/metrics", auth).await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.text()
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

// ---------------------------------------------------------------------------------------------
// One test per protection.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_request_heads_are_cut() {
    with_store(Backend::SqliteMemory, |store| async move {
        let svc = start(store, config("http://127.0.0.1:9/", 0, None, ""), |s| {
            s.header_read_timeout = Duration::from_millis(500);
        })
        .await;
        let limit = Duration::from_secs(10);
        // A head trickled one byte every 50 ms, for ever.
        let trickle: Vec<Vec<u8>> = std::iter::once(b"POST /messages HTTP/1.1\r\n".to_vec())
            .chain(b"x-slow: ".iter().cycle().take(2000).map(|b| vec![*b]))
            .collect();
        // Nothing at all; half of the HTTP/2 preface (read before HTTP/1's own timer starts).
        let cases: [(&str, Vec<Vec<u8>>); 3] = [
            ("trickled head", trickle),
            ("silent client", vec![]),
            (
                "half an HTTP/2 preface",
                vec![b"PRI * HTTP/2.0\r\n".to_vec()],
            ),
        ];
        for (what, parts) in cases {
            let seen = raw(svc.addr, &parts, Duration::from_millis(50), false, limit).await;
            assert!(seen.closed, "{what}: still open after {limit:?}");
            assert!(
                seen.elapsed >= Duration::from_millis(450) && seen.elapsed < Duration::from_secs(5),
                "{what}: closed after {:?}",
                seen.elapsed
            );
            assert!(
                seen.bytes.is_empty(),
                "{what}: answered {:?}",
                String::from_utf8_lossy(&seen.bytes)
            );
        }
        // An idle keep-alive connection is closed too, after its answer.
        let keep_alive = b"GET /health/alive HTTP/1.1\r\nhost: x\r\n\r\n".to_vec();
        let seen = raw(svc.addr, &[keep_alive], Duration::ZERO, false, limit).await;
        assert!(
            seen.closed && seen.elapsed >= Duration::from_millis(450),
            "{seen:?}"
        );
        assert_eq!(seen.answers()[0].status, 200);
        // So is an HTTP/2 connection with no request in flight (hyper has no timer for it).
        let stream = TcpStream::connect(svc.addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(stream),
        )
        .await
        .expect("an HTTP/2 handshake");
        let conn = tokio::spawn(conn);
        let req = hyper::Request::get(format!("http://{}/health/alive", svc.addr))
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let r = sender.send_request(req).await.expect("an HTTP/2 answer");
        assert_eq!(
            (r.version(), r.status().as_u16()),
            (hyper::Version::HTTP_2, 200)
        );
        let answered = Instant::now();
        tokio::time::timeout(limit, conn)
            .await
            .expect("the HTTP/2 connection is still open")
            .unwrap()
            .ok();
        let idle = answered.elapsed();
        assert!(
            idle >= Duration::from_millis(450) && idle < Duration::from_secs(5),
            "HTTP/2 closed after {idle:?} idle"
        );
        drop(sender);
        // A client that sends its head in time is served.
        let r = get(svc.addr, "/health/alive", &[]).await;
        assert_eq!(r.status, 200);
        let cut = metric(
            svc.addr,
            &[],
            "courier_api_timeouts_total{phase=\"header\"}",
        )
        .await;
        assert_eq!(cut, Some(5.0));
        svc.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_or_stalled_bodies_get_408_and_nothing_is_stored() {
    with_store(Backend::SqliteFile, |store| async move {
        let svc = start(Arc::clone(&store), config("http://127.0.0.1:9/", 0, None, ""), |s| {
            s.body_read_timeout = Duration::from_millis(500);
        })
        .await;
        let body = stub("slow@example.com").to_string().into_bytes();
        let head = format!(
            "POST /messages HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        // The head and 10 bytes, then nothing; the head, then a byte every 100 ms (the whole body
        // would take seconds: the deadline is for the whole body, not between bytes).
        let stalled = vec![head.clone(), body[..10].to_vec()];
        let trickled: Vec<Vec<u8>> = std::iter::once(head.clone())
            .chain(body.iter().map(|b| vec![*b]))
            .collect();
        for (what, parts, pause) in [
            ("stalled body", stalled, Duration::ZERO),
            ("trickled body", trickled, Duration::from_millis(100)),
        ] {
            let seen = raw(svc.addr, &parts, pause, false, Duration::from_secs(10)).await;
            assert!(seen.closed, "{what}: still open");
            assert!(
                seen.elapsed >= Duration::from_millis(450) && seen.elapsed < Duration::from_secs(5),
                "{what}: answered after {:?}",
                seen.elapsed
            );
            let answers = seen.answers();
            assert_eq!(answers.len(), 1, "{what}: {answers:?}");
            let v = assert_json_error(&answers[0], 408, what);
            assert!(
                v["error"]["reason"].as_str().unwrap().contains("did not arrive within 500ms"),
                "{v}"
            );
            assert_eq!(answers[0].header("connection"), Some("close"), "{what}");
        }
        assert_eq!(stored_count(&*store).await, 0);
        // The same body sent at once is accepted.
        let r = post_json(svc.addr, "/messages", &[], body).await;
        assert_eq!(ids_of(&r).len(), 1);
        let cut = metric(svc.addr, &[], "courier_api_timeouts_total{phase=\"body\"}").await;
        assert_eq!(cut, Some(2.0));
        svc.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_cap_get_503_and_open_ones_carry_on() {
    with_store(Backend::SqliteMemory, |store| async move {
        let svc = start(store, config("http://127.0.0.1:9/", 0, None, ""), |s| {
            s.max_connections = 3;
        })
        .await;
        // Three idle connections fill the cap (accepted in order, before the next one).
        let mut open = Vec::new();
        for _ in 0..3 {
            open.push(TcpStream::connect(svc.addr).await.unwrap());
        }
        // A fourth that waits for an answer, and a fifth that sends its request first.
        let waiting = raw(
            svc.addr,
            &[],
            Duration::ZERO,
            false,
            Duration::from_secs(10),
        )
        .await;
        let eager = request("GET", "/health/alive", &[], None);
        let eager = raw(
            svc.addr,
            &[eager],
            Duration::ZERO,
            false,
            Duration::from_secs(10),
        )
        .await;
        for (what, seen) in [("waiting", &waiting), ("eager", &eager)] {
            assert!(
                seen.closed && seen.elapsed < Duration::from_secs(3),
                "{what}: {seen:?}"
            );
            let answers = seen.answers();
            assert_eq!(answers.len(), 1, "{what}");
            let v = assert_json_error(&answers[0], 503, what);
            assert!(
                v["error"]["reason"]
                    .as_str()
                    .unwrap()
                    .contains("max_connections is 3"),
                "{v}"
            );
            assert_eq!(answers[0].header("retry-after"), Some("1"));
            assert_eq!(answers[0].header("connection"), Some("close"));
        }
        // The open connections are served as usual.
        let mut first = open.remove(0);
        first
            .write_all(b"GET /health/alive HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), first.read_to_end(&mut answer))
            .await
            .expect("an answer")
            .unwrap();
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        // Once slots free up, new connections are served again; the gauge counts open ones.
        drop(open);
        // Polls made before the server has seen those closes are refused too: count them.
        let polls_refused = AtomicUsize::new(0);
        let refused = wait_for("a slot", Duration::from_secs(10), || async {
            let r = crate::support::try_http_request(svc.addr, "GET", "/metrics", &[], "", false)
                .await
                .ok()?;
            if r.status == 503 {
                polls_refused.fetch_add(1, Ordering::Relaxed);
            }
            let text = (r.status == 200).then(|| r.text())?;
            let value = |name: &str| {
                text.lines()
                    .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<f64>().ok())
            };
            // Only this request's connection is open once the others are gone.
            (value("courier_api_connections") == Some(1.0))
                .then(|| value("courier_api_connections_refused_total"))
        })
        .await;
        let polls_refused = polls_refused.load(Ordering::Relaxed) as f64;
        assert_eq!(refused, Some(2.0 + polls_refused));
        svc.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_answers_429_per_token_until_the_bucket_refills() {
    with_store(Backend::SqliteFile, |store| async move {
        let svc = start(
            Arc::clone(&store),
            config("http://127.0.0.1:9/", 0, None, ""),
            |s| {
                s.tokens = vec![Secret::new(TOKEN), Secret::new("other-token-9876543210")];
                s.rate_limit = Some(jsonnet_courier::config::settings::RateLimitSettings {
                    rate: 1.0,
                    burst: Some(3),
                });
            },
        )
        .await;
        let bearer = format!("Bearer {TOKEN}");
        let a: &[(&str, &str)] = &[("authorization", &bearer)];
        let b: &[(&str, &str)] = &[("authorization", "Bearer other-token-9876543210")];
        // The burst (and what refills meanwhile on a slow machine), then 429.
        let limited = |what: &'static str| {
            move |r: &crate::support::HttpReply| {
                assert_eq!(r.status, 429, "{what}: {}", r.text());
                // At 1 per second the next request is at most a second away.
                assert_eq!(r.header("retry-after"), Some("1"), "{what}");
                assert_eq!(r.header("content-type"), Some("application/json"));
                let v = r.json();
                assert_eq!(v["error"]["code"], 429);
                let reason = v["error"]["reason"].as_str().unwrap().to_owned();
                assert!(
                    reason.contains("1/s per API token, bursts of 3"),
                    "{reason}"
                );
                reason
            }
        };
        let mut allowed = 0;
        let r = loop {
            let r = get(svc.addr, "/messages", a).await;
            if r.status != 200 {
                break r;
            }
            allowed += 1;
            assert!(allowed < 10, "the bucket never empties");
        };
        assert!(allowed >= 3, "only {allowed} allowed");
        limited("the first refusal")(&r);
        // A limited POST stores nothing.
        let r = post_json(
            svc.addr,
            "/messages",
            a,
            stub("limited@example.com").to_string(),
        )
        .await;
        let reason = limited("a POST")(&r);
        assert!(!reason.contains(TOKEN), "{reason}");
        assert_eq!(stored_count(&*store).await, 0);
        // Another token has its own bucket; health probes are not counted.
        assert_eq!(get(svc.addr, "/messages", b).await.status, 200);
        for _ in 0..5 {
            assert_eq!(get(svc.addr, "/health/alive", &[]).await.status, 200);
        }
        // After Retry-After, the bucket has refilled.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let r = post_json(
            svc.addr,
            "/messages",
            a,
            stub("later@example.com").to_string(),
        )
        .await;
        assert_eq!(ids_of(&r).len(), 1);
        assert_eq!(stored_count(&*store).await, 1);
        // And it empties again (how soon depends on how fast this machine sends).
        let mut allowed = 0;
        while get(svc.addr, "/messages", a).await.status == 200 {
            allowed += 1;
            assert!(allowed < 10, "the bucket never empties");
        }
        let limited = metric(svc.addr, b, "courier_api_rate_limited_total").await;
        assert_eq!(limited, Some(3.0));
        svc.stop().await;
    })
    .await;
}

#[test]
fn limit_settings_errors_name_the_key() {
    let parse = |serve: &str| {
        let yaml = format!(
            "courier:\n  http:\n    request_config:\n      url: http://127.0.0.1:9/\njsonnet_courier:\n  serve:\n{serve}"
        );
        Config::parse(&yaml, false, None, &|_| None)
            .map(|_| ())
            .unwrap_err()
            .to_string()
    };
    let e = parse(
        "    header_read_timeout: 0s\n    body_read_timeout: 0\n    max_connections: 0\n    rate_limit: { rate: 0, burst: 0 }\n",
    );
    for key in [
        "jsonnet_courier.serve.header_read_timeout: must be more than 0",
        "jsonnet_courier.serve.body_read_timeout: must be more than 0",
        "jsonnet_courier.serve.max_connections: must be at least 1",
        "jsonnet_courier.serve.rate_limit.rate: 0 is not a rate",
        "jsonnet_courier.serve.rate_limit.burst: must be at least 1",
    ] {
        assert!(e.contains(key), "{key} missing from:\n{e}");
    }
    let e = parse("    body_read_timeout: soon\n");
    assert!(e.contains("jsonnet_courier.serve.body_read_timeout"), "{e}");
    let e = parse("    rate_limit: { burst: 5 }\n");
    assert!(e.contains("jsonnet_courier.serve.rate_limit"), "{e}");
    assert!(e.contains("rate"), "{e}");
}

// ---------------------------------------------------------------------------------------------
// Malformed requests in bulk.

/// The right answer to a malformed request.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// An answer with this status and a JSON body (an API error body for a 4xx), then the close.
    Json(u16),
    /// HTTP does not parse: the connection is closed, after at most a bare 4xx from the parser.
    Closed,
}

/// One kind of malformed request.
struct Kind {
    name: &'static str,
    parts: Vec<Vec<u8>>,
    half_close: bool,
    expect: Expect,
}

fn kinds(max_body: usize) -> Vec<Kind> {
    let bearer = format!("Bearer {TOKEN}");
    let auth: (&str, &[u8]) = ("authorization", bearer.as_bytes());
    let json: (&str, &[u8]) = ("content-type", b"application/json");
    let post = |body: &[u8]| request("POST", "/messages", &[auth, json], Some(body));
    let kind = |name, parts: Vec<Vec<u8>>, expect| Kind {
        name,
        parts,
        half_close: false,
        expect,
    };
    let valid = stub("valid@example.com").to_string();
    let mut chunked = format!(
        "POST /messages HTTP/1.1\r\nhost: x\r\nconnection: close\r\n{}: {}\r\ntransfer-encoding: chunked\r\n\r\n",
        auth.0, bearer
    )
    .into_bytes();
    let big = vec![b' '; max_body + 1024];
    chunked.extend_from_slice(format!("{:x}\r\n", big.len()).as_bytes());
    chunked.extend_from_slice(&big);
    chunked.extend_from_slice(b"\r\n0\r\n\r\n");
    let mut truncated = format!(
        "POST /messages HTTP/1.1\r\nhost: x\r\n{}: {}\r\ncontent-length: 200\r\n\r\n",
        auth.0, bearer
    )
    .into_bytes();
    truncated.extend_from_slice(&valid.as_bytes()[..20]);
    let bad_chunks = format!(
        "POST /messages HTTP/1.1\r\nhost: x\r\nconnection: close\r\n{}: {}\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n{{}}\r\n0\r\n\r\n",
        auth.0, bearer
    )
    .into_bytes();
    let many_headers: Vec<(&str, &[u8])> = (0..150).map(|_| ("x-junk", &b"1"[..])).collect();
    let huge_header = vec![b'a'; 600 * 1024];
    let mut garbage = vec![
        0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
    ];
    garbage.extend((0..500u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8));
    let mut pipelined = b"GET /health/alive HTTP/1.1\r\nhost: x\r\n\r\n".to_vec();
    pipelined.extend_from_slice(b"\x00\x01junk \xff\r\n\r\n");
    let long_key = "k".repeat(300);
    vec![
        kind("malformed JSON", vec![post(br#"{"recipient": "a@b.c","#)], Expect::Json(400)),
        kind("wrong types", vec![post(br#"{"recipient": ["a"], "template_type": 7}"#)], Expect::Json(400)),
        kind(
            "unknown template type",
            vec![post(br#"{"recipient": "a@b.c", "template_type": "no_such_type"}"#)],
            Expect::Json(400),
        ),
        kind("not messages", vec![post(br#"[1, "two", null]"#)], Expect::Json(400)),
        kind("empty array", vec![post(b"[]")], Expect::Json(400)),
        kind(
            "invalid UTF-8 body",
            vec![post(b"{\"recipient\": \"\xff\xfe@b.c\", \"template_type\": \"stub\"}")],
            Expect::Json(400),
        ),
        kind(
            "missing token",
            vec![request("POST", "/messages", &[json], Some(valid.as_bytes()))],
            Expect::Json(401),
        ),
        kind(
            "wrong token",
            vec![request("GET", "/messages", &[("authorization", b"Bearer nope")], None)],
            Expect::Json(401),
        ),
        kind(
            "invalid UTF-8 token",
            vec![request("GET", "/messages", &[("authorization", b"Bearer \xff\xfe\xfd")], None)],
            Expect::Json(401),
        ),
        kind(
            "oversized body (declared)",
            // The head only: the answer comes before the body would be read.
            vec![format!(
                "POST /messages HTTP/1.1\r\nhost: x\r\nconnection: close\r\n{}: {}\r\ncontent-length: {}\r\n\r\n",
                auth.0, bearer, 10 * max_body
            )
            .into_bytes()],
            Expect::Json(413),
        ),
        kind("oversized body (chunked)", vec![chunked], Expect::Json(413)),
        kind("bad method", vec![request("DELETE", "/messages", &[auth], None)], Expect::Json(405)),
        kind("unknown method", vec![request("BREW", "/messages/abc", &[auth], None)], Expect::Json(405)),
        kind("bad path", vec![request("GET", "/../../etc/passwd", &[auth], None)], Expect::Json(404)),
        kind(
            "bad query",
            vec![request("GET", "/messages?limit=-1&status=bogus", &[auth], None)],
            Expect::Json(400),
        ),
        kind(
            "bad Idempotency-Key",
            vec![request(
                "POST",
                "/messages",
                &[auth, json, ("idempotency-key", long_key.as_bytes())],
                Some(valid.as_bytes()),
            )],
            Expect::Json(400),
        ),
        kind(
            "bad Content-Length",
            vec![format!(
                "POST /messages HTTP/1.1\r\nhost: x\r\n{}: {}\r\ncontent-length: 12abc\r\n\r\n{valid}",
                auth.0, bearer
            )
            .into_bytes()],
            Expect::Closed,
        ),
        Kind {
            name: "truncated body",
            parts: vec![truncated],
            half_close: true,
            expect: Expect::Json(400),
        },
        kind("bad chunk framing", vec![bad_chunks], Expect::Json(400)),
        kind(
            "too many headers",
            vec![request("GET", "/health/alive", &many_headers, None)],
            Expect::Closed,
        ),
        kind(
            "huge header",
            vec![request("GET", "/health/alive", &[("x-huge", &huge_header)], None)],
            Expect::Closed,
        ),
        kind("HTTP garbage", vec![garbage], Expect::Closed),
        kind(
            "bad HTTP version",
            vec![b"GET /health/alive HTTP/7.3\r\nhost: x\r\n\r\n".to_vec()],
            Expect::Closed,
        ),
        kind("pipelined junk", vec![pipelined], Expect::Json(200)),
    ]
}

/// Whether `seen` is the right answer to `kind`; the reason when not.
fn check(kind: &Kind, seen: &Seen) -> Result<(), String> {
    if !seen.closed {
        return Err(format!("not closed after {:?}", seen.elapsed));
    }
    let answers = std::panic::catch_unwind(|| seen.answers()).map_err(|_| {
        format!(
            "unparsable answer: {:?}",
            String::from_utf8_lossy(&seen.bytes)
        )
    })?;
    // Anything after the expected answer is the parser's bare 4xx to the junk that follows.
    let (first, rest) = match kind.expect {
        Expect::Json(_) => match answers.split_first() {
            Some((first, rest)) => (Some(first), rest),
            None => return Err("no answer".into()),
        },
        Expect::Closed => (None, &answers[..]),
    };
    if rest.len() > 1
        || rest
            .iter()
            .any(|a| !(400..500).contains(&a.status) || !a.body.is_empty())
    {
        return Err(format!("unexpected answers: {answers:?}"));
    }
    if let (Some(a), Expect::Json(status)) = (first, kind.expect) {
        std::panic::catch_unwind(|| {
            if status >= 400 {
                assert_json_error(a, status, kind.name);
            } else {
                assert_eq!(a.status, status);
                serde_json::from_slice::<Value>(&a.body).expect("JSON");
            }
        })
        .map_err(|_| {
            format!(
                "wrong answer: {} {}",
                a.status,
                String::from_utf8_lossy(&a.body)
            )
        })?;
    }
    Ok(())
}

const MALFORMED: usize = 10_000;
const CLIENTS: usize = 24;

async fn malformed_requests_leave_the_service_healthy(store: Arc<dyn MessageStore>) {
    let sink = Server::status(200).await;
    let max_body = 4096;
    let svc = start(
        Arc::clone(&store),
        config(&sink.url("/"), 0, None, ""),
        |s| {
            s.tokens = vec![Secret::new(TOKEN)];
            s.max_body_bytes = max_body;
            s.body_read_timeout = Duration::from_secs(5);
        },
    )
    .await;
    let bearer = format!("Bearer {TOKEN}");
    let auth: &[(&str, &str)] = &[("authorization", &bearer)];
    // Some messages stored and delivered before, so "unchanged" is not "empty".
    let before_ids = ids_of(
        &post_json(
            svc.addr,
            "/messages",
            auth,
            serde_json::json!([stub("one@example.com"), stub("two@example.com")]).to_string(),
        )
        .await,
    );
    for id in &before_ids {
        wait_sent(svc.addr, auth, id).await;
    }
    let before = stored_count(&*store).await;
    assert_eq!(before, 2);
    let delivered = sink.count();

    let kinds = Arc::new(kinds(max_body));
    assert!(kinds.len() >= 20, "{} kinds", kinds.len());
    let next = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let per_kind = Arc::new(
        (0..kinds.len())
            .map(|_| AtomicUsize::new(0))
            .collect::<Vec<_>>(),
    );
    let started = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (kinds, next, failures, per_kind) = (
                Arc::clone(&kinds),
                Arc::clone(&next),
                Arc::clone(&failures),
                Arc::clone(&per_kind),
            );
            let addr = svc.addr;
            tokio::spawn(async move {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= MALFORMED {
                        return;
                    }
                    let kind = &kinds[n % kinds.len()];
                    let seen = raw(
                        addr,
                        &kind.parts,
                        Duration::ZERO,
                        kind.half_close,
                        Duration::from_secs(15),
                    )
                    .await;
                    per_kind[n % kinds.len()].fetch_add(1, Ordering::Relaxed);
                    if let Err(why) = check(kind, &seen) {
                        let mut f = failures.lock().unwrap();
                        if f.len() < 20 {
                            f.push(format!("#{n} {}: {why}", kind.name));
                        }
                    }
                }
            })
        })
        .collect();
    for c in clients {
        c.await.unwrap();
    }
    let took = started.elapsed();
    let failures = failures.lock().unwrap().clone();
    assert!(
        failures.is_empty(),
        "wrong answers:\n{}",
        failures.join("\n")
    );
    let total: usize = per_kind.iter().map(|n| n.load(Ordering::Relaxed)).sum();
    assert_eq!(total, MALFORMED);
    eprintln!(
        "{MALFORMED} malformed requests of {} kinds in {took:?}",
        kinds.len()
    );

    // Healthy: probes answer, nothing was stored or sent, a good message goes through.
    assert_eq!(get(svc.addr, "/health/alive", &[]).await.status, 200);
    assert_eq!(get(svc.addr, "/health/ready", &[]).await.status, 200);
    assert_eq!(stored_count(&*store).await, before);
    assert_eq!(sink.count(), delivered);
    let id = ids_of(
        &post_json(
            svc.addr,
            "/messages",
            auth,
            stub("after@example.com").to_string(),
        )
        .await,
    )
    .remove(0);
    wait_sent(svc.addr, auth, &id).await;
    assert_eq!(stored_count(&*store).await, before + 1);
    assert_eq!(sink.count(), delivered + 1);
    let last = sink.request(delivered);
    assert!(String::from_utf8_lossy(&last.body).contains("after@example.com"));
    // No connection outlives its exchange.
    wait_for("connections to close", Duration::from_secs(10), || async {
        (metric(svc.addr, auth, "courier_api_connections").await == Some(1.0)).then_some(())
    })
    .await;
    svc.stop().await;
}

/// Waits (at most 10 s) until message `id` is sent.
async fn wait_sent(addr: SocketAddr, auth: &[(&str, &str)], id: &str) {
    wait_for(
        &format!("message {id} sent"),
        Duration::from_secs(10),
        || async {
            let r = get(addr, &format!("/messages/{id}"), auth).await;
            (r.json()["status"] == Status::Sent.as_str()).then_some(())
        },
    )
    .await;
}

mod sqlite {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn malformed_requests_leave_the_service_healthy() {
        super::with_store(
            super::Backend::SqliteFile,
            super::malformed_requests_leave_the_service_healthy,
        )
        .await;
    }
}

mod postgres {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs COURIER_TEST_POSTGRES_URL"]
    async fn malformed_requests_leave_the_service_healthy() {
        super::with_store(
            super::Backend::Postgres,
            super::malformed_requests_leave_the_service_healthy,
        )
        .await;
    }
}
