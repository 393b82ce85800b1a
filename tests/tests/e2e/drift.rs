//! Drift over six hosts, each with its grabber and its versionchecker
//! reporting every second: a `current` changed by hand shows `drifted`
//! within one interval, with its reason; a stray app `unknown-app`; an app
//! killed while its grabber is away `not-running`; a stopped versionchecker
//! `stale` after three intervals; `/metrics` parses and its drift gauge
//! matches the table; a sync is refused while another deploy runs, then
//! redeploys exactly the drifted host, and the table turns `in-sync`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use deploy::{DeployStatus, DriftQuery, DriftReport, DriftState, SyncRequest};
use slipway_tests::{AppRepo, Platform, commit_hello, platform, poll};

const SIX: [&str; 6] = ["vc-1", "vc-2", "vc-3", "vc-4", "vc-5", "vc-6"];
/// The versioncheckers' interval (10% jitter either way).
const EVERY: Duration = Duration::from_secs(1);

async fn drift(p: &Platform) -> anyhow::Result<DriftReport> {
    Ok(p.client.drift(&DriftQuery::default()).await?)
}

/// `host`'s row of `app`, as the API has it now.
async fn state_of(p: &Platform, host: &str, app: &str) -> anyhow::Result<Option<DriftState>> {
    Ok(drift(p)
        .await?
        .hosts
        .iter()
        .find(|h| h.host.as_str() == host && h.app.as_str() == app)
        .map(|h| h.state))
}

/// Waits until every host's `hello` is in sync, and nothing else shows.
async fn all_in_sync(p: &Platform) -> anyhow::Result<()> {
    let r = poll(Duration::from_secs(30), || async {
        let d = drift(p).await?;
        Ok(d.hosts.len() == SIX.len() && d.hosts.iter().all(|h| h.state == DriftState::InSync))
    })
    .await;
    if r.is_err() {
        let rows: Vec<String> = drift(p)
            .await?
            .hosts
            .iter()
            .map(|h| format!("{} {} {}: {}", h.host, h.app, h.state, h.reason))
            .collect();
        anyhow::bail!(
            "the six hosts did not all turn in-sync:\n{}",
            rows.join("\n")
        );
    }
    Ok(())
}

/// Replaces a host's `current` by hand, atomically, as an operator might.
pub(crate) fn point_current(
    p: &Platform,
    host: &str,
    app: &str,
    version: &str,
) -> anyhow::Result<()> {
    let dir = p.host(host).root.join("apps").join(app);
    let tmp = dir.join("current.by-hand");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(format!("releases/{version}"), &tmp)?;
    std::fs::rename(&tmp, dir.join("current"))?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn six_hosts_drift_and_sync() -> anyhow::Result<()> {
    let mut p = platform().hosts(&SIX).start().await?;
    let repo = AppRepo::new(p.dir().join("repo"))?;
    let app = p.register("hello", &repo.path).await?;
    commit_hello(&repo, "A", true)?;
    let a = p.release_and_wait(&app, "main", None).await?;
    assert_eq!(a.status, DeployStatus::Succeeded, "{a:#?}");
    commit_hello(&repo, "B", true)?;
    let b = p.release_and_wait(&app, "main", None).await?;
    assert_eq!(b.status, DeployStatus::Succeeded, "{b:#?}");
    let (va, vb) = (a.version.expect("a version"), b.version.expect("a version"));

    for i in 0..SIX.len() {
        p.start_versionchecker(i, EVERY);
    }
    all_in_sync(&p).await?;
    let d = drift(&p).await?;
    assert_eq!(d.summary.len(), 1);
    assert_eq!(d.summary[0].counts.in_sync, 6);
    assert_eq!(d.summary[0].desired, vec![vb.clone()]);
    let row = &d.hosts[0];
    let proc = row.process.as_ref().expect("a running app is reported");
    assert!(proc.rss_bytes > 1 << 20 && proc.uptime_ms > 0, "{row:#?}");
    assert_eq!(proc.version.as_ref(), Some(&vb));
    assert!(row.disk.expect("disk use").releases_bytes > 0, "{row:#?}");
    assert!(
        d.agents.iter().all(|a| !a.stale && a.disk.is_some()),
        "{:#?}",
        d.agents
    );

    // 1. vc-2's `current` changed by hand: drifted, within one interval.
    point_current(&p, "vc-2", "hello", va.as_str())?;
    // After the rename: every read of the host that starts later sees it.
    let changed = deploy::Timestamp::now();
    // And a stray app on vc-6 that nobody deployed.
    let stray = p.host("vc-6").root.join("apps/stray");
    std::fs::create_dir_all(stray.join("releases/1-aaaaaaa"))?;
    std::os::unix::fs::symlink("releases/1-aaaaaaa", stray.join("current"))?;
    // The first row from a report taken after the change (polled far more
    // often than reports come): the very next report must show the drift.
    let first = std::sync::Mutex::new(None);
    poll(Duration::from_secs(10), || async {
        let d = drift(&p).await?;
        let row = |host: &str, app: &str| {
            d.hosts
                .iter()
                .find(|h| h.host.as_str() == host && h.app.as_str() == app)
                .cloned()
        };
        if let Some(r) = row("vc-2", "hello").filter(|r| r.reported_at >= Some(changed))
            && let Ok(mut f) = first.lock()
            && f.is_none()
        {
            *f = Some(r);
        }
        let stray = row("vc-6", "stray").map(|r| r.state);
        Ok(first.lock().is_ok_and(|f| f.is_some()) && stray == Some(DriftState::UnknownApp))
    })
    .await?;
    let r2 = first
        .into_inner()
        .ok()
        .flatten()
        .expect("vc-2's first row after the change");
    assert_eq!(
        r2.state,
        DriftState::Drifted,
        "the next report shows it: {r2:#?}"
    );
    let d = drift(&p).await?;
    assert!(
        r2.reason.contains(&format!("`current` names {va}"))
            && r2.reason.contains(&format!("should run {vb}")),
        "{}",
        r2.reason
    );
    // That report came within one interval (and its jitter), give or take
    // a loaded machine's timer.
    let seen = r2.reported_at.expect("a report").millis_since(changed);
    assert!(
        seen <= (EVERY.as_millis() as u64) * 11 / 10 + 500,
        "drift showed {seen} ms after the change"
    );
    let stray_row = d
        .hosts
        .iter()
        .find(|h| h.app.as_str() == "stray")
        .expect("stray's row");
    assert!(
        stray_row.reason.contains("does not know"),
        "{}",
        stray_row.reason
    );
    std::fs::remove_dir_all(&stray)?;

    // 2. vc-3's app killed while its grabber is away (nothing restarts
    // it): not running. The versionchecker needs no grabber.
    p.stop_grabber(2).await?;
    p.hosts[2].keep_apps = true;
    p.start_grabber(2);
    poll(Duration::from_secs(20), || async {
        Ok(state_of(&p, "vc-3", "hello").await? == Some(DriftState::InSync))
    })
    .await
    .map_err(|e| e.context("vc-3's grabber did not start hello again"))?;
    p.stop_grabber(2).await?;
    let layout = deploy::layout::HostLayout::new(&p.host("vc-3").root);
    let pid = layout
        .read_state(&app)?
        .and_then(|s| s.pid)
        .expect("a recorded pid");
    assert_eq!(
        state_of(&p, "vc-3", "hello").await?,
        Some(DriftState::InSync),
        "the app outlives its grabber"
    );
    nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )?;
    poll(Duration::from_secs(10), || async {
        Ok(state_of(&p, "vc-3", "hello").await? == Some(DriftState::NotRunning))
    })
    .await?;

    // 3. vc-4's versionchecker stopped: stale after three intervals, not
    // before.
    p.stop_versionchecker(3).await?;
    let stopped = Instant::now();
    poll(Duration::from_secs(15), || async {
        Ok(state_of(&p, "vc-4", "hello").await? == Some(DriftState::Stale))
    })
    .await?;
    let took = stopped.elapsed();
    // Its last report came at most an interval (and jitter) before the stop.
    assert!(
        took >= EVERY * 3 - EVERY * 12 / 10,
        "stale after only {took:?}"
    );
    let d = drift(&p).await?;
    let r4 = d
        .hosts
        .iter()
        .find(|h| h.host.as_str() == "vc-4")
        .expect("vc-4's row");
    let age = d
        .generated_at
        .millis_since(r4.reported_at.expect("a report"));
    assert!(age > 3 * EVERY.as_millis() as u64, "{age} ms: {r4:#?}");
    assert!(r4.reason.contains("no report for"), "{}", r4.reason);
    let agent = d
        .agents
        .iter()
        .find(|a| a.host.as_str() == "vc-4")
        .expect("vc-4's agent");
    assert!(agent.stale);

    // The table now: 3 in sync, one each drifted, not running and stale;
    // filters narrow the rows and keep the summary.
    let d = drift(&p).await?;
    let c = d.summary[0].counts;
    assert_eq!(
        (c.in_sync, c.drifted, c.not_running, c.stale),
        (3, 1, 1, 1),
        "{d:#?}"
    );
    let only = p
        .client
        .drift(&DriftQuery {
            app: Some("hello".into()),
            cluster: Some("local".into()),
            state: Some("drifted,not-running".into()),
        })
        .await?;
    let hosts: Vec<&str> = only.hosts.iter().map(|h| h.host.as_str()).collect();
    assert_eq!(hosts, ["vc-2", "vc-3"]);
    assert_eq!(only.summary[0].counts, c);
    let e = p
        .client
        .drift(&DriftQuery {
            state: Some("sideways".into()),
            ..DriftQuery::default()
        })
        .await
        .expect_err("an unknown state");
    assert_eq!(e.code(), Some("invalid_input"), "{e}");

    // /metrics parses, and its drift gauge is the table.
    metrics_match_the_table(&p).await?;

    // 4. Sync. Refused while another deploy of hello to local runs (one to
    // vc-3, whose grabber is away, runs until cancelled).
    let blocking = p.release(&app, vb.as_str(), Some("vc-3")).await?;
    let sync = SyncRequest {
        app: app.clone(),
        cluster: p.cluster.clone(),
    };
    let e = p.client.sync(&sync).await.expect_err("a deploy runs");
    assert_eq!(e.code(), Some("deploy_in_progress"), "{e}");
    assert!(
        e.to_string().contains(&format!("deploy {}", blocking.id)),
        "{e}"
    );
    p.client.cancel_deploy(blocking.id).await?;

    // vc-3's grabber back (it starts hello again), vc-4's versionchecker
    // back: only vc-2 is left out of sync.
    p.start_grabber(2);
    p.start_versionchecker(3, EVERY);
    poll(Duration::from_secs(30), || async {
        let d = drift(&p).await?;
        Ok(d.summary[0].counts.drifted == 1 && d.summary[0].counts.in_sync == 5)
    })
    .await?;
    let out = p.client.sync(&sync).await?;
    let hosts: Vec<&str> = out.hosts.iter().map(|h| h.as_str()).collect();
    assert_eq!(hosts, ["vc-2"], "exactly the drifted host: {out:#?}");
    assert!(out.left.is_empty(), "{out:#?}");
    assert_eq!(out.deploy.version.as_ref(), Some(&vb));
    let deployed: Vec<&str> = out.deploy.hosts.iter().map(|h| h.host.as_str()).collect();
    assert_eq!(deployed, ["vc-2"]);
    let done = p.wait_deploy(out.deploy.id).await?;
    assert_eq!(done.status, DeployStatus::Succeeded, "{done:#?}");
    all_in_sync(&p).await?;
    assert_eq!(
        p.host("vc-2").current("hello").as_deref(),
        Some(vb.as_str())
    );

    // A normal deploy, in the audit log like any.
    let audit = p.client.audit(&deploy::AuditQuery::default()).await?;
    let entry = audit
        .iter()
        .find(|e| e.route.as_deref() == Some("/api/v1/drift/sync") && e.status == 201)
        .expect("the sync is audited");
    let target = entry.target.as_deref().unwrap_or("");
    assert!(
        target.contains(&format!("deploy {}", out.deploy.id)) && target.contains("vc-2"),
        "{entry:#?}"
    );
    assert!(
        audit
            .iter()
            .all(|e| e.route.as_deref() != Some("/api/v1/hosts/report")),
        "reports are agent traffic, not audited"
    );
    // Nothing left to do.
    let e = p.client.sync(&sync).await.expect_err("all in sync");
    assert_eq!(e.code(), Some("nothing_to_sync"), "{e}");
    p.shutdown().await
}

/// Scrapes `/metrics` between two identical drift tables and checks that
/// the text parses and `slipway_drift_hosts` says what the table says.
async fn metrics_match_the_table(p: &Platform) -> anyhow::Result<()> {
    let url = format!("{}/metrics", p.base_url);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let before = drift(p).await?;
        let resp = slipway_tests::http().get(&url).send().await?;
        assert!(
            resp.status().is_success(),
            "GET /metrics: {}",
            resp.status()
        );
        let ctype = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        assert!(ctype.starts_with("text/plain; version=0.0.4"), "{ctype}");
        let text = resp.text().await?;
        let after = drift(p).await?;
        if before.summary != after.summary {
            anyhow::ensure!(Instant::now() < deadline, "the table never held still");
            continue;
        }
        let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))?;
        // Every line is understood: a comment, a type, or a sample whose
        // value is a number.
        for l in text.lines() {
            match prometheus_parse::LineInfo::parse(l) {
                prometheus_parse::LineInfo::Sample { value, .. } => {
                    assert!(value.parse::<f64>().is_ok(), "bad value in {l:?}")
                }
                prometheus_parse::LineInfo::Doc { .. }
                | prometheus_parse::LineInfo::Type { .. } => {}
                other => panic!("{l:?} is not exposition format: {other:?}"),
            }
        }
        let mut gauge: HashMap<(String, String, String), f64> = HashMap::new();
        for s in &scrape.samples {
            if s.metric == "slipway_drift_hosts" {
                let prometheus_parse::Value::Gauge(v) = s.value else {
                    anyhow::bail!("slipway_drift_hosts is not a gauge: {:?}", s.value);
                };
                let label = |k: &str| s.labels.get(k).unwrap_or_default().to_string();
                gauge.insert((label("app"), label("cluster"), label("state")), v);
            }
        }
        for sum in &after.summary {
            for state in DriftState::ALL {
                let key = (
                    sum.app.to_string(),
                    sum.cluster.to_string(),
                    state.as_str().to_string(),
                );
                assert_eq!(
                    gauge.get(&key).copied(),
                    Some(sum.counts.get(state) as f64),
                    "{key:?} in\n{text}"
                );
            }
        }
        assert_eq!(gauge.len(), after.summary.len() * DriftState::ALL.len());
        let metric = |name: &str| scrape.samples.iter().find(|s| s.metric == name);
        let stale = metric("slipway_stale_hosts").expect("stale hosts");
        assert!(
            matches!(stale.value, prometheus_parse::Value::Gauge(v) if v == 1.0),
            "{stale:?}"
        );
        for name in [
            "process_resident_memory_bytes",
            "process_cpu_seconds_total",
            "process_start_time_seconds",
            "process_open_fds",
            "slipway_host_report_age_seconds",
            "slipway_app_resident_memory_bytes",
            "slipway_deploys_total",
        ] {
            assert!(metric(name).is_some(), "no {name} in\n{text}");
        }
        return Ok(());
    }
}
