//! An app that forks into the background and exits (a daemon, `cmd &`):
//! its foreground process is gone, so the install fails and rolls back
//! instead of calling it healthy, and nothing it left in its process group
//! keeps running.

use super::*;

/// Whether any process still runs from `dir` (its working directory).
fn any_runs_from(dir: &Path) -> Vec<u32> {
    let Ok(dir) = dir.canonicalize() else {
        return Vec::new();
    };
    std::fs::read_dir("/proc")
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
                .filter(|pid| {
                    std::fs::read_link(format!("/proc/{pid}/cwd")).ok().as_ref() == Some(&dir)
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_that_forks_and_exits_fails_and_leaves_nothing_behind() {
    let server = ArtifactServer::start().await;
    let host = Host::new();
    let rec = Recorder::default();
    let token = CancellationToken::new();
    let app = hello();
    let a = release("1-aaaaaaa", "exec sleep 1000", HealthCheck::Running, None);
    let a_ref = server.publish(&a, FILES);
    let out = host
        .engine
        .install(&request(1, &a, a_ref), &rec, &token)
        .await;
    assert_eq!(out, Outcome::Done);
    let pid_a = host.state(&app).pid.expect("a pid");

    let mut b = release(
        "2-bbbbbbb",
        "sleep 1000 & exit 0",
        HealthCheck::Running,
        None,
    );
    b.health.bake_ms = 500;
    let b_ref = server.publish(&b, FILES);
    let out = host
        .engine
        .install(&request(2, &b, b_ref), &rec, &token)
        .await;
    assert!(
        matches!(
            out,
            Outcome::Failed {
                rolled_back: true,
                ..
            }
        ),
        "{out:?} {:?}",
        rec.of(DeployId(2))
    );
    assert_eq!(
        host.layout().read_current(&app).unwrap(),
        Some(a.version.clone())
    );
    let dir_b = host.layout().release_dir(&app, &b.version);
    until(10, "the forked child is stopped with its group", || {
        any_runs_from(&dir_b).is_empty()
    })
    .await;
    let running_a = host.state(&app).pid.expect("a pid");
    assert!(pid_alive(running_a), "A runs again (was {pid_a})");
}
