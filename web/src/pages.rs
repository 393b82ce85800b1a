//! The dashboard's pages: the index (recent deploys, hosts), a deploy, the
//! drift table; each one or two API calls turned into a view model.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{Html, Response};
use deploy::{Client, ClientError, DeployId};
use tera::Context;

use crate::error::PageError;
use crate::views::{
    ClusterRow, DeployRow, DeployView, DriftRow, DriftSummaryRow, FleetSummary, HostRow, HostView,
    phase_durations, ssh_command,
};
use crate::visitor::Visitor;
use crate::{AppState, RECENT_DEPLOYS};

/// `GET /`: recent deploys and the host registry.
#[tracing::instrument(skip_all)]
pub(crate) async fn index(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let page = async {
        let (api, visitor) = state.visitor(&headers).await?;
        index_page(&state, &api, &visitor).await
    };
    state.respond(page.await)
}

pub(crate) async fn index_page(
    state: &AppState,
    api: &Client,
    visitor: &Visitor,
) -> Result<Html<String>, PageError> {
    let all = deploy::DriftQuery::default();
    let (deploys, hosts, pins, clusters, drift) = tokio::join!(
        api.deploys(RECENT_DEPLOYS),
        api.hosts(),
        api.all_pins(),
        api.clusters(),
        api.drift(&all)
    );
    let deploys = deploys.map_err(|e| PageError::upstream("listing deploys", e))?;
    let hosts = hosts.map_err(|e| PageError::upstream("listing hosts", e))?;
    let pins = pins.map_err(|e| PageError::upstream("listing pins", e))?;
    let clusters = clusters.map_err(|e| PageError::upstream("listing clusters", e))?;
    tracing::debug!(
        deploys = deploys.len(),
        hosts = hosts.len(),
        "rendering index"
    );

    // The drift summary only adds to the page: without it, it still shows.
    let drift = drift.map(|d| d.summary).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "no drift summary on the overview");
        Vec::new()
    });
    let mut ctx = Context::new();
    ctx.insert("fleet", &FleetSummary::new(&hosts, &drift));
    ctx.insert(
        "drift",
        &drift.iter().map(DriftSummaryRow::from).collect::<Vec<_>>(),
    );
    ctx.insert(
        "deploys",
        &deploys.iter().map(DeployRow::from).collect::<Vec<_>>(),
    );
    ctx.insert(
        "hosts",
        &hosts.iter().map(HostRow::from).collect::<Vec<_>>(),
    );
    ctx.insert("pins", &pins);
    let now = deploy::Timestamp::now();
    ctx.insert(
        "clusters",
        &clusters
            .iter()
            .map(|c| ClusterRow::new(c, now))
            .filter(|c| c.protected || c.frozen_until.is_some())
            .collect::<Vec<_>>(),
    );
    state.render_for(visitor, "index.html", ctx)
}

/// `GET /deploys/{id}`: one deploy, host by host, kept live by the browser.
#[tracing::instrument(skip_all, fields(deploy_id = %raw_id))]
pub(crate) async fn deploy(
    State(state): State<Arc<AppState>>,
    Path(raw_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let page = async {
        let (api, visitor) = state.visitor(&headers).await?;
        deploy_page(&state, &api, &visitor, &raw_id).await
    };
    state.respond(page.await)
}

pub(crate) async fn deploy_page(
    state: &AppState,
    api: &Client,
    visitor: &Visitor,
    raw_id: &str,
) -> Result<Html<String>, PageError> {
    // A malformed id names no deploy: the same 404 as an unknown one.
    let id: DeployId = raw_id
        .parse()
        .map_err(|_| PageError::NotFound(format!("there is no deploy {raw_id:?}")))?;
    let deploy = api.deploy(id).await.map_err(|e| match e {
        ClientError::Api { status: 404, .. } => {
            PageError::NotFound(format!("there is no deploy #{id}"))
        }
        e => PageError::upstream("fetching the deploy", e),
    })?;
    tracing::debug!(status = %deploy.status, hosts = deploy.hosts.len(), "rendering deploy");
    // The rest only adds detail: the page still renders without it.
    let (events, fleet, clusters) =
        tokio::join!(api.deploy_events(id), api.hosts(), api.clusters());
    let events = events.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "no phase durations: the deploy's events could not be read");
        Vec::new()
    });
    let fleet = fleet.unwrap_or_default();
    let protected = clusters
        .unwrap_or_default()
        .iter()
        .any(|c| c.name == deploy.cluster && c.protected);
    let root_of = |host: &deploy::HostName| {
        fleet
            .iter()
            .find(|h| h.cluster == deploy.cluster && &h.name == host)
            .map(|h| h.root.clone())
    };

    let mut ctx = Context::new();
    let mut view = DeployView::from(&deploy);
    view.protected = protected;
    ctx.insert("deploy", &view);
    let hosts: Vec<HostView> = deploy
        .hosts
        .iter()
        .map(|h| {
            let mut v = HostView::from(h);
            v.durations = phase_durations(&h.host, &events);
            if h.phase.is_failure()
                && let Some(root) = root_of(&h.host)
            {
                v.ssh = Some(ssh_command(h.host.as_str(), &root, deploy.app.as_str()));
            }
            v
        })
        .collect();
    ctx.insert("hosts", &hosts);
    // The page's script makes the ssh command of a host that fails live.
    let roots: std::collections::BTreeMap<String, String> = fleet
        .iter()
        .filter(|h| h.cluster == deploy.cluster)
        .map(|h| (h.name.to_string(), h.root.clone()))
        .collect();
    ctx.insert(
        "roots",
        &serde_json::to_string(&roots).unwrap_or_else(|_| "{}".into()),
    );
    state.render_for(visitor, "deploy.html", ctx)
}

/// `GET /drift`: the drift table, summary first.
#[tracing::instrument(skip_all)]
pub(crate) async fn drift(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let page = async {
        let (api, visitor) = state.visitor(&headers).await?;
        drift_page(&state, &api, &visitor).await
    };
    state.respond(page.await)
}

pub(crate) async fn drift_page(
    state: &AppState,
    api: &Client,
    visitor: &Visitor,
) -> Result<Html<String>, PageError> {
    let report = api
        .drift(&deploy::DriftQuery::default())
        .await
        .map_err(|e| PageError::upstream("reading the drift table", e))?;
    let mut ctx = Context::new();
    let summary: Vec<DriftSummaryRow> = report.summary.iter().map(DriftSummaryRow::from).collect();
    ctx.insert("summary", &summary);
    ctx.insert(
        "hosts",
        &report.hosts.iter().map(DriftRow::from).collect::<Vec<_>>(),
    );
    state.render_for(visitor, "drift.html", ctx)
}
