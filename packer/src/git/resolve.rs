//! Resolving a ref as a person writes it (`main`, `v1.4^`, `3f9c2ab~1`,
//! `HEAD~1`) on a remote to the full sha of one commit.

use deploy::{GitRef, RevStep};
use git2::{Direction, Oid, Remote, Repository};

use super::{
    apply_timeouts, callbacks, check_local, fetch, fetch_error, is_hex, redact_url, scratch_dir,
};
use crate::BuildError;

/// How many of the remote's branches an unknown ref's error names.
const BRANCHES_SHOWN: usize = 5;

/// Resolves `git_ref` on the remote to a full commit sha. The ref starts
/// from a branch, a tag (an annotated tag taken as its commit), a full ref
/// name, a full or short sha, or `HEAD`, which stands for the tip of
/// `branch`, the branch the app follows (AppTracker has no working tree
/// whose checkout `HEAD` could name); any `~N`, `^` and `^N` steps back
/// follow (see [`GitRef`]).
///
/// A name alone is answered from the remote's advertisement; a sha, or
/// steps back, need the objects: the remote is fetched (into its mirror
/// when there is a cache directory, else into a scratch repository) and
/// the steps are walked there, one parent at a time, so that a step past
/// the history says how far the history goes. Blocking.
#[tracing::instrument(
    skip_all,
    fields(git_url = %redact_url(git_url), git_ref = %git_ref, branch = %branch)
)]
pub fn resolve_ref(
    settings: &crate::Settings,
    git_url: &str,
    git_ref: &str,
    branch: &str,
) -> Result<String, BuildError> {
    let parsed = GitRef::parse(git_ref).map_err(|error| BuildError::BadRef {
        error,
        log: String::new(),
    })?;
    let name = if parsed.is_head() {
        format!("refs/heads/{branch}")
    } else {
        parsed.name().to_string()
    };
    let (found, branches) = advertised(settings, git_url, &name)?;
    let unknown = |branches: Vec<String>| BuildError::UnknownRef {
        url: redact_url(git_url),
        git_ref: parsed.name().to_string(),
        branches,
        log: String::new(),
    };
    let steps = parsed.steps();
    let start = match found {
        Some((oid, _)) if steps.is_empty() => return Ok(oid.to_string()),
        Some(found) => Some(found),
        None if parsed.is_head() => {
            return Err(BuildError::NoBranchForHead {
                url: redact_url(git_url),
                git_ref: git_ref.to_string(),
                branch: branch.to_string(),
                branches,
                log: String::new(),
            });
        }
        None if is_hex(&name) && (4..=40).contains(&name.len()) => None,
        None => return Err(unknown(branches)),
    };

    let scratch = scratch_dir()?;
    let fetched = fetch(settings, git_url, &scratch.path().join("git"))?;
    let repo = &fetched.repo;
    let (oid, what) = match start {
        Some(found) => found,
        None => match repo.find_commit_by_prefix(&name) {
            Ok(c) => (c.id(), format!("commit `{name}`")),
            Err(e) if e.code() == git2::ErrorCode::Ambiguous => {
                return Err(BuildError::AmbiguousRef {
                    url: redact_url(git_url),
                    git_ref: name,
                    log: String::new(),
                });
            }
            Err(_) => return Err(unknown(branches)),
        },
    };
    let what = if parsed.is_head() {
        format!("`{}` (the tip of branch `{branch}`)", parsed.name())
    } else {
        what
    };
    walk(repo, oid, &parsed, &what, git_url).map(|c| c.to_string())
}

/// What the advertisement says of a name: its commit with words for it
/// (``branch `main` ``) when found, and a few of the remote's branches.
type Advertised = (Option<(Oid, String)>, Vec<String>);

/// Looks `name` up in the remote's advertisement: as a branch, as a tag
/// (peeled), then as a full ref name.
fn advertised(
    settings: &crate::Settings,
    git_url: &str,
    name: &str,
) -> Result<Advertised, BuildError> {
    check_local(git_url)?;
    apply_timeouts(&settings.git_timeouts);
    let mut remote = Remote::create_detached(git_url).map_err(fetch_error(git_url))?;
    let conn = remote
        .connect_auth(Direction::Fetch, Some(callbacks(&settings.git)), None)
        .map_err(fetch_error(git_url))?;
    let heads = conn.list().map_err(fetch_error(git_url))?;
    let branches = heads
        .iter()
        .filter_map(|h| h.name().strip_prefix("refs/heads/"))
        .take(BRANCHES_SHOWN)
        .map(str::to_string)
        .collect();
    let candidates = [
        format!("refs/heads/{name}"),
        format!("refs/tags/{name}"),
        name.to_string(),
    ];
    for full in &candidates {
        // An annotated tag is advertised twice; `^{}` names its commit.
        let peeled = format!("{full}^{{}}");
        let found = heads
            .iter()
            .find(|h| h.name() == peeled)
            .or_else(|| heads.iter().find(|h| h.name() == full.as_str()));
        if let Some(head) = found {
            let what = if let Some(b) = full.strip_prefix("refs/heads/") {
                format!("branch `{b}`")
            } else if let Some(t) = full.strip_prefix("refs/tags/") {
                format!("tag `{t}`")
            } else {
                format!("`{full}`")
            };
            return Ok((Some((head.oid(), what)), branches));
        }
    }
    Ok((None, branches))
}

/// Takes `git_ref`'s steps back from `start` (`what` says what `start`
/// is, for errors): `~N` follows first parents, `^N` takes the Nth parent.
fn walk(
    repo: &Repository,
    start: Oid,
    git_ref: &GitRef,
    what: &str,
    git_url: &str,
) -> Result<Oid, BuildError> {
    let mut commit = repo
        .find_object(start, None)
        .and_then(|o| o.peel_to_commit())
        .map_err(|_| BuildError::CommitNotFound {
            url: redact_url(git_url),
            commit: start.to_string(),
            log: String::new(),
        })?;
    let no_such = |reason: String| BuildError::NoSuchAncestor {
        git_ref: git_ref.to_string(),
        reason,
        log: String::new(),
    };
    // What the ref names up to the current step, as written and in words.
    let mut so_far = git_ref.name().to_string();
    let mut described = what.to_string();
    for step in git_ref.steps() {
        match step {
            RevStep::Ancestor(n) => {
                for taken in 0..n {
                    commit = match commit.parent(0) {
                        Ok(parent) => parent,
                        Err(_) => {
                            let oldest = match taken {
                                0 => so_far.clone(),
                                _ => format!("{so_far}~{taken}"),
                            };
                            return Err(no_such(format!(
                                "it goes back past the first commit: {described} has only {} in \
                                 its first-parent history, so `{oldest}` is the oldest it can name",
                                count(u64::from(taken) + 1, "commit")
                            )));
                        }
                    };
                }
            }
            RevStep::Parent(0) => {}
            RevStep::Parent(n) => {
                let parents = commit.parent_count();
                let first = if parents == 0 {
                    " (it is a first commit)"
                } else {
                    ""
                };
                commit = commit.parent(n as usize - 1).map_err(|_| {
                    no_such(format!(
                        "{described} has {}{first}, so it has no parent {n}",
                        count(parents as u64, "parent"),
                    ))
                })?;
            }
        }
        so_far.push_str(&step.to_string());
        described = format!("`{so_far}`");
    }
    Ok(commit.id())
}

/// "1 commit", "3 commits".
fn count(n: u64, noun: &str) -> String {
    match n {
        1 => format!("1 {noun}"),
        _ => format!("{n} {noun}s"),
    }
}
