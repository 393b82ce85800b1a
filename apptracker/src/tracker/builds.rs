//! Builds on request: resolving a ref, reusing or queueing a build of its
//! commit, marking builds bad, starting the deploys that waited on one, and
//! the pieces of a build's log its followers read.

use super::*;

impl Tracker {
    /// Resolves `git_ref` in the repository of an app that follows
    /// `branch` (the branch `HEAD` stands for) to a full commit sha.
    pub(super) async fn resolve(
        &self,
        git_url: &str,
        branch: &str,
        git_ref: &GitRef,
    ) -> Result<String, Error> {
        let (url, branch) = (git_url.to_string(), branch.to_string());
        let r = git_ref.to_string();
        let settings = self.inner.packer.clone();
        tokio::task::spawn_blocking(move || packer::resolve_ref(&settings, &url, &r, &branch))
            .await
            .context("ref resolution task panicked")?
            .map_err(|e| {
                Error::refused(
                    ErrorCode::BadRef,
                    format!("cannot resolve `{git_ref}`: {e}"),
                )
            })
    }

    /// A build of `git_ref` (the tip of the app's branch when `None`): a
    /// finished or in-flight build of the same commit is reused, never
    /// repeated. Returns the build as the API shows it and whether it is
    /// new.
    pub async fn request_build(
        &self,
        app: &AppName,
        git_ref: Option<&GitRef>,
    ) -> Result<(Build, bool), Error> {
        let (build, new) = self.build_of_ref(app, git_ref).await?;
        Ok((self.present_build(build).await?, new))
    }

    /// [`Tracker::request_build`], as stored.
    pub(crate) async fn build_of_ref(
        &self,
        app: &AppName,
        git_ref: Option<&GitRef>,
    ) -> Result<(StoredBuild, bool), Error> {
        let registered = self.app_or_404(app).await?;
        // No ref: the tip of the branch the app follows as it is now
        // (`PATCH /api/v1/apps/{app}` changes it), labelled with the
        // branch's name like a push to it.
        let branch_ref = GitRef::parse(registered.branch.as_str())?;
        let git_ref = git_ref.unwrap_or(&branch_ref);
        let commit = self
            .resolve(&registered.git_url, &registered.branch, git_ref)
            .await?;
        self.build_commit(app, git_ref.as_str(), &commit).await
    }

    /// A build of `commit` (a full sha, already known to be in the
    /// repository), labelled `label` (the ref it was asked by): reused
    /// when one exists, else queued. Returns it and whether it is new.
    pub(crate) async fn build_commit(
        &self,
        app: &AppName,
        label: &str,
        commit: &str,
    ) -> Result<(StoredBuild, bool), Error> {
        if let Some(build) = self.db().reusable_build(app, commit).await? {
            return Ok((build, false));
        }
        let build = self.db().insert_build(app, label, commit).await?;
        tracing::info!(app = %app, build_id = %build.id, version = %build.version, "build queued");
        self.build_queued().notify_one();
        Ok((build, true))
    }

    /// Marks an ended build bad: never reused (the next deploy of its
    /// commit by ref builds it again), and deploys naming its version are
    /// refused. Marking a build twice changes nothing.
    pub async fn mark_build_bad(
        &self,
        id: BuildId,
        by: &str,
        reason: &str,
    ) -> Result<Build, Error> {
        let reason = reason.trim();
        if reason.is_empty() || reason.len() > 500 || reason.chars().any(char::is_control) {
            return Err(Error::Invalid(
                "`reason` must say why the build is bad (1 to 500 printable characters)".into(),
            ));
        }
        let build = self
            .db()
            .build(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no build {id}")))?;
        if !build.status.is_terminal() {
            return Err(Error::Conflict(format!(
                "build {id} ({}) is {:?}: mark it bad once it has ended",
                build.version, build.status
            )));
        }
        if self.db().mark_build_bad(id, by, reason).await? {
            tracing::warn!(build_id = %id, app = %build.app, version = %build.version, by, reason,
                "build marked bad");
        }
        let build = self
            .db()
            .build(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no build {id}")))?;
        self.present_build(build).await
    }

    /// Starts the deploys that waited on `build`, or fails them.
    pub async fn on_build_finished(&self, build: BuildId) -> anyhow::Result<()> {
        let Some(b) = self.db().build(build).await? else {
            return Ok(());
        };
        for id in self.db().deploys_waiting_on(build).await? {
            match b.status {
                BuildStatus::Succeeded => self.start_rollout(id, &b).await?,
                _ => {
                    let error = format!(
                        "build #{} ({}) failed: {}",
                        b.number,
                        b.version,
                        b.error.as_deref().unwrap_or("see the build log")
                    );
                    self.transition(
                        id,
                        &[DeployStatus::Building],
                        DeployStatus::Failed,
                        None,
                        Some(&error),
                    )
                    .await?;
                }
            }
        }
        Ok(())
    }

    /// The piece of build `id`'s log from offset `from` (see
    /// `deploy::BuildLog`): at most [`deploy::BUILD_LOG_PIECE_MAX`] bytes,
    /// whole characters. A `from` before the stored log (it started over)
    /// answers from its start; one past its end is invalid; one inside a
    /// character (no answer hands those out) starts at the next.
    pub async fn build_log(&self, id: BuildId, from: u64) -> Result<deploy::BuildLog, Error> {
        let piece = self
            .db()
            .build_log_piece(id, from, deploy::BUILD_LOG_PIECE_MAX)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no build {id}")))?;
        let end = piece.base.saturating_add(piece.len);
        if from > end {
            return Err(Error::Invalid(format!(
                "`from` {from} is past the end of build {id}'s log ({end} bytes so far): start at 0, \
                 then at each answer's `next`"
            )));
        }
        let (start, text, used) = whole_characters(from.max(piece.base), &piece.piece);
        let next = start + used;
        Ok(deploy::BuildLog {
            from: start,
            text,
            next,
            status: piece.status,
            done: piece.status.is_terminal() && next >= end,
        })
    }
}

/// The text of `bytes`, read from offset `at`, cut to whole characters:
/// the offset it starts at (past bytes that continue a character begun
/// before), the text, and how many bytes it stands for (a character cut at
/// the end is left for the next piece).
fn whole_characters(at: u64, bytes: &[u8]) -> (u64, String, u64) {
    let skip = bytes.iter().take_while(|b| *b & 0xC0 == 0x80).count();
    let bytes = &bytes[skip..];
    let (text, used) = match std::str::from_utf8(bytes) {
        Ok(t) => (t.to_string(), bytes.len()),
        Err(e) if e.error_len().is_none() => {
            let valid = &bytes[..e.valid_up_to()];
            (String::from_utf8_lossy(valid).into_owned(), valid.len())
        }
        // Not UTF-8 inside: never stored through this API; shown, not failed.
        Err(_) => (String::from_utf8_lossy(bytes).into_owned(), bytes.len()),
    };
    (at + skip as u64, text, used as u64)
}

#[cfg(test)]
mod tests {
    use super::whole_characters;

    #[test]
    fn pieces_hold_whole_characters() {
        let s = "aé€😀".as_bytes();
        assert_eq!(whole_characters(10, s), (10, "aé€😀".into(), 10));
        // Cut inside the emoji: it waits for the next piece.
        assert_eq!(whole_characters(10, &s[..8]), (10, "aé€".into(), 6));
        // Started inside `é`: from the next character on.
        assert_eq!(whole_characters(11, &s[2..]), (12, "€😀".into(), 7));
        assert_eq!(whole_characters(0, b""), (0, String::new(), 0));
    }
}
