//! The Slipway binaries as separate processes (the copies this package
//! builds: `slipway-apptracker`, `slipway-grabber`, `slipway-packer`), with
//! their output kept in files for the failure report.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use tokio::process::{Child, Command};

/// A running process that is stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Proc {
    pub name: String,
    child: Option<Child>,
    pub log: PathBuf,
}

impl Proc {
    /// Starts `exe args...` with `env`, output appended to `<logs>/<name>.log`.
    pub fn spawn(
        name: &str,
        exe: &str,
        args: &[String],
        env: &[(&str, String)],
        logs: &Path,
    ) -> anyhow::Result<Self> {
        let log = logs.join(format!("{name}.log"));
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .with_context(|| format!("cannot open {}", log.display()))?;
        let err = out.try_clone()?;
        let mut cmd = Command::new(exe);
        cmd.args(args)
            .env("RUST_LOG", "info,sqlx=warn,tower_http=warn")
            .env("NO_COLOR", "1")
            // Grabbers give unpinned apps ports apart from `free_port`'s.
            .env(
                "SLIPWAY_PORT_RANGE",
                format!(
                    "{}-{}",
                    crate::GRABBER_PORTS.start(),
                    crate::GRABBER_PORTS.end()
                ),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().with_context(|| format!("cannot start {exe}"))?;
        Ok(Self {
            name: name.to_string(),
            child: Some(child),
            log,
        })
    }

    /// Its pid, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// Asks the process to stop (SIGTERM) and waits for it; returns whether
    /// it exited cleanly.
    pub async fn stop(&mut self) -> anyhow::Result<bool> {
        let Some(mut child) = self.child.take() else {
            return Ok(true);
        };
        if let Some(pid) = child.id() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        match tokio::time::timeout(Duration::from_secs(30), child.wait()).await {
            Ok(status) => Ok(status?.success()),
            Err(_) => {
                child.kill().await?;
                anyhow::bail!("{} did not stop within 30s of SIGTERM", self.name)
            }
        }
    }

    /// Sends `signal` and returns at once.
    pub fn signal(&self, signal: nix::sys::signal::Signal) -> anyhow::Result<()> {
        let pid = self.pid().context("the process has exited")?;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal)?;
        Ok(())
    }

    /// Waits up to `within` for the process to exit: its status, or None
    /// if it still runs.
    pub async fn exited_within(
        &mut self,
        within: Duration,
    ) -> anyhow::Result<Option<std::process::ExitStatus>> {
        let Some(child) = &mut self.child else {
            anyhow::bail!("{} was already waited for", self.name);
        };
        match tokio::time::timeout(within, child.wait()).await {
            Ok(status) => {
                let status = status?;
                self.child = None;
                Ok(Some(status))
            }
            Err(_) => Ok(None),
        }
    }

    /// Kills the process outright (SIGKILL), as a crash would.
    pub async fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill().await?;
        }
        Ok(())
    }

    /// The end of the process's log, for failure messages.
    pub fn tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Proc {
    /// A failed test still stops its processes gracefully, so grabbers stop
    /// their apps instead of leaving them behind.
    fn drop(&mut self) {
        let Some(child) = &mut self.child else { return };
        if let Some(pid) = child.id() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        for _ in 0..200 {
            if !matches!(child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Runs a command to its end and returns its stdout; killed when the
/// caller stops waiting (a timeout).
pub async fn output(exe: &str, args: &[String], env: &[(&str, String)]) -> anyhow::Result<String> {
    let mut cmd = Command::new(exe);
    cmd.args(args).stdin(Stdio::null()).kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd
        .output()
        .await
        .with_context(|| format!("cannot run {exe}"))?;
    if !out.status.success() {
        anyhow::bail!(
            "{exe} {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Makes a signing key with `packer keygen --out <path>` and returns the
/// public key it printed.
pub async fn packer_keygen(exe: &str, path: &Path) -> anyhow::Result<deploy::signing::PublicKey> {
    let printed = output(
        exe,
        &["keygen".into(), "--out".into(), path.display().to_string()],
        &[],
    )
    .await?;
    deploy::signing::PublicKey::parse(&printed)
        .map_err(|e| anyhow::anyhow!("packer keygen printed {printed:?}: {e}"))
}

/// An `apptracker serve` process configured by a TOML file (listen address,
/// data dir, short sweeps, then `extra_toml`), with a first admin token made
/// in its database before it starts, ready to answer.
pub struct TrackerProc {
    pub proc: Proc,
    pub url: String,
    /// A client with the admin token.
    pub client: deploy::Client,
    /// Its in-process builder's public key, as `apptracker key show` prints it.
    pub public_key: deploy::signing::PublicKey,
}

pub async fn start_apptracker(
    exe: &str,
    dir: &Path,
    logs: &Path,
    extra_toml: &str,
) -> anyhow::Result<TrackerProc> {
    start_apptracker_with(exe, dir, logs, extra_toml, None, &[]).await
}

/// [`start_apptracker`] with extra environment variables for `serve`.
pub async fn start_apptracker_with_env(
    exe: &str,
    dir: &Path,
    logs: &Path,
    extra_toml: &str,
    env: &[(&str, String)],
) -> anyhow::Result<TrackerProc> {
    start_apptracker_with(exe, dir, logs, extra_toml, None, env).await
}

/// [`start_apptracker`] serving HTTPS with `cert` (signed by the CA in
/// `ca_file`, which the returned client trusts). `extra_toml` must not have
/// a `[tls]` table of its own.
pub async fn start_apptracker_tls(
    exe: &str,
    dir: &Path,
    logs: &Path,
    extra_toml: &str,
    cert: &crate::tls::ServerCert,
    ca_file: &Path,
) -> anyhow::Result<TrackerProc> {
    start_apptracker_with(exe, dir, logs, extra_toml, Some((cert, ca_file)), &[]).await
}

async fn start_apptracker_with(
    exe: &str,
    dir: &Path,
    logs: &Path,
    extra_toml: &str,
    tls: Option<(&crate::tls::ServerCert, &Path)>,
    env: &[(&str, String)],
) -> anyhow::Result<TrackerProc> {
    let port = crate::free_port()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let url = format!("{scheme}://127.0.0.1:{port}");
    // Top-level keys first: a table ends at the next header.
    let (extra_keys, extra_tables) = match extra_toml.find("\n[") {
        Some(i) => extra_toml.split_at(i + 1),
        None if extra_toml.starts_with('[') => ("", extra_toml),
        None => (extra_toml, ""),
    };
    let tls_table = match tls {
        Some((cert, ca)) => format!(
            "[tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\nca_file = \"{}\"\n",
            cert.cert_file.display(),
            cert.key_file.display(),
            ca.display()
        ),
        None => String::new(),
    };
    let config = format!(
        "listen = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\nsweep_interval = \"200ms\"\n{extra_keys}\n{tls_table}\n{extra_tables}",
        dir.join("apptracker").display()
    );
    let file = dir.join("apptracker.toml");
    std::fs::write(&file, config)?;
    let cfg = file.display().to_string();
    let admin = output(
        exe,
        &[
            "token", "create", "--config", &cfg, "--name", "ops", "--role", "admin",
        ]
        .map(String::from),
        &[],
    )
    .await?;
    anyhow::ensure!(admin.starts_with("slp_"), "unexpected token {admin:?}");
    // Made now, before `serve` starts, as an operator configuring grabbers would.
    let printed = output(
        exe,
        &["key", "show", "--config", &cfg].map(String::from),
        &[],
    )
    .await?;
    let public_key = deploy::signing::PublicKey::parse(&printed)
        .map_err(|e| anyhow::anyhow!("apptracker key show printed {printed:?}: {e}"))?;
    let proc = Proc::spawn(
        "apptracker",
        exe,
        &["serve".into(), "--config".into(), cfg],
        env,
        logs,
    )?;
    let trust = deploy::tls::Trust::from_ca_file(tls.map(|(_, ca)| ca))?;
    let client = deploy::Client::with_trust(url.clone(), &trust)?.with_token(admin);
    crate::poll(Duration::from_secs(30), || async {
        Ok(client.apps().await.is_ok())
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}: {}", proc.tail()))?;
    Ok(TrackerProc {
        proc,
        url,
        client,
        public_key,
    })
}

/// The app's process groups, by the release each runs from.
pub fn app_groups(root: &Path, app: &deploy::AppName) -> Vec<(u32, String)> {
    let releases = deploy::layout::HostLayout::new(root).releases_dir(app);
    let mut groups: Vec<(u32, String)> = deploy::procfs::processes_under(&releases)
        .into_iter()
        .map(|(stat, rel)| (stat.pgrp, rel.display().to_string()))
        .collect();
    groups.sort();
    groups.dedup();
    groups
}

/// Kills whatever a test's host (its grabber root, the app) still runs,
/// pass or fail, when dropped.
pub struct KillApps(pub PathBuf, pub deploy::AppName);

impl Drop for KillApps {
    fn drop(&mut self) {
        for (group, _) in app_groups(&self.0, &self.1) {
            if let Ok(g) = i32::try_from(group)
                && g > 1
            {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(g),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}
