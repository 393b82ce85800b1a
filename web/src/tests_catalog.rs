//! Tests of the apps and builds pages against a stub of AppTracker's API
//! serving canned JSON: they render with the data, print hostile strings
//! escaped, answer 404 for bad names and ids, and show the rollback form
//! only to those who may use it.

use super::*;
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query};
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::builds::BUILD_SCRIPT;

const HOSTILE: &str = "<script>alert(\"pwned\")</script>";

fn build(id: i64, app: &str, status: &str, log: &str) -> Value {
    let done = matches!(status, "succeeded" | "failed");
    json!({
        "id": id, "app": app, "number": id, "git_ref": "main",
        "commit": format!("{id}bcdef0123456789abcdef0123456789abcdef0"),
        "version": format!("{id}-{id}bcdef0"), "status": status,
        "build_type": if done { json!("python") } else { Value::Null },
        "artifact": if status == "succeeded" { json!({
            "url": "http://x/a.tar.gz", "sha256": "a".repeat(64), "size": 3_145_728,
            "signature": "sig"}) } else { Value::Null },
        "error": if status == "failed" { json!(format!("pip failed {HOSTILE}")) } else { Value::Null },
        "worker": null, "log": log,
        "author": if status == "succeeded" { json!(format!("Grace {HOSTILE} <grace@example.com>")) } else { Value::Null },
        "message": if status == "succeeded" { json!(format!("Fix the login {HOSTILE}")) } else { Value::Null },
        "created_at": 1_700_000_000_000_i64,
        "finished_at": if done { json!(1_700_000_090_000_i64) } else { Value::Null },
    })
}

fn builds() -> Vec<Value> {
    vec![
        build(3, "hello-python", "running", ""),
        build(2, "hello-python", "failed", ""),
        build(1, "hello-python", "succeeded", ""),
        build(4, "other", "queued", ""),
    ]
}

fn deploy(id: i64, cluster: &str, status: &str, version: &str) -> Value {
    json!({
        "id": id, "app": "hello-python", "version": version, "git_ref": "main",
        "build_id": 1, "cluster": cluster, "hosts_selector": ".*",
        "status": status, "error": null, "requested_by": format!("ada {HOSTILE}"),
        "created_at": 1_700_000_100_000_i64, "finished_at": 1_700_000_175_000_i64,
        "hosts": [{"host": "web-1", "phase": "done", "failed_phase": null,
                   "rolled_back": false, "message": null, "log_tail": null,
                   "updated_at": 1_700_000_150_000_i64}],
    })
}

fn deploys() -> Vec<Value> {
    vec![
        deploy(11, "prod", "failed", "2-2bcdef0"),
        deploy(10, "local", "succeeded", "1-1bcdef0"),
    ]
}

fn app(name: &str) -> Value {
    let mut a = json!({"name": name, "git_url": format!("/src/{name}"), "branch": "main",
           "auto_deploy": null, "new_hosts": "auto", "created_at": 1_690_000_000_000_i64});
    if name == "hello-python" {
        a["root"] = json!("services/hello-python");
    }
    a
}

fn hosts() -> Value {
    json!([{
        "cluster": "local", "name": "web-1", "root": "/srv/slipway",
        "registered_at": 1_699_000_000_000_i64, "last_seen": 1_700_000_300_000_i64,
        "apps": [{"app": "hello-python", "version": "1-1bcdef0", "pid": 42, "port": 8000}],
    }])
}

fn drift() -> Value {
    json!({
        "generated_at": 1_700_000_300_000_i64, "summary": [], "agents": [],
        "hosts": [{
            "cluster": "local", "host": "web-1", "app": "hello-python", "state": "drifted",
            "reason": format!("`current` was changed {HOSTILE}"), "desired": "1-1bcdef0",
            "desired_deploy": 10, "current": "1-1bcdef0", "process": null, "restarts": 0,
            "disk": null, "reported_at": 1_700_000_300_000_i64, "over_limits": [],
        }],
    })
}

fn config() -> Value {
    json!({"app": "hello-python", "version": 4, "vars": [
        {"key": "GREETING", "cluster": null, "value": HOSTILE, "secret": false},
        {"key": "DB_PASSWORD", "cluster": "prod", "value": null, "secret": true},
    ]})
}

fn clusters() -> Value {
    json!([{"name": "prod", "protected": true, "frozen_until": null,
            "freeze_reason": null, "frozen_by": null, "updated_by": "ada",
            "updated_at": 1_700_000_000_000_i64}])
}

fn not_found() -> (StatusCode, Json<Value>) {
    let body = json!({"code": "not_found", "message": "no such thing"});
    (StatusCode::NOT_FOUND, Json(body))
}

fn known(app: &str) -> bool {
    matches!(app, "hello-python" | "other")
}

/// Serves canned answers on a port-0 listener and returns its base URL.
async fn spawn_stub() -> String {
    let stub = Router::new()
        .route("/api/v1/whoami", get(whoami))
        .route(
            "/api/v1/apps",
            get(|| async { Json(json!([app("hello-python"), app("other")])) }),
        )
        .route(
            "/api/v1/apps/{app}",
            get(|Path(a): Path<String>| async move {
                if known(&a) {
                    (StatusCode::OK, Json(app(&a)))
                } else {
                    not_found()
                }
            }),
        )
        .route(
            "/api/v1/apps/{app}/builds",
            get(|Path(a): Path<String>| async move {
                let mine: Vec<Value> = builds().into_iter().filter(|b| b["app"] == a).collect();
                Json(mine)
            }),
        )
        .route(
            "/api/v1/apps/{app}/config",
            get(|| async { Json(config()) }),
        )
        .route("/api/v1/builds", get(|| async { Json(json!(builds())) }))
        .route(
            "/api/v1/builds/{id}",
            get(|Path(id): Path<i64>| async move {
                let log = format!("collecting flask\n</pre>{HOSTILE}");
                match builds().into_iter().find(|b| b["id"] == json!(id)) {
                    Some(mut b) => {
                        b["log"] = json!(log);
                        (StatusCode::OK, Json(b))
                    }
                    None => not_found(),
                }
            }),
        )
        .route(
            "/api/v1/deploys",
            get(|Query(q): Query<deploy::DeployQuery>| async move {
                let all = deploys();
                let mine = all.into_iter().filter(|d| {
                    q.app.as_ref().is_none_or(|a| d["app"] == a.as_str())
                        && q.cluster
                            .as_ref()
                            .is_none_or(|c| d["cluster"] == c.as_str())
                });
                Json(mine.collect::<Vec<_>>())
            }),
        )
        .route("/api/v1/hosts", get(|| async { Json(hosts()) }))
        .route("/api/v1/drift", get(|| async { Json(drift()) }))
        .route("/api/v1/clusters", get(|| async { Json(clusters()) }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind stub listener");
    let addr = listener.local_addr().expect("stub address");
    tokio::spawn(async move { axum::serve(listener, stub).await });
    format!("http://{addr}")
}

/// `sls_viewer` is a viewer, `sls_deployer` a deployer, any other session
/// an admin.
async fn whoami(headers: axum::http::HeaderMap) -> (StatusCode, Json<Value>) {
    let who = match headers.get("authorization").and_then(|v| v.to_str().ok()) {
        Some("Bearer sls_viewer") => json!({"name": "vera", "role": "viewer"}),
        Some("Bearer sls_deployer") => json!({"name": "dan", "role": "deployer"}),
        Some(_) => json!({"name": "ada", "role": "admin"}),
        None => {
            let body = json!({"code": "unauthorized", "message": "no API token"});
            return (StatusCode::UNAUTHORIZED, Json(body));
        }
    };
    (StatusCode::OK, Json(who))
}

async fn dashboard() -> Router {
    router(Client::new(spawn_stub().await))
}

/// GET `path` with the session cookie `session`.
async fn fetch_as(app: Router, path: &str, session: &str) -> (StatusCode, String) {
    let req = Request::get(path)
        .header("cookie", format!("slipway_session={session}"))
        .body(Body::empty())
        .expect("request");
    let resp = app.oneshot(req).await.expect("router is infallible");
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .expect("read body");
    let body = String::from_utf8(bytes.to_vec()).expect("utf-8 page");
    (status, body)
}

async fn fetch(app: Router, path: &str) -> (StatusCode, String) {
    fetch_as(app, path, "sls_admin").await
}

/// The markup of the element that starts at `start`, to its `end`.
fn part<'a>(body: &'a str, start: &str, end: &str) -> &'a str {
    let from = body
        .find(start)
        .unwrap_or_else(|| panic!("no {start:?} in {body}"));
    let rest = &body[from..];
    &rest[..rest.find(end).map_or(rest.len(), |i| i + end.len())]
}

fn assert_escaped(body: &str) {
    assert!(!body.contains("<script>alert"), "raw script: {body}");
    assert!(body.contains("&lt;script&gt;alert("), "escaped: {body}");
}

#[tokio::test]
async fn apps_lists_what_each_app_runs_and_its_last_build_and_deploy() {
    let (status, body) = fetch(dashboard().await, "/apps").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let row = part(&body, r#"<tr data-app="hello-python">"#, "</tr>");
    assert!(row.contains(r#"<a href="/apps/hello-python">"#), "{row}");
    assert!(
        row.contains(r#"<div class="runs-on" data-cluster="local">"#),
        "{row}"
    );
    assert!(row.contains("1-1bcdef0 (1)"), "what web-1 reports: {row}");
    assert!(
        row.contains(r#"<a href="/builds/3" class="mono">3-3bcdef0</a>"#),
        "{row}"
    );
    assert!(row.contains(r#"<a href="/deploys/11">#11</a>"#), "{row}");
    assert!(
        row.contains(r#"data-cluster="prod""#),
        "deployed there: {row}"
    );
    assert_escaped(&body);
    let other = part(&body, r#"<tr data-app="other">"#, "</tr>");
    assert!(other.contains("not deployed yet"), "{other}");
    assert!(other.contains(r#"href="/builds/4""#), "{other}");
}

#[tokio::test]
async fn app_page_shows_builds_placement_deploys_and_config() {
    let (status, body) = fetch(dashboard().await, "/apps/hello-python").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let root = part(&body, r#"<dd class="mono" id="app-root""#, "</dd>");
    assert!(root.ends_with(">services/hello-python/</dd>"), "{root}");
    let (_, other) = fetch(dashboard().await, "/apps/other").await;
    assert!(!other.contains("app-root"), "no root, no line");
    let builds = part(&body, r#"<table id="builds""#, "</table>");
    assert_eq!(builds.matches("<tr data-build-id=").count(), 3, "{builds}");
    let first = part(builds, r#"<tr data-build-id="1">"#, "</tr>");
    for want in [
        r#"<a href="/builds/1">#1</a>"#,
        r#"title="1bcdef0123456789abcdef0123456789abcdef0">1bcdef0</td>"#,
        "3.0 MiB",
        "1m 30s",
        r#"data-status="succeeded""#,
        r#"<div class="commit-message">Fix the login &lt;script&gt;alert("#,
        r#"<div class="commit-author muted" title="Grace &lt;script&gt;alert("#,
        r#"">Grace &lt;script&gt;alert("#,
    ] {
        assert!(first.contains(want), "{want}: {first}");
    }
    let placement = part(&body, r#"<table id="placement">"#, "</table>");
    assert!(placement.contains(r#"<tr data-host="web-1" data-cluster="local">"#));
    assert!(placement.contains(r#"<span class="badge drift-drifted">drifted</span>"#));
    assert!(placement.contains(r#"<a href="/deploys/10" class="muted">#10</a>"#));
    let deploys = part(&body, r#"<table id="deploys">"#, "</table>");
    assert!(
        deploys.contains(r#"<tr id="deploy-11" data-deploy-id="11">"#),
        "{deploys}"
    );
    assert!(
        deploys.contains("1m 15s") && deploys.contains("1/1 done"),
        "{deploys}"
    );
    let config = part(&body, r#"<table id="config">"#, "</table>");
    assert!(
        config.contains(r#"<tr data-key="DB_PASSWORD">"#),
        "{config}"
    );
    assert!(config.contains("(secret)"), "{config}");
    assert!(body.contains("Version 4."), "{body}");
    assert_escaped(&body);
    assert!(!body.contains("ada <script>"), "{body}");
}

#[tokio::test]
async fn an_admin_sees_a_rollback_form_per_cluster_with_the_csrf() {
    let (status, body) = fetch(dashboard().await, "/apps/hello-python").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let csrf = crate::visitor::csrf_for("sls_admin");
    for cluster in ["local", "prod"] {
        let form = part(
            &body,
            &format!(
                r#"<form class="action rollback" data-cluster="{cluster}" method="post" action="/apps/hello-python/rollback">"#
            ),
            "</form>",
        );
        assert!(
            form.contains(&format!(
                r#"<input type="hidden" name="csrf" value="{csrf}">"#
            )),
            "{form}"
        );
        assert!(
            form.contains(&format!(
                r#"<input type="hidden" name="cluster" value="{cluster}">"#
            )),
            "{form}"
        );
        // Only the protected cluster asks for its name.
        assert_eq!(
            form.contains(r#"name="confirm""#),
            cluster == "prod",
            "{form}"
        );
    }
    assert!(
        body.contains(r#"href="/release?app=hello-python""#),
        "{body}"
    );
    let (_, body) = fetch_as(dashboard().await, "/apps/hello-python", "sls_deployer").await;
    assert_eq!(
        body.matches(r#"<form class="action rollback""#).count(),
        2,
        "{body}"
    );
}

#[tokio::test]
async fn a_viewer_sees_no_action_forms() {
    for path in [
        "/apps",
        "/apps/hello-python",
        "/builds",
        "/builds/1",
        "/builds/3",
    ] {
        let (status, body) = fetch_as(dashboard().await, path, "sls_viewer").await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        assert!(!body.contains(r#"class="action"#), "{path}: {body}");
        assert!(!body.contains("/rollback"), "{path}: {body}");
        assert!(
            !body.contains(r#"<input type="hidden" name="csrf""#),
            "{path}: {body}"
        );
        assert!(!body.contains(r#"id="release-link""#), "{path}: {body}");
    }
}

#[tokio::test]
async fn bad_or_unknown_names_and_ids_are_404_pages() {
    let app = dashboard().await;
    for path in [
        "/apps/nobody",
        "/apps/%3Cb%3Ex",
        "/apps/..",
        "/apps/A%20B",
        "/builds/999",
        "/builds/0",
        "/builds/-1",
        "/builds/abc",
        "/builds/%3Cb%3E",
        "/builds/99999999999999999999999",
    ] {
        let (status, body) = fetch(app.clone(), path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
        assert!(!body.contains("<b>"), "{path}: {body}");
    }
}

#[tokio::test]
async fn builds_lists_every_apps_builds_with_links() {
    let (status, body) = fetch(dashboard().await, "/builds").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let table = part(&body, r#"<table id="builds""#, "</table>");
    assert_eq!(table.matches("<tr data-build-id=").count(), 4, "{table}");
    let failed = part(table, r#"<tr data-build-id="2">"#, "</tr>");
    assert!(failed.contains(r#"<a href="/apps/hello-python">hello-python</a>"#));
    assert!(failed.contains(r#"data-status="failed""#), "{failed}");
    assert!(failed.contains("pip failed &lt;script&gt;"), "{failed}");
    let done = part(table, r#"<tr data-build-id="1">"#, "</tr>");
    assert!(
        done.contains("Fix the login &lt;script&gt;alert(")
            && done.contains(">Grace &lt;script&gt;"),
        "{done}"
    );
    let queued = part(table, r#"<tr data-build-id="4">"#, "</tr>");
    assert!(queued.contains(r#"<td class="took">—</td>"#), "{queued}");
    assert_escaped(&body);
}

#[tokio::test]
async fn build_page_shows_its_log_escaped_and_the_deploys_that_used_it() {
    let (status, body) = fetch(dashboard().await, "/builds/1").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body.contains(r#"<h1 id="build" data-build-id="1">"#),
        "{body}"
    );
    let log = part(&body, r#"<pre id="build-log""#, "</pre>");
    assert!(
        log.contains("collecting flask\n&lt;&#x2F;pre&gt;&lt;script&gt;")
            || log.contains("collecting flask\n&lt;/pre&gt;&lt;script&gt;"),
        "{log}"
    );
    assert!(!body.contains("</pre><script>"), "{body}");
    assert!(
        body.contains(
            r#"id="build-status" class="badge status-succeeded" data-status="succeeded""#
        )
    );
    assert!(
        body.contains("1bcdef0123456789abcdef0123456789abcdef0"),
        "full commit"
    );
    let message = part(&body, r#"<dd id="build-message">"#, "</dd>");
    assert!(
        message.contains("Fix the login &lt;script&gt;alert("),
        "{message}"
    );
    let author = part(&body, r#"<dd id="build-author">"#, "</dd>");
    assert!(
        author.contains("Grace &lt;script&gt;alert(")
            && author.contains("&lt;grace@example.com&gt;"),
        "{author}"
    );
    let used = part(&body, r#"<table id="build-deploys">"#, "</table>");
    assert!(used.contains(r#"<a href="/deploys/10">#10</a>"#), "{used}");
    assert!(body.contains(r#"<script src="/static/build.js" defer></script>"#));
    assert!(!body.contains("<script>"), "no inline script: {body}");
}

#[tokio::test]
async fn a_running_build_is_polled_by_its_script() {
    let app = dashboard().await;
    let (status, body) = fetch(app.clone(), "/builds/3").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains(r#"data-status="running""#), "{body}");
    assert!(body.contains(r#"<span id="build-live" class="live">updating…</span>"#));
    let (status, script) = fetch(app, "/static/build.js").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(script, BUILD_SCRIPT);
    assert!(BUILD_SCRIPT.contains("fetch('/api/v1/builds/' + ID"));
    assert!(BUILD_SCRIPT.contains("getAttribute('data-build-id')"));
    assert!(!BUILD_SCRIPT.contains("innerHTML"), "textContent only");
}

#[tokio::test]
async fn empty_lists_say_what_to_do() {
    let stub = Router::new()
        .route("/api/v1/whoami", get(whoami))
        .route("/api/v1/apps", get(|| async { Json(json!([])) }))
        .route("/api/v1/builds", get(|| async { Json(json!([])) }))
        .route("/api/v1/deploys", get(|| async { Json(json!([])) }))
        .route("/api/v1/hosts", get(|| async { Json(json!([])) }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, stub).await });
    let app = router(Client::new(format!("http://{addr}")));
    let (status, body) = fetch(app.clone(), "/apps").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("No apps yet"), "{body}");
    let (status, body) = fetch(app, "/builds").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("No builds yet"), "{body}");
}

#[test]
fn durations_read_like_people_write_them() {
    use crate::builds::took;
    use deploy::Timestamp;
    assert_eq!(took(Timestamp(1_000), Timestamp(91_999)), "1m 30s");
    assert_eq!(took(Timestamp(0), Timestamp(500)), "0s");
    // A clock that went backwards is no negative time.
    assert_eq!(took(Timestamp(5_000), Timestamp(1_000)), "0s");
}

#[test]
fn a_table_shows_the_authors_name_without_the_email() {
    use crate::builds::author_name;
    assert_eq!(
        author_name("Ada Lovelace <ada@example.com>"),
        "Ada Lovelace"
    );
    assert_eq!(author_name("A <b> <ada@example.com>"), "A <b>");
    assert_eq!(author_name("<ada@example.com>"), "<ada@example.com>");
    assert_eq!(author_name("ada"), "ada");
}
