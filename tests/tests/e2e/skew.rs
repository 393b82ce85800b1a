//! Clock skew between hosts and the control plane: one host's clock three
//! hours ahead, another's three hours behind (libfaketime under the real
//! grabber and versionchecker processes). Both deploy like any other, their
//! events are dated by AppTracker's clock, and their drift rows are
//! `in_sync`, not `stale` nor `deploying`: host clocks never matter.

use std::path::Path;
use std::time::Duration;

use deploy::{DeployStatus, DriftQuery, DriftState, HostPhase, Timestamp};
use slipway_tests::procs::Proc;
use slipway_tests::services::tool;
use slipway_tests::{AppRepo, commit_hello, free_port, get_app, platform, poll};

const GRABBER: &str = env!("CARGO_BIN_EXE_slipway-grabber");
const VERSIONCHECKER: &str = env!("CARGO_BIN_EXE_slipway-versionchecker");

/// The host, its clock's offset (libfaketime's format) and in ms.
const SKEWED: [(&str, &str, i64); 2] = [
    ("ahead", "+3h", 3 * 3_600_000),
    ("behind", "-3h", -3 * 3_600_000),
];

/// libfaketime's library (Debian package faketime), or `None` (outside
/// CI) when it is not installed.
fn libfaketime() -> Option<String> {
    let found = std::fs::read_dir("/usr/lib")
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("faketime/libfaketime.so.1"))
        .find(|p| p.is_file());
    if found.is_none() {
        // Says so: a panic in CI, a loud skip elsewhere.
        tool("faketime-library-libfaketime.so.1", "faketime")?;
    }
    found.map(|p| p.display().to_string())
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// The wall-clock times a process's JSON log lines carry, in unix ms.
fn logged_times(log: &Path) -> anyhow::Result<Vec<i64>> {
    let text = std::fs::read_to_string(log)?;
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v.get("timestamp")?.as_str().map(str::to_string))
        .filter_map(|t| humantime::parse_rfc3339_weak(t.trim_end_matches('Z')).ok())
        .filter_map(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as i64)
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hosts_hours_ahead_or_behind_deploy_and_report_in_sync() -> anyhow::Result<()> {
    let Some(lib) = libfaketime() else {
        return Ok(());
    };
    let p = platform().start().await?;
    let logs = p.dir().join("logs");
    std::fs::create_dir_all(&logs)?;
    let key = p.trusted_keys.first().expect("a signing key").to_string();
    let mut procs = Vec::new();
    let mut ports = Vec::new();
    for (host, offset, _) in SKEWED {
        let root = p.dir().join("hosts").join(host).display().to_string();
        let port = free_port()?;
        let offset_arg = (i32::from(port) - i32::from(slipway_tests::APP_PORT)).to_string();
        // libfaketime preloaded into the real binaries (not under the
        // `faketime` wrapper, which would stand between the test's signals
        // and the process).
        let env = [
            ("LD_PRELOAD", lib.clone()),
            ("FAKETIME", offset.to_string()),
            // Timers (tokio's monotonic clock) run true; the wall clock is off.
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1".to_string()),
            ("SLIPWAY_TOKEN", p.agent_token.clone()),
            ("SLIPWAY_LOG_FORMAT", "json".to_string()),
        ];
        let grabber = strings(&[
            "--server",
            &p.base_url,
            "--cluster",
            "local",
            "--host",
            host,
            "--root",
            &root,
            "--port-offset",
            &offset_arg,
            "--heartbeat",
            "500ms",
            "--stop-apps-on-exit",
            "--trusted-key",
            &key,
        ]);
        let name = format!("grabber-{host}");
        procs.push(Proc::spawn(&name, GRABBER, &grabber, &env, &logs)?);
        let checker = strings(&[
            "agent",
            "--server",
            &p.base_url,
            "--cluster",
            "local",
            "--host",
            host,
            "--root",
            &root,
            "--interval",
            "1s",
        ]);
        let name = format!("versionchecker-{host}");
        procs.push(Proc::spawn(&name, VERSIONCHECKER, &checker, &env, &logs)?);
        ports.push((host, port));
    }
    p.wait_for_hosts(2).await?;

    // The skew is real: each process's own log is dated by its clock.
    let now = Timestamp::now().0;
    for (host, _, ms) in SKEWED {
        let log = logs.join(format!("grabber-{host}.log"));
        let times = logged_times(&log)?;
        assert!(
            !times.is_empty() && times.iter().all(|t| (t - now - ms).abs() < 600_000),
            "{host}'s grabber does not run {ms} ms off: {times:?}"
        );
    }

    let repo = AppRepo::new(p.dir().join("repo"))?;
    commit_hello(&repo, "A", true)?;
    let app = p.register("hello", &repo.path).await?;
    let before = Timestamp::now();
    let d = p.release_and_wait(&app, "main", None).await?;
    let after = Timestamp::now();
    assert_eq!(d.status, DeployStatus::Succeeded, "{d:#?}");
    let version = d.version.clone().expect("a version");
    for (host, port) in &ports {
        assert_eq!(get_app(*port).await?, format!("A {version}\n"), "{host}");
    }
    // Every event is dated by AppTracker, whatever the host's clock says.
    let history = p.client.deploy_events(d.id).await?;
    assert!(
        history.iter().any(|e| e.phase == HostPhase::Done),
        "{history:#?}"
    );
    for e in &history {
        assert!(
            before <= e.at && e.at <= after,
            "{} at {} is outside the deploy ({before} to {after}): a host's clock dated it",
            e.host,
            e.at
        );
    }
    // Drift: both hosts in sync, their reports fresh by AppTracker's clock.
    let query = DriftQuery {
        app: Some(app.to_string()),
        ..Default::default()
    };
    let in_sync = poll(Duration::from_secs(30), || async {
        let report = p.client.drift(&query).await?;
        Ok(report.hosts.len() == 2 && report.hosts.iter().all(|h| h.state == DriftState::InSync))
    })
    .await;
    assert!(
        in_sync.is_ok(),
        "{:#?}",
        p.client.drift(&query).await?.hosts
    );
    for mut proc in procs {
        assert!(proc.stop().await?, "exits cleanly: {}", proc.tail());
    }
    p.shutdown().await
}
