//! `versionchecker agent`: every interval (with jitter, so a fleet does not
//! report in lockstep) read the host and send the report to AppTracker. One
//! loop over a closed set of events; nothing else runs, so at rest the agent
//! sleeps until the next report.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use deploy::report::{HostReport, MAX_REPORT_INTERVAL_MS, MIN_REPORT_INTERVAL_MS};
use deploy::{Client, Cluster, HostName};
use secrecy::{ExposeSecret, SecretString};
use tokio_util::sync::CancellationToken;

use crate::scan::Scanner;

/// How one agent runs.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// AppTracker's base URL.
    pub server: String,
    pub cluster: Cluster,
    pub host: HostName,
    /// The host layout's root (the grabber's `--root`).
    pub root: PathBuf,
    /// Time between reports, on average.
    pub interval: Duration,
    /// Each wait is the interval times a random factor in `1 ± jitter`.
    pub jitter: f64,
    /// The cluster's agent token; never logged.
    pub token: Option<SecretString>,
    /// Which CAs AppTracker's certificate may come from.
    pub trust: deploy::tls::Trust,
}

impl AgentConfig {
    /// Defaults for everything but where to report and what this host is.
    pub fn new(server: impl Into<String>, cluster: Cluster, host: HostName, root: PathBuf) -> Self {
        Self {
            server: server.into(),
            cluster,
            host,
            root,
            interval: Duration::from_secs(60),
            jitter: 0.1,
            token: None,
            trust: deploy::tls::Trust::system(),
        }
    }
}

enum Event {
    /// Time for a report.
    Report,
    Stop,
}

/// Reads the host once, as a report (the agent's and `versionchecker
/// scan`'s view).
pub fn collect(
    scanner: &mut Scanner,
    cluster: &Cluster,
    host: &HostName,
    interval: Duration,
) -> anyhow::Result<HostReport> {
    let apps = scanner.scan().with_context(|| {
        format!(
            "cannot read the host layout under {}",
            scanner.root().display()
        )
    })?;
    Ok(HostReport {
        cluster: cluster.clone(),
        host: host.clone(),
        interval_ms: interval.as_millis() as u64,
        age_ms: 0,
        agent: env!("CARGO_PKG_VERSION").to_string(),
        disk: scanner.fs_space(),
        apps,
    })
}

/// Reports until `shutdown`. A report that cannot be made or sent is
/// logged and tried again at the next turn; only bad settings are errors.
#[tracing::instrument(skip_all, fields(cluster = %cfg.cluster, host = %cfg.host))]
pub async fn run(cfg: AgentConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let ms = cfg.interval.as_millis() as u64;
    anyhow::ensure!(
        (MIN_REPORT_INTERVAL_MS..=MAX_REPORT_INTERVAL_MS).contains(&ms),
        "the interval must be between {MIN_REPORT_INTERVAL_MS} ms and {} h, not {}",
        MAX_REPORT_INTERVAL_MS / 3_600_000,
        humantime::format_duration(cfg.interval)
    );
    anyhow::ensure!(
        (0.0..=0.5).contains(&cfg.jitter),
        "the jitter must be between 0% and 50%"
    );
    let mut client = Client::with_trust(cfg.server.clone(), &cfg.trust)?;
    if let Some(t) = &cfg.token {
        client = client.with_token(t.expose_secret());
        if let Some(warning) = deploy::tls::cleartext_warning(&cfg.server) {
            tracing::warn!("{warning}");
        }
    }
    tracing::info!(root = %cfg.root.display(), every = %humantime::format_duration(cfg.interval),
        server = %cfg.server, "versionchecker reporting");
    let mut scanner = Some(Scanner::new(cfg.root.clone()));
    // Ready: the settings are valid and the loop starts. Not "the first
    // report was accepted": that waits up to an interval's jitter and on
    // AppTracker, and a versionchecker whose control plane is away should
    // still run (and report once it is back).
    deploy::binary::announce_ready("versionchecker reporting loop starting");
    // The first report comes soon, but not at the same instant on every
    // host of a fleet restarted together.
    let mut wait = cfg.interval.mul_f64(cfg.jitter * random_unit());
    loop {
        let event = tokio::select! {
            _ = shutdown.cancelled() => Event::Stop,
            _ = tokio::time::sleep(wait) => Event::Report,
        };
        match event {
            Event::Stop => {
                deploy::binary::announce_stopping();
                tracing::info!("versionchecker stopped");
                return Ok(());
            }
            Event::Report => {
                let started = Instant::now();
                let Some(mut s) = scanner.take() else {
                    anyhow::bail!("the scanner was lost");
                };
                let (cluster, host, interval) =
                    (cfg.cluster.clone(), cfg.host.clone(), cfg.interval);
                let (s, report) = tokio::task::spawn_blocking(move || {
                    let r = collect(&mut s, &cluster, &host, interval);
                    (s, r)
                })
                .await
                .context("the scan panicked")?;
                scanner = Some(s);
                match report {
                    Ok(mut report) => {
                        report.age_ms = started.elapsed().as_millis() as u64;
                        let sent = tokio::select! {
                            _ = shutdown.cancelled() => return Ok(()),
                            r = client.report(&report) => r,
                        };
                        match sent {
                            Ok(_) => tracing::debug!(apps = report.apps.len(), "reported"),
                            Err(e) => {
                                tracing::warn!(error = %e, "cannot send the report; trying again next turn")
                            }
                        }
                    }
                    Err(e) => tracing::warn!(error = %format!("{e:#}"), "cannot read the host"),
                }
                let factor = 1.0 + cfg.jitter * (2.0 * random_unit() - 1.0);
                wait = cfg
                    .interval
                    .mul_f64(factor)
                    .saturating_sub(started.elapsed());
            }
        }
    }
}

/// A random number in `[0, 1)`; 0.5 when the system has no randomness
/// (jitter is a nicety, not a requirement).
fn random_unit() -> f64 {
    let mut b = [0u8; 4];
    match getrandom::fill(&mut b) {
        Ok(()) => f64::from(u32::from_le_bytes(b)) / (f64::from(u32::MAX) + 1.0),
        Err(_) => 0.5,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_units_stay_in_range() {
        for _ in 0..1000 {
            let u = random_unit();
            assert!((0.0..1.0).contains(&u), "{u}");
        }
    }

    #[tokio::test]
    async fn bad_settings_are_refused() {
        let mut cfg = AgentConfig::new(
            "http://127.0.0.1:9",
            Cluster::parse("c").unwrap(),
            HostName::parse("h").unwrap(),
            PathBuf::from("/nonexistent"),
        );
        cfg.interval = Duration::from_millis(10);
        let e = run(cfg.clone(), CancellationToken::new())
            .await
            .unwrap_err();
        assert!(e.to_string().contains("interval"), "{e}");
        cfg.interval = Duration::from_secs(1);
        cfg.jitter = 2.0;
        let e = run(cfg, CancellationToken::new()).await.unwrap_err();
        assert!(e.to_string().contains("jitter"), "{e}");
    }
}
