//! VCS webhooks (GitHub, GitLab, Gitea/Forgejo) and build-trigger URLs: a
//! push to an app's branch starts a build of the pushed commit, and a deploy
//! when the app has an auto-deploy rule.
//!
//! Each app has its own secret per provider, and its own URL
//! (`/api/v1/webhooks/{provider}/{app}`), so a delivery is checked with the
//! secret of the app it names: one app's secret (or a GitLab token, sent in
//! clear) cannot sign another app's or another provider's deliveries. A
//! rotation keeps the previous secret working for a grace period.
//! Signatures are checked before the body is even parsed, in constant time;
//! a bad one is 401 with nothing started. Pings are answered, other events
//! ignored with 202.
//!
//! A push is handled once per delivery id (a redelivery or replay is a
//! `duplicate` that does nothing), and a push never auto-deploys a commit
//! older than one already built for the branch (or deployed, or queued to
//! be): that would be a downgrade, and would supersede the newer deploy.
//!
//! A push whose head commit says `[skip deploy]` (or `[deploy skip]`)
//! builds nothing; a push to an app with a root (an app in a monorepo)
//! builds only when it touches the root or the app's `[build] watch`
//! paths, or when the payload cannot tell (`webhooks/changes.rs`). Both
//! answer `skipped`, saying why, and are logged and audited.

use anyhow::Context;
use deploy::{
    App, AppName, AppRoot, CreateDeploy, CreatedWebhookSecret, ErrorCode, GitRef, SetWebhookSecret,
    Timestamp, WebhookOutcome, WebhookProvider, WebhookSecretInfo,
};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::tracker::{Error, Tracker};

mod changes;
#[doc(hidden)]
pub mod fuzzing;
mod secrets;

pub use secrets::{delete_secret, new_trigger_url, secrets_info, set_secret};

/// Who sent a webhook.
pub type Provider = WebhookProvider;

/// How many of a branch's newest builds a push is compared with.
const BUILT_COMMITS_COMPARED: i64 = 50;

/// The longest delivery id remembered; the providers' are UUIDs.
const MAX_DELIVERY_ID: usize = 200;

/// The longest rotation grace accepted.
const MAX_GRACE: std::time::Duration = std::time::Duration::from_secs(30 * 24 * 3600);

/// A push, as the three providers describe it.
#[derive(Debug, PartialEq, Eq)]
struct Push {
    /// `refs/heads/<branch>` or `refs/tags/<tag>`.
    git_ref: String,
    /// The commit the ref now points to (all zeros for a deletion).
    after: String,
    /// Every URL the provider gives for the repository.
    repo_urls: Vec<String>,
    /// The paths the pushed commits changed, when the payload tells.
    changes: changes::Changes,
    /// The head commit's message, when the payload has it.
    head_message: Option<String>,
}

/// The headers of a delivery, however the HTTP layer holds them.
pub trait Headers: Sync {
    /// The header `name` (lowercase), when present and text.
    fn header(&self, name: &str) -> Option<&str>;
}

/// How a delivery was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    /// Answered in full (a ping).
    Answered,
    /// Accepted: ignored, a duplicate, or what it starts goes on after
    /// the answer.
    Accepted,
}

fn header<'a>(h: &'a dyn Headers, name: &str) -> Option<&'a str> {
    h.header(name)
}

fn unauthorized(why: &str) -> Error {
    Error::Unauthorized(format!("webhook refused: {why}"))
}

/// Checks the request came from someone holding the secret.
fn verify(
    provider: Provider,
    headers: &dyn Headers,
    body: &[u8],
    secret: &[u8],
) -> Result<(), Error> {
    let hmac_hex = |sig: &str| -> Result<(), Error> {
        let sig = hex::decode(sig).map_err(|_| unauthorized("the signature is not hex"))?;
        let mut mac = Hmac::<Sha256>::new_from_slice(secret)
            .unwrap_or_else(|_| unreachable!("hmac takes any key length"));
        mac.update(body);
        // `verify_slice` compares in constant time.
        mac.verify_slice(&sig)
            .map_err(|_| unauthorized("the signature does not match the body"))
    };
    match provider {
        Provider::GitHub => {
            let sig = header(headers, "x-hub-signature-256")
                .ok_or_else(|| unauthorized("no X-Hub-Signature-256 header"))?;
            let sig = sig
                .strip_prefix("sha256=")
                .ok_or_else(|| unauthorized("X-Hub-Signature-256 must start with sha256="))?;
            hmac_hex(sig)
        }
        Provider::Gitea => {
            let sig = header(headers, "x-gitea-signature")
                .or_else(|| header(headers, "x-forgejo-signature"))
                .ok_or_else(|| {
                    unauthorized("no X-Gitea-Signature (or X-Forgejo-Signature) header")
                })?;
            hmac_hex(sig)
        }
        Provider::GitLab => {
            let token = header(headers, "x-gitlab-token")
                .ok_or_else(|| unauthorized("no X-Gitlab-Token header"))?;
            // Compare digests, so neither the length nor the content of the
            // secret leaks through timing.
            let a = Sha256::digest(token.as_bytes());
            let b = Sha256::digest(secret);
            if bool::from(a.ct_eq(&b)) {
                Ok(())
            } else {
                Err(unauthorized("the X-Gitlab-Token is wrong"))
            }
        }
        Provider::Unknown => Err(unauthorized("unknown webhook provider")),
    }
}

/// The event's kind: `push`, `ping`, or something we ignore.
fn event(provider: Provider, headers: &dyn Headers) -> String {
    let raw = match provider {
        Provider::GitHub => header(headers, "x-github-event"),
        Provider::GitLab => header(headers, "x-gitlab-event"),
        Provider::Gitea | Provider::Unknown => {
            header(headers, "x-gitea-event").or_else(|| header(headers, "x-forgejo-event"))
        }
    };
    match raw.unwrap_or("") {
        "push" | "Push Hook" => "push".into(),
        "ping" => "ping".into(),
        other => other.to_string(),
    }
}

fn parse_push(provider: Provider, body: &[u8]) -> Result<Push, Error> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| Error::Invalid(format!("the push payload is not JSON: {e}")))?;
    let text = |path: &[&str]| -> Option<String> {
        let mut cur = &v;
        for p in path {
            cur = cur.get(p)?;
        }
        cur.as_str().map(str::to_string)
    };
    let git_ref =
        text(&["ref"]).ok_or_else(|| Error::Invalid("the push payload has no `ref`".into()))?;
    // Every provider's push payload names the pushed head `after`.
    let after =
        text(&["after"]).ok_or_else(|| Error::Invalid("the push payload has no `after`".into()))?;
    let candidates: &[&[&str]] = match provider {
        Provider::GitHub | Provider::Gitea | Provider::Unknown => &[
            &["repository", "clone_url"],
            &["repository", "ssh_url"],
            &["repository", "html_url"],
            &["repository", "git_url"],
        ],
        Provider::GitLab => &[
            &["project", "git_http_url"],
            &["project", "git_ssh_url"],
            &["project", "web_url"],
            &["repository", "git_http_url"],
            &["repository", "git_ssh_url"],
        ],
    };
    let repo_urls = candidates.iter().filter_map(|p| text(p)).collect();
    let head_message = changes::head_message(&v, &after).map(str::to_string);
    Ok(Push {
        changes: changes::changed_paths(&v),
        head_message,
        git_ref,
        after,
        repo_urls,
    })
}

/// A repository URL in a form that compares equal across the ways of
/// writing it: no scheme, no user, `host/path`, no trailing `.git` or `/`.
pub fn normalize_repo_url(url: &str) -> String {
    let mut s = url.trim();
    for scheme in ["https://", "http://", "ssh://", "git://", "file://"] {
        if let Some(rest) = s.strip_prefix(scheme) {
            s = rest;
            break;
        }
    }
    let mut s = match s.split_once('@') {
        Some((user, rest)) if !user.contains('/') => rest.to_string(),
        _ => s.to_string(),
    };
    // scp-like `host:org/repo`
    if let Some(colon) = s.find(':')
        && !s[..colon].contains('/')
        && !s[colon + 1..].starts_with(|c: char| c.is_ascii_digit())
    {
        s.replace_range(colon..colon + 1, "/");
    }
    let s = s.trim_end_matches('/');
    let s = s.strip_suffix(".git").unwrap_or(s);
    s.to_lowercase()
}

/// The delivery id the provider gives a delivery, if any: the same on a
/// redelivery ("Redeliver" in GitHub, Gitea's and Forgejo's "Test
/// delivery" of a stored one, GitLab's "Resend request").
fn delivery_id(provider: Provider, headers: &dyn Headers) -> Option<&str> {
    match provider {
        Provider::GitHub => header(headers, "x-github-delivery"),
        Provider::GitLab => header(headers, "x-gitlab-event-uuid"),
        Provider::Gitea | Provider::Unknown => header(headers, "x-gitea-delivery")
            .or_else(|| header(headers, "x-forgejo-delivery"))
            .or_else(|| header(headers, "x-gogs-delivery")),
    }
    .map(str::trim)
    .filter(|id| !id.is_empty())
}

/// What binds a sealed secret to its row.
fn seal_context(app: &AppName, provider: Provider) -> String {
    format!("webhook-secret:{app}:{provider}")
}

/// The secrets a delivery for `app` from `provider` may be signed with at
/// `now`: the current one, and the previous one during a rotation's grace.
async fn accepted_secrets(
    t: &Tracker,
    app: &AppName,
    provider: Provider,
    now: Timestamp,
) -> Result<Vec<SecretString>, Error> {
    let row = t.db().webhook_secret(app, provider).await?.ok_or_else(|| {
        Error::NotFound(format!(
            "no {provider} webhook secret for app `{app}`: make one with `deploy webhook-secret \
             {app} --provider {provider}` (POST /api/v1/apps/{app}/webhook-secrets/{provider})"
        ))
    })?;
    let context = seal_context(app, provider);
    let mut sealed = vec![row.sealed.as_str()];
    sealed.extend(row.previous_at(now));
    sealed
        .into_iter()
        .map(|s| {
            t.secrets()
                .open(s, &context)
                .with_context(|| {
                    format!("cannot open the {provider} webhook secret of app `{app}`")
                })
                .map_err(Error::Internal)
        })
        .collect()
}

/// Checks the delivery is signed with one of `secrets` (the first's error
/// when none matches).
fn verify_any(
    provider: Provider,
    headers: &dyn Headers,
    body: &[u8],
    secrets: &[SecretString],
) -> Result<(), Error> {
    let mut first = None;
    for s in secrets {
        match verify(provider, headers, body, s.expose_secret().as_bytes()) {
            Ok(()) => return Ok(()),
            Err(e) => {
                first.get_or_insert(e);
            }
        }
    }
    Err(first.unwrap_or_else(|| unauthorized("no secret to check the signature with")))
}

/// Handles one webhook delivery for `app`.
pub async fn handle(
    t: &Tracker,
    provider: Provider,
    app_name: &AppName,
    headers: &dyn Headers,
    body: &[u8],
) -> Result<(Taken, WebhookOutcome), Error> {
    let now = Timestamp::now();
    let secrets = accepted_secrets(t, app_name, provider, now).await?;
    verify_any(provider, headers, body, &secrets)?;
    drop(secrets);
    let kind = event(provider, headers);
    if kind == "ping" {
        return Ok((Taken::Answered, outcome("pong", "webhook configured")));
    }
    if kind != "push" {
        return Ok((
            Taken::Accepted,
            outcome("ignored", &format!("event `{kind}` starts nothing")),
        ));
    }
    let Some(app) = t.db().app(app_name).await? else {
        return Err(Error::NotFound(format!("unknown app `{app_name}`")));
    };
    // Once per delivery id: a replayed or redelivered push does nothing.
    let delivery = match delivery_id(provider, headers) {
        Some(id) if id.len() > MAX_DELIVERY_ID => {
            return Err(Error::Invalid(format!(
                "the delivery id is longer than {MAX_DELIVERY_ID} characters"
            )));
        }
        Some(id) => {
            let retention = t.config().webhook_delivery_retention.as_millis() as i64;
            let fresh = t
                .db()
                .record_delivery(&app.name, provider, id, now, Timestamp(now.0 - retention))
                .await?;
            if !fresh {
                tracing::info!(app = %app.name, %provider, delivery = id, "duplicate webhook delivery ignored");
                return Ok((
                    Taken::Accepted,
                    outcome(
                        "duplicate",
                        &format!("delivery {id} was handled already: nothing done"),
                    ),
                ));
            }
            Some(id)
        }
        None => None,
    };
    let handled = push(t, provider, &app, body).await;
    if handled.is_err()
        && let Some(id) = delivery
    {
        // Let the provider's retry be handled rather than be a duplicate.
        if let Err(e) = t.db().forget_delivery(&app.name, provider, id).await {
            tracing::warn!(app = %app.name, %provider, error = %e, "cannot forget a failed delivery");
        }
    }
    handled
}

/// Handles a signed push event for `app`.
async fn push(
    t: &Tracker,
    provider: Provider,
    app: &App,
    body: &[u8],
) -> Result<(Taken, WebhookOutcome), Error> {
    let push = parse_push(provider, body)?;
    let (branch, commit) = match route(&push, app)? {
        Route::Ignored(why) => return Ok((Taken::Accepted, outcome("ignored", &why))),
        Route::Build { branch, commit } => (branch, commit),
    };
    if let Some(why) = skip_reason(t, app, &push).await? {
        tracing::info!(app = %app.name, %provider, branch, commit = %commit, reason = %why, "webhook push skipped: nothing built");
        let short: String = commit.as_str().chars().take(7).collect();
        return Ok((
            Taken::Accepted,
            outcome(
                "skipped",
                &format!("{}: nothing built for {short}: {why}", app.name),
            ),
        ));
    }
    let out = start_branch(t, app, Some(commit.as_str()), "webhook").await?;
    tracing::info!(app = %app.name, %provider, branch, commit = %commit, builds = ?out.builds, deploys = ?out.deploys, "webhook push");
    Ok((Taken::Accepted, out))
}

/// What a push asks of `app`, from the payload alone: nothing (why), or
/// a build of `commit` on `branch`.
#[derive(Debug)]
enum Route<'a> {
    Ignored(String),
    Build { branch: &'a str, commit: GitRef },
}

/// The checks of a push against the app it was sent for that need
/// nothing but the payload: a branch (not a tag), not deleted, the app's
/// branch, the app's repository, a commit that parses.
fn route<'a>(push: &'a Push, app: &App) -> Result<Route<'a>, Error> {
    let Some(branch) = push.git_ref.strip_prefix("refs/heads/") else {
        return Ok(Route::Ignored(format!(
            "`{}` is not a branch",
            push.git_ref
        )));
    };
    if push.after.chars().all(|c| c == '0') {
        return Ok(Route::Ignored(format!("branch `{branch}` was deleted")));
    }
    if branch != app.branch {
        return Ok(Route::Ignored(format!(
            "`{}` builds branch `{}`, not `{branch}`",
            app.name, app.branch
        )));
    }
    let wanted = normalize_repo_url(&app.git_url);
    if !push
        .repo_urls
        .iter()
        .any(|u| normalize_repo_url(u) == wanted)
    {
        return Ok(Route::Ignored(format!(
            "`{}` is not built from {}",
            app.name,
            push.repo_urls
                .first()
                .map(|u| packer::redact_url(u))
                .unwrap_or_else(|| "this repository".into())
        )));
    }
    let commit = GitRef::parse(push.after.as_str())?;
    Ok(Route::Build { branch, commit })
}

/// Why a push to the app's branch builds nothing, if it does not: its head
/// commit asks for no deploy, or it touches neither the app's root nor its
/// `[build] watch` paths (`changes::decide`).
async fn skip_reason(t: &Tracker, app: &App, push: &Push) -> Result<Option<String>, Error> {
    if let Some(marker) = push
        .head_message
        .as_deref()
        .and_then(deploy::monorepo::skip_marker)
    {
        return Ok(Some(format!("its head commit says `{marker}`")));
    }
    let Some(root) = &app.root else {
        return Ok(None);
    };
    let root = match AppRoot::parse(root) {
        Ok(root) => root,
        Err(e) => {
            tracing::warn!(app = %app.name, error = %e, "the stored root does not parse: building");
            return Ok(None);
        }
    };
    let stored = t.db().latest_watch(&app.name).await?;
    Ok(monorepo_skip(app, &root, stored.flatten().as_deref(), push))
}

/// Why a push to an app with a root builds nothing, if it does not, given
/// the watch patterns stored with the app's newest successful build.
fn monorepo_skip(app: &App, root: &AppRoot, stored: Option<&str>, push: &Push) -> Option<String> {
    let watch = changes::stored_watch(stored);
    match changes::decide(Some(root), watch.as_deref(), &push.changes) {
        changes::Decision::Skip(why) => Some(why),
        changes::Decision::Build(why) => {
            tracing::info!(app = %app.name, reason = %why, "monorepo push concerns the app");
            None
        }
    }
}

/// Builds `commit` of the app's branch (its tip when `None`) and, when the
/// app auto-deploys, deploys it, unless the branch no longer holds it or
/// a newer commit of the branch is already built, deployed or queued:
/// a push never auto-deploys a downgrade.
async fn start_branch(
    t: &Tracker,
    app: &App,
    commit: Option<&str>,
    by: &str,
) -> Result<WebhookOutcome, Error> {
    // Pushes of one app take turns, so each sees the other's build.
    let lock = t.push_lock(&app.name);
    let _turn = lock.lock().await;
    let mut newer = t
        .db()
        .built_commits(&app.name, &app.branch, BUILT_COMMITS_COMPARED)
        .await?;
    if let Some(rule) = &app.auto_deploy {
        for c in t
            .db()
            .pending_deploy_commits(&app.name, &rule.cluster)
            .await?
        {
            if !newer.contains(&c) {
                newer.push(c);
            }
        }
    }
    let located = {
        let settings = t.packer_settings().clone();
        let (url, branch) = (app.git_url.clone(), app.branch.clone());
        let commit = commit.map(str::to_string);
        tokio::task::spawn_blocking(move || {
            packer::locate_on_branch(&settings, &url, &branch, commit.as_deref(), &newer)
        })
        .await
        .context("branch check task failed")?
        .map_err(|e| {
            Error::refused(
                ErrorCode::BadRef,
                format!("cannot place the commit on branch `{}`: {e}", app.branch),
            )
        })?
    };
    let (build, _) = t
        .build_commit(&app.name, &app.branch, &located.commit)
        .await?;
    let mut out = outcome("built", "");
    out.builds.push(build.id);
    let short = |c: &str| c.chars().take(7).collect::<String>();
    let note = match &app.auto_deploy {
        None => format!("{}: build {}", app.name, build.id),
        Some(_) if !located.on_branch => format!(
            "{}: build {}; not deployed: {} is not on branch `{}` any more",
            app.name,
            build.id,
            short(&located.commit),
            app.branch
        ),
        Some(_) if located.newer_built.is_some() => {
            let newer = located.newer_built.as_deref().unwrap_or_default();
            tracing::info!(app = %app.name, build_id = %build.id, commit = %located.commit, newer, "older commit pushed: built, not deployed");
            format!(
                "{}: build {}; not deployed: {} is older than {}, already built or deployed for \
                 `{}` (deploy it by hand to go back)",
                app.name,
                build.id,
                short(&located.commit),
                short(newer),
                app.branch
            )
        }
        Some(rule) => {
            let req = CreateDeploy {
                app: app.name.clone(),
                version: None,
                git_ref: Some(GitRef::parse(app.branch.as_str())?),
                cluster: rule.cluster.clone(),
                hosts: rule.hosts.clone(),
                strategy: Default::default(),
                max_failures: Default::default(),
                rollback_on_failure: false,
                confirm: None,
                // A push during a deploy queues behind it; a newer push
                // supersedes a queued one.
                wait: true,
            };
            match t
                .create_automated_deploy(&req, by, Some(build.clone()))
                .await
            {
                Ok(d) => {
                    out.deploys.push(d.id);
                    format!(
                        "{}: build {}, deploy {} to {}",
                        app.name, build.id, d.id, rule.cluster
                    )
                }
                Err(e) => format!("{}: build {}; no auto-deploy ({e})", app.name, build.id),
            }
        }
    };
    out.message = note;
    Ok(out)
}

fn outcome(result: &str, message: &str) -> WebhookOutcome {
    WebhookOutcome {
        result: result.into(),
        message: message.into(),
        builds: Vec::new(),
        deploys: Vec::new(),
    }
}

/// `POST /api/v1/trigger/{secret}`: builds the app's branch (or `git_ref`,
/// where `HEAD` is the branch); returns the app the URL belongs to and what
/// started. Only the branch is auto-deployed (and, as for pushes, never as
/// a downgrade): another ref is built, not deployed.
pub async fn trigger(
    t: &Tracker,
    secret: &str,
    git_ref: Option<GitRef>,
) -> Result<(AppName, WebhookOutcome), Error> {
    let app = t
        .db()
        .app_by_trigger_hash(&crate::tracker::tokens::hash(secret))
        .await?
        .ok_or_else(|| unauthorized("unknown build-trigger URL"))?;
    // `HEAD` is the branch's tip too, so it is built as the branch is;
    // `HEAD~1`, like any other ref, is built and never deployed.
    let tip = [
        app.branch.clone(),
        format!("refs/heads/{}", app.branch),
        "HEAD".into(),
        "@".into(),
    ];
    let out = match git_ref {
        Some(r) if !tip.iter().any(|t| t == r.as_str()) => {
            let (build, _) = t.build_of_ref(&app.name, Some(&r)).await?;
            let mut out = outcome("built", "");
            out.builds.push(build.id);
            out.message = match app.auto_deploy {
                Some(_) => format!(
                    "{}: build {}; not deployed: a build-trigger URL deploys only branch `{}`",
                    app.name, build.id, app.branch
                ),
                None => format!("{}: build {}", app.name, build.id),
            };
            out
        }
        _ => start_branch(t, &app, None, "build-trigger").await?,
    };
    Ok((app.name, out))
}

#[cfg(test)]
mod tests;
