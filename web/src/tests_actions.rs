//! The dashboard's buttons against a stub of AppTracker's API: who sees
//! them, and that a form without the session's anti-forgery value, or a
//! viewer's, changes nothing.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use tower::ServiceExt;

use crate::tests::{dashboard, fetch, fetch_as};
use crate::visitor::csrf_for;

/// POSTs a form as `session`; the status and the `Location` header.
async fn post_form(path: &str, session: &str, body: &str) -> (StatusCode, Option<String>, String) {
    let req = Request::post(path)
        .header("cookie", format!("slipway_session={session}"))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(body.to_string()))
        .expect("request");
    let resp = dashboard()
        .await
        .oneshot(req)
        .await
        .expect("router is infallible");
    let status = resp.status();
    let location = resp
        .headers()
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .expect("read body");
    (
        status,
        location,
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

#[tokio::test]
async fn a_deployer_sees_the_buttons_that_apply_and_a_viewer_none() {
    let (status, body) = fetch(dashboard().await, "/deploys/7").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let csrf = csrf_for("sls_admin");
    assert!(
        body.contains(&format!(r#"<meta name="csrf" content="{csrf}">"#)),
        "{body}"
    );
    // Deploy 7 still runs: cancel shows; retry and rollback wait, hidden,
    // for its end (the page's script shows them).
    let form = |id: &str| {
        body.split(&format!(r#"id="{id}""#))
            .nth(1)
            .and_then(|rest| rest.split("</form>").next())
            .unwrap_or_else(|| panic!("no {id}: {body}"))
            .to_string()
    };
    let opening = |id: &str| form(id).lines().next().unwrap_or("").to_string();
    assert_eq!(
        opening("cancel-form"),
        r#" method="post" action="/deploys/7/cancel">"#
    );
    assert!(opening("retry-form").ends_with(" hidden>"), "{body}");
    assert!(
        form("cancel-form").contains(&format!(r#"name="csrf" value="{csrf}""#)),
        "{body}"
    );
    assert!(form("retry-form").contains("hidden>"), "{body}");
    assert!(
        body.contains(r#"<progress id="progress-bar" max="3" value="1">"#),
        "{body}"
    );

    let (status, body) = fetch_as(dashboard().await, "/deploys/7", "sls_viewer").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        !body.contains(r#"class="action""#),
        "a viewer gets no buttons: {body}"
    );
    assert!(body.contains("vera · viewer"), "{body}");
}

#[tokio::test]
async fn retry_needs_the_sessions_anti_forgery_value_and_a_deployer() {
    let csrf = csrf_for("sls_admin");
    let (status, location, _) =
        post_form("/deploys/7/retry", "sls_admin", &format!("csrf={csrf}")).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location.as_deref(), Some("/deploys/9"));

    for body in [
        String::new(),
        "csrf=".to_string(),
        format!("csrf={}", csrf_for("sls_other")),
    ] {
        let (status, location, page) = post_form("/deploys/7/retry", "sls_admin", &body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body:?}: {page}");
        assert_eq!(location, None);
        assert!(page.contains("anti-forgery"), "{page}");
    }

    // A viewer's own valid value: AppTracker refuses, and says why.
    let viewer = csrf_for("sls_viewer");
    let (status, _, page) =
        post_form("/deploys/7/retry", "sls_viewer", &format!("csrf={viewer}")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{page}");
    assert!(page.contains("deploying needs deployer"), "{page}");

    // No session at all: off to sign in.
    let req = Request::post("/deploys/7/retry")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(format!("csrf={csrf}")))
        .expect("request");
    let resp = dashboard().await.oneshot(req).await.expect("infallible");
    assert_eq!(
        resp.headers().get(header::LOCATION).map(|v| v.as_bytes()),
        Some(&b"/login"[..])
    );
}

#[tokio::test]
async fn a_malformed_deploy_id_in_an_action_is_a_404() {
    let csrf = csrf_for("sls_admin");
    let (status, _, page) = post_form(
        "/deploys/%3Cb%3E/retry",
        "sls_admin",
        &format!("csrf={csrf}"),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{page}");
    assert!(!page.contains("<b>"), "{page}");
}

#[tokio::test]
async fn the_overview_sums_up_the_fleet_and_its_drift() {
    let (status, body) = fetch(dashboard().await, "/").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let fleet = body
        .split(r#"<p id="fleet" class="fleet">"#)
        .nth(1)
        .and_then(|rest| rest.split("</p>").next())
        .expect("the fleet line");
    assert!(
        fleet.contains("<strong>1</strong> host(s)</a> in 1 cluster(s)"),
        "{fleet}"
    );
    assert!(
        fleet.contains(r#"<span class="badge status-failed">1 failing</span>"#),
        "{fleet}"
    );
    assert!(fleet.contains("1 out of sync"), "{fleet}");
    assert!(
        fleet.contains(r#"href="/release""#),
        "a deployer may release: {fleet}"
    );
    assert!(
        body.contains(r#"<tr data-app="hello-python" data-cluster="local">"#),
        "the drift summary: {body}"
    );
    let (_, body) = fetch_as(dashboard().await, "/", "sls_viewer").await;
    assert!(!body.contains("Release…"), "{body}");
}
