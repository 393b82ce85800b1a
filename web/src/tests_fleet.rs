//! Rendering tests of the fleet pages (hosts, a host and its log, audit,
//! notifications) against a stub of AppTracker's API serving canned JSON.

use std::collections::HashMap;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query};
use axum::http::{HeaderMap, Request, StatusCode, header};
use axum::routing::{delete, get, post};
use serde_json::{Value, json};
use tower::ServiceExt;

use super::*;
use crate::visitor::csrf_for;

mod notifications_page;

const HOSTILE: &str = "<script>alert(\"pwned\")</script>";

fn now_ms() -> i64 {
    deploy::Timestamp::now().0
}

/// `local-1` fresh with three apps in three states; `local-2` silent
/// for an hour; `slow-3` fresh but its grabber never answers.
fn hosts() -> Value {
    let now = now_ms();
    json!([
        {"cluster": "local", "name": "local-2", "root": "/srv/two",
         "registered_at": now - 7_200_000, "last_seen": now - 3_600_000,
         "apps": [{"app": "hello-python", "version": "2-0000000", "pid": 7, "port": 8000}]},
        {"cluster": "local", "name": "local-1", "root": format!("/srv/{HOSTILE}"),
         "registered_at": now - 7_200_000, "last_seen": now - 1_000,
         "apps": [
            {"app": "hello-python", "version": "3-abcdef1", "pid": 4242, "port": 8000,
             "config_version": 4},
            {"app": "crashy", "version": "1-0000000", "pid": null, "port": null,
             "status": "failing", "restarts": 6},
            {"app": "idle", "version": null, "pid": null, "port": null},
         ]},
        {"cluster": "local", "name": "slow-3", "root": "/srv/three",
         "registered_at": now - 7_200_000, "last_seen": now - 1_000,
         "apps": [{"app": "hello-python", "version": "3-abcdef1", "pid": 9, "port": 8000}]},
    ])
}

/// Only the agents of the drift report, which the fleet pages use.
async fn drift() -> Json<Value> {
    let now = now_ms();
    Json(json!({
        "generated_at": now, "summary": [], "hosts": [],
        "agents": [
            {"cluster": "local", "host": "local-1", "reported_at": now - 30_000,
             "interval_ms": 60_000, "stale": false,
             "disk": {"free_bytes": 12_884_901_888_u64, "total_bytes": 42_949_672_960_u64}},
            {"cluster": "local", "host": "local-2", "reported_at": null,
             "interval_ms": null, "stale": true, "disk": null},
        ],
    }))
}

fn api_error(status: StatusCode, code: &str, message: &str) -> (StatusCode, Json<Value>) {
    (status, Json(json!({"code": code, "message": message})))
}

fn bearer(headers: &HeaderMap) -> &str {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// `sls_viewer` is a viewer, `sls_deployer` a deployer, any other
/// session an admin; no credential is refused.
async fn whoami(headers: HeaderMap) -> (StatusCode, Json<Value>) {
    match bearer(&headers) {
        "" => api_error(StatusCode::UNAUTHORIZED, "unauthorized", "no API token"),
        "Bearer sls_viewer" => (
            StatusCode::OK,
            Json(json!({"name": "vera", "role": "viewer"})),
        ),
        "Bearer sls_deployer" => (
            StatusCode::OK,
            Json(json!({"name": "dan", "role": "deployer"})),
        ),
        _ => (
            StatusCode::OK,
            Json(json!({"name": "ada", "role": "admin"})),
        ),
    }
}

/// Like AppTracker: viewers may not read logs, a silent host is refused
/// (422), one whose grabber does not answer times out (408).
async fn read_log(
    headers: HeaderMap,
    Path(app): Path<String>,
    Json(req): Json<Value>,
) -> (StatusCode, Json<Value>) {
    if bearer(&headers) == "Bearer sls_viewer" {
        return api_error(
            StatusCode::FORBIDDEN,
            "forbidden",
            "reading logs needs a deployer token",
        );
    }
    match req["host"].as_str() {
        Some("local-2") => api_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "no_matching_hosts",
            "host `local-2` is silent (no heartbeat since 2026-01-01T00:00:00Z): nobody there to read the log",
        ),
        Some("slow-3") => api_error(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            "host `slow-3` did not send the log of `hello-python` within 5s",
        ),
        Some(host) => {
            let offset = req["offset"].as_u64().unwrap_or(100);
            let text = format!("{app} on {host} says hi\n{HOSTILE}\n");
            (
                StatusCode::OK,
                Json(json!({"app": app, "host": host, "offset": offset,
                    "next_offset": offset + text.len() as u64, "text": text, "truncated": false})),
            )
        }
        None => api_error(StatusCode::BAD_REQUEST, "invalid", "no host"),
    }
}

/// Two entries; the query comes back in the first one's target so tests
/// see what was asked; a cursor `bad` is refused like AppTracker would.
async fn audit(Query(q): Query<HashMap<String, String>>) -> axum::response::Response {
    use axum::response::IntoResponse;
    if q.get("cursor").map(String::as_str) == Some("bad") {
        return api_error(
            StatusCode::BAD_REQUEST,
            "invalid",
            "cursor `bad` is not one of ours",
        )
        .into_response();
    }
    let asked = format!(
        "asked actor={} app={} limit={} cursor={}",
        q.get("actor").map_or("-", String::as_str),
        q.get("app").map_or("-", String::as_str),
        q.get("limit").map_or("-", String::as_str),
        q.get("cursor").map_or("-", String::as_str),
    );
    let entries = json!([
        {"id": 42, "at": 1_700_000_000_000_i64, "actor": "ci-bot", "role": "deployer",
         "method": "POST", "route": "/api/v1/deploys", "path": "/api/v1/deploys",
         "app": "hello-python", "target": asked, "peer": "10.0.0.7:51234",
         "status": 200, "error_code": null},
        {"id": 41, "at": 1_699_999_000_000_i64, "actor": HOSTILE, "role": null,
         "method": "DELETE", "route": "/api/v1/notifications/{id}",
         "path": "/api/v1/notifications/3", "app": null, "target": HOSTILE,
         "peer": null, "status": 403, "error_code": "forbidden"},
    ]);
    let mut headers = HeaderMap::new();
    if !q.contains_key("cursor") {
        headers.insert("x-next-cursor", "c2/&=+".parse().expect("header value"));
    }
    (headers, Json(entries)).into_response()
}

fn notification() -> Value {
    json!({"id": 1, "app": "hello-python", "cluster": null, "url": "https://hooks.slack.com",
        "format": "slack", "events": ["deploy_failed", "deploy_rolled_back"],
        "created_by": HOSTILE, "created_at": 1_700_000_000_000_i64})
}

async fn create_notification(
    headers: HeaderMap,
    Json(req): Json<Value>,
) -> (StatusCode, Json<Value>) {
    if bearer(&headers) == "Bearer sls_viewer" {
        return api_error(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this needs an admin token",
        );
    }
    if !req["url"].as_str().unwrap_or("").starts_with("https://") {
        return api_error(
            StatusCode::BAD_REQUEST,
            "invalid",
            "the URL must be https://",
        );
    }
    let mut n = notification();
    n["id"] = json!(2);
    n["app"] = req["app"].clone();
    n["cluster"] = req["cluster"].clone();
    n["format"] = req["format"].clone();
    n["events"] = req["events"].clone();
    (
        StatusCode::OK,
        Json(json!({"notification": n, "secret": "slpwn_s3cret"})),
    )
}

async fn spawn_stub() -> String {
    let stub = Router::new()
        .route("/api/v1/whoami", get(whoami))
        .route("/api/v1/hosts", get(|| async { Json(hosts()) }))
        .route("/api/v1/apps/{app}/logs", post(read_log))
        .route("/api/v1/audit", get(audit))
        .route("/api/v1/drift", get(drift))
        .route(
            "/api/v1/notifications",
            get(|| async { Json(json!([notification()])) }).post(create_notification),
        )
        .route(
            "/api/v1/notifications/{id}",
            delete(|Path(id): Path<i64>| async move {
                if id == 1 {
                    (StatusCode::OK, Json(json!({})))
                } else {
                    api_error(StatusCode::NOT_FOUND, "not_found", "no notification")
                }
            }),
        )
        .route(
            "/api/v1/notifications/{id}/deliveries",
            get(|| async {
                Json(json!([
                    {"id": 9, "notification_id": 1, "deploy_id": 7, "event": "deploy_failed",
                     "status": "failed", "attempts": 5, "last_error": HOSTILE,
                     "created_at": 1_700_000_000_000_i64, "delivered_at": null},
                    {"id": 8, "notification_id": 1, "deploy_id": 6, "event": "deploy_rolled_back",
                     "status": "delivered", "attempts": 1, "last_error": null,
                     "created_at": 1_699_000_000_000_i64, "delivered_at": 1_699_000_001_000_i64},
                ]))
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind stub listener");
    let addr = listener.local_addr().expect("stub address");
    tokio::spawn(async move { axum::serve(listener, stub).await });
    format!("http://{addr}")
}

async fn dashboard() -> Router {
    router(Client::new(spawn_stub().await))
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

async fn send(app: Router, req: Request<Body>) -> Answer {
    let resp = app.oneshot(req).await.expect("router is infallible");
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .expect("read body");
    Answer {
        status,
        headers,
        body: String::from_utf8(bytes.to_vec()).expect("utf-8"),
    }
}

/// GET `path` with the session cookie `session`.
async fn get_as(app: Router, path: &str, session: &str) -> Answer {
    let req = Request::get(path)
        .header("cookie", format!("slipway_session={session}"))
        .body(Body::empty())
        .expect("request");
    send(app, req).await
}

/// POST the urlencoded `form` to `path` with the session cookie `session`.
async fn post_as(app: Router, path: &str, session: &str, form: &str) -> Answer {
    let req = Request::post(path)
        .header("cookie", format!("slipway_session={session}"))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(form.to_string()))
        .expect("request");
    send(app, req).await
}

/// The HTML of the element that starts at `start`, up to `end`.
fn part<'a>(body: &'a str, start: &str, end: &str) -> &'a str {
    let from = body
        .find(start)
        .unwrap_or_else(|| panic!("no {start:?} in {body}"));
    let rest = &body[from..];
    &rest[..rest.find(end).map_or(rest.len(), |i| i + end.len())]
}

#[tokio::test]
async fn hosts_page_lists_every_host_its_apps_and_their_state() {
    let a = get_as(dashboard().await, "/hosts", "sls_viewer").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let one = part(&a.body, r#"<tr id="host-local-local-1""#, "</tr>");
    assert!(
        one.contains(r#"<a href="/hosts/local/local-1">local-1</a>"#),
        "{one}"
    );
    assert!(!one.contains("host-unreachable"), "{one}");
    assert!(
        one.contains("3-abcdef1") && one.contains("config 4"),
        "{one}"
    );
    for (state, label) in [
        ("running", "running"),
        ("failing", "failing (6 restarts)"),
        ("not-running", "not running"),
    ] {
        assert!(
            one.contains(&format!(
                r#"<span class="badge run-{state}" data-state="{state}">{label}</span>"#
            )),
            "{state}: {one}"
        );
    }
    assert!(
        one.contains(r#"href="/hosts/local/local-1?app=crashy""#),
        "{one}"
    );
    assert!(one.contains("<time data-ms="), "{one}");
    assert!(
        one.contains("reported <time") && one.contains("12.0 GiB free of 40.0 GiB"),
        "{one}"
    );
    let two = part(&a.body, r#"<tr id="host-local-local-2""#, "</tr>");
    assert!(two.contains("fleet-host host-unreachable"), "{two}");
    assert!(two.contains(r#"<span class="badge phase-unreachable">unreachable</span>"#));
    assert!(
        two.contains("never reported") && two.contains(">stale</span>"),
        "{two}"
    );
    assert!(a.body.contains("3 hosts"), "{}", a.body);
    assert!(a.body.contains("1 unreachable"), "{}", a.body);
    // Sorted by cluster and name.
    let (i1, i2) = (
        a.body.find("host-local-local-1"),
        a.body.find("host-local-local-2"),
    );
    assert!(i1 < i2, "{}", a.body);
    assert!(
        !a.body.contains(r#"class="action"#),
        "no buttons here: {}",
        a.body
    );
}

#[tokio::test]
async fn host_page_shows_the_first_apps_log_escaped_and_follows_it() {
    let a = get_as(dashboard().await, "/hosts/local/local-1", "sls_deployer").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert!(
        a.body
            .contains(r#"data-cluster="local" data-host="local-1""#),
        "{}",
        a.body
    );
    // The root is what the host reported: escaped.
    assert!(!a.body.contains(HOSTILE), "{}", a.body);
    assert!(a.body.contains("/srv/&lt;script&gt;"), "{}", a.body);
    let pre = part(
        &a.body,
        r#"<pre class="log app-log" id="app-log""#,
        "</pre>",
    );
    assert!(pre.contains(r#"data-app="hello-python""#), "{pre}");
    assert!(
        pre.contains(
            r#"data-follow="&#x2F;hosts&#x2F;local&#x2F;local-1&#x2F;log&#x2F;hello-python""#
        ) || pre.contains(r#"data-follow="/hosts/local/local-1/log/hello-python""#),
        "{pre}"
    );
    assert!(pre.contains(r#"data-offset=""#), "{pre}");
    assert!(pre.contains("hello-python on local-1 says hi"), "{pre}");
    assert!(pre.contains("&lt;script&gt;alert("), "{pre}");
    assert!(a.body.contains(r#"<span id="log-state""#), "{}", a.body);
    assert!(
        a.body
            .contains(r#"<script src="/static/hostlog.js" defer></script>"#),
        "{}",
        a.body
    );
    assert!(!a.body.contains("log-error"), "{}", a.body);

    let a = get_as(
        dashboard().await,
        "/hosts/local/local-1?app=crashy",
        "sls_admin",
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert!(
        a.body.contains(r#"id="app-log" data-app="crashy""#),
        "{}",
        a.body
    );
    assert!(a.body.contains("crashy on local-1 says hi"), "{}", a.body);
}

#[tokio::test]
async fn a_viewer_sees_the_apps_but_a_note_instead_of_the_log() {
    let a = get_as(dashboard().await, "/hosts/local/local-1", "sls_viewer").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert!(a.body.contains(r#"<table id="host-apps">"#), "{}", a.body);
    assert!(a.body.contains(r#"id="log-viewer-note""#), "{}", a.body);
    assert!(!a.body.contains("app-log"), "{}", a.body);
    assert!(!a.body.contains("hostlog.js"), "{}", a.body);
    assert!(!a.body.contains(r#"class="action"#), "{}", a.body);
}

#[tokio::test]
async fn a_host_that_does_not_answer_is_said_in_the_page() {
    for (host, words) in [
        ("local-2", "host `local-2` is silent"),
        ("slow-3", "did not send the log of `hello-python` within 5s"),
    ] {
        let path = format!("/hosts/local/{host}");
        let a = get_as(dashboard().await, &path, "sls_admin").await;
        assert_eq!(a.status, StatusCode::OK, "{host}: {}", a.body);
        let error = part(&a.body, r#"<p class="error" id="log-error">"#, "</p>");
        assert!(error.contains(words), "{host}: {error}");
        // Still followable: the script asks for the tail when it is back.
        assert!(a.body.contains(r#"id="app-log""#), "{}", a.body);
        assert!(!a.body.contains("data-offset"), "{}", a.body);
    }
    let a = get_as(dashboard().await, "/hosts/local/local-2", "sls_admin").await;
    assert!(a.body.contains(r#"id="host-silent""#), "{}", a.body);
}

#[tokio::test]
async fn bad_hosts_and_apps_are_404_pages() {
    let app = dashboard().await;
    for path in [
        "/hosts/local/nope",
        "/hosts/elsewhere/local-1",
        "/hosts/BAD!/local-1",
        "/hosts/local/%3Cb%3E",
        "/hosts/local/%FF%FE",
        "/hosts/local/local-1?app=nope",
        "/hosts/local/local-1?app=%3Cscript%3E",
        "/hosts/local/local-1/log",
    ] {
        let a = get_as(app.clone(), path, "sls_admin").await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{path}: {}", a.body);
        assert!(
            !a.body.contains("<b>") && !a.body.contains("<script>"),
            "{path}: {}",
            a.body
        );
    }
}

#[tokio::test]
async fn the_follow_route_gives_the_next_piece_as_json() {
    let app = dashboard().await;
    let a = get_as(
        app.clone(),
        "/hosts/local/local-1/log/hello-python?offset=5",
        "sls_deployer",
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.headers[header::CACHE_CONTROL], "no-store");
    assert!(
        a.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap_or("")
            .starts_with("application/json")
    );
    let v: Value = serde_json::from_str(&a.body).expect("json");
    assert_eq!(v["offset"], 5);
    let text = v["text"].as_str().expect("text");
    assert!(text.starts_with("hello-python on local-1 says hi"), "{v}");
    assert_eq!(v["next_offset"], 5 + text.len() as u64);

    for (path, session, status, words) in [
        (
            "/hosts/local/local-1/log/hello-python?offset=x1",
            "sls_admin",
            400,
            "offset \"x1\"",
        ),
        (
            "/hosts/local/local-1/log/hello-python?offset=-1",
            "sls_admin",
            400,
            "offset",
        ),
        ("/hosts/local/local-1/log/BAD!", "sls_admin", 404, "no app"),
        (
            "/hosts/local/local-1/log/hello-python",
            "sls_viewer",
            403,
            "deployer",
        ),
        (
            "/hosts/local/local-2/log/hello-python",
            "sls_admin",
            422,
            "is silent",
        ),
        (
            "/hosts/local/slow-3/log/hello-python",
            "sls_admin",
            408,
            "within 5s",
        ),
    ] {
        let a = get_as(app.clone(), path, session).await;
        assert_eq!(a.status.as_u16(), status, "{path}: {}", a.body);
        let v: Value = serde_json::from_str(&a.body).expect("json error");
        assert!(
            v["error"].as_str().unwrap_or("").contains(words),
            "{path}: {v}"
        );
    }
    let req = Request::get("/hosts/local/local-1/log/hello-python")
        .body(Body::empty())
        .expect("request");
    let a = send(app, req).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.body);
}

#[tokio::test]
async fn the_follower_script_is_served_and_appends_text_only() {
    let a = get_as(dashboard().await, "/static/hostlog.js", "sls_admin").await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(
        a.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap_or("")
            .starts_with("text/javascript")
    );
    assert!(a.body.contains("createTextNode") && a.body.contains("'log-state'"));
    assert!(a.body.contains("'?offset='") && a.body.contains("1500"));
    assert!(!a.body.contains("innerHTML") && !a.body.contains("insertAdjacentHTML"));
}

#[tokio::test]
async fn audit_page_lists_entries_escaped_with_an_older_link() {
    let a = get_as(dashboard().await, "/audit", "sls_viewer").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert!(
        a.body
            .contains(r#"<form id="audit-filter" class="filter" method="get""#)
    );
    let first = part(&a.body, r#"<tr id="audit-42""#, "</tr>");
    assert!(
        first.contains("ci-bot") && first.contains("POST /api/v1/deploys"),
        "{first}"
    );
    assert!(
        first.contains("asked actor=- app=- limit=100 cursor=-"),
        "{first}"
    );
    assert!(
        first.contains(r#"<span class="badge audit-status-ok">200</span>"#),
        "{first}"
    );
    assert!(
        first.contains(r#"<a href="/audit?app=hello-python">"#),
        "{first}"
    );
    let second = part(&a.body, r#"<tr id="audit-41""#, "</tr>");
    assert!(
        second.contains("audit-status-refused") && second.contains("forbidden"),
        "{second}"
    );
    assert!(
        second.contains("/api/v1/notifications/{id}"),
        "the route: {second}"
    );
    assert!(!a.body.contains(HOSTILE), "{}", a.body);
    assert!(second.contains("&lt;script&gt;"), "{second}");
    let older = part(&a.body, r#"<a id="audit-older""#, "</a>");
    assert!(older.contains("cursor=c2%2F%26%3D%2B"), "{older}");
    assert!(
        older.contains("limit=100") && !older.contains("actor="),
        "{older}"
    );
    assert!(!a.body.contains("audit-newest"), "{}", a.body);
}

#[tokio::test]
async fn audit_filters_reach_the_api_and_page_on() {
    let path = "/audit?actor=ci-bot&app=hello-python&limit=20&cursor=c2";
    let a = get_as(dashboard().await, path, "sls_admin").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert!(
        a.body
            .contains("asked actor=ci-bot app=hello-python limit=20 cursor=c2"),
        "{}",
        a.body
    );
    assert!(
        a.body.contains(r#"name="actor" value="ci-bot""#),
        "{}",
        a.body
    );
    assert!(a.body.contains(r#"name="limit" value="20""#), "{}", a.body);
    assert!(a.body.contains(r#"id="audit-newest""#), "{}", a.body);
    assert!(!a.body.contains("audit-older"), "the last page: {}", a.body);
}

#[tokio::test]
async fn bad_audit_filters_are_400_pages_saying_what_was_wrong() {
    let app = dashboard().await;
    let long = "x".repeat(101);
    for (path, words) in [
        (
            "/audit?app=Not%20An%20App".to_string(),
            "app \"Not An App\"",
        ),
        ("/audit?limit=0".to_string(), "per page \"0\""),
        ("/audit?limit=lots".to_string(), "per page \"lots\""),
        ("/audit?limit=5000".to_string(), "from 1 to 1000"),
        (format!("/audit?actor={long}"), "who: at most 100"),
        (
            "/audit?cursor=bad".to_string(),
            "cursor `bad` is not one of ours",
        ),
    ] {
        let a = get_as(app.clone(), &path, "sls_admin").await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{path}: {}", a.body);
        let words = words.replace('"', "&quot;");
        assert!(a.body.contains(&words), "{path}: {}", a.body);
    }
}

#[tokio::test]
async fn fleet_pages_need_a_session_and_keep_to_the_csp() {
    let app = dashboard().await;
    for path in ["/hosts", "/hosts/local/local-1", "/audit", "/notifications"] {
        let req = Request::get(path).body(Body::empty()).expect("request");
        let a = send(app.clone(), req).await;
        assert_eq!(a.status, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(a.headers[header::LOCATION], "/login", "{path}");
    }
    let fleet = hosts::TEMPLATES
        .iter()
        .chain(audit::TEMPLATES)
        .chain(notifications::TEMPLATES);
    for (name, text) in fleet {
        assert!(text.starts_with(r#"{% extends "base.html" %}"#), "{name}");
        assert!(
            !text.contains("<script>") && !text.contains("<style"),
            "{name}"
        );
        assert!(!text.contains("style=\""), "{name}");
        for handler in ["onclick=", "onload=", "onsubmit=", "onerror="] {
            assert!(!text.contains(handler), "{name}: {handler}");
        }
    }
}

#[test]
fn a_host_is_unreachable_as_apptracker_says_else_after_the_default() {
    let now = deploy::Timestamp(10_000_000);
    let host = |last_seen: i64, alive: Option<bool>| deploy::Host {
        cluster: deploy::Cluster::parse("local").expect("valid"),
        name: deploy::HostName::parse("h1").expect("valid"),
        root: "/srv".into(),
        registered_at: deploy::Timestamp(0),
        last_seen: deploy::Timestamp(last_seen),
        apps: Vec::new(),
        alive,
        peer_ticket_key: None,
        desired_fingerprint: None,
    };
    let card = |h: deploy::Host| crate::hosts::HostCard::new(&h, now, &[]).unreachable;
    // AppTracker's word wins, either way.
    assert!(card(host(now.0 - 1_000, Some(false))));
    assert!(!card(host(now.0 - 3_600_000, Some(true))));
    // Without it, two minutes of silence.
    assert!(!card(host(now.0 - 1_000, None)));
    assert!(card(host(now.0 - 3_600_000, None)));
}
