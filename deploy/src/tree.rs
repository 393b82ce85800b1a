//! A release tree as extracted on a host: every path, its kind, mode and
//! owner, and its content or link target. The grabber records it at install
//! as an [`Inventory`] (`layout::HostLayout::write_inventory`) and a digest
//! (`layout::ReleaseDigest`), and checks a release found on disk against
//! them before running it again; the versionchecker checks the release
//! `current` names, so files changed by hand show as drift. What is checked
//! is what was installed: files added later (an app running as root writes
//! `__pycache__/` into its release) are not a change. A release recorded by
//! an older grabber, with a digest only, is compared whole.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

mod inventory;

pub use inventory::{Change, Inventory, InventoryError};

/// The sha256 of an extracted release tree: over every entry below `root`
/// in byte order of their paths, its kind, permission bits, owner and group,
/// path, and the sha256 of its content (files) or its target (symlinks).
/// A release whose digest is the one recorded at install has the same
/// files, links, modes and owners. Reads every file: blocking.
pub fn tree_digest(root: &Path) -> io::Result<String> {
    inventory(root).map(|i| i.digest())
}

/// Every entry below `root` (links not followed), with its metadata,
/// sorted by path. With `fix_modes`, the bits of that mask (group and
/// other write) are taken away where something has them (directories `Entry::unpack_in` made on the way
/// to a file get the process's umask, which may allow it).
pub fn walk(
    root: &Path,
    fix_modes: Option<u32>,
) -> Result<Vec<(PathBuf, std::fs::Metadata)>, (String, io::Error)> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        let shown = || dir.display().to_string();
        for e in std::fs::read_dir(&dir).map_err(|e| (shown(), e))? {
            let e = e.map_err(|e| (shown(), e))?;
            let path = rel.join(e.file_name());
            let failed = |err| (path.display().to_string(), err);
            let mut meta = e.metadata().map_err(failed)?;
            if let Some(mask) = fix_modes
                && !meta.file_type().is_symlink()
                && meta.mode() & mask != 0
            {
                let mode = meta.mode() & 0o7777 & !mask;
                std::fs::set_permissions(e.path(), std::fs::Permissions::from_mode(mode))
                    .map_err(failed)?;
                meta = std::fs::symlink_metadata(e.path()).map_err(failed)?;
            }
            if meta.is_dir() {
                stack.push(path.clone());
            }
            out.push((path, meta));
        }
    }
    out.sort_by(|a, b| a.0.as_os_str().as_bytes().cmp(b.0.as_os_str().as_bytes()));
    Ok(out)
}

/// The [`tree_digest`] of `tree` (from [`walk`] of `root`), hashing each
/// file whose content is not in `known`.
pub fn digest(
    root: &Path,
    tree: &[(PathBuf, std::fs::Metadata)],
    known: &HashMap<PathBuf, [u8; 32]>,
) -> Result<String, (String, io::Error)> {
    Inventory::of(root, tree, known).map(|i| i.digest())
}

/// The [`Inventory`] of the tree below `root` as it is now. Reads every
/// file: blocking.
pub fn inventory(root: &Path) -> io::Result<Inventory> {
    let into_io =
        |(entry, e): (String, io::Error)| io::Error::new(e.kind(), format!("{entry}: {e}"));
    let tree = walk(root, None).map_err(into_io)?;
    Inventory::of(root, &tree, &HashMap::new()).map_err(into_io)
}

/// The sha256 of a regular file's content. With `expected`, the file opened
/// must be the one that was listed (not swapped for another meanwhile).
pub fn hash_file(path: &Path, expected: Option<&std::fs::Metadata>) -> io::Result<[u8; 32]> {
    let mut f = File::open(path)?;
    let meta = f.metadata()?;
    let same = expected.is_none_or(|m| m.dev() == meta.dev() && m.ino() == meta.ino());
    if !meta.is_file() || !same {
        return Err(io::Error::other("changed while it was being read"));
    }
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => h.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(h.finalize().into())
}
