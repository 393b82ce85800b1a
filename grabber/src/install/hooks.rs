//! The app's own commands around an install: `[hooks]` (`pre_stop`, run by
//! the release being replaced before its process is stopped; `post_start`,
//! run by the new one once it is healthy and baked) and the `[release]
//! command` (`release_phase.rs`). Each runs like the app: `sh -c` from its
//! release directory, as the app's user, with the app's environment plus
//! `SLIPWAY_HOOK`, in a process group of its own that is killed when the
//! command ends or its timeout passes, its output (stdout and stderr, in
//! order) kept up to a bound, from the end.

use std::ffi::OsString;
use std::time::{Duration, Instant};

use deploy::{AppName, HookKind, Manifest, RELEASE_LOG_BYTES, Version};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::AsyncReadExt;

use super::Engine;
use super::error::InstallErrorKind;
use super::report::Reports;
use super::slot::AppSlot;
use super::verify::read_release_manifest;
use crate::process::{AppProcess, Launch};

/// How a command ended.
#[derive(Debug)]
pub(crate) struct Ran {
    /// It exited 0 within its timeout.
    pub ok: bool,
    /// One line: how it ended (exit status, signal, timeout, could not run).
    pub message: String,
    /// The end of its output, at most [`RELEASE_LOG_BYTES`].
    pub output: String,
}

/// The end of a stream, at most `cap` bytes, counting what was dropped.
struct Tail {
    buf: Vec<u8>,
    dropped: usize,
    cap: usize,
}

impl Tail {
    fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        // Trimmed in steps, not on every read.
        if self.buf.len() > 2 * self.cap {
            let cut = self.buf.len() - self.cap;
            self.buf.drain(..cut);
            self.dropped += cut;
        }
    }

    fn text(mut self) -> String {
        if self.buf.len() > self.cap {
            let cut = self.buf.len() - self.cap;
            self.buf.drain(..cut);
            self.dropped += cut;
        }
        let text = String::from_utf8_lossy(&self.buf);
        if self.dropped > 0 {
            format!("({} bytes dropped) …{text}", self.dropped)
        } else {
            text.into_owned()
        }
    }
}

/// Runs `command` as `launch` would run the app, with `extra` added to its
/// environment, for at most `timeout`. `what` names it in messages
/// (`pre_stop hook`, `release command`).
pub(crate) async fn run_command(
    what: &str,
    command: &str,
    launch: &Launch<'_>,
    extra: &[(&str, String)],
    timeout: Duration,
) -> Ran {
    let started = Instant::now();
    let could_not = |e: std::io::Error| Ran {
        ok: false,
        message: format!("cannot run the {what} `{command}`: {e}"),
        output: String::new(),
    };
    // One pipe for stdout and stderr, so the output keeps its order.
    let (writer, mut reader) = match tokio::net::unix::pipe::pipe() {
        Ok(p) => p,
        Err(e) => return could_not(e),
    };
    let (out, err) = match writer
        .into_blocking_fd()
        .and_then(|fd| Ok::<_, std::io::Error>((fd.try_clone()?, fd)))
    {
        Ok(fds) => fds,
        Err(e) => return could_not(e),
    };
    let mut cmd = tokio::process::Command::new("sh");
    cmd.arg("-c")
        .arg(command)
        .current_dir(launch.release_dir)
        .env_clear()
        .envs(launch.env())
        .envs(
            extra
                .iter()
                .map(|(k, v)| (OsString::from(k), OsString::from(v))),
        )
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::from(out))
        .stderr(std::process::Stdio::from(err))
        .process_group(0)
        .kill_on_drop(true);
    if let Some(user) = &launch.user {
        cmd.gid(user.gid).uid(user.uid);
    }
    let spawned = cmd.spawn();
    // Our copies of the pipe's write end close here: the output ends when
    // the command's group is gone.
    drop(cmd);
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => return could_not(e),
    };
    let group = child
        .id()
        .and_then(|pid| i32::try_from(pid).ok())
        .filter(|pid| *pid > 1)
        .map(Pid::from_raw);
    let kill_group = || {
        if let Some(g) = group {
            let _ = killpg(g, Signal::SIGKILL);
        }
    };
    let mut tail = Tail {
        buf: Vec::new(),
        dropped: 0,
        cap: RELEASE_LOG_BYTES,
    };
    let mut chunk = vec![0u8; 16 * 1024];
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    let (mut status, mut timed_out, mut eof) = (None, false, false);
    // Until the output ends and the command was reaped; past the deadline,
    // until it was reaped (a process that left the group may hold the
    // pipe open for ever).
    while !(status.is_some() && (eof || timed_out)) {
        tokio::select! {
            n = reader.read(&mut chunk), if !eof => match n {
                Ok(0) | Err(_) => eof = true,
                Ok(n) => tail.push(&chunk[..n]),
            },
            s = child.wait(), if status.is_none() => {
                // Nothing the command started outlives it.
                kill_group();
                status = Some(s);
            }
            _ = &mut deadline, if !timed_out => {
                timed_out = true;
                kill_group();
            }
        }
    }
    let output = tail.text();
    let took = humantime::format_duration(Duration::from_millis(
        u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    ));
    let Some(status) = status else {
        return could_not(std::io::Error::other("no exit status"));
    };
    let status = match status {
        Ok(s) => s,
        Err(e) => return could_not(e),
    };
    if timed_out && !status.success() {
        return Ran {
            ok: false,
            message: format!(
                "the {what} `{command}` did not end within {}: killed",
                humantime::format_duration(timeout)
            ),
            output,
        };
    }
    Ran {
        ok: status.success(),
        message: if status.success() {
            format!("the {what} `{command}` exited 0 after {took}")
        } else {
            format!("the {what} `{command}` failed ({status}) after {took}")
        },
        output,
    }
}

impl Engine {
    /// Runs the `kind` hook of `version` (when its manifest has one) for
    /// the process on `port` with pid `pid`; its output goes into the
    /// install's log. A hook that fails, times out or cannot run is an
    /// error naming it.
    #[allow(
        clippy::too_many_arguments,
        reason = "the hook's context, each a different thing"
    )]
    pub(super) async fn run_hook(
        &self,
        kind: HookKind,
        app: &AppName,
        version: &Version,
        manifest: &Manifest,
        port: Option<u16>,
        pid: u32,
        rep: &Reports<'_>,
    ) -> Result<(), InstallErrorKind> {
        let Some(command) = manifest.hooks.command(kind) else {
            return Ok(());
        };
        let release_dir = self.cfg.layout.release_dir(app, version);
        let log_file = self.cfg.layout.log_file(app);
        let launch = self
            .launch(app, version, manifest, &release_dir, &log_file, port)
            .map_err(|e| InstallErrorKind::Hook(format!("cannot run the {kind} hook: {e}")))?;
        let extra = [
            ("SLIPWAY_HOOK", kind.as_str().to_string()),
            ("SLIPWAY_PID", pid.to_string()),
        ];
        let timeout = Duration::from_millis(manifest.hooks.timeout_ms);
        let what = format!("{kind} hook of {version}");
        let ran = run_command(&what, command, &launch, &extra, timeout).await;
        tracing::info!(hook = %kind, %version, ok = ran.ok, message = %ran.message, "hook ran");
        rep.attach(&format!("{what}: {}", ran.message), &ran.output);
        if ran.ok {
            Ok(())
        } else {
            Err(InstallErrorKind::Hook(ran.message))
        }
    }
}

impl Engine {
    /// The `pre_stop` hook of the release whose process runs now, before
    /// anything changes for it (the install's switch and stop follow). No
    /// process running, no hook.
    pub(super) async fn pre_stop(
        &self,
        app: &AppName,
        slot: &AppSlot,
        rep: &Reports<'_>,
    ) -> Result<(), InstallErrorKind> {
        let Some(old) = slot.process().filter(|p| p.is_alive()) else {
            return Ok(());
        };
        let manifest = match read_release_manifest(&self.cfg.layout.release_dir(app, &old.version))
        {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(version = %old.version, error = %e,
                    "cannot read the running release's manifest: no pre_stop hook");
                return Ok(());
            }
        };
        self.run_hook(
            HookKind::PreStop,
            app,
            &old.version,
            &manifest,
            old.port,
            old.pid,
            rep,
        )
        .await
    }

    /// After a rollback restarted `version` healthy: its `post_start` hook,
    /// as after any start (it puts back what the `pre_stop` of the failed
    /// install took away). Returns a note for the failure's message.
    pub(super) async fn post_start_restored(
        &self,
        app: &AppName,
        version: &Version,
        proc: &AppProcess,
        rep: &Reports<'_>,
    ) -> String {
        let Ok(manifest) = read_release_manifest(&self.cfg.layout.release_dir(app, version)) else {
            return String::new();
        };
        if manifest.hooks.post_start.is_none() {
            return String::new();
        }
        match self
            .run_hook(
                HookKind::PostStart,
                app,
                version,
                &manifest,
                proc.port,
                proc.pid,
                rep,
            )
            .await
        {
            Ok(()) => "; its post_start hook ran".to_string(),
            Err(e) => format!("; but its post_start hook failed: {e}"),
        }
    }
}
