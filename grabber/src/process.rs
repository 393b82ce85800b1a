//! Supervised app processes: started through the shim (`crate::shim`,
//! which runs `sh -c` as the app's user and keeps the log under its cap)
//! from the release directory in their own process group, watched until
//! they exit, and stopped with SIGTERM to the group, then SIGKILL.
//!
//! A pid is only signalled while it is still the process that was started
//! or adopted (its start time in `/proc/<pid>/stat` is unchanged), so a pid
//! the kernel gave to another process meanwhile is left alone.

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::io;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use deploy::{AppName, Cluster, HostName, RunSpec, Version};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::sync::watch;

use crate::user::AppUser;

/// How often an adopted process (not our child) is polled for exit.
const ADOPTED_POLL: Duration = Duration::from_millis(500);
/// How long to wait for a process to vanish after SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// Everything needed to start one release.
pub(crate) struct Launch<'a> {
    pub app: &'a AppName,
    pub version: &'a Version,
    pub host: &'a HostName,
    pub cluster: &'a Cluster,
    /// `releases/<version>`, never `current`, so the process keeps its
    /// release even after `current` moves.
    pub release_dir: &'a Path,
    pub log_file: &'a Path,
    pub run: &'a RunSpec,
    pub port: Option<u16>,
    /// The binary re-executed as the shim (`crate::shim::SHIM_ARG`).
    pub shim: &'a Path,
    pub log_limits: crate::shim::LogLimits,
    /// The user to run as, when not the grabber's own.
    pub user: Option<AppUser>,
    /// The app's config variables (`deploy env`), secrets included: only
    /// ever passed as environment, never logged.
    pub config: std::collections::BTreeMap<String, String>,
}

impl Launch<'_> {
    /// The environment an app (and its health command) sees: `PATH` and
    /// `LANG` from the grabber, `HOME` (and `USER`, `LOGNAME`) of the app's
    /// user, `run.env`, `run.paths` under the release directory, `PORT` and
    /// `SLIPWAY_*` (`APP`, `VERSION`, `HOST`, `CLUSTER`, `SHARED`), and the
    /// app's config (`deploy env`, over `run.env`). Nothing else
    /// of the grabber's environment.
    pub(crate) fn env(&self) -> Vec<(OsString, OsString)> {
        let inherited: &[&str] = if self.user.is_some() {
            &["PATH", "LANG"]
        } else {
            &["PATH", "HOME", "LANG"]
        };
        let mut env: Vec<(OsString, OsString)> = inherited
            .iter()
            .filter_map(|k| std::env::var_os(k).map(|v| (OsString::from(k), v)))
            .collect();
        if let Some(user) = &self.user {
            if let Some(home) = &user.home {
                env.push(("HOME".into(), home.into()));
            }
            if let Some(name) = &user.name {
                env.push(("USER".into(), name.into()));
                env.push(("LOGNAME".into(), name.into()));
            }
        }
        env.extend(self.run.env.iter().map(|(k, v)| (k.into(), v.into())));
        // The config set with `deploy env` wins over `[run] env`: it is how
        // a setting changes without a rebuild.
        for (k, v) in &self.config {
            let key = OsString::from(k);
            env.retain(|(old, _)| *old != key);
            env.push((key, v.into()));
        }
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
        env.push(("SLIPWAY_CLUSTER".into(), self.cluster.as_str().into()));
        // `apps/<app>/shared`, beside `releases/`: what outlives releases.
        if let Some(app_dir) = self.release_dir.parent().and_then(Path::parent) {
            env.push(("SLIPWAY_SHARED".into(), app_dir.join("shared").into()));
        }
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
    /// When it was started (or adopted).
    pub since: std::time::Instant,
    /// Its start time in clock ticks after boot (`/proc/<pid>/stat`), to
    /// tell it from a later process given the same pid.
    start_ticks: Option<u64>,
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
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(launch.log_file)?;
        // The marker where this run's output starts: a failure report
        // sends the log from here on.
        {
            use std::io::Write;
            writeln!(
                log,
                "{START_MARK}{} {} at {} ---",
                launch.app,
                launch.version,
                deploy::Timestamp::now()
            )?;
        }
        let mut cmd = tokio::process::Command::new(launch.shim);
        // The shim's own complaints (it cannot open the log…) go to the
        // log file as well; the app's output goes through the shim.
        cmd.args(crate::shim::args(
            launch.log_file,
            launch.log_limits,
            launch.user.as_ref().map(|u| (u.uid, u.gid)),
            &launch.run.command,
        ))
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
        // Our child, not reaped yet: the pid is surely its.
        let start_ticks = start_ticks(pid);
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
            since: std::time::Instant::now(),
            start_ticks,
            exited,
        })
    }

    /// Takes over a process a previous grabber started. It is not our
    /// child, so its exit is noticed by polling `/proc`: gone, a zombie, or
    /// another process under the same pid.
    pub(crate) fn adopt(
        pid: u32,
        version: Version,
        port: Option<u16>,
        stop_timeout: Duration,
    ) -> AppProcess {
        let start_ticks = start_ticks(pid);
        let alive = move || pid_alive(pid) && self::start_ticks(pid) == start_ticks;
        let (tx, exited) = watch::channel(!alive());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tx.closed() => return,
                    _ = tokio::time::sleep(ADOPTED_POLL) => {}
                }
                if !alive() {
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
            since: std::time::Instant::now(),
            start_ticks,
            exited,
        }
    }

    pub(crate) fn is_alive(&self) -> bool {
        !*self.exited.borrow()
    }

    /// Whether the process is still running `wait` from now (false as soon
    /// as it exits).
    pub(crate) async fn survives(&self, wait: std::time::Duration) -> bool {
        tokio::select! {
            _ = self.exited() => false,
            _ = tokio::time::sleep(wait) => self.is_alive(),
        }
    }

    /// Resolves once the process has exited.
    pub(crate) async fn exited(&self) {
        let mut rx = self.exited.clone();
        // An error means the watcher is gone (runtime shutting down): treat
        // the process as no longer ours to wait for.
        let _ = rx.wait_for(|e| *e).await;
    }

    /// SIGTERM to the process group, SIGKILL after `stop_timeout`, then a
    /// last SIGKILL to the group for any child left behind, unless the pid
    /// now belongs to another process. (While any member of the group
    /// lives, the kernel does not hand its id out again; once the leader is
    /// gone, a leftover child is only reachable through the group.)
    pub(crate) async fn stop(&self) {
        let Some(group) = self.group() else { return };
        if self.reused() {
            return;
        }
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
        if self.reused() {
            return;
        }
        let _ = killpg(group, Signal::SIGKILL);
    }

    /// Whether the pid is another process's now (its start time differs
    /// from the one recorded).
    fn reused(&self) -> bool {
        match (self.start_ticks, start_ticks(self.pid)) {
            (Some(ours), Some(now)) => ours != now,
            _ => false,
        }
    }

    fn group(&self) -> Option<Pid> {
        // Never signal init or "every process" by accident.
        i32::try_from(self.pid)
            .ok()
            .filter(|p| *p > 1)
            .map(Pid::from_raw)
    }
}

/// Stops a process group that is not our child: SIGTERM, SIGKILL after
/// `timeout`, then waits (briefly) for its leader to go.
pub(crate) async fn stop_group(group: u32, timeout: Duration) {
    let Some(pg) = i32::try_from(group)
        .ok()
        .filter(|g| *g > 1)
        .map(Pid::from_raw)
    else {
        return;
    };
    let _ = killpg(pg, Signal::SIGTERM);
    let gone = |until: std::time::Instant| async move {
        while pid_alive(group) && std::time::Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    gone(std::time::Instant::now() + timeout).await;
    let _ = killpg(pg, Signal::SIGKILL);
    gone(std::time::Instant::now() + KILL_WAIT).await;
}

/// Whether a process with this pid exists and is alive (not a zombie), by
/// the one definition every part of Slipway uses.
pub(crate) use deploy::procfs::pid_alive;

/// When `pid` started, in clock ticks after boot (`/proc/<pid>/stat`,
/// field 22): with the pid, it names one process for good.
pub(crate) fn start_ticks(pid: u32) -> Option<u64> {
    deploy::procfs::stat(pid).map(|s| s.starttime)
}

/// Whether `pid` is a shim (`<grabber> __slipway-shim …`): the process a
/// grabber starts to lead each app's process group.
pub(crate) fn is_shim(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
        cmdline
            .split(|b| *b == 0)
            .nth(1)
            .is_some_and(|arg| arg == crate::shim::SHIM_ARG.as_bytes())
    })
}

/// Whether `pid` is a process of `app` on `host` that a shim started (or a
/// descendant of one): its environment carries the `SLIPWAY_APP` and
/// `SLIPWAY_HOST` the grabber gives every app process ([`Launch::env`]).
/// What is left of an app's group after its shim died is recognised so;
/// an operator's shell or script that merely runs from a release is not.
pub(crate) fn runs_app(pid: u32, app: &AppName, host: &HostName) -> bool {
    let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
        return false;
    };
    let has = |var: &str, value: &str| {
        let want = format!("{var}={value}");
        environ.split(|b| *b == 0).any(|kv| kv == want.as_bytes())
    };
    has("SLIPWAY_APP", app.as_str()) && has("SLIPWAY_HOST", host.as_str())
}

/// The line the grabber writes to an app's log before each start.
pub(crate) const START_MARK: &str = "--- slipway: starting ";

/// What the app wrote since its last start (the last [`START_MARK`] line),
/// at most the last `max_bytes` of it.
pub(crate) fn log_since_start(path: &Path, max_bytes: u64) -> Option<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path).ok()?;
    let len = f.metadata().ok()?.len();
    let start = len.saturating_sub(max_bytes);
    f.seek(SeekFrom::Start(start)).ok()?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf);
    let text = match text.rfind(START_MARK) {
        Some(at) => text[at..].split_once('\n').map_or("", |(_, rest)| rest),
        // The cut at `start` may leave half a line first: drop it.
        None if start > 0 => text.split_once('\n').map_or("", |(_, rest)| rest),
        None => &text,
    };
    let text = text.trim_end();
    (!text.is_empty()).then(|| text.to_string())
}

/// The processes running from under `releases_dir` (an app's
/// `releases/`), by their working directory: `(pid, process group,
/// release directory)`. A previous grabber's shims and apps, whether it
/// recorded them or died before it could.
pub(crate) fn processes_under(releases_dir: &Path) -> Vec<(u32, u32, std::path::PathBuf)> {
    let Ok(releases) = releases_dir.canonicalize() else {
        return Vec::new();
    };
    let me = std::process::id();
    deploy::procfs::processes_under(&releases)
        .into_iter()
        .filter(|(s, _)| s.pid != me)
        .filter_map(|(s, rel)| {
            let first = rel.components().next()?;
            Some((s.pid, s.pgrp, releases.join(first)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_since_start_begins_after_the_last_mark() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.log");
        let mut text = format!("{START_MARK}hello 1-aaaaaaa at x ---\nold run\n");
        text.push_str(&format!("{START_MARK}hello 2-bbbbbbb at y ---\n"));
        text.extend((0..100).map(|i| format!("line {i}\n")));
        std::fs::write(&p, text).unwrap();
        let t = log_since_start(&p, 1 << 20).unwrap();
        assert!(t.starts_with("line 0\n") && t.ends_with("line 99"), "{t}");
        assert!(!t.contains("old run"));
        // Bounded: the newest bytes, starting at a whole line.
        let t = log_since_start(&p, 20).unwrap();
        assert_eq!(t, "line 98\nline 99");
        assert_eq!(log_since_start(&dir.path().join("missing"), 100), None);
    }

    #[test]
    fn release_paths_come_first_under_the_release_dir() {
        let app = AppName::parse("hello").unwrap();
        let version = Version::parse("1-abcdef0").unwrap();
        let host = HostName::parse("h1").unwrap();
        let cluster = Cluster::parse("local").unwrap();
        let run = RunSpec {
            shared: Vec::new(),
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
            user: None,
        };
        let launch = Launch {
            app: &app,
            version: &version,
            host: &host,
            cluster: &cluster,
            release_dir: Path::new("/srv/apps/hello/releases/1-abcdef0"),
            log_file: Path::new("/dev/null"),
            run: &run,
            port: None,
            shim: Path::new("/unused"),
            log_limits: Default::default(),
            user: None,
            config: Default::default(),
        };
        let env: std::collections::HashMap<_, _> = launch.env().into_iter().collect();
        assert_eq!(env[&OsString::from("SLIPWAY_CLUSTER")], "local");
        assert_eq!(
            env[&OsString::from("SLIPWAY_SHARED")],
            "/srv/apps/hello/shared"
        );
        assert_eq!(env[&OsString::from("SLIPWAY_VERSION")], "1-abcdef0");
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
        let cluster = Cluster::parse("local").unwrap();
        let log = dir.path().join("log/hello.log");
        let run = RunSpec {
            command: "echo port=$PORT app=$SLIPWAY_APP; trap '' TERM; sleep 1000".into(),
            port: Some(1234),
            env: Default::default(),
            stop_timeout_ms: 300,
            paths: Default::default(),
            shared: Vec::new(),
            user: None,
        };
        let p = AppProcess::start(&Launch {
            app: &app,
            version: &version,
            host: &host,
            cluster: &cluster,
            release_dir: dir.path(),
            log_file: &log,
            run: &run,
            port: Some(1234),
            shim: &crate::test_shim(),
            log_limits: Default::default(),
            user: None,
            config: Default::default(),
        })
        .unwrap();
        assert!(start_ticks(p.pid).is_some());
        assert!(p.is_alive());
        assert!(pid_alive(p.pid));
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
        // It has exec'd by now (the app wrote): a shim, by its command line.
        assert!(is_shim(p.pid));
        assert!(
            processes_under(dir.path().parent().unwrap())
                .iter()
                .filter(|(_, g, _)| *g == p.pid)
                .count()
                >= 2,
            "the shim and the app, in one group"
        );
        // `sh` ignores SIGTERM here, so this takes the SIGKILL path.
        let started = std::time::Instant::now();
        p.stop().await;
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert!(!p.is_alive());
        assert!(!pid_alive(p.pid));
    }
}
