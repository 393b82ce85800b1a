//! AppTracker as a process of its own (the release binary), with a fresh
//! data directory or PostgreSQL database, an admin token, and a clean stop.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use deploy::Client;

use super::Db;

/// AppTracker as a process of its own.
pub(crate) struct Server {
    child: tokio::process::Child,
    pub(crate) pid: u32,
    pub(crate) client: Client,
    _dir: tempfile::TempDir,
    _pg: Option<slipway_tests::services::PgDatabase>,
}

impl Server {
    pub(crate) async fn start(bin: &Path, work: &Path, db: Db) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("slipway-bench-api-")
            .tempdir_in(work)?;
        let pg = match db {
            Db::Sqlite => None,
            Db::Postgres => Some(
                slipway_tests::services::postgres()
                    .await
                    .context("PostgreSQL is not reachable (SLIPWAY_TEST_POSTGRES)")?,
            ),
        };
        let port = slipway_bench::fleet::free_ports(20_500, 1)?[0];
        let mut toml = format!(
            "listen = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\n",
            dir.path().join("data").display()
        );
        if let Some(pg) = &pg {
            toml.push_str(&format!("database_url = \"{}\"\n", pg.url));
        }
        let config = dir.path().join("apptracker.toml");
        std::fs::write(&config, toml)?;
        let out = tokio::process::Command::new(bin)
            .args([
                "token", "create", "--name", "bench", "--role", "admin", "--config",
            ])
            .arg(&config)
            .env("RUST_LOG", "warn")
            .output()
            .await
            .with_context(|| format!("cannot run {}", bin.display()))?;
        if !out.status.success() {
            bail!(
                "apptracker token create failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let admin = String::from_utf8(out.stdout)?.trim().to_string();
        let log = std::fs::File::create(dir.path().join("apptracker.log"))?;
        let child = tokio::process::Command::new(bin)
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "warn")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::from(log.try_clone()?))
            .stderr(std::process::Stdio::from(log))
            .kill_on_drop(true)
            .spawn()?;
        let pid = child.id().context("apptracker exited at once")?;
        let client = Client::new(format!("http://127.0.0.1:{port}")).with_token(admin);
        let deadline = Instant::now() + Duration::from_secs(30);
        while client.apps().await.is_err() {
            if Instant::now() > deadline {
                bail!("apptracker did not answer within 30s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(Self {
            child,
            pid,
            client,
            _dir: dir,
            _pg: pg,
        })
    }

    pub(crate) async fn stop(mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        if tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}
