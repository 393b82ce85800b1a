//! Tests of fetching, resolving and checking out commits.

use secrecy::SecretString;

use super::*;

#[test]
fn credentials_in_urls_are_redacted() {
    assert_eq!(
        redact_url("https://ci:s3cret@git.example.com/team/app.git"),
        "https://***@git.example.com/team/app.git"
    );
    // A token given as the user name goes too.
    assert_eq!(
        redact_url("https://ghp_t0ken@github.com/app.git"),
        "https://***@github.com/app.git"
    );
    assert_eq!(
        redact_url("https://x-access-token:ghp_t0ken@github.com/a/b"),
        "https://***@github.com/a/b"
    );
    // A password holding `@` is cut at the last one.
    assert_eq!(
        redact_url("https://u:p@ss@h.example/r.git"),
        "https://***@h.example/r.git"
    );
    assert_eq!(redact_url("/srv/git/app"), "/srv/git/app");
    assert_eq!(
        redact_url("git@github.com:team/app.git"),
        "git@github.com:team/app.git"
    );
    // ssh logins are not secrets; ssh passwords are.
    assert_eq!(
        redact_url("ssh://git@host.example/app.git"),
        "ssh://git@host.example/app.git"
    );
    assert_eq!(
        redact_url("ssh://git:pw@host.example/app.git"),
        "ssh://git:***@host.example/app.git"
    );
    assert_eq!(redact_url("http://u:p@h:80"), "http://***@h:80");
    // An `@` in the path is not user information.
    assert_eq!(
        redact_url("https://h.example/org/app@v1.git"),
        "https://h.example/org/app@v1.git"
    );
}

#[test]
fn credentials_in_urls_are_found() {
    for bad in [
        "https://ci:s3cret@git.example.com/team/app.git",
        "https://ghp_t0ken@github.com/app.git",
        "http://u:p@h:80/x",
        "git://u@h/x",
        "file://u:p@/srv/x",
        "ssh://git:pw@host/app.git",
        " https://t@h/x",
    ] {
        assert!(url_credentials(bad).is_some(), "{bad}");
    }
    for good in [
        "https://git.example.com/team/app.git",
        "ssh://git@host.example/app.git",
        "git@github.com:team/app.git",
        "/srv/git/app",
        "file:///srv/git/app",
        "https://h.example/org/app@v1.git",
    ] {
        assert_eq!(url_credentials(good), None, "{good}");
    }
}

/// A repository with `main`: A → B → C, and `feature`: A → F.
fn history(dir: &Path) -> (String, String, String, String) {
    let repo = Repository::init_bare(dir).unwrap();
    let sig = git2::Signature::now("t", "t@localhost").unwrap();
    let tree = {
        let mut b = repo.treebuilder(None).unwrap();
        let blob = repo.blob(b"x").unwrap();
        b.insert("f", blob, 0o100644).unwrap();
        b.write().unwrap()
    };
    let tree = repo.find_tree(tree).unwrap();
    let commit = |msg: &str, parent: Option<Oid>, r: Option<&str>| {
        let p = parent.map(|p| repo.find_commit(p).unwrap());
        let ps: Vec<&git2::Commit> = p.iter().collect();
        repo.commit(r, &sig, &sig, msg, &tree, &ps).unwrap()
    };
    let a = commit("A", None, None);
    let b = commit("B", Some(a), None);
    let c = commit("C", Some(b), None);
    let f = commit("F", Some(a), None);
    repo.reference("refs/heads/main", c, true, "").unwrap();
    repo.reference("refs/heads/feature", f, true, "").unwrap();
    (a.to_string(), b.to_string(), c.to_string(), f.to_string())
}

#[test]
fn commits_are_placed_on_their_branch_and_against_builds() {
    let tmp = tempfile::tempdir().unwrap();
    let remote = tmp.path().join("remote.git");
    let (a, b, c, f) = history(&remote);
    let url = remote.display().to_string();
    let settings = crate::Settings {
        cache_dir: Some(tmp.path().join("cache")),
        ..crate::Settings::default()
    };
    let at = |commit: Option<&str>, built: &[String]| {
        locate_on_branch(&settings, &url, "main", commit, built).unwrap()
    };
    // A replayed push of A after C was built: on the branch, older.
    let r = at(Some(&a), std::slice::from_ref(&c));
    assert!(r.on_branch);
    assert_eq!(r.newer_built.as_deref(), Some(c.as_str()));
    // The newest commit, or one only older builds precede: not older.
    assert_eq!(
        at(Some(&c), &[a.clone(), b.clone(), c.clone()]).newer_built,
        None
    );
    assert_eq!(at(Some(&b), std::slice::from_ref(&a)).newer_built, None);
    // A build on another branch that does not descend from it.
    assert_eq!(at(Some(&b), std::slice::from_ref(&f)).newer_built, None);
    // A commit of another branch is not on `main`.
    assert!(!at(Some(&f), &[]).on_branch);
    // No commit named: the tip.
    let tip = at(None, &[]);
    assert_eq!((tip.commit.as_str(), tip.on_branch), (c.as_str(), true));
    // Unknown commits and branches are errors that say so.
    let e = locate_on_branch(&settings, &url, "main", Some(&"1".repeat(40)), &[]).unwrap_err();
    assert!(matches!(e, BuildError::CommitNotFound { .. }), "{e}");
    let e = locate_on_branch(&settings, &url, "nope", None, &[]).unwrap_err();
    assert!(matches!(e, BuildError::UnknownRef { .. }), "{e}");
    let e = locate_on_branch(&settings, &url, "main", Some("abc"), &[]).unwrap_err();
    assert!(matches!(e, BuildError::BadCommit { .. }), "{e}");
}

#[test]
fn credentials_go_only_over_https_and_ssh() {
    let pass = CredentialType::USER_PASS_PLAINTEXT;
    let key = CredentialType::SSH_KEY;
    assert!(may_answer("https://git.example.com/a.git", pass));
    assert!(!may_answer("http://git.example.com/a.git", pass));
    assert!(!may_answer("HTTP://git.example.com/a.git", pass));
    assert!(!may_answer("git://git.example.com/a.git", pass));
    assert!(!may_answer("ssh://git@git.example.com/a.git", pass));
    assert!(may_answer("ssh://git@git.example.com/a.git", key));
    assert!(may_answer("git@github.com:team/app.git", key));
    assert!(!may_answer("git://git.example.com/a.git", key));
    assert!(!may_answer("http://git.example.com/a.git", key));
    assert!(!may_answer("https://git.example.com/a.git", key));
}

#[test]
fn credentials_debug_hides_the_password() {
    let c = GitCredentials {
        username: Some("ci".into()),
        password: Some(SecretString::from("hunter2")),
        ssh_key: None,
    };
    let shown = format!("{c:?}");
    assert!(
        !shown.contains("hunter2") && shown.contains("<redacted>"),
        "{shown}"
    );
}

#[test]
fn a_commit_summary_is_its_first_line_cut_on_a_char_boundary() {
    assert_eq!(
        message_summary("\n  Fix it  \n\nmore\n").as_deref(),
        Some("Fix it")
    );
    assert_eq!(message_summary(" \n\n"), None);
    let long = "é".repeat(MESSAGE_MAX_CHARS + 50);
    let cut = message_summary(&long).unwrap_or_default();
    assert_eq!(cut.chars().count(), MESSAGE_MAX_CHARS);
    assert!(long.starts_with(&cut));
}
