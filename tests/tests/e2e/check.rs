//! `versionchecker check`, the real binary, as Nagios or Icinga run it:
//! against an AppTracker whose hosts report (here: reports made by the
//! test) all in sync (OK, 0), one drifted (WARNING, 1), two drifted or not
//! running (CRITICAL, 2), one stale (WARNING), and against a closed port or
//! with bad flags (UNKNOWN, 3). Every output parses as plugin output. On
//! SQLite and on PostgreSQL, with `/metrics` parsed on both.

use std::time::Duration;

use deploy::report::{AppDisk, AppReport, HostReport, ProcessReport};
use deploy::{AppName, Client, CreateToken, DeployStatus, HostName, Version};
use regex::Regex;
use slipway_tests::{AppRepo, Builder, commit_hello};

const HOSTS: [&str; 3] = ["n-1", "n-2", "n-3"];
const EXE: &str = env!("CARGO_BIN_EXE_slipway-versionchecker");

/// What a run of the plugin gave.
#[derive(Debug)]
struct Run {
    code: i32,
    status: String,
    text: String,
    /// label → (value, warn, crit, min, max)
    perf: Vec<(String, f64, String, String, String, String)>,
}

/// Runs the plugin and parses its one line as Nagios plugin output:
/// `SERVICE STATUS - text | 'label'=value[UOM];warn;crit;min;max ...`.
async fn check(server: &str, token: &str, args: &[&str]) -> anyhow::Result<Run> {
    let mut cmd = tokio::process::Command::new(EXE);
    cmd.arg("check")
        .arg("--server")
        .arg(server)
        .args(args)
        .env("SLIPWAY_TOKEN", token)
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(30), cmd.output()).await??;
    let stdout = String::from_utf8(out.stdout)?;
    let code = out.status.code().unwrap_or(-1);
    let lines: Vec<&str> = stdout.lines().collect();
    anyhow::ensure!(lines.len() == 1, "one line of output, not {stdout:?}");
    let line = Regex::new(
        r"^(?P<service>[A-Z][A-Z ]*?) (?P<status>OK|WARNING|CRITICAL|UNKNOWN) - (?P<text>[^|]+?)(?: \| (?P<perf>.+))?$",
    )?;
    let caps = line
        .captures(lines[0])
        .ok_or_else(|| anyhow::anyhow!("not plugin output: {:?}", lines[0]))?;
    assert_eq!(&caps["service"], "SLIPWAY DRIFT");
    let item = Regex::new(
        r"^'(?P<label>(?:[^']|'')+)'=(?P<value>-?[0-9.]+)(?P<uom>[a-zA-Z%]*)(?:;(?P<warn>[^;]*)(?:;(?P<crit>[^;]*)(?:;(?P<min>[-0-9.]*)(?:;(?P<max>[-0-9.]*))?)?)?)?$",
    )?;
    let mut perf = Vec::new();
    if let Some(p) = caps.name("perf") {
        for part in p.as_str().split(' ') {
            let c = item
                .captures(part)
                .ok_or_else(|| anyhow::anyhow!("bad perfdata item {part:?} in {:?}", lines[0]))?;
            let get = |n: &str| c.name(n).map_or("", |m| m.as_str()).to_string();
            perf.push((
                get("label"),
                get("value").parse()?,
                get("warn"),
                get("crit"),
                get("min"),
                get("max"),
            ));
        }
    }
    let status = caps["status"].to_string();
    let expected = match status.as_str() {
        "OK" => 0,
        "WARNING" => 1,
        "CRITICAL" => 2,
        _ => 3,
    };
    assert_eq!(code, expected, "the exit code is the status: {stdout}");
    Ok(Run {
        code,
        status,
        text: caps["text"].to_string(),
        perf,
    })
}

impl Run {
    fn perf(&self, label: &str) -> f64 {
        self.perf
            .iter()
            .find(|p| p.0 == label)
            .map(|p| p.1)
            .unwrap_or_else(|| panic!("no '{label}' in {self:?}"))
    }
}

/// What one host says it runs.
fn host_report(host: &str, version: &Version, running: bool, interval_ms: u64) -> HostReport {
    HostReport {
        cluster: deploy::Cluster::parse("local").expect("a valid cluster"),
        host: HostName::parse(host).expect("a host name"),
        interval_ms,
        age_ms: 0,
        agent: "test".into(),
        disk: None,
        apps: vec![AppReport {
            app: AppName::parse("hello").expect("an app name"),
            current: Some(version.clone()),
            releases: vec![version.clone()],
            process: running.then(|| ProcessReport {
                pid: 4242,
                version: Some(version.clone()),
                uptime_ms: 1_000,
                rss_bytes: 10 << 20,
                cpu_ms: 10,
                cpu_percent: None,
            }),
            restarts: 0,
            disk: AppDisk::default(),
            config_version: 0,
            stopped: false,
            changed_on_disk: None,
            changed_path: None,
            error: None,
        }],
    }
}

async fn scenario(platform: Builder) -> anyhow::Result<()> {
    let p = platform.hosts(&HOSTS).start().await?;
    let repo = AppRepo::new(p.dir().join("repo"))?;
    let app = p.register("hello", &repo.path).await?;
    commit_hello(&repo, "A", true)?;
    let d = p.release_and_wait(&app, "main", None).await?;
    assert_eq!(d.status, DeployStatus::Succeeded, "{d:#?}");
    let v = d.version.expect("a version");
    let other = Version::parse("99-fffffff")?;
    let agent = Client::new(p.base_url.clone()).with_token(p.agent_token.clone());
    let viewer = p
        .client
        .create_token(&CreateToken {
            name: "nagios".into(),
            role: "viewer".into(),
            cluster: None,
            host: None,
        })
        .await?
        .token;
    let url = p.base_url.as_str();
    let hour = 3_600_000;
    let args = ["--app", "hello", "--cluster", "local", "-w", "0", "-c", "1"];

    // All three run what they should: OK.
    for h in HOSTS {
        agent.report(&host_report(h, &v, true, hour)).await?;
    }
    let ok = check(url, &viewer, &args).await?;
    assert_eq!((ok.code, ok.status.as_str()), (0, "OK"), "{ok:?}");
    assert!(
        ok.text.contains("3 of 3 hosts of hello on local in sync"),
        "{ok:?}"
    );
    assert_eq!(ok.perf("drifted"), 0.0);
    assert_eq!(ok.perf("in_sync"), 3.0);
    let drifted = ok.perf.iter().find(|p| p.0 == "drifted").expect("drifted");
    assert_eq!((drifted.2.as_str(), drifted.3.as_str()), ("0", "1"));
    assert_eq!((drifted.4.as_str(), drifted.5.as_str()), ("0", "3"));

    // One runs another version: WARNING.
    agent
        .report(&host_report("n-2", &other, true, hour))
        .await?;
    let w = check(url, &viewer, &args).await?;
    assert_eq!((w.code, w.status.as_str()), (1, "WARNING"), "{w:?}");
    assert_eq!(w.perf("drifted"), 1.0);
    assert!(
        w.text.contains("n-2 hello: `current` names 99-fffffff"),
        "{w:?}"
    );

    // And another is down: CRITICAL.
    agent.report(&host_report("n-3", &v, false, hour)).await?;
    let c = check(url, &viewer, &args).await?;
    assert_eq!((c.code, c.status.as_str()), (2, "CRITICAL"), "{c:?}");
    assert_eq!(c.perf("drifted"), 2.0);
    assert_eq!(c.perf("not_running"), 1.0);
    // A looser critical threshold makes it a warning again.
    let loose = ["--app", "hello", "-w", "0", "-c", "2"];
    assert_eq!(check(url, &viewer, &loose).await?.code, 1);

    // All fine again but n-1's versionchecker fell silent: stale, WARNING.
    agent.report(&host_report("n-2", &v, true, hour)).await?;
    agent.report(&host_report("n-3", &v, true, hour)).await?;
    agent.report(&host_report("n-1", &v, true, 100)).await?;
    slipway_tests::poll(Duration::from_secs(10), || async {
        Ok(check(url, &viewer, &args).await?.perf("stale") == 1.0)
    })
    .await?;
    let s = check(url, &viewer, &args).await?;
    assert_eq!((s.code, s.status.as_str()), (1, "WARNING"), "{s:?}");
    assert!(s.text.contains("1 stale (n-1)"), "{s:?}");

    // Nothing can be said: UNKNOWN.
    let closed = format!("http://127.0.0.1:{}", slipway_tests::free_port()?);
    let u = check(&closed, &viewer, &args).await?;
    assert_eq!((u.code, u.status.as_str()), (3, "UNKNOWN"), "{u:?}");
    assert!(u.text.contains("cannot reach"), "{u:?}");
    let u = check(url, "slp_not_a_token", &args).await?;
    assert_eq!(u.code, 3, "{u:?}");
    let u = check(url, &viewer, &["--app", "nope"]).await?;
    assert_eq!(u.code, 3, "no such app: {u:?}");
    let u = check(url, &viewer, &["-w", "lots"]).await?;
    assert_eq!(u.code, 3, "bad flags: {u:?}");

    // A report for another cluster's host is refused to this agent.
    let mut foreign = host_report("n-1", &v, true, hour);
    foreign.cluster = deploy::Cluster::parse("elsewhere")?;
    let e = agent.report(&foreign).await.expect_err("another cluster");
    assert_eq!(e.code(), Some("forbidden"), "{e}");
    let mut silly = host_report("n-1", &v, true, hour);
    silly.interval_ms = 1;
    let e = agent.report(&silly).await.expect_err("a 1 ms interval");
    assert_eq!(e.code(), Some("invalid_input"), "{e}");

    // /metrics parses on this backend too (its queries are the same SQL).
    let text = slipway_tests::http()
        .get(format!("{url}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))?;
    let stale = scrape
        .samples
        .iter()
        .find(|s| s.metric == "slipway_drift_hosts" && s.labels.get("state") == Some("stale"))
        .expect("a stale gauge");
    assert!(
        matches!(stale.value, prometheus_parse::Value::Gauge(n) if n == 1.0),
        "{stale:?}"
    );
    let builds = scrape
        .samples
        .iter()
        .find(|s| {
            s.metric.starts_with("slipway_build_duration_seconds")
                && matches!(s.value, prometheus_parse::Value::Histogram(_))
        })
        .expect("a build duration histogram");
    let prometheus_parse::Value::Histogram(buckets) = &builds.value else {
        anyhow::bail!("not a histogram: {builds:?}");
    };
    assert!(buckets.iter().any(|b| b.count >= 1.0), "{buckets:?}");
    p.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nagios_check_on_sqlite() -> anyhow::Result<()> {
    scenario(slipway_tests::platform()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nagios_check_on_postgresql() -> anyhow::Result<()> {
    let Some(db) = slipway_tests::services::postgres().await else {
        return Ok(());
    };
    let url = db.url.clone();
    scenario(slipway_tests::platform().configure(move |c| c.database_url = Some(url))).await
}
