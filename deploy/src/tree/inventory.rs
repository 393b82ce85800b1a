//! What a release was installed with, entry by entry: every path, its kind,
//! mode and owner, and its content's sha256 or link target, as `rpm -V`
//! keeps them. A release is checked against its inventory, not against a
//! digest of whatever its directory holds now, so files an app running as
//! root adds to its own release (`__pycache__/`, a log, a cache) are not a
//! change; an installed entry edited, removed, chmod-ed, chown-ed or
//! replaced by another kind is.
//!
//! Kept beside the release's digest (`layout::HostLayout::inventory_file`)
//! in a small versioned format: a header line, then one record per entry,
//! its fields each ended by a NUL (a path may hold any byte but NUL):
//!
//! ```text
//! slipway-inventory-v1\n
//! <kind d|f|l|?>\0<mode, octal>\0<uid>\0<gid>\0<path>\0<sha256 hex | link target | empty>\0\n
//! ```

use std::fmt;
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::hash_file;

/// The first line of an inventory file; another version is refused.
const HEADER: &[u8] = b"slipway-inventory-v1\n";

/// A release's entries as installed, sorted by path (byte order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inventory {
    entries: Vec<Entry>,
}

/// One installed entry below the release's root.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    /// Relative to the release's root.
    path: PathBuf,
    kind: Kind,
    /// Permission bits (`& 0o7777`).
    mode: u32,
    uid: u32,
    gid: u32,
    content: Content,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Dir,
    File,
    Link,
    /// Extraction makes none; something else put it there.
    Other,
}

impl Kind {
    fn of(ft: std::fs::FileType) -> Self {
        if ft.is_dir() {
            Kind::Dir
        } else if ft.is_symlink() {
            Kind::Link
        } else if ft.is_file() {
            Kind::File
        } else {
            Kind::Other
        }
    }

    fn code(self) -> u8 {
        match self {
            Kind::Dir => b'd',
            Kind::File => b'f',
            Kind::Link => b'l',
            Kind::Other => b'?',
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Content {
    None,
    /// A regular file's sha256.
    File([u8; 32]),
    /// A symlink's target.
    Link(PathBuf),
}

/// How an installed entry differs from what is on disk now: the first one
/// found, in path order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The entry (or a directory above it) is gone.
    Removed(PathBuf),
    /// Another kind of entry stands at its path (a file where a symlink was).
    Retyped(PathBuf),
    /// Its permission bits changed.
    Mode(PathBuf),
    /// Its owner or group changed.
    Owner(PathBuf),
    /// A file's content or a symlink's target changed.
    Content(PathBuf),
    /// The tree differs from the digest of a release recorded without an
    /// inventory (by an older grabber): which entry is not known.
    Tree,
}

impl Change {
    /// The path that changed, relative to the release's root, when known.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Change::Removed(p)
            | Change::Retyped(p)
            | Change::Mode(p)
            | Change::Owner(p)
            | Change::Content(p) => Some(p),
            Change::Tree => None,
        }
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self {
            Change::Removed(_) => "was removed",
            Change::Retyped(_) => "was replaced by another kind of entry",
            Change::Mode(_) => "had its permissions changed",
            Change::Owner(_) => "had its owner changed",
            Change::Content(_) => "was modified",
            Change::Tree => return f.write_str("its files differ from the recorded tree digest"),
        };
        match self.path() {
            Some(p) => write!(f, "`{}` {what}", p.display()),
            None => f.write_str(what),
        }
    }
}

/// An inventory file that cannot be read back.
#[derive(Debug, thiserror::Error)]
#[error("invalid inventory: {reason}")]
pub struct InventoryError {
    reason: String,
}

impl InventoryError {
    fn new(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
        }
    }
}

impl Inventory {
    /// The inventory of `tree` (from [`super::walk`] of `root`), hashing
    /// each file whose content is not in `known`. Reads files: blocking.
    pub fn of(
        root: &Path,
        tree: &[(PathBuf, std::fs::Metadata)],
        known: &std::collections::HashMap<PathBuf, [u8; 32]>,
    ) -> Result<Self, (String, io::Error)> {
        let mut entries = Vec::with_capacity(tree.len());
        for (rel, meta) in tree {
            let shown = || rel.display().to_string();
            let kind = Kind::of(meta.file_type());
            let content = match kind {
                Kind::Link => {
                    Content::Link(std::fs::read_link(root.join(rel)).map_err(|e| (shown(), e))?)
                }
                Kind::File => Content::File(match known.get(rel) {
                    Some(c) => *c,
                    None => hash_file(&root.join(rel), Some(meta)).map_err(|e| (shown(), e))?,
                }),
                Kind::Dir | Kind::Other => Content::None,
            };
            entries.push(Entry {
                path: rel.clone(),
                kind,
                mode: meta.mode() & 0o7777,
                uid: meta.uid(),
                gid: meta.gid(),
                content,
            });
        }
        Ok(Self { entries })
    }

    /// How many entries were installed.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The regular files: path (relative), permission bits and sha256.
    pub fn files(&self) -> impl Iterator<Item = (&Path, u32, &[u8; 32])> {
        self.entries.iter().filter_map(|e| match &e.content {
            Content::File(sha) if e.kind == Kind::File => Some((e.path.as_path(), e.mode, sha)),
            _ => None,
        })
    }

    /// The tree digest of these entries ([`super::tree_digest`]): the same
    /// bytes hashed, so it matches a digest recorded by an older grabber.
    pub fn digest(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"slipway-tree-v1\n");
        for e in &self.entries {
            h.update([e.kind.code()]);
            h.update(format!("\0{:o}\0{}\0{}\0", e.mode, e.uid, e.gid));
            h.update(e.path.as_os_str().as_bytes());
            h.update(b"\0");
            match &e.content {
                Content::Link(target) => h.update(target.as_os_str().as_bytes()),
                Content::File(sha) => h.update(hex::encode(sha)),
                Content::None => {}
            }
            h.update(b"\n");
        }
        hex::encode(h.finalize())
    }

    /// Checks the tree at `root` against the installed entries: the first
    /// one (in path order) that is gone or differs, or `None` when every
    /// one is as installed. Entries added since are not looked at. Reads
    /// every installed file: blocking. An entry that cannot be read for
    /// another reason than being gone is an error.
    pub fn check(&self, root: &Path) -> io::Result<Option<Change>> {
        for e in &self.entries {
            let path = root.join(&e.path);
            let failed =
                |err: io::Error| io::Error::new(err.kind(), format!("{}: {err}", e.path.display()));
            let meta = match std::fs::symlink_metadata(&path) {
                Ok(m) => m,
                Err(err) if gone(&err) => return Ok(Some(Change::Removed(e.path.clone()))),
                Err(err) => return Err(failed(err)),
            };
            if Kind::of(meta.file_type()) != e.kind {
                return Ok(Some(Change::Retyped(e.path.clone())));
            }
            if meta.mode() & 0o7777 != e.mode {
                return Ok(Some(Change::Mode(e.path.clone())));
            }
            if (meta.uid(), meta.gid()) != (e.uid, e.gid) {
                return Ok(Some(Change::Owner(e.path.clone())));
            }
            let same = match &e.content {
                Content::None => true,
                Content::Link(target) => match std::fs::read_link(&path) {
                    Ok(now) => now == *target,
                    Err(err) if gone(&err) => return Ok(Some(Change::Removed(e.path.clone()))),
                    Err(err) => return Err(failed(err)),
                },
                Content::File(sha) => match hash_file(&path, Some(&meta)) {
                    Ok(now) => now == *sha,
                    Err(err) if gone(&err) => return Ok(Some(Change::Removed(e.path.clone()))),
                    Err(err) => return Err(failed(err)),
                },
            };
            if !same {
                return Ok(Some(Change::Content(e.path.clone())));
            }
        }
        Ok(None)
    }

    /// The inventory file's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = HEADER.to_vec();
        for e in &self.entries {
            out.push(e.kind.code());
            out.push(0);
            out.extend_from_slice(format!("{:o}\0{}\0{}\0", e.mode, e.uid, e.gid).as_bytes());
            out.extend_from_slice(e.path.as_os_str().as_bytes());
            out.push(0);
            match &e.content {
                Content::File(sha) => out.extend_from_slice(hex::encode(sha).as_bytes()),
                Content::Link(target) => out.extend_from_slice(target.as_os_str().as_bytes()),
                Content::None => {}
            }
            out.extend_from_slice(b"\0\n");
        }
        out
    }

    /// Reads an inventory file's bytes back.
    pub fn decode(bytes: &[u8]) -> Result<Self, InventoryError> {
        let Some(mut rest) = bytes.strip_prefix(HEADER) else {
            let first = bytes.split(|b| *b == b'\n').next().unwrap_or_default();
            return Err(InventoryError::new(format!(
                "unknown format {:?}",
                String::from_utf8_lossy(&first[..first.len().min(40)])
            )));
        };
        let mut entries = Vec::new();
        while !rest.is_empty() {
            let n = entries.len() + 1;
            let mut fields = [&[][..]; 6];
            for field in &mut fields {
                let end = rest
                    .iter()
                    .position(|b| *b == 0)
                    .ok_or_else(|| InventoryError::new(format!("record {n} is cut short")))?;
                *field = &rest[..end];
                rest = &rest[end + 1..];
            }
            rest = rest
                .strip_prefix(b"\n")
                .ok_or_else(|| InventoryError::new(format!("record {n} does not end a line")))?;
            entries.push(
                Entry::decode(fields)
                    .map_err(|why| InventoryError::new(format!("record {n}: {why}")))?,
            );
        }
        Ok(Self { entries })
    }
}

impl Entry {
    fn decode([kind, mode, uid, gid, path, value]: [&[u8]; 6]) -> Result<Self, String> {
        fn text<'a>(b: &'a [u8], what: &str) -> Result<&'a str, String> {
            std::str::from_utf8(b).map_err(|_| format!("{what} is not text"))
        }
        let kind = match kind {
            b"d" => Kind::Dir,
            b"f" => Kind::File,
            b"l" => Kind::Link,
            b"?" => Kind::Other,
            _ => return Err(format!("unknown kind {:?}", String::from_utf8_lossy(kind))),
        };
        let mode = u32::from_str_radix(text(mode, "the mode")?, 8)
            .map_err(|e| format!("bad mode: {e}"))?;
        let uid = text(uid, "the uid")?
            .parse()
            .map_err(|e| format!("bad uid: {e}"))?;
        let gid = text(gid, "the gid")?
            .parse()
            .map_err(|e| format!("bad gid: {e}"))?;
        if path.is_empty() {
            return Err("empty path".into());
        }
        let path = PathBuf::from(std::ffi::OsString::from_vec(path.to_vec()));
        if path.is_absolute() {
            return Err(format!("absolute path {}", path.display()));
        }
        let content = match kind {
            Kind::File => {
                let mut sha = [0u8; 32];
                hex::decode_to_slice(value, &mut sha).map_err(|e| format!("bad sha256: {e}"))?;
                Content::File(sha)
            }
            Kind::Link => {
                Content::Link(PathBuf::from(std::ffi::OsString::from_vec(value.to_vec())))
            }
            Kind::Dir | Kind::Other => Content::None,
        };
        Ok(Self {
            path,
            kind,
            mode,
            uid,
            gid,
            content,
        })
    }
}

/// Whether an error reaching an entry means it is not there any more: gone,
/// or a directory above it replaced by something else.
fn gone(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

#[cfg(test)]
mod tests;
