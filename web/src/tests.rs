//! Rendering tests against a stub of AppTracker's API serving canned
//! JSON; the end-to-end test against the real server lives in `tests/`.

use super::*;
use crate::assets::{CONTENT_SECURITY_POLICY, DEPLOY_SCRIPT};
use crate::views::progress;
use axum::extract::Path;
use axum::http::{StatusCode, header};
use deploy::{DeployHost, HostPhase};

use axum::Json;
use axum::body::Body;
use axum::http::Request;
use serde_json::{Value, json};
use tower::ServiceExt;

const MALICIOUS_LOG: &str = "step 3 failed\n</pre><script>alert(\"pwned\")</script>";
const MALICIOUS_SELECTOR: &str = "<img src=x onerror=alert(1)>";

fn host(name: &str, phase: &str) -> Value {
    json!({
        "host": name, "phase": phase, "failed_phase": null, "rolled_back": false,
        "message": null, "log_tail": null, "updated_at": 1_700_000_100_000_i64,
    })
}

/// Deploy 7: running, one host done, one failed with a hostile log
/// tail, one still checking.
pub(crate) fn running_deploy() -> Value {
    let mut failed = host("local-2", "failed");
    failed["failed_phase"] = json!("checking");
    failed["rolled_back"] = json!(true);
    failed["message"] = json!("health check failed: <b>connection refused</b>");
    failed["log_tail"] = json!(MALICIOUS_LOG);
    let mut done = host("local-1", "done");
    done["transfer"] = json!({
        "bytes_downloaded": 12_300, "bytes_from_peers": 4_000, "bytes_reused": 21_900_000,
    });
    json!({
        "id": 7, "app": "hello-python", "version": "3-abcdef1", "git_ref": "main",
        "build_id": 3, "cluster": "local", "hosts_selector": MALICIOUS_SELECTOR,
        "status": "running", "error": null,
        "created_at": 1_700_000_000_000_i64, "finished_at": null,
        "hosts": [done, failed, host("local-3", "checking")],
    })
}

/// Deploy 8: still waiting for its build, so it has a git ref but no
/// version yet, and no hosts.
pub(crate) fn building_deploy() -> Value {
    json!({
        "id": 8, "app": "hello-node", "version": null, "git_ref": "feature/x",
        "build_id": null, "cluster": "local", "hosts_selector": ".*",
        "status": "building", "error": null,
        "created_at": 1_700_000_200_000_i64, "finished_at": null, "hosts": [],
        "action": "restart", "config_version": 3,
        "release_phase": {
            "host": "local-1", "status": "running", "message": null,
            "log": "migrating <script>alert(1)</script>", "started_at": 1_700_000_200_000_i64,
            "finished_at": null,
        },
    })
}

pub(crate) fn hosts() -> Value {
    json!([{
        "cluster": "local", "name": "local-1", "root": "/srv/slipway",
        "registered_at": 1_699_000_000_000_i64, "last_seen": 1_700_000_300_000_i64,
        "apps": [
            {"app": "hello-python", "version": "3-abcdef1", "pid": 4242, "port": 8000},
            {"app": "crashy", "version": "1-0000000", "pid": null, "port": null,
             "status": "failing", "restarts": 6},
        ],
    }])
}

fn pins() -> Value {
    json!([{
        "app": "hello-python", "cluster": "prod", "version": "2-1234567",
        "pinned_by": "alice", "reason": "rolled back from 3-abcdef1 (deploy 7) <script>",
        "pinned_at": 1_700_000_100_000_i64,
    }])
}

/// `prod` protected and frozen far into the future; `old` was frozen
/// once, long ago, and is shown nowhere.
fn clusters() -> Value {
    json!([
        {"name": "old", "protected": false, "frozen_until": 1_000_i64,
         "freeze_reason": "long over", "frozen_by": "bob",
         "updated_by": "bob", "updated_at": 1_000_i64},
        {"name": "prod", "protected": true, "frozen_until": 9_999_999_999_999_i64,
         "freeze_reason": "Black Friday", "frozen_by": "carol",
         "updated_by": "carol", "updated_at": 1_700_000_000_000_i64},
    ])
}

#[tokio::test]
async fn index_shows_pins_freezes_and_protection() {
    let (status, body) = fetch(dashboard().await, "/").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let pin = body.split(r#"<tr class="pin">"#).nth(1).expect("a pin row");
    assert!(
        pin.contains("pinned to <span class=\"mono\">2-1234567</span>"),
        "{pin}"
    );
    assert!(
        pin.contains("alice") && pin.contains("&lt;script&gt;"),
        "{pin}"
    );
    let freeze = body
        .split(r#"<tr class="freeze">"#)
        .nth(1)
        .expect("a freeze row");
    assert!(
        freeze.contains("prod") && freeze.contains("Black Friday") && freeze.contains("carol"),
        "{freeze}"
    );
    assert!(
        body.contains(r#"<tr class="protection"><td>every app</td><td>prod</td>"#),
        "{body}"
    );
    assert!(
        !body.contains("long over"),
        "an ended freeze is not shown: {body}"
    );
}

/// Two hosts of hello-python: one in sync, one drifted with a reason
/// that carries markup, and over its disk limit.
fn drift_report() -> Value {
    let row = |host: &str, state: &str, current: &str, reason: &str| {
        json!({
            "cluster": "local", "host": host, "app": "hello-python", "state": state,
            "reason": reason, "desired": "3-abcdef1", "desired_deploy": 7,
            "current": current, "process": {"pid": 4242, "version": current,
            "uptime_ms": 90_000, "rss_bytes": 10_485_760, "cpu_ms": 10},
            "restarts": 0, "disk": {"releases_bytes": 1_048_576, "shared_bytes": 0,
            "logs_bytes": 0}, "reported_at": 1_700_000_300_000_i64, "over_limits": [],
        })
    };
    let mut drifted = row(
        "local-2",
        "drifted",
        "2-0000000",
        "`current` names <b>2-0000000</b>",
    );
    drifted["over_limits"] =
        json!([{"resource": "disk", "used_bytes": 3_145_728, "limit_bytes": 1_048_576}]);
    json!({
        "generated_at": 1_700_000_300_000_i64,
        "summary": [{"app": "hello-python", "cluster": "local", "desired": ["3-abcdef1"],
            "counts": {"in_sync": 1, "drifted": 1, "not_running": 0, "missing": 0,
            "stale": 0, "unknown_app": 0, "deploying": 0, "over_limit": 1}}],
        "hosts": [row("local-1", "in-sync", "3-abcdef1", "runs 3-abcdef1 (deploy 7), pid 4242"), drifted],
        "agents": [],
    })
}

#[tokio::test]
async fn drift_page_shows_the_summary_and_each_hosts_reason() {
    let (status, body) = fetch(dashboard().await, "/drift").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains(r#"<table id="drift-summary">"#), "{body}");
    assert!(
        body.contains(r#"<span class="badge drift-drifted" data-state="drifted">drifted</span>"#),
        "{body}"
    );
    assert!(
        body.contains("`current` names &lt;b&gt;2-0000000&lt;&#x2F;b&gt;")
            || body.contains("`current` names &lt;b&gt;2-0000000&lt;/b&gt;"),
        "escaped: {body}"
    );
    assert!(
        body.contains("disk 3.0 MiB over its 1.0 MiB limit"),
        "{body}"
    );
    assert!(body.contains("pid 4242, up 1m 30s, 10.0 MiB"), "{body}");
    // One drifted host: a deployer gets a sync button for the app there.
    let sync = body
        .split(r#"<form class="action sync" data-app="hello-python" data-cluster="local""#)
        .nth(1)
        .expect("a sync form");
    assert!(sync.contains("Sync 1 host(s)"), "{sync}");
    assert!(
        sync.contains(&format!(
            r#"name="csrf" value="{}""#,
            crate::visitor::csrf_for("sls_admin")
        )),
        "{sync}"
    );
    assert!(
        body.contains(r#"<tr data-host="local-2" data-app="hello-python" data-cluster="local">"#),
        "{body}"
    );
    let (_, body) = fetch_as(dashboard().await, "/drift", "sls_viewer").await;
    assert!(!body.contains("class=\"action"), "{body}");
}

pub(crate) fn not_found(what: &str) -> (StatusCode, Json<Value>) {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"code": "not_found", "message": format!("no {what}")})),
    )
}

/// Serves canned answers on a port-0 listener and returns its base URL.
pub(crate) async fn spawn_stub(deploys: Value, hosts: Value) -> String {
    let list = deploys.clone();
    let stub = Router::new()
        .route("/api/v1/deploys", get(move || async move { Json(list) }))
        .route(
            "/api/v1/deploys/{id}",
            get(move |Path(id): Path<i64>| async move {
                if id == 500 {
                    let body = json!({"code": "internal", "message": "database is locked"});
                    return (StatusCode::INTERNAL_SERVER_ERROR, Json(body));
                }
                let found = deploys
                    .as_array()
                    .and_then(|ds| ds.iter().find(|d| d["id"] == json!(id)).cloned());
                match found {
                    Some(d) => (StatusCode::OK, Json(d)),
                    None => not_found("such deploy"),
                }
            }),
        )
        .route("/api/v1/hosts", get(move || async move { Json(hosts) }))
        .route("/api/v1/pins", get(|| async { Json(pins()) }))
        .route("/api/v1/clusters", get(|| async { Json(clusters()) }))
        .route("/api/v1/drift", get(|| async { Json(drift_report()) }))
        .route("/api/v1/whoami", get(whoami))
        .route(
            "/api/v1/deploys/{id}/retry",
            axum::routing::post(|headers: axum::http::HeaderMap| async move {
                // The stub refuses viewers as AppTracker does.
                if headers.get("authorization").and_then(|v| v.to_str().ok()) == Some("Bearer sls_viewer") {
                    let body = json!({"code": "forbidden", "message": "vera is a viewer: deploying needs deployer"});
                    return (StatusCode::FORBIDDEN, Json(body));
                }
                let mut d = running_deploy();
                d["id"] = json!(9);
                d["retry_of"] = json!(7);
                (StatusCode::CREATED, Json(d))
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind stub listener");
    let addr = listener.local_addr().expect("stub address");
    tokio::spawn(async move { axum::serve(listener, stub).await });
    format!("http://{addr}")
}

/// The stub's visitors: `sls_viewer` is a viewer, any other session an
/// admin, and no credential is refused.
pub(crate) async fn whoami(headers: axum::http::HeaderMap) -> (StatusCode, Json<Value>) {
    match headers.get("authorization").and_then(|v| v.to_str().ok()) {
        Some("Bearer sls_viewer") => (
            StatusCode::OK,
            Json(json!({"name": "vera", "role": "viewer"})),
        ),
        Some(_) => (
            StatusCode::OK,
            Json(json!({"name": "ada", "role": "admin"})),
        ),
        None => (
            StatusCode::UNAUTHORIZED,
            Json(json!({"code": "unauthorized", "message": "no API token"})),
        ),
    }
}

pub(crate) async fn dashboard() -> Router {
    let url = spawn_stub(json!([building_deploy(), running_deploy()]), hosts()).await;
    router(Client::new(url))
}

/// A URL nothing listens on: bind a port, then free it.
async fn dead_api() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    drop(listener);
    format!("http://{addr}")
}

/// GET `path` as a signed-in admin.
pub(crate) async fn fetch(app: Router, path: &str) -> (StatusCode, String) {
    fetch_as(app, path, "sls_admin").await
}

/// GET `path` with the session cookie `session`.
pub(crate) async fn fetch_as(app: Router, path: &str, session: &str) -> (StatusCode, String) {
    let req = Request::get(path)
        .header("cookie", format!("slipway_session={session}"))
        .body(Body::empty())
        .expect("request");
    let resp = app.oneshot(req).await.expect("router is infallible");
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .expect("read body");
    (
        status,
        String::from_utf8(bytes.to_vec()).expect("utf-8 page"),
    )
}

#[test]
fn templates_compile() {
    templates().expect("the embedded templates must compile");
}

#[test]
fn transfers_read_in_decimal_units() {
    let t = |bytes_downloaded, bytes_from_peers, bytes_reused| {
        crate::views::transfer(Some(&deploy::Transfer {
            bytes_downloaded,
            bytes_from_peers,
            bytes_reused,
        }))
    };
    assert_eq!(crate::views::transfer(None), "");
    assert_eq!(t(5_700_000, 0, 0), "5.7 MB");
    assert_eq!(t(12_300, 0, 21_900_000), "12.3 kB, 21.9 MB reused");
    assert_eq!(t(999_999, 2_000, 0), "1.0 MB (2.0 kB from peers)");
}

#[test]
fn progress_counts_successes_and_failures() {
    let h = |phase| DeployHost {
        host: deploy::HostName::parse("h").expect("valid"),
        phase,
        failed_phase: None,
        rolled_back: false,
        message: None,
        log_tail: None,
        updated_at: deploy::Timestamp(0),
        batch: 0,
        transfer: None,
    };
    assert_eq!(progress(&[]), "no hosts");
    let all = [
        h(HostPhase::Done),
        h(HostPhase::Skipped),
        h(HostPhase::Done),
    ];
    assert_eq!(progress(&all), "3/3 done");
    let mixed = [
        h(HostPhase::Done),
        h(HostPhase::TimedOut),
        h(HostPhase::Checking),
        h(HostPhase::Unreachable),
    ];
    assert_eq!(progress(&mixed), "1/4 done, 1 failed, 1 unreachable");
}

#[tokio::test]
async fn index_lists_deploys_with_links_and_hosts() {
    let (status, body) = fetch(dashboard().await, "/").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains(r#"<a href="/deploys/7">#7</a>"#), "{body}");
    assert!(body.contains(r#"<a href="/deploys/8">#8</a>"#), "{body}");
    assert!(body.contains("hello-python") && body.contains("3-abcdef1"));
    assert!(
        body.contains(r#"<span class="badge status-failed">failing (6 restarts)</span>"#),
        "{body}"
    );
    // While building, the git ref stands in for the version.
    assert!(body.contains(">feature/x</span>"), "{body}");
    assert!(body.contains(r#"class="badge status-running""#), "{body}");
    assert!(body.contains("1/3 done, 1 failed"), "{body}");
    assert!(
        body.contains("2023-11-14T22:13:20Z"),
        "created time: {body}"
    );
    // The selector is user input: escaped, never markup.
    assert!(!body.contains(MALICIOUS_SELECTOR), "{body}");
    assert!(
        body.contains("&lt;img src=x onerror=alert(1)&gt;"),
        "{body}"
    );
    // The hosts table: cluster, name, app with version and port.
    assert!(body.contains(r#"<table id="hosts">"#), "{body}");
    assert!(body.contains("local-1") && body.contains(":8000"), "{body}");
    assert!(!body.contains("No deploys yet"));
}

#[tokio::test]
async fn index_empty_states_say_what_to_do() {
    let url = spawn_stub(json!([]), json!([])).await;
    let (status, body) = fetch(router(Client::new(url)), "/").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body.contains("deploy release hello-python main --cluster local --wait"),
        "{body}"
    );
    assert!(body.contains("No hosts have checked in"), "{body}");
    assert!(!body.contains(r#"<table id="deploys">"#), "{body}");
}

#[tokio::test]
async fn deploy_page_has_a_row_per_host_with_its_phase() {
    let (status, body) = fetch(dashboard().await, "/deploys/7").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body.matches(r#"<tr id="host-"#).count(), 3, "{body}");
    for (host, phase) in [
        ("local-1", "done"),
        ("local-2", "failed"),
        ("local-3", "checking"),
    ] {
        let row_start = body
            .find(&format!(r#"<tr id="host-{host}""#))
            .unwrap_or_else(|| panic!("no row for {host}: {body}"));
        let row = &body[row_start..];
        let row = &row[..row.find("</tr>").expect("row ends")];
        assert!(
            row.contains(&format!(
                r#"<span class="phase phase-{phase}" data-phase="{phase}">{phase}</span>"#
            )),
            "{host} should be {phase}: {row}"
        );
    }
    assert!(body.contains(r#"class="badge status-running" data-status="running""#));
    assert!(
        body.contains(r#"<td class="failed-phase">checking</td>"#),
        "{body}"
    );
    assert!(
        body.contains(r#"<td class="rolled-back">yes</td>"#),
        "{body}"
    );
    // How a host got the release, when its grabber said; empty otherwise.
    assert!(
        body.contains(
            r#"<td class="transfer muted">12.3 kB (4.0 kB from peers), 21.9 MB reused</td>"#
        ),
        "{body}"
    );
    assert_eq!(
        body.matches(r#"<td class="transfer muted"></td>"#).count(),
        2,
        "{body}"
    );
    // Live updates come from the page's script file, which finds the
    // deploy by the heading's id (no inline script: the CSP forbids it).
    assert!(body.contains(r#"data-deploy-id="7""#), "{body}");
    assert!(
        body.contains(r#"<script src="/static/deploy.js" defer></script>"#),
        "{body}"
    );
    assert!(!body.contains("<script>"), "no inline script: {body}");
    assert!(DEPLOY_SCRIPT.contains("new EventSource('/api/v1/deploys/' + ID + '/stream')"));
    assert!(DEPLOY_SCRIPT.contains("getAttribute('data-deploy-id')"));
}

#[tokio::test]
async fn pages_forbid_framing_and_inline_script_and_serve_their_files() {
    let app = dashboard().await;
    for path in ["/", "/deploys/7", "/drift", "/login", "/deploys/999"] {
        let req = Request::get(path).body(Body::empty()).expect("request");
        let resp = app.clone().oneshot(req).await.expect("infallible");
        let h = resp.headers();
        assert_eq!(
            h.get(header::CONTENT_SECURITY_POLICY)
                .and_then(|v| v.to_str().ok()),
            Some(CONTENT_SECURITY_POLICY),
            "{path}"
        );
        assert_eq!(
            h.get(header::X_FRAME_OPTIONS).map(|v| v.as_bytes()),
            Some(&b"DENY"[..])
        );
        assert_eq!(
            h.get(header::X_CONTENT_TYPE_OPTIONS).map(|v| v.as_bytes()),
            Some(&b"nosniff"[..])
        );
    }
    assert!(CONTENT_SECURITY_POLICY.contains("frame-ancestors 'none'"));
    assert!(!CONTENT_SECURITY_POLICY.contains("unsafe-inline"));
    for (path, kind, needle) in [
        ("/static/deploy.js", "text/javascript", "EventSource"),
        ("/static/slipway.css", "text/css", ".phase-done"),
    ] {
        let req = Request::get(path).body(Body::empty()).expect("request");
        let resp = app.clone().oneshot(req).await.expect("infallible");
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        let ct = resp.headers()[header::CONTENT_TYPE]
            .to_str()
            .expect("ascii");
        assert!(ct.starts_with(kind), "{path}: {ct}");
        let (_, body) = fetch(app.clone(), path).await;
        assert!(body.contains(needle), "{path}");
    }
    // No template keeps an inline script or style the CSP would block.
    for (name, text) in TEMPLATES {
        assert!(
            !text.contains("<script>") && !text.contains("<style"),
            "{name}"
        );
        assert!(!text.contains("style=\""), "{name}");
    }
}

#[tokio::test]
async fn cookies_are_secure_behind_https() {
    let set_cookie = |app: Router| async move {
        let req = Request::get("/login").body(Body::empty()).expect("request");
        let resp = app.oneshot(req).await.expect("infallible");
        resp.headers()[header::SET_COOKIE]
            .to_str()
            .expect("ascii")
            .to_string()
    };
    let c = set_cookie(router(Client::new("https://slipway.example.com"))).await;
    assert!(c.starts_with("slipway_login_csrf="), "{c}");
    assert!(
        c.ends_with("; HttpOnly; SameSite=Strict; Max-Age=600; Secure"),
        "{c}"
    );
    let c = set_cookie(router(Client::new("http://127.0.0.1:8080"))).await;
    assert!(!c.contains("Secure"), "{c}");
}

#[tokio::test]
async fn deploy_page_shows_the_failed_hosts_log_tail_escaped() {
    let (status, body) = fetch(dashboard().await, "/deploys/7").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body.matches(r#"<pre class="log">"#).count(), 1, "{body}");
    assert!(
        body.contains(r#"<pre class="log">step 3 failed"#),
        "log tail shown: {body}"
    );
    assert!(
        !body.contains("<script>alert"),
        "raw script in page: {body}"
    );
    assert!(!body.contains("</pre><script>"), "{body}");
    assert!(body.contains("&lt;/pre&gt;&lt;script&gt;alert("), "{body}");
    assert!(!body.contains("<b>connection refused</b>"), "{body}");
    assert!(
        body.contains("&lt;b&gt;connection refused&lt;/b&gt;"),
        "{body}"
    );
}

#[tokio::test]
async fn deploy_page_while_building_shows_the_git_ref() {
    let (status, body) = fetch(dashboard().await, "/deploys/8").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains(">feature/x</span>"), "{body}");
    assert!(body.contains("No host has reported yet."), "{body}");
    assert!(body.contains(r#"data-status="building""#), "{body}");
}

#[tokio::test]
async fn deploy_page_shows_the_release_phase_and_its_log_escaped() {
    let (status, body) = fetch(dashboard().await, "/deploys/8").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body.contains(r#"<span class="release-running">running</span> on local-1"#),
        "{body}"
    );
    assert!(
        body.contains(r#"<pre class="log">migrating &lt;script&gt;alert(1)&lt;/script&gt;</pre>"#),
        "{body}"
    );
    let (_, body) = fetch(dashboard().await, "/deploys/7").await;
    assert!(!body.contains("release-phase"), "none without one: {body}");
}

#[tokio::test]
async fn deploy_page_names_a_restart_and_its_config_version() {
    let (status, body) = fetch(dashboard().await, "/deploys/8").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body.contains(r#"<span class="deploy-action">restart</span> hello-node"#),
        "{body}"
    );
    assert!(
        body.contains(r#"<span id="config">with config 3</span>"#),
        "{body}"
    );
    let (_, body) = fetch(dashboard().await, "/deploys/7").await;
    assert!(
        !body.contains(r#"class="deploy-action""#) && !body.contains(r#"id="config""#),
        "{body}"
    );
}

#[tokio::test]
async fn unknown_deploy_is_a_404_page() {
    let (status, body) = fetch(dashboard().await, "/deploys/999").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(body.contains("there is no deploy #999"), "{body}");

    let (status, body) = fetch(dashboard().await, "/deploys/%3Cb%3E").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(!body.contains("<b>"), "{body}");
}

#[tokio::test]
async fn api_down_is_a_502_page_with_the_error() {
    let app = router(Client::new(dead_api().await));
    for path in ["/", "/deploys/7"] {
        let (status, body) = fetch(app.clone(), path).await;
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{path}: {body}");
        assert!(body.contains("cannot reach AppTracker"), "{path}: {body}");
    }
}

#[tokio::test]
async fn api_failing_is_a_502_page_with_its_message() {
    let (status, body) = fetch(dashboard().await, "/deploys/500").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert!(body.contains("database is locked"), "{body}");
}
