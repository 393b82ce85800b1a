//! Logs from anywhere: `POST /api/v1/apps/{app}/logs` asks the grabber of
//! one host, over the bus, for a piece of the app's log; the grabber
//! answers at `POST /api/v1/log-requests/{id}`; AppTracker hands the answer
//! back. Pieces are bounded; following is asking again from `next_offset`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{AppName, Cluster, HostName};

/// The most of a log one request returns.
pub const MAX_LOG_READ: u64 = 256 * 1024;

/// `POST /api/v1/apps/{app}/logs` (deployer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LogRequest {
    pub cluster: Cluster,
    pub host: HostName,
    /// Read from this byte of the log (a `next_offset` before); its last
    /// `max_bytes` when absent.
    #[serde(default)]
    pub offset: Option<u64>,
    /// At most this much (and at most 256 KiB); 64 KiB when absent.
    #[serde(default)]
    pub max_bytes: Option<u64>,
}

/// A piece of an app's log on a host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AppLog {
    pub app: AppName,
    pub host: HostName,
    /// Where the piece starts in the log file.
    pub offset: u64,
    /// Where the next piece starts: ask again from here to follow.
    pub next_offset: u64,
    /// The bytes read, as UTF-8 (invalid sequences replaced).
    pub text: String,
    /// The log was rotated since `offset` (the piece starts at the new
    /// file's beginning), or the piece is cut at the size limit.
    #[serde(default)]
    pub truncated: bool,
}

/// `POST /api/v1/log-requests/{id}`: the grabber's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LogAnswer {
    pub cluster: Cluster,
    #[serde(default)]
    pub offset: u64,
    #[serde(default)]
    pub next_offset: u64,
    #[serde(default)]
    pub text: String,
    #[serde(default)]
    pub truncated: bool,
    /// Why there is no log (the app is not on this host, …).
    #[serde(default)]
    pub error: Option<String>,
}
