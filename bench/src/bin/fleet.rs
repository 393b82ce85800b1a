//! Fleet convergence: AppTracker and N hosts (real grabbers), a deploy of a
//! release to all of them, timed from the request to the last host healthy,
//! with where each host's time went. Optionally the same deploy by Ansible
//! in the same run, for the ratio.
//!
//!   fleet --shape data --hosts 10,50,100 --tree DIR [--backend production]
//!         [--grabbers processes] [--runs 3] [--ansible-venv DIR] [--out FILE]

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use serde_json::json;
use slipway_bench::ansible::{Baseline, FileServer};
use slipway_bench::fleet::{
    Backend, BenchApp, Fleet, FleetOptions, GrabberMode, Shape, free_ports,
};
use slipway_bench::results::Results;

#[derive(Debug, Parser)]
#[command(about = "Deploy convergence on a fleet of simulated hosts")]
struct Args {
    #[arg(long, value_enum, default_value = "data")]
    shape: Shape,
    /// Fleet sizes, one fleet each.
    #[arg(long, value_delimiter = ',', default_value = "10")]
    hosts: Vec<usize>,
    #[arg(long, value_enum, default_value = "embedded")]
    backend: Backend,
    #[arg(long, value_enum, default_value = "in-process")]
    grabbers: GrabberMode,
    /// Measured deploys per fleet (after one unmeasured first install).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// The dependency tree vendored into the data app (`scripts/bench`
    /// installs it).
    #[arg(long)]
    tree: Option<PathBuf>,
    /// The release `grabber` binary (default: next to this one).
    #[arg(long)]
    grabber_bin: Option<PathBuf>,
    /// Scratch space (hosts' roots, the repository, AppTracker's data).
    #[arg(long, default_value = "/tmp")]
    work_dir: PathBuf,
    /// Run the Ansible baseline from this virtualenv (with ansible-core)
    /// after Slipway's deploys, on the same number of hosts.
    #[arg(long)]
    ansible_venv: Option<PathBuf>,
    /// Ansible `--forks` values to try (0 means as many as hosts).
    #[arg(long, value_delimiter = ',', default_value = "5,0")]
    ansible_forks: Vec<usize>,
    /// Measured Ansible runs per forks value.
    #[arg(long, default_value_t = 1)]
    ansible_runs: usize,
    /// Append results (JSON lines) here.
    #[arg(long)]
    out: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    // Apps are started through the shim: this binary may be asked to be one.
    grabber::shim::dispatch();
    slipway_bench::init_tracing();
    let args = Args::parse();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let results = Results::new(args.out.clone());
    let grabber_bin = slipway_bench::sibling_binary(args.grabber_bin.as_deref(), "grabber")?;
    let tree = match args.shape {
        Shape::Data => Some(
            args.tree
                .clone()
                .context("--tree is required for --shape data")?,
        ),
        Shape::Control => None,
    };
    let (tree_files, tree_bytes) = match &tree {
        Some(t) => slipway_bench::tree::size(t)?,
        None => (0, 0),
    };
    for &n in &args.hosts {
        eprintln!(
            "fleet: {n} hosts, {:?} shape, {:?}, grabbers {:?}",
            args.shape, args.backend, args.grabbers
        );
        let fleet = Fleet::start(&FleetOptions {
            hosts: n,
            backend: args.backend,
            grabbers: args.grabbers,
            grabber_bin: grabber_bin.clone(),
            work_dir: args.work_dir.clone(),
            heartbeat: Duration::from_secs(10),
            port_base: 21_000,
            timings: Default::default(),
        })
        .await?;
        let mut app = BenchApp::create(&fleet.dir().join("repos"), args.shape, tree.as_deref())?;
        fleet.register(&app.name, &app.repo.path).await?;
        let mut builds = Vec::new();
        for i in 0..=args.runs {
            if i > 0 {
                app.bump()?;
            }
            builds.push(fleet.build(&app.name).await?);
        }
        let artifact = builds[0]
            .artifact
            .clone()
            .context("build without artifact")?;
        eprintln!(
            "fleet: release {} bytes ({} files, {} bytes unpacked); first install",
            artifact.size, tree_files, tree_bytes
        );
        let first = fleet.deploy(&app.name, &builds[0].version).await?;
        let tl = first.timeline();
        eprintln!(
            "fleet: first install converged in {:.2}s ({} done, {} failed)",
            tl.converge_s, tl.done, tl.failed
        );
        for (run, b) in builds.iter().enumerate().skip(1) {
            let d = fleet.deploy(&app.name, &b.version).await?;
            let tl = d.timeline();
            eprintln!(
                "fleet: run {run}: {n} hosts converged in {:.2}s (control p50 {:.3}s, {} failed)",
                tl.converge_s,
                tl.control.map_or(f64::NAN, |c| c.p50),
                tl.failed
            );
            results.record(&json!({
                "bench": "fleet",
                "shape": args.shape,
                "backend": args.backend,
                "grabbers": args.grabbers,
                "hosts": n,
                "run": run,
                "release_bytes": b.artifact.as_ref().map(|a| a.size),
                "tree_files": tree_files,
                "tree_bytes": tree_bytes,
                "timeline": tl,
            }))?;
        }
        let ports = fleet.ports.clone();
        let www = fleet.dir().join("www");
        // The baseline deploys the same artifacts, served over HTTP.
        let baseline_artifacts = if args.ansible_venv.is_some() && args.shape == Shape::Data {
            std::fs::create_dir_all(&www)?;
            let mut arts = Vec::new();
            for b in &builds {
                let a = b.artifact.clone().context("build without artifact")?;
                let bytes = fleet
                    .client
                    .http()
                    .get(&a.url)
                    .send()
                    .await?
                    .error_for_status()?
                    .bytes()
                    .await?;
                let file = format!("{}-{}.tar.gz", app.name, b.version);
                std::fs::write(www.join(&file), &bytes)?;
                arts.push((b.version.to_string(), file, a.sha256.to_string()));
            }
            Some(arts)
        } else {
            None
        };
        // Slipway's hosts stop before Ansible's start: the same cores.
        let keep = tempfile::Builder::new()
            .prefix("slipway-bench-ansible-")
            .tempdir_in(&args.work_dir)?;
        if let Some(arts) = &baseline_artifacts {
            for (_, f, _) in arts {
                std::fs::copy(www.join(f), keep.path().join(f))?;
            }
        }
        fleet.shutdown().await?;
        if let (Some(venv), Some(arts)) = (&args.ansible_venv, baseline_artifacts) {
            ansible(&args, venv, keep.path(), &arts, &ports, n, &results).await?;
        }
    }
    Ok(())
}

/// The same deploys by Ansible: one unmeasured first install, then
/// `ansible_runs` upgrades per forks value.
async fn ansible(
    args: &Args,
    venv: &std::path::Path,
    www: &std::path::Path,
    arts: &[(String, String, String)],
    ports: &[u16],
    n: usize,
    results: &Results,
) -> anyhow::Result<()> {
    let server_port = free_ports(20_000, 1)?[0];
    let server = FileServer::start(www, server_port).await?;
    let ports = if ports.len() == n {
        ports.to_vec()
    } else {
        free_ports(21_000, n)?
    };
    let base = Baseline::new(venv, &www.join("ansible"), &ports)?;
    let url = |file: &str| format!("{}/{file}", server.url);
    let (v, f, sha) = &arts[0];
    let took = base.deploy(v, &url(f), sha, 5).await?;
    eprintln!(
        "ansible: first install on {n} hosts took {:.1}s",
        took.as_secs_f64()
    );
    let mut next = 1;
    for &forks in &args.ansible_forks {
        let forks = if forks == 0 { n } else { forks };
        for run in 1..=args.ansible_runs {
            let (v, f, sha) = &arts[next % arts.len()];
            next += 1;
            let took = base.deploy(v, &url(f), sha, forks).await?;
            eprintln!(
                "ansible: run {run}: {n} hosts, forks {forks}: {:.1}s",
                took.as_secs_f64()
            );
            results.record(&json!({
                "bench": "ansible",
                "hosts": n,
                "forks": forks,
                "run": run,
                "converge_s": took.as_secs_f64(),
            }))?;
        }
    }
    base.stop_apps();
    drop(server);
    Ok(())
}
