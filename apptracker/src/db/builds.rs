//! Builds: the build queue's rows (insert, claim, lease, log, upload, finish,
//! requeue) and bad marks.

use super::*;

impl Db {
    /// Queues a build of `commit`, numbering it and naming its version.
    pub async fn insert_build(
        &self,
        app: &AppName,
        git_ref: &str,
        commit: &str,
    ) -> anyhow::Result<StoredBuild> {
        let mut tx = self.pool.begin().await?;
        let number: i64 = sqlx::query(
            "UPDATE apps SET next_build_number = next_build_number + 1 WHERE name = $1 RETURNING next_build_number - 1",
        )
        .bind(app.as_str())
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
        let version = Version::for_build(number, commit)?;
        let now = Timestamp::now();
        let id: i64 = sqlx::query(
            "INSERT INTO builds (app, number, git_ref, commit_sha, version, status, created_at) \
             VALUES ($1, $2, $3, $4, $5, 'queued', $6) RETURNING id",
        )
        .bind(app.as_str())
        .bind(number)
        .bind(git_ref)
        .bind(commit)
        .bind(version.as_str())
        .bind(now.0)
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
        tx.commit().await?;
        self.build(BuildId(id))
            .await?
            .context("build vanished right after insert")
    }

    pub async fn build(&self, id: BuildId) -> sqlx::Result<Option<StoredBuild>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            build_columns!(),
            ", log FROM builds WHERE id = $1"
        ))
        .bind(id.0)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(|r| build_from_row(r, true)).transpose()
    }

    /// A page of builds newest first (the app's alone when given): up to
    /// `limit` older than `before`.
    pub async fn builds(
        &self,
        app: Option<&AppName>,
        before: Option<i64>,
        limit: i64,
    ) -> sqlx::Result<Vec<StoredBuild>> {
        let q = match app {
            Some(app) => sqlx::query(concat!(
                "SELECT ",
                build_columns!(),
                " FROM builds WHERE app = $1 AND id < $2 ORDER BY id DESC LIMIT $3"
            ))
            .bind(app.as_str()),
            None => sqlx::query(concat!(
                "SELECT ",
                build_columns!(),
                " FROM builds WHERE id < $1 ORDER BY id DESC LIMIT $2"
            )),
        };
        let rows = q
            .bind(before.unwrap_or(i64::MAX))
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| build_from_row(r, false)).collect()
    }

    /// The newest build of `commit` that succeeded or may still succeed.
    /// A build from before artifacts were signed is not reused: grabbers
    /// would refuse it, so the commit is built (and signed) again; nor is
    /// one an admin marked bad.
    pub async fn reusable_build(
        &self,
        app: &AppName,
        commit: &str,
    ) -> sqlx::Result<Option<StoredBuild>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            build_columns!(),
            " FROM builds WHERE app = $1 AND commit_sha = $2 \
             AND (status IN ('queued', 'running') OR (status = 'succeeded' AND signature IS NOT NULL)) \
             AND bad_at IS NULL ORDER BY id DESC LIMIT 1"
        ))
        .bind(app.as_str())
        .bind(commit)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(|r| build_from_row(r, false)).transpose()
    }

    /// The `[build] watch` patterns of the app's newest successful build,
    /// as stored (a JSON array): `None` when no build succeeded, `Some(None)`
    /// when that build did not say (an older worker).
    pub async fn latest_watch(&self, app: &AppName) -> sqlx::Result<Option<Option<String>>> {
        let row = sqlx::query(
            "SELECT watch FROM builds WHERE app = $1 AND status = 'succeeded' AND bad_at IS NULL \
             ORDER BY id DESC LIMIT 1",
        )
        .bind(app.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| r.try_get::<Option<String>, _>("watch"))
            .transpose()
    }

    pub async fn build_by_version(
        &self,
        app: &AppName,
        version: &Version,
    ) -> sqlx::Result<Option<StoredBuild>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            build_columns!(),
            " FROM builds WHERE app = $1 AND version = $2"
        ))
        .bind(app.as_str())
        .bind(version.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(|r| build_from_row(r, false)).transpose()
    }

    /// Claims the oldest queued build for `holder` until `lease_until`.
    /// Safe when several workers race: the `status = 'queued'` guard lets
    /// exactly one of them win. What an earlier holder uploaded is
    /// forgotten, and its log starts over (past the old one's offsets).
    /// Without `roots` (an older worker), only builds of apps without a
    /// root are handed out. Returns the build, the app's `git_url` and its
    /// root.
    pub async fn claim_build(
        &self,
        holder: &Holder,
        lease_until: Timestamp,
        roots: bool,
    ) -> sqlx::Result<Option<(StoredBuild, String, Option<String>)>> {
        let row = sqlx::query(concat!(
            "UPDATE builds SET status = 'running', started_at = $1, worker = $2, holder = $3, lease_until = $4, \
             log = '', log_base = CASE WHEN log = '' THEN log_base ELSE log_base + octet_length(log) + 1 END, \
             signature = NULL, upload_sha256 = NULL, upload_size = NULL, \
             index_sha256 = NULL, index_size = NULL, index_signature = NULL \
             WHERE id = (SELECT id FROM builds WHERE status = 'queued' \
             AND ($5 = 1 OR app IN (SELECT name FROM apps WHERE root IS NULL)) ORDER BY id LIMIT 1) \
             AND status = 'queued' \
             RETURNING ",
            build_columns!(),
            ", (SELECT git_url FROM apps WHERE apps.name = builds.app) AS git_url, \
             (SELECT root FROM apps WHERE apps.name = builds.app) AS app_root"
        ))
        .bind(Timestamp::now().0)
        .bind(holder.worker())
        .bind(holder.key())
        .bind(lease_until.0)
        .bind(i64::from(roots))
        .fetch_optional(&self.pool)
        .await?;
        match row {
            None => Ok(None),
            Some(r) => Ok(Some((
                build_from_row(&r, false)?,
                r.try_get("git_url")?,
                r.try_get("app_root")?,
            ))),
        }
    }

    /// Appends to the log of a running build `holder` holds, while the log
    /// is under `cap` bytes (the final result carries the whole log); false
    /// when the build is not (or no longer) its own.
    pub async fn append_build_log(
        &self,
        id: BuildId,
        holder: &Holder,
        text: &str,
        cap: i64,
    ) -> sqlx::Result<bool> {
        let res = sqlx::query(
            "UPDATE builds SET log = CASE WHEN length(log) < $5 THEN log || $4 ELSE log END \
             WHERE id = $1 AND holder = $2 AND worker = $3 AND status = 'running'",
        )
        .bind(id.0)
        .bind(holder.key())
        .bind(holder.worker())
        .bind(text)
        .bind(cap)
        .execute(&self.pool)
        .await?;
        Ok(res.rows_affected() == 1)
    }

    /// A piece of a build's log for someone following it: at most `max`
    /// bytes from offset `from` (see `deploy::BuildLog`), or `None` when
    /// there is no such build. Only the piece leaves the database.
    pub async fn build_log_piece(
        &self,
        id: BuildId,
        from: u64,
        max: usize,
    ) -> sqlx::Result<Option<LogPiece>> {
        // A text's bytes: SQLite reads them through a BLOB cast, PostgreSQL
        // (whose text-to-bytea cast would read backslashes as escapes)
        // through `convert_to`. The start is clamped into the log, so no
        // offset a client sends can overflow the cast.
        let sql = if self.sqlite {
            "SELECT status, log_base, octet_length(log) AS len, \
             substr(CAST(log AS BLOB), max(min($2 - log_base, octet_length(log)), 0) + 1, $3) AS piece \
             FROM builds WHERE id = $1"
        } else {
            "SELECT status, log_base, CAST(octet_length(log) AS BIGINT) AS len, \
             substring(convert_to(log, 'UTF8') \
               FROM CAST(GREATEST(LEAST($2 - log_base, octet_length(log)), 0) AS INTEGER) + 1 \
               FOR CAST($3 AS INTEGER)) AS piece \
             FROM builds WHERE id = $1"
        };
        let row = sqlx::query(sql)
            .bind(id.0)
            .bind(i64::try_from(from).unwrap_or(i64::MAX))
            .bind(
                i64::try_from(max)
                    .unwrap_or(i64::MAX)
                    .min(i64::from(i32::MAX)),
            )
            .fetch_optional(&self.pool)
            .await?;
        let Some(r) = row else { return Ok(None) };
        Ok(Some(LogPiece {
            status: build_status(&r.try_get::<String, _>("status")?)?,
            base: decode(u64::try_from(r.try_get::<i64, _>("log_base")?))?,
            len: decode(u64::try_from(r.try_get::<i64, _>("len")?))?,
            // SQLite's `substr` of an empty BLOB is NULL.
            piece: r
                .try_get::<Option<Vec<u8>>, _>("piece")?
                .unwrap_or_default(),
        }))
    }

    /// Extends `holder`'s lease on a running build; false when the build is
    /// not (or no longer) its own: the lease ran out and someone else took
    /// it, or another token holds it.
    pub async fn renew_lease(
        &self,
        id: BuildId,
        holder: &Holder,
        lease_until: Timestamp,
    ) -> sqlx::Result<bool> {
        let res = sqlx::query(
            "UPDATE builds SET lease_until = $4 \
             WHERE id = $1 AND holder = $2 AND worker = $3 AND status = 'running'",
        )
        .bind(id.0)
        .bind(holder.key())
        .bind(holder.worker())
        .bind(lease_until.0)
        .execute(&self.pool)
        .await?;
        Ok(res.rows_affected() == 1)
    }

    /// Commits what `holder` uploaded for a running build it holds:
    /// records it (an artifact's signature and the sha256 and size
    /// AppTracker measured, or an index's) and runs `place` (which moves
    /// the staged bytes under the build's key) in one transaction. The
    /// record's write comes first and holds the build's row (PostgreSQL's
    /// row lock; SQLite's one writer) until `place` is done, so no other
    /// holder can claim the build and commit meanwhile: the bytes under
    /// the key and the recorded sha256 are always the same holder's.
    /// False, with `place` never run, when `holder` no longer holds the
    /// build; an error of `place` rolls the record back. A new claim
    /// clears what was recorded, so a result is only accepted after an
    /// upload.
    pub async fn commit_upload(
        &self,
        id: BuildId,
        holder: &Holder,
        what: Uploaded<'_>,
        place: impl std::future::Future<Output = anyhow::Result<()>>,
    ) -> anyhow::Result<bool> {
        let (sql, signature, sha256, size) = match what {
            Uploaded::Artifact(u) => (
                "UPDATE builds SET signature = $4, upload_sha256 = $5, upload_size = $6 \
                 WHERE id = $1 AND holder = $2 AND worker = $3 AND status = 'running'",
                u.signature.to_string(),
                &u.sha256,
                u.size,
            ),
            Uploaded::Index(i) => (
                "UPDATE builds SET index_signature = $4, index_sha256 = $5, index_size = $6 \
                 WHERE id = $1 AND holder = $2 AND worker = $3 AND status = 'running'",
                i.signature.to_string(),
                &i.sha256,
                i.size,
            ),
        };
        let mut tx = self.pool.begin().await?;
        let held = sqlx::query(sql)
            .bind(id.0)
            .bind(holder.key())
            .bind(holder.worker())
            .bind(signature)
            .bind(sha256.as_str())
            .bind(i64::try_from(size).unwrap_or(i64::MAX))
            .execute(&mut *tx)
            .await?
            .rows_affected()
            == 1;
        if !held {
            tx.rollback().await?;
            return Ok(false);
        }
        // Dropped on error: the transaction rolls back.
        place.await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Forgets a running build's file index (its artifact's files could
    /// not all be stored as blobs): the build presents none.
    pub async fn clear_index(&self, id: BuildId, holder: &Holder) -> sqlx::Result<bool> {
        let res = sqlx::query(
            "UPDATE builds SET index_signature = NULL, index_sha256 = NULL, index_size = NULL \
             WHERE id = $1 AND holder = $2 AND worker = $3 AND status = 'running'",
        )
        .bind(id.0)
        .bind(holder.key())
        .bind(holder.worker())
        .execute(&self.pool)
        .await?;
        Ok(res.rows_affected() == 1)
    }

    /// What was recorded with a build's artifact (see `record_upload`), if
    /// anything: (signature, measured sha256, measured size).
    pub async fn build_upload(
        &self,
        id: BuildId,
    ) -> sqlx::Result<Option<(String, Option<Sha256>, Option<u64>)>> {
        let row =
            sqlx::query("SELECT signature, upload_sha256, upload_size FROM builds WHERE id = $1")
                .bind(id.0)
                .fetch_optional(&self.pool)
                .await?;
        let Some(r) = row else { return Ok(None) };
        let Some(signature) = r.try_get::<Option<String>, _>("signature")? else {
            return Ok(None);
        };
        let sha = r
            .try_get::<Option<String>, _>("upload_sha256")?
            .map(|s| decode(Sha256::parse(s)))
            .transpose()?;
        let size = r
            .try_get::<Option<i64>, _>("upload_size")?
            .map(|n| n as u64);
        Ok(Some((signature, sha, size)))
    }

    /// Records a successful build `holder` holds; false when it no longer
    /// holds it. Its log replaces the streamed one; when it does not
    /// continue it, the log starts over (`log_base`, see
    /// [`Db::build_log_piece`]).
    pub async fn finish_build_ok(
        &self,
        id: BuildId,
        holder: &Holder,
        done: &FinishedBuild<'_>,
    ) -> sqlx::Result<bool> {
        let res = sqlx::query(
            "UPDATE builds SET status = 'succeeded', build_type = $4, artifact_key = $5, sha256 = $6, \
             size = $7, log = $8, log_base = CASE WHEN substr($8, 1, length(log)) = log \
             THEN log_base ELSE log_base + octet_length(log) + 1 END, finished_at = $9, signature = $10, lease_until = NULL, \
             release_timeout_ms = $11, author = $12, message = $13, watch = $14 \
             WHERE id = $1 AND holder = $2 AND worker = $3 AND status = 'running'",
        )
        .bind(id.0)
        .bind(holder.key())
        .bind(holder.worker())
        .bind(done.build_type.as_str())
        .bind(done.artifact.key.as_str())
        .bind(done.artifact.sha256.as_str())
        .bind(done.artifact.size as i64)
        .bind(done.log)
        .bind(Timestamp::now().0)
        .bind(&done.artifact.signature)
        .bind(
            done.release_timeout_ms
                .map(|ms| i64::try_from(ms).unwrap_or(i64::MAX)),
        )
        .bind(done.author)
        .bind(done.message)
        .bind(
            done.watch
                .map(|w| serde_json::to_string(w).unwrap_or_else(|_| "[]".into())),
        )
        .execute(&self.pool)
        .await?;
        Ok(res.rows_affected() == 1)
    }

    /// Records a failed build `holder` holds; false when it no longer holds
    /// it. Its log replaces the streamed one, as for a success.
    pub async fn finish_build_failed(
        &self,
        id: BuildId,
        holder: &Holder,
        error: &str,
        log: &str,
    ) -> sqlx::Result<bool> {
        let res = sqlx::query(
            "UPDATE builds SET status = 'failed', error = $4, log = $5, log_base = CASE WHEN substr($5, 1, length(log)) = log \
             THEN log_base ELSE log_base + octet_length(log) + 1 END, finished_at = $6, lease_until = NULL \
             WHERE id = $1 AND holder = $2 AND worker = $3 AND status = 'running'",
        )
        .bind(id.0)
        .bind(holder.key())
        .bind(holder.worker())
        .bind(error)
        .bind(log)
        .bind(Timestamp::now().0)
        .execute(&self.pool)
        .await?;
        Ok(res.rows_affected() == 1)
    }

    /// Puts a build `holder` holds back in the queue (its worker handed it
    /// back); this does not count as a requeue.
    pub async fn requeue_build(&self, id: BuildId, holder: &Holder) -> sqlx::Result<bool> {
        let res = sqlx::query(
            "UPDATE builds SET status = 'queued', worker = NULL, holder = NULL, lease_until = NULL \
             WHERE id = $1 AND holder = $2 AND worker = $3 AND status = 'running'",
        )
        .bind(id.0)
        .bind(holder.key())
        .bind(holder.worker())
        .execute(&self.pool)
        .await?;
        Ok(res.rows_affected() == 1)
    }

    /// Builds whose worker stopped renewing its lease: those already
    /// requeued `max_requeues` times fail with `error` (their ids are
    /// returned, to fail the deploys waiting on them); the others go back
    /// to the queue (how many is returned).
    pub async fn requeue_expired_leases(
        &self,
        now: Timestamp,
        max_requeues: u32,
        error: &str,
    ) -> sqlx::Result<(u64, Vec<BuildId>)> {
        let failed = sqlx::query(
            "UPDATE builds SET status = 'failed', error = $3, finished_at = $1, lease_until = NULL \
             WHERE status = 'running' AND (lease_until IS NULL OR lease_until < $1) AND requeues >= $2 \
             RETURNING id",
        )
        .bind(now.0)
        .bind(i64::from(max_requeues))
        .bind(error)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| r.try_get::<i64, _>(0).map(BuildId))
        .collect::<sqlx::Result<Vec<_>>>()?;
        let res = sqlx::query(
            "UPDATE builds SET status = 'queued', worker = NULL, holder = NULL, lease_until = NULL, \
             requeues = requeues + 1 \
             WHERE status = 'running' AND (lease_until IS NULL OR lease_until < $1)",
        )
        .bind(now.0)
        .execute(&self.pool)
        .await?;
        Ok((res.rows_affected(), failed))
    }

    /// Marks an ended build bad (never reused, never deployed again);
    /// false when it is not ended, or was marked already.
    pub async fn mark_build_bad(&self, id: BuildId, by: &str, reason: &str) -> sqlx::Result<bool> {
        let res = sqlx::query(
            "UPDATE builds SET bad_at = $2, bad_by = $3, bad_reason = $4 \
             WHERE id = $1 AND status IN ('succeeded', 'failed') AND bad_at IS NULL",
        )
        .bind(id.0)
        .bind(Timestamp::now().0)
        .bind(by)
        .bind(reason)
        .execute(&self.pool)
        .await?;
        Ok(res.rows_affected() == 1)
    }
}

/// A piece of a build's log as stored (see [`Db::build_log_piece`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogPiece {
    pub status: BuildStatus,
    /// The offset the stored log starts at.
    pub base: u64,
    /// The stored log's length in bytes.
    pub len: u64,
    /// Its bytes from `max(from, base)`, at most as many as asked (a
    /// character may be cut at either end).
    pub piece: Vec<u8>,
}

/// What a successful build records (see [`Db::finish_build_ok`]).
#[derive(Debug, Clone, Copy)]
pub struct FinishedBuild<'a> {
    pub build_type: BuildType,
    pub artifact: &'a StoredArtifact,
    pub release_timeout_ms: Option<u64>,
    /// The commit's author and the first line of its message, as the
    /// worker read them.
    pub author: Option<&'a str>,
    pub message: Option<&'a str>,
    /// `[build] watch` of the built `slipway.toml` (`None`: an older
    /// worker, unknown).
    pub watch: Option<&'a [String]>,
    pub log: &'a str,
}

/// What an upload records on its build ([`Db::commit_upload`]).
#[derive(Debug, Clone, Copy)]
pub enum Uploaded<'a> {
    Artifact(&'a Upload),
    Index(&'a IndexUpload),
}
