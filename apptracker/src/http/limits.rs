//! Bounds on the API's load (`[http]`): a request timeout and a limit on
//! the requests worked on at once, both answered 503 with `Retry-After`
//! (code `internal`: the server's side failed), which clients and agents
//! retry like any 5xx.
//!
//! One middleware rather than tower's `TimeoutLayer` and
//! `ConcurrencyLimitLayer`: `Router::layer` puts a layer around each route
//! on its own (a per-route limit), the concurrency layer queues instead of
//! refusing, and the timeout must leave some routes alone. Applied with
//! `Router::layer`, it runs after routing, so it sees the matched route:
//!
//! - streams ([`STREAMS`]): their answer starts at once and the body is
//!   the stream, which no timeout covers (they end when the token is
//!   revoked or the server stops); they take a permit only while their
//!   answer is made;
//! - artifact transfers ([`TRANSFERS`]): no request timeout, a permit for
//!   the whole handler. An upload has its own bound
//!   (`upload_idle_timeout`: a body that sends nothing for it is cut off);
//!   a download's handler returns once the file is open and the body
//!   streams after.
//!
//! The hosts' own traffic ([`AGENT_ROUTES`]: heartbeats, reports, host
//! events, desired state, artifact downloads) takes its permits from a
//! pool of its own, as large as everyone else's: a fleet-wide deploy on
//! a slow database fills the agents' pool (they retry) and never turns
//! away a person's `deploy release` or the dashboard.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use tokio::sync::Semaphore;

use crate::config::HttpConfig;
use crate::http::error::{ErrorCode, error_response};

/// Routes whose answer is a long-lived stream.
pub(crate) const STREAMS: &[&str] = &["/api/v1/deploys/{id}/stream", "/api/v1/bus/{cluster}"];

/// Routes that move artifacts, as long as their bytes take.
pub(crate) const TRANSFERS: &[&str] = &[
    "/api/v1/builds/{id}/artifact",
    "/api/v1/builds/{id}/index",
    "/artifacts/{app}/{file}",
    "/artifacts/{app}/blobs/{sha256}",
];

/// Routes only hosts' agents call (grabbers, versioncheckers): their
/// permits come from a pool of their own.
pub(crate) const AGENT_ROUTES: &[&str] = &[
    "/api/v1/hosts/heartbeat",
    "/api/v1/hosts/report",
    "/api/v1/hosts/{cluster}/{host}/desired",
    "/api/v1/hosts/{cluster}/{host}/config/{app}/{version}",
    "/api/v1/deploys/{id}/hosts/{host}/events",
    "/api/v1/deploys/{id}/hosts/{host}/sources",
    "/api/v1/deploys/{id}/release-phase/{host}",
    "/api/v1/log-requests/{id}",
    "/api/v1/bus/{cluster}",
    "/artifacts/{app}/{file}",
    "/artifacts/{app}/blobs/{sha256}",
];

/// The limits one API router applies, shared by all its routes.
pub(crate) struct Limits {
    timeout: Duration,
    /// People, the CLI, CI, webhooks, workers.
    permits: Arc<Semaphore>,
    /// Hosts' agents ([`AGENT_ROUTES`]).
    agents: Arc<Semaphore>,
}

impl Limits {
    pub(crate) fn new(config: &HttpConfig) -> Arc<Self> {
        let n = config.max_concurrent_requests.max(1);
        Arc::new(Self {
            timeout: config.request_timeout,
            permits: Arc::new(Semaphore::new(n)),
            agents: Arc::new(Semaphore::new(n)),
        })
    }

    fn pool(&self, route: Option<&str>) -> &Arc<Semaphore> {
        match route {
            Some(r) if AGENT_ROUTES.contains(&r) => &self.agents,
            _ => &self.permits,
        }
    }
}

/// How a route is bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bound {
    /// A permit and the request timeout.
    Timed,
    /// A permit, no timeout: an artifact transfer.
    Transfer,
    /// A permit while its answer is made; its body streams unbounded.
    Stream,
}

fn bound(route: Option<&str>) -> Bound {
    match route {
        Some(r) if STREAMS.contains(&r) => Bound::Stream,
        Some(r) if TRANSFERS.contains(&r) => Bound::Transfer,
        _ => Bound::Timed,
    }
}

/// The middleware: refuses what is over the concurrency limit at once,
/// and answers what takes longer than the timeout.
pub(crate) async fn limit(State(limits): State<Arc<Limits>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string());
    let Ok(_permit) = limits.pool(route.as_deref()).clone().try_acquire_owned() else {
        tracing::warn!(
            route = route.as_deref().unwrap_or("unmatched"),
            "request refused: max_concurrent_requests are under way"
        );
        return unavailable(
            "the server is working on as many requests as it takes at once \
             (max_concurrent_requests): try again shortly",
        );
    };
    match bound(route.as_deref()) {
        Bound::Transfer | Bound::Stream => next.run(req).await,
        Bound::Timed => match tokio::time::timeout(limits.timeout, next.run(req)).await {
            Ok(resp) => resp,
            Err(_) => {
                tracing::warn!(route = route.as_deref().unwrap_or("unmatched"),
                    timeout = %humantime::format_duration(limits.timeout),
                    "request cut off at request_timeout");
                unavailable(&format!(
                    "the request took longer than {} (request_timeout) and was stopped; \
                     what it changed may or may not have been kept: look before trying again",
                    humantime::format_duration(limits.timeout)
                ))
            }
        },
    }
}

fn unavailable(message: &str) -> Response {
    let mut resp = error_response(
        StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Internal,
        message.to_string(),
    );
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_and_transfers_are_not_timed() {
        assert_eq!(bound(Some("/api/v1/deploys/{id}/stream")), Bound::Stream);
        assert_eq!(bound(Some("/api/v1/bus/{cluster}")), Bound::Stream);
        assert_eq!(bound(Some("/api/v1/builds/{id}/artifact")), Bound::Transfer);
        assert_eq!(bound(Some("/artifacts/{app}/{file}")), Bound::Transfer);
        assert_eq!(bound(Some("/api/v1/deploys")), Bound::Timed);
        assert_eq!(bound(None), Bound::Timed);
    }

    #[test]
    fn agents_draw_from_their_own_pool() {
        let limits = Limits::new(&HttpConfig {
            max_concurrent_requests: 1,
            ..HttpConfig::default()
        });
        let _agent = limits
            .pool(Some("/api/v1/hosts/heartbeat"))
            .clone()
            .try_acquire_owned()
            .unwrap();
        assert!(
            limits
                .pool(Some("/api/v1/deploys/{id}/hosts/{host}/events"))
                .clone()
                .try_acquire_owned()
                .is_err(),
            "agents share one pool"
        );
        assert!(
            limits
                .pool(Some("/api/v1/deploys"))
                .clone()
                .try_acquire_owned()
                .is_ok(),
            "a full agents' pool turned a person away"
        );
    }

    #[test]
    fn exempt_routes_are_routes() {
        let doc = crate::http::document();
        for route in STREAMS.iter().chain(TRANSFERS).chain(AGENT_ROUTES) {
            assert!(
                doc.paths.paths.contains_key(*route),
                "{route} is not a route of the API"
            );
        }
    }
}
