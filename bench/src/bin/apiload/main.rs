//! AppTracker under load, as a separate process (the release `apptracker`
//! binary) on loopback, driven by this Rust client: deploy creation and
//! host-event ingestion (throughput, latency percentiles), a thousand
//! event-stream watchers (delivery latency), and AppTracker's footprint with
//! a thousand hosts heartbeating. On SQLite, or PostgreSQL with `--postgres`.
//!
//!   apiload [--db sqlite|postgres] [--scenarios deploys,events,watchers,heartbeats]
//!           [--runs 3] [--out FILE]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Parser;
use deploy::{
    AppName, Client, Cluster, CreateDeploy, DeployEvent, DeployId, Heartbeat, HostEvent, HostName,
    HostPhase, Version,
};
use futures::StreamExt;
use serde_json::json;
use slipway_bench::fleet::{BenchApp, Shape};
use slipway_bench::results::Results;
use slipway_bench::stats::Summary;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
enum Db {
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Scenario {
    /// `POST /api/v1/deploys`, each to a cluster of its own.
    Deploys,
    /// `POST /api/v1/deploys/{id}/hosts/{host}/events`: every phase of
    /// every host of a deploy.
    Events,
    /// Watchers of one deploy's event stream while its hosts report.
    Watchers,
    /// AppTracker's memory and CPU with hosts heartbeating.
    Heartbeats,
}

#[derive(Debug, Parser)]
#[command(about = "AppTracker's API under load")]
struct Args {
    #[arg(long, value_enum, default_value = "sqlite")]
    db: Db,
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "deploys,events,watchers,heartbeats"
    )]
    scenarios: Vec<Scenario>,
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Deploys created per run.
    #[arg(long, default_value_t = 500)]
    deploys: usize,
    /// Hosts of the event-ingestion deploy (each reports 7 phases).
    #[arg(long, default_value_t = 1000)]
    event_hosts: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Event-stream watchers.
    #[arg(long, default_value_t = 1000)]
    watchers: usize,
    /// Hosts of the watched deploy.
    #[arg(long, default_value_t = 20)]
    watched_hosts: usize,
    /// Heartbeating hosts, and how long their footprint is sampled.
    #[arg(long, default_value_t = 1000)]
    heartbeat_hosts: usize,
    #[arg(long, default_value = "60s", value_parser = humantime_secs)]
    heartbeat_window: Duration,
    /// The release `apptracker` binary (default: next to this one).
    #[arg(long)]
    apptracker_bin: Option<PathBuf>,
    #[arg(long, default_value = "/tmp")]
    work_dir: PathBuf,
    #[arg(long)]
    out: Option<PathBuf>,
}

fn humantime_secs(s: &str) -> Result<Duration, String> {
    let n: u64 = s
        .trim_end_matches('s')
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    Ok(Duration::from_secs(n))
}

mod server;

use server::Server;

fn main() -> anyhow::Result<()> {
    slipway_bench::init_tracing();
    let args = Args::parse();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let results = Results::new(args.out.clone());
    let bin = slipway_bench::sibling_binary(args.apptracker_bin.as_deref(), "apptracker")?;
    let server = Server::start(&bin, &args.work_dir, args.db).await?;
    let c = server.client.clone();
    let repos = tempfile::Builder::new()
        .prefix("slipway-bench-repo-")
        .tempdir_in(&args.work_dir)?;
    let app = BenchApp::create(repos.path(), Shape::Control, None)?;
    c.register_app(&deploy::RegisterApp::new(
        app.name.clone(),
        app.repo.path.display().to_string(),
    ))
    .await?;
    let version = build(&c, &app.name).await?;
    let base = json!({"bench": "api", "db": args.db});
    let with = |extra: serde_json::Value| {
        let mut v = base.clone();
        if let (Some(v), serde_json::Value::Object(e)) = (v.as_object_mut(), extra) {
            v.extend(e);
        }
        v
    };

    for &scenario in &args.scenarios {
        for run in 1..=args.runs {
            let rec = match scenario {
                Scenario::Deploys => {
                    deploys(&c, &app.name, &version, run, args.deploys, args.concurrency).await?
                }
                Scenario::Events => {
                    events(
                        &c,
                        &app.name,
                        &version,
                        run,
                        args.event_hosts,
                        args.concurrency,
                    )
                    .await?
                }
                Scenario::Watchers => {
                    watchers(
                        &c,
                        &app.name,
                        &version,
                        run,
                        args.watchers,
                        args.watched_hosts,
                    )
                    .await?
                }
                Scenario::Heartbeats => {
                    heartbeats(
                        &c,
                        server.pid,
                        run,
                        args.heartbeat_hosts,
                        args.heartbeat_window,
                    )
                    .await?
                }
            };
            let mut rec = with(rec);
            rec["run"] = json!(run);
            rec["apptracker_rss_kb"] = json!(deploy::procfs::rss_kb(server.pid));
            results.record(&rec)?;
        }
    }
    server.stop().await;
    Ok(())
}

async fn build(c: &Client, app: &AppName) -> anyhow::Result<Version> {
    let b = c
        .request_build(app, &deploy::RequestBuild { git_ref: None })
        .await?;
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let b = c.build(b.id).await?;
        if b.status == deploy::BuildStatus::Succeeded {
            return Ok(b.version);
        }
        if b.status.is_terminal() || Instant::now() > deadline {
            bail!("build failed: {:?}", b.error);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn deploy_req(app: &AppName, version: &Version, cluster: &Cluster) -> CreateDeploy {
    CreateDeploy {
        app: app.clone(),
        version: Some(version.clone()),
        git_ref: None,
        cluster: cluster.clone(),
        hosts: None,
        strategy: Default::default(),
        max_failures: Default::default(),
        rollback_on_failure: false,
        confirm: None,
        wait: false,
    }
}

/// Registers `hosts` in `cluster` by heartbeating once for each.
async fn register_hosts(c: &Client, cluster: &Cluster, hosts: &[HostName]) -> anyhow::Result<()> {
    let results: Vec<_> = futures::stream::iter(hosts.iter().map(|h| {
        let c = c.clone();
        let cluster = cluster.clone();
        async move {
            c.heartbeat(&Heartbeat {
                cluster,
                host: h.clone(),
                root: "/srv/slipway".into(),
                apps: Vec::new(),
                peer: None,
            })
            .await
        }
    }))
    .buffer_unordered(32)
    .collect()
    .await;
    for r in results {
        r?;
    }
    Ok(())
}

fn host_names(prefix: &str, n: usize) -> anyhow::Result<Vec<HostName>> {
    (1..=n)
        .map(|i| HostName::parse(format!("{prefix}-{i:04}")).map_err(anyhow::Error::from))
        .collect()
}

/// Runs `n` requests `concurrency` at a time; returns the wall time, each
/// successful request's latency (ms) and the number of errors.
async fn load<F, Fut>(n: usize, concurrency: usize, f: F) -> (Duration, Vec<f64>, usize)
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let started = Instant::now();
    let outcomes: Vec<(f64, bool)> = futures::stream::iter((0..n).map(|i| {
        let fut = f(i);
        async move {
            let t = Instant::now();
            let ok = fut.await.is_ok();
            (t.elapsed().as_secs_f64() * 1000.0, ok)
        }
    }))
    .buffer_unordered(concurrency)
    .collect()
    .await;
    let wall = started.elapsed();
    let lat: Vec<f64> = outcomes.iter().filter(|o| o.1).map(|o| o.0).collect();
    let errors = outcomes.iter().filter(|o| !o.1).count();
    (wall, lat, errors)
}

async fn deploys(
    c: &Client,
    app: &AppName,
    version: &Version,
    run: usize,
    n: usize,
    concurrency: usize,
) -> anyhow::Result<serde_json::Value> {
    // One active deploy per app and cluster: a cluster per deploy, each with
    // one registered host.
    let clusters: Vec<Cluster> = (1..=n)
        .map(|i| Cluster::parse(format!("d{run}-{i:04}")))
        .collect::<Result<_, _>>()?;
    let host = host_names("h", 1)?;
    for chunk in clusters.chunks(64) {
        futures::future::try_join_all(chunk.iter().map(|cl| register_hosts(c, cl, &host))).await?;
    }
    let (wall, lat, errors) = load(n, concurrency, |i| {
        let c = c.clone();
        let req = deploy_req(app, version, &clusters[i]);
        async move {
            c.create_deploy(&req).await?;
            Ok(())
        }
    })
    .await;
    eprintln!(
        "api: deploys run {run}: {n} in {:.2}s ({:.0}/s), p50 {:.1} ms, {errors} errors",
        wall.as_secs_f64(),
        lat.len() as f64 / wall.as_secs_f64(),
        Summary::of(&lat).map_or(f64::NAN, |s| s.p50)
    );
    Ok(json!({
        "scenario": "deploy_create",
        "requests": n,
        "concurrency": concurrency,
        "errors": errors,
        "throughput_rps": lat.len() as f64 / wall.as_secs_f64(),
        "latency_ms": Summary::of(&lat),
    }))
}

/// The phases a grabber reports for one successful install, in order.
const PHASES: [HostPhase; 7] = [
    HostPhase::Downloading,
    HostPhase::Verifying,
    HostPhase::Extracting,
    HostPhase::Switching,
    HostPhase::Starting,
    HostPhase::Checking,
    HostPhase::Done,
];

fn event(cluster: &Cluster, phase: HostPhase) -> HostEvent {
    HostEvent::progress(cluster.clone(), phase, phase.to_string())
}

/// A deploy of `version` to `hosts` fresh hosts of a new cluster.
async fn deploy_to_new_cluster(
    c: &Client,
    app: &AppName,
    version: &Version,
    cluster: &str,
    hosts: usize,
) -> anyhow::Result<(Cluster, Vec<HostName>, DeployId)> {
    let cluster = Cluster::parse(cluster)?;
    let names = host_names("e", hosts)?;
    register_hosts(c, &cluster, &names).await?;
    let d = c.create_deploy(&deploy_req(app, version, &cluster)).await?;
    Ok((cluster, names, d.id))
}

async fn events(
    c: &Client,
    app: &AppName,
    version: &Version,
    run: usize,
    hosts: usize,
    concurrency: usize,
) -> anyhow::Result<serde_json::Value> {
    let (cluster, names, id) =
        deploy_to_new_cluster(c, app, version, &format!("events-{run}"), hosts).await?;
    // Each host reports its phases in order, as a grabber does; hosts
    // report concurrently.
    let lat = Arc::new(Mutex::new(Vec::with_capacity(hosts * PHASES.len())));
    let started = Instant::now();
    let errors: usize = futures::stream::iter(names.iter().map(|h| {
        let (c, cluster, lat) = (c.clone(), cluster.clone(), lat.clone());
        async move {
            let mut errors = 0;
            for phase in PHASES {
                let t = Instant::now();
                match c.host_event(id, h, &event(&cluster, phase)).await {
                    Ok(_) => {
                        if let Ok(mut l) = lat.lock() {
                            l.push(t.elapsed().as_secs_f64() * 1000.0);
                        }
                    }
                    Err(_) => errors += 1,
                }
            }
            errors
        }
    }))
    .buffer_unordered(concurrency)
    .fold(0, |a, b| async move { a + b })
    .await;
    let wall = started.elapsed();
    let lat = lat.lock().map(|l| l.clone()).unwrap_or_default();
    let status = c.deploy(id).await?.status;
    eprintln!(
        "api: events run {run}: {} in {:.2}s ({:.0}/s), p50 {:.1} ms, p99 {:.1} ms, {errors} errors, deploy {status:?}",
        lat.len(),
        wall.as_secs_f64(),
        lat.len() as f64 / wall.as_secs_f64(),
        Summary::of(&lat).map_or(f64::NAN, |s| s.p50),
        Summary::of(&lat).map_or(f64::NAN, |s| s.p99),
    );
    Ok(json!({
        "scenario": "host_events",
        "hosts": hosts,
        "requests": hosts * PHASES.len(),
        "concurrency": concurrency,
        "errors": errors,
        "throughput_rps": lat.len() as f64 / wall.as_secs_f64(),
        "latency_ms": Summary::of(&lat),
        "deploy_status": status,
    }))
}

async fn watchers(
    c: &Client,
    app: &AppName,
    version: &Version,
    run: usize,
    watchers: usize,
    hosts: usize,
) -> anyhow::Result<serde_json::Value> {
    let (cluster, names, id) =
        deploy_to_new_cluster(c, app, version, &format!("watch-{run}"), hosts).await?;
    // Every watcher connects and reads its snapshot before any host reports.
    type Seen = Vec<(String, HostPhase, Instant)>;
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(watchers);
    let mut tasks = tokio::task::JoinSet::new();
    let connect_started = Instant::now();
    for i in 0..watchers {
        let c = c.clone();
        let ready = ready_tx.clone();
        tasks.spawn(async move {
            // Connections are opened a few at a time, as browsers arrive.
            tokio::time::sleep(Duration::from_millis((i / 50) as u64 * 20)).await;
            let mut seen: Seen = Vec::new();
            let Ok(stream) = c.deploy_stream(id).await else {
                return (seen, false);
            };
            let mut stream = std::pin::pin!(stream);
            let mut snapshot_done = false;
            while let Some(ev) = stream.next().await {
                match ev {
                    Ok(DeployEvent::Host { host, .. }) if snapshot_done => {
                        seen.push((host.host.to_string(), host.phase, Instant::now()));
                    }
                    Ok(DeployEvent::Status { status, .. }) => {
                        if !snapshot_done {
                            snapshot_done = true;
                            let _ = ready.send(()).await;
                        }
                        if status.is_terminal() {
                            return (seen, true);
                        }
                    }
                    Ok(_) => {}
                    Err(_) => return (seen, false),
                }
            }
            (seen, false)
        });
    }
    drop(ready_tx);
    let mut connected = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while connected < watchers {
        match tokio::time::timeout_at(deadline, ready_rx.recv()).await {
            Ok(Some(())) => connected += 1,
            _ => break,
        }
    }
    let connect_s = connect_started.elapsed().as_secs_f64();
    eprintln!("api: watchers run {run}: {connected} of {watchers} connected in {connect_s:.1}s");
    // Hosts report their phases; a phase's send time is when its request
    // left.
    let sent: Arc<Mutex<HashMap<(String, HostPhase), Instant>>> = Arc::default();
    let post_started = Instant::now();
    futures::stream::iter(names.iter().map(|h| {
        let (c, cluster, sent) = (c.clone(), cluster.clone(), sent.clone());
        async move {
            for phase in PHASES {
                if let Ok(mut s) = sent.lock() {
                    s.insert((h.to_string(), phase), Instant::now());
                }
                let _ = c.host_event(id, h, &event(&cluster, phase)).await;
            }
        }
    }))
    .buffer_unordered(4)
    .collect::<Vec<()>>()
    .await;
    let posted_s = post_started.elapsed().as_secs_f64();
    let mut lat = Vec::new();
    let mut delivered = 0usize;
    let mut ended = 0usize;
    let sent = sent.lock().map(|s| s.clone()).unwrap_or_default();
    let drain = tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(r) = tasks.join_next().await {
            if let Ok((seen, end)) = r {
                ended += usize::from(end);
                for (h, p, at) in seen {
                    if let Some(t) = sent.get(&(h, p)) {
                        delivered += 1;
                        lat.push(at.saturating_duration_since(*t).as_secs_f64() * 1000.0);
                    }
                }
            }
        }
    })
    .await;
    tasks.abort_all();
    let all_ended_s = post_started.elapsed().as_secs_f64();
    let expected = watchers * hosts * PHASES.len();
    eprintln!(
        "api: watchers run {run}: {delivered} of {expected} events delivered, p50 {:.1} ms, p99 {:.1} ms; {ended} streams ended {:.2}s after the first report{}",
        Summary::of(&lat).map_or(f64::NAN, |s| s.p50),
        Summary::of(&lat).map_or(f64::NAN, |s| s.p99),
        all_ended_s,
        if drain.is_err() { " (timed out)" } else { "" }
    );
    Ok(json!({
        "scenario": "watchers",
        "watchers": watchers,
        "connected": connected,
        "connect_s": connect_s,
        "hosts": hosts,
        "events": hosts * PHASES.len(),
        "expected_deliveries": expected,
        "delivered": delivered,
        "streams_ended": ended,
        "posting_s": posted_s,
        "all_ended_s": all_ended_s,
        "latency_ms": Summary::of(&lat),
    }))
}

async fn heartbeats(
    c: &Client,
    pid: u32,
    run: usize,
    hosts: usize,
    window: Duration,
) -> anyhow::Result<serde_json::Value> {
    let cluster = Cluster::parse(format!("fleet-{run}"))?;
    let names = host_names("f", hosts)?;
    let interval = Duration::from_secs(10);
    let stop = tokio_util::sync::CancellationToken::new();
    let lat = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = tokio::task::JoinSet::new();
    // Each host beats every 10 s, the hosts spread evenly over the interval,
    // as grabbers started at different times are.
    for (i, h) in names.iter().enumerate() {
        let (c, cluster, h, stop, lat) = (
            c.clone(),
            cluster.clone(),
            h.clone(),
            stop.clone(),
            lat.clone(),
        );
        let offset = interval.mul_f64(i as f64 / hosts as f64);
        tasks.spawn(async move {
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + offset, interval);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => {}
                }
                let t = Instant::now();
                let hb = Heartbeat {
                    cluster: cluster.clone(),
                    host: h.clone(),
                    root: "/srv/slipway".into(),
                    apps: Vec::new(),
                    peer: None,
                };
                if c.heartbeat(&hb).await.is_ok()
                    && let Ok(mut l) = lat.lock()
                {
                    l.push(t.elapsed().as_secs_f64() * 1000.0);
                }
            }
        });
    }
    // One full round registers every host; then the quiet window.
    tokio::time::sleep(interval + Duration::from_secs(2)).await;
    let cpu0 = deploy::procfs::cpu_time(pid).unwrap_or_default();
    let mut rss = Vec::new();
    let started = Instant::now();
    while started.elapsed() < window {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if let Some(r) = deploy::procfs::rss_kb(pid) {
            rss.push(r as f64);
        }
    }
    let cpu = deploy::procfs::cpu_time(pid)
        .unwrap_or_default()
        .saturating_sub(cpu0);
    stop.cancel();
    while tasks.join_next().await.is_some() {}
    let registered = c
        .hosts()
        .await?
        .iter()
        .filter(|h| h.cluster == cluster)
        .count();
    let lat = lat.lock().map(|l| l.clone()).unwrap_or_default();
    let cpu_pct = cpu.as_secs_f64() / started.elapsed().as_secs_f64() * 100.0;
    let rss_s = Summary::of(&rss);
    eprintln!(
        "api: heartbeats run {run}: {registered} hosts, AppTracker {:.1} MB RSS (max {:.1}), {:.1} % of a core, heartbeat p50 {:.1} ms",
        rss_s.map_or(f64::NAN, |s| s.p50 / 1024.0),
        rss_s.map_or(f64::NAN, |s| s.max / 1024.0),
        cpu_pct,
        Summary::of(&lat).map_or(f64::NAN, |s| s.p50),
    );
    Ok(json!({
        "scenario": "heartbeats",
        "hosts": registered,
        "window_s": started.elapsed().as_secs_f64(),
        "rss_kb": rss_s,
        "cpu_percent": cpu_pct,
        "latency_ms": Summary::of(&lat),
    }))
}
