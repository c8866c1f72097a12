//! The SSRF guard on real connections: tests can only reach 127.0.0.1, so loopback stands for
//! every refused range (the full table is unit-tested in `http::guard`).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::Request;

use jsonnet_courier::http::guard::{Guard, Refused, Rule};
use jsonnet_courier::http::tls::TlsOptions;
use jsonnet_courier::http::{client_with, error_chain};

use crate::support::{Server, Start as _};

async fn post(guard: Guard, url: &str) -> Result<u16, (Option<Refused>, String)> {
    let client = client_with(
        Duration::from_secs(2),
        Arc::new(guard),
        &TlsOptions::default(),
    )
    .unwrap();
    let req = Request::post(url)
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap();
    match client.request(req).await {
        Ok(resp) => Ok(resp.status().as_u16()),
        Err(e) => Err((Refused::find(&e).cloned(), error_chain(&e))),
    }
}

fn on() -> Guard {
    Guard {
        enabled: true,
        ..Guard::default()
    }
}

#[tokio::test]
async fn loopback_is_refused_before_dialling_and_the_error_says_why() {
    let server = Server::status(200).await;
    let (refused, text) = post(on(), &server.url("/x")).await.unwrap_err();
    let refused = refused.expect("not a guard refusal");
    assert_eq!(refused.rule, Rule::Loopback);
    assert_eq!(refused.addr.to_string(), "127.0.0.1");
    assert!(
        text.contains("127.0.0.1") && text.contains("loopback"),
        "{text}"
    );
    // An IP literal is judged before connecting: the server saw nothing.
    assert_eq!(
        server.connections.load(std::sync::atomic::Ordering::SeqCst),
        0
    );
    // The IPv4-mapped IPv6 form is the same address.
    let mapped = format!("http://[::ffff:127.0.0.1]:{}/x", server.addr.port());
    let (refused, _) = post(on(), &mapped).await.unwrap_err();
    assert_eq!(refused.unwrap().rule, Rule::Loopback);
}

#[tokio::test]
async fn names_are_judged_by_what_they_resolve_to() {
    let server = Server::status(200).await;
    let url = format!("http://localhost:{}/x", server.addr.port());
    let (refused, text) = post(on(), &url).await.unwrap_err();
    let refused = refused.unwrap_or_else(|| panic!("not a guard refusal: {text}"));
    assert_eq!(refused.host, "localhost");
    assert!(refused.addr.is_loopback());
    assert_eq!(server.count(), 0);
}

#[tokio::test]
async fn allowances_by_cidr_and_host_let_loopback_through() {
    let server = Server::status(204).await;
    let by_cidr = Guard {
        allow_cidrs: vec!["127.0.0.0/8".parse().unwrap()],
        ..on()
    };
    assert_eq!(post(by_cidr, &server.url("/x")).await.unwrap(), 204);
    let by_host = Guard {
        allow_hosts: vec!["localhost".into()],
        ..on()
    };
    let url = format!("http://localhost:{}/x", server.addr.port());
    assert_eq!(post(by_host.clone(), &url).await.unwrap(), 204);
    // The host allowance is for that name, not for the address behind it.
    assert!(post(by_host, &server.url("/x")).await.is_err());
    // Off, everything goes.
    assert_eq!(post(Guard::off(), &server.url("/x")).await.unwrap(), 204);
}
