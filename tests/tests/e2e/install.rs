//! A control plane installed as an operator (or the Debian package) does
//! it: `apptracker init` on an empty directory, then the real `apptracker
//! serve` with the config init wrote, started as systemd starts a
//! `Type=notify` service: `READY=1` arrives on a Unix datagram socket the
//! test binds, and at that moment the server already answers `/healthz`
//! and the admin token init wrote (no polling after it: ready must mean
//! ready). `STOPPING=1` comes with SIGTERM.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use slipway_tests::procs::Proc;
use slipway_tests::services::postgres;
use slipway_tests::{free_port, http};

const APPTRACKER: &str = env!("CARGO_BIN_EXE_slipway-apptracker");

/// Runs `apptracker ARGS`, returning (success, stdout, stderr).
async fn apptracker(args: &[&str]) -> anyhow::Result<(bool, String, String)> {
    let out = tokio::process::Command::new(APPTRACKER)
        .args(args)
        .env_remove("APPTRACKER_CONFIG")
        .env_remove("DATABASE_URL")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), out).await??;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// The next datagram on `sock`, within `within`.
async fn next_message(sock: &tokio::net::UnixDatagram, within: Duration) -> anyhow::Result<String> {
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(within, sock.recv(&mut buf))
        .await
        .map_err(|_| anyhow::anyhow!("no notification within {within:?}"))??;
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}

#[tokio::test]
async fn init_then_serve_is_ready_when_it_says_so_and_the_admin_token_works() -> anyhow::Result<()>
{
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let port = free_port()?;
    let listen = format!("127.0.0.1:{port}");
    let data_arg = data.display().to_string();
    let (ok, out, err) =
        apptracker(&["init", "--data-dir", &data_arg, "--listen", &listen]).await?;
    assert!(ok, "init failed: {err}");

    let token_path = data.join("admin.token");
    let config = data.join("apptracker.toml");
    let token = std::fs::read_to_string(&token_path)?.trim().to_string();
    assert!(token.starts_with("slp_"), "{token_path:?} holds {token:?}");
    let mode = std::fs::metadata(&token_path)?.permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the admin token file's mode");
    assert!(
        out.contains(&token_path.display().to_string())
            && out.contains(&config.display().to_string()),
        "init names the token file and the config:\n{out}"
    );
    assert!(
        out.contains("deploy token create") && out.contains("--role agent"),
        "{out}"
    );
    assert!(
        !out.contains(&token) && !err.contains(&token),
        "init printed the token:\n{out}\n{err}"
    );
    let public_key = out
        .split_whitespace()
        .find(|w| w.starts_with("ed25519:"))
        .map(|w| w.trim_end_matches(')'))
        .ok_or_else(|| anyhow::anyhow!("init names no public key:\n{out}"))?;
    let (ok, shown, _) =
        apptracker(&["key", "show", "--config", &config.display().to_string()]).await?;
    assert!(ok);
    assert_eq!(
        shown.trim(),
        public_key,
        "init's key is the one serve signs with"
    );

    // Again on the same directory, or with the same config: refused, and
    // nothing changed.
    let before = std::fs::read_to_string(&token_path)?;
    let (ok, _, err) = apptracker(&["init", "--data-dir", &data_arg]).await?;
    assert!(!ok && err.contains("existing installation"), "{err}");
    let (ok, _, err) = apptracker(&["init", "--config", &config.display().to_string()]).await?;
    assert!(!ok && err.contains("existing installation"), "{err}");
    assert_eq!(std::fs::read_to_string(&token_path)?, before);

    // `serve`, told where to notify as systemd would.
    let socket_path = dir.path().join("notify.sock");
    let socket = tokio::net::UnixDatagram::bind(&socket_path)?;
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs)?;
    let mut proc = Proc::spawn(
        "apptracker",
        APPTRACKER,
        &[
            "serve".into(),
            "--config".into(),
            config.display().to_string(),
        ],
        &[("NOTIFY_SOCKET", socket_path.display().to_string())],
        &logs,
    )?;
    let ready = next_message(&socket, Duration::from_secs(60))
        .await
        .map_err(|e| anyhow::anyhow!("{e}; apptracker's log:\n{}", proc.tail()))?;
    assert_eq!(ready, "READY=1");

    let url = format!("http://{listen}");
    let health = http().get(format!("{url}/healthz")).send().await?;
    assert_eq!(health.status(), 200, "ready, so /healthz answers at once");
    let client = deploy::Client::new(url.clone()).with_token(token.clone());
    let me = client.whoami().await?;
    assert_eq!((me.name.as_str(), me.role), ("admin", deploy::Role::Admin));
    let refused = deploy::Client::new(url)
        .with_token("slp_not-a-token")
        .whoami()
        .await;
    assert!(refused.is_err(), "a made-up token is refused");

    assert!(
        proc.stop().await?,
        "apptracker exits cleanly on SIGTERM:\n{}",
        proc.tail()
    );
    let stopping = next_message(&socket, Duration::from_secs(5)).await?;
    assert_eq!(stopping, "STOPPING=1");
    Ok(())
}

#[tokio::test]
async fn init_on_postgres_migrates_and_refuses_a_database_in_use() -> anyhow::Result<()> {
    let Some(db) = postgres().await else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let first = dir.path().join("first");
    let (ok, out, err) = init_with_database(&first, &db.url).await?;
    assert!(ok, "init failed: {err}");
    // The URL has no password here, so the config is readable by the group.
    let config = first.join("apptracker.toml");
    let text = std::fs::read_to_string(&config)?;
    assert!(
        text.contains(&format!("database_url = \"{}\"", db.url)),
        "{text}"
    );
    assert!(out.contains("migrated"), "{out}");

    // Another data directory on the same database: an installation uses it.
    let (ok, _, err) = init_with_database(&dir.path().join("second"), &db.url).await?;
    assert!(!ok, "a second init on the same database must fail");
    assert!(
        err.contains("already holds tokens") && err.contains("admin"),
        "{err}"
    );
    assert!(!dir.path().join("second").join("admin.token").exists());
    Ok(())
}

async fn init_with_database(data: &Path, url: &str) -> anyhow::Result<(bool, String, String)> {
    let data = data.display().to_string();
    apptracker(&[
        "init",
        "--data-dir",
        &data,
        "--database-url",
        url,
        "--admin-name",
        "admin",
    ])
    .await
}
