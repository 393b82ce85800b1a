//! The CLI in a real terminal (tmux): `status --follow` redraws one row
//! per host in place until every host is done; piped, the same command
//! prints plain lines. Then `login` and its 0600 profile, completions and
//! the man page.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use deploy::{CreateDeploy, DeployStatus, Portion, Strategy};
use slipway_tests::{AppRepo, hello_app, platform};

use super::{DEPLOY, admin, deploy_env};

/// tmux on a private socket, killed when dropped.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn cmd(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = std::process::Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = std::process::Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
    }
}

/// Whether tmux can run here: a failure under CI=true, a loud skip
/// elsewhere.
fn have_tmux() -> bool {
    if std::process::Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return true;
    }
    let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
    assert!(
        !ci,
        "CI=true and tmux is not installed (scripts/test installs it)"
    );
    eprintln!("\n!!! SKIPPING: tmux is not installed; run ./scripts/test, which installs it\n");
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn status_follow_redraws_a_row_per_host_until_done() -> anyhow::Result<()> {
    if !have_tmux() {
        return Ok(());
    }
    let hosts = ["local-1", "local-2", "local-3"];
    let p = platform().hosts(&hosts).start().await?;
    let repo = AppRepo::new(p.dir().join("repo"))?;
    // A release that takes a moment to come up on each host, rolled one
    // host at a time: the table is drawn while hosts move.
    let mut files = hello_app("slow", true);
    files.push(("delay.txt", "1".into()));
    let refs: Vec<(&str, &str)> = files.iter().map(|(n, c)| (*n, c.as_str())).collect();
    repo.commit(&refs, "slow")?;
    let app = p.register("hello", &repo.path).await?;
    let d = p
        .client
        .create_deploy(&CreateDeploy {
            app: app.clone(),
            version: None,
            git_ref: Some(deploy::GitRef::parse("main")?),
            cluster: p.cluster.clone(),
            hosts: None,
            strategy: Strategy::Rolling {
                batch: Portion::parse("1").map_err(anyhow::Error::msg)?,
                bake_ms: 0,
                max_unavailable: None,
            },
            max_failures: Default::default(),
            rollback_on_failure: false,
            confirm: None,
            wait: false,
        })
        .await?;

    let tmux = Tmux {
        socket: format!("slipway-test-{}", std::process::id()),
    };
    let token_file = p.dir().join("token");
    std::fs::write(&token_file, &p.admin_token)?;
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600))?;
    let command = format!("{DEPLOY} status {} --follow; echo EXIT=$?; sleep 600", d.id);
    tmux.cmd(&[
        "new-session",
        "-d",
        "-x",
        "150",
        "-y",
        "40",
        "-e",
        &format!("SLIPWAY_SERVER={}", p.base_url),
        "-e",
        &format!("SLIPWAY_TOKEN_FILE={}", token_file.display()),
        "-e",
        "TERM=xterm-256color",
        &command,
    ])?;
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut mid_way = false;
    let screen = loop {
        let screen = tmux.cmd(&["capture-pane", "-p"])?;
        let done = hosts
            .iter()
            .filter(|h| screen.lines().any(|l| l.contains(*h) && l.contains("done")))
            .count();
        mid_way |= (1..hosts.len()).contains(&done);
        if screen.contains("EXIT=") || Instant::now() > deadline {
            break screen;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(screen.contains("EXIT=0"), "{screen}");
    // One row per host, redrawn in place: each host on exactly one line of
    // the screen, done.
    for h in hosts {
        let rows: Vec<&str> = screen.lines().filter(|l| l.contains(h)).collect();
        assert_eq!(rows.len(), 1, "{h} on {} lines:\n{screen}", rows.len());
        assert!(rows[0].contains("done"), "{screen}");
    }
    assert!(
        screen.contains(&format!("deploy {} ", d.id)) && screen.contains("succeeded"),
        "{screen}"
    );
    eprintln!("seen part-way (some hosts done, some not): {mid_way}\n{screen}");
    assert_eq!(p.wait_deploy(d.id).await?.status, DeployStatus::Succeeded);

    // Piped, the same command prints plain lines: no escape codes.
    let piped = admin(&p, &["status", &d.id.to_string(), "--follow"])
        .await?
        .ok();
    assert!(!piped.contains('\x1b'), "{piped:?}");
    assert!(piped.ends_with("succeeded\n"), "{piped}");
    p.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn login_saves_a_private_profile_that_later_commands_use() -> anyhow::Result<()> {
    let p = platform().start().await?;
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("slipway/config.toml");
    let cfg = config.display().to_string();
    let env = [("SLIPWAY_CONFIG", cfg.as_str())];

    // A token AppTracker refuses is not saved.
    let run = deploy_env(
        "",
        None,
        &["login", "--server", &p.base_url],
        Some(b"slp_nope\n"),
        &env,
    )
    .await?;
    assert_eq!(run.code, 3, "{run:#?}");
    assert!(!config.exists());

    let token = format!("{}\n", p.admin_token);
    let run = deploy_env(
        "",
        None,
        &["login", "--server", &p.base_url],
        Some(token.as_bytes()),
        &env,
    )
    .await?;
    assert_eq!(run.code, 0, "{run:#?}");
    assert!(
        run.stdout.starts_with(&format!(
            "logged in to {} as test-admin (admin)",
            p.base_url
        )),
        "{run:#?}"
    );
    let mode = std::fs::metadata(&config)?.permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the profile holds a token");

    // No server, no token given: the profile's.
    let run = deploy_env("", None, &["whoami"], None, &env).await?;
    assert_eq!(
        run.ok(),
        format!("test-admin (admin) at {} (profile default)\n", p.base_url)
    );
    // A profile that does not exist is a usage error naming the ones there are.
    let run = deploy_env("", None, &["whoami", "--profile", "staging"], None, &env).await?;
    assert_eq!(run.code, 2, "{run:#?}");
    assert!(run.stderr.contains("profiles: default"), "{run:#?}");
    // The profile's token is never sent to another server.
    let run = deploy_env("http://127.0.0.1:9", None, &["whoami"], None, &env).await?;
    assert_eq!(run.code, 6, "{run:#?}");
    let run = deploy_env("", None, &["logout"], None, &env).await?;
    assert_eq!(run.code, 0, "{run:#?}");
    let run = deploy_env("", None, &["whoami"], None, &env).await?;
    assert_ne!(run.code, 0, "still logged in: {run:#?}");
    p.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_and_man_pages_generate() -> anyhow::Result<()> {
    let none: [(&str, &str); 0] = [];
    for (shell, mark) in [
        ("bash", "complete -F _deploy"),
        ("zsh", "#compdef deploy"),
        ("fish", "complete -c deploy"),
    ] {
        let out = deploy_env("", None, &["completions", shell], None, &none)
            .await?
            .ok();
        assert!(out.contains(mark), "{shell}: {out}");
        assert!(out.contains("release"), "{shell}");
    }
    let man = deploy_env("", None, &["man"], None, &none).await?.ok();
    assert!(
        man.starts_with(".ie") || man.contains(".TH deploy"),
        "{man}"
    );
    assert!(man.contains("release"), "{man}");
    let dir = tempfile::tempdir()?;
    let out = dir.path().display().to_string();
    deploy_env("", None, &["man", "--dir", &out], None, &none)
        .await?
        .ok();
    for page in ["deploy.1", "deploy-release.1", "deploy-token-create.1"] {
        assert!(dir.path().join(page).is_file(), "no {page}");
    }
    Ok(())
}
