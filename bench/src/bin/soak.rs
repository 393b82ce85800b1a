//! The soak (issue 22): AppTracker and N in-process hosts, M apps deployed
//! over and over (each deploy a new version) with faults injected at
//! random: versions that exit at once on some hosts (their health check
//! fails, the hosts roll back), grabbers stopped and restarted mid-deploy
//! (some for longer than `host_unreachable`). Deploys run one after another
//! per app, the apps side by side, each bounded in time. Afterwards every
//! host must run (on disk and as a live process) the version AppTracker
//! wants it to, the drift table must agree, and file descriptors,
//! processes, memory and table sizes must be flat. Exits non-zero when a
//! check fails.
//!
//!   soak [--hosts 200] [--apps 10] [--deploys 500] [--seed N]
//!        [--backend embedded|production] [--out FILE]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use deploy::{
    AppName, Client, Cluster, CreateDeploy, DeployStatus, DeployStatuses, HostName, HostPhase,
    HostSelector,
};
use serde_json::json;
use slipway_bench::fleet::{self, Backend, BenchApp, Fleet, FleetOptions, GrabberMode, Shape};
use slipway_bench::results::Results;
use slipway_bench::soak::checks::{Check, consistency, first_few, flat};
use slipway_bench::soak::{self, Mix, PlannedDeploy, Rng, Tables};

#[derive(Debug, Parser)]
#[command(about = "Many deploys with faults injected; then every host must agree with AppTracker")]
struct Args {
    #[arg(long, default_value_t = 200)]
    hosts: usize,
    #[arg(long, default_value_t = 10)]
    apps: usize,
    /// Deploys after the first install of each app.
    #[arg(long, default_value_t = 500)]
    deploys: usize,
    #[arg(long, value_enum, default_value = "embedded")]
    backend: Backend,
    /// Seeds the plan and the fault schedule (default: the clock; printed).
    #[arg(long)]
    seed: Option<u64>,
    /// Share of versions that exit at once on a few of their hosts.
    #[arg(long, default_value_t = 0.2)]
    failing: f64,
    /// Share of deploys to a host regex rather than every host.
    #[arg(long, default_value_t = 0.25)]
    subset: f64,
    /// Share of deploys rolling in batches.
    #[arg(long, default_value_t = 0.3)]
    rolling: f64,
    /// Share of rolling deploys with `rollback_on_failure`.
    #[arg(long, default_value_t = 0.3)]
    rollback: f64,
    /// Mean time between two grabber stops, in milliseconds (0: none).
    #[arg(long, default_value_t = 3000)]
    stop_every_ms: u64,
    /// Share of grabber stops that last longer than `host_unreachable`.
    #[arg(long, default_value_t = 0.1)]
    long_stops: f64,
    /// A deploy not ended within this many seconds per batch fails the
    /// soak: each batch may take `host_deadline` (60 s here) when a host
    /// never answers, plus the sweep, a retry and the bake.
    #[arg(long, default_value_t = 180)]
    deploy_timeout: u64,
    /// No deploy starts after this many minutes (the rest fail the soak).
    #[arg(long, default_value_t = 60)]
    time_limit: u64,
    /// Take a sample every this many deploys.
    #[arg(long, default_value_t = 50)]
    sample_every: usize,
    /// The release `grabber` binary (default: next to this one).
    #[arg(long)]
    grabber_bin: Option<PathBuf>,
    #[arg(long, default_value = "/tmp")]
    work_dir: PathBuf,
    /// Append the results (one JSON line) here.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// AppTracker's and the grabbers' timings in the soak: production's, but
/// short enough that a host missing a deploy ends it within the deadline.
const HEARTBEAT: Duration = Duration::from_secs(5);
const HOST_UNREACHABLE: Duration = Duration::from_secs(20);
const HOST_DEADLINE: Duration = Duration::from_secs(60);
const RECONCILE: Duration = Duration::from_secs(30);
/// How often each host's versionchecker reports (the drift table).
const REPORT_EVERY: Duration = Duration::from_secs(30);

/// The soak's app: the control shape (`exec sleep`), except that it exits
/// at once on the hosts listed in its `fail-on` file (shell builtins only,
/// so the exit is certain within the health check's grace).
const RUN: &str = r#"command = 'while read h; do [ "$h" = "$SLIPWAY_HOST" ] && exit 3; done < fail-on; exec sleep 1000000'"#;

fn manifest() -> anyhow::Result<String> {
    let base = BenchApp::manifest(Shape::Control);
    let (run, grace) = ("command = \"exec sleep 1000000\"", "grace = \"100ms\"");
    anyhow::ensure!(
        base.contains(run) && base.contains(grace),
        "the control app's manifest changed: {base}"
    );
    // A second of grace: a healthy host's check never races a loaded machine.
    Ok(base.replace(run, RUN).replace(grace, "grace = \"1s\""))
}

fn main() -> anyhow::Result<()> {
    grabber::shim::dispatch();
    slipway_bench::init_tracing();
    let args = Args::parse();
    let failed = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(args))?;
    if failed > 0 {
        eprintln!("soak: FAILED ({failed} checks)");
        std::process::exit(1);
    }
    eprintln!("soak: passed");
    Ok(())
}

/// What the app workers share.
struct Shared {
    client: Client,
    cluster: Cluster,
    hosts: Vec<HostName>,
    deploy_timeout: Duration,
    stop_starting: Instant,
    done: AtomicUsize,
    problems: Mutex<Vec<String>>,
    outcomes: Mutex<Vec<Outcome>>,
    stops: Mutex<Vec<Stop>>,
}

impl Shared {
    fn problem(&self, p: String) {
        eprintln!("soak: PROBLEM {p}");
        self.problems
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(p);
    }
}

/// How one planned deploy went, in brief (kept for hundreds of deploys
/// in the process whose memory is measured).
#[derive(Debug, Clone)]
struct Outcome {
    failing: bool,
    status: DeployStatus,
    seconds: f64,
    rollback_on_failure: bool,
    /// A grabber of one of its hosts stopped while it ran (or up to
    /// `SETTLE` before).
    faulted: bool,
    /// What went wrong, for a deploy that did not succeed: its id, app,
    /// error and first failed hosts.
    what: String,
    /// Hosts of a failing version the deploy counted as done.
    failing_done: Vec<String>,
}

/// How long after its grabber came back a host may still be catching up.
const SETTLE: Duration = Duration::from_secs(10);

/// A grabber stop: which host, when, and when it came back.
#[derive(Debug, Clone, Copy)]
struct Stop {
    host: usize,
    at: Instant,
    back: Option<Instant>,
    long: bool,
}

async fn run(args: Args) -> anyhow::Result<usize> {
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(1)
    });
    anyhow::ensure!(args.hosts > 0 && args.apps > 0, "need hosts and apps");
    anyhow::ensure!(args.sample_every > 0, "--sample-every must be positive");
    eprintln!(
        "soak: {} hosts, {} apps, {} deploys, {:?}, seed {seed}",
        args.hosts, args.apps, args.deploys, args.backend
    );
    let wall = Instant::now();
    let results = Results::new(args.out.clone());
    let grabber_bin = slipway_bench::sibling_binary(args.grabber_bin.as_deref(), "grabber")?;
    let mut fleet = Fleet::start(&FleetOptions {
        hosts: args.hosts,
        backend: args.backend,
        grabbers: GrabberMode::InProcess,
        grabber_bin,
        work_dir: args.work_dir.clone(),
        heartbeat: HEARTBEAT,
        port_base: 21_000,
        timings: fleet::Timings {
            host_deadline: Some(HOST_DEADLINE),
            host_unreachable: Some(HOST_UNREACHABLE),
            reconcile_interval: Some(RECONCILE),
        },
    })
    .await?;
    for i in 0..args.hosts {
        fleet.platform_mut().start_versionchecker(i, REPORT_EVERY);
    }
    let tables = Tables::connect(&fleet.platform().config().database_url()).await?;
    let hosts_dir = fleet.dir().join("hosts");

    // The apps, each installed once on every host: the warm-up.
    let toml = manifest()?;
    let mut apps = Vec::new();
    for i in 0..args.apps {
        let name = AppName::parse(format!("soak-{i:02}"))?;
        let extra = [("slipway.toml", toml.as_str()), ("fail-on", "")];
        let app = BenchApp::named(
            &fleet.dir().join("repos"),
            name,
            Shape::Control,
            None,
            &extra,
        )?;
        fleet.register(&app.name, &app.repo.path).await?;
        apps.push(app);
    }
    let first = futures::future::join_all(apps.iter().map(|a| install(&fleet, &a.name))).await;
    for r in first {
        r.context("the first install (warm-up) failed")?;
    }
    let names: Vec<AppName> = apps.iter().map(|a| a.name.clone()).collect();
    let started = Instant::now();
    let samples = Mutex::new(vec![
        soak::sample("installed", 0, started, &hosts_dir, &tables).await?,
    ]);

    let mut rng = Rng::new(seed);
    let plan = soak::plan(
        &mut rng,
        args.deploys,
        args.apps,
        &fleet.hosts,
        Mix {
            failing: args.failing,
            subset: args.subset,
            rolling: args.rolling,
            rollback: args.rollback,
        },
    )?;
    let shared = Shared {
        client: fleet.client.clone(),
        cluster: fleet.cluster.clone(),
        hosts: fleet.hosts.clone(),
        deploy_timeout: Duration::from_secs(args.deploy_timeout),
        stop_starting: Instant::now() + Duration::from_secs(args.time_limit * 60),
        done: AtomicUsize::new(0),
        problems: Mutex::new(Vec::new()),
        outcomes: Mutex::new(Vec::new()),
        stops: Mutex::new(Vec::new()),
    };
    let finished = AtomicBool::new(false);
    let mut per_app: Vec<Vec<PlannedDeploy>> = vec![Vec::new(); args.apps];
    for p in plan {
        per_app[p.app].push(p);
    }
    let workers = async {
        let runs = apps
            .into_iter()
            .zip(per_app)
            .map(|(app, plan)| run_app(&shared, app, plan));
        futures::future::join_all(runs).await;
        finished.store(true, Ordering::SeqCst);
    };
    let mut fault_rng = Rng::new(seed ^ 0x5EED_FA17);
    let faults = inject(&mut fleet, &mut fault_rng, &args, &finished, &shared.stops);
    let sampler = async {
        let mut next = args.sample_every;
        while !finished.load(Ordering::SeqCst) {
            let done = shared.done.load(Ordering::SeqCst);
            if done >= next {
                match soak::sample(format!("after {done}"), done, started, &hosts_dir, &tables)
                    .await
                {
                    Ok(s) => {
                        eprintln!(
                            "soak: {done} deploys after {:.0}s: {} fds, {:.0} MiB, {} apps running",
                            s.elapsed_s, s.fds, s.rss_mib, s.app_processes
                        );
                        lock(&samples).push(s);
                    }
                    Err(e) => shared.problem(format!("cannot take a sample: {e:#}")),
                }
                next = done + args.sample_every;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    };
    let (_, faulted, _) = futures::join!(workers, faults, sampler);
    if let Err(e) = faulted {
        shared.problem(format!("injecting faults: {e:#}"));
    }
    let soak_s = started.elapsed().as_secs_f64();
    eprintln!("soak: deploys ended after {soak_s:.1}s; checking");

    // Quiet: no deploy under way, then at least a reconcile and a report.
    if let Err(e) = wait_idle(
        &shared.client,
        None,
        &shared.cluster,
        Duration::from_secs(180),
    )
    .await
    {
        shared.problem(format!("deploys still under way after the soak: {e:#}"));
    }
    let done = shared.done.load(Ordering::SeqCst);
    let idle = soak::sample("idle", done, started, &hosts_dir, &tables).await?;
    let quiet = Instant::now();
    let mut disagree;
    let mut agreed_s = None;
    let deadline = quiet + RECONCILE + REPORT_EVERY * 2 + Duration::from_secs(30);
    loop {
        disagree = consistency(&fleet, &names).await?;
        if disagree.is_empty() && agreed_s.is_none() {
            agreed_s = Some(quiet.elapsed().as_secs_f64());
        }
        let waited = quiet.elapsed() > RECONCILE + Duration::from_secs(5);
        if (disagree.is_empty() && waited) || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let converge_s = quiet.elapsed().as_secs_f64();
    let end = soak::sample("end", done, started, &hosts_dir, &tables).await?;
    let mut samples = samples.into_inner().unwrap_or_else(|e| e.into_inner());
    samples.push(idle.clone());
    samples.push(end.clone());

    let outcomes = shared
        .outcomes
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let stops = lock(&shared.stops).clone();
    let mut checks: Vec<Check> = Vec::new();
    let problems = shared
        .problems
        .lock()
        .map(|p| p.clone())
        .unwrap_or_default();
    checks.push(Check::new(
        "every planned deploy ran and ended",
        problems.is_empty() && outcomes.len() == args.deploys,
        format!(
            "{} of {} ended; {} problems{}",
            outcomes.len(),
            args.deploys,
            problems.len(),
            first_few(&problems)
        ),
    ));
    checks.push(Check::new(
        "every host runs its desired version (disk, process, drift)",
        disagree.is_empty(),
        format!(
            "{} disagreements after {converge_s:.1}s (first agreed after {}){}",
            disagree.len(),
            agreed_s.map_or("never".into(), |s| format!("{s:.1}s")),
            first_few(&disagree)
        ),
    ));
    let unfaulted: Vec<String> = outcomes
        .iter()
        .filter(|o| !o.failing && !o.faulted && o.status != DeployStatus::Succeeded)
        .map(|o| o.what.clone())
        .collect();
    checks.push(Check::new(
        "a deploy without an injected fault succeeds",
        unfaulted.is_empty(),
        format!("{} did not{}", unfaulted.len(), first_few(&unfaulted)),
    ));
    let healthy_bad: Vec<String> = outcomes
        .iter()
        .flat_map(|o| o.failing_done.iter().cloned())
        .collect();
    checks.push(Check::new(
        "a host whose version exits is never done",
        healthy_bad.is_empty(),
        format!("{}{}", healthy_bad.len(), first_few(&healthy_bad)),
    ));
    let base = samples.get(1).unwrap_or(&samples[0]).clone();
    checks.extend(flat(&base, &idle, &end, args.hosts, args.apps));

    // Figures.
    print_outcomes(&outcomes, &stops);
    soak::print_samples(&samples);
    let failed = checks.iter().filter(|c| !c.ok).count();
    println!("\nchecks (baseline: `{}`):", base.label);
    for c in &checks {
        let verdict = if c.ok { "pass" } else { "FAIL" };
        println!("  [{verdict}] {}: {}", c.check, c.detail);
    }
    let wall_s = wall.elapsed().as_secs_f64();
    println!(
        "\nsoak: {} hosts, {} apps, {} deploys in {soak_s:.1}s (wall {wall_s:.1}s with setup and checks), seed {seed}",
        args.hosts, args.apps, args.deploys
    );
    results.record(&json!({
        "bench": "soak",
        "backend": args.backend,
        "hosts": args.hosts,
        "apps": args.apps,
        "deploys": args.deploys,
        "seed": seed,
        "soak_s": soak_s,
        "wall_s": wall_s,
        "converge_s": converge_s,
        "agreed_s": agreed_s,
        "statuses": status_counts(&outcomes),
        "grabber_stops": stops.len(),
        "long_stops": stops.iter().filter(|s| s.long).count(),
        "samples": samples,
        "checks": checks,
    }))?;
    fleet.shutdown().await?;
    Ok(failed)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Builds the app's current commit and deploys it to every host: the
/// first install must succeed.
async fn install(fleet: &Fleet, app: &AppName) -> anyhow::Result<()> {
    let b = fleet.build(app).await?;
    let d = fleet.deploy(app, &b.version).await?;
    if d.deploy.status != DeployStatus::Succeeded {
        bail!(
            "{app}: first install ended {}: {:?}",
            d.deploy.status,
            d.deploy.error
        );
    }
    Ok(())
}

/// Runs one app's deploys in order; a deploy that does not end stops the
/// app's run (the next would be refused).
async fn run_app(sh: &Shared, mut app: BenchApp, plan: Vec<PlannedDeploy>) {
    let n = plan.len();
    for (i, p) in plan.into_iter().enumerate() {
        if Instant::now() > sh.stop_starting {
            sh.problem(format!(
                "{}: time limit reached, {} deploys not run",
                app.name,
                n - i
            ));
            return;
        }
        match one_deploy(sh, &mut app, &p).await {
            Ok(o) => lock(&sh.outcomes).push(o),
            Err(e) => {
                sh.problem(format!("{} deploy #{}: {e:#}", app.name, p.n));
                return;
            }
        }
        sh.done.fetch_add(1, Ordering::SeqCst);
    }
}

async fn one_deploy(sh: &Shared, app: &mut BenchApp, p: &PlannedDeploy) -> anyhow::Result<Outcome> {
    let fail_on: String = p.failing_on.iter().map(|h| format!("{h}\n")).collect();
    app.bump_with(&[("fail-on", &fail_on)])?;
    let build = fleet::build(&sh.client, &app.name).await?;
    // A rollback of the previous deploy may still run.
    wait_idle(&sh.client, Some(&app.name), &sh.cluster, sh.deploy_timeout).await?;
    let started = Instant::now();
    let d = sh
        .client
        .create_deploy(&CreateDeploy {
            app: app.name.clone(),
            version: Some(build.version.clone()),
            git_ref: None,
            cluster: sh.cluster.clone(),
            hosts: p.hosts.as_deref().map(HostSelector::parse).transpose()?,
            strategy: p.strategy,
            max_failures: p.max_failures,
            rollback_on_failure: p.rollback_on_failure,
            confirm: None,
            wait: false,
        })
        .await
        .context("cannot create the deploy")?;
    let deploy = loop {
        let now = sh.client.deploy(d.id).await?;
        if now.status.is_terminal() {
            break now;
        }
        // The deploy's own bound: batch after batch, each ended by
        // `host_deadline` at the latest (a rolling deploy of four batches
        // whose hosts time out in each may take four of them).
        let batches = now.hosts.iter().map(|h| h.batch + 1).max().unwrap_or(1);
        let bound = sh.deploy_timeout * batches;
        if started.elapsed() > bound {
            bail!(
                "deploy {} ({}) did not end within {:?} ({} batches): {}",
                d.id,
                build.version,
                bound,
                batches,
                now.status
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let ended = Instant::now();
    let targets: Vec<&HostName> = deploy.hosts.iter().map(|h| &h.host).collect();
    let faulted = lock(&sh.stops).iter().any(|s| {
        let back = s.back.unwrap_or(ended) + SETTLE;
        targets.contains(&&sh.hosts[s.host]) && s.at <= ended && back >= started
    });
    let failed: Vec<String> = deploy
        .hosts
        .iter()
        .filter(|h| !h.phase.is_success())
        .take(3)
        .map(|h| {
            format!(
                "{} {}: {}",
                h.host,
                h.phase,
                h.message.as_deref().unwrap_or("")
            )
        })
        .collect();
    Ok(Outcome {
        failing: !p.failing_on.is_empty(),
        status: deploy.status,
        seconds: (ended - started).as_secs_f64(),
        rollback_on_failure: p.rollback_on_failure,
        faulted,
        what: format!(
            "deploy {} of {} (plan #{}): {} {:?} [{}]",
            deploy.id,
            deploy.app,
            p.n,
            deploy.status,
            deploy.error,
            failed.join("; ")
        ),
        failing_done: deploy
            .hosts
            .iter()
            .filter(|h| p.failing_on.contains(&h.host) && h.phase == HostPhase::Done)
            .map(|h| format!("deploy {}: {} done", deploy.id, h.host))
            .collect(),
    })
}

/// Waits until no deploy (of `app`, or any) to `cluster` is under way.
async fn wait_idle(
    client: &Client,
    app: Option<&AppName>,
    cluster: &Cluster,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let busy = client
            .deploys_filtered(app, Some(cluster), Some(&DeployStatuses::under_way()), 50)
            .await?;
        if busy.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            let ids: Vec<String> = busy
                .iter()
                .map(|d| format!("{} {}", d.id, d.status))
                .collect();
            bail!("still under way after {timeout:?}: {}", ids.join(", "));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Stops a random grabber every `--stop-every-ms` on average and starts it
/// again after a short or a long pause, until the deploys are finished;
/// then starts every stopped one.
async fn inject(
    fleet: &mut Fleet,
    rng: &mut Rng,
    args: &Args,
    finished: &AtomicBool,
    log: &Mutex<Vec<Stop>>,
) -> anyhow::Result<()> {
    let n = fleet.hosts.len();
    let every = Duration::from_millis(args.stop_every_ms);
    let mut down: Vec<(Instant, usize)> = Vec::new();
    let mut next = Instant::now() + rng.between(every / 2, every * 3 / 2);
    let start = |fleet: &mut Fleet, rng: &mut Rng, i: usize| {
        // Half the restarted grabbers keep their apps running when they
        // stop next (as in production), half stop them.
        fleet.platform_mut().hosts[i].keep_apps = rng.chance(0.5);
        fleet.platform_mut().start_grabber(i);
        let now = Instant::now();
        if let Some(s) = lock(log).iter_mut().rev().find(|s| s.host == i) {
            s.back = Some(now);
        }
    };
    while !finished.load(Ordering::SeqCst) {
        let now = Instant::now();
        let (due, later): (Vec<_>, Vec<_>) = down.into_iter().partition(|(t, _)| *t <= now);
        down = later;
        for (_, i) in due {
            start(fleet, rng, i);
        }
        if !every.is_zero() && now >= next {
            let i = rng.below(n);
            if !down.iter().any(|(_, j)| *j == i) {
                let long = rng.chance(args.long_stops);
                let pause = if long {
                    rng.between(
                        HOST_UNREACHABLE + Duration::from_secs(5),
                        HOST_UNREACHABLE + Duration::from_secs(10),
                    )
                } else {
                    rng.between(Duration::from_millis(200), Duration::from_secs(3))
                };
                lock(log).push(Stop {
                    host: i,
                    at: Instant::now(),
                    back: None,
                    long,
                });
                let name = fleet.hosts[i].clone();
                fleet
                    .platform_mut()
                    .stop_grabber(i)
                    .await
                    .with_context(|| format!("stopping {name}'s grabber"))?;
                down.push((Instant::now() + pause, i));
            }
            next = Instant::now() + rng.between(every / 2, every * 3 / 2);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (_, i) in down {
        start(fleet, rng, i);
    }
    Ok(())
}

fn status_counts(outcomes: &[Outcome]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for o in outcomes {
        *m.entry(o.status.to_string()).or_default() += 1;
    }
    m
}

fn print_outcomes(outcomes: &[Outcome], stops: &[Stop]) {
    let mut by: BTreeMap<(&str, String), usize> = BTreeMap::new();
    for o in outcomes {
        let kind = match (o.failing, o.faulted) {
            (true, _) => "failing version",
            (false, true) => "grabber stopped",
            (false, false) => "no fault",
        };
        *by.entry((kind, o.status.to_string())).or_default() += 1;
    }
    println!("\ndeploys by kind and status:");
    for ((kind, status), n) in &by {
        println!("  {kind:<16} {status:<10} {n}");
    }
    let secs: Vec<f64> = outcomes.iter().map(|o| o.seconds).collect();
    if let Some(s) = slipway_bench::stats::Summary::of(&secs) {
        println!(
            "deploy time (s): p50 {:.2}, p95 {:.2}, max {:.2}",
            s.p50, s.p95, s.max
        );
    }
    let rollbacks = outcomes.iter().filter(|o| o.rollback_on_failure).count();
    println!(
        "faults: {} failing versions, {} grabber stops ({} longer than host_unreachable), {} deploys with rollback_on_failure",
        outcomes.iter().filter(|o| o.failing).count(),
        stops.len(),
        stops.iter().filter(|s| s.long).count(),
        rollbacks
    );
}
