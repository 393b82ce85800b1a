//! Dependency trees on disk: their size, and copies of them.

use std::path::Path;

use anyhow::Context;

/// Files and bytes (apparent size) of regular files under `dir`.
pub fn size(dir: &Path) -> anyhow::Result<(u64, u64)> {
    let (mut files, mut bytes) = (0u64, 0u64);
    for e in walkdir::WalkDir::new(dir) {
        let e = e.with_context(|| format!("reading {}", dir.display()))?;
        if e.file_type().is_file() {
            files += 1;
            bytes += e.metadata()?.len();
        }
    }
    Ok((files, bytes))
}

/// Copies the tree `src` into `dst` (created), keeping symlinks as links.
pub fn copy(src: &Path, dst: &Path) -> anyhow::Result<()> {
    for e in walkdir::WalkDir::new(src).follow_links(false) {
        let e = e.with_context(|| format!("reading {}", src.display()))?;
        let rel = e.path().strip_prefix(src)?;
        let to = dst.join(rel);
        let ft = e.file_type();
        if ft.is_dir() {
            std::fs::create_dir_all(&to)?;
        } else if ft.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(e.path())?, &to)?;
        } else if ft.is_file() {
            std::fs::copy(e.path(), &to)
                .with_context(|| format!("copying {}", e.path().display()))?;
        }
    }
    Ok(())
}
