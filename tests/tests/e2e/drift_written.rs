//! A Python app running as root (no app user) imports a module of its own,
//! so Python writes `__pycache__/` into its release: that is not drift. With
//! its versionchecker reporting, the drift table shows it `in-sync` report
//! after report, and the grabber's reconciles (every second here) leave it
//! running rather than install it again and restart it. An installed file
//! changed by hand is still caught: the next reconcile installs the release
//! again.

use std::time::Duration;

use deploy::{DeployStatus, DriftQuery, DriftState, Timestamp};
use slipway_tests::{AppRepo, Platform, hello_app, platform, poll};

const HOST: &str = "pyc-1";

/// The test app whose `app.py` imports `greeting.py`, which Python caches
/// in `__pycache__/` beside it (the main script itself is never cached).
fn app_with_a_module(message: &str) -> Vec<(&'static str, String)> {
    let mut files = hello_app(message, true);
    for (name, text) in &mut files {
        if *name == "app.py" {
            *text = format!("import greeting\n{text}");
        }
    }
    files.push(("greeting.py", "WORD = \"hi\"\n".into()));
    files
}

/// The pid the grabber recorded for `app`.
fn pid_of(p: &Platform, app: &str) -> Option<u64> {
    let path = p.host(HOST).root.join("apps").join(app).join("state.json");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    v.get("pid")?.as_u64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn files_python_writes_into_its_release_are_not_drift() -> anyhow::Result<()> {
    let mut p = platform()
        .hosts(&[HOST])
        .configure_grabbers(|g| g.reconcile_interval = Duration::from_secs(1))
        .start()
        .await?;
    let repo = AppRepo::new(p.dir().join("repo"))?;
    let app = p.register("hello", &repo.path).await?;
    let files = app_with_a_module("A");
    let refs: Vec<(&str, &str)> = files.iter().map(|(n, c)| (*n, c.as_str())).collect();
    repo.commit(&refs, "A imports a module")?;
    let a = p.release_and_wait(&app, "main", None).await?;
    assert_eq!(a.status, DeployStatus::Succeeded, "{a:#?}");
    let va = a.version.clone().expect("a version");

    // Python wrote its cache into the release: the app runs as root.
    let release = p
        .host(HOST)
        .root
        .join("apps/hello/releases")
        .join(va.as_str());
    let pycache = release.join("__pycache__");
    poll(Duration::from_secs(10), || async {
        Ok(std::fs::read_dir(&pycache).is_ok_and(|mut d| d.next().is_some()))
    })
    .await
    .map_err(|e| e.context("python wrote no __pycache__ into the release"))?;
    let written = Timestamp::now();
    let pid = pid_of(&p, "hello").expect("a pid in state.json");

    // Every report taken after that says in-sync, and the same process
    // runs throughout, while the grabber reconciles every second. (A
    // reconcile that skips the running release leaves no deploy event, as
    // its host has ended; a reinstall would restart the app.)
    p.start_versionchecker(0, Duration::from_secs(1));
    const REPORTS: usize = 4;
    let rows = std::sync::Mutex::new(Vec::<deploy::DriftHost>::new());
    poll(Duration::from_secs(30), || async {
        let d = p.client.drift(&DriftQuery::default()).await?;
        let row = d
            .hosts
            .into_iter()
            .find(|h| h.host.as_str() == HOST && h.app.as_str() == "hello")
            .filter(|r| r.reported_at > Some(written));
        let mut rows = rows.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
        if let Some(row) = row
            && rows
                .last()
                .is_none_or(|last| last.reported_at != row.reported_at)
        {
            rows.push(row);
        }
        let wrong = rows.iter().any(|r| {
            r.state != DriftState::InSync || r.process.as_ref().map(|p| p.pid as u64) != Some(pid)
        });
        Ok(wrong || rows.len() >= REPORTS)
    })
    .await?;
    let rows = rows.into_inner().unwrap_or_default();
    for row in &rows {
        assert_eq!(row.state, DriftState::InSync, "{row:#?}");
        assert_eq!(row.current.as_ref(), Some(&va), "{row:#?}");
        assert_eq!(
            row.process.as_ref().map(|p| p.pid as u64),
            Some(pid),
            "not restarted: {row:#?}"
        );
    }
    let span = rows[REPORTS - 1]
        .reported_at
        .zip(rows[0].reported_at)
        .map_or(0, |(last, first)| last.millis_since(first));
    assert!(span >= 2_000, "the reports span two reconciles: {span} ms");
    assert_eq!(pid_of(&p, "hello"), Some(pid), "not restarted");
    assert!(pycache.is_dir(), "the release was not replaced");

    // An installed file changed by hand: the next reconcile installs the
    // release again from its artifact and restarts the app (no event: the
    // deploy's host has ended; the grabber logs the changed path).
    let module = release.join("greeting.py");
    std::fs::write(&module, "WORD = \"patched\"\n")?;
    poll(Duration::from_secs(20), || async {
        Ok(pid_of(&p, "hello").is_some_and(|now| now != pid)
            && std::fs::read_to_string(&module).is_ok_and(|t| t == "WORD = \"hi\"\n"))
    })
    .await
    .map_err(|e| e.context("the changed release was not installed again"))?;
    p.shutdown().await
}
