//! The soak's checks after the deploys: every host runs what AppTracker
//! wants it to (on disk, as a live process, in the drift table), and the
//! process's resources and the tables stayed flat.

use std::collections::{BTreeMap, HashMap};

use deploy::{AppName, DriftQuery, DriftState, HostName};
use serde::Serialize;

use super::Sample;
use crate::fleet::Fleet;

/// One verdict, printed and recorded.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub check: String,
    pub ok: bool,
    pub detail: String,
}

impl Check {
    pub fn new(check: impl Into<String>, ok: bool, detail: impl Into<String>) -> Self {
        Self {
            check: check.into(),
            ok,
            detail: detail.into(),
        }
    }
}

/// Up to ten of `items`, one an indented line, and how many more.
pub fn first_few(items: &[String]) -> String {
    let mut s = String::new();
    for i in items.iter().take(10) {
        s.push_str("\n      ");
        s.push_str(i);
    }
    if items.len() > 10 {
        s.push_str(&format!("\n      … and {} more", items.len() - 10));
    }
    s
}

/// Every (host, app): `current` and the live process are the desired
/// version, and the drift table says in sync with the same desired
/// version. Returns what disagrees.
pub async fn consistency(fleet: &Fleet, apps: &[AppName]) -> anyhow::Result<Vec<String>> {
    let client = &fleet.client;
    let drift = client
        .drift(&DriftQuery {
            cluster: Some(fleet.cluster.to_string()),
            ..Default::default()
        })
        .await?;
    let rows: HashMap<(&HostName, &AppName), &deploy::DriftHost> =
        drift.hosts.iter().map(|r| ((&r.host, &r.app), r)).collect();
    let mut bad = Vec::new();
    for host in &fleet.platform().hosts {
        let desired = client.desired_state(&fleet.cluster, &host.name).await?;
        let layout = deploy::layout::HostLayout::new(&host.root);
        for app in apps {
            let at = format!("{} {app}", host.name);
            let Some(want) = desired.apps.iter().find(|r| &r.app == app) else {
                bad.push(format!("{at}: no desired version"));
                continue;
            };
            let current = host.current(app.as_str());
            if current.as_deref() != Some(want.version.as_str()) {
                bad.push(format!(
                    "{at}: current {current:?}, desired {}",
                    want.version
                ));
            }
            let pid = layout.read_state(app).ok().flatten().and_then(|s| s.pid);
            let release = layout.release_dir(app, &want.version);
            match pid {
                None => bad.push(format!("{at}: no process recorded")),
                Some(pid) if !deploy::procfs::pid_alive(pid) => {
                    bad.push(format!("{at}: process {pid} is not alive"));
                }
                Some(pid) => {
                    let cwd = deploy::procfs::cwd(pid);
                    if cwd.is_none() || cwd != release.canonicalize().ok() {
                        bad.push(format!(
                            "{at}: process {pid} runs from {cwd:?}, not {}",
                            want.version
                        ));
                    }
                }
            }
            match rows.get(&(&host.name, app)) {
                None => bad.push(format!("{at}: no drift row")),
                Some(r) => {
                    if r.state != DriftState::InSync {
                        bad.push(format!("{at}: drift {}: {}", r.state, r.reason));
                    }
                    if r.desired.as_ref() != Some(&want.version) {
                        bad.push(format!(
                            "{at}: drift wants {:?}, desired state {}",
                            r.desired, want.version
                        ));
                    }
                }
            }
        }
    }
    Ok(bad)
}

/// The figures at the end against the baseline (after the first
/// deploys), and what grew while nothing was deployed.
pub fn flat(base: &Sample, idle: &Sample, end: &Sample, hosts: usize, apps: usize) -> Vec<Check> {
    let mut c = Vec::new();
    let expected = hosts * apps;
    c.push(Check::new(
        "app processes: one per host and app",
        end.app_processes == expected,
        format!("{} running, {expected} expected", end.app_processes),
    ));
    c.push(Check::new(
        "no zombie children",
        end.zombies == 0,
        format!("{}", end.zombies),
    ));
    let fd_bound = base.fds + (base.fds / 10).max(32);
    c.push(Check::new(
        "open files flat",
        end.fds <= fd_bound,
        format!(
            "{} at the end, {} at baseline (bound {fd_bound})",
            end.fds, base.fds
        ),
    ));
    let rss_bound = base.rss_mib * 1.25 + 32.0;
    c.push(Check::new(
        "memory flat",
        end.rss_mib <= rss_bound,
        format!(
            "{:.1} MiB at the end, {:.1} MiB at baseline (bound {rss_bound:.1})",
            end.rss_mib, base.rss_mib
        ),
    ));
    // What grows with deploys must not grow without them.
    let per_deploy = [
        "deploys",
        "deploy_hosts",
        "host_events",
        "builds",
        "audit_log",
    ];
    let grew: Vec<String> = per_deploy
        .iter()
        .filter(|t| end.rows(t) != idle.rows(t))
        .map(|t| format!("{t} {} -> {}", idle.rows(t), end.rows(t)))
        .collect();
    c.push(Check::new(
        "no rows added while nothing is deployed",
        grew.is_empty(),
        if grew.is_empty() {
            format!("{:.0}s idle", end.elapsed_s - idle.elapsed_s)
        } else {
            grew.join(", ")
        },
    ));
    let bounds: BTreeMap<&str, usize> = [
        ("hosts", hosts),
        ("host_reports", hosts),
        ("desired", expected),
        ("app_reports", expected),
        ("apps", apps),
    ]
    .into_iter()
    .collect();
    let over: Vec<String> = bounds
        .iter()
        .filter(|(t, n)| end.rows(t) > **n as i64)
        .map(|(t, n)| format!("{t} {} > {n}", end.rows(t)))
        .collect();
    c.push(Check::new(
        "per-host tables bounded by hosts and apps",
        over.is_empty(),
        if over.is_empty() {
            "yes".into()
        } else {
            over.join(", ")
        },
    ));
    let deploys = end.rows("deploys").max(1) as f64;
    let dh = end.rows("deploy_hosts").max(1) as f64;
    let events_per_host = end.rows("host_events") as f64 / dh;
    c.push(Check::new(
        "host events per host and deploy bounded (<= 16)",
        events_per_host <= 16.0,
        format!(
            "{events_per_host:.2} events per host-deploy; per deploy: {:.1} deploy_hosts, {:.1} host_events, {:.2} audit_log, {:.2} builds",
            dh / deploys,
            end.rows("host_events") as f64 / deploys,
            end.rows("audit_log") as f64 / deploys,
            end.rows("builds") as f64 / deploys
        ),
    ));
    c
}
