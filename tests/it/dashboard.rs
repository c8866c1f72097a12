//! The dashboard over plain HTTP (no browser): login and sessions, filters, escaping and masking
//! on the detail page, cross-origin posts, the playground endpoints and `/openapi.json`, against a
//! real service over SQLite and a real sink.

use std::time::Duration;

use jsonnet_courier::config::Secret;
use jsonnet_courier::store::Status;
use serde_json::json;

use crate::backend::{with_store, Backend};
use crate::serve::{config, ids_of, start};
use crate::support::{get, http_request, post_json, HttpReply, Reply, Server, Start as _};

const TOKEN: &str = "dash-t0ken-s3cret";

/// Waits (at most 30 s) until message `id` has `status`, reading it through the API with `auth`.
pub(crate) async fn wait_status(
    addr: std::net::SocketAddr,
    id: &str,
    status: Status,
    auth: &[(&str, &str)],
) -> jsonnet_courier::store::StoredMessage {
    crate::support::wait_for(
        &format!("message {id} to be {status:?}"),
        Duration::from_secs(30),
        || async {
            let r = get(addr, &format!("/messages/{id}"), auth).await;
            assert_eq!(r.status, 200, "{}", r.text());
            let m: jsonnet_courier::store::StoredMessage = serde_json::from_slice(&r.body).unwrap();
            (m.status == status).then_some(m)
        },
    )
    .await
}

fn cookie_of(r: &HttpReply) -> String {
    let set = r.header("set-cookie").expect("a session cookie");
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    assert!(
        !set.contains(TOKEN),
        "the cookie must not carry the token: {set}"
    );
    set.split(';').next().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_sessions_and_escaping() {
    with_store(Backend::SqliteFile, |store| async move {
        let sink = Server::start(|_, r| {
            if r.text().contains("evil@") {
                Reply::status(400).body("<script>alert(1)</script> rejected")
            } else {
                Reply::status(200).body("ok")
            }
        })
        .await;
        let svc = start(store, config(&sink.url("/"), 0, None, ""), |s| {
            s.tokens = vec![Secret::new(TOKEN)];
        })
        .await;
        let bearer = format!("Bearer {TOKEN}");
        let auth = [("authorization", bearer.as_str())];
        let evil = json!({"recipient": "evil@example.com", "template_type": "stub",
            "request_headers": {"Authorization": "Basic aGlkZGVuOnBhc3N3b3Jk", "Accept-Language": "de"}});
        let good = json!({"recipient": "good@example.com", "template_type": "login_code_valid",
            "template_data": {"login_code": "123456"}});
        let ids = ids_of(&post_json(svc.addr, "/messages", &auth, json!([evil, good]).to_string()).await);
        let (evil_id, good_id) = (ids[0].clone(), ids[1].clone());
        wait_status(svc.addr, &evil_id, Status::Abandoned, &auth).await;
        wait_status(svc.addr, &good_id, Status::Sent, &auth).await;

        // Without a session: pages send the browser to the login form, JSON answers 401.
        let r = get(svc.addr, "/ui/?status=sent", &[]).await;
        assert_eq!(r.status, 303);
        assert_eq!(r.header("location"), Some("/ui/login?next=%2Fui%2F%3Fstatus%3Dsent"));
        let r = get(svc.addr, "/", &[]).await;
        assert_eq!((r.status, r.header("location")), (303, Some("/ui/")));
        assert_eq!(get(svc.addr, "/openapi.json", &[]).await.status, 401);
        let r = post_json(svc.addr, "/ui/playground/render", &[], "{}".to_owned()).await;
        assert_eq!(r.status, 401);
        let r = get(svc.addr, "/ui/login", &[]).await;
        assert_eq!(r.status, 200);
        assert!(r.text().contains(r#"name="token""#));

        // A wrong token, then the right one.
        let form = [("content-type", "application/x-www-form-urlencoded")];
        let r = http_request(svc.addr, "POST", "/ui/login", &form, "token=nope&next=%2Fui%2F", false).await;
        assert_eq!(r.status, 401);
        assert!(r.header("set-cookie").is_none());
        let body = format!("token={TOKEN}&next=%2Fui%2F%3Fstatus%3Dsent");
        let r = http_request(svc.addr, "POST", "/ui/login", &form, body, false).await;
        assert_eq!(r.status, 303, "{}", r.text());
        assert_eq!(r.header("location"), Some("/ui/?status=sent"));
        let cookie = cookie_of(&r);
        let session = [("cookie", cookie.as_str())];

        // The list: filters, counts per status, links to the detail pages.
        let page = get(svc.addr, "/ui/", &session).await;
        assert_eq!(page.status, 200);
        let html = page.text();
        assert!(html.contains("good@example.com") && html.contains("evil@example.com"), "{html}");
        assert!(html.contains(r#"data-status="sent">1<"#), "{html}");
        assert!(html.contains(r#"data-status="abandoned">1<"#), "{html}");
        assert!(html.contains(&format!("/ui/messages/{good_id}")));
        for (query, shown, hidden) in [
            ("status=abandoned", "evil@", "good@"),
            ("template_type=login_code_valid", "good@", "evil@"),
            ("channel=email&status=sent", "good@", "evil@"),
            ("recipient=good%40example.com", "good@", "evil@"),
        ] {
            let html = get(svc.addr, &format!("/ui/?{query}"), &session).await.text();
            assert!(html.contains(shown) && !html.contains(hidden), "{query}: {html}");
        }
        let html = get(svc.addr, "/ui/?channel=sms", &session).await.text();
        assert!(html.contains("No messages match.") && !html.contains("good@"), "{html}");
        let r = get(svc.addr, "/ui/?status=lost", &session).await;
        assert_eq!(r.status, 400);
        assert!(r.text().contains("unknown status"));

        // The detail page: the response body escaped, credential headers masked.
        let r = get(svc.addr, &format!("/ui/messages/{evil_id}"), &session).await;
        assert_eq!(r.status, 200);
        let csp = r.header("content-security-policy").unwrap_or_default();
        assert!(csp.contains("script-src 'self'"), "{csp}");
        let html = r.text();
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt; rejected"), "{html}");
        assert!(!html.contains("<script>alert(1)"), "{html}");
        assert!(!html.contains("aGlkZGVuOnBhc3N3b3Jk"), "an Authorization header leaked: {html}");
        assert!(html.contains("&quot;Accept-Language&quot;: &quot;de&quot;"), "{html}");
        assert!(html.contains("&quot;Authorization&quot;: &quot;***&quot;"), "{html}");
        assert!(html.contains("HTTP 400 (permanent)"), "{html}");
        assert!(html.contains("permanent failure: abandoned"), "{html}");
        assert!(html.contains(r#"action="/ui/messages/"#) && html.contains("Retry this message"));
        assert!(!html.contains(TOKEN));
        // The payload preview renders the message with its channel's template.
        let html = get(svc.addr, &format!("/ui/messages/{good_id}"), &session).await.text();
        assert!(html.contains("&quot;recipient&quot;: &quot;good@example.com&quot;"), "{html}");
        assert!(!html.contains("Retry this message"), "a sent message has no retry button");

        // Posts from another origin are refused; from the page's own, the retry runs.
        let retry = format!("/ui/messages/{evil_id}/retry");
        let host = svc.addr.to_string();
        let foreign = [("cookie", cookie.as_str()), ("origin", "http://evil.test")];
        let r = http_request(svc.addr, "POST", &retry, &foreign, "", false).await;
        assert_eq!(r.status, 403);
        let before = sink.count();
        let own_origin = format!("http://{host}");
        let own = [("cookie", cookie.as_str()), ("origin", own_origin.as_str())];
        let r = http_request(svc.addr, "POST", &retry, &own, "", false).await;
        assert_eq!(r.status, 303, "{}", r.text());
        assert_eq!(r.header("location"), Some(format!("/ui/messages/{evil_id}?retried=1").as_str()));
        crate::support::wait_for("the retried attempt", Duration::from_secs(30), || async {
            (sink.count() > before).then_some(())
        })
        .await;
        let r = http_request(svc.addr, "POST", &format!("/ui/messages/{good_id}/retry"), &own, "", false).await;
        assert_eq!(r.status, 409);

        // The playground renders on the delivery pool; errors carry their line and column.
        let render = |template: &str| {
            let body = json!({"template": template, "template_type": "verification_code_valid", "style": "pascal"}).to_string();
            async move { post_json(svc.addr, "/ui/playground/render", &session, body).await.json() }
        };
        let ok = render("function(ctx) { code: ctx.TemplateData.VerificationCode }").await;
        assert_eq!(ok["ok"], true, "{ok}");
        let payload: serde_json::Value = serde_json::from_str(ok["payload"].as_str().unwrap()).unwrap();
        let sample = jsonnet_courier::message::samples::message(
            "verification_code_valid".parse().unwrap(),
            jsonnet_courier::message::MessageType::Email,
        )
        .unwrap();
        let sample = serde_json::to_value(&sample).unwrap();
        let code = &sample["template_data"]["verification_code"];
        assert!(code.is_string(), "{sample}");
        assert_eq!(&payload["code"], code);
        let bad = render("function(ctx) {\n  a: 1,\n  b: ,\n}").await;
        assert_eq!(bad["ok"], false);
        assert_eq!((bad["error"]["kind"].as_str(), bad["error"]["line"].as_u64()), (Some("syntax"), Some(3)), "{bad}");
        let check = post_json(svc.addr, "/ui/playground/check", &auth,
            json!({"template": "function(ctx) { t: ctx.TemplateType }"}).to_string()).await.json();
        assert_eq!(check["rows"].as_array().unwrap().len(), jsonnet_courier::message::samples::all().count());
        assert_eq!(check["failed"], 0, "{check}");

        // The OpenAPI document, with a bearer token.
        let r = get(svc.addr, "/openapi.json", &auth).await;
        assert_eq!(r.status, 200);
        assert!(r.json()["paths"]["/messages/{id}/retry"]["post"].is_object());

        // Logging out ends the session.
        let r = http_request(svc.addr, "POST", "/ui/logout", &own, "", false).await;
        assert_eq!(r.status, 303);
        assert_eq!(get(svc.addr, "/ui/", &session).await.status, 303);
        svc.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_tokens_there_is_no_login() {
    with_store(Backend::SqliteFile, |store| async move {
        let sink = Server::status(200).await;
        let svc = start(store, config(&sink.url("/"), 0, None, ""), |_| {}).await;
        let r = get(svc.addr, "/ui/", &[]).await;
        assert_eq!(r.status, 200);
        let html = r.text();
        assert!(
            html.contains("No messages match.") && !html.contains("Log out"),
            "{html}"
        );
        let r = get(svc.addr, "/ui/overview", &[]).await;
        assert_eq!(r.status, 200);
        assert!(r.text().contains(r#"<meta http-equiv="refresh""#));
        assert_eq!(get(svc.addr, "/openapi.json", &[]).await.status, 200);
        let r = get(svc.addr, "/ui/assets/dash.js", &[]).await;
        assert_eq!(
            r.header("content-type"),
            Some("text/javascript; charset=utf-8")
        );
        // The JSON API is untouched by the dashboard's routes.
        assert_eq!(get(svc.addr, "/messages", &[]).await.status, 200);
        assert_eq!(get(svc.addr, "/uix", &[]).await.status, 404);
        svc.stop().await;
    })
    .await;
}
