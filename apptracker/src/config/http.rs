//! `[http]` in AppTracker's config: how long a request may take and how
//! many the API works on at once.

use std::time::Duration;

use serde::Deserialize;

/// Bounds on the API's requests (`http/limits.rs` applies them).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// A request whose answer is not ready within this is answered 503
    /// (with `Retry-After`) and its work dropped. Streams (`.../stream`, the
    /// bus relay) and artifact transfers are exempt: a stream's answer
    /// starts at once and its body is not timed; uploads have
    /// `upload_idle_timeout`, downloads stream from the store.
    #[serde(with = "super::humantime_serde_compat")]
    pub request_timeout: Duration,
    /// Requests the API works on at once; one more is answered 503
    /// (`Retry-After: 1`) at once instead of queueing.
    /// Streams count only while their answer is made, not while they
    /// stream.
    pub max_concurrent_requests: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(60),
            max_concurrent_requests: 512,
        }
    }
}
