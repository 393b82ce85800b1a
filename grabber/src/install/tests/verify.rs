//! A release its app writes into (`__pycache__/`, a log in its working
//! directory, as an app running as root may) is still the release that was
//! installed: a deploy of the running version (a sync, a reconcile) skips
//! it. An installed file changed by hand or chmod-ed makes it installed
//! again; a release recorded by an older grabber (a tree digest, no
//! inventory) is compared whole, as before.

use std::os::unix::fs::PermissionsExt;

use super::*;

/// What Python importing a module of its own, and an app logging into its
/// working directory, leave in the release.
const WRITES_INTO_ITS_RELEASE: &str = "mkdir -p __pycache__ && echo pyc > __pycache__/greeting.cpython-311.pyc && echo started >> app.log; exec sleep 1000";

/// The message of the `downloading` phase of deploy `id`.
fn downloading(rec: &Recorder, id: i64) -> String {
    rec.of(DeployId(id))
        .into_iter()
        .find(|e| e.phase == HostPhase::Downloading)
        .and_then(|e| e.message)
        .unwrap_or_else(|| panic!("deploy {id} downloaded nothing: {:?}", rec.of(DeployId(id))))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_an_app_adds_to_its_release_do_not_make_it_installed_again() {
    let server = ArtifactServer::start().await;
    let host = Host::new();
    let rec = Recorder::default();
    let token = CancellationToken::new();
    let app = hello();
    let a = release(
        "1-aaaaaaa",
        WRITES_INTO_ITS_RELEASE,
        HealthCheck::Running,
        None,
    );
    let a_ref = server.publish(&a, FILES);
    let install = async |id: i64| {
        host.engine
            .install(&request(id, &a, a_ref.clone()), &rec, &token)
            .await
    };
    assert_eq!(install(1).await, Outcome::Done);
    let dir = host.layout().release_dir(&app, &a.version);
    assert!(
        dir.join("__pycache__/greeting.cpython-311.pyc").is_file() && dir.join("app.log").is_file(),
        "the app wrote into its release"
    );
    let pid = host.state(&app).pid.expect("a pid");

    // Asked again for the version it runs: skipped, the process untouched.
    assert_eq!(
        install(2).await,
        Outcome::Skipped,
        "{:?}",
        rec.of(DeployId(2))
    );
    assert_eq!(rec.phases(DeployId(2)), vec![HostPhase::Skipped]);
    assert_eq!(host.state(&app).pid, Some(pid));
    assert!(pid_alive(pid));

    // An installed file changed by hand: installed again from the artifact.
    std::fs::write(dir.join("hello.txt"), b"patched").unwrap();
    assert_eq!(install(3).await, Outcome::Done, "{:?}", rec.of(DeployId(3)));
    let said = downloading(&rec, 3);
    assert!(
        said.contains("its files changed since it was installed: `hello.txt` was modified"),
        "{said}"
    );
    assert_eq!(std::fs::read(dir.join("hello.txt")).unwrap(), b"hello");
    let pid = host.state(&app).pid.expect("a pid");

    // So is one whose permissions changed.
    std::fs::set_permissions(
        dir.join("hello.txt"),
        std::fs::Permissions::from_mode(0o666),
    )
    .unwrap();
    assert_eq!(install(4).await, Outcome::Done, "{:?}", rec.of(DeployId(4)));
    let said = downloading(&rec, 4);
    assert!(
        said.contains("`hello.txt` had its permissions changed"),
        "{said}"
    );
    assert_ne!(
        host.state(&app).pid,
        Some(pid),
        "restarted from the new copy"
    );
    host.engine.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_recorded_without_an_inventory_is_compared_whole() {
    let server = ArtifactServer::start().await;
    let host = Host::new();
    let rec = Recorder::default();
    let token = CancellationToken::new();
    let app = hello();
    let a = release(
        "1-aaaaaaa",
        WRITES_INTO_ITS_RELEASE,
        HealthCheck::Running,
        None,
    );
    let a_ref = server.publish(&a, FILES);
    let install = async |id: i64| {
        host.engine
            .install(&request(id, &a, a_ref.clone()), &rec, &token)
            .await
    };
    assert_eq!(install(1).await, Outcome::Done);
    let layout = host.layout();
    assert!(layout.inventory_file(&app, &a.version).is_file());

    // As an older grabber recorded it: a tree digest only.
    let mut digest = layout.read_digest(&app, &a.version).unwrap().unwrap();
    assert!(digest.inventory_sha256.is_some());
    digest.inventory_sha256 = None;
    layout.write_digest(&app, &a.version, &digest).unwrap();
    std::fs::remove_file(layout.inventory_file(&app, &a.version)).unwrap();

    // The files the app added change the whole tree: installed again, as
    // an older grabber would, and recorded with an inventory this time.
    assert_eq!(install(2).await, Outcome::Done, "{:?}", rec.of(DeployId(2)));
    let said = downloading(&rec, 2);
    assert!(
        said.contains("differ from the recorded tree digest"),
        "{said}"
    );
    let digest = layout.read_digest(&app, &a.version).unwrap().unwrap();
    assert!(digest.inventory_sha256.is_some());
    assert_eq!(
        install(3).await,
        Outcome::Skipped,
        "{:?}",
        rec.of(DeployId(3))
    );
    host.engine.stop_all().await;
}
