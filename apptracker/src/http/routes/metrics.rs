//! `GET /metrics` in the Prometheus text format (version 0.0.4): drift per
//! app and cluster, stale hosts, report ages, resource use against limits,
//! deploys by outcome, build durations, and the usual `process_*` metrics.
//! Everything is read from the database, so every replica serves the same
//! figures and nothing is lost on restart; what was read is reused for
//! `[drift] metrics_cache` (5 s), so scrapes (many Prometheus servers, or
//! anyone when `/metrics` is public) do not each recompute the whole
//! fleet's drift. The process's own figures are read at every scrape.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Arc;
use std::time::Instant;

use axum::Extension;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use deploy::drift::DriftState;
use deploy::{DeployStatus, Timestamp};

use crate::db::BUILD_BUCKETS_MS;
use crate::http::error::ApiError;
use crate::model::{Principal, Role};
use crate::tracker::Tracker;

/// The exposition format's content type.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[utoipa::path(
    get, path = "/metrics", tag = "drift",
    summary = "Prometheus metrics: drift, stale hosts, report ages, deploys, builds, the process",
    responses((status = 200, description = "Prometheus text format 0.0.4", content_type = "text/plain", body = String))
)]
pub async fn metrics(
    State(t): State<Tracker>,
    Extension(shared): Extension<Arc<crate::http::Shared>>,
    who: Result<Principal, ApiError>,
) -> Result<Response, ApiError> {
    if !t.config().drift.metrics_public {
        who?.require(Role::Viewer)?;
    }
    let mut text = shared
        .metrics
        .get_or_render(&t, t.config().drift.metrics_cache)
        .await?;
    let mut e = Exposition::default();
    let (seen, unrecorded) = shared.anonymous.counts();
    e.family(
        "slipway_anonymous_requests_total",
        "counter",
        "Requests without a valid credential that would have been audited (this replica).",
    );
    e.sample("slipway_anonymous_requests_total", &[], seen as f64);
    e.family(
        "slipway_anonymous_requests_unrecorded_total",
        "counter",
        "Of those, the ones the audit log left out (over its rate for anonymous entries).",
    );
    e.sample(
        "slipway_anonymous_requests_unrecorded_total",
        &[],
        unrecorded as f64,
    );
    process_metrics(&mut e);
    text.push_str(&e.finish());
    Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response())
}

/// What the last scrape read from the database, and when.
#[derive(Default)]
pub(crate) struct Cache {
    /// Held while the figures are read, so scrapes that come meanwhile
    /// wait for them instead of reading them again.
    last: tokio::sync::Mutex<Option<(Instant, String)>>,
}

impl Cache {
    /// The figures read at most `ttl` ago, or read now.
    async fn get_or_render(
        &self,
        t: &Tracker,
        ttl: std::time::Duration,
    ) -> Result<String, ApiError> {
        let mut last = self.last.lock().await;
        if let Some((at, text)) = last.as_ref()
            && at.elapsed() < ttl
        {
            return Ok(text.clone());
        }
        let text = render(t).await?;
        *last = Some((Instant::now(), text.clone()));
        Ok(text)
    }
}

/// Writes metric families: `# HELP`, `# TYPE`, then samples.
#[derive(Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    pub fn family(&mut self, name: &str, kind: &str, help: &str) {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            let pairs: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
                .collect();
            let _ = write!(self.out, "{{{}}}", pairs.join(","));
        }
        let _ = writeln!(self.out, " {}", number(value));
    }

    pub fn finish(self) -> String {
        self.out
    }
}

/// A label value as the format wants it: backslash, quote and newline
/// escaped.
fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

async fn render(t: &Tracker) -> Result<String, ApiError> {
    let now = Timestamp::now();
    let fleet = t.fleet().await?;
    let summary = crate::drift::summarize(&fleet.hosts);
    let mut e = Exposition::default();

    e.family(
        "slipway_drift_hosts",
        "gauge",
        "Hosts of an app on a cluster in each drift state (as GET /api/v1/drift counts them).",
    );
    for s in &summary {
        for state in DriftState::ALL {
            e.sample(
                "slipway_drift_hosts",
                &[
                    ("app", s.app.as_str()),
                    ("cluster", s.cluster.as_str()),
                    ("state", state.as_str()),
                ],
                s.counts.get(state) as f64,
            );
        }
    }

    e.family(
        "slipway_stale_hosts",
        "gauge",
        "Hosts whose versionchecker has not reported for three intervals.",
    );
    let mut stale: BTreeMap<&str, usize> = BTreeMap::new();
    for a in &fleet.agents {
        *stale.entry(a.cluster.as_str()).or_default() += usize::from(a.stale);
    }
    for (cluster, n) in &stale {
        e.sample("slipway_stale_hosts", &[("cluster", cluster)], *n as f64);
    }

    e.family(
        "slipway_host_report_age_seconds",
        "gauge",
        "Seconds since the host's versionchecker last read the host.",
    );
    for a in &fleet.agents {
        if let Some(at) = a.reported_at {
            e.sample(
                "slipway_host_report_age_seconds",
                &[("cluster", a.cluster.as_str()), ("host", a.host.as_str())],
                now.millis_since(at) as f64 / 1000.0,
            );
        }
    }
    e.family(
        "slipway_host_disk_free_bytes",
        "gauge",
        "Free space on the filesystem of the host layout.",
    );
    for a in &fleet.agents {
        if let Some(d) = a.disk {
            e.sample(
                "slipway_host_disk_free_bytes",
                &[("cluster", a.cluster.as_str()), ("host", a.host.as_str())],
                d.free_bytes as f64,
            );
        }
    }

    e.family(
        "slipway_app_resident_memory_bytes",
        "gauge",
        "Resident memory of an app's process group on a host.",
    );
    for h in &fleet.hosts {
        if let Some(p) = &h.process {
            e.sample(
                "slipway_app_resident_memory_bytes",
                &[
                    ("cluster", h.cluster.as_str()),
                    ("host", h.host.as_str()),
                    ("app", h.app.as_str()),
                ],
                p.rss_bytes as f64,
            );
        }
    }
    e.family(
        "slipway_app_disk_bytes",
        "gauge",
        "Disk used by an app on a host: its releases, shared data and logs.",
    );
    for h in &fleet.hosts {
        if let Some(d) = &h.disk {
            for (part, bytes) in [
                ("releases", d.releases_bytes),
                ("shared", d.shared_bytes),
                ("logs", d.logs_bytes),
            ] {
                e.sample(
                    "slipway_app_disk_bytes",
                    &[
                        ("cluster", h.cluster.as_str()),
                        ("host", h.host.as_str()),
                        ("app", h.app.as_str()),
                        ("part", part),
                    ],
                    bytes as f64,
                );
            }
        }
    }
    e.family(
        "slipway_app_over_limit",
        "gauge",
        "1 when an app on a host uses more disk or memory than its configured limit.",
    );
    for h in &fleet.hosts {
        if h.disk.is_none() {
            continue;
        }
        for resource in ["disk", "memory"] {
            let over = h.over_limits.iter().any(|b| b.resource == resource);
            e.sample(
                "slipway_app_over_limit",
                &[
                    ("cluster", h.cluster.as_str()),
                    ("host", h.host.as_str()),
                    ("app", h.app.as_str()),
                    ("resource", resource),
                ],
                f64::from(u8::from(over)),
            );
        }
    }
    e.family(
        "slipway_app_restarts",
        "gauge",
        "Restarts of an app after crashes since it was last installed.",
    );
    for h in &fleet.hosts {
        if h.reported_at.is_some() && h.disk.is_some() {
            e.sample(
                "slipway_app_restarts",
                &[
                    ("cluster", h.cluster.as_str()),
                    ("host", h.host.as_str()),
                    ("app", h.app.as_str()),
                ],
                f64::from(h.restarts),
            );
        }
    }

    let deploys = t.queries().deploy_counts().await?;
    e.family(
        "slipway_deploys_total",
        "counter",
        "Deploys that ended, by outcome.",
    );
    for (app, cluster, status, n) in &deploys {
        let terminal =
            serde_json::from_value::<DeployStatus>(serde_json::Value::String(status.clone()))
                .is_ok_and(|s| s.is_terminal());
        if terminal {
            e.sample(
                "slipway_deploys_total",
                &[
                    ("app", app.as_str()),
                    ("cluster", cluster.as_str()),
                    ("outcome", status),
                ],
                *n as f64,
            );
        }
    }
    e.family(
        "slipway_deploys_active",
        "gauge",
        "Deploys building or running.",
    );
    let mut active: BTreeMap<(&str, &str), i64> = BTreeMap::new();
    for (app, cluster, status, n) in &deploys {
        let slot = active.entry((app.as_str(), cluster.as_str())).or_default();
        if status == "building" || status == "running" {
            *slot += n;
        }
    }
    for ((app, cluster), n) in &active {
        e.sample(
            "slipway_deploys_active",
            &[("app", app), ("cluster", cluster)],
            *n as f64,
        );
    }

    e.family(
        "slipway_build_duration_seconds",
        "histogram",
        "How long finished builds took, from claim to result.",
    );
    for (app, outcome, count, sum_ms, buckets) in t.queries().build_durations().await? {
        let (app, outcome) = (app.as_str(), outcome.as_str());
        for (bound, n) in BUILD_BUCKETS_MS.iter().zip(&buckets) {
            let le = number(*bound as f64 / 1000.0);
            e.sample(
                "slipway_build_duration_seconds_bucket",
                &[("app", app), ("outcome", outcome), ("le", &le)],
                *n as f64,
            );
        }
        e.sample(
            "slipway_build_duration_seconds_bucket",
            &[("app", app), ("outcome", outcome), ("le", "+Inf")],
            count as f64,
        );
        e.sample(
            "slipway_build_duration_seconds_sum",
            &[("app", app), ("outcome", outcome)],
            sum_ms as f64 / 1000.0,
        );
        e.sample(
            "slipway_build_duration_seconds_count",
            &[("app", app), ("outcome", outcome)],
            count as f64,
        );
    }

    Ok(e.finish())
}

/// The `process_*` metrics of this process.
fn process_metrics(e: &mut Exposition) {
    if let Some(p) = deploy::procfs::self_metrics() {
        e.family(
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
        );
        e.sample("process_cpu_seconds_total", &[], p.cpu_seconds);
        e.family(
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
        );
        e.sample(
            "process_resident_memory_bytes",
            &[],
            p.resident_bytes as f64,
        );
        e.family(
            "process_virtual_memory_bytes",
            "gauge",
            "Virtual memory size in bytes.",
        );
        e.sample("process_virtual_memory_bytes", &[], p.virtual_bytes as f64);
        e.family(
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since unix epoch in seconds.",
        );
        e.sample("process_start_time_seconds", &[], p.start_time);
        e.family(
            "process_open_fds",
            "gauge",
            "Number of open file descriptors.",
        );
        e.sample("process_open_fds", &[], p.open_fds as f64);
        if let Some(max) = p.max_fds {
            e.family(
                "process_max_fds",
                "gauge",
                "Maximum number of open file descriptors.",
            );
            e.sample("process_max_fds", &[], max as f64);
        }
        e.family(
            "process_threads",
            "gauge",
            "Number of OS threads in the process.",
        );
        e.sample("process_threads", &[], p.threads as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_escaped_and_numbers_plain() {
        let mut e = Exposition::default();
        e.family("x_total", "counter", "Things\nand \\ more.");
        e.sample("x_total", &[("a", "q\"uo\\te\nnl")], 3.0);
        e.sample("x_total", &[], 0.25);
        e.sample("x_total", &[("le", "+Inf")], f64::INFINITY);
        let text = e.finish();
        assert_eq!(
            text,
            "# HELP x_total Things\\nand \\\\ more.\n# TYPE x_total counter\n\
             x_total{a=\"q\\\"uo\\\\te\\nnl\"} 3\nx_total 0.25\nx_total{le=\"+Inf\"} +Inf\n"
        );
    }
}
