//! VCS webhooks (GitHub, GitLab, Gitea/Forgejo) and build-trigger URLs: a
//! push to an app's branch starts a build of the pushed commit, and a deploy
//! when the app has an auto-deploy rule.
//!
//! Signatures are checked before the body is even parsed, in constant time;
//! a bad one is 401 with nothing started. Pings are answered, other events
//! ignored with 202.

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use deploy::{App, AppName, CreateDeploy, GitRef, WebhookOutcome};
use hmac::{Hmac, Mac};
use secrecy::ExposeSecret;
use serde_json::Value;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::tracker::Tracker;

/// Who sent a webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    GitHub,
    GitLab,
    /// Gitea and Forgejo send the same payloads and signatures.
    Gitea,
}

impl Provider {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "github" => Some(Provider::GitHub),
            "gitlab" => Some(Provider::GitLab),
            "gitea" | "forgejo" => Some(Provider::Gitea),
            _ => None,
        }
    }
}

/// A push, as the three providers describe it.
#[derive(Debug, PartialEq, Eq)]
struct Push {
    /// `refs/heads/<branch>` or `refs/tags/<tag>`.
    git_ref: String,
    /// The commit the ref now points to (all zeros for a deletion).
    after: String,
    /// Every URL the provider gives for the repository.
    repo_urls: Vec<String>,
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

fn unauthorized(why: &str) -> ApiError {
    ApiError::Unauthorized(format!("webhook refused: {why}"))
}

/// Checks the request came from someone holding the secret.
fn verify(
    provider: Provider,
    headers: &HeaderMap,
    body: &[u8],
    secret: &[u8],
) -> Result<(), ApiError> {
    let hmac_hex = |sig: &str| -> Result<(), ApiError> {
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
    }
}

/// The event's kind: `push`, `ping`, or something we ignore.
fn event(provider: Provider, headers: &HeaderMap) -> String {
    let raw = match provider {
        Provider::GitHub => header(headers, "x-github-event"),
        Provider::GitLab => header(headers, "x-gitlab-event"),
        Provider::Gitea => {
            header(headers, "x-gitea-event").or_else(|| header(headers, "x-forgejo-event"))
        }
    };
    match raw.unwrap_or("") {
        "push" | "Push Hook" => "push".into(),
        "ping" => "ping".into(),
        other => other.to_string(),
    }
}

fn parse_push(provider: Provider, body: &[u8]) -> Result<Push, ApiError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::Invalid(format!("the push payload is not JSON: {e}")))?;
    let text = |path: &[&str]| -> Option<String> {
        let mut cur = &v;
        for p in path {
            cur = cur.get(p)?;
        }
        cur.as_str().map(str::to_string)
    };
    let git_ref =
        text(&["ref"]).ok_or_else(|| ApiError::Invalid("the push payload has no `ref`".into()))?;
    // Every provider's push payload names the pushed head `after`.
    let after = text(&["after"])
        .ok_or_else(|| ApiError::Invalid("the push payload has no `after`".into()))?;
    let candidates: &[&[&str]] = match provider {
        Provider::GitHub | Provider::Gitea => &[
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
    Ok(Push {
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

/// Handles one webhook request.
pub async fn handle(
    t: &Tracker,
    provider: Provider,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<(StatusCode, WebhookOutcome), ApiError> {
    let Some(secret) = t.webhook_secret() else {
        return Err(ApiError::NotFound(
            "webhooks are off: set webhook_secret_file in AppTracker's config".into(),
        ));
    };
    verify(provider, headers, body, secret.expose_secret().as_bytes())?;
    let kind = event(provider, headers);
    if kind == "ping" {
        return Ok((StatusCode::OK, outcome("pong", "webhook configured")));
    }
    if kind != "push" {
        return Ok((
            StatusCode::ACCEPTED,
            outcome("ignored", &format!("event `{kind}` starts nothing")),
        ));
    }
    let push = parse_push(provider, body)?;
    let Some(branch) = push.git_ref.strip_prefix("refs/heads/") else {
        return Ok((
            StatusCode::ACCEPTED,
            outcome("ignored", &format!("`{}` is not a branch", push.git_ref)),
        ));
    };
    if push.after.chars().all(|c| c == '0') {
        return Ok((
            StatusCode::ACCEPTED,
            outcome("ignored", &format!("branch `{branch}` was deleted")),
        ));
    }
    let wanted: Vec<String> = push
        .repo_urls
        .iter()
        .map(|u| normalize_repo_url(u))
        .collect();
    let apps: Vec<App> = t
        .db()
        .apps()
        .await?
        .into_iter()
        .filter(|a| a.branch == branch && wanted.contains(&normalize_repo_url(&a.git_url)))
        .collect();
    if apps.is_empty() {
        return Ok((
            StatusCode::ACCEPTED,
            outcome(
                "ignored",
                &format!(
                    "no app builds branch `{branch}` of {}",
                    push.repo_urls
                        .first()
                        .map(String::as_str)
                        .unwrap_or("this repository")
                ),
            ),
        ));
    }
    let commit = GitRef::parse(push.after.as_str())?;
    let mut out = outcome("built", "");
    let mut notes = Vec::new();
    for app in apps {
        start(t, &app, &commit, &mut out, &mut notes).await?;
    }
    out.message = notes.join("; ");
    tracing::info!(?provider, branch, commit = %commit, builds = ?out.builds, deploys = ?out.deploys, "webhook push");
    Ok((StatusCode::ACCEPTED, out))
}

/// Builds `app` at `commit`, and deploys it if the app says so.
async fn start(
    t: &Tracker,
    app: &App,
    commit: &GitRef,
    out: &mut WebhookOutcome,
    notes: &mut Vec<String>,
) -> Result<(), ApiError> {
    if let Some(rule) = &app.auto_deploy {
        let req = CreateDeploy {
            app: app.name.clone(),
            version: None,
            git_ref: Some(commit.clone()),
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
        match t.create_automated_deploy(&req, "webhook").await {
            Ok(d) => {
                out.deploys.push(d.id);
                out.builds.extend(d.build_id);
                notes.push(format!("{}: deploy {} to {}", app.name, d.id, rule.cluster));
                return Ok(());
            }
            Err(e) => notes.push(format!("{}: no auto-deploy ({e})", app.name)),
        }
    }
    let (build, _) = t.request_build(&app.name, Some(commit)).await?;
    notes.push(format!("{}: build {}", app.name, build.id));
    out.builds.push(build.id);
    Ok(())
}

fn outcome(result: &str, message: &str) -> WebhookOutcome {
    WebhookOutcome {
        result: result.into(),
        message: message.into(),
        builds: Vec::new(),
        deploys: Vec::new(),
    }
}

/// Makes a new build-trigger URL for `app` (the old one stops working).
pub async fn new_trigger_url(t: &Tracker, app: &AppName) -> Result<String, ApiError> {
    let (secret, hash) = crate::auth::generate()?;
    if !t.db().set_trigger_hash(app, &hash).await? {
        return Err(ApiError::NotFound(format!("unknown app `{app}`")));
    }
    Ok(format!("{}/api/v1/trigger/{secret}", t.base_url()))
}

/// `POST /api/v1/trigger/{secret}`: builds the app's branch (or `git_ref`);
/// returns the app the URL belongs to and what started.
pub async fn trigger(
    t: &Tracker,
    secret: &str,
    git_ref: Option<GitRef>,
) -> Result<(AppName, WebhookOutcome), ApiError> {
    let app = t
        .db()
        .app_by_trigger_hash(&crate::auth::hash(secret))
        .await?
        .ok_or_else(|| unauthorized("unknown build-trigger URL"))?;
    let git_ref = match git_ref {
        Some(r) => r,
        None => GitRef::parse(app.branch.as_str())?,
    };
    let mut out = outcome("built", "");
    let mut notes = Vec::new();
    start(t, &app, &git_ref, &mut out, &mut notes).await?;
    out.message = notes.join("; ");
    Ok((app.name, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_urls_compare_across_forms() {
        let n = normalize_repo_url;
        assert_eq!(n("https://github.com/Org/Repo.git"), "github.com/org/repo");
        assert_eq!(n("git@github.com:org/repo.git"), "github.com/org/repo");
        assert_eq!(n("ssh://git@github.com/org/repo"), "github.com/org/repo");
        assert_eq!(n("https://github.com/org/repo/"), "github.com/org/repo");
        assert_eq!(n("file:///srv/git/app.git"), "/srv/git/app");
        assert_eq!(n("/srv/git/app"), "/srv/git/app");
        assert_eq!(n("http://127.0.0.1:8080/app.git"), "127.0.0.1:8080/app");
        assert_ne!(
            n("https://github.com/org/repo"),
            n("https://github.com/org/other")
        );
    }

    #[test]
    fn github_signatures_are_checked() {
        let body = br#"{"ref":"refs/heads/main"}"#;
        let mut mac = Hmac::<Sha256>::new_from_slice(b"s3cret").unwrap();
        mac.update(body);
        let good = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        let mut h = HeaderMap::new();
        h.insert("x-hub-signature-256", good.parse().unwrap());
        assert!(verify(Provider::GitHub, &h, body, b"s3cret").is_ok());
        assert!(
            verify(Provider::GitHub, &h, b"{}", b"s3cret").is_err(),
            "another body"
        );
        assert!(
            verify(Provider::GitHub, &h, body, b"other").is_err(),
            "another secret"
        );
        assert!(verify(Provider::GitHub, &HeaderMap::new(), body, b"s3cret").is_err());
    }

    #[test]
    fn gitlab_tokens_are_checked() {
        let mut h = HeaderMap::new();
        h.insert("x-gitlab-token", "s3cret".parse().unwrap());
        assert!(verify(Provider::GitLab, &h, b"", b"s3cret").is_ok());
        assert!(verify(Provider::GitLab, &h, b"", b"s3cret2").is_err());
    }
}
