//! View models: what the templates print, made from the API's wire types.

use deploy::{AppRunStatus, Deploy, DeployHost, Host, HostPhase};
use serde::Serialize;

/// A cluster with deploy controls, on the index page.
#[derive(Debug, Serialize)]
pub(crate) struct ClusterRow {
    pub(crate) name: String,
    pub(crate) protected: bool,
    /// Set while a freeze is in force.
    pub(crate) frozen_until: Option<String>,
    pub(crate) freeze_reason: Option<String>,
    pub(crate) frozen_by: Option<String>,
}

impl ClusterRow {
    pub(crate) fn new(c: &deploy::ClusterSettings, now: deploy::Timestamp) -> Self {
        let frozen = c.frozen_at(now);
        ClusterRow {
            name: c.name.to_string(),
            protected: c.protected,
            frozen_until: frozen.map(|t| t.to_string()),
            freeze_reason: frozen.and(c.freeze_reason.clone()),
            frozen_by: frozen.and(c.frozen_by.clone()),
        }
    }
}

/// One line of the recent deploys table.
#[derive(Debug, Serialize)]
pub(crate) struct DeployRow {
    pub(crate) id: i64,
    pub(crate) app: String,
    /// The version, or the git ref it is being built from.
    pub(crate) version: String,
    /// Whether `version` is a git ref still being built.
    pub(crate) building: bool,
    pub(crate) cluster: String,
    pub(crate) selector: String,
    pub(crate) status: &'static str,
    pub(crate) created_at: String,
    pub(crate) created: When,
    /// How long it ran ("12.3s"), once it ended.
    pub(crate) took: Option<String>,
    pub(crate) requested_by: Option<String>,
    /// "2/3 done", plus how many failed.
    pub(crate) progress: String,
}

impl From<&Deploy> for DeployRow {
    fn from(d: &Deploy) -> Self {
        let (version, building) = version_label(d);
        DeployRow {
            id: d.id.0,
            app: d.app.to_string(),
            version,
            building,
            cluster: d.cluster.to_string(),
            selector: d.hosts_selector.to_string(),
            status: d.status.as_str(),
            created_at: d.created_at.to_string(),
            created: When::from(d.created_at),
            took: d.finished_at.map(|f| seconds(f.0 - d.created_at.0)),
            requested_by: d.requested_by.clone(),
            progress: progress(&d.hosts),
        }
    }
}

/// The version to show, or the git ref while the build is pending.
pub(crate) fn version_label(d: &Deploy) -> (String, bool) {
    match (&d.version, &d.git_ref) {
        (Some(v), _) => (v.to_string(), false),
        (None, Some(r)) => (r.clone(), true),
        (None, None) => ("—".to_string(), true),
    }
}

/// "3/3 done", "1/3 done, 2 failed", or "no hosts".
pub(crate) fn progress(hosts: &[DeployHost]) -> String {
    if hosts.is_empty() {
        return "no hosts".to_string();
    }
    let ok = hosts.iter().filter(|h| h.phase.is_success()).count();
    let count = |phases: &[HostPhase]| hosts.iter().filter(|h| phases.contains(&h.phase)).count();
    let failed = count(&[HostPhase::Failed, HostPhase::TimedOut]);
    // A host that is down is not an app that failed: said apart.
    let unreachable = count(&[HostPhase::Unreachable]);
    let mut s = format!("{ok}/{} done", hosts.len());
    if failed > 0 {
        s.push_str(&format!(", {failed} failed"));
    }
    if unreachable > 0 {
        s.push_str(&format!(", {unreachable} unreachable"));
    }
    s
}

/// One host of the registry table.
#[derive(Debug, Serialize)]
pub(crate) struct HostRow {
    pub(crate) cluster: String,
    pub(crate) name: String,
    pub(crate) apps: Vec<InstalledView>,
    pub(crate) last_seen: String,
}

/// One app a host reports.
#[derive(Debug, Serialize)]
pub(crate) struct InstalledView {
    pub(crate) app: String,
    pub(crate) version: Option<String>,
    pub(crate) port: Option<u16>,
    pub(crate) running: bool,
    /// `restarting` or `failing` (with its restarts), else nothing.
    pub(crate) trouble: Option<String>,
}

impl From<&Host> for HostRow {
    fn from(h: &Host) -> Self {
        HostRow {
            cluster: h.cluster.to_string(),
            name: h.name.to_string(),
            apps: h
                .apps
                .iter()
                .map(|a| InstalledView {
                    app: a.app.to_string(),
                    version: a.version.as_ref().map(ToString::to_string),
                    port: a.port,
                    running: a.pid.is_some(),
                    trouble: match a.status {
                        AppRunStatus::Restarting | AppRunStatus::Failing => {
                            Some(format!("{} ({} restarts)", a.status, a.restarts))
                        }
                        AppRunStatus::Running | AppRunStatus::Stopped => None,
                    },
                })
                .collect(),
            last_seen: h.last_seen.to_string(),
        }
    }
}

/// The header of the deploy page.
#[derive(Debug, Serialize)]
pub(crate) struct DeployView {
    pub(crate) id: i64,
    pub(crate) app: String,
    pub(crate) version: String,
    pub(crate) building: bool,
    pub(crate) build_id: Option<i64>,
    pub(crate) cluster: String,
    pub(crate) selector: String,
    pub(crate) status: &'static str,
    /// Whether the page needs no live updates.
    pub(crate) terminal: bool,
    pub(crate) error: Option<String>,
    pub(crate) created_at: String,
    pub(crate) finished_at: Option<String>,
    pub(crate) progress: String,
    pub(crate) requested_by: Option<String>,
    /// `restart`, `stop` or `start`; none for a release.
    pub(crate) action: Option<&'static str>,
    /// The app's config version the hosts run with (0: none).
    pub(crate) config_version: u64,
    pub(crate) retry_of: Option<i64>,
    pub(crate) rollback_of: Option<i64>,
    /// Waiting for `deploy continue`.
    pub(crate) paused: bool,
    /// The `[release] command` run before any host switched.
    pub(crate) release_phase: Option<ReleasePhaseView>,
    /// Hosts that ended well, and all hosts: the progress bar.
    pub(crate) hosts_ok: usize,
    pub(crate) hosts_total: usize,
    /// Hosts that failed or timed out: what a retry takes again.
    pub(crate) hosts_failed: usize,
    /// The cluster asks for its name typed back before a rollback.
    pub(crate) protected: bool,
}

/// A deploy's release phase on its page.
#[derive(Debug, Serialize)]
pub(crate) struct ReleasePhaseView {
    pub(crate) host: String,
    pub(crate) status: &'static str,
    pub(crate) message: Option<String>,
    pub(crate) log: String,
}

impl From<&Deploy> for DeployView {
    fn from(d: &Deploy) -> Self {
        let (version, building) = version_label(d);
        DeployView {
            id: d.id.0,
            app: d.app.to_string(),
            version,
            building,
            build_id: d.build_id.map(|b| b.0),
            cluster: d.cluster.to_string(),
            selector: d.hosts_selector.to_string(),
            status: d.status.as_str(),
            terminal: d.status.is_terminal(),
            error: d.error.clone(),
            created_at: d.created_at.to_string(),
            finished_at: d.finished_at.map(|t| t.to_string()),
            progress: progress(&d.hosts),
            requested_by: d.requested_by.clone(),
            action: (!d.action.is_deploy()).then(|| d.action.as_str()),
            config_version: d.config_version,
            retry_of: d.retry_of.map(|d| d.0),
            rollback_of: d.rollback_of.map(|d| d.0),
            paused: d.paused_at.is_some() && !d.status.is_terminal(),
            release_phase: d.release_phase.as_ref().map(|r| ReleasePhaseView {
                host: r.host.to_string(),
                status: r.status.as_str(),
                message: r.message.clone(),
                log: r.log.clone(),
            }),
            hosts_ok: d.hosts.iter().filter(|h| h.phase.is_success()).count(),
            hosts_total: d.hosts.len(),
            hosts_failed: d.hosts.iter().filter(|h| h.phase.is_failure()).count(),
            protected: false,
        }
    }
}

/// One host's row on the deploy page; the page's script builds the same
/// row from a `DeployEvent::Host`.
#[derive(Debug, Serialize)]
pub(crate) struct HostView {
    pub(crate) name: String,
    pub(crate) phase: &'static str,
    pub(crate) failed_phase: Option<&'static str>,
    pub(crate) rolled_back: bool,
    pub(crate) message: Option<String>,
    pub(crate) log_tail: Option<String>,
    pub(crate) updated_at: String,
    /// How long each phase took, in order ("downloading 0.2s · …").
    pub(crate) durations: String,
    /// For a failed host: the command that shows its app's log.
    pub(crate) ssh: Option<String>,
    /// How the host got the release (`12.3 kB, 21.9 MB reused`); empty
    /// until its grabber reported it.
    pub(crate) transfer: String,
}

impl From<&DeployHost> for HostView {
    fn from(h: &DeployHost) -> Self {
        HostView {
            name: h.host.to_string(),
            phase: h.phase.as_str(),
            failed_phase: h.failed_phase.map(HostPhase::as_str),
            rolled_back: h.rolled_back,
            message: h.message.clone(),
            log_tail: h.log_tail.clone().filter(|t| !t.trim().is_empty()),
            updated_at: h.updated_at.to_string(),
            durations: String::new(),
            ssh: None,
            transfer: transfer(h.transfer.as_ref()),
        }
    }
}

/// How a host got its release, for people: `5.7 MB`, `12.3 kB (4.0 kB
/// from peers), 21.9 MB reused`; empty when unknown. The CLI's `deploy
/// status` and the page's script (`static/deploy.js`) write the same.
pub(crate) fn transfer(t: Option<&deploy::Transfer>) -> String {
    let Some(t) = t else {
        return String::new();
    };
    let mut text = decimal_bytes(t.bytes_downloaded);
    if t.bytes_from_peers > 0 {
        text.push_str(&format!(
            " ({} from peers)",
            decimal_bytes(t.bytes_from_peers)
        ));
    }
    if t.bytes_reused > 0 {
        text.push_str(&format!(", {} reused", decimal_bytes(t.bytes_reused)));
    }
    text
}

/// A size in decimal units: `512 B`, `12.3 kB`, `5.7 MB`.
fn decimal_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["kB", "MB", "GB", "TB", "PB"];
    if n < 1000 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1000.0;
    let mut unit = 0;
    // Rounds as printed, so 999,999 bytes read `1.0 MB`, not `1000.0 kB`.
    while v >= 999.95 && unit < UNITS.len() - 1 {
        v /= 1000.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// How long each phase of `host` took, from the deploy's event records:
/// a phase lasts until the host's next report.
pub(crate) fn phase_durations(
    host: &deploy::HostName,
    events: &[deploy::HostEventRecord],
) -> String {
    let mine: Vec<&deploy::HostEventRecord> = events.iter().filter(|e| &e.host == host).collect();
    let mut parts = Vec::new();
    for pair in mine.windows(2) {
        let ms = (pair[1].at.0 - pair[0].at.0).max(0);
        parts.push(format!("{} {}", pair[0].phase.as_str(), seconds(ms)));
    }
    if let (Some(first), Some(last)) = (mine.first(), mine.last())
        && mine.len() > 1
    {
        parts.push(format!("total {}", seconds(last.at.0 - first.at.0)));
    }
    parts.join(" · ")
}

/// Milliseconds as "0.4s", "12.0s" or "3m 05s".
pub(crate) fn seconds(ms: i64) -> String {
    let ms = ms.max(0);
    if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        format!("{}m {:02}s", ms / 60_000, (ms % 60_000) / 1000)
    }
}

/// The command that shows an app's log on a host, over ssh.
pub(crate) fn ssh_command(host: &str, root: &str, app: &str) -> String {
    format!("ssh {host} tail -n 200 {root}/apps/{app}/log/{app}.log")
}

/// One app on one cluster in the drift summary.
#[derive(Serialize)]
pub(crate) struct DriftSummaryRow {
    pub(crate) app: String,
    pub(crate) cluster: String,
    pub(crate) desired: String,
    pub(crate) counts: deploy::drift::DriftCounts,
    /// Hosts a sync would take (drifted, not running or missing).
    pub(crate) out_of_sync: usize,
}

impl From<&deploy::DriftSummary> for DriftSummaryRow {
    fn from(s: &deploy::DriftSummary) -> Self {
        let desired: Vec<String> = s.desired.iter().map(|v| v.to_string()).collect();
        Self {
            app: s.app.to_string(),
            cluster: s.cluster.to_string(),
            desired: desired.join(", "),
            counts: s.counts,
            out_of_sync: s.counts.out_of_sync(),
        }
    }
}

/// One app on one host in the drift table.
#[derive(Serialize)]
pub(crate) struct DriftRow {
    pub(crate) cluster: String,
    pub(crate) host: String,
    pub(crate) app: String,
    pub(crate) state: &'static str,
    pub(crate) desired: String,
    pub(crate) current: String,
    pub(crate) process: String,
    pub(crate) disk: String,
    pub(crate) reason: String,
    pub(crate) over_limits: Vec<String>,
}

pub(crate) fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
}

impl From<&deploy::DriftHost> for DriftRow {
    fn from(h: &deploy::DriftHost) -> Self {
        let v = |v: &Option<deploy::Version>| v.as_ref().map_or("-".into(), |v| v.to_string());
        Self {
            cluster: h.cluster.to_string(),
            host: h.host.to_string(),
            app: h.app.to_string(),
            state: h.state.as_str(),
            desired: v(&h.desired),
            current: v(&h.current),
            process: h.process.as_ref().map_or("-".into(), |p| {
                format!(
                    "pid {}, up {}, {}",
                    p.pid,
                    humantime::format_duration(std::time::Duration::from_secs(p.uptime_ms / 1000)),
                    mib(p.rss_bytes)
                )
            }),
            disk: h.disk.map_or("-".into(), |d| mib(d.total())),
            reason: h.reason.clone(),
            over_limits: h
                .over_limits
                .iter()
                .map(|b| {
                    format!(
                        "{} {} over its {} limit",
                        b.resource,
                        mib(b.used_bytes),
                        mib(b.limit_bytes)
                    )
                })
                .collect(),
        }
    }
}

/// A moment as pages print it: the absolute time (UTC) in the markup, and
/// its milliseconds for `slipway.js` to show how long ago it was. Print it
/// as `<time data-ms="{{ t.ms }}" datetime="{{ t.iso }}">{{ t.iso }}</time>`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct When {
    pub(crate) ms: i64,
    pub(crate) iso: String,
}

impl From<deploy::Timestamp> for When {
    fn from(t: deploy::Timestamp) -> Self {
        When {
            ms: t.0,
            iso: t.to_string(),
        }
    }
}

/// The overview's one line about the fleet.
#[derive(Debug, Serialize)]
pub(crate) struct FleetSummary {
    pub(crate) hosts: usize,
    pub(crate) clusters: usize,
    /// App instances the hosts report running.
    pub(crate) running: usize,
    /// App instances restarting or failing.
    pub(crate) failing: usize,
    /// App-host pairs the drift table calls in sync, and out of sync.
    pub(crate) in_sync: usize,
    pub(crate) out_of_sync: usize,
}

impl FleetSummary {
    pub(crate) fn new(hosts: &[Host], drift: &[deploy::DriftSummary]) -> Self {
        let mut clusters: Vec<&deploy::Cluster> = hosts.iter().map(|h| &h.cluster).collect();
        clusters.sort();
        clusters.dedup();
        let apps = || hosts.iter().flat_map(|h| h.apps.iter());
        FleetSummary {
            hosts: hosts.len(),
            clusters: clusters.len(),
            running: apps().filter(|a| a.pid.is_some()).count(),
            failing: apps()
                .filter(|a| matches!(a.status, AppRunStatus::Restarting | AppRunStatus::Failing))
                .count(),
            in_sync: drift.iter().map(|s| s.counts.in_sync).sum(),
            out_of_sync: drift.iter().map(|s| s.counts.out_of_sync()).sum(),
        }
    }
}
