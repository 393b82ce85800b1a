//! Issue 18, "Must show" (a): signed in, a person releases an app to three
//! hosts from the release form (the hosts' preview following the regex
//! typed, with what each runs now) and watches every row of the deploy page
//! reach `done` without a reload. Also: the layout's navigation and CSRF
//! meta tag, and the form's shape (a POST with a hidden csrf field).

use deploy::DeployStatus;
use serde_json::json;
use slipway_tests::browser::{Browser, WAIT};
use slipway_tests::{commit_hello, hello_app};

use crate::{NAV, THREE, console, deploy_page, final_status, rows_done};

/// The hosts `ul#targets` previews, sorted, once they equal `want`.
async fn preview_is(b: &Browser, want: &[&str]) -> anyhow::Result<Vec<String>> {
    b.wait_until(&format!("the preview to list {want:?}"), WAIT, async || {
        let mut hosts: Vec<String> = b
            .attrs("ul#targets li[data-host]", "data-host")
            .await?
            .into_iter()
            .flatten()
            .collect();
        hosts.sort();
        Ok(hosts == want)
    })
    .await?;
    let texts = b
        .js(
            "return Array.from(document.querySelectorAll('ul#targets li[data-host]')).map(function (e) { return e.textContent; });",
            vec![],
        )
        .await?;
    Ok(serde_json::from_value(texts)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn release_from_the_form_to_three_hosts() -> anyhow::Result<()> {
    let Some(c) = console(&THREE).await? else {
        return Ok(());
    };
    commit_hello(&c.repo, "A", true)?;
    let a = c.p.release_and_wait(&c.app, "main", None).await?;
    assert_eq!(a.status, DeployStatus::Succeeded, "{a:#?}");
    let va = a.version.expect("A's version");
    // B is slow to come up, so the rows are seen changing.
    let mut files = hello_app("B", true);
    files.push(("delay.txt", "2".into()));
    let refs: Vec<(&str, &str)> = files.iter().map(|(n, s)| (*n, s.as_str())).collect();
    c.repo.commit(&refs, "B, slow to start")?;

    let b = c.signed_in("release", &c.p.admin_token).await?;
    b.screenshot("overview").await?;
    // Every signed-in page: the navigation and the CSRF token.
    for href in NAV {
        assert!(
            b.count(&format!("nav.main a[href='{href}']")).await? >= 1,
            "the navigation links {href}:\n{}",
            b.text().await?
        );
    }
    let csrf = b.csrf().await?.unwrap_or_default();
    assert!(csrf.len() >= 16, "a CSRF token in the head: {csrf:?}");

    b.goto(&c.url("/release?app=hello")).await?;
    b.find("form#release-form").await?;
    assert_eq!(
        b.count("form#release-form.action[method=post i] input[type=hidden][name=csrf]")
            .await?,
        1,
        "the release form posts with a hidden csrf field"
    );
    b.select("form#release-form select[name=app]", "hello")
        .await?;
    // Built versions to pick from, the first option empty (a git ref then).
    b.wait_until("A's build among the versions", WAIT, async || {
        let versions = b
            .attrs("form#release-form select[name=version] option", "value")
            .await?;
        Ok(versions.first() == Some(&Some(String::new()))
            && versions.contains(&Some(va.to_string())))
    })
    .await?;
    b.select("form#release-form select[name=version]", "")
        .await?;
    b.fill("form#release-form input[name=git_ref]", "main")
        .await?;
    b.select(
        "form#release-form select[name=cluster]",
        c.p.cluster.as_str(),
    )
    .await?;

    // The preview follows the regex as it is typed.
    b.fill("form#release-form input[name=hosts]", "local-[12]")
        .await?;
    preview_is(&b, &["local-1", "local-2"]).await?;
    b.fill("form#release-form input[name=hosts]", "").await?;
    let texts = preview_is(&b, &THREE).await?;
    assert!(
        texts.iter().all(|t| t.contains(va.as_str())),
        "each host shows what it runs now ({va}): {texts:?}"
    );
    b.fill("form#release-form input[name=batch]", "2").await?;
    b.screenshot("release-form").await?;

    b.click("button#release-submit").await?;
    let id = deploy_page(&b, None).await?;
    b.mark().await?;
    b.screenshot("deploy-running").await?;
    rows_done(&b, &THREE).await?;
    assert_eq!(final_status(&b).await?, "succeeded");
    assert!(
        b.still_marked().await?,
        "the deploy page was reloaded on the way"
    );
    // The progress bar is full.
    let bar = b
        .js(
            "var p = document.getElementById('progress-bar'); return p ? [p.value, p.max] : null;",
            vec![],
        )
        .await?;
    let full = bar
        .as_array()
        .is_some_and(|v| v.len() == 2 && v[0] == v[1] && v[0] != json!(0));
    assert!(full, "#progress-bar full: {bar}");
    b.screenshot("deploy-done").await?;

    let d = c.p.client.deploy(deploy::DeployId(id)).await?;
    assert_eq!(d.status, DeployStatus::Succeeded, "{d:#?}");
    let vb = d.version.expect("B's version");
    assert_ne!(vb, va);
    for h in THREE {
        assert_eq!(c.p.host(h).current("hello").as_deref(), Some(vb.as_str()));
    }
    b.close().await?;
    c.p.shutdown().await
}
