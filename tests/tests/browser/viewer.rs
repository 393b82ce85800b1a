//! Issue 18, "Must show" (e): a viewer, signed in, sees no action form on
//! any page (where an admin sees them); a POST with the viewer's session
//! cookie and its own valid CSRF token is refused, and so is an admin's
//! POST without a CSRF token or with another session's; none of them makes
//! a deploy.

use deploy::{CreateToken, DeployStatus};
use reqwest::StatusCode;
use slipway_tests::browser::Browser;
use slipway_tests::commit_hello;

use crate::{console, form_body};

/// The pages a viewer looks at (`{id}`: a failed deploy).
const PAGES: [&str; 5] = ["/", "/deploys/{id}", "/apps/hello", "/drift", "/release"];

/// The session cookie and the CSRF token of a signed-in browser.
async fn credentials(b: &Browser) -> anyhow::Result<(String, String)> {
    let session = b
        .cookie("slipway_session")
        .await?
        .ok_or_else(|| anyhow::anyhow!("no session cookie"))?;
    let Some(csrf) = b.csrf().await? else {
        anyhow::bail!("no <meta name=csrf> on {}", b.url().await?);
    };
    Ok((session, csrf))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_viewer_sees_no_actions_and_forged_posts_are_refused() -> anyhow::Result<()> {
    let Some(c) = console(&["local-1"]).await? else {
        return Ok(());
    };
    commit_hello(&c.repo, "A", true)?;
    let a = c.p.release_and_wait(&c.app, "main", None).await?;
    assert_eq!(a.status, DeployStatus::Succeeded, "{a:#?}");
    // A failed deploy: the page where an admin gets a retry button.
    commit_hello(&c.repo, "B", false)?;
    let failed = c.p.release_and_wait(&c.app, "main", None).await?;
    assert_eq!(failed.status, DeployStatus::Failed, "{failed:#?}");
    let id = failed.id;
    let pages: Vec<String> = PAGES
        .iter()
        .map(|p| c.url(&p.replace("{id}", &id.to_string())))
        .collect();

    // The admin sees the actions (so the viewer's empty pages mean
    // something).
    let admin = c.signed_in("viewer-admin", &c.p.admin_token).await?;
    admin.goto(&pages[1]).await?;
    admin.find("form.action#retry-form").await?;
    admin.goto(&pages[2]).await?;
    admin.find("form.action.rollback").await?;

    let viewer_token =
        c.p.client
            .create_token(&CreateToken::new("vera", "viewer"))
            .await?
            .token;
    let viewer = c.signed_in("viewer", &viewer_token).await?;
    for (i, url) in pages.iter().enumerate() {
        viewer.goto(url).await?;
        assert_eq!(
            viewer.count("form.action").await?,
            0,
            "a viewer sees an action on {url}:\n{}",
            viewer.text().await?
        );
        let name = ["overview", "deploy", "app", "drift", "release"][i];
        viewer.screenshot(name).await?;
    }

    // Forged POSTs, as another page (or script) would send them.
    let before = c.p.client.deploys(100).await?.len();
    let http = deploy::tls::Trust::system()
        .http_builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let base = c.p.base_url.as_str();
    let post = async |path: String, session: String, fields: Vec<(&str, String)>| {
        let body: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = http
            .post(format!("{base}{path}"))
            .header("cookie", format!("slipway_session={session}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form_body(&body))
            .send()
            .await?;
        anyhow::Ok(r.status())
    };
    viewer.goto(&pages[1]).await?;
    let (v_session, v_csrf) = credentials(&viewer).await?;
    admin.goto(&pages[1]).await?;
    let (a_session, a_csrf) = credentials(&admin).await?;
    assert_ne!(v_csrf, a_csrf, "each session has a token of its own");
    let cluster = c.p.cluster.to_string();
    let cases = [
        (
            "a viewer's retry with its own token",
            format!("/deploys/{id}/retry"),
            v_session.clone(),
            vec![("csrf", v_csrf.clone())],
        ),
        (
            "a viewer's rollback with its own token",
            "/apps/hello/rollback".to_string(),
            v_session.clone(),
            vec![("csrf", v_csrf.clone()), ("cluster", cluster.clone())],
        ),
        (
            "a viewer's sync with its own token",
            "/drift/sync".to_string(),
            v_session.clone(),
            vec![
                ("csrf", v_csrf.clone()),
                ("app", "hello".into()),
                ("cluster", cluster.clone()),
            ],
        ),
        (
            "an admin's retry without a token",
            format!("/deploys/{id}/retry"),
            a_session.clone(),
            vec![],
        ),
        (
            "an admin's retry with the viewer's token",
            format!("/deploys/{id}/retry"),
            a_session.clone(),
            vec![("csrf", v_csrf.clone())],
        ),
        (
            "an admin's rollback without a token",
            "/apps/hello/rollback".to_string(),
            a_session.clone(),
            vec![("cluster", cluster.clone())],
        ),
    ];
    for (what, path, session, fields) in cases {
        let status = post(path.clone(), session, fields).await?;
        assert_eq!(status, StatusCode::FORBIDDEN, "{what}: POST {path}");
    }
    assert_eq!(
        c.p.client.deploys(100).await?.len(),
        before,
        "a refused POST made a deploy"
    );
    // The same admin POST with its token goes through: the refusals were
    // about the token, not the route.
    let status = post(
        format!("/deploys/{id}/retry"),
        a_session,
        vec![("csrf", a_csrf)],
    )
    .await?;
    assert!(status.is_redirection(), "an admin's retry: {status}");
    assert_eq!(c.p.client.deploys(100).await?.len(), before + 1);

    admin.close().await?;
    viewer.close().await?;
    c.p.shutdown().await
}
