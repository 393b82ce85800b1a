//! The extraction guard (`grabber::extract::unpack_checked`): any tar
//! stream is refused or unpacked, never a panic, and nothing outside the
//! release's scratch directory is ever written: no file made, removed or
//! changed (content, mode, owner, times, link count) anywhere around it.
//! A release accepted holds no link that resolves outside it, its
//! manifest on disk is a plain file holding the manifest returned, and its
//! inventory is the tree on disk.
//!
//! The input is a plain tar stream. Before it is gzip'd and extracted, the
//! checksum of each header is set right (walking the headers as a tar
//! reader does), so that mutations reach the checks rather than stop at
//! the checksum.
//!
//! Each run lays out, in a temporary directory:
//!
//!   base/d1/d2/d3/run/tmp/<scratch>/   the release being unpacked (as the
//!                                      grabber makes it: tempfile, 0700)
//!   base/d1/d2/d3/run/archive.tar.gz
//!   base/d1/d2/d3/run/canary/file
//!
//! and after the extraction (and the removal of the scratch directory, as
//! the grabber does), everything under `base` but the scratch directory
//! must be as it was: six levels of `..` are caught there.
#![no_main]

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use flate2::Compression;
use flate2::write::GzEncoder;
use libfuzzer_sys::fuzz_target;

/// The largest release unpacked.
const MAX_BYTES: u64 = 1 << 20;

static BASE: LazyLock<tempfile::TempDir> = LazyLock::new(|| {
    tempfile::Builder::new()
        .prefix("slipway-fuzz-extract-")
        .tempdir()
        .expect("a temporary directory")
});

/// What is observable of a path: what changed when it differs.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    kind: &'static str,
    mode: u32,
    uid: u32,
    gid: u32,
    nlink: u64,
    size: u64,
    mtime: (i64, i64),
    content: Option<Vec<u8>>,
    link: Option<PathBuf>,
}

fn seen(path: &Path) -> Seen {
    let meta = fs::symlink_metadata(path).expect("lstat");
    let ft = meta.file_type();
    let kind = if ft.is_symlink() {
        "symlink"
    } else if ft.is_dir() {
        "dir"
    } else if ft.is_file() {
        "file"
    } else {
        "other"
    };
    Seen {
        kind,
        mode: meta.mode(),
        uid: meta.uid(),
        gid: meta.gid(),
        nlink: if ft.is_dir() { 0 } else { meta.nlink() },
        size: if ft.is_dir() { 0 } else { meta.size() },
        mtime: (meta.mtime(), meta.mtime_nsec()),
        content: ft.is_file().then(|| fs::read(path).expect("read")),
        link: ft.is_symlink().then(|| fs::read_link(path).expect("readlink")),
    }
}

/// Every path under `root` (itself included), not following links, but
/// for `skip`.
fn snapshot(root: &Path, skip: Option<&Path>) -> BTreeMap<PathBuf, Seen> {
    let mut out = BTreeMap::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(p) = todo.pop() {
        if Some(p.as_path()) == skip {
            continue;
        }
        let s = seen(&p);
        if s.kind == "dir" {
            for e in fs::read_dir(&p).expect("readdir") {
                todo.push(e.expect("dirent").path());
            }
        }
        out.insert(p, s);
    }
    out
}

/// Parses a tar numeric field: octal text, or GNU's base-256.
fn number(field: &[u8]) -> Option<u64> {
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        let mut n: u64 = u64::from(field[0] & 0x7f);
        for &b in &field[1..] {
            n = n.checked_mul(256)?.checked_add(u64::from(b))?;
        }
        return Some(n);
    }
    let text = std::str::from_utf8(field).ok()?;
    let text = text.trim_matches(|c: char| c == '\0' || c == ' ');
    if text.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(text, 8).ok()
}

/// Sets each header's checksum, walking the headers as a reader would.
fn fix_checksums(tar: &mut [u8]) {
    let mut at = 0usize;
    while at + 512 <= tar.len() {
        let block = &mut tar[at..at + 512];
        if block.iter().all(|&b| b == 0) {
            return;
        }
        block[148..156].fill(b' ');
        let sum: u32 = block.iter().map(|&b| u32::from(b)).sum();
        let text = format!("{sum:06o}\0 ");
        block[148..156].copy_from_slice(text.as_bytes());
        let Some(size) = number(&block[124..136]) else {
            return;
        };
        let Some(next) = size
            .checked_add(511)
            .map(|s| s / 512 * 512)
            .and_then(|s| usize::try_from(s).ok())
            .and_then(|s| at.checked_add(512)?.checked_add(s))
        else {
            return;
        };
        at = next;
    }
}

fuzz_target!(|data: &[u8]| {
    let mut tar = data.to_vec();
    fix_checksums(&mut tar);

    let base = BASE.path();
    let run = base.join("d1/d2/d3/run");
    if run.exists() {
        fs::remove_dir_all(base.join("d1")).expect("clean the last run");
    }
    let tmp = run.join("tmp");
    fs::create_dir_all(&tmp).expect("mkdir");
    fs::create_dir(run.join("canary")).expect("mkdir");
    fs::write(run.join("canary/file"), b"canary").expect("canary");
    let archive = run.join("archive.tar.gz");
    let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
    gz.write_all(&tar).expect("gzip");
    fs::write(&archive, gz.finish().expect("gzip")).expect("write the archive");
    let scratch = tempfile::Builder::new()
        .prefix("fuzz-1-abcdef0-")
        .tempdir_in(&tmp)
        .expect("scratch");
    let dest = scratch.path().to_path_buf();
    // `tmp/` changes as the scratch directory is made and removed: not
    // its times.
    let volatile = |mut snap: BTreeMap<PathBuf, Seen>| {
        if let Some(s) = snap.get_mut(&tmp) {
            s.mtime = (0, 0);
        }
        snap
    };
    let before = volatile(snapshot(base, Some(&dest)));

    let result = grabber::extract::unpack_checked(&archive, &dest, MAX_BYTES);
    match &result {
        Ok(unpacked) => {
            // What is kept: every link in it resolves inside it.
            let canon = dest.canonicalize().expect("canonicalize");
            for (path, seen) in snapshot(&dest, None) {
                if seen.kind == "symlink"
                    && let Ok(resolved) = path.canonicalize()
                {
                    assert!(
                        resolved.starts_with(&canon),
                        "kept {} -> {}",
                        path.display(),
                        resolved.display()
                    );
                }
                assert!(seen.kind != "other", "kept a special file {}", path.display());
            }
            // The manifest on disk is the one returned, a plain file: the
            // grabber reads it again from there (recovery, verify).
            let kept = dest.join(".slipway/manifest.json");
            assert_eq!(seen(&kept).kind, "file", "the manifest is not a file");
            let again: deploy::Manifest =
                serde_json::from_slice(&fs::read(&kept).expect("read the manifest"))
                    .expect("the manifest kept parses");
            assert_eq!(
                serde_json::to_value(&again).expect("json"),
                serde_json::to_value(&unpacked.manifest).expect("json"),
                "the manifest kept is not the one read"
            );
            // The inventory is what is on disk: a release found there later is
            // checked against it.
            let on_disk = deploy::tree::tree_digest(&dest).expect("tree digest");
            assert_eq!(
                unpacked.inventory.digest(),
                on_disk,
                "the inventory is not the tree extracted"
            );
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
    // As the grabber does: a refused release is thrown away, a kept one is
    // renamed into place; either way the scratch directory goes.
    drop(scratch);
    assert!(!dest.exists(), "the scratch directory could not be removed");
    let after = volatile(snapshot(base, None));
    for (path, was) in &before {
        match after.get(path) {
            None => panic!("{} was removed ({result:?})", path.display()),
            Some(now) => assert_eq!(now, was, "{} changed ({result:?})", path.display()),
        }
    }
    for path in after.keys() {
        assert!(
            before.contains_key(path),
            "{} was written outside the release ({result:?})",
            path.display()
        );
    }
});
