//! The HTTP git remote the end-to-end tests use (lighttpd in front of
//! `git http-backend`) works with libgit2: anonymous clones of non-bare and
//! bare repositories, and Basic auth that lets the right password in and
//! keeps everyone else out.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use slipway_tests::AppRepo;
use slipway_tests::githttp::GitHttpServer;

/// What a clone ended with, and how often libgit2 asked for credentials.
struct Cloned {
    result: Result<String, git2::Error>,
    asked: usize,
}

/// Clones `url` into `into` with libgit2 (off the runtime: it blocks) and
/// returns the sha `main` points at. With `creds`, the credentials callback
/// offers them once and refuses to be asked again, so a rejected password
/// ends the clone instead of looping.
async fn clone(url: String, into: PathBuf, creds: Option<(&str, &str)>) -> Cloned {
    let creds = creds.map(|(u, p)| (u.to_string(), p.to_string()));
    let asked = Arc::new(AtomicUsize::new(0));
    let counter = asked.clone();
    let result = tokio::task::spawn_blocking(move || {
        let mut fetch = git2::FetchOptions::new();
        if let Some((user, password)) = creds {
            let mut callbacks = git2::RemoteCallbacks::new();
            callbacks.credentials(move |_url, _user, _allowed| {
                if counter.fetch_add(1, Ordering::SeqCst) > 0 {
                    return Err(git2::Error::from_str("credentials were rejected"));
                }
                git2::Cred::userpass_plaintext(&user, &password)
            });
            fetch.remote_callbacks(callbacks);
        }
        let repo = git2::build::RepoBuilder::new()
            .fetch_options(fetch)
            .clone(&url, &into)?;
        let main = repo.find_reference("refs/remotes/origin/main")?;
        let main = main.peel_to_commit()?.id();
        let head = repo.head()?.peel_to_commit()?.id();
        if head != main {
            return Err(git2::Error::from_str(&format!(
                "the clone checked out {head}, not origin/main ({main})"
            )));
        }
        Ok(main.to_string())
    })
    .await
    .expect("the clone did not panic");
    Cloned {
        result,
        asked: asked.load(Ordering::SeqCst),
    }
}

/// Pushes `main` of the clone in `dir` to `origin` as `other`, with `creds`.
async fn push(dir: PathBuf, (user, password): (&str, &str)) -> Result<(), git2::Error> {
    let (user, password) = (user.to_string(), password.to_string());
    tokio::task::spawn_blocking(move || {
        let repo = git2::Repository::open(&dir)?;
        let mut callbacks = git2::RemoteCallbacks::new();
        callbacks.credentials(move |_url, _user, _allowed| {
            git2::Cred::userpass_plaintext(&user, &password)
        });
        let mut opts = git2::PushOptions::new();
        opts.remote_callbacks(callbacks);
        repo.find_remote("origin")?
            .push(&["refs/heads/main:refs/heads/other"], Some(&mut opts))
    })
    .await
    .expect("the push did not panic")
}

/// A repository `hello` under `base` with one commit; returns its sha.
fn hello_repo(base: &Path) -> String {
    let repo = AppRepo::new(base.join("hello")).expect("a test repository");
    repo.commit(&[("README", "served over HTTP\n")], "first")
        .expect("a commit")
}

#[tokio::test]
async fn libgit2_clones_from_an_anonymous_server() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let base = dir.path().join("served");
    let sha = hello_repo(&base);
    // A bare repository next to it, as a mirror would be.
    git2::build::RepoBuilder::new().bare(true).clone(
        &base.join("hello").display().to_string(),
        &base.join("bare.git"),
    )?;
    let Some(server) = GitHttpServer::start(&base, None).await? else {
        return Ok(());
    };
    assert!(
        server.url("hello").starts_with("http://127.0.0.1:"),
        "{}",
        server.url("hello")
    );

    let got = clone(server.url("hello"), dir.path().join("a"), None).await;
    let got_sha = got
        .result
        .map_err(|e| anyhow::anyhow!("{e}\n{}", server.logs()))?;
    assert_eq!(got_sha, sha);
    let got = clone(server.url("bare.git"), dir.path().join("b"), None).await;
    let got_sha = got
        .result
        .map_err(|e| anyhow::anyhow!("{e}\n{}", server.logs()))?;
    assert_eq!(got_sha, sha);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("b/README"))?,
        "served over HTTP\n"
    );

    // A repository that is not there is an error, not an empty clone.
    let e = clone(server.url("nope"), dir.path().join("c"), None)
        .await
        .result
        .expect_err("cloning a missing repository fails");
    assert!(e.message().contains("404"), "{e}");

    server.stop().await
}

#[tokio::test]
async fn libgit2_needs_the_right_password_when_auth_is_on() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let base = dir.path().join("served");
    let sha = hello_repo(&base);
    let Some(server) = GitHttpServer::start(&base, Some(("deployer", "s3cret pass"))).await? else {
        return Ok(());
    };
    let url = server.url("hello");

    // No credentials at all: the server says 401 and libgit2 has nothing to offer.
    let got = clone(url.clone(), dir.path().join("none"), None).await;
    let e = got.result.expect_err("a clone without credentials fails");
    assert_eq!(e.code(), git2::ErrorCode::Auth, "{e}");
    assert!(
        !dir.path().join("none/README").exists(),
        "nothing was checked out"
    );

    // A wrong password is offered, rejected, and libgit2 asks again.
    let got = clone(
        url.clone(),
        dir.path().join("wrong"),
        Some(("deployer", "guess")),
    )
    .await;
    let e = got.result.expect_err("a clone with a wrong password fails");
    assert_eq!(got.asked, 2, "the wrong password was rejected: {e}");
    assert!(e.message().contains("rejected"), "{e}");

    // An unknown user is refused, even with the right password.
    let got = clone(
        url.clone(),
        dir.path().join("user"),
        Some(("admin", "s3cret pass")),
    )
    .await;
    assert!(got.result.is_err(), "a clone as an unknown user fails");
    assert_eq!(got.asked, 2);

    // The right password: asked once, and the clone has the commit.
    let got = clone(
        url,
        dir.path().join("right"),
        Some(("deployer", "s3cret pass")),
    )
    .await;
    let got_sha = got
        .result
        .map_err(|e| anyhow::anyhow!("{e}\n{}", server.logs()))?;
    assert_eq!(got_sha, sha);
    assert_eq!(got.asked, 1);

    // Even with the right password, the server is read-only.
    let e = push(dir.path().join("right"), ("deployer", "s3cret pass"))
        .await
        .expect_err("a push is refused");
    assert!(e.message().contains("403"), "{e}");

    server.stop().await
}
