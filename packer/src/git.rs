//! Git: resolving a ref on a remote to a commit (`resolve.rs`), and
//! checking a commit out into a plain directory (no `.git`), with git2.
//!
//! Every remote (a local path, `file://`, `git://`, `http(s)://`, `ssh://`)
//! is reached the same way, through a libgit2 `Remote` whose callbacks
//! answer credential requests from [`GitCredentials`]. With a cache
//! directory, each remote has a bare mirror there that later builds fetch
//! into incrementally, so a push costs the new objects only.

use std::fs::File;
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use git2::{
    AutotagOption, Cred, CredentialType, FetchOptions, FetchPrune, Oid, RemoteCallbacks, Repository,
};
use secrecy::ExposeSecret;
use sha2::Digest;

use crate::BuildError;
use crate::settings::{GitCredentials, GitTimeouts};

/// Branches and tags: everything a commit we build may be reachable from.
const REFSPECS: &[&str] = &["+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"];

/// What a checkout needs to tell the rest of the build about the commit.
#[derive(Debug, Clone)]
pub(crate) struct CheckedOut {
    /// Committer time, seconds since the epoch: the artifact's fixed mtime.
    pub(crate) commit_time: i64,
    /// The commit's author, `Name <email>` (`None` when not UTF-8 or empty).
    pub(crate) author: Option<String>,
    /// The first line of the commit's message, at most
    /// [`MESSAGE_MAX_CHARS`] characters (`None` when empty or not UTF-8).
    pub(crate) message: Option<String>,
}

/// How many characters of a commit's summary a build records.
pub const MESSAGE_MAX_CHARS: usize = 200;

/// The commit's author as a build records it: `Name <email>`, or just the
/// name (or email) when the other is missing.
fn commit_author(commit: &git2::Commit<'_>) -> Option<String> {
    let sig = commit.author();
    let name = sig.name().ok().map(str::trim).filter(|n| !n.is_empty());
    let email = sig.email().ok().map(str::trim).filter(|e| !e.is_empty());
    match (name, email) {
        (Some(n), Some(e)) => Some(format!("{n} <{e}>")),
        (Some(n), None) => Some(n.to_string()),
        (None, Some(e)) => Some(format!("<{e}>")),
        (None, None) => None,
    }
}

/// The first non-empty line of `message`, trimmed and cut to
/// [`MESSAGE_MAX_CHARS`] characters (never inside a character).
pub fn message_summary(message: &str) -> Option<String> {
    let line = message.lines().map(str::trim).find(|l| !l.is_empty())?;
    Some(line.chars().take(MESSAGE_MAX_CHARS).collect())
}

/// A URL split at its user information (RFC 3986: the authority runs to
/// the first `/`, `?` or `#`, and its user information to the last `@`):
/// `(scheme, userinfo, rest after the '@')`; `None` when there is none (a
/// path, scp-like `git@host:path`, or a URL without `user@`).
fn userinfo(url: &str) -> Option<(&str, &str, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (userinfo, _) = rest[..authority_end].rsplit_once('@')?;
    Some((scheme, userinfo, &rest[userinfo.len() + 1..]))
}

/// Whether user information in a URL of this scheme is a login name only
/// (ssh's `git@`), rather than something that may be a token.
fn user_is_a_login(scheme: &str) -> bool {
    matches!(
        scheme.to_ascii_lowercase().as_str(),
        "ssh" | "ssh+git" | "git+ssh"
    )
}

/// The connect and stall timeouts this process gave libgit2.
static APPLIED: OnceLock<(Duration, Duration)> = OnceLock::new();

/// Gives libgit2 the connect and stall timeouts, once per process: they are
/// global to libgit2, so the first settings that reach a git operation win
/// (a process runs one packer configuration; tests run one per process).
fn apply_timeouts(t: &GitTimeouts) {
    APPLIED.get_or_init(|| {
        let ms = |d: Duration| i32::try_from(d.as_millis()).unwrap_or(i32::MAX).max(1);
        set_libgit2_timeouts(ms(t.connect), ms(t.stall));
        (t.connect, t.stall)
    });
}

#[allow(unsafe_code)]
fn set_libgit2_timeouts(connect_ms: i32, stall_ms: i32) {
    // SAFETY: the options are plain ints in libgit2 that its socket streams
    // read when they connect, read or write. This runs once, inside
    // `APPLIED.get_or_init`, which every git network operation of this
    // crate goes through first: an operation racing it waits on the
    // `OnceLock` and so happens after the writes. No other code in the
    // workspace opens network connections with libgit2.
    unsafe {
        let _ = git2::opts::set_server_connect_timeout_in_milliseconds(connect_ms);
        let _ = git2::opts::set_server_timeout_in_milliseconds(stall_ms);
    }
}

/// Whether a remote's URL is one packer answers a password or key
/// challenge on: https for passwords; ssh (`ssh://` or scp-like
/// `user@host:path`) for keys and user names. Never http:// or git://,
/// where the answer would cross the network in clear.
fn may_answer(url: &str, kind: CredentialType) -> bool {
    let lower = url.to_ascii_lowercase();
    let ssh = lower.starts_with("ssh://")
        || lower.starts_with("git+ssh://")
        || lower.starts_with("ssh+git://")
        || (!lower.contains("://") && lower.contains(':') && !lower.starts_with('/'));
    if kind == CredentialType::USER_PASS_PLAINTEXT {
        lower.starts_with("https://")
    } else {
        ssh
    }
}

/// A URL fit for logs, errors and API output: credentials in it are
/// replaced by `***`. Over http(s) (and any scheme but ssh) the whole user
/// information goes, since a token is often given as the user name
/// (`https://***@git.example.com/app.git`); over ssh the login stays and
/// only a password goes (`ssh://git:***@host/app.git`).
pub fn redact_url(url: &str) -> String {
    let Some((scheme, info, host_and_path)) = userinfo(url) else {
        return url.to_string();
    };
    if user_is_a_login(scheme) {
        match info.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host_and_path}"),
            None => url.to_string(),
        }
    } else {
        format!("{scheme}://***@{host_and_path}")
    }
}

/// What credentials a repository URL carries, if any, in words for an
/// error message (never the credentials themselves): a password, or a user
/// name that may be a token (over http(s) and every scheme but ssh, where
/// `git@` is a login). Such URLs are refused at registration: an app's URL
/// is shown to every viewer and sent to every build worker, while
/// credentials belong in packer's configuration.
pub fn url_credentials(url: &str) -> Option<&'static str> {
    let (scheme, info, _) = userinfo(url.trim())?;
    if info.contains(':') {
        Some("a password (`user:password@`)")
    } else if user_is_a_login(scheme) {
        None
    } else {
        Some("a user name, which may be a token (`token@`)")
    }
}

/// Callbacks that answer credential requests once per kind: libgit2 asks
/// again after a refusal, and answering the same thing forever would loop.
fn callbacks(creds: &GitCredentials) -> RemoteCallbacks<'_> {
    let mut cb = RemoteCallbacks::new();
    let mut offered = CredentialType::empty();
    cb.credentials(move |url, url_user, allowed| {
        let refused = |what: &str| {
            Err(git2::Error::from_str(&format!(
                "authentication failed: the remote refused the configured {what}"
            )))
        };
        let in_clear = |what: &str| {
            Err(git2::Error::from_str(&format!(
                "the remote {} asks for {what}; packer sends credentials only over https:// (passwords) and ssh (keys), never in clear",
                redact_url(url)
            )))
        };
        if allowed.contains(CredentialType::USER_PASS_PLAINTEXT)
            && !may_answer(url, CredentialType::USER_PASS_PLAINTEXT)
        {
            return in_clear("a username and password");
        }
        if allowed.intersects(CredentialType::SSH_KEY | CredentialType::USERNAME)
            && !allowed.contains(CredentialType::USER_PASS_PLAINTEXT)
            && !may_answer(url, CredentialType::SSH_KEY)
        {
            return in_clear("credentials");
        }
        if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) {
            if offered.contains(CredentialType::USER_PASS_PLAINTEXT) {
                return refused("git username and password");
            }
            offered |= CredentialType::USER_PASS_PLAINTEXT;
            let Some(password) = &creds.password else {
                return Err(git2::Error::from_str(
                    "authentication required: the remote asks for a username and password and \
                     none is configured (packer's git credentials)",
                ));
            };
            let user = creds.username.as_deref().or(url_user).unwrap_or("git");
            return Cred::userpass_plaintext(user, password.expose_secret());
        }
        let ssh_user = url_user.or(creds.username.as_deref()).unwrap_or("git");
        if allowed.contains(CredentialType::SSH_KEY) {
            if offered.contains(CredentialType::SSH_KEY) {
                return refused("ssh key");
            }
            offered |= CredentialType::SSH_KEY;
            return match &creds.ssh_key {
                Some(key) => Cred::ssh_key(ssh_user, None, key, None),
                None => Cred::ssh_key_from_agent(ssh_user),
            };
        }
        if allowed.contains(CredentialType::USERNAME) {
            if offered.contains(CredentialType::USERNAME) {
                return refused("user name");
            }
            offered |= CredentialType::USERNAME;
            return Cred::username(ssh_user);
        }
        refused("credentials (none of the kinds it accepts is configured)")
    });
    cb
}

/// Options for fetching: credentials, tags, pruning of branches the remote
/// deleted (a mirror must not keep building them), and the fetch's deadline
/// (libgit2 aborts when a progress callback says no).
fn fetch_options(creds: &GitCredentials, deadline: Instant) -> FetchOptions<'_> {
    let mut cb = callbacks(creds);
    cb.transfer_progress(move |_| Instant::now() < deadline);
    cb.sideband_progress(move |_| Instant::now() < deadline);
    let mut opts = FetchOptions::new();
    opts.remote_callbacks(cb)
        .download_tags(AutotagOption::All)
        .prune(FetchPrune::On);
    opts
}

fn fetch_error(url: &str) -> impl Fn(git2::Error) -> BuildError + '_ {
    move |error| {
        let error = if error.code() == git2::ErrorCode::Timeout
            || error.message().contains("timed out")
        {
            git2::Error::from_str(&format!(
                "the remote did not answer in time ({}); check that it is up, or raise the git timeouts",
                error.message()
            ))
        } else {
            error
        };
        BuildError::Git {
            action: format!("fetching from {}", redact_url(url)),
            error,
            log: String::new(),
        }
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
        action: format!("fetching from {}", redact_url(git_url)),
        error: git2::Error::from_str("no such directory"),
        log: String::new(),
    })
}

/// Whether `s` is hex digits only.
fn is_hex(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn scratch_dir() -> Result<tempfile::TempDir, BuildError> {
    tempfile::tempdir().map_err(|error| BuildError::Io {
        action: "creating a scratch directory to fetch into".to_string(),
        error,
        log: String::new(),
    })
}

/// A repository holding every branch and tag of a remote, fetched just now.
pub(crate) struct Fetched {
    pub(crate) repo: Repository,
    /// Whether `repo` is the cached mirror (else a scratch repository).
    pub(crate) mirrored: bool,
    /// Held while the mirror is in use: builds sharing a cache directory
    /// take turns with each remote's mirror.
    _lock: Option<File>,
}

/// Fetches every branch and tag of the remote: into its mirror under the
/// cache directory when there is one (incrementally, under a lock), else
/// into a new bare repository at `scratch`.
pub(crate) fn fetch(
    settings: &crate::Settings,
    git_url: &str,
    scratch: &Path,
) -> Result<Fetched, BuildError> {
    check_local(git_url)?;
    apply_timeouts(&settings.git_timeouts);
    let deadline = Instant::now() + settings.git_timeouts.fetch;
    let Some(cache) = &settings.cache_dir else {
        let repo = fetch_into(&settings.git, git_url, scratch, false, deadline)?;
        return Ok(Fetched {
            repo,
            mirrored: false,
            _lock: None,
        });
    };
    let dir = cache.join("git");
    std::fs::create_dir_all(&dir)
        .map_err(|e| BuildError::io(format!("creating {}", dir.display()), e))?;
    let key = hex::encode(&sha2::Sha256::digest(git_url.as_bytes())[..12]);
    let mirror = dir.join(format!("{key}.git"));
    let lock_path = dir.join(format!("{key}.lock"));
    let lock = File::create(&lock_path)
        .and_then(|f| f.lock().map(|()| f))
        .map_err(|e| BuildError::io(format!("locking {}", lock_path.display()), e))?;
    let repo = match fetch_into(&settings.git, git_url, &mirror, true, deadline) {
        Ok(repo) => repo,
        // A mirror left broken (a disk filled up, a killed fetch) is only
        // a cache: start it again once. A remote that refuses us will
        // refuse again, and that error is the one to report.
        Err(first) if mirror.exists() => {
            tracing::warn!(error = %first, mirror = %mirror.display(), "fetching into the mirror failed; recreating it");
            std::fs::remove_dir_all(&mirror)
                .map_err(|e| BuildError::io(format!("removing {}", mirror.display()), e))?;
            fetch_into(&settings.git, git_url, &mirror, true, deadline)?
        }
        Err(e) => return Err(e),
    };
    Ok(Fetched {
        repo,
        mirrored: true,
        _lock: Some(lock),
    })
}

/// Opens (or creates) the bare repository at `dir` and fetches into it.
fn fetch_into(
    creds: &GitCredentials,
    git_url: &str,
    dir: &Path,
    reuse: bool,
    deadline: Instant,
) -> Result<Repository, BuildError> {
    let opened = if reuse && dir.exists() {
        Repository::open_bare(dir)
    } else {
        Repository::init_bare(dir)
    };
    let repo = opened.map_err(|error| BuildError::Git {
        action: format!("opening the repository {}", dir.display()),
        error,
        log: String::new(),
    })?;
    {
        let mut remote = repo
            .remote_anonymous(git_url)
            .map_err(fetch_error(git_url))?;
        remote
            .fetch(REFSPECS, Some(&mut fetch_options(creds, deadline)), None)
            .map_err(|e| {
                if Instant::now() >= deadline {
                    BuildError::Git {
                        action: format!("fetching from {}", redact_url(git_url)),
                        error: git2::Error::from_str(
                            "the fetch did not finish within its time limit",
                        ),
                        log: String::new(),
                    }
                } else {
                    fetch_error(git_url)(e)
                }
            })?;
    }
    Ok(repo)
}

/// Checks out `commit` (a full hex sha) from the remote into `dest`, which
/// must not exist yet; `git_dir` holds the fetched objects when there is no
/// cache, and may be removed afterwards. The checkout holds the tree only,
/// no `.git`.
pub(crate) fn checkout(
    settings: &crate::Settings,
    git_url: &str,
    commit: &str,
    git_dir: &Path,
    dest: &Path,
) -> Result<(CheckedOut, bool), BuildError> {
    let oid = match Oid::from_str(commit) {
        Ok(oid) if commit.len() == 40 && is_hex(commit) => oid,
        _ => {
            return Err(BuildError::BadCommit {
                commit: commit.to_string(),
                log: String::new(),
            });
        }
    };
    let fetched = fetch(settings, git_url, git_dir)?;
    let repo = &fetched.repo;
    let found = repo
        .find_commit(oid)
        .map_err(|_| BuildError::CommitNotFound {
            url: redact_url(git_url),
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
    Ok((
        CheckedOut {
            commit_time: found.time().seconds(),
            author: commit_author(&found),
            message: found.message().ok().and_then(message_summary),
        },
        fetched.mirrored,
    ))
}

/// Where a commit stands on a branch, as the remote's mirror says just now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnBranch {
    /// The commit asked about, as a full sha (the branch's tip when none
    /// was named).
    pub commit: String,
    /// Whether the branch contains the commit (it is the tip, or the tip
    /// descends from it).
    pub on_branch: bool,
    /// One of the commits given as already built that descends from
    /// `commit`: `commit` is older than a build, and deploying it would be
    /// a downgrade.
    pub newer_built: Option<String>,
}

/// Fetches the remote (into its mirror when there is a cache) and says
/// where `commit` (a full sha; the tip of `branch` when `None`) stands:
/// whether `branch` contains it, and whether one of `built` (full shas of
/// commits already built) descends from it. Blocking.
#[tracing::instrument(skip_all, fields(git_url = %redact_url(git_url), branch = %branch))]
pub fn locate_on_branch(
    settings: &crate::Settings,
    git_url: &str,
    branch: &str,
    commit: Option<&str>,
    built: &[String],
) -> Result<OnBranch, BuildError> {
    let scratch = scratch_dir()?;
    let fetched = fetch(settings, git_url, &scratch.path().join("git"))?;
    let repo = &fetched.repo;
    let git_error = |action: String| {
        move |error: git2::Error| BuildError::Git {
            action,
            error,
            log: String::new(),
        }
    };
    let tip = repo
        .find_reference(&format!("refs/heads/{branch}"))
        .and_then(|r| r.peel_to_commit())
        .map_err(|_| BuildError::UnknownRef {
            url: redact_url(git_url),
            git_ref: branch.to_string(),
            branches: repo
                .branches(Some(git2::BranchType::Local))
                .into_iter()
                .flatten()
                .filter_map(|b| Some(b.ok()?.0.name().ok()??.to_string()))
                .take(5)
                .collect(),
            log: String::new(),
        })?
        .id();
    let oid = match commit {
        None => tip,
        Some(c) => {
            let oid = match Oid::from_str(c) {
                Ok(oid) if c.len() == 40 && is_hex(c) => oid,
                _ => {
                    return Err(BuildError::BadCommit {
                        commit: c.to_string(),
                        log: String::new(),
                    });
                }
            };
            repo.find_commit(oid)
                .map_err(|_| BuildError::CommitNotFound {
                    url: redact_url(git_url),
                    commit: c.to_string(),
                    log: String::new(),
                })?
                .id()
        }
    };
    let on_branch = oid == tip
        || repo
            .graph_descendant_of(tip, oid)
            .map_err(git_error(format!(
                "comparing {oid} with the tip of `{branch}`"
            )))?;
    let mut newer_built = None;
    for b in built {
        let Ok(b_oid) = Oid::from_str(b) else {
            continue;
        };
        // A built commit the mirror no longer has (history rewritten and
        // collected) says nothing about this one.
        if b_oid == oid || repo.find_commit(b_oid).is_err() {
            continue;
        }
        if repo
            .graph_descendant_of(b_oid, oid)
            .map_err(git_error(format!("comparing {oid} with {b_oid}")))?
        {
            newer_built = Some(b.clone());
            break;
        }
    }
    Ok(OnBranch {
        commit: oid.to_string(),
        on_branch,
        newer_built,
    })
}

mod resolve;
#[cfg(test)]
mod tests;

pub use resolve::resolve_ref;
