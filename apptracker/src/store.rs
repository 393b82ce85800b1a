//! The artifact store. The embedded default keeps artifacts in a local
//! directory that AppTracker serves over HTTP at `/artifacts/<app>/<file>`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use deploy::{AppName, ArtifactRef, Sha256, Version};

#[derive(Clone, Debug)]
pub struct LocalStore {
    dir: PathBuf,
    /// Base of the URLs handed to hosts.
    public_url: String,
}

impl LocalStore {
    pub fn new(dir: PathBuf, public_url: String) -> Self {
        Self { dir, public_url }
    }

    /// The file name of a release's artifact.
    pub fn file_name(app: &AppName, version: &Version) -> String {
        format!("{app}-{version}.tar.gz")
    }

    /// Where a stored artifact lives.
    pub fn path(&self, app: &AppName, file: &str) -> PathBuf {
        self.dir.join(app.as_str()).join(file)
    }

    /// Moves a built artifact into the store and says where hosts fetch it.
    pub async fn put(
        &self,
        app: &AppName,
        version: &Version,
        built: &Path,
        sha256: Sha256,
        size: u64,
    ) -> anyhow::Result<ArtifactRef> {
        let file = Self::file_name(app, version);
        let dest = self.path(app, &file);
        let parent = self.dir.join(app.as_str());
        tokio::fs::create_dir_all(&parent)
            .await
            .with_context(|| format!("cannot create {}", parent.display()))?;
        // Copy to a temporary name then rename, so a reader never sees half a file.
        let tmp = parent.join(format!(".{file}.tmp"));
        tokio::fs::copy(built, &tmp)
            .await
            .with_context(|| format!("cannot store artifact {}", dest.display()))?;
        tokio::fs::rename(&tmp, &dest)
            .await
            .with_context(|| format!("cannot store artifact {}", dest.display()))?;
        Ok(ArtifactRef {
            url: format!("{}/artifacts/{app}/{file}", self.public_url),
            sha256,
            size,
        })
    }
}
