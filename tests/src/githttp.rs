//! Git repositories served over HTTP by a real web server: lighttpd from
//! Debian running `git http-backend` as a CGI (mod_cgi), optionally behind
//! HTTP Basic auth, on loopback, one server per test.
//!
//! libgit2 is the client under test, and it needs a real server: Python's
//! CGI server failed with it ("could not read refs") though the git CLI
//! worked through it.
//!
//! A missing `lighttpd` or `git http-backend` fails the test under `CI=true`;
//! elsewhere the test says so loudly and skips, as with the servers in
//! `services`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context;
use tokio::process::{Child, Command};

/// How many ports to try when another process takes the one drawn between
/// `free_port` and lighttpd's bind.
const ATTEMPTS: usize = 3;

/// A lighttpd serving the repositories under one directory at
/// `http://127.0.0.1:<port>/git/<name>`.
///
/// Dropping it kills lighttpd (SIGKILL) and removes its directory; `stop`
/// ends it gracefully and says whether it stopped.
pub struct GitHttpServer {
    /// lighttpd in the foreground (`-D`). Declared before `dir`, so on drop
    /// the process is killed before its config and logs are removed.
    child: Child,
    /// The loopback port lighttpd listens on.
    pub port: u16,
    /// lighttpd's config, password file, request-body buffers and logs.
    dir: tempfile::TempDir,
}

impl GitHttpServer {
    /// Serves every bare or non-bare repository under `base` at
    /// `http://127.0.0.1:<port>/git/<name>` (read-only: fetch and clone).
    /// `auth`: `Some((user, password))` requires HTTP Basic auth for every
    /// request.
    ///
    /// Returns `Ok(None)` (a loud skip) when `lighttpd` or
    /// `git http-backend` is not installed, except under `CI=true`, where that
    /// is an error. A server that is installed but does not start is always
    /// an error, carrying lighttpd's log.
    pub async fn start(base: &Path, auth: Option<(&str, &str)>) -> anyhow::Result<Option<Self>> {
        let Some(lighttpd) = find_program("lighttpd") else {
            return missing("lighttpd", "not found in PATH or /usr/sbin");
        };
        let backend = match http_backend().await {
            Ok(b) => b,
            Err(e) => return missing("git http-backend", &format!("{e:#}")),
        };
        let base = std::fs::canonicalize(base)
            .with_context(|| format!("cannot serve {}", base.display()))?;
        let dir = tempfile::Builder::new()
            .prefix("slipway-githttp-")
            .tempdir()?;
        let paths = Paths::new(dir.path());
        std::fs::create_dir_all(&paths.htdocs)?;
        std::fs::create_dir_all(&paths.uploads)?;
        if let Some((user, password)) = auth {
            anyhow::ensure!(
                !user.is_empty() && !user.contains([':', '\n', '\r']),
                "a Basic auth user must be non-empty, without ':' or line breaks"
            );
            anyhow::ensure!(
                !password.contains(['\n', '\r']),
                "a Basic auth password must not contain line breaks"
            );
            std::fs::write(&paths.users, format!("{user}:{password}\n"))?;
        }

        let mut last = None;
        for _ in 0..ATTEMPTS {
            let port = crate::free_port()?;
            let config = config(&paths, &base, &backend, port, auth.is_some())?;
            std::fs::write(&paths.config, config)?;
            // A fresh log per attempt, so a failure reports only its own.
            let _ = std::fs::remove_file(&paths.error_log);
            match spawn(&lighttpd, &paths, port, auth).await? {
                Ok(child) => return Ok(Some(Self { child, port, dir })),
                Err(log) if log.contains("Address already in use") => last = Some(log),
                Err(log) => anyhow::bail!("lighttpd did not start on 127.0.0.1:{port}:\n{log}"),
            }
        }
        anyhow::bail!(
            "lighttpd found no free port in {ATTEMPTS} attempts:\n{}",
            last.unwrap_or_default()
        )
    }

    /// The URL of repository `repo` (a directory directly under `base`).
    pub fn url(&self, repo: &str) -> String {
        format!("http://127.0.0.1:{}/git/{repo}", self.port)
    }

    /// The end of lighttpd's error and access logs, for failure messages.
    pub fn logs(&self) -> String {
        let paths = Paths::new(self.dir.path());
        format!(
            "error log:\n{}\naccess log:\n{}",
            tail(&paths.error_log),
            tail(&paths.access_log)
        )
    }

    /// Stops lighttpd (SIGTERM) and waits for it to exit. It exits 0, or 1
    /// when it had to close connections still open (a client's keep-alive
    /// connection whose close it has not seen yet): both are a clean stop.
    pub async fn stop(self) -> anyhow::Result<()> {
        let mut child = self.child;
        if let Some(pid) = child.id() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        match tokio::time::timeout(Duration::from_secs(10), child.wait()).await {
            Ok(status) => {
                let status = status?;
                anyhow::ensure!(
                    matches!(status.code(), Some(0 | 1)),
                    "lighttpd exited with {status}:\n{}",
                    tail(&Paths::new(self.dir.path()).error_log)
                );
                Ok(())
            }
            Err(_) => {
                child.kill().await?;
                anyhow::bail!("lighttpd did not stop within 10s of SIGTERM")
            }
        }
    }
}

/// Where things live in the server's temporary directory.
struct Paths {
    config: PathBuf,
    /// The document root, holding only `ready`, the token that says this
    /// lighttpd is the one answering.
    htdocs: PathBuf,
    /// Where lighttpd buffers request bodies (instead of `/var/tmp`).
    uploads: PathBuf,
    /// `user:password`, for mod_authn_file's `plain` backend.
    users: PathBuf,
    /// lighttpd's error log, which also takes its stdout and stderr: it
    /// reports a failed bind there, before it opens the error log.
    error_log: PathBuf,
    access_log: PathBuf,
}

impl Paths {
    fn new(dir: &Path) -> Self {
        Self {
            config: dir.join("lighttpd.conf"),
            htdocs: dir.join("htdocs"),
            uploads: dir.join("uploads"),
            users: dir.join("users"),
            error_log: dir.join("error.log"),
            access_log: dir.join("access.log"),
        }
    }
}

/// lighttpd's config: `/git/<name>/...` runs `git http-backend` with
/// `PATH_INFO=/<name>/...` (the alias points at the program, lighttpd takes
/// the rest of the path as path info), as in git's own documentation.
fn config(
    paths: &Paths,
    base: &Path,
    backend: &Path,
    port: u16,
    auth: bool,
) -> anyhow::Result<String> {
    // mod_cgi passes the CGI an environment of its own, not lighttpd's, so
    // http-backend's settings go through mod_setenv. `safe.directory` lets it
    // read repositories owned by another user than the one it runs as (CI
    // runs everything as root, where that does not arise, but a lighttpd
    // that drops privileges would need it). Pushing is off: http-backend
    // would allow it to any authenticated user.
    let mut conf = format!(
        r#"server.modules = ("mod_access", "mod_alias", "mod_auth", "mod_authn_file", "mod_setenv", "mod_cgi", "mod_accesslog")
server.bind = "127.0.0.1"
server.port = {port}
server.document-root = {htdocs}
server.upload-dirs = ({uploads})
server.errorlog = {error_log}
accesslog.filename = {access_log}
alias.url = ("/git" => {backend})
$HTTP["url"] =~ "^/git/" {{
    cgi.assign = ("" => "")
    setenv.add-environment = (
        "GIT_PROJECT_ROOT" => {base},
        "GIT_HTTP_EXPORT_ALL" => "1",
        "GIT_CONFIG_COUNT" => "2",
        "GIT_CONFIG_KEY_0" => "safe.directory",
        "GIT_CONFIG_VALUE_0" => "*",
        "GIT_CONFIG_KEY_1" => "http.receivepack",
        "GIT_CONFIG_VALUE_1" => "false",
    )
}}
"#,
        htdocs = quoted(&paths.htdocs)?,
        uploads = quoted(&paths.uploads)?,
        error_log = quoted(&paths.error_log)?,
        access_log = quoted(&paths.access_log)?,
        backend = quoted(backend)?,
        base = quoted(base)?,
    );
    if auth {
        conf.push_str(&format!(
            r#"auth.backend = "plain"
auth.backend.plain.userfile = {users}
auth.require = ("/" => ("method" => "basic", "realm" => "slipway-git", "require" => "valid-user"))
"#,
            users = quoted(&paths.users)?,
        ));
    }
    Ok(conf)
}

/// A path as a lighttpd config string. Paths that would need escaping are
/// refused rather than escaped: test paths never do.
fn quoted(path: &Path) -> anyhow::Result<String> {
    let s = path
        .to_str()
        .with_context(|| format!("{} is not UTF-8", path.display()))?;
    anyhow::ensure!(
        !s.contains(['"', '\\']) && !s.chars().any(char::is_control),
        "{s} cannot be written into a lighttpd config"
    );
    Ok(format!("\"{s}\""))
}

/// Starts lighttpd and waits until it serves. `Ok(Err(log))` when it
/// exited or did not answer in time, with its log.
async fn spawn(
    lighttpd: &Path,
    paths: &Paths,
    port: u16,
    auth: Option<(&str, &str)>,
) -> anyhow::Result<Result<Child, String>> {
    // Ready means this lighttpd answers, not just that something listens on
    // the port: another process may have taken it since `free_port`.
    let mut token = [0u8; 16];
    getrandom::fill(&mut token).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    let token = hex::encode(token);
    std::fs::write(paths.htdocs.join("ready"), &token)?;
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&paths.error_log)
        .with_context(|| format!("cannot open {}", paths.error_log.display()))?;
    let err = out.try_clone()?;
    let child = Command::new(lighttpd)
        .arg("-D")
        .arg("-f")
        .arg(&paths.config)
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {}", lighttpd.display()))?;
    let child = Mutex::new(child);
    let client = deploy::tls::Trust::system()
        .http_builder()
        .no_proxy()
        .timeout(Duration::from_secs(2))
        .build()?;
    let url = format!("http://127.0.0.1:{port}/ready");
    // Done when it serves or when it has exited (a bad config, a taken
    // port): either way there is nothing more to wait for.
    let ready = crate::poll(Duration::from_secs(10), || async {
        if exited(&child)? {
            return Ok(true);
        }
        let mut req = client.get(&url);
        if let Some((user, password)) = auth {
            req = req.basic_auth(user, Some(password));
        }
        let resp = req.send().await?;
        Ok(resp.status().is_success() && resp.text().await? == token)
    })
    .await;
    let mut child = child
        .into_inner()
        .map_err(|_| anyhow::anyhow!("lighttpd's handle was poisoned"))?;
    let log = || tail(&paths.error_log);
    match (ready, child.try_wait()?) {
        (Ok(()), None) => Ok(Ok(child)),
        (_, Some(status)) => Ok(Err(format!("lighttpd exited with {status}\n{}", log()))),
        (Err(e), None) => {
            child.kill().await?;
            Ok(Err(format!("{e:#}\n{}", log())))
        }
    }
}

fn exited(child: &Mutex<Child>) -> anyhow::Result<bool> {
    let mut child = child
        .lock()
        .map_err(|_| anyhow::anyhow!("lighttpd's handle was poisoned"))?;
    Ok(child.try_wait()?.is_some())
}

/// `git-http-backend` in git's exec path.
async fn http_backend() -> anyhow::Result<PathBuf> {
    let out = Command::new("git")
        .arg("--exec-path")
        .stdin(Stdio::null())
        .output()
        .await
        .context("cannot run git --exec-path")?;
    anyhow::ensure!(out.status.success(), "git --exec-path failed");
    let dir = String::from_utf8(out.stdout).context("git's exec path is not UTF-8")?;
    let backend = Path::new(dir.trim()).join("git-http-backend");
    anyhow::ensure!(backend.is_file(), "{} does not exist", backend.display());
    Ok(backend)
}

/// A program in `PATH`, or in the sbin directories where Debian puts
/// servers (often not in a normal user's `PATH`).
fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Says a program is missing: an error in CI, a loud skip elsewhere.
fn missing<T>(what: &str, why: &str) -> anyhow::Result<Option<T>> {
    let msg = format!(
        "{what} is not installed ({why}); run ./scripts/test, which installs it, or apt-get install lighttpd git"
    );
    anyhow::ensure!(!crate::services::in_ci(), "CI=true and {msg}");
    eprintln!("\n!!! SKIPPING: {msg}\n");
    Ok(None)
}

/// The last 40 lines of a log file.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}
