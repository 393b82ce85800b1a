//! The audit log: one entry per state-changing request, and its query.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::{AppName, Timestamp};

/// One state-changing API request as `GET /api/v1/audit` lists it: who did
/// what, when, from where, and how it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuditEntry {
    /// Increases with every entry: the key of `before` pagination.
    pub id: i64,
    pub at: Timestamp,
    /// The token's name (never the token), `webhook:<provider>`,
    /// `build-trigger`, or `anonymous` when no valid token was sent.
    pub actor: String,
    /// The token's role (`viewer`, `deployer`, `admin`, `agent`), or
    /// `webhook` / `trigger`; none when anonymous.
    pub role: Option<String>,
    pub method: String,
    /// The route the request matched (`/api/v1/deploys/{id}`); none when
    /// it matched no route.
    pub route: Option<String>,
    /// The path asked for, without its query. Routes whose path holds a
    /// secret (build-trigger URLs) show the route instead.
    pub path: String,
    /// The app the request concerned, when there is one.
    pub app: Option<AppName>,
    /// What the request acted on, for people (`deploy 7 to local`).
    pub target: Option<String>,
    /// The address the request came from (the connection's peer).
    pub peer: Option<String>,
    /// The HTTP status of the answer; 499 when the client went away before
    /// it.
    pub status: u16,
    /// The stable error `code` of the answer, when it failed with one.
    pub error_code: Option<String>,
}

/// The query of `GET /api/v1/audit`: newest first, `limit` entries (like
/// every list: default 100, at most 1000) after `cursor` (or older than
/// `before`), optionally only one actor's or one app's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Entries per page: 1 to 1000, 100 when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// Only entries with a smaller id: the last id of the previous page
    /// (what `cursor` does, kept for older clients).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[param(minimum = 1)]
    pub before: Option<i64>,
    /// Where the page starts: the `X-Next-Cursor` of the page before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(min_length = 1, max_length = 512)]
    pub cursor: Option<String>,
    /// Only this token's (or webhook's) requests.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[param(min_length = 1, max_length = 100)]
    pub actor: Option<String>,
    /// Only requests concerning this app.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[param(value_type = Option<AppName>)]
    pub app: Option<AppName>,
}
