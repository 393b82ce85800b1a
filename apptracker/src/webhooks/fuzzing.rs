//! The steps of a webhook delivery that need no database, for the fuzz
//! targets (`fuzz/fuzz_targets/webhook.rs`): not an API.

use super::*;

/// Headers as name-value pairs (lowercase names; the last one wins).
pub struct HeaderList<'a>(pub &'a [(&'a str, &'a str)]);

impl Headers for HeaderList<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
    }
}

/// What became of a delivery.
#[derive(Debug, PartialEq, Eq)]
pub struct Handled {
    /// Whether the signature (or token) was accepted.
    pub verified: bool,
    /// The event's kind.
    pub event: String,
    /// The delivery id, when one is given.
    pub delivery: Option<String>,
    /// `Err`: the payload was refused (its message); `Ok`: `ignored: why`,
    /// `skipped: why` or `build <branch> <commit>`.
    pub push: Result<String, String>,
}

/// Runs a delivery for `app` through signature checking, the event's
/// kind, the delivery id, the push payload's parsing, the routing
/// (branch, repository, commit), the `[skip deploy]` marker and the
/// monorepo decision (with `stored_watch` as the app's newest build's
/// watch patterns), as [`handle`] does, minus the database.
pub fn delivery(
    provider: Provider,
    headers: &[(&str, &str)],
    body: &[u8],
    secret: &[u8],
    app: &App,
    stored_watch: Option<&str>,
) -> Handled {
    let headers = HeaderList(headers);
    let verified = verify(provider, &headers, body, secret).is_ok();
    let event = event(provider, &headers);
    let delivery = delivery_id(provider, &headers).map(str::to_string);
    let push = (|| {
        let push = parse_push(provider, body)?;
        let (branch, commit) = match route(&push, app)? {
            Route::Ignored(why) => return Ok(format!("ignored: {why}")),
            Route::Build { branch, commit } => (branch, commit),
        };
        if let Some(marker) = push
            .head_message
            .as_deref()
            .and_then(deploy::monorepo::skip_marker)
        {
            return Ok(format!("skipped: its head commit says `{marker}`"));
        }
        if let Some(root) = app.root.as_deref().and_then(|r| AppRoot::parse(r).ok())
            && let Some(why) = monorepo_skip(app, &root, stored_watch, &push)
        {
            return Ok(format!("skipped: {why}"));
        }
        Ok(format!("build {branch} {commit}"))
    })()
    .map_err(|e: Error| e.to_string());
    Handled {
        verified,
        event,
        delivery,
        push,
    }
}
