//! The build queue: builds are jobs in the database that any number of
//! workers (the in-process builder, `packer worker` processes) claim under a
//! lease they renew while they work. A worker that dies stops renewing; the
//! sweeper puts its build back in the queue when the lease runs out.

use std::path::Path;

use anyhow::Context;
use deploy::signing::Signature;
use deploy::{ArtifactRef, Build, BuildId, BuildJob, BuildOutcome, Sha256, Timestamp};
use sha2::Digest;
use tokio::io::AsyncWriteExt;

use crate::error::ApiError;
use crate::store::artifact_key;
use crate::tracker::Tracker;

/// How much of a running build's log is kept as it streams in; the result
/// replaces it with the whole log (itself bounded by the packer).
const STREAMED_LOG_CAP: i64 = 4 << 20;

impl Tracker {
    fn lease_until(&self) -> Timestamp {
        Timestamp(Timestamp::now().0 + self.config().build_lease.as_millis() as i64)
    }

    /// Claims the oldest queued build for `worker`.
    pub async fn claim_build(&self, worker: &str) -> Result<Option<BuildJob>, ApiError> {
        check_worker(worker)?;
        let claimed = self.db().claim_build(worker, self.lease_until()).await?;
        Ok(claimed.map(|(build, git_url)| {
            tracing::info!(build_id = %build.id, app = %build.app, worker, "build claimed");
            BuildJob {
                build,
                git_url,
                lease_ms: self.config().build_lease.as_millis() as u64,
            }
        }))
    }

    /// Extends `worker`'s lease; a conflict when the build is not its own.
    pub async fn renew_build_lease(&self, id: BuildId, worker: &str) -> Result<(), ApiError> {
        // Every worker's request proves its claim here: a malformed name
        // (a NUL PostgreSQL's text refuses) is a 400, not a query error.
        check_worker(worker)?;
        if self
            .db()
            .renew_lease(id, worker, self.lease_until())
            .await?
        {
            Ok(())
        } else {
            Err(lost(id, worker))
        }
    }

    /// Appends what a running build printed to its log, so the API shows
    /// the build as it goes; a conflict when the build is not `worker`'s.
    pub async fn append_build_log(
        &self,
        id: BuildId,
        worker: &str,
        text: &str,
    ) -> Result<(), ApiError> {
        if self
            .db()
            .append_build_log(id, worker, text, STREAMED_LOG_CAP)
            .await?
        {
            Ok(())
        } else {
            Err(lost(id, worker))
        }
    }

    /// A worker hands a build back (it is shutting down).
    pub async fn release_build(&self, id: BuildId, worker: &str) -> Result<(), ApiError> {
        if self.db().requeue_build(id, worker).await? {
            tracing::info!(build_id = %id, worker, "build handed back");
            self.build_queued().notify_one();
            Ok(())
        } else {
            Err(lost(id, worker))
        }
    }

    /// Streams an uploaded artifact into the store, checking it against the
    /// sha256 the worker announced, and records its signature. Whether the
    /// signature comes from a trusted key is the grabbers' decision: they
    /// are configured with the keys, AppTracker is not a trust source.
    /// The build counts only once the result comes.
    pub async fn receive_artifact(
        &self,
        id: BuildId,
        worker: &str,
        expected: &Sha256,
        signature: &Signature,
        mut body: impl futures::Stream<Item = Result<bytes::Bytes, axum::Error>> + Unpin,
    ) -> Result<(), ApiError> {
        use futures::StreamExt;
        let build = self.held_build(id, worker).await?;
        let tmp_dir = self.config().data_dir.join("tmp");
        tokio::fs::create_dir_all(&tmp_dir)
            .await
            .with_context(|| format!("cannot create {}", tmp_dir.display()))?;
        let tmp = tempfile::NamedTempFile::new_in(&tmp_dir).context("cannot make a temp file")?;
        let mut file = tokio::fs::File::create(tmp.path())
            .await
            .context("cannot write the upload")?;
        let mut hasher = sha2::Sha256::new();
        while let Some(chunk) = body.next().await {
            let chunk =
                chunk.map_err(|e| ApiError::Invalid(format!("the upload broke off: {e}")))?;
            hasher.update(&chunk);
            file.write_all(&chunk)
                .await
                .context("cannot write the upload")?;
        }
        file.flush().await.context("cannot write the upload")?;
        let got = hex::encode(hasher.finalize());
        if got != expected.as_str() {
            return Err(ApiError::Invalid(format!(
                "the uploaded artifact's sha256 is {got}, not the announced {expected}"
            )));
        }
        let key = artifact_key(&build.app, &build.version);
        self.store().put(&key, tmp.path()).await?;
        if !self.db().set_build_signature(id, worker, signature).await? {
            return Err(lost(id, worker));
        }
        tracing::info!(build_id = %id, %key, "artifact stored");
        Ok(())
    }

    /// Records how a build ended and starts (or fails) the deploys waiting
    /// on it.
    pub async fn finish_build(
        &self,
        id: BuildId,
        worker: &str,
        outcome: &BuildOutcome,
        log: &str,
    ) -> Result<Build, ApiError> {
        let build = self.held_build(id, worker).await?;
        let recorded = match outcome {
            BuildOutcome::Succeeded {
                build_type,
                sha256,
                size,
            } => {
                // Recorded with the upload (or the in-process build); a
                // claim clears it, so this also proves the artifact came.
                let Some(signature) = self.db().build_signature(id).await? else {
                    return Err(ApiError::Invalid(format!(
                        "build {id} has no signed artifact: upload it (with its signature) before reporting success"
                    )));
                };
                let artifact = ArtifactRef {
                    url: artifact_key(&build.app, &build.version),
                    sha256: sha256.clone(),
                    size: *size,
                    signature,
                };
                tracing::info!(build_id = %id, app = %build.app, %sha256, size, "build succeeded");
                self.db()
                    .finish_build_ok(id, worker, *build_type, &artifact, log)
                    .await?
            }
            BuildOutcome::Failed { error } => {
                tracing::warn!(build_id = %id, app = %build.app, %error, "build failed");
                self.db()
                    .finish_build_failed(id, worker, error, log)
                    .await?
            }
        };
        if !recorded {
            return Err(lost(id, worker));
        }
        self.on_build_finished(id).await?;
        let done = self.db().build(id).await?;
        let done = done.ok_or_else(|| ApiError::NotFound(format!("no build {id}")))?;
        self.present_build(done).await
    }

    /// Puts builds whose lease ran out back in the queue.
    pub async fn requeue_expired_builds(&self) -> anyhow::Result<()> {
        let n = self.db().requeue_expired_leases(Timestamp::now()).await?;
        if n > 0 {
            tracing::warn!(
                builds = n,
                "requeued builds whose worker stopped renewing its lease"
            );
            self.build_queued().notify_one();
        }
        Ok(())
    }

    /// A running build that `worker` holds.
    async fn held_build(&self, id: BuildId, worker: &str) -> Result<Build, ApiError> {
        let build = self.db().build(id).await?;
        let build = build.ok_or_else(|| ApiError::NotFound(format!("no build {id}")))?;
        // Renewing proves the claim is still this worker's.
        self.renew_build_lease(id, worker).await?;
        Ok(build)
    }

    /// Stores a locally built artifact under its build's key and records
    /// its signature (the in-process builder, holding the build as `worker`).
    pub async fn store_local_artifact(
        &self,
        build: &Build,
        worker: &str,
        path: &Path,
        signature: &Signature,
    ) -> anyhow::Result<()> {
        self.store()
            .put(&artifact_key(&build.app, &build.version), path)
            .await?;
        if !self
            .db()
            .set_build_signature(build.id, worker, signature)
            .await?
        {
            anyhow::bail!("{}", lost(build.id, worker));
        }
        Ok(())
    }
}

fn lost(id: BuildId, worker: &str) -> ApiError {
    ApiError::Conflict(format!(
        "build {id} is not held by worker `{worker}` (its lease ran out, or it finished)"
    ))
}

fn check_worker(worker: &str) -> Result<(), ApiError> {
    if worker.is_empty() || worker.len() > 200 || worker.chars().any(char::is_control) {
        return Err(ApiError::Invalid(
            "`worker` must be 1 to 200 printable characters".into(),
        ));
    }
    Ok(())
}
