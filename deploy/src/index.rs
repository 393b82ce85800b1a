//! A release's file index: every entry of the release tree (path, kind,
//! mode, and for a file its size and sha256, for a symlink its target),
//! written by packer beside the artifact from the same tree and signed
//! under its own prefix (`signing::verify_index`). A grabber that holds
//! some of a release's files already (an earlier release of the app) reads
//! the index first, links what it has and fetches only the files it lacks,
//! each checked against the index's sha256 before it is used; the full
//! `tar.gz` stays the canonical artifact.
//!
//! JSON, one object:
//!
//! ```text
//! {"format":"slipway-index-v1","app":"hello","version":"3-abc1234","entries":[
//!   {"path":".slipway","kind":"dir","mode":493},
//!   {"path":".slipway/manifest.json","kind":"file","mode":420,"size":512,"sha256":"…"},
//!   {"path":"bin/run","kind":"symlink","target":"../app.py"}, …]}
//! ```
//!
//! Entries are in `Path` order (component by component, as packer packs
//! them), so a directory comes before what it holds. [`ReleaseIndex::parse`]
//! refuses anything an extraction would refuse: absolute paths, `..`, an
//! entry under something that is not a directory of the index, a symlink
//! leaving the release, duplicates.

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{AppName, Sha256, Version};

/// The `format` of an index this build reads and writes.
pub const INDEX_FORMAT: &str = "slipway-index-v1";

/// An index larger than this is refused before it is parsed (about 150,000
/// entries).
pub const MAX_INDEX_BYTES: u64 = 32 * 1024 * 1024;

/// A release's entries, in `Path` order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseIndex {
    pub format: String,
    pub app: AppName,
    pub version: Version,
    pub entries: Vec<IndexEntry>,
}

/// One entry below the release's root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    /// Relative, `/`-separated, UTF-8.
    pub path: String,
    #[serde(flatten)]
    pub kind: EntryKind,
}

/// What an entry is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EntryKind {
    Dir {
        mode: u32,
    },
    File {
        mode: u32,
        size: u64,
        sha256: Sha256,
    },
    Symlink {
        target: String,
    },
}

/// Why an index was refused; says which entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IndexError {
    #[error("the index is {0} bytes, over the {MAX_INDEX_BYTES} an index may have")]
    TooBig(u64),
    #[error("the index is not valid JSON: {0}")]
    Json(String),
    #[error("the index's format is {0:?}, not {INDEX_FORMAT:?}")]
    Format(String),
    #[error("the index is of {got_app} {got_version}, not {app} {version}")]
    WrongRelease {
        got_app: AppName,
        got_version: Version,
        app: AppName,
        version: Version,
    },
    #[error("index entry `{path}`: {reason}")]
    Entry { path: String, reason: &'static str },
}

impl ReleaseIndex {
    /// Parses and checks the index of `app` `version` (bytes whose digest
    /// and signature were checked first).
    pub fn parse(bytes: &[u8], app: &AppName, version: &Version) -> Result<Self, IndexError> {
        if bytes.len() as u64 > MAX_INDEX_BYTES {
            return Err(IndexError::TooBig(bytes.len() as u64));
        }
        let index: ReleaseIndex =
            serde_json::from_slice(bytes).map_err(|e| IndexError::Json(e.to_string()))?;
        if index.format != INDEX_FORMAT {
            return Err(IndexError::Format(index.format));
        }
        if &index.app != app || &index.version != version {
            return Err(IndexError::WrongRelease {
                got_app: index.app,
                got_version: index.version,
                app: app.clone(),
                version: version.clone(),
            });
        }
        index.check()?;
        Ok(index)
    }

    /// The entries' shape: what [`parse`](Self::parse) checks after the
    /// JSON.
    pub fn check(&self) -> Result<(), IndexError> {
        let mut dirs: HashSet<&Path> = HashSet::new();
        let mut previous: Option<&Path> = None;
        for entry in &self.entries {
            let bad = |reason| IndexError::Entry {
                path: entry.path.clone(),
                reason,
            };
            let path = Path::new(&entry.path);
            if entry.path.is_empty() || entry.path.contains('\0') {
                return Err(bad("an empty path or one with a NUL"));
            }
            if !path.components().all(|c| matches!(c, Component::Normal(_))) {
                return Err(bad("not a plain relative path (absolute, `.` or `..`)"));
            }
            if previous.is_some_and(|p| p >= path) {
                return Err(bad("out of order or repeated"));
            }
            previous = Some(path);
            if let Some(parent) = path.parent()
                && parent != Path::new("")
                && !dirs.contains(parent)
            {
                return Err(bad(
                    "lies under something that is not a directory of the index",
                ));
            }
            match &entry.kind {
                EntryKind::Dir { mode } | EntryKind::File { mode, .. } if *mode > 0o7777 => {
                    return Err(bad("a mode beyond 07777"));
                }
                EntryKind::Dir { .. } => {
                    dirs.insert(path);
                }
                EntryKind::File { .. } => {}
                EntryKind::Symlink { target } => {
                    if target.is_empty() || target.contains('\0') {
                        return Err(bad("a symlink with an empty target or one with a NUL"));
                    }
                    if !link_stays_inside(path, Path::new(target)) {
                        return Err(bad("a symlink leaving the release"));
                    }
                }
            }
        }
        Ok(())
    }

    /// The files' entries, with their digests and sizes.
    pub fn files(&self) -> impl Iterator<Item = (&str, u32, u64, &Sha256)> {
        self.entries.iter().filter_map(|e| match &e.kind {
            EntryKind::File { mode, size, sha256 } => Some((e.path.as_str(), *mode, *size, sha256)),
            _ => None,
        })
    }

    /// Bytes of the files, the index's content.
    pub fn content_bytes(&self) -> u64 {
        self.files().map(|(_, _, size, _)| size).sum()
    }

    /// The index as its file holds it.
    pub fn to_bytes(&self) -> Vec<u8> {
        // A struct of strings, numbers and enums: serialising cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// Whether a symlink at `link` (relative to the release's root) pointing
/// at `target` resolves, lexically, inside the release.
pub fn link_stays_inside(link: &Path, target: &Path) -> bool {
    if target.is_absolute() {
        return false;
    }
    let mut at: Vec<&std::ffi::OsStr> = link
        .parent()
        .map(|p| p.components().map(|c| c.as_os_str()).collect())
        .unwrap_or_default();
    for c in target.components() {
        match c {
            Component::Normal(n) => at.push(n),
            Component::CurDir => {}
            Component::ParentDir => {
                if at.pop().is_none() {
                    return false;
                }
            }
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    true
}

/// The path an entry of the index names below `root`.
pub fn entry_path(root: &Path, entry: &IndexEntry) -> PathBuf {
    root.join(&entry.path)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sha(c: char) -> Sha256 {
        Sha256::parse(c.to_string().repeat(64)).unwrap()
    }
    fn app() -> AppName {
        AppName::parse("hello").unwrap()
    }
    fn version() -> Version {
        Version::parse("3-abc1234").unwrap()
    }
    fn dir(p: &str) -> IndexEntry {
        IndexEntry {
            path: p.into(),
            kind: EntryKind::Dir { mode: 0o755 },
        }
    }
    fn file(p: &str) -> IndexEntry {
        IndexEntry {
            path: p.into(),
            kind: EntryKind::File {
                mode: 0o644,
                size: 3,
                sha256: sha('a'),
            },
        }
    }
    fn link(p: &str, t: &str) -> IndexEntry {
        IndexEntry {
            path: p.into(),
            kind: EntryKind::Symlink { target: t.into() },
        }
    }
    fn index(entries: Vec<IndexEntry>) -> ReleaseIndex {
        ReleaseIndex {
            format: INDEX_FORMAT.into(),
            app: app(),
            version: version(),
            entries,
        }
    }

    #[test]
    fn a_good_index_round_trips() {
        let i = index(vec![
            dir("a"),
            file("a/b"),
            link("a/c", "b"),
            file("a-b"),
            link("top", "a/b"),
        ]);
        let bytes = i.to_bytes();
        assert_eq!(ReleaseIndex::parse(&bytes, &app(), &version()).unwrap(), i);
        assert_eq!(i.content_bytes(), 6);
        let text = String::from_utf8(bytes).unwrap();
        assert!(
            text.contains(r#"{"path":"a/c","kind":"symlink","target":"b"}"#),
            "{text}"
        );
    }

    #[test]
    fn what_an_extraction_refuses_the_index_refuses() {
        let cases: Vec<(Vec<IndexEntry>, &str)> = vec![
            (vec![file("/etc/passwd")], "not a plain relative path"),
            (
                vec![dir("a"), file("a/../../x")],
                "not a plain relative path",
            ),
            (vec![file("b"), file("a")], "out of order"),
            (vec![file("a"), file("a")], "out of order"),
            (vec![file("a/b")], "not a directory of the index"),
            (vec![file("a"), file("a/b")], "not a directory of the index"),
            (
                vec![link("a", "x"), file("a/b")],
                "not a directory of the index",
            ),
            (vec![link("l", "../outside")], "leaving the release"),
            (
                vec![dir("d"), link("d/l", "../../x")],
                "leaving the release",
            ),
            (vec![link("l", "/etc")], "leaving the release"),
            (vec![file("")], "empty path"),
        ];
        for (entries, want) in cases {
            let bytes = index(entries.clone()).to_bytes();
            let err = ReleaseIndex::parse(&bytes, &app(), &version())
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{entries:?}: {err}");
        }
        let other = ReleaseIndex {
            version: Version::parse("4-abc1234").unwrap(),
            ..index(vec![])
        };
        assert!(matches!(
            ReleaseIndex::parse(&other.to_bytes(), &app(), &version()),
            Err(IndexError::WrongRelease { .. })
        ));
        assert!(matches!(
            ReleaseIndex::parse(b"{", &app(), &version()),
            Err(IndexError::Json(_))
        ));
    }

    #[test]
    fn links_resolve_lexically() {
        assert!(link_stays_inside(Path::new("a/b/l"), Path::new("../c")));
        assert!(link_stays_inside(Path::new("a/l"), Path::new("./x/../y")));
        assert!(!link_stays_inside(Path::new("a/l"), Path::new("../../y")));
        assert!(!link_stays_inside(Path::new("l"), Path::new("/y")));
    }
}
