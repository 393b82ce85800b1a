//! The client's calls about deploys: creating, reading, retrying,
//! rolling back, continuing and cancelling them, and hosts' progress reports.

use super::{Client, ClientError};
use crate::api::{CreateDeploy, Deploy, DeployHost, HostEvent};
use crate::{AppName, DeployId, HostName};

impl Client {
    pub async fn create_deploy(&self, req: &CreateDeploy) -> Result<Deploy, ClientError> {
        self.post("/api/v1/deploys", req).await
    }

    /// The `limit` newest deploys, newest first.
    pub async fn deploys(&self, limit: u32) -> Result<Vec<Deploy>, ClientError> {
        self.collect("/api/v1/deploys", Some(limit as usize)).await
    }

    /// The `limit` newest deploys of `app` (to `cluster` when given),
    /// newest first.
    pub async fn deploys_of(
        &self,
        app: &AppName,
        cluster: Option<&crate::Cluster>,
        limit: u32,
    ) -> Result<Vec<Deploy>, ClientError> {
        let query = crate::api::DeployQuery {
            limit: Some(limit.clamp(1, crate::api::MAX_PAGE_LIMIT)),
            cursor: None,
            app: Some(app.clone()),
            cluster: cluster.cloned(),
            status: None,
        };
        Ok(self.page("/api/v1/deploys", &query).await?.items)
    }

    /// The `limit` newest deploys that match every filter given: of `app`,
    /// to `cluster`, in one of `status` (`DeployStatuses::under_way()`:
    /// queued, building or running); newest first, across pages.
    pub async fn deploys_filtered(
        &self,
        app: Option<&AppName>,
        cluster: Option<&crate::Cluster>,
        status: Option<&crate::DeployStatuses>,
        limit: u32,
    ) -> Result<Vec<Deploy>, ClientError> {
        let mut query = crate::api::DeployQuery {
            limit: None,
            cursor: None,
            app: app.cloned(),
            cluster: cluster.cloned(),
            status: status.cloned(),
        };
        let mut out: Vec<Deploy> = Vec::new();
        while out.len() < limit as usize {
            let left = limit as usize - out.len();
            query.limit = Some(left.min(crate::api::MAX_PAGE_LIMIT as usize) as u32);
            let page: crate::Page<Deploy> = self.page("/api/v1/deploys", &query).await?;
            out.extend(page.items);
            match page.next {
                // A server naming the same page again would loop forever.
                Some(next) if query.cursor.as_ref() == Some(&next) => {
                    return Err(ClientError::Decode {
                        url: self.url("/api/v1/deploys"),
                        reason: format!("the next page's cursor {next:?} repeats"),
                    });
                }
                Some(next) => query.cursor = Some(next),
                None => break,
            }
        }
        Ok(out)
    }

    pub async fn deploy(&self, id: DeployId) -> Result<Deploy, ClientError> {
        self.get(&format!("/api/v1/deploys/{id}")).await
    }

    /// The hosts a deploy to `cluster` (those matching `hosts`) would touch.
    pub async fn targets(
        &self,
        cluster: &crate::Cluster,
        hosts: Option<&crate::HostSelector>,
    ) -> Result<crate::Targets, ClientError> {
        let mut query = vec![("cluster", cluster.as_str())];
        if let Some(h) = hosts {
            query.push(("hosts", h.as_str()));
        }
        self.send(self.http.get(self.url("/api/v1/targets")).query(&query))
            .await
    }

    /// A new deploy of the same version to the hosts of `id` that failed or
    /// timed out.
    pub async fn retry_deploy(&self, id: DeployId) -> Result<Deploy, ClientError> {
        self.post(
            &format!("/api/v1/deploys/{id}/retry"),
            &serde_json::json!({}),
        )
        .await
    }

    /// Puts back the version before the newest deploy of `app` to
    /// `cluster` and pins it there.
    pub async fn rollback(
        &self,
        app: &AppName,
        cluster: &crate::Cluster,
    ) -> Result<Deploy, ClientError> {
        self.rollback_confirmed(app, cluster, None).await
    }

    /// A rollback on a protected cluster, confirmed by naming it.
    pub async fn rollback_confirmed(
        &self,
        app: &AppName,
        cluster: &crate::Cluster,
        confirm: Option<&crate::Cluster>,
    ) -> Result<Deploy, ClientError> {
        self.post(
            &format!("/api/v1/apps/{app}/rollback"),
            &crate::Rollback {
                cluster: cluster.clone(),
                confirm: confirm.cloned(),
            },
        )
        .await
    }

    /// Lets a deploy waiting for a human (a manual canary) start its next
    /// batch.
    pub async fn continue_deploy(&self, id: DeployId) -> Result<Deploy, ClientError> {
        self.post(
            &format!("/api/v1/deploys/{id}/continue"),
            &serde_json::json!({}),
        )
        .await
    }

    /// Stops a deploy: hosts not yet started stay untouched.
    pub async fn cancel_deploy(&self, id: DeployId) -> Result<Deploy, ClientError> {
        self.post(
            &format!("/api/v1/deploys/{id}/cancel"),
            &serde_json::json!({}),
        )
        .await
    }

    /// Every phase every host of the deploy reported, oldest first.
    pub async fn deploy_events(
        &self,
        id: DeployId,
    ) -> Result<Vec<crate::HostEventRecord>, ClientError> {
        self.collect(&format!("/api/v1/deploys/{id}/events"), None)
            .await
    }

    /// A grabber reports a host's progress in a deploy.
    pub async fn host_event(
        &self,
        deploy: DeployId,
        host: &HostName,
        event: &HostEvent,
    ) -> Result<DeployHost, ClientError> {
        self.post(
            &format!("/api/v1/deploys/{deploy}/hosts/{host}/events"),
            event,
        )
        .await
    }

    /// A grabber asks where to fetch the files of a deploy's release it
    /// lacks.
    pub async fn sources(
        &self,
        deploy: DeployId,
        host: &HostName,
        req: &crate::SourcesRequest,
    ) -> Result<crate::Sources, ClientError> {
        self.post(
            &format!("/api/v1/deploys/{deploy}/hosts/{host}/sources"),
            req,
        )
        .await
    }

    /// The grabber that ran a deploy's release phase says how it went.
    /// What `host` (of `cluster`) is asked to run as deploy `deploy`'s
    /// release phase (agents): a `conflict` unless that phase waits on it.
    pub async fn release_phase_asked(
        &self,
        deploy: DeployId,
        cluster: &crate::Cluster,
        host: &HostName,
    ) -> Result<crate::Release, ClientError> {
        self.get(&format!(
            "/api/v1/deploys/{deploy}/release-phase/{host}?cluster={cluster}"
        ))
        .await
    }

    pub async fn release_phase_result(
        &self,
        deploy: DeployId,
        host: &HostName,
        result: &crate::ReleasePhaseResult,
    ) -> Result<crate::ReleasePhase, ClientError> {
        self.post(
            &format!("/api/v1/deploys/{deploy}/release-phase/{host}"),
            result,
        )
        .await
    }
}
