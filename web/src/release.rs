//! The release form: pick a built version (or type a git ref), a cluster,
//! a host regex with a preview of the hosts it takes and what they run
//! now, and a strategy; submitting makes the deploy and opens its page.
//!
//! The preview renders on the server (`?cluster=…&hosts=…`, so it works
//! without JavaScript) and `release.js` refreshes it as the regex is typed,
//! from `GET /api/v1/targets`, the same answer `deploy release --dry-run`
//! shows.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{Html, Response};
use axum::routing::get;
use deploy::{AppName, Client, CreateDeploy, GitRef, HostSelector, Portion, Strategy, Version};
use serde::{Deserialize, Serialize};
use tera::Context;

use crate::AppState;
use crate::actions::{acting, app_name, cluster, field, optional, to_deploy};
use crate::error::PageError;
use crate::visitor::Visitor;

pub(crate) const TEMPLATES: &[(&str, &str)] =
    &[("release.html", include_str!("../templates/release.html"))];

/// How many of an app's builds the version list offers.
const VERSIONS: usize = 30;

pub(crate) fn routes() -> Router<Arc<AppState>> {
    Router::new().route("/release", get(form).post(release))
}

/// What the form is opened with (all optional, kept as typed).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Prefill {
    #[serde(default)]
    app: String,
    #[serde(default)]
    cluster: String,
    #[serde(default)]
    hosts: String,
    #[serde(default)]
    version: String,
}

#[derive(Debug, Serialize)]
struct VersionOption {
    version: String,
    label: String,
}

#[derive(Debug, Serialize)]
struct ClusterOption {
    name: String,
    protected: bool,
    frozen: bool,
}

/// One host of the preview.
#[derive(Debug, Serialize)]
struct TargetRow {
    host: String,
    /// What it runs of the app now ("not installed" when nothing); for
    /// a host left out, why.
    runs: String,
}

#[derive(Debug, Serialize)]
struct Preview {
    hosts: Vec<TargetRow>,
    excluded: Vec<TargetRow>,
    /// Why there is no preview (a bad regex, an unknown cluster).
    error: Option<String>,
}

/// `GET /release`
#[tracing::instrument(skip_all)]
async fn form(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(prefill): Query<Prefill>,
) -> Response {
    let page = async {
        let (api, visitor) = state.visitor(&headers).await?;
        form_page(&state, &api, &visitor, &prefill).await
    };
    state.respond(page.await)
}

async fn form_page(
    state: &AppState,
    api: &Client,
    visitor: &Visitor,
    prefill: &Prefill,
) -> Result<Html<String>, PageError> {
    let (apps, hosts, settings) = tokio::join!(api.apps(), api.hosts(), api.clusters());
    let apps = apps.map_err(|e| PageError::upstream("listing apps", e))?;
    let hosts = hosts.map_err(|e| PageError::upstream("listing hosts", e))?;
    let settings = settings.map_err(|e| PageError::upstream("listing clusters", e))?;

    // Clusters: those with hosts, and those with settings.
    let now = deploy::Timestamp::now();
    let mut names: Vec<String> = hosts.iter().map(|h| h.cluster.to_string()).collect();
    names.extend(settings.iter().map(|c| c.name.to_string()));
    names.sort();
    names.dedup();
    let clusters: Vec<ClusterOption> = names
        .into_iter()
        .map(|name| {
            let s = settings.iter().find(|c| c.name.as_str() == name);
            ClusterOption {
                protected: s.is_some_and(|c| c.protected),
                frozen: s.is_some_and(|c| c.frozen_at(now).is_some()),
                name,
            }
        })
        .collect();

    // An app named in the query that does not exist is simply not chosen.
    let chosen = apps
        .iter()
        .find(|a| a.name.as_str() == prefill.app)
        .or(apps.first())
        .map(|a| a.name.clone());
    let versions = match &chosen {
        Some(app) => api
            .builds(app)
            .await
            .map_err(|e| PageError::upstream("listing builds", e))?
            .into_iter()
            .filter(|b| b.status == deploy::BuildStatus::Succeeded && b.bad.is_none())
            .take(VERSIONS)
            .map(|b| VersionOption {
                label: format!("{} · {} · build {}", b.version, b.git_ref, b.id),
                version: b.version.to_string(),
            })
            .collect(),
        None => Vec::new(),
    };
    let cluster_choice = clusters
        .iter()
        .find(|c| c.name == prefill.cluster)
        .or(clusters.first())
        .map(|c| c.name.clone());
    let preview = match (&cluster_choice, &chosen) {
        (Some(c), Some(app)) => Some(preview(api, c, &prefill.hosts, app).await?),
        _ => None,
    };

    let mut ctx = Context::new();
    ctx.insert(
        "apps",
        &apps.iter().map(|a| a.name.to_string()).collect::<Vec<_>>(),
    );
    ctx.insert("app", &chosen.map(|a| a.to_string()));
    ctx.insert("versions", &versions);
    ctx.insert("version", &prefill.version);
    ctx.insert("clusters", &clusters);
    ctx.insert(
        "cluster_protected",
        &clusters
            .iter()
            .any(|c| Some(&c.name) == cluster_choice.as_ref() && c.protected),
    );
    ctx.insert("cluster", &cluster_choice);
    ctx.insert("hosts", &prefill.hosts);
    ctx.insert("preview", &preview);
    state.render_for(visitor, "release.html", ctx)
}

/// The hosts a deploy would take, or why the regex or cluster takes none.
async fn preview(
    api: &Client,
    cluster_name: &str,
    hosts: &str,
    app: &AppName,
) -> Result<Preview, PageError> {
    let on = match deploy::Cluster::parse(cluster_name) {
        Ok(c) => c,
        Err(e) => return Ok(Preview::error(format!("cluster: {e}"))),
    };
    let selector = match hosts.trim() {
        "" => None,
        h => match HostSelector::parse(h) {
            Ok(s) => Some(s),
            Err(e) => return Ok(Preview::error(format!("hosts: {e}"))),
        },
    };
    match api.targets(&on, selector.as_ref()).await {
        Ok(t) => Ok(Preview {
            hosts: t
                .hosts
                .iter()
                .map(|h| TargetRow {
                    host: h.name.to_string(),
                    runs: h
                        .apps
                        .iter()
                        .find(|a| &a.app == app)
                        .and_then(|a| a.version.as_ref())
                        .map_or("not installed".into(), |v| format!("runs {v}")),
                })
                .collect(),
            excluded: t
                .excluded
                .iter()
                .map(|e| TargetRow {
                    host: e.host.to_string(),
                    runs: e.reason.clone(),
                })
                .collect(),
            error: None,
        }),
        Err(deploy::ClientError::Api {
            status: 400..=499,
            message,
            ..
        }) => Ok(Preview::error(message)),
        Err(e) => Err(PageError::upstream("previewing the hosts", e)),
    }
}

impl Preview {
    fn error(message: String) -> Self {
        Preview {
            hosts: Vec::new(),
            excluded: Vec::new(),
            error: Some(message),
        }
    }
}

/// The form as posted: everything text, parsed with errors that name the
/// field.
#[derive(Debug, Deserialize)]
pub(crate) struct ReleaseForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    app: String,
    #[serde(default)]
    version: String,
    #[serde(default)]
    git_ref: String,
    #[serde(default)]
    cluster: String,
    #[serde(default)]
    hosts: String,
    #[serde(default)]
    batch: String,
    #[serde(default)]
    canary: String,
    #[serde(default)]
    bake: String,
    #[serde(default)]
    manual: Option<String>,
    #[serde(default)]
    max_failures: String,
    #[serde(default)]
    rollback_on_failure: Option<String>,
    #[serde(default)]
    confirm: String,
}

impl ReleaseForm {
    /// The deploy this form asks for.
    pub(crate) fn to_request(&self) -> Result<CreateDeploy, PageError> {
        let app = field("app", &self.app, app_name)?;
        let version = optional("version", &self.version, |v| {
            Version::parse(v).map_err(|e| e.to_string())
        })?;
        let git_ref = optional("git ref", &self.git_ref, |r| {
            GitRef::parse(r).map_err(|e| e.to_string())
        })?;
        let (version, git_ref) = match (version, git_ref) {
            (Some(v), _) => (Some(v), None),
            (None, Some(r)) => (None, Some(r)),
            (None, None) => {
                return Err(PageError::BadInput(
                    "version: pick a built version, or type a git ref to build".into(),
                ));
            }
        };
        let portion = |name: &str, raw: &str| optional(name, raw, Portion::parse);
        let bake_ms = optional("bake", &self.bake, |b| {
            humantime::parse_duration(b)
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
                .map_err(|e| format!("{e} (write it like 30s or 2m)"))
        })?
        .unwrap_or(0);
        let manual = self.manual.is_some();
        let strategy = match (
            portion("batch", &self.batch)?,
            portion("canary", &self.canary)?,
        ) {
            (Some(_), Some(_)) => {
                return Err(PageError::BadInput(
                    "batch and canary: choose one strategy, not both".into(),
                ));
            }
            (Some(batch), None) => Strategy::Rolling {
                batch,
                bake_ms,
                max_unavailable: None,
            },
            (None, Some(canary)) => Strategy::Canary {
                canary,
                bake_ms,
                manual,
            },
            (None, None) => Strategy::AllAtOnce,
        };
        Ok(CreateDeploy {
            app,
            version,
            git_ref,
            cluster: field("cluster", &self.cluster, cluster)?,
            hosts: optional("hosts", &self.hosts, |h| {
                HostSelector::parse(h).map_err(|e| e.to_string())
            })?,
            strategy,
            max_failures: portion("max failures", &self.max_failures)?.unwrap_or_default(),
            rollback_on_failure: self.rollback_on_failure.is_some(),
            confirm: optional("confirm", &self.confirm, cluster)?,
            wait: false,
        })
    }
}

/// `POST /release`: makes the deploy and opens its page.
#[tracing::instrument(skip_all)]
async fn release(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<ReleaseForm>,
) -> Response {
    let outcome = async {
        let api = acting(&headers, &form.csrf, &state)?;
        let req = form.to_request()?;
        let d = api
            .create_deploy(&req)
            .await
            .map_err(|e| PageError::upstream("starting the release", e))?;
        tracing::info!(app = %req.app, cluster = %req.cluster, deploy_id = %d.id, "release started from the dashboard");
        Ok(to_deploy(&d))
    };
    match outcome.await {
        Ok(resp) => resp,
        Err(e) => state.error_page(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> ReleaseForm {
        let body: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
        parse_form(&body.join("&"))
    }

    /// Parses a form body as axum would (no escapes needed here).
    fn parse_form(body: &str) -> ReleaseForm {
        let map: serde_json::Map<String, serde_json::Value> = body
            .split('&')
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.to_string())))
            .collect();
        serde_json::from_value(serde_json::Value::Object(map)).expect("a form")
    }

    fn bad(pairs: &[(&str, &str)]) -> String {
        match form(pairs).to_request() {
            Err(PageError::BadInput(m)) => m,
            other => panic!("expected bad input, got {other:?}"),
        }
    }

    #[test]
    fn a_canary_release_of_a_built_version() {
        let req = form(&[
            ("app", "hello"),
            ("version", "3-abcdef1"),
            ("git_ref", "ignored-when-a-version-is-picked"),
            ("cluster", "prod"),
            ("hosts", "web-[0-9]+"),
            ("canary", "1"),
            ("bake", "30s"),
            ("manual", "yes"),
            ("max_failures", "10%"),
            ("confirm", "prod"),
        ])
        .to_request()
        .expect("valid");
        assert_eq!(
            req.version.map(|v| v.to_string()).as_deref(),
            Some("3-abcdef1")
        );
        assert!(req.git_ref.is_none());
        assert_eq!(
            req.strategy,
            Strategy::Canary {
                canary: Portion::Count(1),
                bake_ms: 30_000,
                manual: true
            }
        );
        assert_eq!(req.max_failures, Portion::Percent(10));
        assert_eq!(req.confirm.map(|c| c.to_string()).as_deref(), Some("prod"));
        assert_eq!(
            req.hosts.map(|h| h.to_string()).as_deref(),
            Some("web-[0-9]+")
        );
        assert!(!req.rollback_on_failure);
    }

    #[test]
    fn a_git_ref_all_at_once_to_every_host() {
        let req = form(&[("app", "hello"), ("git_ref", "main"), ("cluster", "local")])
            .to_request()
            .expect("valid");
        assert!(req.version.is_none());
        assert_eq!(req.git_ref.map(|r| r.to_string()).as_deref(), Some("main"));
        assert_eq!(req.strategy, Strategy::AllAtOnce);
        assert!(req.hosts.is_none() && req.confirm.is_none());
    }

    #[test]
    fn bad_input_names_the_field() {
        let base = [("app", "hello"), ("git_ref", "main"), ("cluster", "local")];
        let with = |k: &'static str, v: &'static str| {
            let mut f = base.to_vec();
            f.retain(|(key, _)| *key != k);
            f.push((k, v));
            f
        };
        assert!(bad(&with("hosts", "web-(")).starts_with("hosts \"web-(\""));
        assert!(bad(&with("bake", "soon")).contains("bake \"soon\""));
        assert!(bad(&with("batch", "-1")).starts_with("batch"));
        assert!(bad(&with("cluster", "")).starts_with("cluster: required"));
        assert!(bad(&with("app", "Not An App")).starts_with("app"));
        let mut both = with("batch", "2");
        both.push(("canary", "1"));
        assert!(bad(&both).contains("choose one strategy"));
        let none = [("app", "hello"), ("cluster", "local")];
        assert!(bad(&none).starts_with("version: pick a built version"));
    }
}
