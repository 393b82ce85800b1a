//! The build queue: builds are jobs in the database that any number of
//! workers (the in-process builder, `packer worker` processes) claim under a
//! lease they renew while they work. A worker that dies stops renewing; the
//! sweeper puts its build back in the queue when the lease runs out, and
//! fails it once it has gone back `max_build_requeues` times.
//!
//! A lease belongs to whoever claimed it ([`Holder`]): the token a worker
//! authenticated with (its `worker` name is for display, and to tell apart
//! processes sharing a token), or the in-process builder, which no HTTP
//! caller can impersonate. The artifact's sha256 and size are the ones
//! measured here while it streams in; a result must agree with them.
//!
//! A build's file index comes before its artifact (`index.rs`); a received
//! artifact is split into its files, stored as blobs (`blobs.rs`). A build
//! presents an index only when both happened.

use anyhow::Context;
use deploy::signing::Signature;
use deploy::{Build, BuildId, BuildJob, BuildOutcome, ErrorCode, Sha256, Timestamp};
use sha2::Digest;
use tokio::io::AsyncWriteExt;

use crate::db::Uploaded;
use crate::model::{ArtifactKey, Principal, StoredArtifact, StoredBuild};
pub use crate::model::{Holder, Upload};
use crate::store::{artifact_key, staging_key};
use crate::tracker::{Error, Tracker};

mod blobs;
mod index;
#[cfg(test)]
mod tests;

/// How much of a running build's log is kept as it streams in; the result
/// replaces it with the whole log (itself bounded by the result's body
/// limit, `deploy::BUILD_RESULT_BODY_LIMIT`).
const STREAMED_LOG_CAP: i64 = 4 << 20;

impl Holder {
    /// A worker that authenticated as `p` and calls itself `worker`.
    pub fn token(p: &Principal, worker: &str) -> Result<Self, Error> {
        check_worker(worker)?;
        Ok(Self {
            key: format!("token:{}", p.id),
            worker: worker.to_string(),
            token: Some(p.name.clone()),
        })
    }
}

impl Tracker {
    fn lease_until(&self) -> Timestamp {
        Timestamp(Timestamp::now().0 + self.config().build_lease.as_millis() as i64)
    }

    /// Claims the oldest queued build for `holder`.
    pub async fn claim_build(
        &self,
        holder: &Holder,
        roots: bool,
    ) -> Result<Option<BuildJob>, Error> {
        let claimed = self
            .db()
            .claim_build(holder, self.lease_until(), roots)
            .await?;
        let Some((build, git_url, root)) = claimed else {
            return Ok(None);
        };
        tracing::info!(build_id = %build.id, app = %build.app, worker = holder.worker(),
            holder = holder.key(), "build claimed");
        Ok(Some(BuildJob {
            build: self.present_build(build).await?,
            git_url,
            root,
            lease_ms: self.config().build_lease.as_millis() as u64,
        }))
    }

    /// Extends `holder`'s lease; a conflict when the build is not its own.
    pub async fn renew_build_lease(&self, id: BuildId, holder: &Holder) -> Result<(), Error> {
        if self
            .db()
            .renew_lease(id, holder, self.lease_until())
            .await?
        {
            Ok(())
        } else {
            Err(lost(id, holder))
        }
    }

    /// Appends what a running build printed to its log, so the API shows
    /// the build as it goes; a conflict when the build is not `holder`'s.
    pub async fn append_build_log(
        &self,
        id: BuildId,
        holder: &Holder,
        text: &str,
    ) -> Result<(), Error> {
        if self
            .db()
            .append_build_log(id, holder, text, STREAMED_LOG_CAP)
            .await?
        {
            Ok(())
        } else {
            Err(lost(id, holder))
        }
    }

    /// A worker hands a build back (it is shutting down).
    pub async fn release_build(&self, id: BuildId, holder: &Holder) -> Result<(), Error> {
        if self.db().requeue_build(id, holder).await? {
            tracing::info!(build_id = %id, worker = holder.worker(), "build handed back");
            self.build_queued().notify_one();
            Ok(())
        } else {
            Err(lost(id, holder))
        }
    }

    /// Streams an uploaded artifact into a temporary file, measuring its
    /// sha256 and size (and checking the sha256 the worker announced), then
    /// stores it and records its signature with the measured values.
    /// Whether the signature comes from a trusted key is the grabbers'
    /// decision: they are configured with the keys, AppTracker is not a
    /// trust source. The build counts only once the result comes.
    ///
    /// Bounded: a declared or streamed size over `max_artifact_size` is
    /// `413`, a body that sends nothing for `upload_idle_timeout` is `408`,
    /// and nothing partial is kept (the temporary file goes with every
    /// error, a dropped connection included).
    pub async fn receive_artifact<E: std::fmt::Display>(
        &self,
        id: BuildId,
        holder: &Holder,
        announced: &Sha256,
        signature: &Signature,
        declared_len: Option<u64>,
        mut body: impl futures::Stream<Item = Result<bytes::Bytes, E>> + Unpin,
    ) -> Result<Upload, Error> {
        use futures::StreamExt;
        // Nothing is read for a build that is not the caller's.
        let build = self.held_build(id, holder).await?;
        let max = self.config().max_artifact_size.0;
        let too_large = |got: u64| {
            Error::TooLarge(format!(
                "the artifact of build {id} is over max_artifact_size ({max} bytes): {got} bytes \
                 {}; nothing was kept",
                if declared_len.is_some_and(|n| n == got) {
                    "declared"
                } else {
                    "received so far"
                }
            ))
        };
        if let Some(len) = declared_len
            && len > max
        {
            return Err(too_large(len));
        }
        let tmp_dir = self.config().data_dir.join("tmp");
        tokio::fs::create_dir_all(&tmp_dir)
            .await
            .with_context(|| format!("cannot create {}", tmp_dir.display()))?;
        // Removed when dropped: on every error, and when the client goes
        // away mid-upload (the handler's future is dropped).
        let tmp = tempfile::Builder::new()
            .prefix("upload-")
            .tempfile_in(&tmp_dir)
            .context("cannot make a temp file")?;
        let mut file = tokio::fs::File::from_std(
            tmp.as_file()
                .try_clone()
                .context("cannot write the upload")?,
        );
        let idle = self.config().upload_idle_timeout;
        let mut hasher = sha2::Sha256::new();
        let mut size: u64 = 0;
        loop {
            let next = tokio::time::timeout(idle, body.next()).await.map_err(|_| {
                Error::Timeout(format!(
                    "the upload of build {id}'s artifact sent nothing for {} (upload_idle_timeout) \
                     after {size} bytes; nothing was kept",
                    humantime::format_duration(idle)
                ))
            })?;
            let Some(chunk) = next else { break };
            let chunk = chunk.map_err(|e| Error::Invalid(format!("the upload broke off: {e}")))?;
            size += chunk.len() as u64;
            if size > max {
                tracing::warn!(build_id = %id, worker = holder.worker(), size, max,
                    "artifact upload over max_artifact_size cut off");
                return Err(too_large(size));
            }
            hasher.update(&chunk);
            file.write_all(&chunk)
                .await
                .context("cannot write the upload")?;
        }
        file.flush().await.context("cannot write the upload")?;
        drop(file);
        let sha = Sha256::parse(hex::encode(hasher.finalize()))
            .context("a sha256 digest is 64 hex digits")?;
        if &sha != announced {
            return Err(Error::Invalid(format!(
                "the uploaded artifact's sha256 is {sha}, not the announced {announced}; nothing was kept"
            )));
        }
        // The lease may have run out while the bytes came: nothing is
        // stored for a holder that lost it.
        self.renew_build_lease(id, holder).await?;
        self.split_artifact(id, holder, &build.app, tmp.path())
            .await?;
        let key = artifact_key(&build.app, &build.version);
        let upload = Upload {
            signature: signature.clone(),
            sha256: sha,
            size,
        };
        self.commit_upload(id, holder, &key, tmp.path(), Uploaded::Artifact(&upload))
            .await?;
        tracing::info!(build_id = %id, %key, sha256 = %upload.sha256, size, "artifact stored");
        Ok(upload)
    }

    /// Stores `file` under `key` for `holder`'s build `id` and records
    /// `what`, so that only the build's current holder's bytes ever land
    /// there: they go to a staging key of their own first (however long
    /// that takes, under no lock), then move under `key` inside the
    /// database transaction that checks the lease and records them
    /// (`Db::commit_upload`). A holder whose lease ran out meanwhile (the
    /// build was claimed again) gets a conflict, and its staged bytes go.
    pub(crate) async fn commit_upload(
        &self,
        id: BuildId,
        holder: &Holder,
        key: &str,
        file: &std::path::Path,
        what: Uploaded<'_>,
    ) -> Result<(), Error> {
        let staged = staging_key(key)?;
        if let Err(e) = self.store().put(&staged, file).await {
            self.discard(&staged).await;
            return Err(e.into());
        }
        let committed = self
            .db()
            .commit_upload(id, holder, what, self.store().promote(&staged, key))
            .await;
        match committed {
            Ok(true) => Ok(()),
            Ok(false) => {
                self.discard(&staged).await;
                tracing::warn!(build_id = %id, worker = holder.worker(), %key,
                    "upload not kept: its lease ran out while it was stored");
                Err(lost(id, holder))
            }
            Err(e) => {
                self.discard(&staged).await;
                Err(e.into())
            }
        }
    }

    /// Removes a staged upload that was not kept; a failure is logged.
    async fn discard(&self, staged: &str) {
        if let Err(e) = self.store().remove(staged).await {
            tracing::warn!(key = %staged, error = format!("{e:#}"), "cannot remove a staged upload");
        }
    }

    /// Records how a build ended and starts (or fails) the deploys waiting
    /// on it. A success must name the sha256 and size measured when its
    /// artifact was received; the build records those.
    pub async fn finish_build(
        &self,
        id: BuildId,
        holder: &Holder,
        outcome: &BuildOutcome,
        log: &str,
    ) -> Result<Build, Error> {
        let build = self.held_build(id, holder).await?;
        let recorded = match outcome {
            BuildOutcome::Succeeded {
                build_type,
                sha256,
                size,
                release_timeout_ms,
                author,
                message,
                watch,
            } => {
                // Recorded with the upload (or the in-process build); a
                // claim clears it, so this also proves the artifact came.
                let Some((signature, Some(measured_sha), Some(measured_size))) =
                    self.db().build_upload(id).await?
                else {
                    return Err(Error::Invalid(format!(
                        "build {id} has no signed artifact: upload it (with its signature) before reporting success"
                    )));
                };
                if *sha256 != measured_sha || *size != measured_size {
                    return Err(Error::refused(
                        ErrorCode::ArtifactMismatch,
                        format!(
                            "build {id}'s result claims sha256 {sha256} and {size} bytes, but the \
                             uploaded artifact measured sha256 {measured_sha} and {measured_size} \
                             bytes: report what was uploaded, or upload again"
                        ),
                    ));
                }
                let artifact = StoredArtifact {
                    key: ArtifactKey::new(artifact_key(&build.app, &build.version)),
                    sha256: measured_sha,
                    size: measured_size,
                    signature,
                    // Recorded with its upload; `finish_build_ok` leaves it.
                    index: None,
                };
                tracing::info!(build_id = %id, app = %build.app, sha256 = %artifact.sha256,
                    size = artifact.size, "build succeeded");
                self.db()
                    .finish_build_ok(
                        id,
                        holder,
                        &crate::db::FinishedBuild {
                            build_type: *build_type,
                            artifact: &artifact,
                            release_timeout_ms: *release_timeout_ms,
                            author: author.as_deref(),
                            message: message.as_deref(),
                            watch: watch.as_deref(),
                            log,
                        },
                    )
                    .await?
            }
            BuildOutcome::Failed { error } => {
                tracing::warn!(build_id = %id, app = %build.app, %error, "build failed");
                self.db()
                    .finish_build_failed(id, holder, error, log)
                    .await?
            }
        };
        if !recorded {
            return Err(lost(id, holder));
        }
        self.on_build_finished(id).await?;
        let done = self.db().build(id).await?;
        let done = done.ok_or_else(|| Error::NotFound(format!("no build {id}")))?;
        self.present_build(done).await
    }

    /// Puts builds whose lease ran out back in the queue, or fails them
    /// (and the deploys waiting on them) once they went back
    /// `max_build_requeues` times: a build that cannot be finished (its
    /// worker crashes on it, or cannot report it) must not loop forever.
    pub async fn requeue_expired_builds(&self) -> anyhow::Result<()> {
        let max = self.config().max_build_requeues;
        let error = format!(
            "its lease ran out {} times: the worker building it stopped renewing (it crashed, lost \
             its connection, or could not deliver the result); not requeued past \
             max_build_requeues = {max}",
            u64::from(max) + 1
        );
        let (n, failed) = self
            .db()
            .requeue_expired_leases(Timestamp::now(), max, &error)
            .await?;
        if n > 0 {
            tracing::warn!(
                builds = n,
                "requeued builds whose worker stopped renewing its lease"
            );
            self.build_queued().notify_one();
        }
        for id in failed {
            tracing::error!(build_id = %id, max_build_requeues = max,
                "build failed: its lease ran out once too often");
            self.on_build_finished(id).await?;
        }
        Ok(())
    }

    /// A running build that `holder` holds (renewing its lease proves it).
    async fn held_build(&self, id: BuildId, holder: &Holder) -> Result<StoredBuild, Error> {
        let build = self.db().build(id).await?;
        let build = build.ok_or_else(|| Error::NotFound(format!("no build {id}")))?;
        self.renew_build_lease(id, holder).await?;
        Ok(build)
    }

    /// Stores a locally built artifact under its build's key and records
    /// it (the in-process builder, holding the build as `holder`).
    pub async fn store_local_artifact(
        &self,
        build: &Build,
        holder: &Holder,
        out: &packer::BuildOutput,
    ) -> anyhow::Result<()> {
        let signature = out
            .signature
            .clone()
            .context("the in-process builder has no signing key: the artifact is not signed")?;
        let stored = self.held_build(build.id, holder).await?;
        if let Some(index) = &out.index {
            // Like a worker's upload: an index that cannot be kept costs
            // hosts bytes, not the build.
            if let Err(e) = self.store_local_index(&stored, holder, index).await {
                tracing::warn!(build_id = %build.id, error = %e,
                    "cannot keep the release's file index; hosts will download the whole artifact");
            }
        }
        self.split_artifact(build.id, holder, &build.app, &out.artifact_path)
            .await?;
        let upload = Upload {
            signature,
            sha256: out.sha256.clone(),
            size: out.size,
        };
        self.commit_upload(
            build.id,
            holder,
            &artifact_key(&build.app, &build.version),
            &out.artifact_path,
            Uploaded::Artifact(&upload),
        )
        .await?;
        Ok(())
    }
}

impl Tracker {
    /// Stores and records the index the in-process builder wrote.
    async fn store_local_index(
        &self,
        build: &StoredBuild,
        holder: &Holder,
        index: &packer::BuiltIndex,
    ) -> Result<(), Error> {
        let signature = index
            .signature
            .clone()
            .ok_or_else(|| Error::Invalid("the file index is not signed".into()))?;
        let bytes = tokio::fs::read(&index.path)
            .await
            .with_context(|| format!("cannot read {}", index.path.display()))?;
        let sha256 = Sha256::parse(hex::encode(sha2::Sha256::digest(&bytes)))
            .context("a sha256 digest is 64 hex digits")?;
        if sha256 != index.sha256 {
            return Err(Error::Invalid(format!(
                "the file index's sha256 is {sha256}, not the {} packer gave",
                index.sha256
            )));
        }
        let upload = crate::model::IndexUpload {
            signature,
            sha256,
            size: bytes.len() as u64,
        };
        self.store_index(build, holder, &bytes, &upload).await
    }
}

/// The answer when a build is not the caller's: the same whoever holds it
/// (or whether anyone does), so it tells nothing about another holder.
fn lost(id: BuildId, holder: &Holder) -> Error {
    Error::Conflict(format!(
        "build {id} is not held by {holder}: its lease ran out, it ended, or another worker \
         or token holds it"
    ))
}

fn check_worker(worker: &str) -> Result<(), Error> {
    if worker.is_empty() || worker.len() > 200 || worker.chars().any(char::is_control) {
        return Err(Error::Invalid(
            "`worker` must be 1 to 200 printable characters".into(),
        ));
    }
    Ok(())
}
