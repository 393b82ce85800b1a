//! The dependency step of python and node builds, cached by everything that
//! decides its result: the declared dependencies (lockfile or requirements),
//! the interpreter version and the platform. A build whose dependencies did
//! not change restores the installed tree and never runs `pip` or `npm`.
//!
//! The cache lives under `<cache_dir>/deps/<key>/`, one directory per key,
//! written aside and renamed into place when complete, so a killed build
//! leaves no half-filled entry; builds sharing the directory take turns per
//! key under a file lock. The least recently used entries beyond
//! [`MAX_ENTRIES`] are removed.

use std::fs::File;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::BuildError;
use crate::log::Log;

/// Cache entries kept; each is one app's dependency tree at one version of
/// its lockfile, so this covers several apps' recent history.
const MAX_ENTRIES: usize = 48;

/// Bumped when what an install step writes changes, so old entries stop
/// matching.
const FORMAT: &str = "slipway-deps/1";

/// The key of a dependency step: a hash of what decides its result.
pub(crate) fn key(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    h.update(FORMAT.as_bytes());
    for part in parts {
        // Length-prefixed, so ("ab", "c") and ("a", "bc") differ.
        h.update((part.len() as u64).to_le_bytes());
        h.update(part);
    }
    hex::encode(h.finalize())
}

/// Fills `dest` (inside the checkout) with the step's result: restored from
/// the cache when an entry for `key` exists, else made by `install`, which
/// must create `dest`, and then kept in the cache. Without a cache
/// directory, `install` always runs.
pub(crate) fn restore_or_install(
    cache_dir: Option<&Path>,
    what: &str,
    key: &str,
    dest: &Path,
    log: &mut Log,
    install: impl FnOnce(&mut Log) -> Result<(), BuildError>,
) -> Result<(), BuildError> {
    let short = &key[..12];
    let Some(cache_dir) = cache_dir else {
        log.line(format!(
            "{what}: installing (no dependency cache configured)"
        ));
        return install(log);
    };
    let root = cache_dir.join("deps");
    std::fs::create_dir_all(&root)
        .map_err(|e| BuildError::io(format!("creating {}", root.display()), e))?;
    let entry = root.join(key);
    let lock_path = root.join(format!("{key}.lock"));
    let _lock = File::create(&lock_path)
        .and_then(|f| f.lock().map(|()| f))
        .map_err(|e| BuildError::io(format!("locking {}", lock_path.display()), e))?;

    if entry.is_dir() {
        let files = copy_tree(&entry, dest)
            .map_err(|e| BuildError::io(format!("restoring {what} from the cache"), e))?;
        // Its mtime says when it was last used, for pruning.
        let _ = File::open(&entry).and_then(|f| f.set_modified(std::time::SystemTime::now()));
        log.line(format!(
            "{what}: cache hit (key {short}), restored {files} files; install skipped"
        ));
        return Ok(());
    }

    log.line(format!("{what}: cache miss (key {short}), installing"));
    install(log)?;
    let aside = root.join(format!(".{key}.{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&aside);
    let kept = copy_tree(dest, &aside).and_then(|_| std::fs::rename(&aside, &entry));
    match kept {
        Ok(()) => log.line(format!("{what}: cached under key {short}")),
        // The build has what it needs; the next one installs again.
        Err(e) => {
            let _ = std::fs::remove_dir_all(&aside);
            log.line(format!("{what}: warning: could not cache the result: {e}"));
        }
    }
    prune(&root);
    Ok(())
}

/// Removes the least recently used entries beyond [`MAX_ENTRIES`]. An entry
/// in use by another build is locked, and skipped.
fn prune(root: &Path) {
    let Ok(read) = std::fs::read_dir(root) else {
        return;
    };
    let mut entries: Vec<(std::time::SystemTime, PathBuf)> = read
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    if entries.len() <= MAX_ENTRIES {
        return;
    }
    entries.sort();
    let excess = entries.len() - MAX_ENTRIES;
    for (_, path) in entries.into_iter().take(excess) {
        let lock_path = path.with_extension("lock");
        let Ok(lock) = File::create(&lock_path) else {
            continue;
        };
        if lock.try_lock().is_ok() {
            let _ = std::fs::remove_dir_all(&path);
            let _ = std::fs::remove_file(&lock_path);
        }
    }
}

/// Copies a directory tree (files with their modes, directories, symlinks
/// as links); returns the number of files. `to` must not exist.
pub(crate) fn copy_tree(from: &Path, to: &Path) -> std::io::Result<u64> {
    copy_tree_skipping(from, to, &[])
}

/// [`copy_tree`] leaving out, at any depth, the entries named in `skip`
/// (and what is under them).
pub(crate) fn copy_tree_skipping(from: &Path, to: &Path, skip: &[&str]) -> std::io::Result<u64> {
    let mut files = 0;
    let walk = walkdir::WalkDir::new(from)
        .follow_links(false)
        .into_iter()
        .filter_entry(|e| {
            e.depth() == 0
                || !skip
                    .iter()
                    .any(|s| e.file_name() == std::ffi::OsStr::new(s))
        });
    for item in walk {
        let item = item.map_err(|e| {
            e.into_io_error()
                .unwrap_or_else(|| std::io::Error::other("filesystem loop"))
        })?;
        let rel = item
            .path()
            .strip_prefix(from)
            .map_err(|_| std::io::Error::other("walked outside the tree"))?;
        let target = to.join(rel);
        let ft = item.file_type();
        if ft.is_dir() {
            std::fs::create_dir_all(&target)?;
        } else if ft.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(item.path())?, &target)?;
        } else if ft.is_file() {
            std::fs::copy(item.path(), &target)?;
            files += 1;
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    #[test]
    fn keys_separate_their_parts() {
        assert_ne!(key(&[b"ab", b"c"]), key(&[b"a", b"bc"]));
        assert_eq!(key(&[b"x"]), key(&[b"x"]));
    }

    #[test]
    fn a_second_install_with_the_same_key_is_restored() {
        let cache = tempfile::tempdir().unwrap();
        let k = key(&[b"requirements"]);
        let runs = Cell::new(0);
        let install_into = |dest: PathBuf| {
            let runs = &runs;
            move |_: &mut Log| {
                runs.set(runs.get() + 1);
                std::fs::create_dir_all(dest.join("bin")).unwrap();
                std::fs::write(dest.join("lib.py"), "x = 1\n").unwrap();
                std::fs::write(dest.join("bin/tool"), "#!/bin/sh\n").unwrap();
                std::os::unix::fs::symlink("../lib.py", dest.join("bin/link")).unwrap();
                Ok(())
            }
        };
        for round in 0..2 {
            let build = tempfile::tempdir().unwrap();
            let dest = build.path().join("deps");
            let mut log = Log::default();
            restore_or_install(
                Some(cache.path()),
                "pip",
                &k,
                &dest,
                &mut log,
                install_into(dest.clone()),
            )
            .unwrap();
            assert_eq!(
                std::fs::read_to_string(dest.join("lib.py")).unwrap(),
                "x = 1\n"
            );
            assert_eq!(
                std::fs::read_link(dest.join("bin/link")).unwrap(),
                Path::new("../lib.py")
            );
            let text = log.text();
            if round == 0 {
                assert!(text.contains("cache miss"), "{text}");
            } else {
                assert!(
                    text.contains("cache hit") && text.contains("restored 2 files"),
                    "{text}"
                );
            }
        }
        assert_eq!(runs.get(), 1, "the install ran again despite the cache");
    }

    #[test]
    fn a_failed_install_caches_nothing() {
        let cache = tempfile::tempdir().unwrap();
        let build = tempfile::tempdir().unwrap();
        let k = key(&[b"bad"]);
        let r = restore_or_install(
            Some(cache.path()),
            "pip",
            &k,
            &build.path().join("deps"),
            &mut Log::default(),
            |_| Err(BuildError::io("installing", std::io::Error::other("boom"))),
        );
        assert!(r.is_err());
        assert!(!cache.path().join("deps").join(&k).exists());
    }
}
