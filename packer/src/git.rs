//! Git: resolving a ref on a remote to a commit, and checking a commit out
//! into a plain directory (no `.git`), with git2.
//!
//! Every remote is reached the same way, through a libgit2 `Remote`, so the
//! local path and `file://` transports used today and the http/ssh ones to
//! come differ only in [`fetch_options`] (credentials, certificates).

use std::path::Path;

use git2::{AutotagOption, Direction, FetchOptions, Oid, Remote, Repository};

use crate::BuildError;

/// Branches and tags: everything a commit we build may be reachable from.
const REFSPECS: &[&str] = &["+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"];

/// What a checkout needs to tell the rest of the build about the commit.
#[derive(Debug, Clone)]
pub(crate) struct CheckedOut {
    /// Committer time, seconds since the epoch: the artifact's fixed mtime.
    pub(crate) commit_time: i64,
}

/// Options for fetching and listing. Credentials callbacks for http/ssh
/// remotes go here.
fn fetch_options<'cb>() -> FetchOptions<'cb> {
    let mut opts = FetchOptions::new();
    opts.download_tags(AutotagOption::All);
    opts
}

fn fetch_error(url: &str) -> impl Fn(git2::Error) -> BuildError + '_ {
    move |error| BuildError::Git {
        action: format!("fetching from {url}"),
        error,
        log: String::new(),
    }
}

/// For a local remote (a path or `file://`), checks it exists first: libgit2
/// reports a missing path as "unsupported URL protocol".
fn check_local(git_url: &str) -> Result<(), BuildError> {
    let path = match git_url.strip_prefix("file://") {
        Some(p) => p,
        None if git_url.contains("://") => return Ok(()),
        // scp-like ssh (`host:path`) is not local either.
        None if git_url.contains(':') && !git_url.starts_with('/') => return Ok(()),
        None => git_url,
    };
    if Path::new(path).exists() {
        return Ok(());
    }
    Err(BuildError::Git {
        action: format!("fetching from {git_url}"),
        error: git2::Error::from_str("no such directory"),
        log: String::new(),
    })
}

/// Whether `s` is hex digits only.
fn is_hex(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Resolves a branch, a tag (annotated tags peeled to their commit), a full
/// ref name or a full or short sha on the remote to a full commit sha.
///
/// Branches and tags are answered from the remote's advertisement alone; a
/// sha needs the objects, so the remote is fetched into a scratch repository.
#[tracing::instrument(skip_all, fields(git_url = %git_url, git_ref = %git_ref))]
pub fn resolve_ref(git_url: &str, git_ref: &str) -> Result<String, BuildError> {
    let unknown = || BuildError::UnknownRef {
        url: git_url.to_string(),
        git_ref: git_ref.to_string(),
        log: String::new(),
    };
    if git_ref.is_empty() || git_ref.starts_with('-') {
        return Err(unknown());
    }

    check_local(git_url)?;
    let mut remote = Remote::create_detached(git_url).map_err(fetch_error(git_url))?;
    let conn = remote
        .connect_auth(Direction::Fetch, None, None)
        .map_err(fetch_error(git_url))?;
    let heads = conn.list().map_err(fetch_error(git_url))?;
    let candidates = [
        format!("refs/heads/{git_ref}"),
        format!("refs/tags/{git_ref}"),
        git_ref.to_string(),
    ];
    for name in &candidates {
        // An annotated tag is advertised twice; `^{}` names its commit.
        let peeled = format!("{name}^{{}}");
        let found = heads
            .iter()
            .find(|h| h.name() == peeled)
            .or_else(|| heads.iter().find(|h| h.name() == name.as_str()));
        if let Some(head) = found {
            return Ok(head.oid().to_string());
        }
    }
    drop(conn);

    if !is_hex(git_ref) || git_ref.len() < 4 || git_ref.len() > 40 {
        return Err(unknown());
    }
    let scratch = tempfile::tempdir().map_err(|error| BuildError::Io {
        action: "creating a scratch directory to fetch into".to_string(),
        error,
        log: String::new(),
    })?;
    let repo = fetch_mirror(git_url, scratch.path())?;
    let found = repo.find_commit_by_prefix(git_ref).map(|c| c.id());
    match found {
        Ok(oid) => Ok(oid.to_string()),
        Err(e) if e.code() == git2::ErrorCode::Ambiguous => Err(BuildError::AmbiguousRef {
            url: git_url.to_string(),
            git_ref: git_ref.to_string(),
            log: String::new(),
        }),
        Err(_) => Err(unknown()),
    }
}

/// Fetches every branch and tag of the remote into a new bare repository.
fn fetch_mirror(git_url: &str, dir: &Path) -> Result<Repository, BuildError> {
    check_local(git_url)?;
    let repo = Repository::init_bare(dir).map_err(|error| BuildError::Git {
        action: format!("creating a scratch repository in {}", dir.display()),
        error,
        log: String::new(),
    })?;
    {
        let mut remote = repo
            .remote_anonymous(git_url)
            .map_err(fetch_error(git_url))?;
        remote
            .fetch(REFSPECS, Some(&mut fetch_options()), None)
            .map_err(fetch_error(git_url))?;
    }
    Ok(repo)
}

/// Checks out `commit` (a full hex sha) from the remote into `dest`, which
/// must not exist yet; `git_dir` holds the fetched objects and may be removed
/// afterwards. The checkout holds the tree only, no `.git`.
pub(crate) fn checkout(
    git_url: &str,
    commit: &str,
    git_dir: &Path,
    dest: &Path,
) -> Result<CheckedOut, BuildError> {
    let oid = match Oid::from_str(commit) {
        Ok(oid) if commit.len() == 40 && is_hex(commit) => oid,
        _ => {
            return Err(BuildError::BadCommit {
                commit: commit.to_string(),
                log: String::new(),
            });
        }
    };
    let repo = fetch_mirror(git_url, git_dir)?;
    let found = repo
        .find_commit(oid)
        .map_err(|_| BuildError::CommitNotFound {
            url: git_url.to_string(),
            commit: commit.to_string(),
            log: String::new(),
        })?;
    let checkout_error = |error: git2::Error| BuildError::Git {
        action: format!("checking out {commit}"),
        error,
        log: String::new(),
    };
    let tree = found.tree().map_err(checkout_error)?;
    std::fs::create_dir_all(dest).map_err(|error| BuildError::Io {
        action: format!("creating the checkout directory {}", dest.display()),
        error,
        log: String::new(),
    })?;
    let mut opts = git2::build::CheckoutBuilder::new();
    opts.target_dir(dest)
        .force()
        .recreate_missing(true)
        .update_index(false);
    repo.checkout_tree(tree.as_object(), Some(&mut opts))
        .map_err(checkout_error)?;
    Ok(CheckedOut {
        commit_time: found.time().seconds(),
    })
}
