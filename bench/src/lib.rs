//! Slipway's benchmarks: programs that print figures and append them, one
//! JSON object a line, to a results file (`scripts/bench` runs them, takes
//! medians over runs and prints the tables of BENCHMARKS.md). They never
//! fail on a number; an error means the benchmark could not run.
//!
//! - `fleet`: a deploy converging on N hosts (real grabbers), where the time
//!   goes per host, on the embedded defaults or PostgreSQL + Redis + S3.
//! - `artifact`: packing and unpacking a real dependency tree with Slipway's
//!   code against GNU tar and pigz, per gzip level.
//! - `apiload`: deploy creation, host-event ingestion and event-stream
//!   watchers under load, on SQLite and PostgreSQL; AppTracker's footprint
//!   with 1000 heartbeating hosts.
//! - `soak`: hundreds of deploys on a fleet with faults injected, then
//!   every host checked against AppTracker and the resources for growth.

pub mod ansible;
pub mod fleet;
pub mod results;
pub mod soak;
pub mod stats;
pub mod tree;

/// Logs to stderr at `warn` unless `RUST_LOG` says otherwise: a thousand
/// grabbers at `info` would drown the figures.
/// Text unless `SLIPWAY_LOG_FORMAT` (or `SLIPWAY_LOG_JSON`) says JSON.
pub fn init_tracing() {
    use deploy::binary::{LogFormat, Tracing};
    Tracing::new(LogFormat::from_env())
        .default_filter("warn,sqlx=error")
        .to_stderr()
        .init();
}

/// The release binary `name` (package `name`): `given` when the caller
/// passed one (`--<name>-bin`), else the one beside this benchmark's own
/// binary. An error says how to build it.
pub fn sibling_binary(
    given: Option<&std::path::Path>,
    name: &str,
) -> anyhow::Result<std::path::PathBuf> {
    use anyhow::Context;
    let bin = match given {
        Some(p) => p.to_path_buf(),
        None => std::env::current_exe()?
            .parent()
            .map(|d| d.join(name))
            .context("no directory for this binary")?,
    };
    anyhow::ensure!(
        bin.is_file(),
        "{} is missing: build it (cargo build --release -p {name}) or pass --{name}-bin",
        bin.display()
    );
    Ok(bin)
}
