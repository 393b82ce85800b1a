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

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::{Component, Path, PathBuf};

use deploy::{MANIFEST_PATH, Manifest};
use flate2::read::GzDecoder;
use tar::EntryType;

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

/// Validates `archive` (a gzip'd tar) while extracting it into `dest`,
/// which must be an empty scratch directory. Returns the release's manifest.
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
) -> Result<Manifest, ExtractError> {
    let file = File::open(archive).map_err(|source| ExtractError::Read {
        path: archive.to_path_buf(),
        source,
    })?;
    let mut ar = tar::Archive::new(GzDecoder::new(BufReader::with_capacity(READ_BUFFER, file)));
    ar.set_preserve_permissions(false);
    ar.set_unpack_xattrs(false);
    ar.set_overwrite(true);
    let read_err = |source| ExtractError::Read {
        path: archive.to_path_buf(),
        source,
    };
    let mut check = Checker::new(archive, max_bytes);
    for entry in ar.entries().map_err(read_err)? {
        let mut entry = entry.map_err(read_err)?;
        let raw = entry.path().map_err(read_err)?.into_owned();
        let shown = raw.display().to_string();
        let unpack_err = |source| ExtractError::Unpack {
            entry: shown.clone(),
            source,
        };
        match check.admit(&mut entry, &raw, &shown)? {
            Step::Skip => {}
            Step::Write(bytes) => write_manifest(dest, &bytes).map_err(unpack_err)?,
            Step::Unpack => {
                if !entry.unpack_in(dest).map_err(unpack_err)? {
                    return Err(ExtractError::Escapes { entry: shown });
                }
            }
        }
    }
    let manifest = check.finish()?;
    check_links_resolved(dest, dest)?;
    Ok(manifest)
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
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
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

    fn admit<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        raw: &Path,
        shown: &str,
    ) -> Result<Step, ExtractError> {
        let path = clean_path(raw, shown)?;
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
                    self.symlinks.insert(path);
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

/// Refuses any symlink under `dir` that resolves (through other links)
/// outside `root`. Dangling links were already checked lexically.
fn check_links_resolved(root: &Path, dir: &Path) -> Result<(), ExtractError> {
    let canon_root = root.canonicalize().map_err(|source| ExtractError::Unpack {
        entry: ".".into(),
        source,
    })?;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).map_err(|source| ExtractError::Unpack {
            entry: d.display().to_string(),
            source,
        })?;
        for e in entries {
            let e = e.map_err(|source| ExtractError::Unpack {
                entry: d.display().to_string(),
                source,
            })?;
            let ft = e.file_type().map_err(|source| ExtractError::Unpack {
                entry: e.path().display().to_string(),
                source,
            })?;
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap_or(&p).display().to_string();
            let escapes = ft.is_symlink()
                && p.canonicalize()
                    .is_ok_and(|resolved| !resolved.starts_with(&canon_root));
            if escapes {
                let target = std::fs::read_link(&p)
                    .map(|t| t.display().to_string())
                    .unwrap_or_default();
                return Err(ExtractError::LinkEscapes {
                    entry: rel,
                    kind: "symbolic",
                    target,
                });
            } else if ft.is_dir() {
                stack.push(p);
            }
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
        let r = unpack_checked(&archive, &dest, max);
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

    #[test]
    fn refuses_garbage() {
        let (_d, r) = try_unpack(b"this is not gzip", 1 << 20);
        assert!(matches!(r, Err(ExtractError::Read { .. })), "{r:?}");
    }
}
