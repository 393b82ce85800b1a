//! The artifact: a deterministic gzip'd tar of a release directory, with
//! `.slipway/manifest.json`, checksummed while it is written.
//!
//! Same tree and manifest give the same bytes: entries are sorted by path,
//! owned by uid/gid 0 with no names, stamped with one fixed mtime (the
//! manifest's `built_at`), and modes are normalised to 0644/0755.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use deploy::{MANIFEST_PATH, Manifest, Sha256};
use flate2::Compression;
use flate2::write::GzEncoder;
use sha2::Digest;

use crate::BuildError;

/// gzip level: zlib's default, a good ratio at ~60 MB/s with zlib-rs.
const GZIP_LEVEL: u32 = 6;

/// The manifest's directory inside the release.
const MANIFEST_DIR: &str = ".slipway";

/// What was packed.
#[derive(Debug, Clone)]
pub(crate) struct Packed {
    pub(crate) sha256: Sha256,
    pub(crate) size: u64,
    /// The manifest as written, `files` and `content_bytes` filled in.
    pub(crate) manifest: Manifest,
}

/// Packs `src` into the gzip'd tar `out` with `manifest` as
/// `.slipway/manifest.json`, returning the sha256 and size of `out`.
///
/// The manifest's `files` and `content_bytes` are counted from the tree and
/// override what `manifest` says; its `built_at` is every entry's mtime.
/// `out` appears only when complete (written aside, then renamed).
pub fn pack_dir(src: &Path, manifest: &Manifest, out: &Path) -> Result<(Sha256, u64), BuildError> {
    let packed = pack_at(src, manifest, out, GZIP_LEVEL)?;
    Ok((packed.sha256, packed.size))
}

/// [`pack_dir`] at another gzip level (0-9): the artifact benchmark tries
/// each to choose `GZIP_LEVEL` (BENCHMARKS.md).
pub fn pack_dir_at_level(
    src: &Path,
    manifest: &Manifest,
    out: &Path,
    level: u32,
) -> Result<(Sha256, u64), BuildError> {
    let packed = pack_at(src, manifest, out, level.min(9))?;
    Ok((packed.sha256, packed.size))
}

/// One entry of the release, as it goes in the tar.
#[derive(Debug)]
struct Entry {
    /// Relative path, `/`-separated, no leading `./`.
    rel: PathBuf,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Dir,
    File { abs: PathBuf, size: u64, exec: bool },
    Symlink { target: PathBuf },
    Manifest,
}

/// Walks `src` into sorted entries, refusing what a release cannot hold.
fn scan(src: &Path) -> Result<Vec<Entry>, BuildError> {
    let mut entries = Vec::new();
    let mut has_manifest_dir = false;
    let walk = walkdir::WalkDir::new(src)
        .follow_links(false)
        .min_depth(1)
        .into_iter()
        .filter_entry(|e| e.file_name() != ".git");
    for item in walk {
        let item = item.map_err(|e| {
            let path = e.path().map(Path::to_path_buf).unwrap_or_default();
            BuildError::io(
                format!("reading {}", path.display()),
                e.into_io_error()
                    .unwrap_or_else(|| io::Error::other("filesystem loop")),
            )
        })?;
        let rel = item
            .path()
            .strip_prefix(src)
            .map_err(|_| BuildError::io("walking the release", io::Error::other("path outside")))?
            .to_path_buf();
        let shown = rel.display().to_string();
        let ft = item.file_type();
        if rel == Path::new(MANIFEST_PATH) {
            return Err(BuildError::BadEntry {
                path: shown,
                reason: "the packer writes this file; remove it from the repository".into(),
                log: String::new(),
            });
        }
        if rel == Path::new(MANIFEST_DIR) {
            if !ft.is_dir() {
                return Err(BuildError::BadEntry {
                    path: shown,
                    reason: "the packer needs this to be a directory".into(),
                    log: String::new(),
                });
            }
            has_manifest_dir = true;
        }
        let kind = if ft.is_dir() {
            Kind::Dir
        } else if ft.is_symlink() {
            let target = std::fs::read_link(item.path())
                .map_err(|e| BuildError::io(format!("reading symlink {shown}"), e))?;
            if escapes(&rel, &target) {
                return Err(BuildError::SymlinkEscapes {
                    path: shown,
                    target: target.display().to_string(),
                    log: String::new(),
                });
            }
            Kind::Symlink { target }
        } else if ft.is_file() {
            let meta = item
                .metadata()
                .map_err(|e| BuildError::io(format!("reading {shown}"), e.into()))?;
            Kind::File {
                abs: item.path().to_path_buf(),
                size: meta.len(),
                exec: meta.permissions().mode() & 0o111 != 0,
            }
        } else {
            return Err(BuildError::BadEntry {
                path: shown,
                reason: "not a regular file, directory or symlink (device, fifo or socket)".into(),
                log: String::new(),
            });
        };
        entries.push(Entry { rel, kind });
    }
    if !has_manifest_dir {
        entries.push(Entry {
            rel: PathBuf::from(MANIFEST_DIR),
            kind: Kind::Dir,
        });
    }
    entries.push(Entry {
        rel: PathBuf::from(MANIFEST_PATH),
        kind: Kind::Manifest,
    });
    entries.sort_by(|a, b| {
        a.rel
            .as_os_str()
            .as_bytes()
            .cmp(b.rel.as_os_str().as_bytes())
    });
    Ok(entries)
}

/// Whether a symlink at `link` (relative to the release root) pointing at
/// `target` leaves the release: absolute, or climbing above the root with
/// `..`. Checked lexically; since every link is checked, a chain of links
/// cannot climb out either.
fn escapes(link: &Path, target: &Path) -> bool {
    // Depth of the directory holding the link.
    let mut depth = link.components().count() as i64 - 1;
    for c in target.components() {
        match c {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => {
                depth -= 1;
                if depth < 0 {
                    return true;
                }
            }
            Component::RootDir | Component::Prefix(_) => return true,
        }
    }
    false
}

/// Packs `src` into `out` (see [`pack_dir`]), returning the final manifest.
pub(crate) fn pack(src: &Path, manifest: &Manifest, out: &Path) -> Result<Packed, BuildError> {
    pack_at(src, manifest, out, GZIP_LEVEL)
}

fn pack_at(src: &Path, manifest: &Manifest, out: &Path, level: u32) -> Result<Packed, BuildError> {
    let entries = scan(src)?;
    let mut manifest = manifest.clone();
    manifest.files = 0;
    manifest.content_bytes = 0;
    for e in &entries {
        if let Kind::File { size, .. } = e.kind {
            manifest.files += 1;
            manifest.content_bytes += size;
        }
    }
    let mut manifest_json = serde_json::to_vec_pretty(&manifest)
        .map_err(|e| BuildError::io("serialising the manifest", e.into()))?;
    manifest_json.push(b'\n');
    let mtime = u64::try_from(manifest.built_at.as_millis() / 1000).unwrap_or(0);

    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)
        .map_err(|e| BuildError::io(format!("creating {}", dir.display()), e))?;
    let tmp = tempfile::Builder::new()
        .prefix(".packing-")
        .tempfile_in(dir)
        .map_err(|e| {
            BuildError::io(format!("creating a temporary file in {}", dir.display()), e)
        })?;
    let file = tmp
        .as_file()
        .try_clone()
        .map_err(|e| BuildError::io("opening the temporary artifact", e))?;

    let writing = |e: io::Error| BuildError::io(format!("writing {}", out.display()), e);
    let hashed = HashWriter::new(BufWriter::new(file));
    let gz = flate2::GzBuilder::new().write(hashed, Compression::new(level));
    let mut tar = tar::Builder::new(gz);
    tar.follow_symlinks(false);
    for e in &entries {
        append(&mut tar, e, mtime, &manifest_json)?;
    }
    let gz: GzEncoder<_> = tar.into_inner().map_err(writing)?;
    let mut hashed = gz.finish().map_err(writing)?;
    hashed.flush().map_err(writing)?;
    let (sha256, size) = hashed.finish();

    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))
        .map_err(writing)?;
    tmp.as_file().sync_all().map_err(writing)?;
    tmp.persist(out).map_err(|e| writing(e.error))?;
    Ok(Packed {
        sha256,
        size,
        manifest,
    })
}

fn append<W: Write>(
    tar: &mut tar::Builder<W>,
    e: &Entry,
    mtime: u64,
    manifest_json: &[u8],
) -> Result<(), BuildError> {
    let shown = e.rel.display();
    let err = |error: io::Error| BuildError::io(format!("packing {shown}"), error);
    let mut h = tar::Header::new_gnu();
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(mtime);
    match &e.kind {
        Kind::Dir => {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o755);
            h.set_size(0);
            tar.append_data(&mut h, &e.rel, io::empty()).map_err(err)
        }
        Kind::File { abs, size, exec } => {
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mode(if *exec { 0o755 } else { 0o644 });
            h.set_size(*size);
            let file = File::open(abs).map_err(err)?;
            // A file that changes size while packed would break the
            // manifest's count: read exactly what was counted.
            let data = io::Read::take(file, *size);
            tar.append_data(&mut h, &e.rel, data).map_err(err)
        }
        Kind::Symlink { target } => {
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_mode(0o777);
            h.set_size(0);
            tar.append_link(&mut h, &e.rel, target).map_err(err)
        }
        Kind::Manifest => {
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mode(0o644);
            h.set_size(manifest_json.len() as u64);
            tar.append_data(&mut h, &e.rel, manifest_json).map_err(err)
        }
    }
}

/// Hashes and counts the bytes passing through to the file, so the
/// artifact's sha256 and size need no second read.
struct HashWriter<W> {
    inner: W,
    hasher: sha2::Sha256,
    size: u64,
}

impl<W: Write> HashWriter<W> {
    fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: sha2::Sha256::new(),
            size: 0,
        }
    }

    fn finish(self) -> (Sha256, u64) {
        let hex = hex::encode(self.hasher.finalize());
        // 32 bytes hex-encoded are always 64 lowercase hex digits.
        let sha = Sha256::parse(hex).unwrap_or_else(|_| unreachable!());
        (sha, self.size)
    }
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::os::unix::fs::symlink;

    use deploy::{AppName, BuildType, HealthSpec, RunSpec, Timestamp, Version};

    use super::*;

    fn manifest() -> Manifest {
        Manifest {
            app: AppName::parse("hello").unwrap(),
            version: Version::parse("1-abcdef0").unwrap(),
            commit: "a".repeat(40),
            build_type: BuildType::Python,
            built_at: Timestamp(1_700_000_000_000),
            run: RunSpec {
                command: "python3 app.py".into(),
                port: Some(8000),
                env: Default::default(),
                stop_timeout_ms: 10_000,
                paths: Default::default(),
                shared: Vec::new(),
                user: None,
            },
            health: HealthSpec::default(),
            processes: Default::default(),
            runtime: None,
            files: 999,
            content_bytes: 999,
            release: None,
            hooks: Default::default(),
        }
    }

    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        std::fs::write(p.join("app.py"), "print('hi')\n").unwrap();
        std::fs::create_dir_all(p.join("bin")).unwrap();
        std::fs::write(p.join("bin/run"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(p.join("bin/run"), std::fs::Permissions::from_mode(0o700))
            .unwrap();
        std::fs::set_permissions(p.join("app.py"), std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::create_dir_all(p.join("empty")).unwrap();
        std::fs::create_dir_all(p.join(".git")).unwrap();
        std::fs::write(p.join(".git/HEAD"), "x").unwrap();
        symlink("bin/run", p.join("start")).unwrap();
        dir
    }

    /// (path, type, mode, uid, gid, mtime, size, link target, content)
    type Row = (
        String,
        tar::EntryType,
        u32,
        u64,
        u64,
        u64,
        u64,
        Option<String>,
        Vec<u8>,
    );

    fn read(path: &Path) -> Vec<Row> {
        let f = File::open(path).unwrap();
        let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(f));
        let mut rows = Vec::new();
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let h = e.header().clone();
            assert_eq!(h.username().unwrap(), Some(""));
            assert_eq!(h.groupname().unwrap(), Some(""));
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            rows.push((
                e.path().unwrap().display().to_string(),
                h.entry_type(),
                h.mode().unwrap(),
                h.uid().unwrap(),
                h.gid().unwrap(),
                h.mtime().unwrap(),
                h.size().unwrap(),
                e.link_name().unwrap().map(|l| l.display().to_string()),
                data,
            ));
        }
        rows
    }

    #[test]
    fn packs_sorted_normalised_entries_and_manifest() {
        let src = tree();
        let out = tempfile::tempdir().unwrap();
        let path = out.path().join("a.tar.gz");
        let packed = pack(src.path(), &manifest(), &path).unwrap();

        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(packed.size, bytes.len() as u64);
        assert_eq!(
            packed.sha256.as_str(),
            hex::encode(sha2::Sha256::digest(&bytes))
        );

        let rows = read(&path);
        let names: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
        assert_eq!(
            names,
            [
                ".slipway",
                ".slipway/manifest.json",
                "app.py",
                "bin",
                "bin/run",
                "empty",
                "start"
            ]
        );
        for r in &rows {
            assert_eq!((r.3, r.4, r.5), (0, 0, 1_700_000_000), "{}", r.0);
        }
        let by = |n: &str| rows.iter().find(|r| r.0 == n).unwrap();
        assert_eq!(by("app.py").2, 0o644);
        assert_eq!(by("app.py").8, b"print('hi')\n");
        assert_eq!(by("bin/run").2, 0o755);
        assert_eq!(by("bin").2, 0o755);
        assert_eq!(by("bin").1, tar::EntryType::Directory);
        assert_eq!(by("start").1, tar::EntryType::Symlink);
        assert_eq!(by("start").7.as_deref(), Some("bin/run"));

        let m: Manifest = serde_json::from_slice(&by(".slipway/manifest.json").8).unwrap();
        assert_eq!(m.files, 2);
        assert_eq!(m.content_bytes, 12 + 10);
        assert_eq!(m, packed.manifest);
        assert_eq!(m.app.as_str(), "hello");
    }

    #[test]
    fn same_input_same_bytes() {
        let src = tree();
        let out = tempfile::tempdir().unwrap();
        let (a, na) = pack_dir(src.path(), &manifest(), &out.path().join("a.tar.gz")).unwrap();
        // Touch a file's mtime and perms (but not its exec bit): no change.
        std::fs::set_permissions(
            src.path().join("app.py"),
            std::fs::Permissions::from_mode(0o664),
        )
        .unwrap();
        let (b, nb) = pack_dir(src.path(), &manifest(), &out.path().join("b.tar.gz")).unwrap();
        assert_eq!((a.clone(), na), (b, nb));
        std::fs::write(src.path().join("app.py"), "print('ho')\n").unwrap();
        let (c, _) = pack_dir(src.path(), &manifest(), &out.path().join("c.tar.gz")).unwrap();
        assert_ne!(a, c);
    }

    #[test]
    fn symlinks_escaping_are_refused() {
        for target in ["/etc/passwd", "../outside", "bin/../../x"] {
            let src = tree();
            symlink(target, src.path().join("bad")).unwrap();
            let out = tempfile::tempdir().unwrap();
            let path = out.path().join("a.tar.gz");
            let e = pack_dir(src.path(), &manifest(), &path).unwrap_err();
            assert!(matches!(e, BuildError::SymlinkEscapes { .. }), "{e}");
            assert!(e.to_string().contains("`bad` points outside"), "{e}");
            assert!(!path.exists());
        }
        // Inside the tree, even via `..`, is fine.
        let src = tree();
        symlink("../app.py", src.path().join("bin/app")).unwrap();
        let out = tempfile::tempdir().unwrap();
        pack_dir(src.path(), &manifest(), &out.path().join("a.tar.gz")).unwrap();
    }

    #[test]
    fn escape_rule() {
        assert!(escapes(Path::new("a"), Path::new("..")));
        assert!(!escapes(Path::new("a/b"), Path::new("..")));
        assert!(escapes(Path::new("a/b"), Path::new("../..")));
        assert!(!escapes(Path::new("a/b"), Path::new("./c/../../d")));
        assert!(escapes(Path::new("a"), Path::new("/a")));
    }

    #[test]
    fn existing_manifest_is_refused() {
        let src = tree();
        std::fs::create_dir_all(src.path().join(".slipway")).unwrap();
        std::fs::write(src.path().join(".slipway/manifest.json"), "{}").unwrap();
        let out = tempfile::tempdir().unwrap();
        let e = pack_dir(src.path(), &manifest(), &out.path().join("a.tar.gz")).unwrap_err();
        assert!(e.to_string().contains(".slipway/manifest.json"), "{e}");
    }
}
