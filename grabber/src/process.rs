//! Supervised app processes: started with `sh -c` from the release
//! directory in their own process group, output appended to the app's log,
//! watched until they exit, and stopped with SIGTERM to the group, then
//! SIGKILL.

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::io;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use deploy::{AppName, HostName, RunSpec, Version};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::sync::watch;

/// How often an adopted process (not our child) is polled for exit.
const ADOPTED_POLL: Duration = Duration::from_millis(500);
/// How long to wait for a process to vanish after SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// Everything needed to start one release.
pub(crate) struct Launch<'a> {
    pub app: &'a AppName,
    pub version: &'a Version,
    pub host: &'a HostName,
    /// `releases/<version>`, never `current`, so the process keeps its
    /// release even after `current` moves.
    pub release_dir: &'a Path,
    pub log_file: &'a Path,
    pub run: &'a RunSpec,
    pub port: Option<u16>,
}

impl Launch<'_> {
    /// The environment an app (and its health command) sees: a few
    /// inherited variables, `run.env`, `run.paths` under the release
    /// directory, `PORT` and `SLIPWAY_*`.
    pub(crate) fn env(&self) -> Vec<(OsString, OsString)> {
        let mut env: Vec<(OsString, OsString)> = ["PATH", "HOME", "LANG"]
            .iter()
            .filter_map(|k| std::env::var_os(k).map(|v| (OsString::from(k), v)))
            .collect();
        env.extend(self.run.env.iter().map(|(k, v)| (k.into(), v.into())));
        // The release's own directories (its installed dependencies) come
        // first, joined to where this host unpacked it.
        for (var, dirs) in &self.run.paths {
            let mut joined: Vec<std::path::PathBuf> =
                dirs.iter().map(|d| self.release_dir.join(d)).collect();
            let key = OsString::from(var);
            if let Some(pos) = env.iter().position(|(k, _)| *k == key) {
                let (_, old) = env.remove(pos);
                joined.extend(std::env::split_paths(&old));
            }
            if let Ok(value) = std::env::join_paths(joined) {
                env.push((key, value));
            }
        }
        if let Some(port) = self.port {
            env.push(("PORT".into(), port.to_string().into()));
        }
        env.push(("SLIPWAY_APP".into(), self.app.as_str().into()));
        env.push(("SLIPWAY_VERSION".into(), self.version.as_str().into()));
        env.push(("SLIPWAY_HOST".into(), self.host.as_str().into()));
        env
    }
}

/// A running (or recently exited) app process. Clones share the exit
/// watch.
#[derive(Debug, Clone)]
pub(crate) struct AppProcess {
    pub pid: u32,
    pub version: Version,
    pub port: Option<u16>,
    /// From the release's manifest: how long SIGTERM gets before SIGKILL.
    pub stop_timeout: Duration,
    /// Becomes true once the process has exited.
    exited: watch::Receiver<bool>,
}

impl AppProcess {
    /// Starts the release. A task owns the child and reaps it, flipping
    /// the exit watch.
    pub(crate) fn start(launch: &Launch<'_>) -> io::Result<AppProcess> {
        if let Some(dir) = launch.log_file.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(launch.log_file)?;
        let mut cmd = tokio::process::Command::new("sh");
        cmd.arg("-c")
            .arg(&launch.run.command)
            .current_dir(launch.release_dir)
            .env_clear()
            .envs(launch.env())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0);
        let mut child = cmd.spawn()?;
        let pid = child
            .id()
            .ok_or_else(|| io::Error::other("the process exited before its pid was known"))?;
        let (tx, exited) = watch::channel(false);
        let app = launch.app.clone();
        tokio::spawn(async move {
            match child.wait().await {
                Ok(status) => tracing::info!(%app, pid, %status, "app process exited"),
                Err(e) => tracing::warn!(%app, pid, error = %e, "cannot wait for app process"),
            }
            let _ = tx.send(true);
        });
        tracing::info!(app = %launch.app, version = %launch.version, pid, port = ?launch.port, "started app");
        Ok(AppProcess {
            pid,
            version: launch.version.clone(),
            port: launch.port,
            stop_timeout: Duration::from_millis(launch.run.stop_timeout_ms),
            exited,
        })
    }

    /// Takes over a process a previous grabber started. It is not our
    /// child, so its exit is noticed by polling `/proc`.
    pub(crate) fn adopt(
        pid: u32,
        version: Version,
        port: Option<u16>,
        stop_timeout: Duration,
    ) -> AppProcess {
        let (tx, exited) = watch::channel(!pid_alive(pid));
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tx.closed() => return,
                    _ = tokio::time::sleep(ADOPTED_POLL) => {}
                }
                if !pid_alive(pid) {
                    let _ = tx.send(true);
                    return;
                }
            }
        });
        AppProcess {
            pid,
            version,
            port,
            stop_timeout,
            exited,
        }
    }

    pub(crate) fn is_alive(&self) -> bool {
        !*self.exited.borrow()
    }

    /// Resolves once the process has exited.
    pub(crate) async fn exited(&self) {
        let mut rx = self.exited.clone();
        // An error means the watcher is gone (runtime shutting down): treat
        // the process as no longer ours to wait for.
        let _ = rx.wait_for(|e| *e).await;
    }

    /// SIGTERM to the process group, SIGKILL after `stop_timeout`, then a
    /// last SIGKILL to the group for any child left behind.
    pub(crate) async fn stop(&self) {
        let Some(group) = self.group() else { return };
        if self.is_alive() {
            tracing::info!(pid = self.pid, version = %self.version, "stopping app");
            let _ = killpg(group, Signal::SIGTERM);
            if tokio::time::timeout(self.stop_timeout, self.exited())
                .await
                .is_err()
            {
                tracing::warn!(pid = self.pid, "app ignored SIGTERM, sending SIGKILL");
                let _ = killpg(group, Signal::SIGKILL);
                let _ = tokio::time::timeout(KILL_WAIT, self.exited()).await;
            }
        }
        let _ = killpg(group, Signal::SIGKILL);
    }

    fn group(&self) -> Option<Pid> {
        // Never signal init or "every process" by accident.
        i32::try_from(self.pid)
            .ok()
            .filter(|p| *p > 1)
            .map(Pid::from_raw)
    }
}

/// Whether a process with this pid exists and is not a zombie.
pub(crate) fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state is the first field after the parenthesised command.
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| !matches!(rest.trim_start().chars().next(), Some('Z') | Some('X')))
            .unwrap_or(false),
        Err(_) => false,
    }
}

/// Whether process `pid` is alive and runs from `release_dir` (so it is the
/// app a previous grabber started, not an unrelated process that reused
/// the pid).
pub(crate) fn is_our_process(pid: u32, release_dir: &Path) -> bool {
    if !pid_alive(pid) {
        return false;
    }
    let (Ok(cwd), Ok(release)) = (
        std::fs::read_link(format!("/proc/{pid}/cwd")),
        release_dir.canonicalize(),
    ) else {
        return false;
    };
    cwd == release
}

/// The last `max_lines` lines of a log file, at most `max_bytes` bytes.
pub(crate) fn log_tail(path: &Path, max_lines: usize, max_bytes: u64) -> Option<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path).ok()?;
    let len = f.metadata().ok()?.len();
    let start = len.saturating_sub(max_bytes);
    f.seek(SeekFrom::Start(start)).ok()?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf);
    let lines: Vec<&str> = text.lines().collect();
    // A cut at `start` may leave half a line first: drop it.
    let skip_first = usize::from(start > 0 && lines.len() > 1);
    let from = lines.len().saturating_sub(max_lines).max(skip_first);
    let tail = lines[from..].join("\n");
    (!tail.is_empty()).then_some(tail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_tail_keeps_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.log");
        let text: String = (0..100).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&p, text).unwrap();
        let t = log_tail(&p, 40, 8192).unwrap();
        assert_eq!(t.lines().count(), 40);
        assert!(t.starts_with("line 60\n") && t.ends_with("line 99"), "{t}");
        let t = log_tail(&p, 40, 20).unwrap();
        assert_eq!(t, "line 98\nline 99");
        assert_eq!(log_tail(&dir.path().join("missing"), 40, 8192), None);
    }

    #[test]
    fn release_paths_come_first_under_the_release_dir() {
        let app = AppName::parse("hello").unwrap();
        let version = Version::parse("1-abcdef0").unwrap();
        let host = HostName::parse("h1").unwrap();
        let run = RunSpec {
            command: "true".into(),
            port: None,
            env: [("PYTHONPATH".to_string(), "/opt/extra".to_string())].into(),
            stop_timeout_ms: 300,
            paths: [
                (
                    "PYTHONPATH".to_string(),
                    vec![".slipway/python".to_string()],
                ),
                ("PATH".to_string(), vec![".slipway/python/bin".to_string()]),
            ]
            .into(),
        };
        let launch = Launch {
            app: &app,
            version: &version,
            host: &host,
            release_dir: Path::new("/srv/apps/hello/releases/1-abcdef0"),
            log_file: Path::new("/dev/null"),
            run: &run,
            port: None,
        };
        let env: std::collections::HashMap<_, _> = launch.env().into_iter().collect();
        assert_eq!(
            env[&OsString::from("PYTHONPATH")],
            "/srv/apps/hello/releases/1-abcdef0/.slipway/python:/opt/extra"
        );
        let path = env[&OsString::from("PATH")].to_string_lossy().into_owned();
        assert!(
            path.starts_with("/srv/apps/hello/releases/1-abcdef0/.slipway/python/bin:"),
            "{path}"
        );
        assert!(path.len() > "/srv/apps/hello/releases/1-abcdef0/.slipway/python/bin:".len());
    }

    #[tokio::test]
    async fn starts_in_own_group_and_stops() {
        let dir = tempfile::tempdir().unwrap();
        let app = AppName::parse("hello").unwrap();
        let version = Version::parse("1-abcdef0").unwrap();
        let host = HostName::parse("h1").unwrap();
        let log = dir.path().join("log/hello.log");
        let run = RunSpec {
            command: "echo port=$PORT app=$SLIPWAY_APP; trap '' TERM; sleep 1000".into(),
            port: Some(1234),
            env: Default::default(),
            stop_timeout_ms: 300,
            paths: Default::default(),
        };
        let p = AppProcess::start(&Launch {
            app: &app,
            version: &version,
            host: &host,
            release_dir: dir.path(),
            log_file: &log,
            run: &run,
            port: Some(1234),
        })
        .unwrap();
        assert!(p.is_alive());
        assert!(pid_alive(p.pid));
        assert!(is_our_process(p.pid, dir.path()));
        // Wait until the shell has run its first lines (and set its trap).
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("port=1234 app=hello")
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the app never wrote its log"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // `sh` ignores SIGTERM here, so this takes the SIGKILL path.
        let started = std::time::Instant::now();
        p.stop().await;
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert!(!p.is_alive());
        assert!(!pid_alive(p.pid));
    }
}
