//! The deploy page as it is today: signed in through the form, a release
//! made through the API to three hosts, and the page, opened while the
//! deploy is still building, shows every host's row reach `done` over the
//! event stream, without a reload.

use deploy::DeployStatus;
use slipway_tests::hello_app;

use crate::{TERMINAL, THREE, console, final_status, rows_done};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deploy_page_follows_its_hosts_live() -> anyhow::Result<()> {
    let Some(c) = console(&THREE).await? else {
        return Ok(());
    };
    // Slow to come up (two seconds), so the rows are seen changing.
    let mut files = hello_app("A", true);
    files.push(("delay.txt", "2".into()));
    let refs: Vec<(&str, &str)> = files.iter().map(|(n, s)| (*n, s.as_str())).collect();
    c.repo.commit(&refs, "A, slow to start")?;

    let b = c.signed_in("live", &c.p.admin_token).await?;
    b.screenshot("overview").await?;
    let d = c.p.release(&c.app, "main", None).await?;
    b.goto(&c.url(&format!("/deploys/{}", d.id))).await?;
    b.mark().await?;
    let first = b.attr("#status", "data-status").await?.unwrap_or_default();
    assert!(
        !TERMINAL.contains(&first.as_str()),
        "the deploy ended before its page opened ({first}): nothing was seen live"
    );
    b.screenshot("deploy-running").await?;

    rows_done(&b, &THREE).await?;
    assert!(
        b.still_marked().await?,
        "the page was reloaded (or left) on the way"
    );
    assert_eq!(final_status(&b).await?, "succeeded");
    assert!(b.still_marked().await?, "the page was reloaded at the end");
    b.screenshot("deploy-done").await?;

    let d = c.p.client.deploy(d.id).await?;
    assert_eq!(d.status, DeployStatus::Succeeded, "{d:#?}");
    b.close().await?;
    c.p.shutdown().await
}
