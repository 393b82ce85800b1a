//! Drives a real grabber (`grabber::run`) against a fake AppTracker: the
//! bus, the desired state, heartbeats and host events.

// Test code: a failed unwrap is a failed test, helpers included.
#![allow(clippy::unwrap_used)]

mod helpers;

use std::time::Duration;

use deploy::procfs::pid_alive;
use deploy::{AppName, Cluster, HostName, Version};
use helpers::FakeTracker;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn converges_follows_the_bus_and_stops_apps_on_exit() {
    let tracker = FakeTracker::start().await;
    let dir = tempfile::tempdir().unwrap();
    let app = AppName::parse("hello").unwrap();

    // The desired state names release A before the grabber starts.
    let a = tracker.publish("hello", "1-aaaaaaa", "exec sleep 1000");
    tracker
        .rec
        .lock()
        .unwrap()
        .desired
        .push(deploy::DesiredApp {
            app: app.clone(),
            version: Version::parse("1-aaaaaaa").unwrap(),
            deploy_id: deploy::DeployId(1),
            artifact: a.clone(),
            config_version: 0,
            action: deploy::DeployAction::Deploy,
        });

    let config = grabber::Config {
        server: tracker.base.clone(),
        cluster: Cluster::parse("local").unwrap(),
        host: HostName::parse("h1").unwrap(),
        root: dir.path().join("h1"),
        heartbeat_interval: Duration::from_millis(100),
        stop_apps_on_exit: true,
        shim: env!("CARGO_BIN_EXE_grabber").into(),
        trusted_keys: vec![helpers::packer_key().public_key()],
        ..grabber::Config::default()
    };
    let _kill = helpers::KillApps(config.root.clone());
    let token = CancellationToken::new();
    let grabber = tokio::spawn(grabber::run(config, token.clone()));

    // The first item of the connection is `Sync`: A gets installed.
    tracker
        .wait_for("deploy 1 done", |t| {
            t.phases(1).last().map(String::as_str) == Some("done")
        })
        .await;
    assert_eq!(
        tracker.phases(1),
        [
            "downloading",
            "verifying",
            "extracting",
            "switching",
            "starting",
            "checking",
            "done"
        ]
    );
    tracker
        .wait_for("a heartbeat with A's pid", |t| {
            t.last_heartbeat()
                .is_some_and(|hb| hb.apps.len() == 1 && hb.apps[0].pid.is_some())
        })
        .await;
    let hb = tracker.last_heartbeat().unwrap();
    assert_eq!(
        hb.apps[0].version,
        Some(Version::parse("1-aaaaaaa").unwrap())
    );
    let pid_a = hb.apps[0].pid.unwrap();
    assert!(pid_alive(pid_a));

    // Junk on the bus is skipped; a deploy for other hosts is ignored.
    let b = tracker.publish("hello", "2-bbbbbbb", "exec sleep 1000");
    let deploy_msg = |id: i64, version: &str, hosts: &str, artifact: &deploy::ArtifactRef| {
        serde_json::json!({
            "kind": "deploy", "deploy_id": id, "app": "hello", "version": version,
            "artifact": artifact, "target": {"cluster": "local", "hosts": hosts}, "issued_at": 0
        })
        .to_string()
    };
    tracker.send("not json at all");
    tracker.send(r#"{"kind":"reboot"}"#);
    tracker.send(&deploy_msg(2, "2-bbbbbbb", "other-.*", &b));
    // Same version as running: skipped, same pid. (A deploy message only
    // rings: AppTracker's desired state names what it installs.)
    tracker.desire(helpers::release(3, "hello", "1-aaaaaaa", a.clone()));
    tracker.send(&deploy_msg(3, "1-aaaaaaa", "h.*", &a));
    tracker
        .wait_for("deploy 3 skipped", |t| t.phases(3) == ["skipped"])
        .await;
    assert!(tracker.phases(2).is_empty(), "deploy 2 targets other hosts");
    assert!(pid_alive(pid_a));

    // A deploy for this host installs B and stops A.
    tracker.desire(helpers::release(4, "hello", "2-bbbbbbb", b.clone()));
    tracker.send(&deploy_msg(4, "2-bbbbbbb", "h1", &b));
    tracker
        .wait_for("deploy 4 done", |t| {
            t.phases(4).last().map(String::as_str) == Some("done")
        })
        .await;
    assert!(tracker.phases(2).is_empty());
    assert!(!pid_alive(pid_a), "A was stopped");
    let root = dir.path().join("h1");
    let current = std::fs::read_link(root.join("apps/hello/current")).unwrap();
    assert_eq!(current, std::path::Path::new("releases/2-bbbbbbb"));
    tracker
        .wait_for("a heartbeat with B", |t| {
            t.last_heartbeat().is_some_and(|hb| {
                hb.apps[0].version == Some(Version::parse("2-bbbbbbb").unwrap())
                    && hb.apps[0].pid.is_some()
            })
        })
        .await;
    let pid_b = tracker.last_heartbeat().unwrap().apps[0].pid.unwrap();
    assert!(pid_alive(pid_b));

    // Shutdown: `run` returns Ok and, in this mode, stops the apps.
    token.cancel();
    tokio::time::timeout(Duration::from_secs(10), grabber)
        .await
        .expect("grabber stops in time")
        .unwrap()
        .unwrap();
    assert!(!pid_alive(pid_b));
    assert!(tracker.phases(2).is_empty());
}

/// The main loop's timer and bus events: a desired state that changed
/// without a word on the bus is installed at the next reconcile tick, and a
/// bus stream that ends (AppTracker restarted) is subscribed to again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciles_on_the_timer_and_subscribes_again_when_the_bus_ends() {
    let tracker = FakeTracker::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = grabber::Config {
        server: tracker.base.clone(),
        cluster: Cluster::parse("local").unwrap(),
        host: HostName::parse("h3").unwrap(),
        root: dir.path().join("h3"),
        heartbeat_interval: Duration::from_millis(100),
        reconcile_interval: Duration::from_millis(300),
        peer_listen: None,
        peer_advertise: None,
        stop_apps_on_exit: true,
        shim: env!("CARGO_BIN_EXE_grabber").into(),
        trusted_keys: vec![helpers::packer_key().public_key()],
        ..grabber::Config::default()
    };
    let _kill = helpers::KillApps(config.root.clone());
    let token = CancellationToken::new();
    let grabber = tokio::spawn(grabber::run(config, token.clone()));
    tracker
        .wait_for("a subscription and a heartbeat", |t| {
            let rec = t.rec.lock().unwrap();
            rec.subscribers.len() == 1 && !rec.heartbeats.is_empty()
        })
        .await;

    // Nothing is sent on the bus: the reconcile timer finds the release.
    let a = tracker.publish("hello", "1-aaaaaaa", "exec sleep 1000");
    tracker.rec.lock().unwrap().desired.push(deploy::Release {
        app: AppName::parse("hello").unwrap(),
        version: Version::parse("1-aaaaaaa").unwrap(),
        deploy_id: deploy::DeployId(1),
        artifact: a,
        config_version: 0,
        action: deploy::DeployAction::Deploy,
    });
    // Every later tick converges again and reports `skipped` (already
    // running): look for `done` anywhere, not last.
    tracker
        .wait_for("deploy 1 done", |t| t.phases(1).iter().any(|p| p == "done"))
        .await;
    assert_eq!(tracker.rec.lock().unwrap().subscribers.len(), 1);

    // The stream ends: after a backoff the grabber subscribes again.
    tracker.rec.lock().unwrap().subscribers.clear();
    tracker
        .wait_for("a new subscription", |t| {
            t.rec.lock().unwrap().subscribers.len() == 1
        })
        .await;
    let beats = tracker.rec.lock().unwrap().heartbeats.len();
    tracker
        .wait_for("heartbeats going on", |t| {
            t.rec.lock().unwrap().heartbeats.len() > beats + 2
        })
        .await;

    token.cancel();
    tokio::time::timeout(Duration::from_secs(10), grabber)
        .await
        .expect("grabber stops in time")
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_and_keeps_running_while_apptracker_is_away() {
    // Nothing listens on this port: every call fails, `run` keeps trying
    // quietly and still stops promptly.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dir = tempfile::tempdir().unwrap();
    let config = grabber::Config {
        server: format!("http://127.0.0.1:{port}"),
        cluster: Cluster::parse("local").unwrap(),
        host: HostName::parse("h2").unwrap(),
        root: dir.path().join("h2"),
        heartbeat_interval: Duration::from_millis(50),
        stop_apps_on_exit: true,
        shim: env!("CARGO_BIN_EXE_grabber").into(),
        trusted_keys: vec![helpers::packer_key().public_key()],
        ..grabber::Config::default()
    };
    let token = CancellationToken::new();
    let grabber = tokio::spawn(grabber::run(config, token.clone()));
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(!grabber.is_finished(), "an absent AppTracker is not fatal");
    token.cancel();
    tokio::time::timeout(Duration::from_secs(5), grabber)
        .await
        .expect("grabber stops in time")
        .unwrap()
        .unwrap();
    assert!(dir.path().join("h2/tmp").is_dir());
}

#[tokio::test]
async fn refuses_to_start_without_a_trusted_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = grabber::Config {
        server: "http://127.0.0.1:9".into(),
        root: dir.path().join("h3"),
        ..grabber::Config::default()
    };
    let e = grabber::run(config, CancellationToken::new())
        .await
        .expect_err("no trusted key, no grabber");
    let e = format!("{e:#}");
    assert!(
        e.contains("no trusted keys") && e.contains("--trusted-key"),
        "{e}"
    );
    assert!(
        !dir.path().join("h3").exists(),
        "refused before touching the host"
    );
}

/// A grabber configured for host `host` of cluster `local` under `dir`,
/// against `tracker`.
fn config(tracker: &FakeTracker, dir: &std::path::Path, host: &str) -> grabber::Config {
    grabber::Config {
        server: tracker.base.clone(),
        cluster: Cluster::parse("local").unwrap(),
        host: HostName::parse(host).unwrap(),
        root: dir.join(host),
        heartbeat_interval: Duration::from_millis(100),
        stop_apps_on_exit: true,
        shim: env!("CARGO_BIN_EXE_grabber").into(),
        trusted_keys: vec![helpers::packer_key().public_key()],
        ..grabber::Config::default()
    }
}

/// Stops a grabber started with `token` and checks it ended well.
async fn stop(token: CancellationToken, grabber: tokio::task::JoinHandle<anyhow::Result<()>>) {
    token.cancel();
    tokio::time::timeout(Duration::from_secs(10), grabber)
        .await
        .expect("grabber stops in time")
        .unwrap()
        .unwrap();
}

/// Whether `root` holds a release `version` of `hello`.
fn has_release(root: &std::path::Path, version: &str) -> bool {
    root.join("apps/hello/releases").join(version).exists()
}

/// A `release_phase` message only rings, as a deploy's does: the grabber
/// runs the release AppTracker names for this host (its artifact, not the
/// message's), and nothing when AppTracker names none, as for a message
/// replayed or forged by whoever can publish on the bus.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_phase_message_runs_only_what_apptracker_asks_of_this_host() {
    let tracker = FakeTracker::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = config(&tracker, dir.path(), "h7");
    let root = config.root.clone();
    let _kill = helpers::KillApps(root.clone());
    let token = CancellationToken::new();
    let grabber = tokio::spawn(grabber::run(config, token.clone()));
    tracker
        .wait_for("the grabber on the bus", |t| {
            !t.rec.lock().unwrap().subscribers.is_empty()
        })
        .await;
    let marker = |name: &str| dir.path().join(name);
    let touch = |name: &str| format!("touch {}", marker(name).display());

    // Signed by the packer, but no release phase of deploy 7 waits here.
    let old = tracker.publish_with(
        "hello",
        "0-0000000",
        "exec sleep 1000",
        Some(&touch("forged")),
    );
    let forged = helpers::release(7, "hello", "0-0000000", old);
    tracker.send(&helpers::release_phase_message(&forged, "h7"));
    // The real one: the message's artifact URL leads nowhere.
    let c = tracker.publish_with(
        "hello",
        "3-ccccccc",
        "exec sleep 1000",
        Some(&touch("real")),
    );
    let real = helpers::release(8, "hello", "3-ccccccc", c);
    tracker.ask_release_phase(real.clone());
    let mut message = real;
    message.artifact.url = format!("{}/artifacts/nowhere.tar.gz", tracker.base);
    tracker.send(&helpers::release_phase_message(&message, "h7"));

    let reported = |t: &FakeTracker, id: i64| {
        t.rec
            .lock()
            .unwrap()
            .release_phase_results
            .iter()
            .find(|(d, _)| *d == id)
            .map(|(_, r)| r.clone())
    };
    tracker
        .wait_for("deploy 8's release phase reported", |t| {
            reported(t, 8).is_some()
        })
        .await;
    let result = reported(&tracker, 8).unwrap();
    assert_eq!(
        result.outcome,
        deploy::ReleaseOutcome::Succeeded,
        "{result:?}"
    );
    assert!(marker("real").exists(), "the asked release's command ran");
    // Deploy 7 was asked about, refused, and nothing came of it.
    tracker
        .wait_for("deploy 7 asked about", |t| {
            t.rec.lock().unwrap().release_phase_reads.contains(&7)
        })
        .await;
    assert!(reported(&tracker, 7).is_none(), "forged deploy 7 reported");
    assert!(
        !marker("forged").exists(),
        "the forged release's command ran"
    );
    assert!(
        !has_release(&root, "0-0000000"),
        "the forged release was prepared"
    );
    stop(token, grabber).await;
}

/// Forged deploy messages (security finding M12): a validly signed older
/// release under a deploy id the desired state does not name, or the
/// desired deploy's id with another version, install nothing; a real one is
/// installed as the desired state says (its artifact, not the message's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_message_installs_only_what_the_desired_state_names() {
    let tracker = FakeTracker::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = config(&tracker, dir.path(), "h4");
    let root = config.root.clone();
    let _kill = helpers::KillApps(root.clone());
    let a = tracker.publish("hello", "1-aaaaaaa", "exec sleep 1000");
    tracker.desire(helpers::release(1, "hello", "1-aaaaaaa", a));
    let token = CancellationToken::new();
    let grabber = tokio::spawn(grabber::run(config, token.clone()));
    tracker
        .wait_for("deploy 1 done", |t| t.phases(1).iter().any(|p| p == "done"))
        .await;

    let deploy_1 = tracker.phases(1);
    // Signed by the packer, but never deployed here: someone who can
    // publish on the bus replays it.
    let old = tracker.publish("hello", "0-0000000", "exec sleep 1000");
    let forged = helpers::release(7, "hello", "0-0000000", old.clone());
    tracker.send(&helpers::deploy_message(&forged, "h4"));
    // The desired deploy's id, another version.
    let forged_version = helpers::release(1, "hello", "0-0000000", old);
    tracker.send(&helpers::deploy_message(&forged_version, "h4"));

    // The real deploy: the message's artifact URL leads nowhere; the
    // desired state's is the one used.
    let c = tracker.publish("hello", "3-ccccccc", "exec sleep 1000");
    let real = helpers::release(8, "hello", "3-ccccccc", c);
    tracker.desire(real.clone());
    let mut message = real.clone();
    message.artifact.url = format!("{}/artifacts/nowhere.tar.gz", tracker.base);
    tracker.send(&helpers::deploy_message(&message, "h4"));
    tracker
        .wait_for("deploy 8 done", |t| t.phases(8).iter().any(|p| p == "done"))
        .await;

    // The messages are answered in order, one read of the desired state at
    // a time: the forged ones were decided before deploy 8 was read.
    assert_eq!(
        tracker.phases(7),
        Vec::<String>::new(),
        "forged deploy 7 acted on"
    );
    assert_eq!(tracker.phases(1), deploy_1, "deploy 1 acted on again");
    assert!(
        !has_release(&root, "0-0000000"),
        "the forged release was installed"
    );
    assert_eq!(
        std::fs::read_link(root.join("apps/hello/current")).unwrap(),
        std::path::Path::new("releases/3-ccccccc")
    );
    stop(token, grabber).await;
}

/// A change of the desired state that never rang on the bus (the host was
/// cut off, the message lost, a failed deploy pointed the host back) is
/// read at the next heartbeat, whose answer names another fingerprint; in
/// the steady state heartbeats read nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_desired_state_changed_without_a_message_is_read_at_the_next_heartbeat() {
    let tracker = FakeTracker::start().await;
    tracker.rec.lock().unwrap().fingerprints = true;
    let dir = tempfile::tempdir().unwrap();
    let config = config(&tracker, dir.path(), "h6");
    let root = config.root.clone();
    let _kill = helpers::KillApps(root.clone());
    let a = tracker.publish("hello", "1-aaaaaaa", "exec sleep 1000");
    tracker.desire(helpers::release(1, "hello", "1-aaaaaaa", a));
    let token = CancellationToken::new();
    let grabber = tokio::spawn(grabber::run(config, token.clone()));
    tracker
        .wait_for("deploy 1 done", |t| t.phases(1).iter().any(|p| p == "done"))
        .await;
    let heartbeats = |t: &FakeTracker| t.rec.lock().unwrap().heartbeats.len();
    let (reads, seen) = (tracker.desired_reads(), heartbeats(&tracker));
    tracker
        .wait_for("ten more heartbeats", |t| heartbeats(t) >= seen + 10)
        .await;
    assert_eq!(
        tracker.desired_reads(),
        reads,
        "heartbeats of an unchanged desired state read it again"
    );

    // No bus message: the reconcile timer (5 minutes) is far away.
    let b = tracker.publish("hello", "2-bbbbbbb", "exec sleep 1000");
    tracker.desire(helpers::release(2, "hello", "2-bbbbbbb", b));
    tracker
        .wait_for("deploy 2 done", |t| t.phases(2).iter().any(|p| p == "done"))
        .await;
    assert_eq!(
        std::fs::read_link(root.join("apps/hello/current")).unwrap(),
        std::path::Path::new("releases/2-bbbbbbb")
    );
    stop(token, grabber).await;
}

/// A burst of `Sync` messages costs one read of the desired state (after
/// the spacing), not one each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_syncs_is_one_read_of_the_desired_state() {
    let tracker = FakeTracker::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = config(&tracker, dir.path(), "h5");
    let _kill = helpers::KillApps(config.root.clone());
    let a = tracker.publish("hello", "1-aaaaaaa", "exec sleep 1000");
    tracker.desire(helpers::release(1, "hello", "1-aaaaaaa", a));
    let token = CancellationToken::new();
    let grabber = tokio::spawn(grabber::run(config, token.clone()));
    tracker
        .wait_for("deploy 1 done", |t| t.phases(1).iter().any(|p| p == "done"))
        .await;
    let before = tracker.desired_reads();

    for _ in 0..50 {
        tracker.send(r#"{"kind":"sync"}"#);
    }
    // Messages are handled in order: once deploy 2 is done, the burst has
    // been seen whole.
    let b = tracker.publish("hello", "2-bbbbbbb", "exec sleep 1000");
    let real = helpers::release(2, "hello", "2-bbbbbbb", b);
    tracker.desire(real.clone());
    tracker.send(&helpers::deploy_message(&real, "h5"));
    tracker
        .wait_for("deploy 2 done", |t| t.phases(2).iter().any(|p| p == "done"))
        .await;
    let reads = tracker.desired_reads() - before;
    // At most: the burst's first sync (when the connection's was longer
    // ago than the spacing), the deploy message, the rest of the burst.
    assert!(
        reads <= 3,
        "{reads} reads of the desired state for 50 syncs and a deploy"
    );
    // The burst is not lost: besides the deploy message's, it reads the
    // desired state once (at once, or after the spacing).
    tracker
        .wait_for("the burst's read", |t| t.desired_reads() - before >= 2)
        .await;
    stop(token, grabber).await;
}

/// The Redis of `SLIPWAY_TEST_REDIS`, or `None` (a loud skip) when it is
/// not set, outside CI.
fn test_redis() -> Option<String> {
    match std::env::var("SLIPWAY_TEST_REDIS") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
            assert!(!ci, "CI=true and SLIPWAY_TEST_REDIS is not set");
            eprintln!("\n!!! SKIPPING: SLIPWAY_TEST_REDIS is not set\n");
            None
        }
    }
}

/// M12 on a real Redis: a deploy message anyone publishes on the
/// cluster's channel installs nothing the desired state does not name;
/// AppTracker's own still installs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_message_forged_on_redis_installs_nothing() {
    let Some(redis_url) = test_redis() else {
        return;
    };
    let tracker = FakeTracker::start().await;
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("test-m12-{}", std::process::id());
    let config = grabber::Config {
        redis_url: Some(redis_url.clone()),
        redis_prefix: prefix.clone(),
        ..config(&tracker, dir.path(), "h6")
    };
    let root = config.root.clone();
    let _kill = helpers::KillApps(root.clone());
    let token = CancellationToken::new();
    let grabber = tokio::spawn(grabber::run(config, token.clone()));

    let redis = redis::Client::open(redis_url.as_str()).unwrap();
    let mut conn = redis.get_multiplexed_async_connection().await.unwrap();
    let channel = deploy::bus::channel(&prefix, &Cluster::parse("local").unwrap());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (_, subscribers): (String, i64) = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(&channel)
            .query_async(&mut conn)
            .await
            .unwrap();
        if subscribers > 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the grabber never subscribed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let publish = |msg: String| {
        let mut conn = conn.clone();
        let channel = channel.clone();
        async move {
            redis::cmd("PUBLISH")
                .arg(&channel)
                .arg(msg)
                .query_async::<i64>(&mut conn)
                .await
                .unwrap()
        }
    };

    let old = tracker.publish("hello", "0-0000000", "exec sleep 1000");
    let forged = helpers::release(7, "hello", "0-0000000", old);
    assert_eq!(publish(helpers::deploy_message(&forged, "h6")).await, 1);

    let c = tracker.publish("hello", "3-ccccccc", "exec sleep 1000");
    let real = helpers::release(8, "hello", "3-ccccccc", c);
    tracker.desire(real.clone());
    publish(helpers::deploy_message(&real, "h6")).await;
    tracker
        .wait_for("deploy 8 done", |t| t.phases(8).iter().any(|p| p == "done"))
        .await;
    assert_eq!(
        tracker.phases(7),
        Vec::<String>::new(),
        "forged deploy 7 acted on"
    );
    assert!(
        !has_release(&root, "0-0000000"),
        "the forged release was installed"
    );
    stop(token, grabber).await;
}
