//! The artifact: a deterministic gzip'd tar of a release directory, with
//! `.slipway/manifest.json`, checksummed while it is written.
//!
//! Same tree and manifest give the same bytes: entries are sorted in `Path`
//! order (component by component, so a directory's entries come right after
//! it), owned by uid/gid 0 with no names, stamped with one fixed mtime (the
//! manifest's `built_at`), and modes are normalised to 0644/0755.
//!
//! The release's file index (`deploy::index`) is made from the same
//! entries in the same order while they are packed: each file's sha256 is
//! taken from the bytes as they go into the tar.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use deploy::index::{EntryKind, INDEX_FORMAT, IndexEntry, ReleaseIndex};
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
    /// The release's file index, one entry per tar entry in the same
    /// order; or why there is none (a path or link target that is not
    /// UTF-8): hosts then download the whole artifact.
    pub(crate) index: Result<ReleaseIndex, String>,
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

/// [`pack_dir`], with the release's file index (or why it has none):
/// what a build writes beside the artifact, for tests and tools that pack
/// without building.
pub fn pack_dir_indexed(
    src: &Path,
    manifest: &Manifest,
    out: &Path,
) -> Result<(Sha256, u64, Result<ReleaseIndex, String>), BuildError> {
    let packed = pack_at(src, manifest, out, GZIP_LEVEL)?;
    Ok((packed.sha256, packed.size, packed.index))
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
    // `Path` order, the order the index requires: `a/b` before `a-b`.
    entries.sort_by(|a, b| a.rel.cmp(&b.rel));
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
    let mut index = Ok(Vec::with_capacity(entries.len()));
    for e in &entries {
        let sha256 = append(&mut tar, e, mtime, &manifest_json)?;
        if let Ok(list) = &mut index {
            match index_entry(e, sha256, manifest_json.len() as u64) {
                Ok(entry) => list.push(entry),
                Err(why) => index = Err(why),
            }
        }
    }
    let index = index.and_then(|entries| {
        let index = ReleaseIndex {
            format: INDEX_FORMAT.to_string(),
            app: manifest.app.clone(),
            version: manifest.version.clone(),
            entries,
        };
        index.check().map_err(|e| e.to_string())?;
        Ok(index)
    });
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
        index,
    })
}

/// The index's entry for a packed entry (`sha256`: its content's, for a
/// file), or why the release can have no index.
fn index_entry(e: &Entry, sha256: Option<Sha256>, manifest_len: u64) -> Result<IndexEntry, String> {
    let utf8 = |p: &Path, what: &str| {
        p.to_str().map(str::to_string).ok_or_else(|| {
            format!(
                "{what} `{}` is not UTF-8, which the index cannot name",
                p.display()
            )
        })
    };
    let path = utf8(&e.rel, "the path")?;
    let file = |mode, size| match &sha256 {
        Some(sha256) => Ok(EntryKind::File {
            mode,
            size,
            sha256: sha256.clone(),
        }),
        None => Err(format!("no digest was taken of `{path}`")),
    };
    let kind = match &e.kind {
        Kind::Dir => EntryKind::Dir { mode: 0o755 },
        Kind::File { size, exec, .. } => file(if *exec { 0o755 } else { 0o644 }, *size)?,
        Kind::Manifest => file(0o644, manifest_len)?,
        Kind::Symlink { target } => EntryKind::Symlink {
            target: utf8(target, &format!("the target of symlink `{path}`"))?,
        },
    };
    Ok(IndexEntry { path, kind })
}

/// Appends one entry; for a file, returns the sha256 of the bytes packed.
fn append<W: Write>(
    tar: &mut tar::Builder<W>,
    e: &Entry,
    mtime: u64,
    manifest_json: &[u8],
) -> Result<Option<Sha256>, BuildError> {
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
            tar.append_data(&mut h, &e.rel, io::empty()).map_err(err)?;
            Ok(None)
        }
        Kind::File { abs, size, exec } => {
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mode(if *exec { 0o755 } else { 0o644 });
            h.set_size(*size);
            let file = File::open(abs).map_err(err)?;
            // A file that changes size while packed would break the
            // manifest's count: read exactly what was counted.
            let mut data = HashReader::new(io::Read::take(file, *size));
            tar.append_data(&mut h, &e.rel, &mut data).map_err(err)?;
            Ok(Some(data.finish()))
        }
        Kind::Symlink { target } => {
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_mode(0o777);
            h.set_size(0);
            tar.append_link(&mut h, &e.rel, target).map_err(err)?;
            Ok(None)
        }
        Kind::Manifest => {
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mode(0o644);
            h.set_size(manifest_json.len() as u64);
            tar.append_data(&mut h, &e.rel, manifest_json)
                .map_err(err)?;
            Ok(Some(digest(manifest_json)))
        }
    }
}

/// The sha256 of `bytes`.
fn digest(bytes: &[u8]) -> Sha256 {
    hex_sha(sha2::Sha256::digest(bytes).into())
}

fn hex_sha(bytes: [u8; 32]) -> Sha256 {
    // 32 bytes hex-encoded are always 64 lowercase hex digits.
    Sha256::parse(hex::encode(bytes)).unwrap_or_else(|_| unreachable!())
}

/// Hashes the bytes a file gives the tar, so the index needs no second
/// read of the tree.
struct HashReader<R> {
    inner: R,
    hasher: sha2::Sha256,
}

impl<R: io::Read> HashReader<R> {
    fn new(inner: R) -> Self {
        Self {
            inner,
            hasher: sha2::Sha256::new(),
        }
    }

    fn finish(self) -> Sha256 {
        hex_sha(self.hasher.finalize().into())
    }
}

impl<R: io::Read> io::Read for HashReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
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
        (hex_sha(self.hasher.finalize().into()), self.size)
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
mod tests;
