//! Linked paths (`[run] shared`, Capistrano's `linked_files` and
//! `linked_dirs`): each listed path of a release becomes a symlink to the
//! same path under the app's `shared/` directory, so uploads or a local
//! config survive releases. Made while the release is still in `tmp/`,
//! before its tree digest is taken, so the digest covers the links.
//!
//! The grabber only ever writes inside the release. `shared/` belongs to the
//! app (its user owns it, and may have put links there), so the grabber
//! creates nothing in it: a path the app has not created yet under
//! `$SLIPWAY_SHARED` is a dangling link until it does. A release's own copy
//! of a linked path is replaced by the link.

use std::path::Path;

use deploy::{AppName, Manifest};

use super::Engine;
use super::error::InstallErrorKind;

impl Engine {
    /// Replaces each `[run] shared` path in `dir` (an unpacked release) by
    /// a link into `shared/`; says which ones had a copy in the release.
    pub(super) fn link_shared(
        &self,
        app: &AppName,
        manifest: &Manifest,
        dir: &Path,
    ) -> Result<Vec<String>, InstallErrorKind> {
        let shared = self.cfg.layout.shared_dir(app);
        let mut replaced = Vec::new();
        for rel in &manifest.run.shared {
            // Checked by packer; checked again, as it comes from outside.
            let path = Path::new(rel);
            if rel.is_empty()
                || !path
                    .components()
                    .all(|c| matches!(c, std::path::Component::Normal(_)))
            {
                return Err(InstallErrorKind::Host(format!(
                    "`[run] shared` entry {rel:?} is not a path inside the release"
                )));
            }
            let at = dir.join(path);
            // Every directory on the way must be a real directory of the
            // release (an unpacked link there would lead outside it).
            let mut parent = dir.to_path_buf();
            for c in path.parent().into_iter().flat_map(Path::components) {
                parent.push(c);
                match std::fs::symlink_metadata(&parent) {
                    Ok(m) if m.is_dir() => {}
                    Ok(_) => {
                        return Err(InstallErrorKind::Host(format!(
                            "`[run] shared` entry {rel:?}: {} in the release is not a directory",
                            parent.display()
                        )));
                    }
                    Err(_) => std::fs::create_dir(&parent).map_err(|e| {
                        InstallErrorKind::Host(format!("cannot create {}: {e}", parent.display()))
                    })?,
                }
            }
            match std::fs::symlink_metadata(&at) {
                Ok(m) => {
                    let removed = if m.is_dir() {
                        std::fs::remove_dir_all(&at)
                    } else {
                        std::fs::remove_file(&at)
                    };
                    removed.map_err(|e| {
                        InstallErrorKind::Host(format!("cannot replace {}: {e}", at.display()))
                    })?;
                    replaced.push(rel.clone());
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(InstallErrorKind::Host(format!("{}: {e}", at.display())));
                }
            }
            std::os::unix::fs::symlink(shared.join(path), &at).map_err(|e| {
                InstallErrorKind::Host(format!("cannot link {}: {e}", at.display()))
            })?;
        }
        Ok(replaced)
    }
}
