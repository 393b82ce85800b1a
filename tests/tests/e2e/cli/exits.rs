//! Each exit code of `deploy` from a real case, and `release --wait` in a
//! `set -e` script: stopped by a failed deploy, and waiting across an
//! AppTracker restart for the deploy's real end.

use std::process::Stdio;
use std::time::Duration;

use deploy::{Cluster, CreateToken, DeployStatus};
use slipway_tests::procs::{Proc, TrackerProc, start_apptracker};
use slipway_tests::{AppRepo, commit_hello, platform, poll};

use super::{DEPLOY, admin, deploy};

const APPTRACKER: &str = env!("CARGO_BIN_EXE_slipway-apptracker");
const GRABBER: &str = env!("CARGO_BIN_EXE_slipway-grabber");

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_exit_code_has_a_real_case() -> anyhow::Result<()> {
    let p = platform().hosts(&["local-1"]).start().await?;
    let server = p.base_url.as_str();
    let repo = AppRepo::new(p.dir().join("repo"))?;
    commit_hello(&repo, "A", true)?;
    p.register("hello", &repo.path).await?;

    // 2: a flag that does not exist.
    let run = admin(
        &p,
        &["release", "hello", "main", "--cluster", "local", "--nope"],
    )
    .await?;
    assert_eq!(run.code, 2, "{run:#?}");
    assert!(
        run.stderr.contains("unexpected argument '--nope'"),
        "{run:#?}"
    );

    // 3: a token AppTracker does not know, and one without the role.
    let run = deploy(server, Some("slp_nope"), &["apps"]).await?;
    assert_eq!(run.code, 3, "{run:#?}");
    assert!(
        run.stderr.contains("hint: log in with `deploy login`"),
        "{run:#?}"
    );
    let viewer = p
        .client
        .create_token(&CreateToken {
            name: "just-looking".into(),
            role: "viewer".into(),
            cluster: None,
            host: None,
        })
        .await?
        .token;
    let run = deploy(
        server,
        Some(&viewer),
        &["freeze", "local", "--for", "1h", "--reason", "x"],
    )
    .await?;
    assert_eq!(run.code, 3, "{run:#?}");
    assert!(
        run.stderr
            .contains("`deploy whoami` shows your token's role"),
        "{run:#?}"
    );

    // 4: an app nobody registered, said with the ones that are.
    let run = admin(&p, &["release", "api", "main", "--cluster", "local"]).await?;
    assert_eq!(
        (run.code, run.stdout.as_str(), run.stderr.as_str()),
        (
            4,
            "",
            "error: unknown app \"api\"; registered apps: hello — see `deploy apps`\n"
        ),
        "{run:#?}"
    );
    let run = admin(&p, &["status", "999"]).await?;
    assert_eq!(run.code, 4, "{run:#?}");
    assert!(
        run.stderr.contains("no deploy 999 — see `deploy deploys`"),
        "{run:#?}"
    );

    // 5: a frozen cluster refuses the release, and says how to thaw it.
    admin(
        &p,
        &["freeze", "local", "--for", "1h", "--reason", "audit week"],
    )
    .await?
    .ok();
    let run = admin(&p, &["release", "hello", "main", "--cluster", "local"]).await?;
    assert_eq!(run.code, 5, "{run:#?}");
    assert!(run.stderr.contains("audit week"), "{run:#?}");
    assert!(run.stderr.contains("`deploy thaw local`"), "{run:#?}");
    admin(&p, &["thaw", "local"]).await?.ok();

    // 6: nobody listening.
    let run = deploy("http://127.0.0.1:9", Some("t"), &["apps"]).await?;
    assert_eq!(run.code, 6, "{run:#?}");
    assert!(
        run.stderr
            .contains("hint: is AppTracker running at http://127.0.0.1:9?"),
        "{run:#?}"
    );

    // 0, and help is not an error either.
    assert_eq!(admin(&p, &["apps"]).await?.code, 0);
    let run = deploy(server, None, &["--help"]).await?;
    assert_eq!(run.code, 0, "{run:#?}");
    assert!(
        run.stdout.contains("Exit codes:\n  0    success\n"),
        "{run:#?}"
    );
    p.shutdown().await
}

/// `sh -c SCRIPT` with the CLI as `$DEPLOY` and the server and token in
/// the environment.
fn script(script: &str, server: &str, token: &str) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new("sh");
    cmd.args(["-c", script])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("DEPLOY", DEPLOY)
        .env("SLIPWAY_SERVER", server)
        .env("SLIPWAY_TOKEN", token)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn set_e_stops_a_script_on_a_failed_deploy() -> anyhow::Result<()> {
    let p = platform().hosts(&["local-1"]).start().await?;
    let repo = AppRepo::new(p.dir().join("repo"))?;
    commit_hello(&repo, "sick", false)?;
    p.register("hello", &repo.path).await?;
    let out = script(
        "set -e\n\"$DEPLOY\" release hello main --cluster local --wait\necho AFTER",
        &p.base_url,
        &p.admin_token,
    )
    .output()
    .await?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(!stdout.contains("AFTER"), "the script went on: {stdout}");
    assert!(stdout.contains("deploy 1 "), "{stdout}");
    assert!(stdout.contains(": failed"), "{stdout}");
    p.shutdown().await
}

/// `apptracker serve` again on the same configuration (same port, same
/// database) as `start_apptracker` wrote it.
fn restart(dir: &std::path::Path, logs: &std::path::Path) -> anyhow::Result<Proc> {
    let cfg = dir.join("apptracker.toml").display().to_string();
    Proc::spawn(
        "apptracker-again",
        APPTRACKER,
        &["serve".into(), "--config".into(), cfg],
        &[],
        logs,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn release_wait_outlives_an_apptracker_restart() -> anyhow::Result<()> {
    slipway_tests::init_tracing();
    let dir = tempfile::Builder::new()
        .prefix("slipway-cli-wait-")
        .tempdir()?;
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs)?;
    let TrackerProc {
        proc: mut tracker,
        url: server,
        client,
        public_key,
    } = start_apptracker(APPTRACKER, dir.path(), &logs, "").await?;
    let admin_token = {
        let t = client
            .create_token(&CreateToken {
                name: "ci".into(),
                role: "deployer".into(),
                cluster: None,
                host: None,
            })
            .await?;
        t.token
    };
    let agent = client
        .create_token(&CreateToken {
            name: "agents".into(),
            role: "agent".into(),
            cluster: Some(Cluster::parse("ci")?),
            host: None,
        })
        .await?
        .token;
    let mut grabbers = Vec::new();
    for host in ["h1", "h2"] {
        let root = dir.path().join(host);
        // Both hosts are this machine: each app gets a port of its own.
        let offset = i32::from(slipway_tests::free_port()?) - 8000;
        let args: Vec<String> = [
            "--port-offset",
            &offset.to_string(),
            "--server",
            &server,
            "--cluster",
            "ci",
            "--host",
            host,
            "--root",
            &root.display().to_string(),
            "--heartbeat",
            "300ms",
            "--trusted-key",
            &public_key.to_string(),
        ]
        .map(String::from)
        .to_vec();
        let env = [("SLIPWAY_TOKEN", agent.clone())];
        grabbers.push(Proc::spawn(host, GRABBER, &args, &env, &logs)?);
    }
    poll(Duration::from_secs(30), || async {
        Ok(client.hosts().await?.len() == 2)
    })
    .await?;
    let repo = AppRepo::new(dir.path().join("repo"))?;
    commit_hello(&repo, "A", true)?;
    client
        .register_app(&deploy::RegisterApp::new(
            deploy::AppName::parse("hello")?,
            repo.path.display().to_string(),
        ))
        .await?;

    // A canary on one host, then a wait for `continue`: the deploy is
    // still running when AppTracker goes away.
    let mut waiting = script(
        "set -e\n\"$DEPLOY\" release hello main --cluster ci --canary 1 --manual --wait\n\
         echo AFTER",
        &server,
        &admin_token,
    )
    .spawn()?;
    let paused = poll(Duration::from_secs(120), || async {
        Ok(client
            .deploys(1)
            .await?
            .first()
            .is_some_and(|d| d.paused_at.is_some()))
    })
    .await;
    if let Err(e) = paused {
        anyhow::bail!("{e}: {:#?}", client.deploys(1).await?);
    }
    let id = client.deploys(1).await?[0].id;

    // Ctrl-C ends a follower with 130.
    let mut follower = tokio::process::Command::new(DEPLOY)
        .args(["status", &id.to_string(), "--follow"])
        .env("SLIPWAY_SERVER", &server)
        .env("SLIPWAY_TOKEN", &admin_token)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut first = String::new();
    // Kept open until the follower ends: a closed pipe would end it with
    // SIGPIPE instead.
    let mut lines = {
        use tokio::io::AsyncBufReadExt;
        let out = follower
            .stdout
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
        let mut lines = tokio::io::BufReader::new(out);
        lines.read_line(&mut first).await?;
        lines
    };
    assert!(!first.is_empty(), "the follower printed nothing");
    let pid = follower.id().ok_or_else(|| anyhow::anyhow!("no pid"))?;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(pid)?),
        nix::sys::signal::Signal::SIGINT,
    )?;
    let status = tokio::time::timeout(Duration::from_secs(20), follower.wait()).await??;
    assert_eq!(status.code(), Some(130));
    let mut rest = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut lines, &mut rest).await?;

    // AppTracker stops; the script keeps waiting.
    assert!(
        tracker.stop().await?,
        "apptracker did not stop cleanly: {}",
        tracker.tail()
    );
    let still = tokio::time::timeout(Duration::from_secs(2), waiting.wait()).await;
    assert!(
        still.is_err(),
        "release --wait ended while AppTracker was down: {still:?}"
    );
    let _tracker = restart(dir.path(), &logs)?;
    poll(Duration::from_secs(30), || async {
        Ok(client.apps().await.is_ok())
    })
    .await?;
    client.continue_deploy(id).await?;

    let out = tokio::time::timeout(Duration::from_secs(120), waiting.wait_with_output()).await??;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("AFTER"), "{stdout}");
    assert!(stdout.contains(&format!("deploy {id} ")), "{stdout}");
    assert!(
        stderr.contains("reconnect"),
        "no word of the restart: {stderr}"
    );
    assert_eq!(client.deploy(id).await?.status, DeployStatus::Succeeded);
    drop(grabbers);
    Ok(())
}
