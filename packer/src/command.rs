//! Running one build step: `sh -c` in the checkout, in the build's sandbox
//! (see `sandbox.rs`), with a cleaned environment, a deadline, limits on
//! output and disk, and stdout and stderr captured together.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use crate::sandbox::Jail;

/// Output kept per command: a runaway build cannot fill memory. The start is
/// dropped first, the end usually says what went wrong.
const MAX_OUTPUT: usize = 1 << 20;

/// Output without a newline is streamed once this much has gathered, so a
/// command that never prints one cannot grow the line buffer.
const FLUSH_AT: usize = 64 * 1024;

/// How long to wait for the output to end after the shell exits, before
/// killing what it left running in the background.
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// How often the disk the build uses is measured while a step runs.
const DISK_CHECK_EVERY: Duration = Duration::from_secs(2);

/// A command to run.
pub(crate) struct Spec<'a> {
    pub(crate) command: &'a str,
    /// Where it runs (an outside path; the sandbox maps it).
    pub(crate) dir: &'a Path,
    /// Added to the kept variables (values as the command sees them).
    pub(crate) env: &'a [(&'a str, &'a str)],
    pub(crate) timeout: Duration,
    /// Gets the output as it is printed.
    pub(crate) sink: Option<&'a crate::log::LogSink>,
    pub(crate) jail: &'a Jail,
    /// Whether the command reaches the network (sandboxed builds).
    pub(crate) network: bool,
}

/// How the command ended.
#[derive(Debug)]
pub(crate) enum Outcome {
    Exited(ExitStatus),
    TimedOut,
    /// It printed more than the output limit (bytes) and was killed.
    TooMuchOutput(u64),
    /// The build's directories grew past the disk limit (bytes).
    TooMuchDisk(u64),
}

/// Runs the command to completion or its deadline, returning how it ended
/// and its output (stdout and stderr interleaved, lossily UTF-8).
pub(crate) fn run(spec: &Spec<'_>) -> std::io::Result<(Outcome, String)> {
    let (mut reader, writer) = std::io::pipe()?;
    let mut cmd: Command = spec
        .jail
        .command(spec.command, spec.dir, spec.env, spec.network);
    cmd.stdin(Stdio::null())
        .stdout(writer.try_clone()?)
        .stderr(writer)
        // Its own process group, so a timeout kills what it started too.
        .process_group(0);
    let mut child = cmd.spawn()?;
    // The command holds our copies of the pipe's write end; until they are
    // closed the reader never sees the end of the output.
    drop(cmd);

    let output = Arc::new(Mutex::new(Output::default()));
    let limit = spec.jail.limits().output;
    let over_limit = Arc::new(AtomicBool::new(false));
    let printed = Arc::new(AtomicU64::new(0));
    let (done_tx, done_rx) = mpsc::channel();
    {
        let output = Arc::clone(&output);
        let sink = spec.sink.cloned();
        let over_limit = Arc::clone(&over_limit);
        let printed = Arc::clone(&printed);
        std::thread::spawn(move || {
            let mut chunk = [0u8; 8192];
            // Output not yet sent: lines go out whole (or in pieces of
            // `FLUSH_AT`), so a character is never split between two sends.
            let mut pending: Vec<u8> = Vec::new();
            loop {
                match reader.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let total = printed.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
                        if total > limit {
                            // Past the limit: keep draining so the command
                            // is not stuck on a full pipe until it is killed.
                            over_limit.store(true, Ordering::Relaxed);
                            continue;
                        }
                        if let Ok(mut out) = output.lock() {
                            out.push(&chunk[..n]);
                        }
                        if let Some(sink) = &sink {
                            let before = pending.len();
                            pending.extend_from_slice(&chunk[..n]);
                            // Only the new bytes can hold a new line end.
                            let newline = chunk[..n].iter().rposition(|b| *b == b'\n');
                            if let Some(end) = newline.map(|i| before + i) {
                                let lines: Vec<u8> = pending.drain(..=end).collect();
                                sink.send(String::from_utf8_lossy(&lines).into_owned());
                            } else if pending.len() >= FLUSH_AT {
                                let cut = utf8_boundary(&pending);
                                let part: Vec<u8> = pending.drain(..cut).collect();
                                sink.send(String::from_utf8_lossy(&part).into_owned());
                            }
                        }
                    }
                }
            }
            if let Some(sink) = &sink
                && !pending.is_empty()
            {
                pending.push(b'\n');
                sink.send(String::from_utf8_lossy(&pending).into_owned());
            }
            let _ = done_tx.send(());
        });
    }

    let deadline = Instant::now() + spec.timeout;
    let pid = child.id();
    let disk_limit = spec.jail.limits().disk;
    let mut next_disk_check = Instant::now() + DISK_CHECK_EVERY;
    let outcome = loop {
        if let Some(status) = child.try_wait()? {
            break Outcome::Exited(status);
        }
        let stop = if over_limit.load(Ordering::Relaxed) {
            Some(Outcome::TooMuchOutput(limit))
        } else if Instant::now() >= deadline {
            Some(Outcome::TimedOut)
        } else if Instant::now() >= next_disk_check {
            next_disk_check = Instant::now() + DISK_CHECK_EVERY;
            (disk_usage(spec.jail.disk_dirs()) > disk_limit)
                .then_some(Outcome::TooMuchDisk(disk_limit))
        } else {
            None
        };
        if let Some(outcome) = stop {
            kill_group(pid);
            let _ = child.kill();
            let _ = child.wait();
            break outcome;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    if done_rx.recv_timeout(DRAIN_GRACE).is_err() {
        // Something it started in the background still holds the output.
        kill_group(pid);
        let _ = done_rx.recv_timeout(DRAIN_GRACE);
    }
    let mut text = match output.lock() {
        Ok(out) => out.text(),
        Err(poisoned) => poisoned.into_inner().text(),
    };
    let total = printed.load(Ordering::Relaxed);
    if total > limit {
        let marker = format!(
            "[... output stopped at the limit of {limit} bytes: the command printed at least {total} ...]\n"
        );
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&marker);
        if let Some(sink) = spec.sink {
            sink.send(marker);
        }
    }
    Ok((outcome, text))
}

/// Where to cut `bytes` so no UTF-8 character is split: before an
/// incomplete character at the end, else at the end.
fn utf8_boundary(bytes: &[u8]) -> usize {
    match std::str::from_utf8(bytes) {
        Err(e) if e.error_len().is_none() && e.valid_up_to() > 0 => e.valid_up_to(),
        _ => bytes.len(),
    }
}

/// SIGKILLs a process group. Through `kill(1)` because this workspace has no
/// unsafe code for `libc::kill`.
fn kill_group(pgid: u32) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// The captured output, its start dropped past [`MAX_OUTPUT`].
#[derive(Default)]
struct Output {
    bytes: Vec<u8>,
    dropped: u64,
}

impl Output {
    fn push(&mut self, data: &[u8]) {
        self.bytes.extend_from_slice(data);
        if self.bytes.len() > 2 * MAX_OUTPUT {
            let cut = self.bytes.len() - MAX_OUTPUT;
            self.bytes.drain(..cut);
            self.dropped += cut as u64;
        }
    }

    fn text(&self) -> String {
        let mut s = String::new();
        if self.dropped > 0 {
            s.push_str(&format!(
                "[... {} bytes of output dropped ...]\n",
                self.dropped
            ));
        }
        s.push_str(&String::from_utf8_lossy(&self.bytes));
        s
    }
}

/// The bytes on disk under `dirs` (allocated blocks, so a sparse file counts
/// what it uses), not following links.
fn disk_usage<'a>(dirs: impl Iterator<Item = &'a Path>) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0u64;
    for dir in dirs {
        for entry in walkdir::WalkDir::new(dir)
            .follow_links(false)
            .into_iter()
            .flatten()
        {
            if let Ok(meta) = entry.metadata() {
                total = total.saturating_add(meta.blocks().saturating_mul(512));
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The mechanics of running a step, without a sandbox (the sandbox has
    /// tests of its own, in `tests/packer/sandbox.rs`).
    fn unsandboxed(dir: &Path) -> Jail {
        let config = crate::SandboxConfig {
            kind: crate::SandboxKind::None,
            ..crate::SandboxConfig::default()
        };
        Jail::new(&config, dir, dir, &[])
    }

    fn run_in(command: &str, timeout: Duration) -> (Outcome, String) {
        let dir = tempfile::tempdir().unwrap();
        let jail = unsandboxed(dir.path());
        run(&Spec {
            command,
            dir: dir.path(),
            env: &[("SLIPWAY_APP", "hello")],
            timeout,
            sink: None,
            jail: &jail,
            network: false,
        })
        .unwrap()
    }

    #[test]
    fn captures_both_streams_and_env() {
        let (o, out) = run_in(
            "echo out; echo err >&2; echo app=$SLIPWAY_APP; echo secret=${SECRET_X:-unset}",
            Duration::from_secs(10),
        );
        assert!(matches!(o, Outcome::Exited(s) if s.success()), "{o:?}");
        assert_eq!(out, "out\nerr\napp=hello\nsecret=unset\n");
    }

    #[test]
    fn reports_failure() {
        let (o, out) = run_in("echo boom; exit 3", Duration::from_secs(10));
        assert!(
            matches!(o, Outcome::Exited(s) if s.code() == Some(3)),
            "{o:?}"
        );
        assert_eq!(out, "boom\n");
    }

    #[test]
    fn times_out_and_kills_children() {
        let start = Instant::now();
        let (o, out) = run_in(
            "echo started; sleep 30 & sleep 30",
            Duration::from_millis(300),
        );
        assert!(matches!(o, Outcome::TimedOut), "{o:?}");
        assert_eq!(out, "started\n");
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn background_leftovers_do_not_hang() {
        let start = Instant::now();
        let (o, _) = run_in("sleep 30 & echo done", Duration::from_secs(10));
        assert!(matches!(o, Outcome::Exited(s) if s.success()), "{o:?}");
        assert!(
            start.elapsed() < Duration::from_secs(8),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn output_streams_line_by_line_while_the_command_runs() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, mut rx) = crate::log::LogSink::channel();
        let go = dir.path().join("go");
        let command = format!(
            "echo first; while [ ! -f '{}' ]; do sleep 0.05; done; printf 'second\\nno newline'",
            go.display()
        );
        let handle = {
            let dir = dir.path().to_path_buf();
            std::thread::spawn(move || {
                let jail = unsandboxed(&dir);
                run(&Spec {
                    command: &command,
                    dir: &dir,
                    env: &[],
                    timeout: Duration::from_secs(30),
                    sink: Some(&tx),
                    jail: &jail,
                    network: false,
                })
                .unwrap()
            })
        };
        // The first line arrives while the command still waits for `go`.
        assert_eq!(rx.blocking_recv().as_deref(), Some("first\n"));
        assert!(!handle.is_finished());
        std::fs::write(&go, "").unwrap();
        let (outcome, all) = handle.join().unwrap();
        assert!(matches!(outcome, Outcome::Exited(s) if s.success()));
        let mut rest = String::new();
        while let Ok(more) = rx.try_recv() {
            rest.push_str(&more);
        }
        assert_eq!(rest, "second\nno newline\n");
        assert_eq!(all, "first\nsecond\nno newline");
    }

    #[test]
    fn output_without_newlines_streams_in_bounded_pieces() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, mut rx) = crate::log::LogSink::channel();
        let jail = unsandboxed(dir.path());
        let (outcome, _) = run(&Spec {
            command: "head -c 300000 /dev/zero | tr '\\0' x",
            dir: dir.path(),
            env: &[],
            timeout: Duration::from_secs(30),
            sink: Some(&tx),
            jail: &jail,
            network: false,
        })
        .unwrap();
        assert!(matches!(outcome, Outcome::Exited(s) if s.success()));
        let mut pieces = Vec::new();
        while let Ok(piece) = rx.try_recv() {
            pieces.push(piece.len());
        }
        assert!(pieces.len() >= 4, "{pieces:?}");
        assert!(
            pieces.iter().all(|n| *n <= FLUSH_AT + 8192 + 1),
            "{pieces:?}"
        );
    }

    #[test]
    fn output_past_the_limit_stops_the_command() {
        let dir = tempfile::tempdir().unwrap();
        let config = crate::SandboxConfig {
            kind: crate::SandboxKind::None,
            limits: crate::Limits {
                output: 1 << 20,
                ..crate::Limits::default()
            },
            ..crate::SandboxConfig::default()
        };
        let jail = Jail::new(&config, dir.path(), dir.path(), &[]);
        let start = Instant::now();
        let (outcome, text) = run(&Spec {
            command: "yes",
            dir: dir.path(),
            env: &[],
            timeout: Duration::from_secs(60),
            sink: None,
            jail: &jail,
            network: false,
        })
        .unwrap();
        assert!(matches!(outcome, Outcome::TooMuchOutput(_)), "{outcome:?}");
        assert!(
            text.contains("output stopped at the limit"),
            "{}",
            &text[text.len() - 200..]
        );
        assert!(start.elapsed() < Duration::from_secs(30));
    }

    #[test]
    fn utf8_is_cut_between_characters() {
        let s = "aé".as_bytes();
        assert_eq!(utf8_boundary(&s[..2]), 1);
        assert_eq!(utf8_boundary(s), 3);
    }

    #[test]
    fn output_is_bounded() {
        let mut o = Output::default();
        for _ in 0..5 {
            o.push(&vec![b'x'; MAX_OUTPUT]);
        }
        assert!(o.bytes.len() <= 2 * MAX_OUTPUT);
        assert!(o.text().starts_with("[... "));
    }
}
