//! What an app can reach on its host (issue 15, item 4) and what the
//! grabber bounds (item 5): real `apptracker serve` and `grabber`
//! processes, the grabber running as root with `--app-user nobody`, real
//! python apps reporting what they find from the inside.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

use deploy::{
    AppName, Client, Cluster, CreateDeploy, CreateToken, Deploy, DeployStatus, GitRef, HostPhase,
};
use slipway_tests::procs::{Proc, TrackerProc, output, start_apptracker};
use slipway_tests::{APP_PORT, AppRepo, commit_hello, free_port, get_app, platform, poll};

const APPTRACKER: &str = env!("CARGO_BIN_EXE_slipway-apptracker");
const GRABBER: &str = env!("CARGO_BIN_EXE_slipway-grabber");

/// These tests switch users for real: root is needed. Outside CI they
/// are skipped loudly without it; in CI its absence is a failure.
fn root_or_skip() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
    assert!(!ci, "CI=true but the tests do not run as root");
    eprintln!("\n!!! SKIPPING: switching users needs root\n");
    false
}

/// The unprivileged user apps run as (Debian has it).
fn nobody() -> nix::unistd::User {
    nix::unistd::User::from_name("nobody")
        .expect("the user database is readable")
        .expect("the user `nobody` exists (it does on Debian)")
}

/// AppTracker (a process, with extra config) and what a grabber needs to
/// join its cluster `local`.
struct Stack {
    dir: tempfile::TempDir,
    logs: PathBuf,
    tracker: TrackerProc,
    client: Client,
    agent_token: String,
}

impl Stack {
    async fn start(extra_toml: &str) -> anyhow::Result<Self> {
        slipway_tests::init_tracing();
        let dir = tempfile::Builder::new()
            .prefix("slipway-trust-")
            .tempdir()?;
        // App users must be able to pass through to their releases.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
        let logs = dir.path().join("logs");
        std::fs::create_dir_all(&logs)?;
        let tracker = start_apptracker(APPTRACKER, dir.path(), &logs, extra_toml).await?;
        let client = tracker.client.clone();
        let agent_token = client
            .create_token(&CreateToken {
                name: "agents-local".into(),
                role: "agent".into(),
                cluster: Some(Cluster::parse("local")?),
                host: None,
            })
            .await?
            .token;
        Ok(Self {
            dir,
            logs,
            tracker,
            client,
            agent_token,
        })
    }

    /// Host `name`'s root.
    fn root(&self, name: &str) -> PathBuf {
        self.dir.path().join("hosts").join(name)
    }

    /// The agent token in a file of `mode`.
    fn token_file(&self, mode: u32) -> anyhow::Result<PathBuf> {
        let path = self.dir.path().join(format!("agent-{mode:o}.token"));
        std::fs::write(&path, &self.agent_token)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
        Ok(path)
    }

    /// A grabber process for host `name`, as an operator would start it:
    /// root, apps as `nobody`, the token both in a 0600 file and in its
    /// environment. `extra` flags come last.
    fn grabber(&self, name: &str, port: u16, extra: &[&str]) -> anyhow::Result<Proc> {
        let token_file = self.token_file(0o600)?;
        let mut args: Vec<String> = [
            "--server",
            &self.tracker.url,
            "--cluster",
            "local",
            "--host",
            name,
            "--root",
            &self.root(name).display().to_string(),
            "--port-offset",
            &(i32::from(port) - i32::from(APP_PORT)).to_string(),
            "--heartbeat",
            "500ms",
            "--stop-apps-on-exit",
            "--trusted-key",
            &self.tracker.public_key.to_string(),
            "--app-user",
            "nobody",
            "--token-file",
            &token_file.display().to_string(),
        ]
        .map(String::from)
        .to_vec();
        args.extend(extra.iter().map(|s| s.to_string()));
        Proc::spawn(
            name,
            GRABBER,
            &args,
            &[("SLIPWAY_TOKEN", self.agent_token.clone())],
            &self.logs,
        )
    }

    async fn wait_for_host(&self, name: &str) -> anyhow::Result<()> {
        poll(Duration::from_secs(30), || async {
            Ok(self
                .client
                .hosts()
                .await?
                .iter()
                .any(|h| h.name.as_str() == name))
        })
        .await
    }

    /// Registers `app` from a repository holding `files` on `main`.
    async fn app(&self, app: &str, files: &[(&str, String)]) -> anyhow::Result<AppName> {
        let repo = AppRepo::new(self.dir.path().join("repos").join(app))?;
        let refs: Vec<(&str, &str)> = files.iter().map(|(n, c)| (*n, c.as_str())).collect();
        repo.commit(&refs, "first")?;
        let name = AppName::parse(app)?;
        self.client
            .register_app(&deploy::RegisterApp::new(
                name.clone(),
                repo.path.display().to_string(),
            ))
            .await?;
        Ok(name)
    }

    async fn deploy(&self, app: &AppName) -> anyhow::Result<Deploy> {
        let d = self
            .client
            .create_deploy(&CreateDeploy {
                app: app.clone(),
                version: None,
                git_ref: Some(GitRef::parse("main")?),
                cluster: Cluster::parse("local")?,
                hosts: None,
                strategy: Default::default(),
                max_failures: Default::default(),
                rollback_on_failure: false,
                confirm: None,
                wait: false,
            })
            .await?;
        wait(&self.client, d.id).await
    }
}

async fn wait(client: &Client, id: deploy::DeployId) -> anyhow::Result<Deploy> {
    poll(Duration::from_secs(120), || async {
        Ok(client.deploy(id).await?.status.is_terminal())
    })
    .await?;
    Ok(client.deploy(id).await?)
}

/// A python app on `$PORT` whose `GET /` runs `body` (python statements
/// that set `out`, a dict) and answers `out` as JSON. `env` goes into
/// `[run] env`; `health` is the `[health]` table.
fn python_app(
    name: &str,
    body: &str,
    env: &[(&str, String)],
    health: &str,
) -> Vec<(&'static str, String)> {
    let env: Vec<String> = env.iter().map(|(k, v)| format!("{k} = {v:?}")).collect();
    let toml = format!(
        "name = \"{name}\"\ntype = \"python\"\n\n[run]\ncommand = \"python3 app.py\"\nport = {APP_PORT}\nstop_timeout = \"3s\"\nenv = {{ {} }}\n\n[health]\n{health}\n",
        env.join(", ")
    );
    let body: String = body.lines().map(|l| format!("        {l}\n")).collect();
    let app = format!(
        r#"import json, os, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class H(BaseHTTPRequestHandler):
    def do_GET(self):
        out = {{}}
{body}
        data = json.dumps(out).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def log_message(self, *a):
        pass

ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"#
    );
    vec![("slipway.toml", toml), ("app.py", app)]
}

/// What the spy app looks at from the inside.
const SPY: &str = r#"
out["uid"], out["gid"], out["groups"] = os.getuid(), os.getgid(), os.getgroups()
try:
    out["token_file"] = "read: " + open(os.environ["TOKEN_FILE"]).read()
except OSError as e:
    out["token_file"] = "refused: " + type(e).__name__
seen, readable = [], 0
for pid in os.listdir("/proc"):
    if not pid.isdigit():
        continue
    for what in ("environ", "cmdline"):
        try:
            with open("/proc/%s/%s" % (pid, what), "rb") as f:
                seen.append(f.read().decode("latin-1"))
                readable += 1
        except OSError:
            pass
out["proc_texts"], out["proc_readable"] = seen, readable
def write(path):
    try:
        with open(path, "a") as f:
            f.write("spy was here\n")
        return "wrote"
    except OSError as e:
        return "refused: " + type(e).__name__
other = os.environ["OTHER_RELEASES"]
other_release = os.path.join(other, sorted(os.listdir(other))[0])
out["write_own_release"] = write("app.py")
out["write_own_release_new"] = write("new-file")
out["write_other_release"] = write(os.path.join(other_release, "app.py"))
out["write_shared"] = write("../../shared/note")
out["home"] = os.environ.get("HOME")
out["env_keys"] = sorted(os.environ)
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_cannot_reach_the_agents_token_or_other_releases() -> anyhow::Result<()> {
    if !root_or_skip() {
        return Ok(());
    }
    let stack = Stack::start("").await?;
    let port = free_port()?;
    let _grabber = stack.grabber("h1", port, &[])?;
    stack.wait_for_host("h1").await?;

    // Another app on the same host (no port), whose release the spy will
    // try to change.
    let other_files = [
        (
            "slipway.toml",
            "type = \"python\"\n[run]\ncommand = \"python3 app.py\"\n[health]\ngrace = \"200ms\"\n"
                .to_string(),
        ),
        ("app.py", "import time\ntime.sleep(100000)\n".to_string()),
    ];
    let other = stack.app("other", &other_files).await?;
    let d = stack.deploy(&other).await?;
    assert_eq!(d.status, DeployStatus::Succeeded, "{d:#?}");
    let other_releases = stack.root("h1").join("apps/other/releases");
    let other_app_py = std::fs::read_dir(&other_releases)?
        .next()
        .expect("a release of other")?
        .path()
        .join("app.py");
    let other_before = std::fs::read(&other_app_py)?;

    let token_file = stack.token_file(0o600)?;
    let spy_files = python_app(
        "spy",
        SPY,
        &[
            ("TOKEN_FILE", token_file.display().to_string()),
            ("OTHER_RELEASES", other_releases.display().to_string()),
        ],
        "http = \"/\"\ntimeout = \"20s\"",
    );
    let spy = stack.app("spy", &spy_files).await?;
    let d = stack.deploy(&spy).await?;
    assert_eq!(d.status, DeployStatus::Succeeded, "{d:#?}");
    let report: serde_json::Value = serde_json::from_str(&get_app(port).await?)?;

    let nobody = nobody();
    assert_eq!(report["uid"], nobody.uid.as_raw(), "{report:#}");
    assert_eq!(report["gid"], nobody.gid.as_raw(), "{report:#}");
    let groups: Vec<u64> = serde_json::from_value(report["groups"].clone())?;
    assert!(
        groups.iter().all(|g| *g == u64::from(nobody.gid.as_raw())),
        "the app keeps none of root's groups: {groups:?}"
    );
    assert_eq!(report["home"], nobody.dir.display().to_string());
    // Nothing of the grabber's own environment (the test starts it with
    // RUST_LOG, NO_COLOR and SLIPWAY_TOKEN) reaches the app.
    let keys: Vec<String> = serde_json::from_value(report["env_keys"].clone())?;
    for leaked in ["SLIPWAY_TOKEN", "RUST_LOG", "NO_COLOR"] {
        assert!(
            !keys.iter().any(|k| k == leaked),
            "{leaked} in the app's environment: {keys:?}"
        );
    }

    let token_read = report["token_file"].as_str().unwrap_or_default();
    assert!(
        token_read.starts_with("refused: PermissionError"),
        "the app read the agent token file: {token_read}"
    );
    // The scan works (the app reads its own environment) and finds the
    // token nowhere.
    let texts: Vec<String> = serde_json::from_value(report["proc_texts"].clone())?;
    assert!(
        texts.iter().any(|t| t.contains("SLIPWAY_APP=spy")),
        "the app could not even read its own /proc/self/environ"
    );
    let leaks = texts
        .iter()
        .filter(|t| t.contains(&stack.agent_token))
        .count();
    assert_eq!(
        leaks, 0,
        "the agent token is in {leaks} /proc/*/environ or cmdline the app reads"
    );

    for key in [
        "write_own_release",
        "write_own_release_new",
        "write_other_release",
    ] {
        let r = report[key].as_str().unwrap_or_default();
        assert!(r.starts_with("refused: PermissionError"), "{key}: {r}");
    }
    assert_eq!(std::fs::read(&other_app_py)?, other_before);
    // What the app may write, it can.
    assert_eq!(report["write_shared"], "wrote", "{report:#}");
    Ok(())
}

#[tokio::test]
async fn a_token_file_others_can_read_is_refused_by_name() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let root = dir.path().join("host");
    for mode in [0o644, 0o640, 0o604] {
        let token = dir.path().join("agent.token");
        std::fs::write(&token, "slp_not_a_real_token")?;
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(mode))?;
        let args: Vec<String> = [
            "--server",
            "http://127.0.0.1:9",
            "--root",
            &root.display().to_string(),
            "--token-file",
            &token.display().to_string(),
        ]
        .map(String::from)
        .to_vec();
        let e = match tokio::time::timeout(Duration::from_secs(30), output(GRABBER, &args, &[]))
            .await
        {
            Ok(Ok(stdout)) => panic!("the grabber accepted a mode {mode:o} token file: {stdout}"),
            Ok(Err(e)) => format!("{e:#}"),
            Err(_) => panic!("the grabber started with a mode {mode:o} token file"),
        };
        assert!(
            e.contains(&format!("the token file {}", token.display()))
                && e.contains("chmod 600")
                && !e.contains("slp_not_a_real_token"),
            "{e}"
        );
        assert!(!root.exists(), "refused before touching the host");
    }
    Ok(())
}

/// Resident memory of a process: `VmHWM` (its peak) from `/proc`.
fn peak_rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no VmHWM in /proc/{pid}/status"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_health_endpoint_that_streams_forever_fails_without_growing_the_grabber()
-> anyhow::Result<()> {
    if !root_or_skip() {
        return Ok(());
    }
    let stack = Stack::start("").await?;
    let port = free_port()?;
    let grabber = stack.grabber("h1", port, &[])?;
    stack.wait_for_host("h1").await?;
    let pid = grabber.pid().expect("the grabber runs");

    // `/` streams 64 KiB chunks without end and never says "ok".
    let toml = format!(
        "name = \"flood\"\ntype = \"python\"\n\n[run]\ncommand = \"python3 app.py\"\nport = {APP_PORT}\nstop_timeout = \"3s\"\n\n[health]\nhttp = \"/\"\nexpect = \"ok\"\ntimeout = \"4s\"\ngrace = \"0s\"\n"
    );
    let app = r#"import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class H(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        chunk = b"x" * 65536
        try:
            while True:
                self.wfile.write(chunk)
        except OSError:
            pass
    def log_message(self, *a):
        pass

ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"#;
    let flood = stack
        .app(
            "flood",
            &[("slipway.toml", toml), ("app.py", app.to_string())],
        )
        .await?;
    let before = peak_rss_kib(pid)?;
    let d = stack.deploy(&flood).await?;
    assert_eq!(d.status, DeployStatus::Failed, "{d:#?}");
    let host = &d.hosts[0];
    assert_eq!(host.failed_phase, Some(HostPhase::Checking), "{host:#?}");
    let said = host.message.as_deref().unwrap_or_default();
    assert!(said.contains("first 65536 bytes"), "{said}");
    let after = peak_rss_kib(pid)?;
    eprintln!(
        "the grabber's peak RSS: {before} KiB before the deploy, {after} KiB after its check"
    );
    // Each probe of the 4 s check holds at most 64 KiB of body; reading
    // the stream whole would have held hundreds of MB.
    assert!(
        after < before + 24 * 1024,
        "the grabber's peak RSS went from {before} KiB to {after} KiB"
    );
    Ok(())
}

/// A TCP proxy in front of AppTracker for artifact downloads only: while
/// `stall` is set it accepts connections and never answers.
struct StallProxy {
    stall: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl StallProxy {
    async fn start(port: u16, upstream: String) -> anyhow::Result<Self> {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        let stall = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let s = stall.clone();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((mut sock, _)) = listener.accept().await {
                if s.load(Ordering::SeqCst) {
                    held.push(sock);
                    continue;
                }
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    if let Ok(mut up) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut sock, &mut up).await;
                    }
                });
            }
        });
        Ok(Self { stall })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_artifact_server_that_never_answers_fails_the_install_and_frees_the_app()
-> anyhow::Result<()> {
    if !root_or_skip() {
        return Ok(());
    }
    // Artifact URLs point at the proxy (`public_url`); the API does not.
    let proxy_port = free_port()?;
    let stack = Stack::start(&format!("public_url = \"http://127.0.0.1:{proxy_port}\"\n")).await?;
    let upstream = stack.tracker.url.trim_start_matches("http://").to_string();
    let proxy = StallProxy::start(proxy_port, upstream).await?;
    let port = free_port()?;
    let _grabber = stack.grabber("h1", port, &["--download-response-timeout", "2s"])?;
    stack.wait_for_host("h1").await?;

    let repo_files = slipway_tests::hello_app("A", true);
    let hello = stack.app("hello", &repo_files).await?;
    let d = stack.deploy(&hello).await?;
    assert_eq!(d.status, DeployStatus::Failed, "{d:#?}");
    let host = &d.hosts[0];
    assert_eq!(host.failed_phase, Some(HostPhase::Downloading), "{host:#?}");
    let said = host.message.as_deref().unwrap_or_default();
    assert!(said.contains("no answer within 2s"), "{said}");
    // The URL's signature is a credential: never in a report viewers read.
    let events = serde_json::to_string(&stack.client.deploy_events(d.id).await?)?;
    assert!(events.contains("/artifacts/"), "{events}");
    assert!(
        !events.contains("sig=") && !events.contains("expires="),
        "{events}"
    );

    // The app's install lock was let go: once the store answers, the next
    // deploy installs.
    proxy
        .stall
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let d = stack.deploy(&hello).await?;
    assert_eq!(d.status, DeployStatus::Succeeded, "{d:#?}");
    let version = d.version.expect("a version");
    assert_eq!(get_app(port).await?, format!("A {version}\n"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_release_is_downloaded_again_on_rollback() -> anyhow::Result<()> {
    let p = platform().hosts(&["h1"]).start().await?;
    let repo = AppRepo::new(p.dir().join("repo"))?;
    commit_hello(&repo, "A", true)?;
    let app = p.register("hello", &repo.path).await?;
    let a = p.release_and_wait(&app, "main", None).await?;
    assert_eq!(a.status, DeployStatus::Succeeded, "{a:#?}");
    let version_a = a.version.clone().expect("a version");
    commit_hello(&repo, "B", true)?;
    let b = p.release_and_wait(&app, "main", None).await?;
    assert_eq!(b.status, DeployStatus::Succeeded, "{b:#?}");

    // A's release changes on disk while B runs.
    let host = p.host("h1");
    let app_py = host
        .root
        .join("apps/hello/releases")
        .join(version_a.as_str())
        .join("app.py");
    let original = std::fs::read_to_string(&app_py)?;
    std::fs::write(&app_py, original.replace("\"A \"", "\"TAMPERED \""))?;
    assert_ne!(std::fs::read_to_string(&app_py)?, original);

    let r = p.client.rollback(&app, &p.cluster).await?;
    let r = p.wait_deploy(r.id).await?;
    assert_eq!(r.status, DeployStatus::Succeeded, "{r:#?}");
    assert_eq!(r.version.as_ref(), Some(&version_a));
    let events = p.client.deploy_events(r.id).await?;
    let downloading = events
        .iter()
        .find(|e| e.phase == HostPhase::Downloading)
        .unwrap_or_else(|| panic!("the rollback reused the changed release: {events:#?}"));
    let said = downloading.message.as_deref().unwrap_or_default();
    assert!(
        said.contains(&format!("release {version_a} on disk cannot be reused"))
            && said.contains("its files changed since it was installed"),
        "{said}"
    );
    assert_eq!(std::fs::read_to_string(&app_py)?, original);
    assert_eq!(get_app(host.port).await?, format!("A {version_a}\n"));
    p.shutdown().await
}
