//! Packer: builds an app at a git commit into a standalone release tarball.
//!
//! [`build`] fetches the commit, reads `slipway.toml`, builds by type
//! (python, node, generic) with cached dependencies, and packs the release
//! with its manifest into `<out_dir>/<app>-<version>.tar.gz`. [`resolve_ref`] turns a
//! ref (a branch, tag or sha, or `HEAD` for the app's branch, with `~N`/`^N`
//! steps back) into the full commit sha a build takes. Every command
//! a build runs on repository content runs in a bubblewrap sandbox (see
//! `sandbox.rs`). Both block:
//! async callers use `spawn_blocking`.

mod build;
pub mod cli;
mod command;
pub mod config;
mod deps;
mod error;
pub mod git;
mod input;
mod log;
pub mod pack;
mod root;
mod sandbox;
mod settings;
pub mod worker;

pub use build::{BuildOutput, BuildRequest, BuiltIndex, build};
pub use config::{BUILD_TIMEOUT, ConfigError, SlipwayToml};
pub use error::BuildError;
pub use git::{OnBranch, locate_on_branch, redact_url, resolve_ref, url_credentials};
pub use log::{LogSink, STREAMED_LOG_CAP};
pub use pack::{pack_dir, pack_dir_at_level, pack_dir_indexed};
pub use sandbox::{KEPT_VARS, Limits, SandboxConfig, SandboxKind, SandboxUser, check_sandbox};
pub use settings::{GitCredentials, GitTimeouts, Settings};
