//! Running one command of a build in the sandbox, within what is left of the
//! build's deadline, and turning its failure into a `BuildError`.

use std::fmt::Write as _;
use std::time::Instant;

use super::{Ctx, took};
use crate::BuildError;
use crate::command::{self, Outcome};
use crate::log::Log;

/// How a step failed.
pub(super) enum StepFailure {
    Start(std::io::Error),
    Exited {
        status: String,
        output: String,
    },
    TimedOut,
    /// Killed at one of the sandbox's limits, which this says.
    Limit(String),
}

impl StepFailure {
    /// The error for a build step (`[build] command`, `npm run build`).
    pub(super) fn into_error(self, command: &str, ctx: &Ctx) -> BuildError {
        match self {
            StepFailure::Start(e) => BuildError::io(format!("starting `{command}`"), e),
            StepFailure::Exited { status, .. } => BuildError::CommandFailed {
                command: command.to_string(),
                status,
                log: String::new(),
            },
            StepFailure::TimedOut => timed_out(command, ctx),
            StepFailure::Limit(limit) => BuildError::LimitExceeded {
                command: command.to_string(),
                limit,
                log: String::new(),
            },
        }
    }

    /// The error for a dependency install, naming the package the package
    /// manager could not find when it said so.
    pub(super) fn into_dependencies(self, tool: &str, command: &str, ctx: &Ctx) -> BuildError {
        match self {
            StepFailure::Exited { status, output } => {
                let mut detail = status;
                if let Some(culprit) = culprit_line(&output) {
                    let _ = write!(detail, ": {culprit}");
                }
                detail.push_str(" (see the build log)");
                BuildError::Dependencies {
                    tool: tool.to_string(),
                    detail,
                    log: String::new(),
                }
            }
            other => other.into_error(command, ctx),
        }
    }
}

fn timed_out(command: &str, ctx: &Ctx) -> BuildError {
    BuildError::CommandTimedOut {
        command: command.to_string(),
        timeout: humantime::format_duration(ctx.timeout).to_string(),
        log: String::new(),
    }
}

/// The line of pip's or npm's output that names what could not be
/// installed, when there is one.
pub(super) fn culprit_line(output: &str) -> Option<String> {
    const MARKS: &[&str] = &[
        "No matching distribution found for",
        "Could not find a version that satisfies",
        "is not in this registry",
        "404 Not Found",
        "notarget",
        "ERESOLVE",
        "ERROR:",
        "npm error",
        "npm ERR!",
    ];
    MARKS.iter().find_map(|mark| {
        output
            .lines()
            .find(|l| l.contains(mark))
            .map(|l| l.trim().chars().take(300).collect())
    })
}

/// Runs one command of the build in the checkout, its output into the log,
/// within what is left of the build's deadline.
pub(super) fn run_step(
    ctx: &Ctx,
    command: &str,
    extra_env: &[(&str, &str)],
    network: bool,
    log: &mut Log,
) -> Result<(), StepFailure> {
    run_step_in(ctx, &ctx.jail, &ctx.src, command, extra_env, network, log)
}

/// [`run_step`] in another sandbox and directory (installing a tool).
pub(super) fn run_step_in(
    ctx: &Ctx,
    jail: &crate::sandbox::Jail,
    dir: &std::path::Path,
    command: &str,
    extra_env: &[(&str, &str)],
    network: bool,
    log: &mut Log,
) -> Result<(), StepFailure> {
    let left = ctx.deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(StepFailure::TimedOut);
    }
    log.line(format!("$ {command}"));
    let mut env = vec![
        ("SLIPWAY_APP", ctx.req.app.as_str()),
        ("SLIPWAY_VERSION", ctx.req.version.as_str()),
        ("SLIPWAY_COMMIT", ctx.req.commit),
    ];
    env.extend_from_slice(extra_env);
    let spec = command::Spec {
        command,
        dir,
        env: &env,
        timeout: left,
        sink: log.sink(),
        jail,
        network,
    };
    let started = Instant::now();
    let (outcome, output) = command::run(&spec).map_err(StepFailure::Start)?;
    log.output(&output);
    match outcome {
        Outcome::Exited(status) if status.success() => {
            log.line(format!("`{command}` succeeded in {}", took(started)));
            Ok(())
        }
        Outcome::Exited(status) => {
            let status = match status.code() {
                Some(code) => format!("exited with status {code}"),
                None => {
                    use std::os::unix::process::ExitStatusExt;
                    let mut s = String::from("killed by a signal");
                    if let Some(sig) = status.signal() {
                        let _ = write!(s, " ({sig})");
                    }
                    s
                }
            };
            Err(StepFailure::Exited { status, output })
        }
        Outcome::TimedOut => Err(StepFailure::TimedOut),
        Outcome::TooMuchOutput(limit) => Err(StepFailure::Limit(format!(
            "it printed more than the builder's output limit of {} MiB",
            limit >> 20
        ))),
        Outcome::TooMuchDisk(limit) => Err(StepFailure::Limit(format!(
            "the build's files grew past the builder's disk limit of {} MiB",
            limit >> 20
        ))),
    }
}
