//! Slipway's shared language: the domain newtypes, the wire types of the
//! HTTP API and the bus, the release manifest, and the typed API client.
//!
//! Host agents depend on this crate without its `cli` and `openapi` features.

// `deploy::…` paths work inside this crate too: the CLI's source is
// compiled both as the `deploy` binary and as `deploy::cli`.
extern crate self as deploy;

pub mod api;
pub mod backoff;
pub mod binary;
pub mod bus;
/// The `deploy` CLI (its binary's source), as a library module so the
/// end-to-end tests can build a copy of the binary they start.
#[cfg(feature = "cli")]
#[path = "main.rs"]
pub mod cli;
pub mod client;
mod domain;
pub mod drift;
pub mod layout;
pub mod manifest;
#[cfg(feature = "openapi")]
mod openapi;
pub mod procfs;
pub mod release;
pub mod report;
pub mod signing;
mod time;
pub mod tls;

pub use api::*;
pub use backoff::Backoff;
pub use bus::{BusMessage, DeployMessage, Target};
pub use client::{Client, ClientError, DEFAULT_SERVER};
pub use domain::{
    AppName, BuildId, Cluster, DeployId, GitRef, HostName, HostSelector, ParseError, Sha256,
    Version,
};
pub use drift::{
    DriftHost, DriftQuery, DriftReport, DriftState, DriftSummary, SyncOutcome, SyncRequest,
};
pub use manifest::{
    BuildType, HealthCheck, HealthSpec, MANIFEST_PATH, Manifest, RunSpec, RunUser, RunUserError,
    RunUserKind, Runtime, RuntimeKind,
};
pub use release::{ArtifactRef, Release};
pub use report::HostReport;
pub use time::Timestamp;
