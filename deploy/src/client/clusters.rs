//! The client's calls about cluster controls: pins, protection, freezes.

use super::{Client, ClientError};
use crate::AppName;

impl Client {
    /// Every pin of every app.
    pub async fn all_pins(&self) -> Result<Vec<crate::Pin>, ClientError> {
        self.get("/api/v1/pins").await
    }

    /// Every cluster with deploy controls set.
    pub async fn clusters(&self) -> Result<Vec<crate::ClusterSettings>, ClientError> {
        self.get("/api/v1/clusters").await
    }

    /// Marks `cluster` protected (deploys must name it back) or not.
    pub async fn set_protected(
        &self,
        cluster: &crate::Cluster,
        protected: bool,
    ) -> Result<crate::ClusterSettings, ClientError> {
        self.send(
            self.http
                .put(self.url(&format!("/api/v1/clusters/{cluster}")))
                .json(&crate::SetProtected { protected }),
        )
        .await
    }

    /// No deploys to `cluster` until the freeze ends (rollbacks still go).
    pub async fn freeze(
        &self,
        cluster: &crate::Cluster,
        freeze: &crate::Freeze,
    ) -> Result<crate::ClusterSettings, ClientError> {
        self.post(&format!("/api/v1/clusters/{cluster}/freeze"), freeze)
            .await
    }

    /// Lifts a freeze; deploys queued behind it start.
    pub async fn thaw(
        &self,
        cluster: &crate::Cluster,
    ) -> Result<crate::ClusterSettings, ClientError> {
        self.send(
            self.http
                .delete(self.url(&format!("/api/v1/clusters/{cluster}/freeze"))),
        )
        .await
    }

    pub async fn pins(&self, app: &AppName) -> Result<Vec<crate::Pin>, ClientError> {
        self.collect(&format!("/api/v1/apps/{app}/pins"), None)
            .await
    }

    /// Lets deploys of other versions through again.
    pub async fn unpin(&self, app: &AppName, cluster: &crate::Cluster) -> Result<(), ClientError> {
        let _: serde_json::Value = self
            .send(
                self.http
                    .delete(self.url(&format!("/api/v1/apps/{app}/pins/{cluster}"))),
            )
            .await?;
        Ok(())
    }
}
