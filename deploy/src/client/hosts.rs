//! The client's calls made for and by hosts: heartbeats, version reports,
//! desired state, drift, and forgetting a retired host.

use super::{Client, ClientError};
use crate::api::{DesiredState, Heartbeat, Host};
use crate::{Cluster, HostName};

impl Client {
    pub async fn heartbeat(&self, hb: &Heartbeat) -> Result<Host, ClientError> {
        self.post("/api/v1/hosts/heartbeat", hb).await
    }

    /// Every registered host, by cluster and name.
    pub async fn hosts(&self) -> Result<Vec<Host>, ClientError> {
        self.collect("/api/v1/hosts", None).await
    }

    /// Forgets a retired host (admin): the drift table no longer shows it.
    /// Refused (`deploy_in_progress`) while a deploy under way has it; its
    /// agents reporting again bring it back.
    pub async fn remove_host(
        &self,
        cluster: &Cluster,
        host: &HostName,
    ) -> Result<crate::RemovedHost, ClientError> {
        self.send(
            self.http
                .delete(self.url(&format!("/api/v1/hosts/{cluster}/{host}"))),
        )
        .await
    }

    /// A versionchecker's report of what its host has installed and runs.
    pub async fn report(
        &self,
        report: &crate::HostReport,
    ) -> Result<crate::report::ReportReceipt, ClientError> {
        self.post("/api/v1/hosts/report", report).await
    }

    /// What each host should run against what it reports.
    pub async fn drift(
        &self,
        query: &crate::DriftQuery,
    ) -> Result<crate::DriftReport, ClientError> {
        self.send(self.http.get(self.url("/api/v1/drift")).query(query))
            .await
    }

    /// Deploys the desired version to the hosts of `app` on `cluster`
    /// that drifted.
    pub async fn sync(&self, req: &crate::SyncRequest) -> Result<crate::SyncOutcome, ClientError> {
        self.post("/api/v1/drift/sync", req).await
    }

    pub async fn desired_state(
        &self,
        cluster: &Cluster,
        host: &HostName,
    ) -> Result<DesiredState, ClientError> {
        self.get(&format!("/api/v1/hosts/{cluster}/{host}/desired"))
            .await
    }
}
