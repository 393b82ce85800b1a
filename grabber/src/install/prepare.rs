//! Preparing a release: reuse it when the copy on disk checks out, else
//! download, verify (size, digest, signature) and extract it into
//! `releases/<version>`. Nothing the host runs is touched.

use std::path::Path;

use deploy::HostPhase;
use tokio_util::sync::CancellationToken;

use super::error::{InstallError, InstallErrorKind};
use super::report::{Reports, without_query};
use super::verify::read_release_manifest;
use super::{Engine, Prepared, Release};
use crate::content::ContentStore;
use crate::{extract, fault};

impl Engine {
    /// Downloading, verifying, extracting: nothing the host runs is touched.
    pub(super) async fn prepare(
        &self,
        req: &Release,
        rep: &Reports<'_>,
        shutdown: &CancellationToken,
    ) -> Result<Prepared, InstallError> {
        let layout = &self.cfg.layout;
        let release_dir = layout.release_dir(&req.app, &req.version);
        let mut again = None;
        if read_release_manifest(&release_dir).is_ok() {
            match self
                .verify(&req.app, &req.version, Some(&req.artifact.sha256))
                .await
            {
                Ok(()) => {
                    rep.phase(
                        HostPhase::Extracting,
                        format!("reusing release {} already on disk", req.version),
                    )
                    .await;
                    return Ok(Prepared::Ready);
                }
                Err(why) => {
                    tracing::warn!(reason = %why, "not reusing the release on disk; downloading it again");
                    // Never run it again: whatever comes next (this
                    // download, or a rollback to it) starts from the artifact.
                    if let Err(e) = std::fs::remove_dir_all(&release_dir) {
                        tracing::warn!(error = %e, "cannot remove the release on disk");
                    }
                    layout.remove_digest(&req.app, &req.version);
                    again = Some(why);
                }
            }
        }
        layout
            .ensure_dirs()
            .map_err(|e| InstallErrorKind::Host(e.to_string()).in_phase(HostPhase::Downloading))?;
        self.app_dirs(&req.app)
            .map_err(|e| e.in_phase(HostPhase::Downloading))?;

        if let Some(ix) = req.artifact.index.as_ref().filter(|_| again.is_none())
            && let Some(prepared) = self.prepare_delta(req, ix, rep, shutdown).await?
        {
            return Ok(prepared);
        }
        let message = match again {
            Some(why) => format!(
                "release {} on disk cannot be reused ({why}): downloading it again from {}",
                req.version,
                without_query(&req.artifact.url)
            ),
            None => format!("downloading {}", without_query(&req.artifact.url)),
        };
        rep.phase(HostPhase::Downloading, message).await;
        let archive = layout.cached_artifact(&req.app, &req.version);
        let part = archive.with_extension("gz.part");
        let downloaded = tokio::select! {
            r = self.download(&req.artifact, &part) => r,
            _ = shutdown.cancelled() => {
                let _ = tokio::fs::remove_file(&part).await;
                return Ok(Prepared::Interrupted);
            }
        };
        let (sha, size) = match downloaded {
            Ok(d) => d,
            Err(e) => {
                let _ = tokio::fs::remove_file(&part).await;
                return Err(e.in_phase(HostPhase::Downloading));
            }
        };

        rep.phase(HostPhase::Verifying, format!("{size} bytes, sha256 {sha}"))
            .await;
        if size != req.artifact.size || sha != req.artifact.sha256 {
            let _ = tokio::fs::remove_file(&part).await;
            return Err(InstallErrorKind::Mismatch {
                size,
                sha256: sha,
                want_size: req.artifact.size,
                want_sha256: req.artifact.sha256.clone(),
            }
            .in_phase(HostPhase::Verifying));
        }
        // The sha256 is the downloaded file's: a valid signature over it
        // means a trusted packer built these bytes. Checked before anything
        // is unpacked, and never skipped.
        if let Err(e) = deploy::signing::verify(
            &self.cfg.trusted_keys,
            &req.app,
            &req.version,
            &req.artifact.sha256,
            &req.artifact.signature,
        ) {
            let _ = tokio::fs::remove_file(&part).await;
            return Err(InstallErrorKind::from(e).in_phase(HostPhase::Verifying));
        }
        tokio::fs::rename(&part, &archive).await.map_err(|e| {
            InstallErrorKind::Host(format!("cannot keep the artifact: {e}"))
                .in_phase(HostPhase::Verifying)
        })?;
        fault::point("verified").await;

        rep.phase_with(
            HostPhase::Extracting,
            format!("extracting into {}", release_dir.display()),
            Some(deploy::Transfer {
                bytes_downloaded: size,
                bytes_from_peers: 0,
                bytes_reused: 0,
            }),
        )
        .await;
        let result = self.extract(req, &archive, &release_dir).await;
        // The release is on disk (or refused): the archive is not needed.
        let _ = tokio::fs::remove_file(&archive).await;
        result.map_err(|e| e.in_phase(HostPhase::Extracting))?;
        Ok(Prepared::Ready)
    }

    /// A scratch directory under `tmp/` for a release being made.
    pub(super) fn scratch(&self, req: &Release) -> Result<tempfile::TempDir, InstallErrorKind> {
        tempfile::Builder::new()
            .prefix(&format!("{}-{}-", req.app, req.version))
            .tempdir_in(self.cfg.layout.tmp_dir())
            .map_err(|e| InstallErrorKind::Host(format!("cannot create a scratch directory: {e}")))
    }

    /// Unpacks into a scratch directory under `tmp/`, adds its files to the
    /// app's content store, then makes it `releases/<version>`.
    pub(super) async fn extract(
        &self,
        req: &Release,
        archive: &Path,
        release_dir: &Path,
    ) -> Result<(), InstallErrorKind> {
        let scratch = self.scratch(req)?;
        let (archive, dest, max) = (
            archive.to_path_buf(),
            scratch.path().to_path_buf(),
            self.cfg.max_artifact_bytes,
        );
        let store = ContentStore::new(self.cfg.layout.content_dir(&req.app));
        let span = tracing::Span::current();
        let extract::Unpacked {
            manifest,
            inventory,
        } = tokio::task::spawn_blocking(move || {
            span.in_scope(|| {
                let unpacked = extract::unpack_checked(&archive, &dest, max)?;
                // Later releases link these instead of fetching them.
                for (path, mode, sha) in unpacked.inventory.files() {
                    if let Err(e) = store.adopt(&dest.join(path), &hex::encode(sha), mode) {
                        tracing::warn!(error = %e, "cannot add the release's files to the content store");
                        break;
                    }
                }
                Ok::<_, InstallErrorKind>(unpacked)
            })
        })
        .await
        .map_err(|e| InstallErrorKind::Host(format!("extraction task failed: {e}")))??;
        self.finish_release(req, scratch, manifest, inventory, release_dir)
            .await
    }

    /// Makes a release unpacked or linked in `scratch` `releases/<version>`:
    /// checks it is the one asked for, links its shared paths, records its
    /// inventory and digest, renames it into place.
    pub(super) async fn finish_release(
        &self,
        req: &Release,
        scratch: tempfile::TempDir,
        manifest: deploy::Manifest,
        mut inventory: deploy::tree::Inventory,
        release_dir: &Path,
    ) -> Result<(), InstallErrorKind> {
        let layout = &self.cfg.layout;
        if manifest.app != req.app || manifest.version != req.version {
            return Err(InstallErrorKind::WrongRelease {
                got_app: manifest.app,
                got_version: manifest.version,
                app: req.app.clone(),
                version: req.version.clone(),
            });
        }
        if !manifest.run.shared.is_empty() {
            let replaced = self.link_shared(&req.app, &manifest, scratch.path())?;
            if !replaced.is_empty() {
                tracing::info!(paths = %replaced.join(", "), "the release's own copies of shared paths replaced by links");
            }
            // The links are part of the release as installed.
            let dir = scratch.path().to_path_buf();
            inventory = tokio::task::spawn_blocking(move || deploy::tree::inventory(&dir))
                .await
                .map_err(|e| InstallErrorKind::Host(format!("digest task failed: {e}")))?
                .map_err(|e| InstallErrorKind::Host(format!("cannot digest the release: {e}")))?;
        }
        fault::point("extracted").await;
        // Recorded before the release is in place, so a complete release
        // always has its digest (a digest without a release is harmless):
        // the inventory first, then the digest that names it.
        let inventory_sha256 = layout
            .write_inventory(&req.app, &req.version, &inventory)
            .map_err(|e| {
                InstallErrorKind::Host(format!("cannot record the release's inventory: {e}"))
            })?;
        let digest = deploy::layout::ReleaseDigest {
            artifact_sha256: req.artifact.sha256.clone(),
            tree_sha256: inventory.digest(),
            inventory_sha256: Some(inventory_sha256),
        };
        layout
            .write_digest(&req.app, &req.version, &digest)
            .map_err(|e| {
                InstallErrorKind::Host(format!("cannot record the release's digest: {e}"))
            })?;
        // A leftover of an interrupted earlier attempt is incomplete by
        // construction (complete ones were reused above): replace it.
        if release_dir.exists() {
            let _ = std::fs::remove_dir_all(release_dir);
        }
        std::fs::rename(scratch.path(), release_dir).map_err(|e| {
            InstallErrorKind::Host(format!(
                "cannot move the release into {}: {e}",
                release_dir.display()
            ))
        })?;
        let _ = deploy::layout::sync_dir(&layout.releases_dir(&req.app));
        Ok(())
    }
}
