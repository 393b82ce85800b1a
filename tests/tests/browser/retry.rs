//! Issue 18, "Must show" (b): a broken version released from the form fails
//! its health check; the deploy page shows the host's failure log and an
//! `ssh` command; "retry" opens a new deploy of the failed host; and "roll
//! back" on the app's page puts the version before back, its deploy
//! reaching `succeeded` on the page.

use deploy::{DeployId, DeployStatus};
use slipway_tests::browser::WAIT;
use slipway_tests::commit_hello;

use crate::{THREE, console, deploy_page, final_status};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_host_shows_its_log_is_retried_and_the_app_rolled_back() -> anyhow::Result<()> {
    let Some(c) = console(&THREE).await? else {
        return Ok(());
    };
    // A, then C everywhere: a rollback has a version to go back to.
    commit_hello(&c.repo, "A", true)?;
    let a = c.p.release_and_wait(&c.app, "main", None).await?;
    assert_eq!(a.status, DeployStatus::Succeeded, "{a:#?}");
    let va = a.version.expect("A's version");
    commit_hello(&c.repo, "C", true)?;
    let cc = c.p.release_and_wait(&c.app, "main", None).await?;
    assert_eq!(cc.status, DeployStatus::Succeeded, "{cc:#?}");
    // B fails its health check.
    commit_hello(&c.repo, "B", false)?;

    let b = c.signed_in("retry", &c.p.admin_token).await?;
    b.goto(&c.url("/release?app=hello")).await?;
    b.select("form#release-form select[name=app]", "hello")
        .await?;
    b.fill("form#release-form input[name=git_ref]", "main")
        .await?;
    b.select(
        "form#release-form select[name=cluster]",
        c.p.cluster.as_str(),
    )
    .await?;
    b.fill("form#release-form input[name=hosts]", "local-3")
        .await?;
    b.wait_until("the preview to show local-3 alone", WAIT, async || {
        let hosts = b.attrs("ul#targets li[data-host]", "data-host").await?;
        Ok(hosts == [Some("local-3".to_string())])
    })
    .await?;
    b.screenshot("release-form-broken").await?;
    b.click("button#release-submit").await?;
    let first = deploy_page(&b, None).await?;
    assert_eq!(final_status(&b).await?, "failed");

    // The failed host's log, inline, and how to reach it.
    let row = "#hosts tr[data-host=local-3]";
    b.wait_until("local-3's failure log", WAIT, async || {
        let log = b.text_of(&format!("{row} pre.log")).await?;
        Ok(log.is_some_and(|l| l.contains("health check broken on purpose in B")))
    })
    .await?;
    let ssh = b
        .text_of(&format!("{row} code.ssh"))
        .await?
        .unwrap_or_default();
    assert!(ssh.contains("ssh"), "an ssh command for local-3: {ssh:?}");
    // Shown, not merely present: what a person sees.
    let shown = b
        .js(
            "return Array.from(document.querySelectorAll('#cancel-form, #continue-form')).filter(function (e) { return e.offsetParent !== null; }).length;",
            vec![],
        )
        .await?;
    assert_eq!(
        shown,
        serde_json::json!(0),
        "nothing to cancel or continue once a deploy ended"
    );
    b.screenshot("deploy-failed").await?;

    // Retry: a new deploy of the same version, on its own page.
    b.click("form.action#retry-form button").await?;
    let retry = deploy_page(&b, Some(first)).await?;
    assert!(retry > first, "a new deploy: #{retry} after #{first}");
    assert_eq!(final_status(&b).await?, "failed", "B is still broken");
    let r = c.p.client.deploy(DeployId(retry)).await?;
    assert_eq!(r.retry_of, Some(DeployId(first)), "{r:#?}");
    b.screenshot("deploy-retry").await?;

    // Roll back from the app's page: A again wherever C replaced it.
    b.goto(&c.url("/apps/hello")).await?;
    b.wait_until("the app's builds", WAIT, async || {
        Ok(b.count("#builds tr[data-build-id]").await? >= 3)
    })
    .await?;
    b.screenshot("app").await?;
    let cluster = c.p.cluster.as_str();
    b.click(&format!(
        "form.action.rollback[data-cluster={cluster}] button[type=submit], \
         form.action.rollback[data-cluster={cluster}] button:not([type])"
    ))
    .await?;
    let back = deploy_page(&b, Some(retry)).await?;
    assert!(back > retry, "a new deploy: #{back} after #{retry}");
    assert_eq!(final_status(&b).await?, "succeeded");
    b.screenshot("deploy-rollback").await?;
    let d = c.p.client.deploy(DeployId(back)).await?;
    let history: Vec<String> =
        c.p.client
            .deploys(20)
            .await?
            .iter()
            .map(|d| {
                format!(
                    "#{} {:?} {} {:?}",
                    d.id, d.version, d.status, d.hosts_selector
                )
            })
            .collect();
    assert_eq!(d.version.as_ref(), Some(&va), "{d:#?}\n{history:#?}");
    for h in THREE {
        assert_eq!(
            c.p.host(h).current("hello").as_deref(),
            Some(va.as_str()),
            "{h}: {d:#?}\n{history:#?}"
        );
    }
    b.close().await?;
    c.p.shutdown().await
}
