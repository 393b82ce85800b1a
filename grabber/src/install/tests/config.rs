//! The app's config on a host: fetched once per version, written for the
//! app's user only, given to the app as environment; a restart or a new
//! config of the running release that fails goes back to that release with
//! the config it ran; stop keeps the app down (the supervisor and a
//! grabber restart leave it) until a start.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;

use super::*;

/// A reporter that also hands out config versions, counting the fetches.
#[derive(Default)]
struct WithConfig {
    rec: Recorder,
    configs: Mutex<HashMap<u64, BTreeMap<String, String>>>,
    fetches: Mutex<Vec<u64>>,
}

impl Reporter for WithConfig {
    fn report(&self, deploy: DeployId, event: HostEvent) -> BoxFuture<'_, ()> {
        self.rec.report(deploy, event)
    }

    fn config<'a>(
        &'a self,
        app: &'a AppName,
        version: u64,
    ) -> BoxFuture<'a, Result<deploy::HostConfig, String>> {
        Box::pin(async move {
            self.fetches.lock().unwrap().push(version);
            let vars = self
                .configs
                .lock()
                .unwrap()
                .get(&version)
                .cloned()
                .ok_or_else(|| format!("no config version {version}"))?;
            Ok(deploy::HostConfig {
                app: app.clone(),
                version,
                vars,
            })
        })
    }
}

fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn with(req: &Release, id: i64, config: u64, action: DeployAction) -> Release {
    Release {
        deploy_id: DeployId(id),
        config_version: config,
        action,
        ..req.clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_restart_stop_and_start_of_the_running_release() {
    let server = ArtifactServer::start().await;
    let host = Host::new();
    let rep = WithConfig::default();
    rep.configs
        .lock()
        .unwrap()
        .insert(1, vars(&[("TOKEN", "abc"), ("MODE", "ok")]));
    rep.configs
        .lock()
        .unwrap()
        .insert(2, vars(&[("TOKEN", "def"), ("MODE", "broken")]));
    let token = CancellationToken::new();
    let app = hello();
    // Writes its TOKEN where the test can read it, unless its config
    // breaks it.
    let m = release(
        "1-aaaaaaa",
        "[ \"$MODE\" = broken ] && exit 3; echo \"${TOKEN:-none}\" > \"$SLIPWAY_SHARED/token\"; exec sleep 1000",
        HealthCheck::Running,
        None,
    );
    let base = request(1, &m, server.publish(&m, FILES));
    let token_file = host.layout().shared_dir(&app).join("token");
    let seen = || std::fs::read_to_string(&token_file).unwrap_or_default();

    assert_eq!(
        host.engine.install(&base, &rep, &token).await,
        Outcome::Done
    );
    assert_eq!(seen(), "none\n");
    let first_pid = host.state(&app).pid.expect("a pid");

    // A new config of the same release: restarted with it, fetched once.
    let c1 = with(&base, 2, 1, DeployAction::Deploy);
    assert_eq!(
        host.engine.install(&c1, &rep, &token).await,
        Outcome::Done,
        "{:?}",
        rep.rec.of(DeployId(2))
    );
    assert_eq!(seen(), "abc\n");
    let state = host.state(&app);
    assert_eq!(
        (state.config, state.current.clone()),
        (1, Some(m.version.clone()))
    );
    assert_ne!(state.pid, Some(first_pid), "restarted");
    let file = host.layout().config_file(&app, 1);
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{}", file.display());
    let dir_mode = std::fs::metadata(file.parent().unwrap())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(dir_mode & 0o777, 0o700);
    assert_eq!(host.engine.installed()[0].config_version, 1);
    // The same request again (a sync): nothing to do, nothing fetched.
    assert_eq!(
        host.engine.install(&c1, &rep, &token).await,
        Outcome::Skipped
    );
    assert_eq!(*rep.fetches.lock().unwrap(), vec![1]);

    // A restart: once per deploy, with a new process each time.
    let pid_c1 = host.state(&app).pid;
    let restart = with(&base, 3, 1, DeployAction::Restart);
    assert_eq!(
        host.engine.install(&restart, &rep, &token).await,
        Outcome::Done
    );
    let pid_restarted = host.state(&app).pid;
    assert_ne!(pid_restarted, pid_c1);
    assert_eq!(
        host.engine.install(&restart, &rep, &token).await,
        Outcome::Skipped
    );
    assert_eq!(
        host.state(&app).pid,
        pid_restarted,
        "a repeated restart restarted"
    );

    // A config that breaks the app: the host fails and goes back to the
    // same release with the config it ran.
    let c2 = with(&base, 4, 2, DeployAction::Deploy);
    let out = host.engine.install(&c2, &rep, &token).await;
    assert!(
        matches!(
            out,
            Outcome::Failed {
                rolled_back: true,
                ..
            }
        ),
        "{out:?} {:?}",
        rep.rec.of(DeployId(4))
    );
    let state = host.state(&app);
    assert_eq!(
        (state.config, state.current.clone()),
        (1, Some(m.version.clone()))
    );
    let pid = state.pid.expect("running again");
    assert!(pid_alive(pid));
    assert_eq!(seen(), "abc\n", "runs with config 1 again");
    assert_eq!(state.previous, None, "the same release is no previous one");

    // Stop: down, and kept down by a grabber restart's recovery.
    let stop = with(&base, 5, 1, DeployAction::Stop);
    assert_eq!(
        host.engine.install(&stop, &rep, &token).await,
        Outcome::Done
    );
    assert!(!pid_alive(pid), "still running after stop");
    assert!(host.state(&app).stopped);
    assert_eq!(host.engine.installed()[0].status, AppRunStatus::Stopped);
    host.engine.recover_app(&app).await;
    assert_eq!(host.state(&app).pid, None, "recovery started a stopped app");
    assert_eq!(
        host.engine.install(&stop, &rep, &token).await,
        Outcome::Skipped
    );

    // Start: up again, health-checked, with its config.
    std::fs::remove_file(&token_file).unwrap();
    let start = with(&base, 6, 1, DeployAction::Start);
    assert_eq!(
        host.engine.install(&start, &rep, &token).await,
        Outcome::Done
    );
    assert!(!host.state(&app).stopped);
    assert!(pid_alive(host.state(&app).pid.expect("a pid")));
    assert_eq!(seen(), "abc\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_that_cannot_be_fetched_fails_in_starting_and_changes_nothing() {
    let server = ArtifactServer::start().await;
    let host = Host::new();
    let rep = WithConfig::default();
    let token = CancellationToken::new();
    let app = hello();
    let m = release("1-aaaaaaa", "exec sleep 1000", HealthCheck::Running, None);
    let base = request(1, &m, server.publish(&m, FILES));
    assert_eq!(
        host.engine.install(&base, &rep, &token).await,
        Outcome::Done
    );
    let pid = host.state(&app).pid;

    let out = host
        .engine
        .install(&with(&base, 2, 7, DeployAction::Deploy), &rep, &token)
        .await;
    assert_eq!(
        out,
        Outcome::Failed {
            phase: HostPhase::Starting,
            rolled_back: false
        }
    );
    let last = rep.rec.last(DeployId(2));
    assert!(
        last.message
            .as_deref()
            .is_some_and(|m| m.contains("no config version 7")),
        "{last:?}"
    );
    assert_eq!(host.state(&app).pid, pid, "the running app was touched");
    assert!(pid_alive(pid.expect("a pid")));
    assert_eq!(host.state(&app).config, 0);
}

#[test]
fn a_planted_link_is_not_read_as_config() {
    let host = Host::new();
    let app = hello();
    let dir = host.layout().config_dir(&app);
    std::fs::create_dir_all(&dir).unwrap();
    let target = dir.join("elsewhere");
    std::fs::write(&target, "{\"K\":\"v\"}").unwrap();
    std::os::unix::fs::symlink(&target, host.layout().config_file(&app, 1)).unwrap();
    let e = host.engine.read_config(&app, 1).unwrap_err();
    assert!(e.contains("config version 1"), "{e}");
}
