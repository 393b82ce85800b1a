//! Rollout strategies over ten hosts: a rolling deploy in batches of three
//! never has more than three hosts between stopping the old release and a
//! healthy new one; a failing canary leaves every other host untouched; a
//! failure threshold halts a rolling deploy part way; a second deploy of
//! the same app to the same cluster is refused while the first runs, naming
//! it; a cancelled deploy starts no further hosts; the targets preview
//! names what a deploy takes, and a host selector never escapes the whole
//! host name; a host whose grabber died times out and a
//! retry takes only it; a rollback puts the previous version back and pins
//! it.

use std::time::Duration;

use deploy::{
    CreateDeploy, Deploy, DeployId, DeployStatus, HostPhase, HostSelector, Portion, Strategy,
    Timestamp,
};
use slipway_tests::{AppRepo, Platform, commit_hello, platform, poll};

const TEN: [&str; 10] = [
    "web-01", "web-02", "web-03", "web-04", "web-05", "web-06", "web-07", "web-08", "web-09",
    "web-10",
];

fn rolling(batch: u32) -> Strategy {
    Strategy::Rolling {
        batch: Portion::Count(batch),
        bake_ms: 0,
        max_unavailable: None,
    }
}

async fn deploy_with(
    p: &Platform,
    app: &deploy::AppName,
    git_ref: &str,
    strategy: Strategy,
    max_failures: Portion,
) -> Result<Deploy, deploy::ClientError> {
    p.client
        .create_deploy(&CreateDeploy {
            app: app.clone(),
            version: None,
            git_ref: Some(deploy::GitRef::parse(git_ref).expect("a valid ref")),
            cluster: deploy::Cluster::parse("local").expect("a valid cluster"),
            hosts: None::<HostSelector>,
            strategy,
            max_failures,
            rollback_on_failure: false,
            confirm: None,
            wait: false,
        })
        .await
}

/// The most hosts that were ever at once between `starting` (the grabber
/// stops the old release) and `done` (the new one is healthy), from the
/// recorded event times.
async fn most_in_flight(p: &Platform, id: deploy::DeployId) -> anyhow::Result<usize> {
    let events = p.client.deploy_events(id).await?;
    let mut spans: Vec<(Timestamp, Timestamp)> = Vec::new();
    for host in TEN {
        let of = |phase: HostPhase| {
            events
                .iter()
                .find(|e| e.host.as_str() == host && e.phase == phase)
                .map(|e| e.at)
        };
        let (Some(start), Some(end)) = (of(HostPhase::Starting), of(HostPhase::Done)) else {
            anyhow::bail!("{host} has no starting/done events: {events:#?}");
        };
        spans.push((start, end));
    }
    // At every start, count the spans open then (ends are exclusive: a
    // host done in the same millisecond another starts is not counted).
    Ok(spans
        .iter()
        .map(|(at, _)| spans.iter().filter(|(s, e)| s <= at && at < e).count())
        .max()
        .unwrap_or(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rolling_canary_threshold_lock_and_cancel() -> anyhow::Result<()> {
    let p = platform().hosts(&TEN).start().await?;
    let repo = AppRepo::new(p.dir().join("repo"))?;
    let app = p.register("hello", &repo.path).await?;

    // Rolling, batches of three: four batches, never more than three hosts
    // switching at once.
    commit_hello(&repo, "A", true)?;
    let d = deploy_with(&p, &app, "main", rolling(3), Portion::Count(0)).await?;
    let batches: Vec<u32> = d.hosts.iter().map(|h| h.batch).collect();
    assert_eq!(batches, [0, 0, 0, 1, 1, 1, 2, 2, 2, 3]);
    // While it runs, a second deploy of the app to the cluster is refused
    // with the first's id.
    let e = deploy_with(&p, &app, "main", Strategy::AllAtOnce, Portion::Count(0))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("deploy_in_progress"), "{e}");
    assert!(e.to_string().contains(&format!("deploy {}", d.id)), "{e}");
    let a = p.wait_deploy(d.id).await?;
    assert_eq!(a.status, DeployStatus::Succeeded, "{a:#?}");
    let most = most_in_flight(&p, d.id).await?;
    assert!(
        (1..=3).contains(&most),
        "{most} hosts were between stopping and healthy at once"
    );
    // One host at a time but up to three under way: batches overlap, and
    // the window is never exceeded.
    commit_hello(&repo, "A2", true)?;
    let window = Strategy::Rolling {
        batch: Portion::Count(1),
        bake_ms: 0,
        max_unavailable: Some(Portion::Count(3)),
    };
    let d = deploy_with(&p, &app, "main", window, Portion::Count(0)).await?;
    let a = p.wait_deploy(d.id).await?;
    assert_eq!(a.status, DeployStatus::Succeeded, "{a:#?}");
    let most = most_in_flight(&p, d.id).await?;
    assert!(
        (2..=3).contains(&most),
        "{most} hosts were between stopping and healthy at once"
    );
    // A window below the batch size is refused before anything happens.
    let narrow = Strategy::Rolling {
        batch: Portion::Count(3),
        bake_ms: 0,
        max_unavailable: Some(Portion::Count(2)),
    };
    let e = deploy_with(&p, &app, "main", narrow, Portion::Count(0))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("invalid_input"), "{e}");
    let version_a = a.version.clone().expect("a version");

    // A failing canary: the other nine hosts are never touched.
    commit_hello(&repo, "B", false)?;
    let d = deploy_with(
        &p,
        &app,
        "main",
        Strategy::Canary {
            canary: Portion::Count(1),
            bake_ms: 0,
            manual: false,
        },
        Portion::Count(0),
    )
    .await?;
    let b = p.wait_deploy(d.id).await?;
    assert_eq!(b.status, DeployStatus::Failed, "{b:#?}");
    assert!(
        b.error
            .as_deref()
            .unwrap_or("")
            .contains("halted after batch 1 of 2"),
        "{b:#?}"
    );
    assert_eq!(b.hosts[0].host.as_str(), "web-01");
    assert_eq!(b.hosts[0].phase, HostPhase::Failed);
    assert!(b.hosts[0].rolled_back);
    for h in &b.hosts[1..] {
        assert_eq!(h.phase, HostPhase::NotStarted, "{h:#?}");
    }
    let events = p.client.deploy_events(d.id).await?;
    assert!(
        events.iter().all(|e| e.host.as_str() == "web-01"),
        "only the canary reported anything: {events:#?}"
    );
    for host in TEN {
        assert_eq!(
            p.host(host).current("hello").as_deref(),
            Some(version_a.as_str()),
            "{host} still runs A"
        );
    }

    // Rolling in threes with one failure tolerated: the first batch fails
    // three hosts, over the threshold, and the rollout stops there.
    let d = deploy_with(&p, &app, "main", rolling(3), Portion::Count(1)).await?;
    let c = p.wait_deploy(d.id).await?;
    assert_eq!(c.status, DeployStatus::Failed, "{c:#?}");
    let phases: Vec<HostPhase> = c.hosts.iter().map(|h| h.phase).collect();
    assert_eq!(&phases[..3], [HostPhase::Failed; 3]);
    assert_eq!(&phases[3..], [HostPhase::NotStarted; 7]);
    assert!(
        c.error
            .as_deref()
            .unwrap_or("")
            .contains("3 host(s) failed"),
        "{c:#?}"
    );

    // Cancelled while its first batch bakes: the second never starts.
    commit_hello(&repo, "C", true)?;
    let slow = Strategy::Rolling {
        batch: Portion::Count(5),
        bake_ms: 120_000,
        max_unavailable: None,
    };
    let d = deploy_with(&p, &app, "main", slow, Portion::Count(0)).await?;
    poll(Duration::from_secs(60), || async {
        let now = p.client.deploy(d.id).await?;
        Ok(now
            .hosts
            .iter()
            .filter(|h| h.batch == 0)
            .all(|h| h.phase == HostPhase::Done))
    })
    .await?;
    assert_eq!(
        p.client.deploy(d.id).await?.status,
        DeployStatus::Running,
        "baking"
    );
    let cancelled = p.client.cancel_deploy(d.id).await?;
    assert_eq!(cancelled.status, DeployStatus::Cancelled);
    for h in &cancelled.hosts {
        let want = if h.batch == 0 {
            HostPhase::Done
        } else {
            HostPhase::NotStarted
        };
        assert_eq!(h.phase, want, "{h:#?}");
    }
    assert_eq!(
        p.host("web-10").current("hello").as_deref(),
        Some(version_a.as_str())
    );
    // Cancelling twice is a clear error.
    let e = p.client.cancel_deploy(d.id).await.unwrap_err();
    assert_eq!(e.code(), Some("deploy_finished"), "{e}");
    // The lock is free again at once.
    let again = deploy_with(&p, &app, "main", Strategy::AllAtOnce, Portion::Count(0)).await?;
    let done = p.wait_deploy(again.id).await?;
    assert_eq!(done.status, DeployStatus::Succeeded, "{done:#?}");
    p.shutdown().await
}

/// `local)|(x` used to be pasted into `^(?:…)$` and select every host
/// whose name starts with `local`; now it is refused, and no selector
/// selects a host its pattern does not match from end to end.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn host_selectors_never_escape_the_whole_host_name() -> anyhow::Result<()> {
    let p = platform()
        .hosts(&["local-1", "local-2", "other-1"])
        .start()
        .await?;
    let http = slipway_tests::http();
    let targets = |hosts: &'static str| {
        let req = http
            .get(format!("{}/api/v1/targets", p.base_url))
            .bearer_auth(&p.admin_token)
            .query(&[("cluster", "local"), ("hosts", hosts)]);
        async move {
            let r = req.send().await?;
            let status = r.status().as_u16();
            let body: serde_json::Value = r.json().await?;
            anyhow::Ok((status, body))
        }
    };
    let hosts = |body: &serde_json::Value| -> Vec<String> {
        body["hosts"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|h| h["name"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let (status, body) = targets("local)|(x").await?;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["code"], "invalid_input", "{body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("local)|(x")),
        "{body}"
    );
    // A pattern that matches a prefix only selects nothing.
    let (status, body) = targets("local").await?;
    assert_eq!(
        (status, body["code"].as_str()),
        (422, Some("no_matching_hosts"))
    );
    let (status, body) = targets("(?i)LOCAL-1").await?;
    assert_eq!((status, hosts(&body)), (200, vec!["local-1".to_string()]));
    let (status, body) = targets("local-1|other").await?;
    assert_eq!((status, hosts(&body)), (200, vec!["local-1".to_string()]));
    let (status, body) = targets("(?:x)|.*").await?;
    assert_eq!((status, hosts(&body).len()), (200, 3), "{body}");
    p.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_targets_preview_matches_the_deploy_a_killed_host_times_out_and_retry_takes_it()
-> anyhow::Result<()> {
    let mut p = platform()
        .hosts(&["api-1", "api-2", "worker-1"])
        .configure(|c| c.host_deadline = Duration::from_secs(3))
        .start()
        .await?;
    let repo = AppRepo::new(p.dir().join("repo"))?;
    commit_unbaked(&repo, "A")?;
    let app = p.register("hello", &repo.path).await?;
    let local = deploy::Cluster::parse("local")?;

    // The preview names exactly the hosts the deploy then takes.
    let api = HostSelector::parse("api-.*")?;
    let t = p.client.targets(&local, Some(&api)).await?;
    let names: Vec<&str> = t.hosts.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(names, ["api-1", "api-2"]);
    assert!(t.excluded.is_empty());
    let nothing = HostSelector::parse("db-.*")?;
    let e = p.client.targets(&local, Some(&nothing)).await.unwrap_err();
    assert_eq!(e.code(), Some("no_matching_hosts"), "{e}");
    assert!(e.to_string().contains("api-1, api-2, worker-1"), "{e}");
    let d = p.release(&app, "main", Some("api-.*")).await?;
    let hosts: Vec<&str> = d.hosts.iter().map(|h| h.host.as_str()).collect();
    assert_eq!(hosts, names);
    p.wait_deploy(d.id).await?;

    // A host whose grabber dies before it reports: timed out after the
    // deadline, and the deploy ends partial instead of hanging.
    commit_unbaked(&repo, "B")?;
    p.stop_grabber(2).await?;
    let d = p.release(&app, "main", None).await?;
    let done = p.wait_deploy(d.id).await?;
    assert_eq!(done.status, DeployStatus::Partial, "{done:#?}");
    let dead = done
        .hosts
        .iter()
        .find(|h| h.host.as_str() == "worker-1")
        .expect("worker-1 is targeted");
    assert_eq!(dead.phase, HostPhase::TimedOut, "{dead:#?}");
    // Timed out, the host goes back in its desired state to what it ran
    // before (nothing: A went to the api hosts only): restarted, its
    // grabber must not install the release this deploy gave up on.
    let worker = deploy::HostName::parse("worker-1")?;
    let desired = p.client.desired_state(&local, &worker).await?;
    assert!(desired.apps.iter().all(|a| a.app != app), "{desired:#?}");
    assert!(
        done.hosts
            .iter()
            .filter(|h| h.host.as_str() != "worker-1")
            .all(|h| h.phase == HostPhase::Done),
        "{done:#?}"
    );

    // Retry touches only the host that did not make it, as a new deploy
    // linked to the first.
    p.start_grabber(2);
    let retry = p.client.retry_deploy(d.id).await?;
    assert_eq!(retry.retry_of, Some(d.id));
    let hosts: Vec<&str> = retry.hosts.iter().map(|h| h.host.as_str()).collect();
    assert_eq!(hosts, ["worker-1"]);
    assert_eq!(retry.version, done.version);
    let retried = p.wait_deploy(retry.id).await?;
    assert_eq!(retried.status, DeployStatus::Succeeded, "{retried:#?}");
    let events = p.client.deploy_events(retry.id).await?;
    assert!(
        events.iter().all(|e| e.host.as_str() == "worker-1"),
        "{events:#?}"
    );
    let version = done.version.expect("a version");
    assert_eq!(
        p.host("worker-1").current("hello").as_deref(),
        Some(version.as_str())
    );
    // Nothing left to retry.
    let e = p.client.retry_deploy(retry.id).await.unwrap_err();
    assert_eq!(e.code(), Some("nothing_to_retry"), "{e}");

    // One call rolls back: every host B replaced runs A again, and the app
    // is pinned there, so another deploy of B is refused until unpinned.
    let version_a = p
        .client
        .deploy(DeployId(1))
        .await?
        .version
        .expect("A's version");
    let back = p.client.rollback(&app, &local).await?;
    assert_eq!(back.version.as_ref(), Some(&version_a));
    let hosts: Vec<&str> = back.hosts.iter().map(|h| h.host.as_str()).collect();
    assert_eq!(
        hosts,
        ["api-1", "api-2"],
        "worker-1 never ran A: nothing to put back"
    );
    let back = p.wait_deploy(back.id).await?;
    assert_eq!(back.status, DeployStatus::Succeeded, "{back:#?}");
    for host in ["api-1", "api-2"] {
        assert_eq!(
            p.host(host).current("hello").as_deref(),
            Some(version_a.as_str())
        );
    }
    assert_eq!(
        p.host("worker-1").current("hello").as_deref(),
        Some(version.as_str())
    );
    let pins = p.client.pins(&app).await?;
    assert_eq!(pins.len(), 1);
    assert_eq!(
        (&pins[0].version, pins[0].pinned_by.as_str()),
        (&version_a, "test-admin")
    );
    let e = p.release(&app, version.as_str(), None).await.unwrap_err();
    let e = e.downcast::<deploy::ClientError>()?;
    assert_eq!(e.code(), Some("pinned"), "{e}");
    assert!(e.to_string().contains("test-admin"), "{e}");
    p.client.unpin(&app, &local).await?;
    assert!(p.client.pins(&app).await?.is_empty());
    // Each of these changes is in the audit log, with who and what.
    let audit = p
        .client
        .audit(&deploy::AuditQuery {
            app: Some(app.clone()),
            ..Default::default()
        })
        .await?;
    for (route, target) in [
        (
            "/api/v1/apps/{app}/rollback",
            "rollback on local".to_string(),
        ),
        (
            "/api/v1/apps/{app}/pins/{cluster}",
            "unpin on local".to_string(),
        ),
    ] {
        assert!(
            audit.iter().any(|e| e.route.as_deref() == Some(route)
                && e.target.as_ref() == Some(&target)
                && e.actor == "test-admin"
                && e.status == 200),
            "{route}: {audit:#?}"
        );
    }
    let d = p.release(&app, version.as_str(), None).await?;
    assert_eq!(p.wait_deploy(d.id).await?.status, DeployStatus::Succeeded);
    p.shutdown().await
}

/// The test app without `[health] bake`: with a 3s `host_deadline`, a
/// healthy host's 2s bake (no report between `checking` and `done`) would
/// leave it under a second to spare on a loaded machine.
fn commit_unbaked(repo: &AppRepo, message: &str) -> anyhow::Result<String> {
    let files: Vec<(&str, String)> = slipway_tests::hello_app(message, true)
        .into_iter()
        .map(|(n, c)| (n, c.replace("[health]\n", "[health]\nbake = \"0s\"\n")))
        .collect();
    assert!(files.iter().any(|(_, c)| c.contains("bake = \"0s\"")));
    let refs: Vec<(&str, &str)> = files.iter().map(|(n, c)| (*n, c.as_str())).collect();
    repo.commit(&refs, message)
}

/// The test app, healthy everywhere but on `bad` hosts (by `SLIPWAY_HOST`).
fn commit_failing_on(repo: &AppRepo, message: &str, bad: &[&str]) -> anyhow::Result<String> {
    let files = slipway_tests::hello_app(message, false);
    let bad: Vec<String> = bad.iter().map(|h| format!("{h:?}")).collect();
    let healthy = format!(
        "HEALTHY = os.environ.get(\"SLIPWAY_HOST\") not in ({},)",
        bad.join(", ")
    );
    let files: Vec<(&str, String)> = files
        .into_iter()
        // Long enough for a healthy host to come up on a loaded machine.
        .map(|(n, c)| {
            let c = c.replace("HEALTHY = False", &healthy);
            (n, c.replace("timeout = \"2s\"", "timeout = \"8s\""))
        })
        .collect();
    let refs: Vec<(&str, &str)> = files.iter().map(|(n, c)| (*n, c.as_str())).collect();
    repo.commit(&refs, message)
}

fn request(app: &deploy::AppName, git_ref: &str) -> anyhow::Result<CreateDeploy> {
    Ok(CreateDeploy {
        app: app.clone(),
        version: None,
        git_ref: Some(deploy::GitRef::parse(git_ref)?),
        cluster: deploy::Cluster::parse("local")?,
        hosts: None,
        strategy: Strategy::AllAtOnce,
        max_failures: Portion::Count(0),
        rollback_on_failure: false,
        confirm: None,
        wait: false,
    })
}

/// The deploy that rolls back failed deploy `id`, from the failed one's
/// error (written just after it ends, once the rollback exists).
async fn rolled_back_by(p: &Platform, id: DeployId) -> anyhow::Result<(String, DeployId)> {
    let found = std::sync::Mutex::new(None);
    poll(Duration::from_secs(30), || async {
        let error = p.client.deploy(id).await?.error.unwrap_or_default();
        let back = error
            .split("rolled back by deploy ")
            .nth(1)
            .and_then(|n| n.trim().parse::<i64>().ok());
        let done = back.is_some();
        if let Some(back) = back {
            *found.lock().unwrap_or_else(|e| e.into_inner()) = Some((error, DeployId(back)));
        }
        Ok(done)
    })
    .await?;
    found
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .ok_or_else(|| anyhow::anyhow!("deploy {id} names no rollback"))
}

const FIVE: [&str; 5] = ["web-01", "web-02", "web-03", "web-04", "web-05"];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rollback_on_failure_manual_canary_queue_and_cluster_controls() -> anyhow::Result<()> {
    let mut p = platform()
        .hosts(&FIVE)
        .configure(|c| c.host_unreachable = Duration::from_secs(3))
        .start()
        .await?;
    let repo = AppRepo::new(p.dir().join("repo"))?;
    let app = p.register("hello", &repo.path).await?;
    let local = deploy::Cluster::parse("local")?;
    commit_hello(&repo, "A", true)?;
    let a = p.release_and_wait(&app, "main", None).await?;
    assert_eq!(a.status, DeployStatus::Succeeded, "{a:#?}");
    let version_a = a.version.clone().expect("A's version");
    let runs = |p: &Platform, host: &str| p.host(host).current("hello");

    // Rolling in twos, B failing on web-04, rollback on failure: the
    // threshold (no failure allowed) is crossed in the second batch, web-05
    // is never touched, and the three hosts that switched go back to A in a
    // deploy linked to the failed one.
    commit_failing_on(&repo, "B", &["web-04"])?;
    let mut req = request(&app, "main")?;
    req.strategy = rolling(2);
    req.rollback_on_failure = true;
    let b = p.client.create_deploy(&req).await?;
    assert!(b.rollback_on_failure);
    let b = p.wait_deploy(b.id).await?;
    let phases: Vec<(&str, HostPhase)> =
        b.hosts.iter().map(|h| (h.host.as_str(), h.phase)).collect();
    assert_eq!(
        phases,
        [
            ("web-01", HostPhase::Done),
            ("web-02", HostPhase::Done),
            ("web-03", HostPhase::Done),
            ("web-04", HostPhase::Failed),
            ("web-05", HostPhase::NotStarted),
        ]
    );
    assert_eq!(b.status, DeployStatus::Partial, "{b:#?}");
    let (error, back_id) = rolled_back_by(&p, b.id).await?;
    assert!(error.contains("halted after batch 2 of 3"), "{error}");
    let back = p.wait_deploy(back_id).await?;
    assert_eq!(back.rollback_of, Some(b.id));
    assert_eq!(back.version.as_ref(), Some(&version_a));
    assert_eq!(back.status, DeployStatus::Succeeded, "{back:#?}");
    let hosts: Vec<&str> = back.hosts.iter().map(|h| h.host.as_str()).collect();
    assert_eq!(hosts, ["web-01", "web-02", "web-03"]);
    for host in FIVE {
        assert_eq!(
            runs(&p, host).as_deref(),
            Some(version_a.as_str()),
            "{host}"
        );
    }
    assert!(
        p.client.pins(&app).await?.is_empty(),
        "an automatic rollback pins nothing"
    );
    // The last batch's failure counts too: all at once, one host failing,
    // and only the others go back.
    // A deploy queued behind it meanwhile does not take the slot first:
    // the rollback goes, then the queued deploy.
    let mut req = request(&app, "main")?;
    req.rollback_on_failure = true;
    let b2 = p.client.create_deploy(&req).await?;
    let mut behind = request(&app, version_a.as_str())?;
    behind.version = Some(version_a.clone());
    behind.git_ref = None;
    behind.wait = true;
    let behind = p.client.create_deploy(&behind).await?;
    assert_eq!(behind.status, DeployStatus::Queued, "{behind:#?}");
    let b2 = p.wait_deploy(b2.id).await?;
    let (error, back_id) = rolled_back_by(&p, b2.id).await?;
    assert!(
        error.starts_with("failed: 1 host(s) failed")
            && error.contains("the 4 host(s) that switched"),
        "{error}"
    );
    let back = p.wait_deploy(back_id).await?;
    assert_eq!(back.status, DeployStatus::Succeeded, "{back:#?}");
    let behind = p.wait_deploy(behind.id).await?;
    assert_eq!(behind.status, DeployStatus::Succeeded, "{behind:#?}");
    assert!(
        behind.finished_at >= back.finished_at,
        "the queued deploy went before the rollback: {behind:#?} {back:#?}"
    );
    for host in FIVE {
        assert_eq!(
            runs(&p, host).as_deref(),
            Some(version_a.as_str()),
            "{host}"
        );
    }

    // A manual canary stops after its canary until someone continues it.
    // Meanwhile a deploy that may wait is queued, and a newer one with the
    // same hosts supersedes it; once the canary deploy ends, the newest
    // queued one starts by itself.
    commit_hello(&repo, "C", true)?;
    let mut req = request(&app, "main")?;
    req.strategy = Strategy::Canary {
        canary: Portion::Count(1),
        bake_ms: 0,
        manual: true,
    };
    let c = p.client.create_deploy(&req).await?;
    poll(Duration::from_secs(60), || async {
        Ok(p.client.deploy(c.id).await?.paused_at.is_some())
    })
    .await?;
    let paused = p.client.deploy(c.id).await?;
    assert_eq!(paused.status, DeployStatus::Running);
    assert_eq!(paused.hosts[0].phase, HostPhase::Done);
    assert!(
        paused.hosts[1..]
            .iter()
            .all(|h| h.phase == HostPhase::Pending),
        "{paused:#?}"
    );
    assert_eq!(runs(&p, "web-05").as_deref(), Some(version_a.as_str()));
    let mut queued = request(&app, version_a.as_str())?;
    queued.version = Some(version_a.clone());
    queued.git_ref = None;
    let e = p.client.create_deploy(&queued).await.unwrap_err();
    assert_eq!(e.code(), Some("deploy_in_progress"), "{e}");
    queued.wait = true;
    let q1 = p.client.create_deploy(&queued).await?;
    assert_eq!(q1.status, DeployStatus::Queued, "{q1:#?}");
    let q2 = p.client.create_deploy(&queued).await?;
    assert_eq!(q2.status, DeployStatus::Queued, "{q2:#?}");
    let q1 = p.client.deploy(q1.id).await?;
    assert_eq!(q1.status, DeployStatus::Cancelled);
    assert_eq!(
        q1.error.as_deref(),
        Some(format!("superseded by deploy {}", q2.id).as_str())
    );
    let e = p.client.continue_deploy(q2.id).await.unwrap_err();
    assert_eq!(e.code(), Some("not_paused"), "{e}");
    let c = p.client.continue_deploy(c.id).await?;
    assert_eq!(c.paused_at, None);
    let c = p.wait_deploy(c.id).await?;
    assert_eq!(c.status, DeployStatus::Succeeded, "{c:#?}");
    let q2 = p.wait_deploy(q2.id).await?;
    assert_eq!(q2.status, DeployStatus::Succeeded, "{q2:#?}");
    for host in FIVE {
        assert_eq!(
            runs(&p, host).as_deref(),
            Some(version_a.as_str()),
            "{host}"
        );
    }

    // A protected cluster takes a deploy only with its name typed back.
    p.client.set_protected(&local, true).await?;
    let req = request(&app, "main")?;
    let e = p.client.create_deploy(&req).await.unwrap_err();
    assert_eq!(e.code(), Some("confirmation_required"), "{e}");
    assert!(e.to_string().contains("--yes-i-mean-local"), "{e}");
    let mut wrong = req.clone();
    wrong.confirm = Some(deploy::Cluster::parse("prod")?);
    let e = p.client.create_deploy(&wrong).await.unwrap_err();
    assert!(e.to_string().contains("names `prod`"), "{e}");
    // A frozen cluster takes none (the reason and who froze it are told),
    // except a rollback.
    let frozen = p
        .client
        .freeze(
            &local,
            &deploy::Freeze {
                until: None,
                duration: Some("1h".into()),
                reason: "Black Friday".into(),
            },
        )
        .await?;
    assert!(frozen.protected && frozen.frozen_until.is_some());
    let mut confirmed = req.clone();
    confirmed.confirm = Some(local.clone());
    let e = p.client.create_deploy(&confirmed).await.unwrap_err();
    assert_eq!(e.code(), Some("cluster_frozen"), "{e}");
    assert!(
        e.to_string().contains("Black Friday") && e.to_string().contains("test-admin"),
        "{e}"
    );
    let e = p
        .client
        .freeze(
            &local,
            &deploy::Freeze {
                until: None,
                duration: Some("soon".into()),
                reason: "x".into(),
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("invalid_input"), "{e}");
    let settings = p.client.clusters().await?;
    assert_eq!(settings.len(), 1);
    assert_eq!(settings[0].freeze_reason.as_deref(), Some("Black Friday"));
    let e = p.client.rollback(&app, &local).await.unwrap_err();
    assert_eq!(e.code(), Some("confirmation_required"), "{e}");
    let back = p
        .client
        .rollback_confirmed(&app, &local, Some(&local))
        .await?;
    assert_eq!(
        p.wait_deploy(back.id).await?.status,
        DeployStatus::Succeeded
    );
    p.client.unpin(&app, &local).await?;
    p.client.thaw(&local).await?;
    let d = p.client.create_deploy(&confirmed).await?;
    assert_eq!(p.wait_deploy(d.id).await?.status, DeployStatus::Succeeded);
    p.client.set_protected(&local, false).await?;

    // A host whose grabber stops heartbeating during a deploy is
    // `unreachable` (not `failed`, not `timed_out`) well before the
    // five-minute progress deadline, and a retry takes it.
    commit_hello(&repo, "D", true)?;
    p.stop_grabber(4).await?;
    let d = p.client.create_deploy(&request(&app, "main")?).await?;
    let d = p.wait_deploy(d.id).await?;
    assert_eq!(d.status, DeployStatus::Partial, "{d:#?}");
    let down = d.hosts.iter().find(|h| h.host.as_str() == "web-05");
    let down = down.ok_or_else(|| anyhow::anyhow!("web-05 is targeted"))?;
    assert_eq!(down.phase, HostPhase::Unreachable, "{down:#?}");
    assert!(
        down.message
            .as_deref()
            .unwrap_or("")
            .contains("not heartbeated"),
        "{down:#?}"
    );
    p.start_grabber(4);
    let retry = p.client.retry_deploy(d.id).await?;
    let hosts: Vec<&str> = retry.hosts.iter().map(|h| h.host.as_str()).collect();
    assert_eq!(hosts, ["web-05"]);
    assert_eq!(
        p.wait_deploy(retry.id).await?.status,
        DeployStatus::Succeeded
    );

    // Each control is in the audit log with who did it.
    let audit = p.client.audit(&deploy::AuditQuery::default()).await?;
    for target in [
        "protect local",
        "freeze local",
        "thaw local",
        "unprotect local",
    ] {
        assert!(
            audit
                .iter()
                .any(|e| e.target.as_deref() == Some(target) && e.actor == "test-admin"),
            "{target}: {audit:#?}"
        );
    }
    p.shutdown().await
}
