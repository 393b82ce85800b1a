//! The client's calls about builds: people asking for and marking them,
//! packer workers claiming, logging, uploading and reporting them.

use std::time::Duration;

use super::{Client, ClientError};
use crate::api::{
    Build, BuildJob, BuildResult, BuildWorker, ClaimBuild, Page, PageQuery, RequestBuild,
};
use crate::{AppName, BuildId};

impl Client {
    pub async fn request_build(
        &self,
        app: &AppName,
        req: &RequestBuild,
    ) -> Result<Build, ClientError> {
        self.post(&format!("/api/v1/apps/{app}/builds"), req).await
    }

    /// The app's newest builds (a page of 100), newest first, without logs;
    /// [`Client::page`] reaches older ones.
    pub async fn builds(&self, app: &AppName) -> Result<Vec<Build>, ClientError> {
        let page: Page<Build> = self
            .page(&format!("/api/v1/apps/{app}/builds"), &PageQuery::default())
            .await?;
        Ok(page.items)
    }

    /// The `limit` newest builds of every app (of `app` alone when given),
    /// newest first, without logs.
    pub async fn recent_builds(
        &self,
        app: Option<&AppName>,
        limit: u32,
    ) -> Result<Vec<Build>, ClientError> {
        let query = crate::api::BuildQuery {
            limit: Some(limit.clamp(1, crate::api::MAX_PAGE_LIMIT)),
            cursor: None,
            app: app.cloned(),
        };
        Ok(self.page("/api/v1/builds", &query).await?.items)
    }

    /// One build, with its log.
    pub async fn build(&self, id: BuildId) -> Result<Build, ClientError> {
        self.get(&format!("/api/v1/builds/{id}")).await
    }

    /// The piece of a build's log from byte offset `from` (0 first, then
    /// each answer's `next`), to follow it while it runs, until `done`. An
    /// answer whose `from` is not the one asked for says the log started
    /// over (see [`crate::BuildLog`]).
    pub async fn build_log_from(
        &self,
        id: BuildId,
        from: u64,
    ) -> Result<crate::BuildLog, ClientError> {
        self.send(
            self.http
                .get(self.url(&format!("/api/v1/builds/{id}/log")))
                .query(&crate::BuildLogQuery { from }),
        )
        .await
    }

    /// Marks an ended build bad (admin): it is never reused, and deploys of
    /// its version are refused.
    pub async fn mark_build_bad(&self, id: BuildId, reason: &str) -> Result<Build, ClientError> {
        self.post(
            &format!("/api/v1/builds/{id}/bad"),
            &crate::api::MarkBuildBad {
                reason: reason.to_string(),
            },
        )
        .await
    }

    /// A packer worker claims the oldest queued build, if any.
    pub async fn claim_build(&self, worker: &str) -> Result<Option<BuildJob>, ClientError> {
        self.post(
            "/api/v1/builds/claim",
            &ClaimBuild {
                worker: worker.to_string(),
                roots: true,
            },
        )
        .await
    }

    /// Extends a worker's claim on a build; an error `conflict` means the
    /// claim was lost and the build must be abandoned.
    pub async fn renew_build_lease(&self, id: BuildId, worker: &str) -> Result<(), ClientError> {
        let _: serde_json::Value = self
            .post(
                &format!("/api/v1/builds/{id}/lease"),
                &BuildWorker {
                    worker: worker.to_string(),
                },
            )
            .await?;
        Ok(())
    }

    /// Appends to a running build's log (the worker holding it).
    pub async fn append_build_log(
        &self,
        id: BuildId,
        chunk: &crate::api::BuildLogChunk,
    ) -> Result<(), ClientError> {
        let _: serde_json::Value = self
            .post(&format!("/api/v1/builds/{id}/log"), chunk)
            .await?;
        Ok(())
    }

    /// Hands a claimed build back to the queue (a worker shutting down).
    pub async fn release_build(&self, id: BuildId, worker: &str) -> Result<(), ClientError> {
        let _: serde_json::Value = self
            .post(
                &format!("/api/v1/builds/{id}/release"),
                &BuildWorker {
                    worker: worker.to_string(),
                },
            )
            .await?;
        Ok(())
    }

    /// Streams a built artifact to AppTracker, which checks its sha256 and
    /// stores it with its signature (header `x-slipway-signature`).
    pub async fn upload_artifact(
        &self,
        id: BuildId,
        worker: &str,
        path: &std::path::Path,
        sha256: &crate::Sha256,
        signature: &crate::signing::Signature,
    ) -> Result<(), ClientError> {
        let url = self.url(&format!("/api/v1/builds/{id}/artifact"));
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|e| ClientError::Decode {
                url: url.clone(),
                reason: format!("cannot open {}: {e}", path.display()),
            })?;
        let len = file.metadata().await.map(|m| m.len()).unwrap_or(0);
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(file));
        let req = self
            .http
            .put(&url)
            .query(&[("worker", worker)])
            .header("x-slipway-sha256", sha256.as_str())
            .header("x-slipway-signature", signature.to_string())
            .header(reqwest::header::CONTENT_LENGTH, len)
            .body(body);
        let _: serde_json::Value = self.send_within(req, Duration::from_secs(3600)).await?;
        Ok(())
    }

    /// Uploads a build's file index (before its artifact), which
    /// AppTracker checks (sha256, size, shape) and stores with its
    /// signature (header `x-slipway-signature`, made by
    /// `SigningKey::sign_index`).
    pub async fn upload_index(
        &self,
        id: BuildId,
        worker: &str,
        path: &std::path::Path,
        sha256: &crate::Sha256,
        signature: &crate::signing::Signature,
    ) -> Result<(), ClientError> {
        let url = self.url(&format!("/api/v1/builds/{id}/index"));
        let bytes = tokio::fs::read(path)
            .await
            .map_err(|e| ClientError::Decode {
                url: url.clone(),
                reason: format!("cannot read {}: {e}", path.display()),
            })?;
        let req = self
            .http
            .put(&url)
            .query(&[("worker", worker)])
            .header("x-slipway-sha256", sha256.as_str())
            .header("x-slipway-signature", signature.to_string())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(bytes);
        let _: serde_json::Value = self.send_within(req, Duration::from_secs(600)).await?;
        Ok(())
    }

    /// Reports how a claimed build ended.
    pub async fn report_build(
        &self,
        id: BuildId,
        result: &BuildResult,
    ) -> Result<Build, ClientError> {
        self.post(&format!("/api/v1/builds/{id}/result"), result)
            .await
    }
}
