//! The audit log: who changed what through the API, when, from where, and
//! how it ended. [`record`] wraps the API router and writes one row per
//! state-changing request under `/api/v1`, except the agents' own protocol
//! ([`UNAUDITED_ROUTES`]).
//!
//! Anonymous requests (no valid credential: refused calls, probes of
//! paths that do not exist) are not all kept: anyone can send them, and a
//! row each would let anyone grow the table and contend for the database's
//! writes. [`Anonymous`] counts every one (`/metrics`) and lets a few
//! through to the log (a burst of [`ANONYMOUS_BURST`], then one per
//! [`ANONYMOUS_EVERY`]), so a probe still shows there with its peer; the
//! log keeps the newest [`ANONYMOUS_KEPT`] of them.
//!
//! What only the inside of a request knows reaches the middleware through
//! [`Note`], a request extension: the auth extractor puts the principal in
//! it, handlers the app and what they acted on. The row is written before
//! the answer leaves, so a client that got an answer finds its request in
//! the log; a failed write is logged and never fails the request. Tokens,
//! secrets in paths, bodies and queries are never recorded.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath, RawPathParams, Request, State};
use axum::http::Method;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;
use deploy::{AppName, Timestamp};

use crate::db::AuditRecord;
use crate::http::error::ErrorCode;
use crate::model::Principal;
use crate::tracker::Tracker;

/// Routes not recorded: the agents' protocol. Each is called on a timer or
/// per line of output by every grabber and packer worker (heartbeats every
/// few seconds per host, claim polls per worker, lease renewals, log
/// batches every 250 ms), and what they change is recorded where it lands
/// (`hosts.last_seen`, the `host_events` history, the build row). Recording
/// them would bury the people's changes and grow the table without bound.
pub const UNAUDITED_ROUTES: &[&str] = &[
    "/api/v1/hosts/heartbeat",
    "/api/v1/hosts/report",
    "/api/v1/deploys/{id}/hosts/{host}/events",
    // Read-only: where a host fetches files it lacks, once per install.
    "/api/v1/deploys/{id}/hosts/{host}/sources",
    "/api/v1/builds/claim",
    "/api/v1/builds/{id}/lease",
    "/api/v1/builds/{id}/log",
    "/api/v1/log-requests/{id}",
];

/// Path parameters that are credentials (build-trigger URLs): neither they
/// nor the path holding them are recorded.
const SECRET_PARAMS: &[&str] = &["secret"];

/// Longest path or target recorded; anything longer is cut.
const MAX_TEXT: usize = 300;

/// Anonymous entries written at once before the rate applies.
pub const ANONYMOUS_BURST: u32 = 20;
/// After a burst, one anonymous entry per this.
pub const ANONYMOUS_EVERY: Duration = Duration::from_secs(3);
/// Anonymous entries the log keeps (the newest).
pub const ANONYMOUS_KEPT: i64 = 10_000;

/// The actor of a request without a valid credential.
const ANONYMOUS: &str = "anonymous";

/// Counts anonymous requests and decides which reach the audit log (a
/// token bucket). Per process: each replica counts its own.
pub struct Anonymous {
    /// Every anonymous request that would have been audited.
    seen: AtomicU64,
    /// Of those, the ones left out of the log.
    unrecorded: AtomicU64,
    /// Entries that may be written now, and when that was counted.
    bucket: Mutex<(f64, Instant)>,
}

impl Default for Anonymous {
    fn default() -> Self {
        Self {
            seen: AtomicU64::new(0),
            unrecorded: AtomicU64::new(0),
            bucket: Mutex::new((f64::from(ANONYMOUS_BURST), Instant::now())),
        }
    }
}

impl Anonymous {
    /// Counts one anonymous request; whether it goes in the log.
    fn admit(&self) -> bool {
        self.seen.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let admitted = {
            let mut bucket = self.bucket.lock().unwrap_or_else(PoisonError::into_inner);
            let refill = now.duration_since(bucket.1).as_secs_f64() / ANONYMOUS_EVERY.as_secs_f64();
            bucket.0 = (bucket.0 + refill).min(f64::from(ANONYMOUS_BURST));
            bucket.1 = now;
            if bucket.0 >= 1.0 {
                bucket.0 -= 1.0;
                true
            } else {
                false
            }
        };
        if !admitted {
            self.unrecorded.fetch_add(1, Ordering::Relaxed);
        }
        admitted
    }

    /// (anonymous requests seen, of which left out of the log).
    pub fn counts(&self) -> (u64, u64) {
        (
            self.seen.load(Ordering::Relaxed),
            self.unrecorded.load(Ordering::Relaxed),
        )
    }
}

/// What a request's handler and auth extractor tell the audit log. Outside
/// an audited request it is detached and what it is told goes nowhere.
#[derive(Clone, Default)]
pub struct Note(Arc<Mutex<Noted>>);

#[derive(Default)]
struct Noted {
    /// Name and role of whoever the request acted as.
    actor: Option<(String, &'static str)>,
    app: Option<AppName>,
    target: Option<String>,
}

impl Note {
    fn with<R>(&self, f: impl FnOnce(&mut Noted) -> R) -> R {
        // A panic elsewhere while holding the lock leaves plain data behind:
        // still fine to read and write.
        f(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// The request authenticated as `p`.
    pub fn principal(&self, p: &Principal) {
        self.actor(p.name.clone(), p.role.as_str());
    }

    /// The request acted as someone without a token (a webhook, a trigger).
    pub fn actor(&self, name: impl Into<String>, role: &'static str) {
        let name = name.into();
        self.with(|n| n.actor = Some((name, role)));
    }

    /// The app the request concerns.
    pub fn app(&self, app: &AppName) {
        let app = app.clone();
        self.with(|n| n.app = Some(app));
    }

    /// What the request acted on, for people; never a secret or a body.
    pub fn target(&self, target: impl Into<String>) {
        let target = target.into();
        self.with(|n| n.target = Some(target));
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Note {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts.extensions.get::<Note>().cloned().unwrap_or_default())
    }
}

/// Whether a request is recorded: it may change state, it is under
/// `/api/v1`, and it is not agent traffic.
fn audited(method: &Method, path: &str, route: Option<&str>) -> bool {
    let changes = matches!(
        *method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    );
    changes && path.starts_with("/api/v1/") && !route.is_some_and(|r| UNAUDITED_ROUTES.contains(&r))
}

/// `s` cut to `max` characters.
fn cut(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &s[..at]),
        None => s.to_string(),
    }
}

/// The path as recorded: the route instead when the path holds a secret,
/// and any segment shaped like a token or trigger secret (`slp_…`) masked,
/// so a mistyped trigger URL that matched no route leaks nothing either.
fn recorded_path(path: &str, route: Option<&str>, has_secret: bool) -> String {
    if has_secret && let Some(route) = route {
        return route.to_string();
    }
    let masked: Vec<&str> = path
        .split('/')
        .map(|seg| {
            if seg.starts_with("slp_") {
                "slp_***"
            } else {
                seg
            }
        })
        .collect();
    cut(&masked.join("/"), MAX_TEXT)
}

/// The app and target a request's path names, before its handler says more.
fn from_params(route: &str, params: &[(String, String)]) -> (Option<AppName>, Option<String>) {
    let mut app = None;
    let mut parts = Vec::new();
    for (name, value) in params {
        if SECRET_PARAMS.contains(&name.as_str()) {
            continue;
        }
        let value = cut(value, 100);
        match name.as_str() {
            "app" => {
                app = AppName::parse(value.as_str()).ok();
                parts.push(format!("app {value}"));
            }
            "id" if route.starts_with("/api/v1/builds/") => parts.push(format!("build {value}")),
            "id" if route.starts_with("/api/v1/deploys/") => parts.push(format!("deploy {value}")),
            "name" if route.starts_with("/api/v1/tokens/") => parts.push(format!("token {value}")),
            // The webhook's provider is its actor, not its target.
            "provider" => {}
            _ => parts.push(format!("{name} {value}")),
        }
    }
    (app, (!parts.is_empty()).then(|| parts.join(", ")))
}

/// The middleware: records audited requests, passes the rest through.
pub async fn record(
    State((t, anonymous)): State<(Tracker, Arc<Anonymous>)>,
    req: Request,
    next: Next,
) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string());
    if !audited(req.method(), req.uri().path(), route.as_deref()) {
        return next.run(req).await;
    }
    let (mut parts, body) = req.into_parts();
    let params: Vec<(String, String)> = RawPathParams::from_request_parts(&mut parts, &())
        .await
        .map(|p| {
            p.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
        .unwrap_or_default();
    let has_secret = params
        .iter()
        .any(|(k, _)| SECRET_PARAMS.contains(&k.as_str()));
    let (app, target) = from_params(route.as_deref().unwrap_or(""), &params);
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_canonical().to_string());
    let pending = Pending {
        tracker: t.clone(),
        anonymous,
        note: Note::default(),
        record: Some(AuditRecord {
            at: Timestamp::now(),
            actor: String::new(),
            role: None,
            method: parts.method.to_string(),
            path: recorded_path(parts.uri.path(), route.as_deref(), has_secret),
            route,
            app,
            target,
            peer,
            status: 0,
            error_code: None,
        }),
    };
    parts.extensions.insert(pending.note.clone());
    let resp = next.run(Request::from_parts(parts, body)).await;
    let code = resp.extensions().get::<ErrorCode>().map(|c| c.as_str());
    pending.finish(resp.status().as_u16(), code).await;
    resp
}

/// An audited request in flight. Dropped unfinished (the client went away
/// and the server stopped working on the request), it is recorded with
/// status 499, since whether the change happened is unknown.
struct Pending {
    tracker: Tracker,
    anonymous: Arc<Anonymous>,
    note: Note,
    record: Option<AuditRecord>,
}

/// The status recorded when the client went away before the answer (nginx's
/// "client closed request").
const CLIENT_CLOSED: u16 = 499;

impl Pending {
    /// The finished record: what the path said, overridden by the note.
    fn take(&mut self, status: u16, error_code: Option<&'static str>) -> Option<AuditRecord> {
        let mut r = self.record.take()?;
        self.note.with(|n| {
            match n.actor.take() {
                Some((name, role)) => {
                    r.actor = name;
                    r.role = Some(role.to_string());
                }
                None => r.actor = ANONYMOUS.into(),
            }
            if let Some(app) = n.app.take() {
                r.app = Some(app);
            }
            if let Some(target) = n.target.take() {
                r.target = Some(cut(&target, MAX_TEXT));
            }
        });
        r.status = status;
        r.error_code = error_code.map(str::to_string);
        Some(r)
    }

    /// The finished record, unless it is anonymous and not admitted.
    fn take_kept(&mut self, status: u16, error_code: Option<&'static str>) -> Option<AuditRecord> {
        let r = self.take(status, error_code)?;
        (r.actor != ANONYMOUS || self.anonymous.admit()).then_some(r)
    }

    async fn finish(mut self, status: u16, error_code: Option<&'static str>) {
        if let Some(r) = self.take_kept(status, error_code) {
            write(self.tracker.clone(), r).await;
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(r) = self.take_kept(CLIENT_CLOSED, None)
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            rt.spawn(write(self.tracker.clone(), r));
        }
    }
}

/// Writes an entry in a task of its own, so it is written even when the
/// request's future is dropped while waiting; a failure is only logged.
/// An anonymous entry drops the oldest anonymous ones past
/// [`ANONYMOUS_KEPT`].
async fn write(t: Tracker, r: AuditRecord) {
    let what = format!("{} {}", r.method, r.path);
    match tokio::spawn(async move {
        t.record_audit(&r).await?;
        if r.actor == ANONYMOUS {
            t.prune_audit_of(ANONYMOUS, ANONYMOUS_KEPT).await?;
        }
        Ok::<_, sqlx::Error>(())
    })
    .await
    {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(error = %e, request = %what, "cannot write the audit log entry")
        }
        Err(e) => tracing::warn!(error = %e, request = %what, "the audit log write did not finish"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_changes_under_the_api_are_recorded_and_agent_traffic_is_not() {
        let api = |m: Method, route: &str| audited(&m, route, Some(route));
        assert!(api(Method::POST, "/api/v1/deploys"));
        assert!(api(Method::DELETE, "/api/v1/tokens/{name}"));
        assert!(api(Method::PUT, "/api/v1/builds/{id}/artifact"));
        assert!(api(Method::POST, "/api/v1/builds/{id}/result"));
        assert!(!api(Method::GET, "/api/v1/deploys"));
        assert!(!api(Method::HEAD, "/api/v1/deploys"));
        for route in UNAUDITED_ROUTES {
            assert!(!api(Method::POST, route), "{route}");
        }
        // No route matched: still a write attempt under the API.
        assert!(audited(&Method::POST, "/api/v1/nothing", None));
        assert!(!audited(&Method::POST, "/login", None));
    }

    #[test]
    fn anonymous_requests_are_counted_and_few_are_kept() {
        let a = Anonymous::default();
        let kept = (0..100).filter(|_| a.admit()).count() as u64;
        // The burst, and perhaps one more if the loop took 3 s.
        assert!(
            (u64::from(ANONYMOUS_BURST)..=u64::from(ANONYMOUS_BURST) + 1).contains(&kept),
            "{kept}"
        );
        assert_eq!(a.counts(), (100, 100 - kept));
    }

    #[test]
    fn secrets_in_paths_are_never_recorded() {
        let route = "/api/v1/trigger/{secret}";
        let secret = "slp_0123456789abcdef0123456789abcdef01234567";
        let path = format!("/api/v1/trigger/{secret}");
        assert_eq!(recorded_path(&path, Some(route), true), route);
        // A trailing slash matches no route: the segment is masked anyway.
        let p = recorded_path(&format!("{path}/"), None, false);
        assert_eq!(p, "/api/v1/trigger/slp_***/");
        let (app, target) = from_params(route, &[("secret".into(), secret.into())]);
        assert_eq!((app, target), (None, None));
    }

    #[test]
    fn paths_name_their_target() {
        let (app, target) = from_params(
            "/api/v1/apps/{app}/builds",
            &[("app".into(), "hello".into())],
        );
        assert_eq!(app.as_ref().map(AppName::as_str), Some("hello"));
        assert_eq!(target.as_deref(), Some("app hello"));
        let (_, target) = from_params("/api/v1/builds/{id}/result", &[("id".into(), "7".into())]);
        assert_eq!(target.as_deref(), Some("build 7"));
        let (_, target) = from_params("/api/v1/tokens/{name}", &[("name".into(), "ci".into())]);
        assert_eq!(target.as_deref(), Some("token ci"));
        // An invalid app name is shown, not taken as the app.
        let (app, _) = from_params("/api/v1/apps/{app}", &[("app".into(), "../x".into())]);
        assert!(app.is_none());
        assert_eq!(cut(&"é".repeat(400), 300).chars().count(), 301);
    }
}
