//! An app's root: an app in a monorepo is built from a subdirectory of its
//! repository. The commit is checked out beside the release directory,
//! the root's subtree becomes the release directory (the project: its
//! `slipway.toml`, lockfiles and everything the release holds), and the
//! rest of the checkout is removed before any build step runs, so nothing
//! outside the root reaches the build or the release.

use std::io;
use std::path::{Path, PathBuf};

use deploy::AppRoot;

use crate::BuildError;

/// Where the commit is checked out: `src` itself for an app built from
/// the whole repository, a scratch directory in `work_dir` (cleared) for
/// one with a root.
pub(crate) fn checkout_dir(
    work_dir: &Path,
    src: &Path,
    root: Option<&AppRoot>,
) -> Result<PathBuf, BuildError> {
    if root.is_none() {
        return Ok(src.to_path_buf());
    }
    let dir = work_dir.join("checkout");
    if dir.exists() {
        std::fs::remove_dir_all(&dir)
            .map_err(|e| BuildError::io(format!("clearing {}", dir.display()), e))?;
    }
    Ok(dir)
}

/// Makes `root` of the checkout in `tree` the release directory `src`
/// (which must be empty) and removes the rest of the checkout. A root
/// the commit does not have, or that is not a plain directory there (a
/// file, or reached through a symlink), is an error naming the root and
/// the commit.
pub(crate) fn take(
    tree: &Path,
    root: &AppRoot,
    commit: &str,
    src: &Path,
) -> Result<(), BuildError> {
    let refused = |why: &str| {
        BuildError::io(
            format!("building from the app's root `{root}` of commit {commit}"),
            io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "{why} (the app is registered with root `{root}`: was the directory moved, \
                     renamed or not committed yet?)"
                ),
            ),
        )
    };
    let mut walked = tree.to_path_buf();
    for part in root.as_str().split('/') {
        walked.push(part);
        let shown = walked.strip_prefix(tree).unwrap_or(&walked).display();
        match std::fs::symlink_metadata(&walked) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(refused(&format!("the commit has no `{shown}`")));
            }
            Err(e) => return Err(BuildError::io(format!("reading {}", walked.display()), e)),
            Ok(m) if m.file_type().is_symlink() => {
                return Err(refused(&format!(
                    "`{shown}` is a symlink in the commit; a root must be a real directory"
                )));
            }
            Ok(m) if !m.is_dir() => {
                return Err(refused(&format!("`{shown}` is a file, not a directory")));
            }
            Ok(_) => {}
        }
    }
    std::fs::remove_dir(src)
        .and_then(|()| std::fs::rename(&walked, src))
        .map_err(|e| BuildError::io(format!("moving the app's root `{root}` into place"), e))?;
    std::fs::remove_dir_all(tree)
        .map_err(|e| BuildError::io("removing the rest of the checkout", e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path().join("checkout");
        std::fs::create_dir_all(t.join("services/a")).unwrap();
        std::fs::create_dir_all(t.join("services/b")).unwrap();
        std::fs::write(t.join("services/a/slipway.toml"), "a").unwrap();
        std::fs::write(t.join("services/b/slipway.toml"), "b").unwrap();
        std::fs::write(t.join("services/file"), "f").unwrap();
        std::os::unix::fs::symlink("a", t.join("services/link")).unwrap();
        std::fs::create_dir(dir.path().join("release")).unwrap();
        dir
    }

    #[test]
    fn the_root_becomes_the_release_and_the_rest_goes() {
        let dir = tree();
        let (t, src) = (dir.path().join("checkout"), dir.path().join("release"));
        let root = AppRoot::parse("services/a").unwrap();
        take(&t, &root, "c0ffee", &src).unwrap();
        assert_eq!(
            std::fs::read_to_string(src.join("slipway.toml")).unwrap(),
            "a"
        );
        assert!(!t.exists(), "the rest of the checkout is removed");
    }

    #[test]
    fn a_missing_file_or_linked_root_is_refused_naming_it_and_the_commit() {
        for (root, why) in [
            ("services/c", "has no `services/c`"),
            ("nope/deeper", "has no `nope`"),
            ("services/file", "is a file"),
            ("services/link", "is a symlink"),
        ] {
            let dir = tree();
            let (t, src) = (dir.path().join("checkout"), dir.path().join("release"));
            let e = take(&t, &AppRoot::parse(root).unwrap(), "c0ffee", &src)
                .unwrap_err()
                .to_string();
            assert!(
                e.contains(&format!("root `{root}`")) && e.contains("c0ffee") && e.contains(why),
                "{root}: {e}"
            );
            assert!(src.is_dir(), "the release directory is left alone");
        }
    }
}
