//! The client's calls about apps and their webhook secrets.

use super::{Client, ClientError};
use crate::AppName;
use crate::api::{App, RegisterApp, RemovedApp, UpdateApp};

impl Client {
    pub async fn register_app(&self, req: &RegisterApp) -> Result<App, ClientError> {
        self.post("/api/v1/apps", req).await
    }

    /// Every registered app, by name.
    pub async fn apps(&self) -> Result<Vec<App>, ClientError> {
        self.collect("/api/v1/apps", None).await
    }

    pub async fn app(&self, app: &AppName) -> Result<App, ClientError> {
        self.get(&format!("/api/v1/apps/{app}")).await
    }

    /// Changes the app's branch, auto-deploy rule or new-host policy (admin);
    /// what `change` leaves out stays. The app as changed.
    pub async fn update_app(&self, app: &AppName, change: &UpdateApp) -> Result<App, ClientError> {
        self.send(
            self.http
                .patch(self.url(&format!("/api/v1/apps/{app}")))
                .json(change),
        )
        .await
    }

    /// Removes an app that runs nowhere (admin), with its builds, deploys,
    /// pins, config and secrets; refused (`deploy_in_progress`,
    /// `app_running`) while a deploy of it is under way or hosts run it.
    pub async fn remove_app(&self, app: &AppName) -> Result<RemovedApp, ClientError> {
        self.send(self.http.delete(self.url(&format!("/api/v1/apps/{app}"))))
            .await
    }

    /// Makes the app's webhook secret for `provider`, or rotates it
    /// (`req.rotate`); the answer holds the only copy of the secret.
    pub async fn set_webhook_secret(
        &self,
        app: &AppName,
        provider: crate::WebhookProvider,
        req: &crate::SetWebhookSecret,
    ) -> Result<crate::CreatedWebhookSecret, ClientError> {
        self.post(
            &format!("/api/v1/apps/{app}/webhook-secrets/{provider}"),
            req,
        )
        .await
    }

    /// The providers the app takes webhooks from (never the secrets).
    pub async fn webhook_secrets(
        &self,
        app: &AppName,
    ) -> Result<Vec<crate::WebhookSecretInfo>, ClientError> {
        self.get(&format!("/api/v1/apps/{app}/webhook-secrets"))
            .await
    }

    /// Stops taking the app's webhooks from `provider`: its secrets, the
    /// current and any previous one, stop working at once.
    pub async fn delete_webhook_secret(
        &self,
        app: &AppName,
        provider: crate::WebhookProvider,
    ) -> Result<(), ClientError> {
        let _: serde_json::Value = self
            .send(
                self.http
                    .delete(self.url(&format!("/api/v1/apps/{app}/webhook-secrets/{provider}"))),
            )
            .await?;
        Ok(())
    }
}
