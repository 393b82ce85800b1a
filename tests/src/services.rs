//! The real servers the production-part tests need: PostgreSQL, Redis and an
//! S3-compatible store, found through environment variables that
//! `scripts/test` sets after making sure the servers run.
//!
//! A missing server fails the test under `CI=true`; elsewhere the test says
//! so loudly and skips.

use std::time::Duration;

use sqlx::Connection;

/// Where PostgreSQL's maintenance database is (to create test databases).
pub const POSTGRES_ENV: &str = "SLIPWAY_TEST_POSTGRES";
pub const REDIS_ENV: &str = "SLIPWAY_TEST_REDIS";
/// `http://127.0.0.1:PORT` of an S3-compatible server, with
/// `SLIPWAY_TEST_S3_ACCESS_KEY` and `SLIPWAY_TEST_S3_SECRET_KEY`.
pub const S3_ENV: &str = "SLIPWAY_TEST_S3";

const DEFAULT_POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/postgres";
const DEFAULT_REDIS: &str = "redis://127.0.0.1:6379";

/// Whether this run is CI's, where a missing server is a failure.
pub(crate) fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// Says a server is missing: a panic in CI, a loud skip elsewhere.
fn missing<T>(what: &str, why: &str) -> Option<T> {
    let msg = format!(
        "{what} is not reachable ({why}); run ./scripts/test, which starts it, or set the URL"
    );
    if in_ci() {
        panic!("CI=true and {msg}");
    }
    eprintln!("\n!!! SKIPPING: {msg}\n");
    None
}

/// A missing prerequisite that is not a server: a panic in CI, a loud
/// skip elsewhere.
fn absent<T>(msg: &str) -> Option<T> {
    if in_ci() {
        panic!("CI=true and {msg}");
    }
    eprintln!("\n!!! SKIPPING: {msg}\n");
    None
}

/// Where `scripts/test` leaves the Debian packages it made from the tests'
/// binaries.
pub const DEBS_ENV: &str = "SLIPWAY_TEST_DEBS";

/// A minimal Debian root (`debootstrap --variant=minbase`) that
/// `scripts/test` keeps cached, for installing the packages into a copy.
pub const DEBIAN_ROOT_ENV: &str = "SLIPWAY_TEST_DEBIAN_ROOT";

/// The program `name` (on `PATH`, or in `/usr/bin`, `/usr/sbin`, `/sbin`),
/// or `None` (outside CI) when it is not installed; `package` is the Debian
/// package that has it.
pub fn tool(name: &str, package: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .chain(["/usr/bin", "/usr/sbin", "/sbin"].map(std::path::PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file());
    if found.is_none() {
        return absent(&format!(
            "{name} is not installed (Debian package {package}); ./scripts/test installs it"
        ));
    }
    found
}

/// The directory `var` names (set by `scripts/test`), or `None` (outside
/// CI) when it is unset or missing; `what` says what it should hold.
pub fn dir_from_env(var: &str, what: &str) -> Option<std::path::PathBuf> {
    match std::env::var_os(var).map(std::path::PathBuf::from) {
        Some(dir) if dir.is_dir() => Some(dir),
        Some(dir) => absent(&format!(
            "{var} names {}, which is not a directory ({what}); run ./scripts/test",
            dir.display()
        )),
        None => absent(&format!(
            "{var} is not set ({what}); run ./scripts/test, which makes it"
        )),
    }
}

/// The schemathesis CLI: `SLIPWAY_SCHEMATHESIS`, else the venv where
/// `scripts/test` installs it, else `schemathesis` on `PATH`.
pub const SCHEMATHESIS_ENV: &str = "SLIPWAY_SCHEMATHESIS";

/// Where `scripts/test` installs schemathesis: a venv of its own, so
/// Debian's externally managed Python is left alone.
fn schemathesis_venv() -> Option<std::path::PathBuf> {
    let cache = match std::env::var_os("SLIPWAY_CACHE") {
        Some(dir) => std::path::PathBuf::from(dir),
        None => std::path::PathBuf::from(std::env::var_os("HOME")?).join(".cache/slipway"),
    };
    Some(cache.join("schemathesis/bin"))
}

/// The schemathesis CLI, or `None` (outside CI) when it is not installed.
pub fn schemathesis() -> Option<std::path::PathBuf> {
    let runs = |cmd: &std::path::Path| {
        std::process::Command::new(cmd)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let candidates = [
        std::env::var_os(SCHEMATHESIS_ENV).map(std::path::PathBuf::from),
        schemathesis_venv().map(|bin| bin.join("schemathesis")),
        Some(std::path::PathBuf::from("schemathesis")),
    ];
    if let Some(found) = candidates.into_iter().flatten().find(|c| runs(c)) {
        return Some(found);
    }
    let msg = "schemathesis is not installed; run ./scripts/test, which installs it \
               (pip, in a venv under ~/.cache/slipway), or set SLIPWAY_SCHEMATHESIS";
    if in_ci() {
        panic!("CI=true and {msg}");
    }
    eprintln!("\n!!! SKIPPING: {msg}\n");
    None
}

/// A fresh PostgreSQL database for one test, dropped when this guard is.
pub struct PgDatabase {
    pub url: String,
    admin_url: String,
    name: String,
}

/// Creates a fresh database, or `None` (outside CI) when PostgreSQL is away.
pub async fn postgres() -> Option<PgDatabase> {
    sqlx::any::install_default_drivers();
    let admin_url = std::env::var(POSTGRES_ENV).unwrap_or_else(|_| DEFAULT_POSTGRES.into());
    let conn = tokio::time::timeout(
        Duration::from_secs(5),
        sqlx::PgConnection::connect(&admin_url),
    )
    .await;
    let mut conn = match conn {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            return missing("PostgreSQL", &e.to_string());
        }
        Err(_) => {
            return missing("PostgreSQL", "connect timed out");
        }
    };
    let mut suffix = [0u8; 6];
    getrandom::fill(&mut suffix).expect("randomness");
    let name = format!("slipway_test_{}", hex::encode(suffix));
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("create a test database");
    let url = match admin_url.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{name}"),
        None => panic!("{POSTGRES_ENV} must end with a database name"),
    };
    Some(PgDatabase {
        url,
        admin_url,
        name,
    })
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        // Dropping needs a connection of its own, outside the test's runtime.
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async move {
                let mut conn = sqlx::PgConnection::connect(&admin_url).await.ok()?;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut conn)
                .await
                .ok()
            })
        })
        .join();
    }
}

/// Redis's URL, or `None` (outside CI) when it does not answer.
pub async fn redis() -> Option<String> {
    let url = std::env::var(REDIS_ENV).unwrap_or_else(|_| DEFAULT_REDIS.into());
    let addr = url
        .trim_start_matches("redis://")
        .split('/')
        .next()
        .unwrap_or("127.0.0.1:6379")
        .to_string();
    match tokio::time::timeout(
        Duration::from_secs(3),
        tokio::net::TcpStream::connect(&addr),
    )
    .await
    {
        Ok(Ok(_)) => Some(url),
        Ok(Err(e)) => missing("Redis", &e.to_string()),
        Err(_) => missing("Redis", "connect timed out"),
    }
}

/// An S3-compatible endpoint and its credentials.
#[derive(Debug, Clone)]
pub struct S3 {
    pub endpoint: String,
    pub access_key: String,
    pub secret_key: String,
}

impl S3 {
    /// An AppTracker `[s3]` section for a fresh bucket on this server. The
    /// credentials reach the AWS SDK through the environment
    /// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`), as in production.
    pub fn config(&self) -> apptracker::store::S3Config {
        let mut suffix = [0u8; 6];
        getrandom::fill(&mut suffix).expect("randomness");
        apptracker::store::S3Config {
            bucket: format!("slipway-test-{}", hex::encode(suffix)),
            endpoint_url: Some(self.endpoint.clone()),
            region: "us-east-1".into(),
            force_path_style: true,
            prefix: "artifacts/".into(),
            create_bucket: true,
            timeout: Duration::from_secs(30),
        }
    }
}

/// The S3 server, or `None` (outside CI) when it is not configured or away.
pub async fn s3() -> Option<S3> {
    let Ok(endpoint) = std::env::var(S3_ENV) else {
        return missing("an S3-compatible server", &format!("{S3_ENV} is not set"));
    };
    let addr = endpoint.trim_start_matches("http://").to_string();
    if let Err(e) = tokio::net::TcpStream::connect(&addr).await {
        return missing("the S3-compatible server", &e.to_string());
    }
    Some(S3 {
        endpoint,
        access_key: std::env::var("SLIPWAY_TEST_S3_ACCESS_KEY").unwrap_or_default(),
        secret_key: std::env::var("SLIPWAY_TEST_S3_SECRET_KEY").unwrap_or_default(),
    })
}

/// A Redis server of a test's own, on a free port, that the test may stop
/// and start again (the shared one must not be restarted under others).
pub struct OwnRedis {
    pub port: u16,
    child: Option<tokio::process::Child>,
    /// Certificate and key when it speaks TLS only (`rediss://`).
    tls: Option<(std::path::PathBuf, std::path::PathBuf)>,
}

impl OwnRedis {
    /// Starts `redis-server`, or `None` (outside CI) when it is not installed.
    pub async fn start() -> Option<Self> {
        Self::start_with(None).await
    }

    /// Starts `redis-server` speaking only TLS with `cert` (Debian's build
    /// has TLS), or `None` (outside CI) when it is not installed.
    pub async fn start_tls(cert: &crate::tls::ServerCert) -> Option<Self> {
        Self::start_with(Some((cert.cert_file.clone(), cert.key_file.clone()))).await
    }

    async fn start_with(tls: Option<(std::path::PathBuf, std::path::PathBuf)>) -> Option<Self> {
        let port = crate::free_port().ok()?;
        let mut r = Self {
            port,
            child: None,
            tls,
        };
        match r.spawn().await {
            Ok(()) => Some(r),
            Err(e) => missing("redis-server", &e.to_string()),
        }
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    async fn spawn(&mut self) -> anyhow::Result<()> {
        let mut cmd = tokio::process::Command::new("redis-server");
        cmd.args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]);
        match &self.tls {
            None => {
                cmd.args(["--port", &self.port.to_string()]);
            }
            Some((cert, key)) => {
                // No plain port; clients are not asked for certificates.
                cmd.args(["--port", "0", "--tls-port", &self.port.to_string()])
                    .arg("--tls-cert-file")
                    .arg(cert)
                    .arg("--tls-key-file")
                    .arg(key)
                    .args(["--tls-auth-clients", "no"]);
            }
        }
        let child = cmd
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        self.child = Some(child);
        let addr = format!("127.0.0.1:{}", self.port);
        crate::poll(Duration::from_secs(10), || async {
            Ok(tokio::net::TcpStream::connect(&addr).await.is_ok())
        })
        .await
    }

    /// Kills the server (as a crash would) and waits until it is gone.
    pub async fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut c) = self.child.take() {
            c.kill().await?;
        }
        Ok(())
    }

    /// Starts it again on the same port.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.spawn().await
    }
}

/// A PostgreSQL server of a test's own (Debian's `initdb` and `postgres`,
/// a fresh cluster in a temporary directory, on a free loopback port),
/// that the test may stop and start again: the shared one must not be
/// restarted under other tests. Run as the `postgres` user when the test
/// runs as root (PostgreSQL refuses root).
pub struct OwnPostgres {
    dir: tempfile::TempDir,
    bin: std::path::PathBuf,
    port: u16,
    /// The user to run as, when root.
    user: Option<(u32, u32)>,
    child: Option<tokio::process::Child>,
}

impl OwnPostgres {
    /// A new cluster, started; `None` (outside CI) when PostgreSQL's server
    /// programs are not installed.
    pub async fn start() -> Option<Self> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| e.ok())
            .map(|e| e.path().join("bin"))
            .filter(|b| b.join("initdb").exists())
            .max_by_key(|b| {
                b.parent()
                    .and_then(|v| v.file_name()?.to_str()?.parse::<u32>().ok())
                    .unwrap_or(0)
            });
        let Some(bin) = bin else {
            return absent(
                "PostgreSQL's server programs are not installed (/usr/lib/postgresql/*/bin/initdb; \
                 Debian package postgresql)",
            );
        };
        let user = if nix::unistd::geteuid().is_root() {
            let pg = nix::unistd::User::from_name("postgres")
                .ok()
                .flatten()
                .expect("root runs PostgreSQL as the `postgres` user, which is missing");
            Some((pg.uid.as_raw(), pg.gid.as_raw()))
        } else {
            None
        };
        let dir = tempfile::Builder::new()
            .prefix("slipway-own-pg-")
            .tempdir()
            .expect("a temporary directory");
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown");
        }
        let mut initdb = tokio::process::Command::new(bin.join("initdb"));
        initdb
            .arg("-D")
            .arg(dir.path().join("data"))
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"])
            .stdout(std::process::Stdio::null());
        if let Some((uid, gid)) = user {
            initdb.uid(uid).gid(gid);
        }
        let out = initdb.output().await.expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut pg = Self {
            dir,
            bin,
            port: crate::free_port().expect("a free port"),
            user,
            child: None,
        };
        pg.spawn().await.expect("start PostgreSQL");
        Some(pg)
    }

    /// The `postgres` database's URL.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    async fn spawn(&mut self) -> anyhow::Result<()> {
        let mut cmd = tokio::process::Command::new(self.bin.join("postgres"));
        cmd.arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-p", &self.port.to_string(), "-k"])
            .arg(self.dir.path())
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true);
        if let Some((uid, gid)) = self.user {
            cmd.uid(uid).gid(gid);
        }
        self.child = Some(cmd.spawn()?);
        let url = self.url();
        crate::poll(Duration::from_secs(30), || async {
            Ok(sqlx::PgConnection::connect(&url).await.is_ok())
        })
        .await
    }

    /// Stops the server as an operator's restart does (a fast shutdown:
    /// sessions cut, no new ones) and waits until it is gone.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(mut c) = self.child.take() {
            if let Some(pid) = c.id() {
                nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGINT,
                )?;
            }
            tokio::time::timeout(Duration::from_secs(30), c.wait()).await??;
        }
        Ok(())
    }

    /// Starts it again on the same port and data.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.spawn().await
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        // An immediate shutdown: the postmaster takes its backends along
        // (a SIGKILL, as `kill_on_drop` would send, would leave them).
        if let Some(pid) = self.child.as_ref().and_then(|c| c.id()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGQUIT,
            );
            if let Some(mut c) = self.child.take() {
                let deadline = std::time::Instant::now() + Duration::from_secs(10);
                while std::time::Instant::now() < deadline {
                    if c.try_wait().ok().flatten().is_some() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
    }
}
