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
//! release), and the extraction also yields the release's [`tree_digest`],
//! each file hashed right after it is written (from the page cache), so a
//! release found on disk later can be checked against what was installed.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use deploy::{MANIFEST_PATH, Manifest};
use flate2::read::GzDecoder;
use sha2::{Digest, Sha256};
use tar::EntryType;

/// Permission bits never given to a release's files and directories.
const MODE_MASK: u32 = 0o022;

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
    #[error("cannot extract archive entry `{entry}`: {source}")]
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
    /// The [`tree_digest`] of `dest` as extracted.
    pub tree_sha256: String,
}

/// Validates `archive` (a gzip'd tar) while extracting it into `dest`,
/// which must be an empty scratch directory. Returns the release's manifest
/// and the digest of the tree it made.
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
    let tree =
        walk(dest, true).map_err(|(entry, source)| ExtractError::Unpack { entry, source })?;
    check_links_resolved(dest, &tree)?;
    let tree_sha256 = digest(dest, &tree, &hashes)
        .map_err(|(entry, source)| ExtractError::Unpack { entry, source })?;
    Ok(Unpacked {
        manifest,
        tree_sha256,
    })
}

/// The sha256 of an extracted release tree: over every entry below `root`
/// in byte order of their paths, its kind, permission bits, owner and group,
/// path, and the sha256 of its content (files) or its target (symlinks).
/// A release whose digest is the one recorded at install has the same
/// files, links, modes and owners. Reads every file: blocking.
pub fn tree_digest(root: &Path) -> io::Result<String> {
    let into_io =
        |(entry, e): (String, io::Error)| io::Error::new(e.kind(), format!("{entry}: {e}"));
    let tree = walk(root, false).map_err(into_io)?;
    digest(root, &tree, &HashMap::new()).map_err(into_io)
}

/// Every entry below `root` (links not followed), with its metadata,
/// sorted by path. With `fix_modes`, group and other write are taken away
/// where something has them (directories `Entry::unpack_in` made on the way
/// to a file get the process's umask, which may allow it).
fn walk(
    root: &Path,
    fix_modes: bool,
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
            if fix_modes && !meta.file_type().is_symlink() && meta.mode() & MODE_MASK != 0 {
                let mode = meta.mode() & 0o7777 & !MODE_MASK;
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

fn digest(
    root: &Path,
    tree: &[(PathBuf, std::fs::Metadata)],
    known: &HashMap<PathBuf, [u8; 32]>,
) -> Result<String, (String, io::Error)> {
    let mut h = Sha256::new();
    h.update(b"slipway-tree-v1\n");
    for (rel, meta) in tree {
        let shown = || rel.display().to_string();
        let ft = meta.file_type();
        let kind: &[u8] = if ft.is_dir() {
            b"d"
        } else if ft.is_symlink() {
            b"l"
        } else if ft.is_file() {
            b"f"
        } else {
            // Extraction makes none; something else put it there.
            b"?"
        };
        h.update(kind);
        h.update(format!(
            "\0{:o}\0{}\0{}\0",
            meta.mode() & 0o7777,
            meta.uid(),
            meta.gid()
        ));
        h.update(rel.as_os_str().as_bytes());
        h.update(b"\0");
        if ft.is_symlink() {
            let target = std::fs::read_link(root.join(rel)).map_err(|e| (shown(), e))?;
            h.update(target.as_os_str().as_bytes());
        } else if ft.is_file() {
            let content = match known.get(rel) {
                Some(c) => *c,
                None => hash_file(&root.join(rel), Some(meta)).map_err(|e| (shown(), e))?,
            };
            h.update(hex::encode(content));
        }
        h.update(b"\n");
    }
    Ok(hex::encode(h.finalize()))
}

/// The sha256 of a regular file's content. With `expected`, the file opened
/// must be the one that was listed (not swapped for another meanwhile).
fn hash_file(path: &Path, expected: Option<&std::fs::Metadata>) -> io::Result<[u8; 32]> {
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
        other => format!("special entry ({other:?})"),
    }
}

/// Refuses any symlink of `tree` (the entries under `root`) that resolves
/// (through other links) outside `root`. Dangling links were already
/// checked lexically.
fn check_links_resolved(
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
pub(crate) mod tests {
    use super::*;
    use deploy::{AppName, BuildType, HealthSpec, RunSpec, Timestamp, Version};
    use flate2::Compression;
    use flate2::write::GzEncoder;

    pub(crate) fn manifest(content_bytes: u64) -> Manifest {
        Manifest {
            app: AppName::parse("hello").unwrap(),
            version: Version::parse("1-abcdef0").unwrap(),
            commit: "abcdef0".repeat(5),
            build_type: BuildType::Generic,
            built_at: Timestamp(0),
            run: RunSpec {
                command: "sleep 1000".into(),
                port: None,
                env: Default::default(),
                stop_timeout_ms: 1000,
                paths: Default::default(),
                user: None,
            },
            health: HealthSpec::default(),
            runtime: None,
            files: 1,
            content_bytes,
        }
    }

    /// Raw entries for building malicious archives the tar builder's own
    /// checks would refuse.
    pub(crate) enum E<'a> {
        File(&'a str, &'a [u8]),
        Dir(&'a str),
        Symlink(&'a str, &'a str),
        Hardlink(&'a str, &'a str),
        Special(&'a str, EntryType),
    }

    fn header(path: &str, kind: EntryType, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(if kind == EntryType::Directory {
            0o755
        } else {
            0o644
        });
        h.set_mtime(0);
        // Write the name bytes directly: `set_path` refuses `..` and `/`.
        let name = &mut h.as_old_mut().name;
        name.fill(0);
        name[..path.len()].copy_from_slice(path.as_bytes());
        h.set_cksum();
        h
    }

    /// Builds a gzip'd tar holding the manifest (unless `with_manifest` is
    /// false) followed by `entries`.
    pub(crate) fn build(m: Option<&Manifest>, entries: &[E<'_>]) -> Vec<u8> {
        let mut b = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
        if let Some(m) = m {
            let json = serde_json::to_vec(m).unwrap();
            b.append(&header(".slipway/", EntryType::Directory, 0), io::empty())
                .unwrap();
            b.append(
                &header(MANIFEST_PATH, EntryType::Regular, json.len() as u64),
                &json[..],
            )
            .unwrap();
        }
        for e in entries {
            match e {
                E::File(p, data) => {
                    let mut h = header(p, EntryType::Regular, data.len() as u64);
                    h.set_mode(0o755);
                    h.set_cksum();
                    b.append(&h, *data).unwrap();
                }
                E::Dir(p) => b
                    .append(&header(p, EntryType::Directory, 0), io::empty())
                    .unwrap(),
                E::Symlink(p, t) | E::Hardlink(p, t) => {
                    let kind = if matches!(e, E::Symlink(..)) {
                        EntryType::Symlink
                    } else {
                        EntryType::Link
                    };
                    let mut h = header(p, kind, 0);
                    let ln = &mut h.as_old_mut().linkname;
                    ln.fill(0);
                    ln[..t.len()].copy_from_slice(t.as_bytes());
                    h.set_cksum();
                    b.append(&h, io::empty()).unwrap();
                }
                E::Special(p, kind) => b.append(&header(p, *kind, 0), io::empty()).unwrap(),
            }
        }
        b.into_inner().unwrap().finish().unwrap()
    }

    fn try_unpack(bytes: &[u8], max: u64) -> (tempfile::TempDir, Result<Manifest, ExtractError>) {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("a.tar.gz");
        std::fs::write(&archive, bytes).unwrap();
        let dest = dir.path().join("out");
        std::fs::create_dir(&dest).unwrap();
        let r = unpack_checked(&archive, &dest, max).map(|u| u.manifest);
        (dir, r)
    }

    fn refused(entries: &[E<'_>], want: &str) {
        let bytes = build(Some(&manifest(1000)), entries);
        let (dir, r) = try_unpack(&bytes, 1 << 20);
        let err = r.expect_err("archive should be refused").to_string();
        assert!(err.contains(want), "error {err:?} should contain {want:?}");
        // Nothing was written outside the scratch directory.
        assert!(!dir.path().join("x").exists());
        assert!(!dir.path().join("evil").exists());
    }

    #[test]
    fn accepts_a_good_release() {
        let bytes = build(
            Some(&manifest(11)),
            &[
                E::Dir("./bin/"),
                E::File("./bin/run.sh", b"echo hello"),
                E::File("README", b"x"),
                E::Symlink("bin/link", "../README"),
                E::Hardlink("bin/hard", "README"),
            ],
        );
        let (dir, r) = try_unpack(&bytes, 1 << 20);
        let m = r.unwrap();
        assert_eq!(m.content_bytes, 11);
        let out = dir.path().join("out");
        assert_eq!(
            std::fs::read(out.join("bin/run.sh")).unwrap(),
            b"echo hello"
        );
        assert_eq!(std::fs::read(out.join("bin/link")).unwrap(), b"x");
        assert_eq!(std::fs::read(out.join("bin/hard")).unwrap(), b"x");
        assert!(out.join(MANIFEST_PATH).exists());
    }

    #[test]
    fn refuses_parent_dir_entries() {
        refused(
            &[E::File("../evil", b"x")],
            "archive entry `../evil` escapes the release directory",
        );
        refused(
            &[E::File("a/../../evil", b"x")],
            "escapes the release directory",
        );
    }

    #[test]
    fn refuses_absolute_paths() {
        refused(
            &[E::File("/tmp/evil", b"x")],
            "`/tmp/evil` has an absolute path",
        );
    }

    #[test]
    fn refuses_escaping_symlinks() {
        refused(
            &[E::Symlink("x", "../../etc")],
            "`x` is a symbolic link to `../../etc`",
        );
        refused(&[E::Dir("a/"), E::Symlink("a/x", "../..")], "escapes");
        refused(&[E::Symlink("x", "/etc")], "escapes");
    }

    #[test]
    fn refuses_writing_through_a_symlink() {
        refused(
            &[E::Symlink("d", "."), E::File("d/evil", b"x")],
            "lies under the symlink `d`",
        );
        // `a/b -> .` stays inside lexically, but `a/b/c -> ../..` really
        // resolves to the parent of the release.
        refused(
            &[
                E::Dir("a/"),
                E::Symlink("a/b", "."),
                E::Symlink("a/b/c", "../.."),
            ],
            "under the symlink",
        );
    }

    #[test]
    fn never_writes_the_manifest_through_a_symlink() {
        // `a/up -> ..` is the release root; the manifest's path is first a
        // symlink that stays inside lexically but really resolves to the
        // directory holding the release. The manifest must replace the
        // link, not be written through it.
        let json = serde_json::to_vec(&manifest(0)).unwrap();
        let json = std::str::from_utf8(&json).unwrap();
        let bytes = build(
            None,
            &[
                E::Dir(".slipway/"),
                E::Dir("a/"),
                E::Symlink("a/up", ".."),
                E::Symlink(MANIFEST_PATH, "../a/up/a/up/../evil"),
                E::File(MANIFEST_PATH, json.as_bytes()),
            ],
        );
        let (dir, r) = try_unpack(&bytes, 1 << 20);
        assert!(
            !dir.path().join("evil").exists(),
            "the manifest was written outside the release"
        );
        r.unwrap();
        let written = dir.path().join("out").join(MANIFEST_PATH);
        assert!(!written.symlink_metadata().unwrap().is_symlink());
        assert_eq!(std::fs::read(written).unwrap(), json.as_bytes());
    }

    #[test]
    fn refuses_escaping_hardlinks() {
        refused(
            &[E::Hardlink("x", "../../etc/passwd")],
            "`x` is a hard link to `../../etc/passwd`",
        );
        refused(&[E::Hardlink("x", "/etc/passwd")], "hard link");
        refused(
            &[E::Symlink("l", "."), E::Hardlink("x", "l/README")],
            "hard link",
        );
    }

    #[test]
    fn refuses_devices_and_fifos() {
        refused(&[E::Special("x", EntryType::Fifo)], "`x` is a fifo");
        refused(
            &[E::Special("x", EntryType::Char)],
            "`x` is a character device",
        );
        refused(
            &[E::Special("x", EntryType::Block)],
            "`x` is a block device",
        );
    }

    #[test]
    fn refuses_more_bytes_than_the_manifest_or_the_limit() {
        let bytes = build(Some(&manifest(3)), &[E::File("big", b"0123456789")]);
        let (_d, r) = try_unpack(&bytes, 1 << 20);
        let err = r.unwrap_err().to_string();
        assert!(
            err.contains("holds 10 bytes of files but its manifest says 3"),
            "{err}"
        );

        let bytes = build(Some(&manifest(1000)), &[E::File("big", &[0u8; 600])]);
        let (_d, r) = try_unpack(&bytes, 500);
        let err = r.unwrap_err().to_string();
        assert!(
            err.contains("more than 500 bytes (at entry `big`)"),
            "{err}"
        );
    }

    #[test]
    fn stops_at_the_first_entry_over_the_manifest_before_writing_it() {
        let bytes = build(
            Some(&manifest(3)),
            &[E::File("small", b"ab"), E::File("big", b"0123456789")],
        );
        let (dir, r) = try_unpack(&bytes, 1 << 20);
        let err = r.unwrap_err().to_string();
        assert!(
            err.contains("holds 12 bytes of files but its manifest says 3"),
            "{err}"
        );
        let out = dir.path().join("out");
        assert!(out.join("small").exists(), "entries before it were written");
        assert!(
            !out.join("big").exists(),
            "the entry over the manifest was not"
        );
    }

    #[test]
    fn refuses_missing_or_bad_manifest() {
        let bytes = build(None, &[E::File("a", b"x")]);
        let (_d, r) = try_unpack(&bytes, 1 << 20);
        assert!(matches!(r, Err(ExtractError::NoManifest)), "{r:?}");

        let bytes = build(None, &[E::File(MANIFEST_PATH, b"{}")]);
        let (_d, r) = try_unpack(&bytes, 1 << 20);
        assert!(matches!(r, Err(ExtractError::BadManifest { .. })), "{r:?}");
    }

    /// Extracts `bytes` into a fresh directory; returns it (kept alive by
    /// the `TempDir`) and the digest the extraction computed.
    fn unpacked(bytes: &[u8]) -> (tempfile::TempDir, PathBuf, String) {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("a.tar.gz");
        std::fs::write(&archive, bytes).unwrap();
        let dest = dir.path().join("out");
        std::fs::create_dir(&dest).unwrap();
        std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o700)).unwrap();
        let u = unpack_checked(&archive, &dest, 1 << 20).unwrap();
        (dir, dest, u.tree_sha256)
    }

    fn tricky() -> Vec<u8> {
        build(
            Some(&manifest(14)),
            &[
                E::Dir("bin/"),
                E::File("bin/run.sh", b"echo hello"),
                E::Hardlink("bin/hard", "bin/run.sh"),
                // Written over after a hard link to it was made: the link
                // keeps the old content.
                E::File("bin/run.sh", b"echo"),
                E::Symlink("bin/link", "run.sh"),
                E::File("README", b""),
            ],
        )
    }

    #[test]
    fn the_digest_made_while_extracting_is_the_one_read_back_later() {
        let (_d1, dest, digest) = unpacked(&tricky());
        assert_eq!(tree_digest(&dest).unwrap(), digest);
        assert_eq!(std::fs::read(dest.join("bin/hard")).unwrap(), b"echo hello");
        // The same archive elsewhere gives the same digest.
        let (_d2, _, again) = unpacked(&tricky());
        assert_eq!(again, digest);
        // Another archive does not.
        let (_d3, _, other) = unpacked(&build(Some(&manifest(5)), &[E::File("README", b"hello")]));
        assert_ne!(other, digest);
    }

    #[test]
    fn any_change_to_the_tree_changes_the_digest() {
        type Change = (&'static str, fn(&Path));
        let changes: &[Change] = &[
            ("content", |d| {
                std::fs::write(d.join("bin/run.sh"), b"echO").unwrap()
            }),
            ("hard-linked content", |d| {
                std::fs::write(d.join("bin/hard"), b"echo hellO").unwrap()
            }),
            ("mode", |d| {
                std::fs::set_permissions(
                    d.join("bin/run.sh"),
                    std::fs::Permissions::from_mode(0o777),
                )
                .unwrap()
            }),
            ("owner", |d| {
                std::os::unix::fs::lchown(d.join("README"), Some(65534), None).unwrap()
            }),
            ("a new file", |d| {
                std::fs::write(d.join("bin/new"), b"").unwrap()
            }),
            ("a removed file", |d| {
                std::fs::remove_file(d.join("README")).unwrap()
            }),
            ("a link target", |d| {
                std::fs::remove_file(d.join("bin/link")).unwrap();
                std::os::unix::fs::symlink("hard", d.join("bin/link")).unwrap();
            }),
            ("a file made a link", |d| {
                std::fs::remove_file(d.join("README")).unwrap();
                std::os::unix::fs::symlink("bin/run.sh", d.join("README")).unwrap();
            }),
        ];
        for (what, change) in changes {
            let (_d, dest, digest) = unpacked(&tricky());
            change(&dest);
            assert_ne!(tree_digest(&dest).unwrap(), digest, "{what}");
        }
    }

    #[test]
    fn nothing_in_a_release_is_writable_by_group_or_others() {
        let mut h = header("open", EntryType::Regular, 1);
        h.set_mode(0o777);
        h.set_cksum();
        let mut b = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
        let json = serde_json::to_vec(&manifest(1)).unwrap();
        b.append(
            &header(MANIFEST_PATH, EntryType::Regular, json.len() as u64),
            &json[..],
        )
        .unwrap();
        b.append(&h, &b"x"[..]).unwrap();
        let mut d = header("shared/", EntryType::Directory, 0);
        d.set_mode(0o777);
        d.set_cksum();
        b.append(&d, io::empty()).unwrap();
        let bytes = b.into_inner().unwrap().finish().unwrap();
        let (_d, dest, _) = unpacked(&bytes);
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(
            mode(&dest),
            0o755,
            "the release root, made private as scratch"
        );
        assert_eq!(mode(&dest.join("open")), 0o755);
        assert_eq!(mode(&dest.join("shared")), 0o755);
        assert_eq!(mode(&dest.join(MANIFEST_PATH)) & 0o022, 0);
    }

    #[test]
    fn refuses_garbage() {
        let (_d, r) = try_unpack(b"this is not gzip", 1 << 20);
        assert!(matches!(r, Err(ExtractError::Read { .. })), "{r:?}");
    }
}
