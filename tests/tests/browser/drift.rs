//! Issue 18, "Must show" (c): a file in a host's `current` release changed
//! by hand shows `drifted` on the drift page (its versioncheckers reporting
//! every second, checking the release's files against what the grabber
//! installed); the sync button of the app and cluster installs the release
//! again from its artifact, and the table turns in sync. (Re-pointing
//! `current` itself is the e2e drift test's.)

use std::time::Duration;

use deploy::DeployStatus;
use slipway_tests::browser::Browser;
use slipway_tests::{Platform, commit_hello};

use crate::{THREE, console};

/// How long a drift change may take to show: a few report intervals.
const SHOWS: Duration = Duration::from_secs(30);

/// Edits a file of the release a host's `current` names, by hand, as an
/// operator hot-patching a host might; returns the file.
fn edit_current(p: &Platform, host: &str, app: &str) -> anyhow::Result<std::path::PathBuf> {
    let file = p
        .host(host)
        .root
        .join("apps")
        .join(app)
        .join("current")
        .join("app.py");
    let mut text = std::fs::read_to_string(&file)?;
    text.push_str("\n# hot-patched by hand\n");
    std::fs::write(&file, text)?;
    Ok(file)
}

/// The drift table's `(host, state)` rows of `hello`, states spelt with
/// `_` (`in_sync`), sorted by host.
async fn states(b: &Browser) -> anyhow::Result<Vec<(String, String)>> {
    let rows = "#drift-hosts tr[data-host][data-app=hello]";
    let hosts = b.attrs(rows, "data-host").await?;
    let states = b
        .attrs(&format!("{rows} .badge[data-state]"), "data-state")
        .await?;
    let mut out: Vec<(String, String)> = hosts
        .into_iter()
        .zip(states)
        .map(|(h, s)| {
            (
                h.unwrap_or_default(),
                s.unwrap_or_default().replace('-', "_"),
            )
        })
        .collect();
    out.sort();
    Ok(out)
}

/// Reloads the drift page until `want` holds of its rows.
async fn until_rows(
    b: &Browser,
    what: &str,
    want: impl Fn(&[(String, String)]) -> bool,
) -> anyhow::Result<()> {
    b.wait_until(what, SHOWS, async || {
        b.reload().await?;
        Ok(want(&states(b).await?))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_drifted_host_is_synced_from_the_drift_page() -> anyhow::Result<()> {
    let Some(mut c) = console(&THREE).await? else {
        return Ok(());
    };
    commit_hello(&c.repo, "A", true)?;
    let a = c.p.release_and_wait(&c.app, "main", None).await?;
    assert_eq!(a.status, DeployStatus::Succeeded, "{a:#?}");
    commit_hello(&c.repo, "B", true)?;
    let bd = c.p.release_and_wait(&c.app, "main", None).await?;
    assert_eq!(bd.status, DeployStatus::Succeeded, "{bd:#?}");
    let vb = bd.version.expect("B");
    for i in 0..THREE.len() {
        c.p.start_versionchecker(i, Duration::from_secs(1));
    }

    let b = c.signed_in("drift", &c.p.admin_token).await?;
    b.goto(&c.url("/drift")).await?;
    let all_in_sync =
        |rows: &[(String, String)]| rows.len() == 3 && rows.iter().all(|(_, s)| s == "in_sync");
    until_rows(&b, "the three hosts in sync", all_in_sync).await?;

    let patched = edit_current(&c.p, "local-2", "hello")?;
    until_rows(&b, "local-2 drifted", |rows| {
        rows.iter().any(|(h, s)| h == "local-2" && s == "drifted")
    })
    .await?;
    let why = b
        .text_of("#drift-hosts tr[data-host=local-2][data-app=hello]")
        .await?
        .unwrap_or_default();
    assert!(
        why.contains("were changed on this host since it was installed"),
        "the reason names the change: {why}"
    );
    b.screenshot("drifted").await?;

    let cluster = c.p.cluster.as_str();
    let sync = format!("form.action.sync[data-app=hello][data-cluster={cluster}]");
    assert_eq!(
        b.count(&format!(
            "{sync}[method=post i] input[type=hidden][name=csrf]"
        ))
        .await?,
        1,
        "the sync form posts with a hidden csrf field"
    );
    let before = c.p.client.deploys(100).await?.len();
    b.mark().await?;
    b.click(&format!("{sync} button")).await?;
    // Wherever the form leads, a new page loads, and a deploy was made.
    b.wait_until(
        "the sync form to be submitted",
        Duration::from_secs(10),
        async || Ok(!b.still_marked().await?),
    )
    .await?;
    assert_eq!(
        c.p.client.deploys(100).await?.len(),
        before + 1,
        "the sync made one deploy"
    );
    b.goto(&c.url("/drift")).await?;
    until_rows(&b, "the three hosts in sync after the sync", all_in_sync).await?;
    b.screenshot("in-sync").await?;
    assert_eq!(
        c.p.host("local-2").current("hello").as_deref(),
        Some(vb.as_str())
    );
    let text = std::fs::read_to_string(&patched)?;
    assert!(
        !text.contains("hot-patched"),
        "the release was installed again from its artifact: {text}"
    );
    b.close().await?;
    c.p.shutdown().await
}
