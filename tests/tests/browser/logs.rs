//! Issue 18, "Must show" (d): a host's page follows an app's log: a line
//! the app writes after the page opened (a request it logs) appears in
//! `pre#app-log` without a reload.

use deploy::DeployStatus;
use slipway_tests::browser::WAIT;
use slipway_tests::hello_app;

use crate::console;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_host_page_follows_an_apps_log() -> anyhow::Result<()> {
    let Some(c) = console(&["local-1"]).await? else {
        return Ok(());
    };
    // The test app, logging every request it serves to stdout.
    let files: Vec<(&str, String)> = hello_app("L", true)
        .into_iter()
        .map(|(name, text)| {
            let text = text.replace(
                "    def log_message(self, *a):\n        pass",
                "    def log_message(self, fmt, *a):\n        print(\"served\", fmt % a, flush=True)",
            );
            (name, text)
        })
        .collect();
    assert!(files.iter().any(|(_, t)| t.contains("print(\"served\"")));
    let refs: Vec<(&str, &str)> = files.iter().map(|(n, s)| (*n, s.as_str())).collect();
    c.repo.commit(&refs, "L, logging its requests")?;
    let d = c.p.release_and_wait(&c.app, "main", None).await?;
    assert_eq!(d.status, DeployStatus::Succeeded, "{d:#?}");
    let port = c.p.host("local-1").port;

    let b = c.signed_in("logs", &c.p.admin_token).await?;
    b.goto(&c.url(&format!(
        "/hosts/{}/local-1?app=hello",
        c.p.cluster.as_str()
    )))
    .await?;
    let log = "pre#app-log[data-app=hello]";
    b.wait_until("the app's log so far", WAIT, async || {
        let text = b.text_of(log).await?.unwrap_or_default();
        Ok(text.contains(&format!("starting L on {port}")))
    })
    .await?;
    b.mark().await?;
    b.screenshot("host").await?;

    let mut nonce = [0u8; 6];
    getrandom::fill(&mut nonce).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    let path = format!("/written-while-watched-{}", hex::encode(nonce));
    let r = slipway_tests::http()
        .get(format!("http://127.0.0.1:{port}{path}"))
        .send()
        .await?;
    assert!(r.status().is_success(), "{r:?}");
    b.wait_until("the line the app just wrote", WAIT, async || {
        Ok(b.text_of(log).await?.unwrap_or_default().contains(&path))
    })
    .await?;
    assert!(b.still_marked().await?, "the page was reloaded");
    b.screenshot("host-log-followed").await?;
    b.close().await?;
    c.p.shutdown().await
}
