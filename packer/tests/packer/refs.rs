//! Resolving refs against real repositories: branches, tags, full ref
//! names and shas, `~N`/`^`/`^N` steps from any of them, `HEAD` as the tip
//! of the app's branch, and each refusal with its message.

use packer::{BuildError, Settings};

use crate::helpers::TestRepo;
use crate::python_repo;

/// Resolves `git_ref` for an app that follows `main`.
fn resolve(url: &str, git_ref: &str) -> Result<String, BuildError> {
    packer::resolve_ref(&Settings::default(), url, git_ref, "main")
}

#[test]
fn resolves_branches_tags_and_shas() {
    let mut repo = TestRepo::new();
    repo.write("a.txt", "1");
    let first = repo.commit("first");
    repo.write("a.txt", "2");
    let second = repo.commit("second");
    repo.branch("old", &first);
    repo.tag_lightweight("v1", &first);
    repo.tag_annotated("v2", &second);
    let url = repo.url();

    assert_eq!(resolve(&url, "main").unwrap(), second);
    assert_eq!(resolve(&url, "old").unwrap(), first);
    assert_eq!(resolve(&url, "refs/heads/old").unwrap(), first);
    assert_eq!(resolve(&url, "v1").unwrap(), first);
    // An annotated tag resolves to its commit, not to the tag object.
    assert_eq!(resolve(&url, "v2").unwrap(), second);
    assert_eq!(resolve(&url, &first[..7]).unwrap(), first);
    assert_eq!(resolve(&url, &second).unwrap(), second);
    let file_url = format!("file://{url}");
    assert_eq!(resolve(&file_url, "main").unwrap(), second);
    assert_eq!(resolve(&file_url, &first[..8]).unwrap(), first);
}

#[test]
fn resolves_on_a_bare_repository() {
    let (repo, sha) = python_repo();
    let bare = repo.bare_clone();
    let url = bare.path().join("repo.git").display().to_string();
    assert_eq!(resolve(&url, "main").unwrap(), sha);
    assert_eq!(resolve(&url, &sha[..10]).unwrap(), sha);
    assert_eq!(resolve(&url, "HEAD").unwrap(), sha);
}

#[test]
fn unknown_refs_are_clear_errors() {
    let (repo, _) = python_repo();
    let url = repo.url();
    for bad in [
        "nope",
        "deadbeef",
        "0000000000000000000000000000000000000000",
    ] {
        let e = resolve(&url, bad).unwrap_err();
        assert!(matches!(e, BuildError::UnknownRef { .. }), "{bad}: {e:?}");
        assert_eq!(
            e.to_string(),
            format!(
                "no branch, tag or commit named `{bad}` in {url} (its branches include `main`)"
            )
        );
    }
    // The name that does not exist is named, not the steps after it.
    let e = resolve(&url, "nope~2").unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("no branch, tag or commit named `nope` in {url} (its branches include `main`)")
    );
    let e = resolve("/does/not/exist", "main").unwrap_err();
    assert!(matches!(e, BuildError::Git { .. }), "{e:?}");
    assert!(
        e.to_string().starts_with("fetching from /does/not/exist: "),
        "{e}"
    );
}

/// main: c1 - c2 - c3 - m (m merges dev: c2 - c4); tags v1 (c3,
/// lightweight) and v2 (m, annotated).
struct History {
    repo: TestRepo,
    c1: String,
    c2: String,
    c3: String,
    c4: String,
    m: String,
}

fn history() -> History {
    let mut repo = TestRepo::new();
    repo.write("a.txt", "1");
    let c1 = repo.commit("c1");
    repo.write("a.txt", "2");
    let c2 = repo.commit("c2");
    repo.switch("dev");
    repo.write("dev.txt", "4");
    let c4 = repo.commit("c4");
    repo.switch("main");
    repo.write("a.txt", "3");
    let c3 = repo.commit("c3");
    let m = repo.merge("m", &c4);
    repo.tag_lightweight("v1", &c3);
    repo.tag_annotated("v2", &m);
    History {
        repo,
        c1,
        c2,
        c3,
        c4,
        m,
    }
}

#[test]
fn steps_back_from_branches_tags_shas_and_head() {
    let h = history();
    let url = h.repo.url();
    let cache = tempfile::tempdir().unwrap();
    let cached = Settings {
        cache_dir: Some(cache.path().to_path_buf()),
        ..Settings::default()
    };
    let c3_short = format!("{}~1", &h.c3[..7]);
    let c4_full = format!("{}^", h.c4);
    let cases: &[(&str, &str, &str)] = &[
        ("main", "main~1", &h.c3),
        ("main", "main~2", &h.c2),
        ("main", "main~3", &h.c1),
        ("main", "main~", &h.c3),
        ("main", "main^", &h.c3),
        ("main", "main^1", &h.c3),
        ("main", "main^2", &h.c4),
        ("main", "main^2~1", &h.c2),
        ("main", "main^^", &h.c2),
        ("main", "main^0", &h.m),
        ("main", "main~0", &h.m),
        ("main", "refs/heads/dev~1", &h.c2),
        ("main", "dev^", &h.c2),
        ("main", "v1~1", &h.c2),
        ("main", "v1^", &h.c2),
        // An annotated tag steps back from its commit.
        ("main", "v2^", &h.c3),
        ("main", "v2^{}", &h.m),
        ("main", "v2^{commit}~2", &h.c2),
        ("main", "refs/tags/v2~1", &h.c3),
        ("main", &c3_short, &h.c2),
        ("main", &c4_full, &h.c2),
        // `HEAD` is the tip of the app's branch, whatever the remote's
        // own `HEAD` says.
        ("main", "HEAD", &h.m),
        ("main", "HEAD~1", &h.c3),
        ("main", "HEAD^2", &h.c4),
        ("dev", "HEAD", &h.c4),
        ("dev", "HEAD~1", &h.c2),
        ("dev", "@~2", &h.c1),
        // A named branch is itself, whichever branch the app follows.
        ("dev", "main~1", &h.c3),
    ];
    for settings in [&Settings::default(), &cached] {
        for (branch, git_ref, want) in cases {
            let got = packer::resolve_ref(settings, &url, git_ref, branch)
                .unwrap_or_else(|e| panic!("{git_ref} on {branch}: {e}"));
            assert_eq!(&got, want, "{git_ref} on {branch}");
        }
    }
    // The remote's own HEAD stays on main while the app follows dev.
    assert_eq!(h.repo.repo.head().unwrap().shorthand().ok(), Some("main"));
}

#[test]
fn steps_past_the_history_say_how_far_it_goes() {
    let h = history();
    let url = h.repo.url();
    let c1_short = &h.c1[..7];
    let cases = [
        (
            "main",
            "main~50".to_string(),
            "`main~50` names no commit: it goes back past the first commit: branch `main` has \
             only 4 commits in its first-parent history, so `main~3` is the oldest it can name"
                .to_string(),
        ),
        (
            "dev",
            "HEAD~9".to_string(),
            "`HEAD~9` names no commit: it goes back past the first commit: `HEAD` (the tip of \
             branch `dev`) has only 3 commits in its first-parent history, so `HEAD~2` is the \
             oldest it can name"
                .to_string(),
        ),
        (
            "main",
            "main^2~5".to_string(),
            "`main^2~5` names no commit: it goes back past the first commit: `main^2` has only 3 \
             commits in its first-parent history, so `main^2~2` is the oldest it can name"
                .to_string(),
        ),
        (
            "main",
            "v1^2".to_string(),
            "`v1^2` names no commit: tag `v1` has 1 parent, so it has no parent 2".to_string(),
        ),
        (
            "main",
            format!("{c1_short}^"),
            format!(
                "`{c1_short}^` names no commit: commit `{c1_short}` has 0 parents (it is a first \
                 commit), so it has no parent 1"
            ),
        ),
        (
            "main",
            format!("{c1_short}~1"),
            format!(
                "`{c1_short}~1` names no commit: it goes back past the first commit: commit \
                 `{c1_short}` has only 1 commit in its first-parent history, so `{c1_short}` is \
                 the oldest it can name"
            ),
        ),
    ];
    for (branch, git_ref, want) in &cases {
        let e = packer::resolve_ref(&Settings::default(), &url, git_ref, branch).unwrap_err();
        assert!(matches!(e, BuildError::NoSuchAncestor { .. }), "{e:?}");
        assert_eq!(&e.to_string(), want);
    }
}

#[test]
fn head_of_a_branch_the_remote_lacks_says_what_head_is() {
    let h = history();
    let url = h.repo.url();
    for git_ref in ["HEAD", "HEAD~1"] {
        let e = packer::resolve_ref(&Settings::default(), &url, git_ref, "gone").unwrap_err();
        assert!(matches!(e, BuildError::NoBranchForHead { .. }), "{e:?}");
        assert_eq!(
            e.to_string(),
            format!(
                "`{git_ref}` counts from `HEAD`, the tip of the app's branch `gone` (AppTracker \
                 has no working tree: `HEAD` is the remote branch the app follows), and {url} has \
                 no branch `gone` (its branches include `dev`, `main`)"
            )
        );
    }
}

#[test]
fn refs_that_are_not_one_commit_are_refused_saying_what_to_write() {
    let h = history();
    let url = h.repo.url();
    let cases = [
        ("main..dev", "a range names many commits; name one (`dev`)"),
        ("main^!", "a range names many commits; name one (`main`)"),
        ("^dev", "a range names many commits; name one (`dev`)"),
        (
            "main:a.txt",
            "names a file, not a commit: write the commit alone (`main`)",
        ),
        ("main@{1}", "AppTracker has no reflog"),
        ("main@{yesterday}", "AppTracker has no reflog"),
        ("v*", "'*' is not allowed"),
        ("-main", "must not start with '-'"),
        ("ma in", "whitespace"),
        ("v2^{tree}", "asks for a tree, not a commit: write `v2`"),
    ];
    for (git_ref, reason) in cases {
        let e = resolve(&url, git_ref).unwrap_err();
        assert!(matches!(e, BuildError::BadRef { .. }), "{git_ref}: {e:?}");
        let shown = e.to_string();
        assert!(
            shown.starts_with(&format!("invalid git ref {git_ref:?}: ")) && shown.contains(reason),
            "{git_ref}: {shown}"
        );
    }
}
