//! Running apps without a release: config and secrets set with `deploy
//! env` reach the app on every host (and nothing else: no log line, no API
//! answer but masked, no command line, no audit value) through a restart
//! that builds nothing; `deploy restart` is rolling and health-checked,
//! `deploy stop` and `deploy start` work, and each is audited.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deploy::{AuditQuery, DeployAction, DeployStatus, HostPhase};
use slipway_tests::{AppRepo, Platform, get_app, platform, poll};

use crate::cli::{admin, deploy_with_input};

/// The app: answers `TOKEN GREETING VERSION`, from its environment.
fn env_app() -> Vec<(&'static str, String)> {
    let port = slipway_tests::APP_PORT;
    let toml = format!(
        "name = \"envy\"\ntype = \"python\"\n\n[run]\ncommand = \"python3 app.py\"\nport = {port}\nstop_timeout = \"3s\"\nenv = {{ GREETING = \"from-toml\" }}\n\n[health]\nhttp = \"/health\"\ntimeout = \"20s\"\ngrace = \"200ms\"\nbake = \"300ms\"\n"
    );
    let app = r#"import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class H(BaseHTTPRequestHandler):
    def do_GET(self):
        body = " ".join(os.environ.get(k, "-") for k in ("TOKEN", "GREETING", "SLIPWAY_VERSION")) + "\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())
    def log_message(self, *a):
        pass

print("starting on", os.environ["PORT"], flush=True)
ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"#;
    vec![("slipway.toml", toml), ("app.py", app.to_string())]
}

/// Every log line of this test process (each test runs in its own), at
/// debug level: installed before the platform's own subscriber, which then
/// stays out.
fn capture_logs() -> Arc<Mutex<Vec<u8>>> {
    #[derive(Clone)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            if let Ok(mut v) = self.0.lock() {
                v.extend_from_slice(b);
            }
            // Still shown when the test fails.
            std::io::stderr().write(b)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Arc::new(Mutex::new(Vec::new()));
    let sink = Sink(buf.clone());
    let installed = tracing_subscriber::fmt()
        .with_env_filter("debug,sqlx=info,hyper=info,h2=info,reqwest=info")
        .with_writer(move || sink.clone())
        .try_init();
    assert!(
        installed.is_ok(),
        "another subscriber came first: logs not captured"
    );
    buf
}

/// Every process's command line on this machine, as text.
fn all_cmdlines() -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            if let Ok(raw) = std::fs::read(e.path().join("cmdline")) {
                out.push(String::from_utf8_lossy(&raw).replace('\0', " "));
            }
        }
    }
    out
}

async fn start(hosts: &[&str]) -> anyhow::Result<(Platform, deploy::AppName)> {
    let p = platform().hosts(hosts).start().await?;
    let repo = AppRepo::new(p.dir().join("repo"))?;
    let files = env_app();
    let refs: Vec<(&str, &str)> = files.iter().map(|(n, c)| (*n, c.as_str())).collect();
    repo.commit(&refs, "envy")?;
    let app = p.register("envy", &repo.path).await?;
    let first = p.release_and_wait(&app, "main", None).await?;
    assert_eq!(first.status, DeployStatus::Succeeded, "{first:#?}");
    Ok((p, app))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_secret_reaches_the_app_and_nothing_else() -> anyhow::Result<()> {
    let logs = capture_logs();
    let (p, app) = start(&["local-1", "local-2"]).await?;
    // Unique per run, so nothing else on the machine holds it by chance.
    let secret = format!("s3cr3t-{}", hex::encode(rand_bytes()?));
    let builds_before = p.client.builds(&app).await?.len();
    let version = p.client.deploys(1).await?[0]
        .version
        .clone()
        .expect("a version");

    // The secret goes in on standard input, never on a command line.
    let set = deploy_with_input(
        &p.base_url,
        Some(&p.admin_token),
        &["env", "set", "envy", "--secret", "TOKEN"],
        Some(format!("{secret}\n").as_bytes()),
    )
    .await?;
    assert_eq!(set.code, 0, "{set:#?}");
    assert!(set.stdout.contains("config version 1"), "{set:#?}");
    assert!(
        !format!("{set:?}").contains(&secret),
        "the CLI printed the secret"
    );
    let greet = admin(
        &p,
        &["env", "set", "envy", "--cluster", "local", "GREETING=hi"],
    )
    .await?;
    assert!(greet.ok().contains("config version 2"));
    // Not applied yet: the app runs on without it.
    assert_eq!(
        get_app(p.host("local-1").port).await?,
        format!("- from-toml {version}\n")
    );

    let listed = admin(&p, &["env", "list", "envy"]).await?.ok();
    assert!(!listed.contains(&secret), "{listed}");
    assert!(listed.contains("TOKEN=•••••• (secret)"), "{listed}");
    assert!(listed.contains("local        GREETING=hi"), "{listed}");

    // Applying it is a rolling, health-checked restart: no build.
    let restart = admin(
        &p,
        &[
            "restart",
            "envy",
            "--cluster",
            "local",
            "--batch",
            "1",
            "--wait",
        ],
    )
    .await?;
    assert_eq!(restart.code, 0, "{restart:#?}");
    for h in ["local-1", "local-2"] {
        assert_eq!(
            get_app(p.host(h).port).await?,
            format!("{secret} hi {version}\n"),
            "{h} runs with its config"
        );
    }
    assert_eq!(
        p.client.builds(&app).await?.len(),
        builds_before,
        "a restart built"
    );
    let d = p.client.deploys(1).await?.remove(0);
    assert_eq!(
        (d.action, d.config_version),
        (DeployAction::Restart, 2),
        "{d:#?}"
    );
    assert_eq!(d.status, DeployStatus::Succeeded, "{d:#?}");
    assert!(d.hosts.iter().all(|h| h.phase == HostPhase::Done), "{d:#?}");
    // The hosts report the config version beside the release.
    poll(Duration::from_secs(20), || async {
        let hosts = p.client.hosts().await?;
        Ok(hosts.iter().all(|h| {
            h.apps.iter().any(|a| {
                a.app == app && a.config_version == 2 && a.version.as_ref() == Some(&version)
            })
        }))
    })
    .await?;
    let hosts_out = admin(&p, &["hosts"]).await?.ok();
    assert!(
        hosts_out.contains(&format!("envy@{version}+c2")),
        "{hosts_out}"
    );

    // On the host: a file only the app's user can read.
    let root = &p.host("local-1").root;
    let file = root.join("apps/envy/config/2.json");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file)?.permissions());
    assert_eq!(mode & 0o777, 0o600, "{}", file.display());

    // Nowhere else: API answers (masked), the audit log (keys only),
    // command lines, logs of every part, the build log, the app's log.
    let http = slipway_tests::http();
    for path in [
        "/api/v1/apps/envy/config",
        "/api/v1/deploys",
        "/api/v1/hosts",
        "/api/v1/audit",
        "/api/v1/drift",
        "/api/v1/apps/envy/builds",
    ] {
        let body = http
            .get(format!("{}{path}", p.base_url))
            .bearer_auth(&p.admin_token)
            .send()
            .await?
            .text()
            .await?;
        assert!(!body.contains(&secret), "{path} shows the secret: {body}");
    }
    // Only the host's own agent reads it back; not even an admin.
    let refused = http
        .get(format!(
            "{}/api/v1/hosts/local/local-1/config/envy/2",
            p.base_url
        ))
        .bearer_auth(&p.admin_token)
        .send()
        .await?;
    assert_eq!(refused.status(), 403);
    let audit = p.client.audit(&AuditQuery::default()).await?;
    let set_entry = audit
        .iter()
        .find(|e| {
            e.target
                .as_deref()
                .is_some_and(|t| t.starts_with("env set --secret"))
        })
        .expect("the secret's change is audited");
    assert_eq!(
        set_entry.target.as_deref(),
        Some("env set --secret TOKEN (app-wide)")
    );
    assert!(
        audit
            .iter()
            .any(|e| e.target.as_deref() == Some("restart on local")),
        "{audit:#?}"
    );
    for line in all_cmdlines() {
        assert!(
            !line.contains(&secret),
            "a command line holds the secret: {line}"
        );
    }
    let app_log = std::fs::read_to_string(root.join("apps/envy/log/envy.log"))?;
    assert!(!app_log.contains(&secret));
    let build = p.client.builds(&app).await?.remove(0);
    assert!(!build.log.contains(&secret));
    p.shutdown().await?;
    let logged =
        String::from_utf8_lossy(&logs.lock().map_err(|_| anyhow::anyhow!("poisoned"))?).to_string();
    assert!(
        logged.contains("config written"),
        "the capture saw the grabbers' logs"
    );
    assert!(!logged.contains(&secret), "a log line holds the secret");
    Ok(())
}

fn rand_bytes() -> anyhow::Result<[u8; 8]> {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(b)
}

/// When each host of a deploy was down: from its first event past
/// `pending` (the stop of the old process) to its last (`done`).
fn downtimes(events: &[deploy::HostEventRecord]) -> Vec<(i64, i64)> {
    let mut by_host: std::collections::BTreeMap<&str, (i64, i64)> = Default::default();
    for e in events {
        if e.phase == HostPhase::Pending {
            continue;
        }
        let w = by_host.entry(e.host.as_str()).or_insert((e.at.0, e.at.0));
        w.0 = w.0.min(e.at.0);
        w.1 = w.1.max(e.at.0);
    }
    by_host.into_values().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restart_is_rolling_and_stop_and_start_work() -> anyhow::Result<()> {
    let (p, app) = start(&["local-1", "local-2", "local-3"]).await?;
    let version = p.client.deploys(1).await?[0]
        .version
        .clone()
        .expect("a version");
    let pids = |p: &Platform| -> Vec<Option<String>> {
        ["local-1", "local-2", "local-3"]
            .iter()
            .map(|h| {
                std::fs::read_to_string(p.host(h).root.join("apps/envy/state.json"))
                    .ok()
                    .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
                    .and_then(|v| v.get("pid").map(|p| p.to_string()))
            })
            .collect()
    };
    let before = pids(&p);

    let run = admin(
        &p,
        &[
            "restart",
            "envy",
            "--cluster",
            "local",
            "--batch",
            "1",
            "--wait",
        ],
    )
    .await?;
    assert_eq!(run.code, 0, "{run:#?}");
    let d = p.client.deploys(1).await?.remove(0);
    assert_eq!(d.action, DeployAction::Restart);
    assert_eq!(d.version.as_ref(), Some(&version));
    assert_eq!(d.status, DeployStatus::Succeeded, "{d:#?}");
    let after = pids(&p);
    for (b, a) in before.iter().zip(&after) {
        assert!(
            a.is_some() && a != b,
            "every host restarted: {before:?} -> {after:?}"
        );
    }
    // Never more than one host down at once, from the recorded times.
    let mut windows = downtimes(&p.client.deploy_events(d.id).await?);
    assert_eq!(windows.len(), 3, "{windows:?}");
    windows.sort();
    for pair in windows.windows(2) {
        assert!(
            pair[0].1 <= pair[1].0,
            "two hosts down at once: {windows:?}"
        );
    }

    let stop = admin(&p, &["stop", "envy", "--cluster", "local", "--wait"]).await?;
    assert_eq!(stop.code, 0, "{stop:#?}");
    for h in ["local-1", "local-2", "local-3"] {
        assert!(
            get_app(p.host(h).port).await.is_err(),
            "{h} still answers after stop"
        );
    }
    // Stopped is a state, not a crash: the supervisor leaves it down.
    poll(Duration::from_secs(20), || async {
        let hosts = p.client.hosts().await?;
        Ok(hosts.iter().all(|h| {
            h.apps
                .iter()
                .any(|a| a.app == app && a.status == deploy::AppRunStatus::Stopped)
        }))
    })
    .await?;
    assert!(
        get_app(p.host("local-2").port).await.is_err(),
        "restarted after a stop"
    );

    let start = admin(&p, &["start", "envy", "--cluster", "local", "--wait"]).await?;
    assert_eq!(start.code, 0, "{start:#?}");
    for h in ["local-1", "local-2", "local-3"] {
        assert_eq!(
            get_app(p.host(h).port).await?,
            format!("- from-toml {version}\n")
        );
    }
    let audit = p.client.audit(&AuditQuery::default()).await?;
    for target in ["restart on local", "stop on local", "start on local"] {
        assert!(
            audit
                .iter()
                .any(|e| e.target.as_deref() == Some(target) && e.actor == "test-admin"),
            "{target} is not audited: {audit:#?}"
        );
    }
    p.shutdown().await
}
