//! Apps fetched from real git remotes on loopback go to running on two
//! hosts: `git daemon` (the `git://` protocol) and lighttpd in front of
//! `git http-backend` behind HTTP Basic auth; a real Flask app served by
//! gunicorn with its dependencies from PyPI, and a real Express app with
//! its dependencies from npm. A ref that does not exist is a clear error
//! that starts nothing.

use deploy::{AppName, BuildStatus, DeployStatus, RequestBuild};
use slipway_tests::githttp::GitHttpServer;
use slipway_tests::{AppRepo, Platform, commit_hello, get_app, platform, start_git_daemon};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_app_from_a_git_daemon_remote_reaches_two_hosts() -> anyhow::Result<()> {
    let p = platform().hosts(&["local-1", "local-2"]).start().await?;
    let served = p.dir().join("served");
    let repo = AppRepo::new(served.join("hello"))?;
    commit_hello(&repo, "A", true)?;
    let (mut daemon, base) = start_git_daemon(&served, &p.dir().join("logs")).await?;
    let url = format!("{base}/hello");
    let app = deploy::AppName::parse("hello")?;
    p.client
        .register_app(&deploy::RegisterApp::new(app.clone(), url.clone()))
        .await?;
    let d = p.release_and_wait(&app, "main", None).await?;
    assert_eq!(d.status, DeployStatus::Succeeded, "{d:#?}");
    let version = d.version.expect("version");
    for h in &p.hosts {
        assert_eq!(get_app(h.port).await?, format!("A {version}\n"));
    }

    // A ref the remote does not have: refused with the ref named, no build.
    let e = p.release(&app, "no-such-branch", None).await.unwrap_err();
    let e = format!("{e:#}");
    assert!(e.contains("no-such-branch") && e.contains("bad_ref"), "{e}");
    assert_eq!(p.client.builds(&app).await?.len(), 1);
    assert_eq!(p.client.deploys(10).await?.len(), 1);

    daemon.stop().await?;
    p.shutdown().await
}

/// The credentials the HTTP remote demands; the password must never show.
const GIT_USER: &str = "slipway-ci";
const GIT_PASSWORD: &str = "http-pass-8d1e5c";

fn flask_app(message: &str) -> Vec<(&'static str, String)> {
    let toml = format!(
        "# detected as python from requirements.txt\n\n[run]\ncommand = \"gunicorn --bind 127.0.0.1:$PORT --workers 2 app:app\"\nport = {}\nstop_timeout = \"5s\"\n\n[health]\nhttp = \"/health\"\ntimeout = \"30s\"\ngrace = \"300ms\"\n",
        slipway_tests::APP_PORT
    );
    let app = format!(
        r#"import os
from flask import Flask

app = Flask(__name__)


@app.get("/")
def index():
    return "{message} " + os.environ.get("SLIPWAY_VERSION", "?") + "\n"


@app.get("/health")
def health():
    return "ok\n"
"#
    );
    vec![
        (
            "requirements.txt",
            "flask==3.1.3\ngunicorn==27.0.1\n".into(),
        ),
        ("slipway.toml", toml),
        ("app.py", app),
    ]
}

fn commit_files(repo: &AppRepo, files: &[(&str, String)], message: &str) -> anyhow::Result<String> {
    let refs: Vec<(&str, &str)> = files.iter().map(|(n, c)| (*n, c.as_str())).collect();
    repo.commit(&refs, message)
}

async fn build_log(
    p: &Platform,
    app: &AppName,
    version: &deploy::Version,
) -> anyhow::Result<String> {
    let builds = p.client.builds(app).await?;
    let b = builds
        .iter()
        .find(|b| &b.version == version)
        .ok_or_else(|| anyhow::anyhow!("no build {version}"))?;
    Ok(p.client.build(b.id).await?.log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flask_app_from_an_http_remote_runs_under_gunicorn_on_two_hosts() -> anyhow::Result<()> {
    // Credentials for git remotes that ask, the password in a file.
    let secrets = tempfile::tempdir()?;
    let password_file = secrets.path().join("git.password");
    std::fs::write(&password_file, GIT_PASSWORD)?;
    let p = platform()
        .hosts(&["local-1", "local-2"])
        .configure(move |c| {
            c.git.username = Some(GIT_USER.into());
            c.git.password_file = Some(password_file);
            c.git.ssh_key_file = None;
        })
        .start()
        .await?;
    let served = p.dir().join("served");
    let repo = AppRepo::new(served.join("flask-hello"))?;
    commit_files(&repo, &flask_app("flask A"), "A")?;
    // A public http:// remote: packer has credentials, but sends them only
    // over https or ssh, and this remote does not ask.
    let Some(server) = GitHttpServer::start(&served, None).await? else {
        return Ok(());
    };
    let app = AppName::parse("flask-hello")?;
    p.client
        .register_app(&deploy::RegisterApp::new(
            app.clone(),
            server.url("flask-hello"),
        ))
        .await?;

    let d = p.release_and_wait(&app, "main", None).await?;
    assert_eq!(d.status, DeployStatus::Succeeded, "{d:#?}");
    let v1 = d.version.clone().expect("version");
    for h in &p.hosts {
        assert_eq!(get_app(h.port).await?, format!("flask A {v1}\n"));
    }
    let log = build_log(&p, &app, &v1).await?;
    assert!(
        log.contains("cache miss") && log.contains(" -m pip install --no-compile"),
        "{log}"
    );
    assert!(
        !log.contains(GIT_PASSWORD),
        "the password reached the build log"
    );

    // The same commit again: the finished build is reused, nothing rebuilt.
    let again = p
        .client
        .request_build(&app, &RequestBuild { git_ref: None })
        .await?;
    assert_eq!(again.version, v1);
    assert_eq!(p.client.builds(&app).await?.len(), 1);

    // A code-only change: a new build, but pip does not run.
    commit_files(&repo, &flask_app("flask B"), "B")?;
    let d = p.release_and_wait(&app, "main", None).await?;
    assert_eq!(d.status, DeployStatus::Succeeded, "{d:#?}");
    let v2 = d.version.clone().expect("version");
    assert_ne!(v1, v2);
    for h in &p.hosts {
        assert_eq!(get_app(h.port).await?, format!("flask B {v2}\n"));
    }
    let log = build_log(&p, &app, &v2).await?;
    assert!(
        log.contains("cache hit") && log.contains("install skipped"),
        "{log}"
    );
    assert!(!log.contains("pip install"), "{log}");
    assert!(log.contains("fetched into the cached mirror"), "{log}");

    server.stop().await?;
    p.shutdown().await
}

/// Packer never answers a password challenge over plain http://, where the
/// password would cross the network in clear: with or without credentials
/// configured, the fetch fails saying so, and the password shows nowhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_http_remote_asking_for_a_password_gets_none() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let served = dir.path().join("served");
    let repo = AppRepo::new(served.join("app"))?;
    let sha = commit_hello(&repo, "A", true)?;
    let Some(server) = GitHttpServer::start(&served, Some((GIT_USER, GIT_PASSWORD))).await? else {
        return Ok(());
    };
    let url = server.url("app");
    let resolve = |settings: packer::Settings| {
        let url = url.clone();
        tokio::task::spawn_blocking(move || packer::resolve_ref(&settings, &url, "main", "main"))
    };
    let e = resolve(packer::Settings::default()).await?.unwrap_err();
    assert!(e.to_string().contains("never in clear"), "{e}");

    let right = packer::Settings {
        git: packer::GitCredentials {
            username: Some(GIT_USER.into()),
            password: Some(GIT_PASSWORD.to_string().into()),
            ssh_key: None,
        },
        ..packer::Settings::default()
    };
    let e = resolve(right).await?.unwrap_err();
    let shown = format!("{e} {e:?}");
    assert!(
        shown.contains("asks for a username and password") && shown.contains("never in clear"),
        "{shown}"
    );
    assert!(!shown.contains(GIT_PASSWORD), "{shown}");
    // The same remote without a password challenge serves the commit,
    // from its advertisement (`main`) and by fetching (`HEAD~0`, a step
    // from the tip of the app's branch).
    let open = GitHttpServer::start(&served, None)
        .await?
        .expect("lighttpd ran a moment ago");
    for git_ref in ["main", "HEAD~0"] {
        let url = open.url("app");
        let settings = packer::Settings::default();
        let got = tokio::task::spawn_blocking(move || {
            packer::resolve_ref(&settings, &url, git_ref, "main")
        })
        .await??;
        assert_eq!(got, sha, "{git_ref}");
    }
    open.stop().await?;
    server.stop().await
}

fn express_app(message: &str) -> Vec<(&'static str, String)> {
    let toml = format!(
        "[run]\ncommand = \"node server.js\"\nport = {}\nstop_timeout = \"5s\"\n\n[health]\nhttp = \"/health\"\ntimeout = \"30s\"\ngrace = \"300ms\"\n",
        slipway_tests::APP_PORT
    );
    let server = format!(
        r#"const express = require("express");
const app = express();
app.get("/", (req, res) => res.type("text").send(`{message} ${{process.env.SLIPWAY_VERSION}} ${{process.env.NODE_ENV}}\n`));
app.get("/health", (req, res) => res.send("ok"));
app.listen(Number(process.env.PORT), "127.0.0.1", () => console.log("listening on", process.env.PORT));
"#
    );
    let package = r#"{
  "name": "express-hello",
  "version": "1.0.0",
  "private": true,
  "dependencies": { "express": "4.21.2" }
}
"#;
    vec![
        ("package.json", package.into()),
        ("slipway.toml", toml),
        ("server.js", server),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_express_app_from_a_git_daemon_remote_runs_on_two_hosts() -> anyhow::Result<()> {
    let p = platform().hosts(&["local-1", "local-2"]).start().await?;
    let served = p.dir().join("served");
    let repo = AppRepo::new(served.join("express-hello"))?;
    let files = express_app("express A");
    for (name, text) in &files {
        std::fs::write(repo.path.join(name), text)?;
    }
    // The lockfile, from the npm registry, as a developer would commit it.
    let locked = tokio::process::Command::new("npm")
        .args(["install", "--package-lock-only", "--no-audit", "--no-fund"])
        .current_dir(&repo.path)
        .output()
        .await?;
    anyhow::ensure!(
        locked.status.success(),
        "npm could not write the lockfile: {}",
        String::from_utf8_lossy(&locked.stderr)
    );
    let lockfile = std::fs::read_to_string(repo.path.join("package-lock.json"))?;
    let mut files = files;
    files.push(("package-lock.json", lockfile));
    commit_files(&repo, &files, "A")?;
    let (mut daemon, base) = start_git_daemon(&served, &p.dir().join("logs")).await?;

    let app = AppName::parse("express-hello")?;
    p.client
        .register_app(&deploy::RegisterApp::new(
            app.clone(),
            format!("{base}/express-hello"),
        ))
        .await?;
    let d = p.release_and_wait(&app, "main", None).await?;
    assert_eq!(d.status, DeployStatus::Succeeded, "{d:#?}");
    let v1 = d.version.clone().expect("version");
    for h in &p.hosts {
        assert_eq!(
            get_app(h.port).await?,
            format!("express A {v1} production\n")
        );
        let release = h.root.join("apps/express-hello/releases").join(v1.as_str());
        assert!(release.join("node_modules/express/package.json").is_file());
    }
    let builds = p.client.builds(&app).await?;
    assert_eq!(builds[0].status, BuildStatus::Succeeded);
    let log = build_log(&p, &app, &v1).await?;
    assert!(
        log.contains("$ npm ci --omit=dev") && log.contains("runtime: node"),
        "{log}"
    );

    daemon.stop().await?;
    p.shutdown().await
}
