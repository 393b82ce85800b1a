//! The example apps as git repositories (`slipway dev` registers them), and
//! the one git helper the end-to-end tests share: commit every file.

use std::path::{Path, PathBuf};

use anyhow::Context;
use deploy::AppName;

/// The examples shipped with the source tree.
pub const EXAMPLES_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples");

/// Makes each `examples/<name>/` (with a `slipway.toml`) a git repository
/// under `repos/<name>` with a `main` branch, once. Returns the apps.
pub fn example_repos(examples: &Path, repos: &Path) -> anyhow::Result<Vec<(AppName, PathBuf)>> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(examples) {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(dir = %examples.display(), error = %e, "no example apps");
            return Ok(out);
        }
    };
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("slipway.toml").is_file())
        .collect();
    dirs.sort();
    for dir in dirs {
        let Some(name) = dir.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let app =
            AppName::parse(name).with_context(|| format!("example directory {}", dir.display()))?;
        let repo = repos.join(name);
        if !repo.join(".git").exists() {
            init_repo_from(&dir, &repo)?;
        }
        out.push((app, repo));
    }
    Ok(out)
}

/// Copies `src` into a new repository at `dest` and commits it on `main`.
pub fn init_repo_from(src: &Path, dest: &Path) -> anyhow::Result<git2::Oid> {
    std::fs::create_dir_all(dest).with_context(|| format!("cannot create {}", dest.display()))?;
    copy_tree(src, dest)?;
    let mut opts = git2::RepositoryInitOptions::new();
    opts.initial_head("main");
    let repo = git2::Repository::init_opts(dest, &opts)
        .with_context(|| format!("cannot create a git repository in {}", dest.display()))?;
    commit_all(&repo, "Initial commit")
}

/// Stages every file and commits on the current branch.
pub fn commit_all(repo: &git2::Repository, message: &str) -> anyhow::Result<git2::Oid> {
    let mut index = repo.index()?;
    index.add_all(["*"], git2::IndexAddOption::DEFAULT, None)?;
    index.write()?;
    let tree = repo.find_tree(index.write_tree()?)?;
    let sig = git2::Signature::now("Slipway", "slipway@localhost")?;
    let parent = repo.head().ok().and_then(|h| h.peel_to_commit().ok());
    let parents: Vec<&git2::Commit> = parent.iter().collect();
    Ok(repo.commit(Some("HEAD"), &sig, &sig, message, &tree, &parents)?)
}

fn copy_tree(src: &Path, dest: &Path) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(src).with_context(|| format!("cannot read {}", src.display()))? {
        let entry = entry?;
        let from = entry.path();
        let to = dest.join(entry.file_name());
        let ty = entry.file_type()?;
        if ty.is_dir() {
            std::fs::create_dir_all(&to)?;
            copy_tree(&from, &to)?;
        } else if ty.is_file() {
            std::fs::copy(&from, &to).with_context(|| format!("cannot copy {}", from.display()))?;
        }
    }
    Ok(())
}
