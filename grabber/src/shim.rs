//! The app shim: a small process between the grabber and each app, in the
//! manner of conmon and containerd-shim. The grabber starts it (its own
//! binary, re-executed with [`SHIM_ARG`]) as the leader of the app's
//! process group; the shim starts `sh -c <command>`, holds the read end of
//! the app's stdout and stderr and writes them to the app's log, rotating at
//! a size cap. Because the shim, not the grabber, holds the pipe, an app
//! outlives a grabber restart without losing its log or getting SIGPIPE,
//! and an app that writes gigabytes cannot fill the disk.
//!
//! The shim ignores SIGTERM (the grabber signals the whole group, so the app
//! gets it), drains the pipe after the app exits and exits with the app's
//! status (128 + signal when it was killed). An app that exits leaving
//! processes behind in its group (a daemon that forked) has them stopped:
//! a grabber supervises foreground processes only.
//!
//! The shim keeps the grabber's user (it opens and rotates the log, which
//! the app must not be able to redirect); the app's `sh` is started as the
//! app's user when one is given: std's `CommandExt::gid`/`uid` make the
//! child call setgid, then setgroups with an empty list (as root, when no
//! groups were given), then setuid, between fork and exec. The app never
//! shares a uid with the shim or the grabber, so it cannot read their
//! `/proc/<pid>/environ` or signal them.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

/// The first argument that turns a Slipway binary into the shim.
pub const SHIM_ARG: &str = "__slipway-shim";

/// How long the app's output may stay open after the app exited before
/// what it left behind is stopped.
const LEFT_BEHIND_AFTER: Duration = Duration::from_millis(200);

/// How long what the app left behind gets to end on SIGTERM.
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);

/// How the log of one app is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogLimits {
    /// Bytes in `app.log` before it is rotated to `app.log.1`.
    pub max_bytes: u64,
    /// Rotated files kept (`app.log.1` … `app.log.<keep>`); the oldest is
    /// dropped. The app's logs never take more than `(keep + 1) * max_bytes`.
    pub keep: u32,
}

impl Default for LogLimits {
    fn default() -> Self {
        Self {
            max_bytes: 10 * 1024 * 1024,
            keep: 2,
        }
    }
}

/// The arguments the grabber starts the shim with (after [`SHIM_ARG`]):
/// the log, its limits, `UID:GID` to run the app as (`-`: the shim's own),
/// the command.
pub(crate) fn args(
    log: &Path,
    limits: LogLimits,
    user: Option<(u32, u32)>,
    command: &str,
) -> Vec<OsString> {
    let user = user.map_or_else(|| "-".to_string(), |(u, g)| format!("{u}:{g}"));
    vec![
        SHIM_ARG.into(),
        log.into(),
        limits.max_bytes.to_string().into(),
        limits.keep.to_string().into(),
        user.into(),
        command.into(),
    ]
}

/// What the shim was asked to do.
#[derive(Debug, PartialEq, Eq)]
struct ShimArgs {
    log: PathBuf,
    limits: LogLimits,
    user: Option<(u32, u32)>,
    command: OsString,
}

/// Runs the shim when the process was started as one; every binary that
/// runs grabbers calls this first thing in `main`.
pub fn dispatch() -> Option<ExitCode> {
    let mut args = std::env::args_os().skip(1);
    if args.next()? != SHIM_ARG {
        return None;
    }
    let rest: Vec<OsString> = args.collect();
    Some(match parse(&rest) {
        Ok(args) => run(&args),
        Err(e) => {
            eprintln!("slipway shim: {e}");
            ExitCode::from(125)
        }
    })
}

fn parse(args: &[OsString]) -> Result<ShimArgs, String> {
    let [log, max, keep, user, command] = args else {
        return Err(format!(
            "expected LOG MAX_BYTES KEEP USER COMMAND, got {} arguments",
            args.len()
        ));
    };
    let number = |s: &OsString, what: &str| {
        s.to_str()
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| format!("{what} is not a number: {s:?}"))
    };
    let limits = LogLimits {
        max_bytes: number(max, "MAX_BYTES")?.max(1),
        keep: u32::try_from(number(keep, "KEEP")?).map_err(|_| "KEEP is too large".to_string())?,
    };
    let user = match user.to_str() {
        Some("-") => None,
        Some(s) => {
            let (u, g) = s
                .split_once(':')
                .and_then(|(u, g)| Some((u.parse::<u32>().ok()?, g.parse::<u32>().ok()?)))
                .ok_or_else(|| format!("USER is not `-` or UID:GID: {s:?}"))?;
            Some((u, g))
        }
        None => return Err(format!("USER is not `-` or UID:GID: {user:?}")),
    };
    Ok(ShimArgs {
        log: PathBuf::from(log),
        limits,
        user,
        command: command.clone(),
    })
}

fn run(args: &ShimArgs) -> ExitCode {
    let log = &args.log;
    let mut writer = match RotatingLog::open(log, args.limits) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("slipway shim: cannot open {}: {e}", log.display());
            return ExitCode::from(125);
        }
    };
    let (mut read, write) = match std::io::pipe() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("slipway shim: cannot make a pipe: {e}");
            return ExitCode::from(125);
        }
    };
    let stderr = match write.try_clone() {
        Ok(w) => w,
        Err(e) => {
            eprintln!("slipway shim: cannot make a pipe: {e}");
            return ExitCode::from(125);
        }
    };
    let mut sh = Command::new("sh");
    sh.arg("-c")
        .arg(&args.command)
        .stdin(Stdio::null())
        .stdout(write)
        .stderr(stderr);
    if let Some((uid, gid)) = args.user {
        use std::os::unix::process::CommandExt;
        sh.gid(gid).uid(uid);
    }
    let spawned = sh.spawn();
    // The command holds this process's copies of the pipe's write end: the
    // pump below sees the end of the output only once they are closed.
    drop(sh);
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            let who = args
                .user
                .map(|(u, g)| format!(" as uid {u}, gid {g}"))
                .unwrap_or_default();
            let _ = writeln!(writer, "slipway: cannot start sh{who}: {e}");
            return ExitCode::from(127);
        }
    };
    // From here the group's SIGTERM is for the app; the shim ends when the
    // app does. Blocked (not ignored: nothing unsafe), after the app was
    // started, so the app does not inherit the mask; the pump thread below
    // does.
    let mut mask = nix::sys::signal::SigSet::empty();
    for sig in [
        nix::sys::signal::Signal::SIGTERM,
        nix::sys::signal::Signal::SIGINT,
        nix::sys::signal::Signal::SIGHUP,
    ] {
        mask.add(sig);
    }
    let _ = mask.thread_block();

    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let pump = std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match read.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    // A full disk must not stop the app: the output is dropped.
                    let _ = writer.write_all(&buf[..n]);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let _ = writer.flush();
        let _ = done_tx.send(());
    });
    let status = child.wait();
    // Output the app wrote just before exiting is still in the pipe. When
    // the pipe stays open, the app left something behind (it forked into
    // the background and exited, as a daemon does): that is not an app
    // the grabber can supervise, so what is left of the group is stopped
    // (SIGTERM, which the shim blocks; then SIGKILL, which ends the shim
    // too) and the app's exit is seen at once, not after a bake passed.
    if done_rx.recv_timeout(LEFT_BEHIND_AFTER).is_err() {
        let group = nix::unistd::getpgrp();
        eprintln!(
            "slipway shim: the app exited but left processes running in its group; stopping them"
        );
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGTERM);
        if done_rx.recv_timeout(DRAIN_AFTER_EXIT).is_err() {
            let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        }
    }
    let _ = pump.join();
    match status {
        Ok(s) => {
            use std::os::unix::process::ExitStatusExt;
            let code = s
                .code()
                .or_else(|| s.signal().map(|sig| 128 + sig))
                .unwrap_or(1);
            ExitCode::from(u8::try_from(code).unwrap_or(1))
        }
        Err(_) => ExitCode::from(1),
    }
}

/// An append-only log file that moves aside to `.1`, `.2`, … when it would
/// pass `max_bytes`, cutting at a line end when the chunk has one.
pub(crate) struct RotatingLog {
    path: PathBuf,
    limits: LogLimits,
    file: File,
    size: u64,
}

impl RotatingLog {
    pub(crate) fn open(path: &Path, limits: LogLimits) -> std::io::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(Self {
            path: path.to_path_buf(),
            limits,
            file,
            size,
        })
    }

    fn rotated(&self, n: u32) -> PathBuf {
        let mut name = self.path.as_os_str().to_owned();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        if self.limits.keep == 0 {
            self.file.set_len(0)?;
        } else {
            for n in (1..self.limits.keep).rev() {
                let from = self.rotated(n);
                if from.exists() {
                    std::fs::rename(&from, self.rotated(n + 1))?;
                }
            }
            std::fs::rename(&self.path, self.rotated(1))?;
            self.file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
        }
        self.size = 0;
        Ok(())
    }
}

impl Write for RotatingLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let room = self.limits.max_bytes.saturating_sub(self.size);
        if (buf.len() as u64) <= room {
            self.file.write_all(buf)?;
            self.size += buf.len() as u64;
            return Ok(buf.len());
        }
        // What fits goes in this file, up to its last line end when there
        // is one; the rest starts the next file.
        let fits = usize::try_from(room).unwrap_or(usize::MAX).min(buf.len());
        let cut = buf[..fits]
            .iter()
            .rposition(|b| *b == b'\n')
            .map(|i| i + 1)
            .unwrap_or(if self.size == 0 { fits.max(1) } else { 0 });
        if cut > 0 {
            self.file.write_all(&buf[..cut])?;
            self.size += cut as u64;
        }
        self.rotate()?;
        if cut == 0 {
            // Nothing fitted: the chunk starts the new (empty) file.
            return self.write(buf);
        }
        Ok(cut)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn total(dir: &Path) -> u64 {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum()
    }

    #[test]
    fn rotates_at_line_ends_and_keeps_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        let limits = LogLimits {
            max_bytes: 100,
            keep: 2,
        };
        let mut log = RotatingLog::open(&path, limits).unwrap();
        for i in 0..1000 {
            writeln!(log, "line {i:04}").unwrap();
        }
        log.flush().unwrap();
        let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(files.len(), 3, "app.log, .1, .2");
        assert!(total(dir.path()) <= 300);
        let now = std::fs::read_to_string(&path).unwrap();
        assert!(now.ends_with("line 0999\n"), "{now}");
        let older = std::fs::read_to_string(dir.path().join("app.log.1")).unwrap();
        assert!(
            older.starts_with("line ") && older.ends_with('\n'),
            "{older}"
        );
        for f in [&now, &older] {
            assert!(f.len() <= 100);
        }
    }

    #[test]
    fn a_chunk_without_line_ends_is_cut_at_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        let mut log = RotatingLog::open(
            &path,
            LogLimits {
                max_bytes: 10,
                keep: 0,
            },
        )
        .unwrap();
        log.write_all(&[b'x'; 95]).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), vec![b'x'; 5]);
        assert_eq!(total(dir.path()), 5);
    }

    #[test]
    fn bad_arguments_are_named() {
        let e = parse(&["a".into(), "ten".into(), "1".into(), "-".into(), "x".into()]).unwrap_err();
        assert!(e.contains("MAX_BYTES is not a number"), "{e}");
        let e = parse(&[
            "a".into(),
            "10".into(),
            "1".into(),
            "root".into(),
            "x".into(),
        ])
        .unwrap_err();
        assert!(e.contains("USER is not `-` or UID:GID"), "{e}");
        let e = parse(&["a".into()]).unwrap_err();
        assert!(e.contains("got 1 arguments"), "{e}");
    }

    #[test]
    fn the_arguments_the_grabber_gives_are_the_ones_the_shim_reads() {
        let limits = LogLimits {
            max_bytes: 5,
            keep: 1,
        };
        for user in [None, Some((65534, 65533))] {
            let args = args(Path::new("/l/a.log"), limits, user, "exec x");
            assert_eq!(args[0], SHIM_ARG);
            assert_eq!(
                parse(&args[1..]).unwrap(),
                ShimArgs {
                    log: "/l/a.log".into(),
                    limits,
                    user,
                    command: "exec x".into(),
                }
            );
        }
    }
}
