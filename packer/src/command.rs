//! Running `[build] command`: `sh -c` in the checkout, with a cleaned
//! environment, a deadline, and stdout and stderr captured together.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

/// Variables passed through from packer's own environment; everything else
/// is dropped so builds do not depend on the build machine's setup. Beyond
/// the basics, what reaching package indexes through a company's proxy,
/// CA or mirror needs.
const KEPT_VARS: &[&str] = &[
    "PATH",
    "HOME",
    "LANG",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "PIP_INDEX_URL",
    "PIP_EXTRA_INDEX_URL",
    "PIP_TRUSTED_HOST",
    "PIP_CERT",
    "NODE_EXTRA_CA_CERTS",
    "npm_config_registry",
    "NPM_CONFIG_REGISTRY",
];

/// `PATH` when packer itself has none.
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Output kept per command: a runaway build cannot fill memory. The start is
/// dropped first, the end usually says what went wrong.
const MAX_OUTPUT: usize = 1 << 20;

/// How long to wait for the output to end after the shell exits, before
/// killing what it left running in the background.
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// A command to run.
pub(crate) struct Spec<'a> {
    pub(crate) command: &'a str,
    pub(crate) dir: &'a Path,
    /// Added to the kept variables.
    pub(crate) env: &'a [(&'a str, &'a str)],
    pub(crate) timeout: Duration,
    /// Gets the output line by line as it is printed.
    pub(crate) sink: Option<&'a crate::build::LogSink>,
}

/// How the command ended.
#[derive(Debug)]
pub(crate) enum Outcome {
    Exited(ExitStatus),
    TimedOut,
}

/// Runs the command to completion or its deadline, returning how it ended
/// and its output (stdout and stderr interleaved, lossily UTF-8).
pub(crate) fn run(spec: &Spec<'_>) -> std::io::Result<(Outcome, String)> {
    let (mut reader, writer) = std::io::pipe()?;
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(spec.command)
        .current_dir(spec.dir)
        .env_clear()
        .stdin(Stdio::null())
        .stdout(writer.try_clone()?)
        .stderr(writer)
        // Its own process group, so a timeout kills what it started too.
        .process_group(0);
    for key in KEPT_VARS {
        if let Some(v) = std::env::var_os(key) {
            cmd.env(key, v);
        } else if *key == "PATH" {
            cmd.env(key, DEFAULT_PATH);
        }
    }
    for (k, v) in spec.env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn()?;
    // The command holds our copies of the pipe's write end; until they are
    // closed the reader never sees the end of the output.
    drop(cmd);

    let output = Arc::new(Mutex::new(Output::default()));
    let (done_tx, done_rx) = mpsc::channel();
    {
        let output = Arc::clone(&output);
        let sink = spec.sink.cloned();
        std::thread::spawn(move || {
            let mut chunk = [0u8; 8192];
            // Output not yet sent: lines go out whole, so a character is
            // never split between two sends.
            let mut pending: Vec<u8> = Vec::new();
            loop {
                match reader.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if let Ok(mut out) = output.lock() {
                            out.push(&chunk[..n]);
                        }
                        if let Some(sink) = &sink {
                            pending.extend_from_slice(&chunk[..n]);
                            if let Some(end) = pending.iter().rposition(|b| *b == b'\n') {
                                let lines: Vec<u8> = pending.drain(..=end).collect();
                                let _ = sink.send(String::from_utf8_lossy(&lines).into_owned());
                            }
                        }
                    }
                }
            }
            if let Some(sink) = &sink
                && !pending.is_empty()
            {
                pending.push(b'\n');
                let _ = sink.send(String::from_utf8_lossy(&pending).into_owned());
            }
            let _ = done_tx.send(());
        });
    }

    let deadline = Instant::now() + spec.timeout;
    let pid = child.id();
    let outcome = loop {
        if let Some(status) = child.try_wait()? {
            break Outcome::Exited(status);
        }
        if Instant::now() >= deadline {
            kill_group(pid);
            let _ = child.kill();
            let _ = child.wait();
            break Outcome::TimedOut;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    if done_rx.recv_timeout(DRAIN_GRACE).is_err() {
        // Something it started in the background still holds the output.
        kill_group(pid);
        let _ = done_rx.recv_timeout(DRAIN_GRACE);
    }
    let text = match output.lock() {
        Ok(out) => out.text(),
        Err(poisoned) => poisoned.into_inner().text(),
    };
    Ok((outcome, text))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn run_in(command: &str, timeout: Duration) -> (Outcome, String) {
        let dir = tempfile::tempdir().unwrap();
        run(&Spec {
            command,
            dir: dir.path(),
            env: &[("SLIPWAY_APP", "hello")],
            timeout,
            sink: None,
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
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let go = dir.path().join("go");
        let command = format!(
            "echo first; while [ ! -f '{}' ]; do sleep 0.05; done; printf 'second\\nno newline'",
            go.display()
        );
        let handle = {
            let dir = dir.path().to_path_buf();
            std::thread::spawn(move || {
                run(&Spec {
                    command: &command,
                    dir: &dir,
                    env: &[],
                    timeout: Duration::from_secs(30),
                    sink: Some(&tx),
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
    fn output_is_bounded() {
        let mut o = Output::default();
        for _ in 0..5 {
            o.push(&vec![b'x'; MAX_OUTPUT]);
        }
        assert!(o.bytes.len() <= 2 * MAX_OUTPUT);
        assert!(o.text().starts_with("[... "));
    }
}
