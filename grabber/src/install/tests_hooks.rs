//! Tests of `[hooks]` and the release phase in the install engine, with
//! the helpers of `tests.rs` (a child module of it): real artifacts, real
//! app processes, real hook commands.

use deploy::{Hooks, ReleaseOutcome, ReleaseSpec};

use super::*;

/// A release running `sleep` with `hooks` (timeout 5 s unless given).
fn with_hooks(version: &str, pre_stop: Option<&str>, post_start: Option<&str>) -> Manifest {
    let mut m = release(
        version,
        "echo up; exec sleep 1000",
        HealthCheck::Running,
        None,
    );
    m.hooks = Hooks {
        pre_stop: pre_stop.map(str::to_string),
        post_start: post_start.map(str::to_string),
        timeout_ms: 5_000,
    };
    m
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_run_around_the_switch_with_their_environment() {
    let server = ArtifactServer::start().await;
    let host = Host::new();
    let rec = Recorder::default();
    let token = CancellationToken::new();
    let app = hello();
    let out_dir = tempfile::tempdir().unwrap();
    let log = out_dir.path().join("hooks.log");
    // Each hook writes what it sees, and whether the process it is about
    // still runs.
    let hook = format!(
        "alive=no; kill -0 \"$SLIPWAY_PID\" 2>/dev/null && alive=yes; \
         echo \"$SLIPWAY_HOOK $SLIPWAY_VERSION port=${{PORT:-none}} alive=$alive dir=$(pwd)\" >> {}",
        log.display()
    );
    let a = with_hooks("1-aaaaaaa", Some(&hook), Some(&hook));
    let a_ref = server.publish(&a, FILES);
    let out = host
        .engine
        .install(&request(1, &a, a_ref), &rec, &token)
        .await;
    assert_eq!(out, Outcome::Done, "{:?}", rec.of(DeployId(1)));
    let pid_a = host.state(&app).pid.expect("a pid");
    let port_a = host.state(&app).port.expect("a port from the range");
    let dir_a = host.layout().release_dir(&app, &a.version);
    let dir_a = dir_a.canonicalize().unwrap();
    assert_eq!(
        lines(&log),
        [format!(
            "post_start 1-aaaaaaa port={port_a} alive=yes dir={}",
            dir_a.display()
        )],
        "no pre_stop without a running release; post_start once A is healthy"
    );

    let b = with_hooks("2-bbbbbbb", Some(&hook), Some(&hook));
    let b_ref = server.publish(&b, FILES);
    let out = host
        .engine
        .install(&request(2, &b, b_ref), &rec, &token)
        .await;
    assert_eq!(out, Outcome::Done, "{:?}", rec.of(DeployId(2)));
    let dir_b = host.layout().release_dir(&app, &b.version);
    let dir_b = dir_b.canonicalize().unwrap();
    let port_b = host.state(&app).port.expect("a port");
    assert_eq!(
        lines(&log)[1..],
        [
            // A's own hook, from A's release, while A still ran.
            format!(
                "pre_stop 1-aaaaaaa port={port_a} alive=yes dir={}",
                dir_a.display()
            ),
            format!(
                "post_start 2-bbbbbbb port={port_b} alive=yes dir={}",
                dir_b.display()
            ),
        ]
    );
    assert!(!pid_alive(pid_a), "A is stopped after its pre_stop hook");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_post_start_hook_fails_the_host_with_its_output_and_rolls_back() {
    let server = ArtifactServer::start().await;
    let host = Host::new();
    let rec = Recorder::default();
    let token = CancellationToken::new();
    let app = hello();
    let out_dir = tempfile::tempdir().unwrap();
    let added = out_dir.path().join("added");
    let add = format!("echo \"$SLIPWAY_VERSION\" >> {}", added.display());
    let a = with_hooks("1-aaaaaaa", None, Some(&add));
    let out = host
        .engine
        .install(&request(1, &a, server.publish(&a, FILES)), &rec, &token)
        .await;
    assert_eq!(out, Outcome::Done, "{:?}", rec.of(DeployId(1)));

    let b = with_hooks(
        "2-bbbbbbb",
        None,
        Some("echo the load balancer refused 2-bbbbbbb >&2; exit 7"),
    );
    let out = host
        .engine
        .install(&request(2, &b, server.publish(&b, FILES)), &rec, &token)
        .await;
    assert_eq!(
        out,
        Outcome::Failed {
            phase: HostPhase::Checking,
            rolled_back: true
        }
    );
    let last = rec.last(DeployId(2));
    assert_eq!(last.phase, HostPhase::Failed);
    assert_eq!(last.failed_phase, Some(HostPhase::Checking));
    let message = last.message.unwrap_or_default();
    assert!(
        message.contains("post_start hook of 2-bbbbbbb") && message.contains("exit status: 7"),
        "{message}"
    );
    assert!(message.contains("rolled back to 1-aaaaaaa"), "{message}");
    let tail = last.log_tail.unwrap_or_default();
    assert!(
        tail.contains("the load balancer refused 2-bbbbbbb"),
        "the hook's output is in the report: {tail}"
    );
    assert_eq!(
        host.layout().read_current(&app).unwrap(),
        Some(a.version.clone())
    );
    let pid = host.state(&app).pid.expect("A runs again");
    assert!(runs_from(pid, &host.layout().release_dir(&app, &a.version)));
    // A's post_start ran when it first started and again once restored.
    assert_eq!(lines(&added), ["1-aaaaaaa", "1-aaaaaaa"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_pre_stop_hook_fails_the_host_before_anything_changes() {
    let server = ArtifactServer::start().await;
    let host = Host::new();
    let rec = Recorder::default();
    let token = CancellationToken::new();
    let app = hello();
    let a = with_hooks(
        "1-aaaaaaa",
        Some("echo cannot drain 1-aaaaaaa; exit 4"),
        None,
    );
    let out = host
        .engine
        .install(&request(1, &a, server.publish(&a, FILES)), &rec, &token)
        .await;
    assert_eq!(out, Outcome::Done, "{:?}", rec.of(DeployId(1)));
    let pid_a = host.state(&app).pid.expect("a pid");

    let b = with_hooks("2-bbbbbbb", None, None);
    let out = host
        .engine
        .install(&request(2, &b, server.publish(&b, FILES)), &rec, &token)
        .await;
    assert_eq!(
        out,
        Outcome::Failed {
            phase: HostPhase::Switching,
            rolled_back: false
        }
    );
    let last = rec.last(DeployId(2));
    assert_eq!(last.failed_phase, Some(HostPhase::Switching));
    let message = last.message.unwrap_or_default();
    assert!(message.contains("pre_stop hook of 1-aaaaaaa"), "{message}");
    let tail = last.log_tail.unwrap_or_default();
    assert!(tail.contains("cannot drain 1-aaaaaaa"), "{tail}");
    assert!(
        !rec.phases(DeployId(2)).contains(&HostPhase::Starting),
        "B never started"
    );
    assert!(pid_alive(pid_a), "A still runs");
    assert_eq!(host.state(&app).pid, Some(pid_a));
    assert_eq!(host.layout().read_current(&app).unwrap(), Some(a.version));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hook_past_its_timeout_is_killed_and_fails_the_host() {
    let server = ArtifactServer::start().await;
    let host = Host::new();
    let rec = Recorder::default();
    let token = CancellationToken::new();
    let out_dir = tempfile::tempdir().unwrap();
    let pidfile = out_dir.path().join("child.pid");
    // The hook leaves a child behind and hangs: both are killed.
    let mut a = with_hooks(
        "1-aaaaaaa",
        None,
        Some(&format!(
            "sleep 1000 & echo $! > {}; echo waiting; sleep 1000",
            pidfile.display()
        )),
    );
    a.hooks.timeout_ms = 300;
    let started = std::time::Instant::now();
    let out = host
        .engine
        .install(&request(1, &a, server.publish(&a, FILES)), &rec, &token)
        .await;
    assert!(started.elapsed() < Duration::from_secs(60));
    assert_eq!(
        out,
        Outcome::Failed {
            phase: HostPhase::Checking,
            rolled_back: false
        }
    );
    let last = rec.last(DeployId(1));
    let message = last.message.unwrap_or_default();
    assert!(message.contains("did not end within 300ms"), "{message}");
    assert!(last.log_tail.unwrap_or_default().contains("waiting"));
    let child: u32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    until(10, "the hook's child is gone", || !pid_alive(child)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_release_phase_runs_from_the_new_release_and_its_install_reuses_it() {
    let server = ArtifactServer::start().await;
    let host = Host::new();
    let rec = Recorder::default();
    let token = CancellationToken::new();
    let app = hello();
    let a = release(
        "1-aaaaaaa",
        "echo up; exec sleep 1000",
        HealthCheck::Running,
        None,
    );
    let out = host
        .engine
        .install(&request(1, &a, server.publish(&a, FILES)), &rec, &token)
        .await;
    assert_eq!(out, Outcome::Done);
    let pid_a = host.state(&app).pid.expect("a pid");

    let mut b = release(
        "2-bbbbbbb",
        "echo up; exec sleep 1000",
        HealthCheck::Running,
        None,
    );
    b.release = Some(ReleaseSpec {
        command: "cat hello.txt; echo \" $SLIPWAY_PHASE $SLIPWAY_VERSION port=${PORT:-none}\"; \
                  echo migrated >&2"
            .into(),
        timeout_ms: 5_000,
    });
    let b_req = request(2, &b, server.publish(&b, FILES));
    let result = host
        .engine
        .release_phase(&b_req, &rec, &token)
        .await
        .expect("a result");
    assert_eq!(result.outcome, ReleaseOutcome::Succeeded, "{result:?}");
    assert_eq!(
        result.log, "hello release 2-bbbbbbb port=none\nmigrated\n",
        "from the release directory, with the app's environment, stdout and stderr"
    );
    assert!(result.message.contains("exited 0"), "{}", result.message);
    assert!(rec.of(DeployId(2)).is_empty(), "no host phases reported");
    assert_eq!(host.state(&app).pid, Some(pid_a), "nothing running changed");
    assert!(pid_alive(pid_a));
    assert_eq!(
        host.layout().read_current(&app).unwrap(),
        Some(a.version.clone())
    );

    // The install that follows reuses what the phase prepared.
    let out = host.engine.install(&b_req, &rec, &token).await;
    assert_eq!(out, Outcome::Done, "{:?}", rec.of(DeployId(2)));
    let phases = rec.phases(DeployId(2));
    assert!(!phases.contains(&HostPhase::Downloading), "{phases:?}");

    // A failing command: its output and status come back.
    let mut c = release("3-ccccccc", "exec sleep 1000", HealthCheck::Running, None);
    c.release = Some(ReleaseSpec {
        command: "echo relation users already exists >&2; exit 2".into(),
        timeout_ms: 5_000,
    });
    let c_req = request(3, &c, server.publish(&c, FILES));
    let result = host
        .engine
        .release_phase(&c_req, &rec, &token)
        .await
        .expect("a result");
    assert_eq!(result.outcome, ReleaseOutcome::Failed);
    assert!(
        result.message.contains("exit status: 2"),
        "{}",
        result.message
    );
    assert!(result.log.contains("relation users already exists"));
    assert_eq!(host.layout().read_current(&app).unwrap(), Some(b.version));
}
