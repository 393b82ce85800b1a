//! Whether a release on disk is still what was installed: the entries it
//! was installed with (its inventory; files added since, such as an app's
//! `__pycache__/`, do not count) against its files, and the artifact it
//! should come from.

use std::path::{Path, PathBuf};

use deploy::layout::HostLayout;
use deploy::{AppName, MANIFEST_PATH, Manifest, Version};

use super::Engine;
use super::error::InstallErrorKind;

/// Why a release on disk is not run again as it is.
#[derive(Debug)]
pub(crate) enum Unverified {
    /// No digest was recorded for it (installed by an older grabber, or
    /// the record was removed).
    NoRecord,
    /// An installed entry differs from its record, or the release cannot
    /// be read.
    Mismatch(String),
}

impl std::fmt::Display for Unverified {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unverified::NoRecord => f.write_str("no digest was recorded when it was installed"),
            Unverified::Mismatch(why) => f.write_str(why),
        }
    }
}

impl Engine {
    /// Checks the release on disk against what was recorded when it was
    /// installed (and, given one, the artifact it should come from).
    /// Reads every installed file of the release.
    pub(super) async fn verify(
        &self,
        app: &AppName,
        version: &Version,
        artifact: Option<&deploy::Sha256>,
    ) -> Result<(), Unverified> {
        let layout = self.cfg.layout.clone();
        let (app, version, artifact) = (app.clone(), version.clone(), artifact.cloned());
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || {
            span.in_scope(|| verify_release(&layout, &app, &version, artifact.as_ref()))
        })
        .await
        .unwrap_or_else(|e| Err(Unverified::Mismatch(format!("the check failed: {e}"))))
    }
}

/// [`Engine::verify`]'s blocking part.
pub(super) fn verify_release(
    layout: &HostLayout,
    app: &AppName,
    version: &Version,
    artifact: Option<&deploy::Sha256>,
) -> Result<(), Unverified> {
    let installed = match layout.read_installed(app, version) {
        Ok(Some(i)) => i,
        Ok(None) => return Err(Unverified::NoRecord),
        Err(e) => return Err(Unverified::Mismatch(e.to_string())),
    };
    let recorded = &installed.digest.artifact_sha256;
    if let Some(want) = artifact
        && want != recorded
    {
        return Err(Unverified::Mismatch(format!(
            "it was installed from the artifact with sha256 {recorded}, not {want}"
        )));
    }
    let started = std::time::Instant::now();
    let change = installed
        .check(&layout.release_dir(app, version))
        .map_err(|e| Unverified::Mismatch(format!("cannot read it: {e}")))?;
    tracing::debug!(%app, %version, elapsed = ?started.elapsed(), "checked the release on disk");
    match change {
        None => Ok(()),
        Some(change) => Err(Unverified::Mismatch(format!(
            "its files changed since it was installed: {change}"
        ))),
    }
}

/// The manifest of an extracted release; its presence marks the release as
/// complete (releases are renamed into place whole).
pub(crate) fn read_release_manifest(release_dir: &Path) -> Result<Manifest, InstallErrorKind> {
    let path: PathBuf = release_dir.join(MANIFEST_PATH);
    let bytes = std::fs::read(&path)
        .map_err(|e| InstallErrorKind::Manifest(format!("cannot read {}: {e}", path.display())))?;
    serde_json::from_slice(&bytes).map_err(|e| {
        InstallErrorKind::Manifest(format!("invalid manifest {}: {e}", path.display()))
    })
}
