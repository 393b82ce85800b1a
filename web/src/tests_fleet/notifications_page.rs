//! The notifications page's tests: what it shows, the admin's forms, and
//! the POSTs it refuses.

use axum::http::{StatusCode, header};

use super::*;

#[tokio::test]
async fn notifications_show_scope_url_and_deliveries_escaped() {
    let a = get_as(dashboard().await, "/notifications", "sls_viewer").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let n = part(
        &a.body,
        r#"<section class="notification" id="notification-1">"#,
        "</section>",
    );
    assert!(
        n.contains("https://hooks.slack.com") && n.contains("format-slack"),
        "{n}"
    );
    assert!(
        n.contains("deploy_failed") && n.contains("deploy_rolled_back"),
        "{n}"
    );
    assert!(
        n.contains(r#"<a href="/apps/hello-python">"#) && n.contains("every cluster"),
        "{n}"
    );
    let failed = part(n, r#"<tr id="delivery-9">"#, "</tr>");
    assert!(
        failed.contains(r#"<a href="/deploys/7">#7</a>"#),
        "{failed}"
    );
    assert!(
        failed.contains("delivery-failed") && failed.contains("<td>5</td>"),
        "{failed}"
    );
    assert!(failed.contains("&lt;script&gt;"), "{failed}");
    assert!(n.contains("delivery-delivered"), "{n}");
    assert!(!a.body.contains(HOSTILE), "{}", a.body);
    // A viewer gets no buttons and no form.
    assert!(!a.body.contains(r#"class="action"#), "{}", a.body);
    assert!(!a.body.contains("notification-form"), "{}", a.body);
}

#[tokio::test]
async fn an_admin_gets_the_add_form_and_delete_buttons_with_csrf() {
    let a = get_as(dashboard().await, "/notifications", "sls_admin").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let csrf = format!(
        r#"<input type="hidden" name="csrf" value="{}">"#,
        csrf_for("sls_admin")
    );
    let form = part(
        &a.body,
        r#"<form class="action stack" id="notification-form""#,
        "</form>",
    );
    assert!(
        form.contains(r#"method="post" action="/notifications""#),
        "{form}"
    );
    assert!(form.contains(&csrf), "{form}");
    assert!(form.contains(r#"type="password" name="url""#), "{form}");
    for field in [r#"name="app""#, r#"name="cluster""#, r#"name="format""#] {
        assert!(form.contains(field), "{field}: {form}");
    }
    assert_eq!(
        form.matches(r#"name="events""#).count(),
        deploy::NotifyEvent::ALL.len(),
        "{form}"
    );
    let del = part(
        &a.body,
        r#"<form class="action" method="post" action="/notifications/1/delete">"#,
        "</form>",
    );
    assert!(del.contains(&csrf), "{del}");
}

#[tokio::test]
async fn adding_shows_the_secret_once_and_never_the_url() {
    let csrf = csrf_for("sls_admin");
    let form = format!(
        "csrf={csrf}&url=https%3A%2F%2Fhooks.example.com%2Fservices%2FT0%2Fsecret-path&format=slack\
         &app=hello-python&cluster=&events=deploy_failed&events=deploy_started"
    );
    let a = post_as(dashboard().await, "/notifications", "sls_admin", &form).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.headers[header::CACHE_CONTROL], "no-store");
    assert!(
        a.body
            .contains(r#"<code id="notification-secret">slpwn_s3cret</code>"#),
        "{}",
        a.body
    );
    assert!(!a.body.contains("secret-path"), "{}", a.body);
    assert!(a.body.contains(r#"id="notification-form""#), "{}", a.body);
}

#[tokio::test]
async fn bad_or_forged_posts_are_refused() {
    let app = dashboard().await;
    let admin = csrf_for("sls_admin");
    let viewer = csrf_for("sls_viewer");
    let url = "url=https%3A%2F%2Fhooks.example.com%2Fx";
    for (path, session, form, status, words) in [
        (
            "/notifications",
            "sls_admin",
            url.to_string(),
            403,
            "anti-forgery",
        ),
        (
            "/notifications",
            "sls_admin",
            format!("csrf={viewer}&{url}"),
            403,
            "anti-forgery",
        ),
        (
            "/notifications/1/delete",
            "sls_admin",
            String::new(),
            403,
            "anti-forgery",
        ),
        (
            "/notifications",
            "sls_viewer",
            format!("csrf={viewer}&{url}"),
            403,
            "admin token",
        ),
        (
            "/notifications",
            "sls_admin",
            format!("csrf={admin}&url=ftp%3A%2F%2Fx"),
            400,
            "must be https",
        ),
        (
            "/notifications",
            "sls_admin",
            format!("csrf={admin}&url="),
            400,
            "url: required",
        ),
        (
            "/notifications",
            "sls_admin",
            format!("csrf={admin}&{url}&format=xml"),
            400,
            "format \"xml\"",
        ),
        (
            "/notifications",
            "sls_admin",
            format!("csrf={admin}&{url}&events=deploy_exploded"),
            400,
            "unknown event",
        ),
        (
            "/notifications",
            "sls_admin",
            format!("csrf={admin}&{url}&app=%3Cb%3E"),
            400,
            "app \"&lt;b&gt;\"",
        ),
        (
            "/notifications/2/delete",
            "sls_admin",
            format!("csrf={admin}"),
            404,
            "no notification",
        ),
        (
            "/notifications/two/delete",
            "sls_admin",
            format!("csrf={admin}"),
            404,
            "no notification",
        ),
    ] {
        let a = post_as(app.clone(), path, session, &form).await;
        assert_eq!(a.status.as_u16(), status, "{path} {form}: {}", a.body);
        let words = words.replace('"', "&quot;");
        assert!(a.body.contains(&words), "{path} {form}: {}", a.body);
        assert!(!a.body.contains("<b>"), "{}", a.body);
    }
}

#[tokio::test]
async fn deleting_redirects_to_the_list() {
    let form = format!("csrf={}", csrf_for("sls_admin"));
    let a = post_as(
        dashboard().await,
        "/notifications/1/delete",
        "sls_admin",
        &form,
    )
    .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    assert_eq!(a.headers[header::LOCATION], "/notifications");
}
