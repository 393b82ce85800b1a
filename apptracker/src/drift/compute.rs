//! The drift computation: for every app on every host, what it should run
//! (AppTracker's desired state) against what its versionchecker reported,
//! with a verdict and the reason for it. Pure: the caller reads the inputs
//! (AppTracker from its database) and passes the time.
//!
//! The rules, in order (the first that applies wins):
//!
//! 1. A deploy of the app to the host is in flight (an active deploy whose
//!    row for the host is not terminal): `deploying`. A rollout is not drift.
//! 2. No report from the host ever: `deploying` while the host (or the
//!    latest deploy to it) is younger than three intervals, since its
//!    versionchecker may not have had its first turn; `stale` after.
//! 3. The last report is older than three of the host's intervals: `stale`
//!    (what it runs is not known, so it is neither in sync nor drifted).
//! 4. A deploy touched the app on the host after the last report was taken:
//!    `deploying` (the report predates the change; the next one will tell).
//! 5. With a desired version: no `current` → `missing`; another version
//!    in `current`, or a process still running another release →
//!    `drifted`; no process → `not-running`; else `in-sync`.
//! 6. Without one, an app that has a `current` or a process: `unknown-app`.
//!    An app with neither (a first install that failed and rolled back to
//!    nothing) is not reported at all.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use deploy::drift::{AgentStatus, DriftCounts, DriftHost, DriftState, DriftSummary, LimitBreach};
use deploy::report::{AppReport, FsSpace};
use deploy::{AppName, Cluster, DeployId, HostName, HostPhase, Timestamp, Version};
use serde::Deserialize;

/// What a host should run of an app: a row of AppTracker's `desired` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    pub cluster: Cluster,
    pub host: HostName,
    pub app: AppName,
    pub version: Version,
    pub deploy: DeployId,
    /// The config version its deploy runs (0: none).
    pub config_version: u64,
    /// Its deploy stopped the app (`deploy stop`): no process is in sync.
    pub stopped: bool,
}

/// The latest deploy activity for an app on a host: when a deploy last
/// changed its row there (a phase, done, failed, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub cluster: Cluster,
    pub host: HostName,
    pub app: AppName,
    pub deploy: DeployId,
    pub at: Timestamp,
}

/// A host in a deploy that has not ended, in a phase that is not terminal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InFlight {
    pub cluster: Cluster,
    pub host: HostName,
    pub app: AppName,
    pub deploy: DeployId,
    pub phase: HostPhase,
}

/// A host the grabber registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    pub cluster: Cluster,
    pub host: HostName,
    pub registered_at: Timestamp,
}

/// A host's latest report, as AppTracker stored it.
#[derive(Debug, Clone, PartialEq)]
pub struct Reported {
    pub cluster: Cluster,
    pub host: HostName,
    /// When the layout was read, by AppTracker's clock.
    pub observed_at: Timestamp,
    pub interval_ms: u64,
    pub disk: Option<FsSpace>,
    pub apps: Vec<AppReport>,
}

/// Everything the computation looks at.
#[derive(Debug, Clone)]
pub struct Inputs {
    pub desired: Vec<Desired>,
    pub changes: Vec<Change>,
    pub in_flight: Vec<InFlight>,
    pub registered: Vec<Registered>,
    pub reports: Vec<Reported>,
    /// The apps AppTracker knows, to say why an unknown app is unknown.
    pub known_apps: BTreeSet<AppName>,
    pub limits: ResourceLimits,
    /// The interval assumed for a host that never reported.
    pub default_interval: Duration,
    pub now: Timestamp,
}

impl Inputs {
    /// No hosts, no deploys, no limits, at `now`.
    pub fn new(now: Timestamp, default_interval: Duration) -> Self {
        Self {
            desired: Vec::new(),
            changes: Vec::new(),
            in_flight: Vec::new(),
            registered: Vec::new(),
            reports: Vec::new(),
            known_apps: BTreeSet::new(),
            limits: ResourceLimits::default(),
            default_interval,
            now,
        }
    }
}

/// How many intervals without a report make a host stale.
pub const STALE_AFTER_INTERVALS: u64 = 3;

/// The verdicts, per app and host, and per host agent.
#[derive(Debug, Clone, PartialEq)]
pub struct Fleet {
    /// Sorted by cluster, app, host.
    pub hosts: Vec<DriftHost>,
    /// Sorted by cluster, host.
    pub agents: Vec<AgentStatus>,
}

type HostKey = (Cluster, HostName);
type AppKey = (Cluster, HostName, AppName);

/// Computes every verdict.
pub fn compute(inputs: &Inputs) -> Fleet {
    let now = inputs.now;
    let reports: HashMap<HostKey, &Reported> = inputs
        .reports
        .iter()
        .map(|r| ((r.cluster.clone(), r.host.clone()), r))
        .collect();
    let registered: HashMap<HostKey, Timestamp> = inputs
        .registered
        .iter()
        .map(|r| ((r.cluster.clone(), r.host.clone()), r.registered_at))
        .collect();
    let desired: HashMap<AppKey, &Desired> = inputs
        .desired
        .iter()
        .map(|d| ((d.cluster.clone(), d.host.clone(), d.app.clone()), d))
        .collect();
    let mut changes: HashMap<AppKey, &Change> = HashMap::new();
    for c in &inputs.changes {
        let key = (c.cluster.clone(), c.host.clone(), c.app.clone());
        let newer = changes.get(&key).is_none_or(|old| c.at > old.at);
        if newer {
            changes.insert(key, c);
        }
    }
    let in_flight: HashMap<AppKey, &InFlight> = inputs
        .in_flight
        .iter()
        .map(|f| ((f.cluster.clone(), f.host.clone(), f.app.clone()), f))
        .collect();

    // Every (cluster, host, app) someone cares about: desired, in flight,
    // or reported with something installed.
    let mut keys: BTreeSet<(Cluster, AppName, HostName)> = BTreeSet::new();
    for (c, h, a) in desired.keys().chain(in_flight.keys()) {
        keys.insert((c.clone(), a.clone(), h.clone()));
    }
    for r in &inputs.reports {
        for a in &r.apps {
            if a.current.is_some() || a.process.is_some() {
                keys.insert((r.cluster.clone(), a.app.clone(), r.host.clone()));
            }
        }
    }

    let mut hosts = Vec::with_capacity(keys.len());
    for (cluster, app, host) in keys {
        let hk = (cluster.clone(), host.clone());
        let ak = (cluster.clone(), host.clone(), app.clone());
        let report = reports.get(&hk).copied();
        let interval = report
            .map(|r| Duration::from_millis(r.interval_ms))
            .unwrap_or(inputs.default_interval);
        let ctx = Ctx {
            now,
            stale_after: interval * STALE_AFTER_INTERVALS as u32,
            interval,
            desired: desired.get(&ak).copied(),
            change: changes.get(&ak).copied(),
            in_flight: in_flight.get(&ak).copied(),
            registered_at: registered.get(&hk).copied(),
            report,
            app_report: report.and_then(|r| r.apps.iter().find(|a| a.app == app)),
            known: inputs.known_apps.contains(&app),
        };
        let (state, reason) = ctx.verdict(&app);
        let app_report = ctx.app_report;
        let over_limits = app_report
            .map(|a| inputs.limits.breaches(&app, a))
            .unwrap_or_default();
        hosts.push(DriftHost {
            state,
            reason,
            desired: ctx.desired.map(|d| d.version.clone()),
            desired_deploy: ctx.desired.map(|d| d.deploy),
            current: app_report.and_then(|a| a.current.clone()),
            process: app_report.and_then(|a| a.process.clone()),
            restarts: app_report.map_or(0, |a| a.restarts),
            disk: app_report.map(|a| a.disk),
            reported_at: report.map(|r| r.observed_at),
            over_limits,
            cluster,
            host,
            app,
        });
    }

    let mut agent_keys: BTreeSet<HostKey> = registered.keys().cloned().collect();
    agent_keys.extend(reports.keys().cloned());
    let agents = agent_keys
        .into_iter()
        .map(|(cluster, host)| {
            let key = (cluster.clone(), host.clone());
            let report = reports.get(&key).copied();
            let interval = report
                .map(|r| Duration::from_millis(r.interval_ms))
                .unwrap_or(inputs.default_interval);
            let stale_after = (interval * STALE_AFTER_INTERVALS as u32).as_millis() as u64;
            let since = report
                .map(|r| r.observed_at)
                .or_else(|| registered.get(&key).copied());
            AgentStatus {
                stale: since.is_none_or(|t| now.millis_since(t) > stale_after),
                reported_at: report.map(|r| r.observed_at),
                interval_ms: report.map(|r| r.interval_ms),
                disk: report.and_then(|r| r.disk),
                cluster,
                host,
            }
        })
        .collect();
    Fleet { hosts, agents }
}

struct Ctx<'a> {
    now: Timestamp,
    interval: Duration,
    stale_after: Duration,
    desired: Option<&'a Desired>,
    change: Option<&'a Change>,
    in_flight: Option<&'a InFlight>,
    registered_at: Option<Timestamp>,
    report: Option<&'a Reported>,
    app_report: Option<&'a AppReport>,
    known: bool,
}

impl Ctx<'_> {
    fn should_run(&self) -> String {
        match self.desired {
            Some(d) => format!("should run {} (deploy {})", d.version, d.deploy),
            None => "should run nothing".to_string(),
        }
    }

    fn verdict(&self, app: &AppName) -> (DriftState, String) {
        use DriftState::*;
        let stale_ms = self.stale_after.as_millis() as u64;
        let every = humantime::format_duration(self.interval);
        // 1. A rollout is not drift.
        if let Some(f) = self.in_flight {
            return (
                Deploying,
                format!(
                    "deploy {} is under way here ({}); {}",
                    f.deploy,
                    f.phase,
                    self.should_run()
                ),
            );
        }
        // 2. Never reported.
        let Some(report) = self.report else {
            let since = match (self.registered_at, self.change.map(|c| c.at)) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
            return match since {
                Some(t) if self.now.millis_since(t) <= stale_ms => (
                    Deploying,
                    format!(
                        "waiting for the first report of its versionchecker (here since {t}); {}",
                        self.should_run()
                    ),
                ),
                Some(t) => (
                    Stale,
                    format!(
                        "its versionchecker never reported (here since {t}, expected every {every})"
                    ),
                ),
                None => (Stale, "its versionchecker never reported".to_string()),
            };
        };
        // 3. Too old to say anything.
        let age = self.now.millis_since(report.observed_at);
        if age > stale_ms {
            return (
                Stale,
                format!(
                    "no report for {} (last at {}; expected every {every})",
                    humantime::format_duration(Duration::from_secs(age / 1000)),
                    report.observed_at
                ),
            );
        }
        // 4. Taken before the latest change: not evidence of anything.
        if let Some(c) = self.change
            && c.at > report.observed_at
        {
            return (
                Deploying,
                format!(
                    "deploy {} changed it at {}, after the last report ({}); waiting for the next",
                    c.deploy, c.at, report.observed_at
                ),
            );
        }
        let a = self.app_report;
        let current = a.and_then(|a| a.current.as_ref());
        let process = a.and_then(|a| a.process.as_ref());
        let broken = a
            .and_then(|a| a.error.as_deref())
            .map(|e| format!(" ({e})"))
            .unwrap_or_default();
        // 5. Against what it should run.
        if let Some(d) = self.desired {
            let Some(current) = current else {
                let what = if a.is_some() {
                    "is installed without a `current` release"
                } else {
                    "is not installed"
                };
                return (
                    Missing,
                    format!("{app} {what}{broken}; {}", self.should_run()),
                );
            };
            if *current != d.version {
                let also = match process.and_then(|p| p.version.as_ref()) {
                    Some(v) if v != current => format!(" (its process runs {v})"),
                    _ => String::new(),
                };
                return (
                    Drifted,
                    format!("`current` names {current}{also}; {}", self.should_run()),
                );
            }
            if let Some(a) = a.filter(|a| a.changed_on_disk == Some(true)) {
                let first = a
                    .changed_path
                    .as_ref()
                    .map(|p| format!(" (first: `{p}`)"))
                    .unwrap_or_default();
                return (
                    Drifted,
                    format!(
                        "the files of {current} were changed on this host since it was installed{first}; {}",
                        self.should_run()
                    ),
                );
            }
            if d.stopped {
                return match process {
                    None => (InSync, format!("{current} stopped by deploy {}", d.deploy)),
                    Some(p) => (
                        Drifted,
                        format!(
                            "{current} runs (pid {}) though deploy {} stopped it",
                            p.pid, d.deploy
                        ),
                    ),
                };
            }
            let Some(p) = process else {
                let restarts = a
                    .filter(|a| a.restarts > 0)
                    .map(|a| format!(" after {} restart(s)", a.restarts))
                    .unwrap_or_default();
                return (
                    NotRunning,
                    format!("{current} is installed but no process of it runs{restarts}{broken}"),
                );
            };
            if let Some(v) = p.version.as_ref().filter(|v| *v != current) {
                return (
                    Drifted,
                    format!(
                        "`current` names {current} but its process (pid {}) still runs {v}; {}",
                        p.pid,
                        self.should_run()
                    ),
                );
            }
            let config = a.map_or(0, |a| a.config_version);
            if config != d.config_version {
                return (
                    Drifted,
                    format!(
                        "runs {current} with config {config}; {} with config {}",
                        self.should_run(),
                        d.config_version
                    ),
                );
            }
            return (
                InSync,
                format!("runs {current} (deploy {}), pid {}", d.deploy, p.pid),
            );
        }
        // 6. Something nobody deployed here.
        let what = match (current, process.and_then(|p| p.version.as_ref())) {
            (Some(v), _) | (None, Some(v)) => format!("{app} {v}"),
            (None, None) => app.to_string(),
        };
        let why = if self.known {
            "never deployed to this host"
        } else {
            "an app AppTracker does not know"
        };
        (UnknownApp, format!("has {what}: {why}"))
    }
}

/// Per (app, cluster): how many hosts in each state and which versions
/// they should run. Sorted by app, cluster.
pub fn summarize(hosts: &[DriftHost]) -> Vec<DriftSummary> {
    let mut by: BTreeMap<(AppName, Cluster), (DriftCounts, BTreeSet<Version>)> = BTreeMap::new();
    for h in hosts {
        let entry = by.entry((h.app.clone(), h.cluster.clone())).or_default();
        entry.0.add(h.state);
        if !h.over_limits.is_empty() {
            entry.0.over_limit += 1;
        }
        if let Some(v) = &h.desired {
            entry.1.insert(v.clone());
        }
    }
    by.into_iter()
        .map(|((app, cluster), (counts, desired))| DriftSummary {
            app,
            cluster,
            counts,
            desired: desired.into_iter().collect(),
        })
        .collect()
}

/// A size in bytes, written `512MiB`, `1GiB`, `2048` (binary units; `KB`,
/// `MB`, `GB` are read the same way, as people mean them for disks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (digits, unit) = s.split_at(split);
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("`{s}` is not a size like 512MiB"))?;
        let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" | "kib" => 1 << 10,
            "m" | "mb" | "mib" => 1 << 20,
            "g" | "gb" | "gib" => 1 << 30,
            "t" | "tb" | "tib" => 1 << 40,
            other => {
                return Err(format!(
                    "unknown size unit `{other}` in `{s}` (use KiB, MiB, GiB or TiB)"
                ));
            }
        };
        n.checked_mul(mult)
            .map(ByteSize)
            .ok_or_else(|| format!("`{s}` is too large"))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(ByteSize(n)),
            Raw::S(s) => ByteSize::parse(&s).map_err(serde::de::Error::custom),
        }
    }
}

/// How much one app may use on one host.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limit {
    /// Releases, shared data and logs together.
    pub disk: Option<ByteSize>,
    /// Resident memory of the app's process group.
    pub memory: Option<ByteSize>,
}

/// Per-app resource limits (`[drift.limits]` in AppTracker's config): an
/// app's own entry, else `default`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResourceLimits {
    pub default: Limit,
    pub apps: BTreeMap<AppName, Limit>,
}

impl ResourceLimits {
    pub fn for_app(&self, app: &AppName) -> Limit {
        let own = self.apps.get(app).copied().unwrap_or_default();
        Limit {
            disk: own.disk.or(self.default.disk),
            memory: own.memory.or(self.default.memory),
        }
    }

    /// What `report` uses beyond the app's limits.
    pub fn breaches(&self, app: &AppName, report: &AppReport) -> Vec<LimitBreach> {
        let limit = self.for_app(app);
        let mut out = Vec::new();
        let disk = report.disk.total();
        if let Some(l) = limit.disk
            && disk > l.0
        {
            out.push(LimitBreach {
                resource: "disk".into(),
                used_bytes: disk,
                limit_bytes: l.0,
            });
        }
        if let (Some(l), Some(p)) = (limit.memory, &report.process)
            && p.rss_bytes > l.0
        {
            out.push(LimitBreach {
                resource: "memory".into(),
                used_bytes: p.rss_bytes,
                limit_bytes: l.0,
            });
        }
        out
    }
}

#[cfg(test)]
mod tests;
