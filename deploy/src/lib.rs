//! Slipway's shared language: the domain newtypes, the wire types of the
//! HTTP API and the bus, the release manifest, and the typed API client.
//!
//! The wire types derive their OpenAPI schemas (utoipa `ToSchema`,
//! `IntoParams`) beside `Serialize`: AppTracker builds its API document from
//! them, the agents never call that code.

pub mod api;
pub mod backoff;
pub mod binary;
pub mod bus;
pub mod client;
mod domain;
pub mod drift;
mod error_code;
pub mod index;
pub mod layout;
pub mod manifest;
pub mod monorepo;
mod openapi;
pub mod peer;
pub mod procfs;
pub mod release;
pub mod report;
mod role;
pub mod signing;
mod source;
mod time;
pub mod tls;
pub mod tree;

pub use api::*;
pub use backoff::Backoff;
pub use bus::{BusMessage, DeployMessage, LogsMessage, ReleasePhaseMessage, Target};
pub use client::{Client, ClientError, DEFAULT_SERVER};
pub use domain::{
    AppName, BuildId, Cluster, DeployId, GitRef, HostName, HostSelector, ParseError, RevStep,
    Sha256, Version,
};
pub use drift::{
    DriftHost, DriftQuery, DriftReport, DriftState, DriftSummary, SyncOutcome, SyncRequest,
};
pub use error_code::ErrorCode;
pub use manifest::{
    BuildType, HealthCheck, HealthSpec, HookKind, Hooks, MANIFEST_PATH, Manifest, ReleaseSpec,
    RunSpec, RunUser, RunUserError, RunUserKind, Runtime, RuntimeKind,
};
pub use manifest::{ProcessName, ProcessSpec};
pub use monorepo::{AppRoot, WatchPattern};
pub use release::{ArtifactRef, DeployAction, IndexRef, Release};
pub use report::HostReport;
pub use role::Role;
pub use source::{NotOneSource, Source};
pub use time::Timestamp;
