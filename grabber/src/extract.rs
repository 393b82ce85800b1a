//! Checked unpacking of release artifacts (DESIGN.md "Bad input"): a tarball
//! with absolute paths, `..`, links escaping the release, device files, or
//! more bytes than its manifest says is refused, and nothing outside the
//! scratch directory it was being unpacked into is ever written.
//!
//! One pass over the archive (decompressing twice cost a third of a host's
//! CPU in the fleet benchmark, BENCHMARKS.md): every header is checked
//! before its entry is written, so an unsafe entry is refused before it
//! touches the disk and a too-big archive stops at the first entry over the
//! limit. Entries are written with `Entry::unpack_in`, which also refuses to
//! write through a symlink that leaves the destination. A final walk refuses
//! any symlink that resolves outside the release. The destination is a
//! scratch directory the caller renames into place only when this returns
//! `Ok` and removes otherwise.
//!
//! Files get the archive's permission bits without group and other write
//! (the app may run as another user: it must not be able to change its
//! release), and the extraction also yields the release's inventory (every
//! entry, its mode, owner and content hash: `deploy::tree::Inventory`),
//! each file hashed right after it is written (from the page cache), so a
//! release found on disk later can be checked against what was installed.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

pub use deploy::tree::tree_digest;
use deploy::tree::{Inventory, hash_file, walk};
use deploy::{MANIFEST_PATH, Manifest};
use flate2::read::GzDecoder;
use sha2::{Digest, Sha256};
use tar::EntryType;

/// Permission bits never given to a release's files and directories.
pub(crate) const MODE_MASK: u32 = 0o022;

/// The manifest is small; refuse anything bigger than this.
const MAX_MANIFEST_BYTES: u64 = 1024 * 1024;

/// Read buffer in front of the decompressor.
const READ_BUFFER: usize = 256 * 1024;

/// Why an archive was refused.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    #[error("cannot read archive {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("archive entry `{entry}` has an absolute path")]
    AbsolutePath { entry: String },
    #[error("archive entry `{entry}` escapes the release directory")]
    Escapes { entry: String },
    #[error(
        "archive entry `{entry}` is a {kind} link to `{target}`, which escapes the release directory"
    )]
    LinkEscapes {
        entry: String,
        kind: &'static str,
        target: String,
    },
    #[error("archive entry `{entry}` lies under the symlink `{link}`")]
    UnderSymlink { entry: String, link: String },
    #[error("archive entry `{entry}` is a {kind}, which a release may not contain")]
    ForbiddenType { entry: String, kind: String },
    #[error("archive expands to more than {limit} bytes (at entry `{entry}`)")]
    TooBig { entry: String, limit: u64 },
    #[error("archive holds {actual} bytes of files but its manifest says {declared}")]
    MoreThanManifest { actual: u64, declared: u64 },
    #[error("archive has no manifest at {MANIFEST_PATH}")]
    NoManifest,
    #[error("archive manifest {MANIFEST_PATH} is invalid: {reason}")]
    BadManifest { reason: String },
    // tar's "failed to unpack `x`" wraps the reason (a full disk, a
    // permission) one level down: the whole chain is said.
    #[error(
        "cannot extract archive entry `{entry}`: {}",
        deploy::tls::error_chain(source)
    )]
    Unpack {
        entry: String,
        #[source]
        source: io::Error,
    },
}

/// What an extraction produced.
#[derive(Debug)]
pub struct Unpacked {
    pub manifest: Manifest,
    /// The entries of `dest` as extracted: what the release is checked
    /// against later (its [`Inventory::digest`] is the [`tree_digest`]).
    pub inventory: Inventory,
}

/// Validates `archive` (a gzip'd tar) while extracting it into `dest`,
/// which must be an empty scratch directory. Returns the release's manifest
/// and the inventory of the tree it made.
///
/// Refuses absolute paths, `..` components, symlinks and hard links that
/// leave the release, devices, fifos and other special entries, and archives
/// whose regular files total more than `max_bytes` or more than the
/// manifest's `content_bytes`. On `Err`, `dest` holds part of the archive
/// and must be thrown away. Blocking: run it in `spawn_blocking`.
pub fn unpack_checked(
    archive: &Path,
    dest: &Path,
    max_bytes: u64,
) -> Result<Unpacked, ExtractError> {
    let file = File::open(archive).map_err(|source| ExtractError::Read {
        path: archive.to_path_buf(),
        source,
    })?;
    let mut ar = tar::Archive::new(GzDecoder::new(BufReader::with_capacity(READ_BUFFER, file)));
    ar.set_preserve_permissions(false);
    ar.set_mask(MODE_MASK);
    ar.set_unpack_xattrs(false);
    ar.set_overwrite(true);
    let read_err = |source| ExtractError::Read {
        path: archive.to_path_buf(),
        source,
    };
    let mut check = Checker::new(archive, max_bytes);
    // The content hash of each regular file as written, by path; an entry
    // written over a path forgets what was there (a hard link made to it
    // keeps the old content and is read again at the end).
    let mut hashes: HashMap<PathBuf, [u8; 32]> = HashMap::new();
    for entry in ar.entries().map_err(read_err)? {
        let mut entry = entry.map_err(read_err)?;
        let raw = entry.path().map_err(read_err)?.into_owned();
        let shown = raw.display().to_string();
        let unpack_err = |source| ExtractError::Unpack {
            entry: shown.clone(),
            source,
        };
        let (step, path) = check.admit(&mut entry, &raw, &shown)?;
        hashes.remove(&path);
        match step {
            Step::Skip => {}
            Step::Write(bytes) => {
                write_manifest(dest, &bytes).map_err(unpack_err)?;
                hashes.insert(path, Sha256::digest(&bytes).into());
            }
            Step::Unpack => {
                if !entry.unpack_in(dest).map_err(unpack_err)? {
                    return Err(ExtractError::Escapes { entry: shown });
                }
                if matches!(
                    entry.header().entry_type(),
                    EntryType::Regular | EntryType::Continuous
                ) {
                    let written = dest.join(&path);
                    let hash = hash_file(&written, None).map_err(unpack_err)?;
                    hashes.insert(path, hash);
                }
            }
        }
    }
    let manifest = check.finish()?;
    // The scratch directory was made private (0700); the release's root
    // must be readable by an app running as another user.
    std::fs::set_permissions(dest, std::fs::Permissions::from_mode(0o755)).map_err(|source| {
        ExtractError::Unpack {
            entry: ".".into(),
            source,
        }
    })?;
    let tree = walk(dest, Some(MODE_MASK))
        .map_err(|(entry, source)| ExtractError::Unpack { entry, source })?;
    check_links_resolved(dest, &tree)?;
    let inventory = Inventory::of(dest, &tree, &hashes)
        .map_err(|(entry, source)| ExtractError::Unpack { entry, source })?;
    Ok(Unpacked {
        manifest,
        inventory,
    })
}

/// Writes the manifest, read to check it, from memory. `admit` refused any
/// symlink above its path; one *at* its path (an earlier entry) is replaced,
/// never followed, as `Entry::unpack_in` does for every other file.
fn write_manifest(dest: &Path, bytes: &[u8]) -> io::Result<()> {
    let path = dest.join(MANIFEST_PATH);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let create = || {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&path)
    };
    let mut file = match create() {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            std::fs::remove_file(&path)?;
            create()?
        }
        other => other?,
    };
    file.write_all(bytes)
}

/// What to do with an entry that passed the checks.
enum Step {
    /// The archive's root (`./`): nothing to write.
    Skip,
    /// The manifest, already read: write these bytes.
    Write(Vec<u8>),
    /// Anything else: `Entry::unpack_in`.
    Unpack,
}

/// The state of the checks across an archive's headers, fed one entry at a
/// time before that entry is written.
struct Checker<'a> {
    /// Named in read errors.
    archive: &'a Path,
    max_bytes: u64,
    /// Bytes of regular files so far, the manifest's included.
    total: u64,
    /// Bytes of regular files so far, the manifest's excluded.
    content: u64,
    manifest: Option<Manifest>,
    /// Symlinks the archive made: nothing may be written under one.
    symlinks: HashSet<PathBuf>,
}

impl<'a> Checker<'a> {
    fn new(archive: &'a Path, max_bytes: u64) -> Self {
        Checker {
            archive,
            max_bytes,
            total: 0,
            content: 0,
            manifest: None,
            symlinks: HashSet::new(),
        }
    }

    /// Checks one entry; returns what to do with it and its cleaned path.
    fn admit<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        raw: &Path,
        shown: &str,
    ) -> Result<(Step, PathBuf), ExtractError> {
        let path = clean_path(raw, shown)?;
        let step = self.step(entry, &path, shown)?;
        Ok((step, path))
    }

    fn step<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        path: &Path,
        shown: &str,
    ) -> Result<Step, ExtractError> {
        if path.as_os_str().is_empty() {
            return Ok(Step::Skip);
        }
        // Nothing may be written through a link the archive itself made:
        // the lexical checks below would not see where it really lands.
        if let Some(link) = path
            .ancestors()
            .skip(1)
            .find(|a| self.symlinks.contains(*a))
        {
            return Err(ExtractError::UnderSymlink {
                entry: shown.to_string(),
                link: link.display().to_string(),
            });
        }
        let kind = entry.header().entry_type();
        self.check_manifest_path(path, kind, shown)?;
        match kind {
            EntryType::Regular | EntryType::Continuous => {
                let size = entry.size();
                self.total = self.total.saturating_add(size);
                if self.total > self.max_bytes {
                    return Err(ExtractError::TooBig {
                        entry: shown.to_string(),
                        limit: self.max_bytes,
                    });
                }
                if path == Path::new(MANIFEST_PATH) {
                    return self.read_manifest(entry, size);
                }
                self.content = self.content.saturating_add(size);
                // The packer writes the manifest first: from then on, an
                // archive holding more than it declares stops here.
                self.check_content()?;
                Ok(Step::Unpack)
            }
            EntryType::Directory => Ok(Step::Unpack),
            EntryType::Symlink | EntryType::Link => {
                let is_sym = kind == EntryType::Symlink;
                let kind_str = if is_sym { "symbolic" } else { "hard" };
                let target = entry
                    .link_name()
                    .map_err(|e| self.read_err(e))?
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                let escape = || ExtractError::LinkEscapes {
                    entry: shown.to_string(),
                    kind: kind_str,
                    target: target.display().to_string(),
                };
                if target.as_os_str().is_empty() {
                    return Err(escape());
                }
                if is_sym {
                    // Read relative to the directory holding the link.
                    let parent = path.parent().unwrap_or(Path::new(""));
                    if !stays_inside(parent, &target) {
                        return Err(escape());
                    }
                    self.symlinks.insert(path.to_path_buf());
                } else {
                    // Hard link names are relative to the archive root.
                    let target = clean_path(&target, shown).map_err(|_| escape())?;
                    if target.ancestors().any(|a| self.symlinks.contains(a)) {
                        return Err(escape());
                    }
                }
                Ok(Step::Unpack)
            }
            other => Err(ExtractError::ForbiddenType {
                entry: shown.to_string(),
                kind: kind_name(other),
            }),
        }
    }

    /// The manifest's path holds one regular file and nothing else: no
    /// link or directory over it (a release read again later would follow
    /// it), nothing under it, no second manifest.
    fn check_manifest_path(
        &self,
        path: &Path,
        kind: EntryType,
        shown: &str,
    ) -> Result<(), ExtractError> {
        let manifest = Path::new(MANIFEST_PATH);
        let reason = if path == manifest {
            match kind {
                EntryType::Regular | EntryType::Continuous if self.manifest.is_some() => {
                    format!("`{shown}` is a second manifest")
                }
                EntryType::Regular | EntryType::Continuous => return Ok(()),
                other => format!("`{shown}` is a {}, not a file", kind_name(other)),
            }
        } else if path.starts_with(manifest) {
            format!("`{shown}` lies under the manifest")
        } else {
            return Ok(());
        };
        Err(ExtractError::BadManifest { reason })
    }

    fn read_manifest<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        size: u64,
    ) -> Result<Step, ExtractError> {
        if size > MAX_MANIFEST_BYTES {
            return Err(ExtractError::BadManifest {
                reason: format!("{size} bytes is too big"),
            });
        }
        let mut buf = Vec::with_capacity(size as usize);
        entry
            .take(MAX_MANIFEST_BYTES)
            .read_to_end(&mut buf)
            .map_err(|e| self.read_err(e))?;
        let m: Manifest = serde_json::from_slice(&buf).map_err(|e| ExtractError::BadManifest {
            reason: e.to_string(),
        })?;
        self.manifest = Some(m);
        self.check_content()?;
        Ok(Step::Write(buf))
    }

    fn read_err(&self, source: io::Error) -> ExtractError {
        ExtractError::Read {
            path: self.archive.to_path_buf(),
            source,
        }
    }

    fn check_content(&self) -> Result<(), ExtractError> {
        match &self.manifest {
            Some(m) if self.content > m.content_bytes => Err(ExtractError::MoreThanManifest {
                actual: self.content,
                declared: m.content_bytes,
            }),
            _ => Ok(()),
        }
    }

    /// After the last entry: the manifest was there and the files matched
    /// it.
    fn finish(self) -> Result<Manifest, ExtractError> {
        self.check_content()?;
        self.manifest.ok_or(ExtractError::NoManifest)
    }
}

/// The entry's path with `.` components dropped, refusing absolute paths
/// and `..`.
fn clean_path(raw: &Path, shown: &str) -> Result<PathBuf, ExtractError> {
    let mut out = PathBuf::new();
    for c in raw.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            Component::ParentDir => {
                return Err(ExtractError::Escapes {
                    entry: shown.to_string(),
                });
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(ExtractError::AbsolutePath {
                    entry: shown.to_string(),
                });
            }
        }
    }
    Ok(out)
}

/// Whether `target`, read relative to the directory `base` (both relative
/// to the release root), stays inside the release, judged lexically.
fn stays_inside(base: &Path, target: &Path) -> bool {
    if target.has_root() {
        return false;
    }
    let mut depth: usize = base.components().count();
    for c in target.components() {
        match c {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => match depth.checked_sub(1) {
                Some(d) => depth = d,
                None => return false,
            },
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    true
}

fn kind_name(t: EntryType) -> String {
    match t {
        EntryType::Char => "character device".into(),
        EntryType::Block => "block device".into(),
        EntryType::Fifo => "fifo".into(),
        EntryType::GNUSparse => "sparse file".into(),
        EntryType::Symlink => "symbolic link".into(),
        EntryType::Link => "hard link".into(),
        EntryType::Directory => "directory".into(),
        other => format!("special entry ({other:?})"),
    }
}

/// Refuses any symlink of `tree` (the entries under `root`) that resolves
/// (through other links) outside `root`. Dangling links were already
/// checked lexically.
pub(crate) fn check_links_resolved(
    root: &Path,
    tree: &[(PathBuf, std::fs::Metadata)],
) -> Result<(), ExtractError> {
    let canon_root = root.canonicalize().map_err(|source| ExtractError::Unpack {
        entry: ".".into(),
        source,
    })?;
    for (rel, meta) in tree {
        if !meta.file_type().is_symlink() {
            continue;
        }
        let p = root.join(rel);
        let escapes = p
            .canonicalize()
            .is_ok_and(|resolved| !resolved.starts_with(&canon_root));
        if escapes {
            let target = std::fs::read_link(&p)
                .map(|t| t.display().to_string())
                .unwrap_or_default();
            return Err(ExtractError::LinkEscapes {
                entry: rel.display().to_string(),
                kind: "symbolic",
                target,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests;
