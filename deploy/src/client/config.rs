//! The client's calls about an app's config (`deploy env`), operating it
//! (`deploy restart|stop|start`), a host's fetch of the config it runs, and
//! outgoing notifications (`deploy notify`).

use super::{Client, ClientError};
use crate::api::{AppConfig, ConfigChange, HostConfig, OperateApp, SetConfig, UnsetConfig};
use crate::{AppName, Cluster, Deploy, DeployAction, HostName};

impl Client {
    /// The app's variables (secrets masked); with a cluster, the app-wide
    /// ones and that cluster's.
    pub async fn app_config(
        &self,
        app: &AppName,
        cluster: Option<&Cluster>,
    ) -> Result<AppConfig, ClientError> {
        let query = crate::api::ConfigQuery {
            cluster: cluster.cloned(),
        };
        self.send(
            self.http
                .get(self.url(&format!("/api/v1/apps/{app}/config")))
                .query(&query),
        )
        .await
    }

    pub async fn set_config(
        &self,
        app: &AppName,
        req: &SetConfig,
    ) -> Result<ConfigChange, ClientError> {
        self.post(&format!("/api/v1/apps/{app}/config"), req).await
    }

    pub async fn unset_config(
        &self,
        app: &AppName,
        req: &UnsetConfig,
    ) -> Result<ConfigChange, ClientError> {
        self.post(&format!("/api/v1/apps/{app}/config/unset"), req)
            .await
    }

    /// Restarts, stops or starts the app on a cluster, as a deploy.
    pub async fn operate(
        &self,
        app: &AppName,
        action: DeployAction,
        req: &OperateApp,
    ) -> Result<Deploy, ClientError> {
        self.post(&format!("/api/v1/apps/{app}/{action}"), req)
            .await
    }

    /// The variables `app` runs with on `host` at config `version`, secrets
    /// in the clear: the host's own agent token only.
    pub async fn host_config(
        &self,
        cluster: &Cluster,
        host: &HostName,
        app: &AppName,
        version: u64,
    ) -> Result<HostConfig, ClientError> {
        self.get(&format!(
            "/api/v1/hosts/{cluster}/{host}/config/{app}/{version}"
        ))
        .await
    }
}

impl Client {
    /// Sends deploy events to a URL (admin); the answer holds the signing
    /// secret, shown once.
    pub async fn create_notification(
        &self,
        req: &crate::api::CreateNotification,
    ) -> Result<crate::api::CreatedNotification, ClientError> {
        self.post("/api/v1/notifications", req).await
    }

    pub async fn notifications(&self) -> Result<Vec<crate::api::Notification>, ClientError> {
        self.get("/api/v1/notifications").await
    }

    pub async fn delete_notification(&self, id: i64) -> Result<serde_json::Value, ClientError> {
        self.send(
            self.http
                .delete(self.url(&format!("/api/v1/notifications/{id}"))),
        )
        .await
    }

    /// A notification's last deliveries, newest first.
    pub async fn notification_deliveries(
        &self,
        id: i64,
    ) -> Result<Vec<crate::api::NotificationDelivery>, ClientError> {
        self.get(&format!("/api/v1/notifications/{id}/deliveries"))
            .await
    }
}

impl Client {
    /// A piece of `app`'s log on one host (deployer).
    pub async fn read_log(
        &self,
        app: &AppName,
        req: &crate::api::LogRequest,
    ) -> Result<crate::api::AppLog, ClientError> {
        self.post(&format!("/api/v1/apps/{app}/logs"), req).await
    }

    /// A grabber's answer to log request `id`.
    pub async fn answer_log(
        &self,
        id: i64,
        answer: &crate::api::LogAnswer,
    ) -> Result<serde_json::Value, ClientError> {
        self.post(&format!("/api/v1/log-requests/{id}"), answer)
            .await
    }
}
