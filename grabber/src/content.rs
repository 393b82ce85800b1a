//! An app's content store (`apps/<app>/content/`): one file per content
//! and mode, named `<sha256>.<mode, octal>`, hard-linked into every release
//! that holds it. Releases are read-only for the app (no group or other
//! write, owned by the grabber), so a link is safe to share; a store file
//! that changed anyway (an app running as root writing into its release,
//! a bad disk) is found when it is next linked: every file is hashed and
//! compared with the signed index before it goes into a release, and a
//! mismatch removes it from the store, never links it.
//!
//! A file enters the store by rename (fetched into `tmp/`, checked, then
//! moved in) or by a hard link to a file of a release just extracted and
//! checked, so a store file is always whole. Garbage: a store file whose
//! link count is 1 belongs to no release any more (the releases that used
//! it were pruned) and is removed.
//!
//! Blocking: call from `spawn_blocking`.

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Read buffer when hashing a store file.
const HASH_BUFFER: usize = 256 * 1024;

/// One app's content store.
#[derive(Debug, Clone)]
pub(crate) struct ContentStore {
    dir: PathBuf,
}

/// What checking a store file found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Linked {
    /// Linked at the destination, its content checked.
    Yes,
    /// Not in the store.
    Missing,
    /// In the store with other content (or size): removed from it, not
    /// linked.
    Corrupt,
}

impl ContentStore {
    pub(crate) fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    /// Where the content `sha256` (hex) with `mode` is kept.
    pub(crate) fn path(&self, sha256: &str, mode: u32) -> PathBuf {
        self.dir.join(format!("{sha256}.{:o}", mode & 0o7777))
    }

    pub(crate) fn has(&self, sha256: &str, mode: u32) -> bool {
        fs::symlink_metadata(self.path(sha256, mode)).is_ok_and(|m| m.is_file())
    }

    /// Whether the store holds anything (an earlier release of the app).
    pub(crate) fn is_empty(&self) -> bool {
        fs::read_dir(&self.dir).map_or(true, |mut d| d.next().is_none())
    }

    /// Some file with the content `sha256`, whatever its mode (what a peer
    /// asks for is content).
    pub(crate) fn find(&self, sha256: &str) -> Option<PathBuf> {
        [0o644, 0o755, 0o444, 0o555]
            .into_iter()
            .map(|mode| self.path(sha256, mode))
            .find(|p| fs::symlink_metadata(p).is_ok_and(|m| m.is_file()))
    }

    fn ensure(&self) -> io::Result<()> {
        fs::create_dir_all(&self.dir)?;
        fs::set_permissions(&self.dir, fs::Permissions::from_mode(0o755))
    }

    /// Adds a file of a release just written and checked (`sha256` is its
    /// content's) by a hard link, unless the store has that content and
    /// mode already.
    pub(crate) fn adopt(&self, file: &Path, sha256: &str, mode: u32) -> io::Result<()> {
        self.ensure()?;
        match fs::hard_link(file, self.path(sha256, mode)) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(e),
            _ => Ok(()),
        }
    }

    /// Moves a fetched file whose content was checked into the store with
    /// `mode`, replacing what stood there.
    pub(crate) fn insert(&self, fetched: &Path, sha256: &str, mode: u32) -> io::Result<()> {
        self.ensure()?;
        fs::set_permissions(fetched, fs::Permissions::from_mode(mode & 0o7777))?;
        fs::rename(fetched, self.path(sha256, mode))
    }

    /// Hashes the store's file for `sha256` and `mode` and, when its size
    /// and content are right, hard-links it at `dest`. A file that is not
    /// right is removed from the store.
    pub(crate) fn link_checked(
        &self,
        sha256: &str,
        mode: u32,
        size: u64,
        dest: &Path,
    ) -> io::Result<Linked> {
        let path = self.path(sha256, mode);
        let meta = match fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Linked::Missing),
            Err(e) => return Err(e),
        };
        let intact = meta.is_file()
            && meta.len() == size
            && meta.mode() & 0o7777 == mode & 0o7777
            && hash(&path)? == sha256;
        if !intact {
            tracing::warn!(path = %path.display(), "a file of the content store does not match its digest: removed, fetched again");
            fs::remove_file(&path)?;
            return Ok(Linked::Corrupt);
        }
        fs::hard_link(&path, dest)?;
        Ok(Linked::Yes)
    }

    /// Removes the files no release links any more; returns how many and
    /// their bytes.
    pub(crate) fn collect_garbage(&self) -> io::Result<(usize, u64)> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((0, 0)),
            Err(e) => return Err(e),
        };
        let (mut files, mut bytes) = (0, 0);
        for entry in entries {
            let entry = entry?;
            let meta = entry.metadata()?;
            if meta.is_file() && meta.nlink() <= 1 {
                fs::remove_file(entry.path())?;
                files += 1;
                bytes += meta.len();
            }
        }
        Ok((files, bytes))
    }
}

/// The sha256 (hex) of a file's content.
pub(crate) fn hash(path: &Path) -> io::Result<String> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; HASH_BUFFER];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sha(bytes: &[u8]) -> String {
        hex::encode(Sha256::digest(bytes))
    }

    #[test]
    fn a_checked_file_is_linked_and_a_changed_one_never_is() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::new(dir.path().join("content"));
        let release = dir.path().join("r1");
        fs::create_dir(&release).unwrap();
        let f = release.join("a.txt");
        fs::write(&f, b"hello").unwrap();
        fs::set_permissions(&f, fs::Permissions::from_mode(0o644)).unwrap();
        store.adopt(&f, &sha(b"hello"), 0o644).unwrap();
        assert!(store.has(&sha(b"hello"), 0o644));
        assert!(!store.has(&sha(b"hello"), 0o755), "mode is part of the key");

        let dest = dir.path().join("linked");
        assert_eq!(
            store.link_checked(&sha(b"hello"), 0o644, 5, &dest).unwrap(),
            Linked::Yes
        );
        assert_eq!(
            fs::metadata(&dest).unwrap().ino(),
            fs::metadata(&f).unwrap().ino()
        );

        // Changed in place (same size): found, removed, not linked.
        fs::write(&f, b"HELLO").unwrap();
        let dest2 = dir.path().join("linked2");
        assert_eq!(
            store
                .link_checked(&sha(b"hello"), 0o644, 5, &dest2)
                .unwrap(),
            Linked::Corrupt
        );
        assert!(!dest2.exists());
        assert!(!store.has(&sha(b"hello"), 0o644));
        assert_eq!(
            store
                .link_checked(&sha(b"hello"), 0o644, 5, &dest2)
                .unwrap(),
            Linked::Missing
        );
    }

    #[test]
    fn garbage_is_what_no_release_links() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::new(dir.path().join("content"));
        let kept = dir.path().join("kept");
        fs::write(&kept, b"kept").unwrap();
        store.adopt(&kept, &sha(b"kept"), 0o644).unwrap();
        let tmp = dir.path().join("fetched");
        fs::write(&tmp, b"gone!").unwrap();
        store.insert(&tmp, &sha(b"gone!"), 0o755).unwrap();
        assert_eq!(store.collect_garbage().unwrap(), (1, 5));
        assert!(store.has(&sha(b"kept"), 0o644));
        assert!(!store.has(&sha(b"gone!"), 0o755));
        assert!(store.find(&sha(b"kept")).is_some());
    }
}
