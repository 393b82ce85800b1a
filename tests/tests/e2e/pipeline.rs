//! The whole pipeline on one machine: a git commit reaches three hosts, a bad
//! one rolls back, targeting and convergence hold, an app that crashes
//! within its `[health] bake` fails its deploy, one that crashes in a loop
//! (no bake) shows as failing in the host table, bad input changes nothing.

use std::collections::BTreeMap;

use deploy::{DeployStatus, HostPhase};
use slipway_tests::{AppRepo, Platform, commit_hello, get_app, platform, poll};
use std::time::Duration;

const HOSTS: [&str; 3] = ["local-1", "local-2", "local-3"];

/// The pid state.json records for an app on a host.
fn pid_of(p: &Platform, host: &str, app: &str) -> Option<u64> {
    let path = p.host(host).root.join("apps").join(app).join("state.json");
    let text = std::fs::read_to_string(path).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v.get("pid")?.as_u64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn commits_reach_every_host_and_a_bad_one_rolls_back() -> anyhow::Result<()> {
    let p = platform().hosts(&HOSTS).start().await?;
    release_rollout_and_rollback(&p).await?;
    p.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_on_postgresql_redis_and_s3() -> anyhow::Result<()> {
    let (Some(db), Some(redis), Some(s3)) = (
        slipway_tests::services::postgres().await,
        slipway_tests::services::redis().await,
        slipway_tests::services::s3().await,
    ) else {
        return Ok(());
    };
    let db_url = db.url.clone();
    let p = platform()
        .hosts(&HOSTS)
        .configure(move |c| {
            c.database_url = Some(db_url);
            c.redis_url = Some(redis);
            c.s3 = Some(s3.config());
        })
        .start()
        .await?;
    release_rollout_and_rollback(&p).await?;

    // Hosts downloaded through presigned S3 URLs; a tampered one is refused
    // by the store itself.
    let as_agent = deploy::Client::new(p.base_url.clone()).with_token(p.agent_token.clone());
    let desired = as_agent.desired_state(&p.cluster, &p.hosts[0].name).await?;
    let url = &desired.apps[0].artifact.url;
    assert!(
        url.contains("X-Amz-Signature="),
        "a presigned S3 URL: {url}"
    );
    assert!(
        !url.contains(&p.base_url),
        "hosts fetch from the store, not AppTracker"
    );
    let ok = slipway_tests::http().get(url).send().await?;
    assert_eq!(ok.status(), 200);
    let at = url.find("X-Amz-Signature=").expect("a signature") + "X-Amz-Signature=".len();
    let mut tampered = url.clone();
    let flipped = if &url[at..at + 1] == "0" { "1" } else { "0" };
    tampered.replace_range(at..at + 1, flipped);
    assert_eq!(
        slipway_tests::http().get(&tampered).send().await?.status(),
        403,
        "{tampered}"
    );
    p.shutdown().await
}

/// Commit A everywhere, B everywhere, B again (skipped), C fails and rolls
/// back; the deploy page shows it all.
async fn release_rollout_and_rollback(p: &Platform) -> anyhow::Result<()> {
    let repo = AppRepo::new(p.dir().join("repo"))?;
    let sha_a = commit_hello(&repo, "A", true)?;
    let app = p.register("hello", &repo.path).await?;

    // Commit A, by sha: built, then installed everywhere.
    let a = p.release_and_wait(&app, &sha_a, None).await?;
    assert_eq!(a.status, DeployStatus::Succeeded, "{a:#?}");
    assert_eq!(a.hosts.len(), 3);
    let version_a = a.version.clone().expect("a finished deploy has a version");
    for h in &p.hosts {
        assert!(
            get_app(h.port).await?.starts_with("A "),
            "{} serves A",
            h.name
        );
        assert_eq!(h.current("hello").as_deref(), Some(version_a.as_str()));
    }
    // The build records who made the commit and its message
    // (`commit_all` commits as Slipway).
    let build_a = p.client.build(a.build_id.expect("build id")).await?;
    assert_eq!(
        build_a.author.as_deref(),
        Some("Slipway <slipway@localhost>")
    );
    assert_eq!(build_a.message.as_deref(), Some("A"));

    // Commit B, by branch.
    let sha_b = commit_hello(&repo, "B", true)?;
    let b = p.release_and_wait(&app, "main", None).await?;
    assert_eq!(b.status, DeployStatus::Succeeded, "{b:#?}");
    let version_b = b.version.clone().expect("version");
    assert!(
        version_b.as_str().ends_with(&sha_b[..7]),
        "{version_b} is built from {sha_b}"
    );
    for h in &p.hosts {
        assert_eq!(get_app(h.port).await?, format!("B {version_b}\n"));
        assert_eq!(h.current("hello").as_deref(), Some(version_b.as_str()));
    }

    // The same version again: skipped everywhere, nothing restarted.
    let pids: BTreeMap<&str, Option<u64>> =
        HOSTS.iter().map(|h| (*h, pid_of(p, h, "hello"))).collect();
    assert!(
        pids.values().all(Option::is_some),
        "state.json records pids: {pids:?}"
    );
    let again = p.release_and_wait(&app, version_b.as_str(), None).await?;
    assert_eq!(again.status, DeployStatus::Succeeded);
    for h in &again.hosts {
        assert_eq!(h.phase, HostPhase::Skipped, "{h:#?}");
    }
    for host in HOSTS {
        assert_eq!(
            pid_of(p, host, "hello"),
            pids[host],
            "{host} was not restarted"
        );
    }

    // Commit C fails its health check: every host fails with the log, rolls
    // back and still serves B.
    commit_hello(&repo, "C", false)?;
    let c = p.release_and_wait(&app, "main", None).await?;
    assert_eq!(c.status, DeployStatus::Failed, "{c:#?}");
    for h in &c.hosts {
        assert_eq!(h.phase, HostPhase::Failed);
        assert_eq!(h.failed_phase, Some(HostPhase::Checking), "{h:#?}");
        assert!(h.rolled_back, "{} rolled back", h.host);
        let tail = h.log_tail.as_deref().unwrap_or_default();
        assert!(
            tail.contains("health check broken on purpose in C"),
            "log tail of {}: {tail}",
            h.host
        );
    }
    for h in &p.hosts {
        assert_eq!(get_app(h.port).await?, format!("B {version_b}\n"));
        assert_eq!(h.current("hello").as_deref(), Some(version_b.as_str()));
    }

    // The deploy page of the finished deploy lists every host's final phase.
    let page = slipway_tests::http()
        .get(format!("{}/deploys/{}", p.base_url, c.id))
        .bearer_auth(&p.admin_token)
        .send()
        .await?;
    assert_eq!(page.status(), 200);
    let html = page.text().await?;
    for host in HOSTS {
        let row = html
            .find(&format!("id=\"host-{host}\""))
            .unwrap_or_else(|| panic!("row for {host} in the deploy page"));
        let rest = &html[row..];
        let end = rest.find("</tr>").unwrap_or(rest.len());
        assert!(
            rest[..end].contains("data-phase=\"failed\""),
            "{host}'s row shows failed"
        );
    }
    assert!(
        html.contains("health check broken on purpose in C"),
        "the page shows the log tail"
    );

    // The failed hosts' desired state points back at B, so a restarted
    // grabber does not retry C.
    let desired = p.client.desired_state(&p.cluster, &p.hosts[0].name).await?;
    assert_eq!(desired.apps[0].version, version_b);

    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_host_regex_touches_only_the_hosts_it_matches() -> anyhow::Result<()> {
    let p = platform().hosts(&HOSTS).start().await?;
    let repo = AppRepo::new(p.dir().join("repo"))?;
    commit_hello(&repo, "A", true)?;
    let app = p.register("hello", &repo.path).await?;
    let a = p.release_and_wait(&app, "main", None).await?;
    assert_eq!(a.status, DeployStatus::Succeeded, "{a:#?}");
    let version_a = a.version.clone().expect("version");

    commit_hello(&repo, "B", true)?;
    let b = p.release_and_wait(&app, "main", Some("local-[12]")).await?;
    assert_eq!(b.status, DeployStatus::Succeeded, "{b:#?}");
    let names: Vec<&str> = b.hosts.iter().map(|h| h.host.as_str()).collect();
    assert_eq!(names, ["local-1", "local-2"]);
    assert!(get_app(p.host("local-1").port).await?.starts_with("B "));
    assert!(get_app(p.host("local-2").port).await?.starts_with("B "));
    assert_eq!(
        get_app(p.host("local-3").port).await?,
        format!("A {version_a}\n")
    );
    assert_eq!(
        p.host("local-3").current("hello").as_deref(),
        Some(version_a.as_str())
    );

    // The host table says which host runs what, with the port it was given.
    let expect =
        |name: &str, v: &deploy::Version| Some((Some(v.clone()), Some(p.host(name).port), true));
    let version_b = b.version.clone().expect("version");
    poll(Duration::from_secs(20), || async {
        let hosts = p.client.hosts().await?;
        let runs = |name: &str| {
            hosts
                .iter()
                .find(|h| h.name.as_str() == name)
                .and_then(|h| h.apps.iter().find(|a| a.app.as_str() == "hello"))
                .map(|a| (a.version.clone(), a.port, a.pid.is_some()))
        };
        Ok(runs("local-1") == expect("local-1", &version_b)
            && runs("local-2") == expect("local-2", &version_b)
            && runs("local-3") == expect("local-3", &version_a))
    })
    .await?;
    p.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crash_looping_app_is_restarted_and_reported_failing() -> anyhow::Result<()> {
    let p = platform().hosts(&["local-1"]).start().await?;
    let repo = AppRepo::new(p.dir().join("crashy"))?;
    // Up for its check, gone a second later, every time: inside the
    // default 2s bake, so the deploy fails and nothing is left running.
    let crashy = "type = \"generic\"\n[build]\ncommand = \"true\"\n[run]\ncommand = \"echo up; sleep 1; exit 3\"\n[health]\ngrace = \"300ms\"\n";
    repo.commit(&[("slipway.toml", crashy)], "crashy")?;
    let app = p.register("crashy", &repo.path).await?;
    let d = p.release_and_wait(&app, "main", None).await?;
    assert_eq!(d.status, DeployStatus::Failed, "{d:#?}");
    let h = &d.hosts[0];
    assert_eq!(h.failed_phase, Some(HostPhase::Checking), "{h:#?}");
    let said = h.message.clone().unwrap_or_default();
    assert!(said.contains("after passing its health check"), "{said}");
    assert!(p.host("local-1").current("crashy").is_none());
    // Without the bake the same app is `done`, and then the supervisor's
    // business: restarted until it is reported failing.
    let unbaked = format!("{crashy}bake = \"0s\"\n");
    repo.commit(&[("slipway.toml", unbaked.as_str())], "crashy, unbaked")?;
    let d = p.release_and_wait(&app, "main", None).await?;
    assert_eq!(d.status, DeployStatus::Succeeded, "{d:#?}");
    poll(Duration::from_secs(60), || async {
        let hosts = p.client.hosts().await?;
        Ok(hosts
            .iter()
            .flat_map(|h| &h.apps)
            .any(|a| a.app == app && a.status == deploy::AppRunStatus::Failing && a.restarts >= 2))
    })
    .await?;
    // Its output of each run is in its log, under the shim's care.
    let log = std::fs::read_to_string(p.host("local-1").root.join("apps/crashy/log/crashy.log"))
        .unwrap_or_default();
    assert!(log.matches("up\n").count() >= 3, "{log}");
    p.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_grabber_started_after_a_release_converges_to_it() -> anyhow::Result<()> {
    let mut p = platform().hosts(&HOSTS).start().await?;
    let repo = AppRepo::new(p.dir().join("repo"))?;
    commit_hello(&repo, "A", true)?;
    let app = p.register("hello", &repo.path).await?;

    p.stop_grabber(2).await?;
    let d = p.release(&app, "main", None).await?;
    // Two hosts finish; the third stays pending while its grabber is away.
    poll(Duration::from_secs(60), || async {
        let d = p.client.deploy(d.id).await?;
        Ok(d.hosts
            .iter()
            .filter(|h| h.phase == HostPhase::Done)
            .count()
            == 2)
    })
    .await?;
    let mid = p.client.deploy(d.id).await?;
    assert_eq!(mid.status, DeployStatus::Running);
    assert_eq!(mid.hosts[2].phase, HostPhase::Pending);
    assert!(p.host("local-3").current("hello").is_none());

    p.start_grabber(2);
    let done = p.wait_deploy(d.id).await?;
    assert_eq!(done.status, DeployStatus::Succeeded, "{done:#?}");
    let version = done.version.expect("version");
    assert_eq!(
        get_app(p.host("local-3").port).await?,
        format!("A {version}\n")
    );
    p.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_gets_a_clear_error_and_changes_nothing() -> anyhow::Result<()> {
    let p = platform().hosts(&HOSTS[..2]).start().await?;
    let repo = AppRepo::new(p.dir().join("repo"))?;
    commit_hello(&repo, "A", true)?;
    let app = p.register("hello", &repo.path).await?;
    let a = p.release_and_wait(&app, "main", None).await?;
    assert_eq!(a.status, DeployStatus::Succeeded, "{a:#?}");
    let version_a = a.version.clone().expect("version");
    let http = slipway_tests::http();
    let deploys_url = format!("{}/api/v1/deploys", p.base_url);

    // Unknown app: 404 with a message naming it; no deploy recorded.
    let r = http
        .post(&deploys_url)
        .bearer_auth(&p.admin_token)
        .json(&serde_json::json!({"app": "nope", "git_ref": "main", "cluster": "local"}))
        .send()
        .await?;
    assert_eq!(r.status(), 404);
    let body: deploy::ErrorBody = r.json().await?;
    assert_eq!(body.code, "not_found");
    assert!(body.message.contains("`nope`"), "{}", body.message);

    // A bad regex: 400 naming the regex.
    let r = http
        .post(&deploys_url)
        .bearer_auth(&p.admin_token)
        .json(&serde_json::json!({"app": "hello", "git_ref": "main", "cluster": "local", "hosts": "local-[12"}))
        .send()
        .await?;
    assert_eq!(r.status(), 400);
    let body: deploy::ErrorBody = r.json().await?;
    assert_eq!(body.code, "invalid_input");
    assert!(
        body.message.contains("host regex") && body.message.contains("local-[12"),
        "{}",
        body.message
    );

    // A regex that matches no host is an error too, not a silent no-op.
    let r = http
        .post(&deploys_url)
        .bearer_auth(&p.admin_token)
        .json(&serde_json::json!({"app": "hello", "git_ref": "main", "cluster": "local", "hosts": "db-.*"}))
        .send()
        .await?;
    assert_eq!(r.status(), 422);
    let body: deploy::ErrorBody = r.json().await?;
    assert_eq!(body.code, "no_matching_hosts");

    // A malformed body names the field.
    let r = http
        .post(&deploys_url)
        .bearer_auth(&p.admin_token)
        .json(&serde_json::json!({"app": "Hello World", "git_ref": "main", "cluster": "local"}))
        .send()
        .await?;
    assert_eq!(r.status(), 400);
    let body: deploy::ErrorBody = r.json().await?;
    assert!(body.message.contains("app name"), "{}", body.message);

    assert_eq!(
        p.client.deploys(100).await?.len(),
        1,
        "no deploy was recorded by bad requests"
    );

    // A malformed slipway.toml: the build fails naming the key, the deploy
    // fails with it, and no host is touched.
    let bad_toml = "name = \"hello\"\ntype = \"python\"\n\n[run]\ncommand = \"python3 app.py\"\ncolour = \"blue\"\n";
    repo.commit(&[("slipway.toml", bad_toml)], "typo")?;
    let d = p.release_and_wait(&app, "main", None).await?;
    assert_eq!(d.status, DeployStatus::Failed, "{d:#?}");
    let error = d.error.clone().unwrap_or_default();
    assert!(error.contains("colour"), "the error names the key: {error}");
    assert!(
        d.hosts.iter().all(|h| h.phase == HostPhase::Pending),
        "{d:#?}"
    );
    let build = p.client.build(d.build_id.expect("build id")).await?;
    assert!(
        build.error.unwrap_or_default().contains("line 6"),
        "the error names the line"
    );
    for h in &p.hosts {
        assert_eq!(get_app(h.port).await?, format!("A {version_a}\n"));
    }

    // A wrong sha256: tamper with the stored artifact of a good build; every
    // host fails in `verifying` and keeps running A.
    let sha_d = commit_hello(&repo, "D", true)?;
    let queued = p
        .client
        .request_build(
            &app,
            &deploy::RequestBuild {
                git_ref: Some(deploy::GitRef::parse(&sha_d)?),
            },
        )
        .await?;
    poll(Duration::from_secs(60), || async {
        Ok(p.client.build(queued.id).await?.status.is_terminal())
    })
    .await?;
    let build_d = p.client.build(queued.id).await?;
    assert_eq!(
        build_d.status,
        deploy::BuildStatus::Succeeded,
        "{}",
        build_d.log
    );
    let stored = p
        .dir()
        .join("apptracker/artifacts/hello")
        .join(format!("hello-{}.tar.gz", build_d.version));
    let mut bytes = std::fs::read(&stored)?;
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&stored, &bytes)?;
    let d = p
        .release_and_wait(&app, build_d.version.as_str(), None)
        .await?;
    assert_eq!(d.status, DeployStatus::Failed, "{d:#?}");
    for h in &d.hosts {
        assert_eq!(h.failed_phase, Some(HostPhase::Verifying), "{h:#?}");
        assert!(!h.rolled_back, "nothing had moved, so nothing rolled back");
    }
    for h in &p.hosts {
        assert_eq!(get_app(h.port).await?, format!("A {version_a}\n"));
        assert_eq!(h.current("hello").as_deref(), Some(version_a.as_str()));
    }
    p.shutdown().await
}

/// Signatures end to end: a host that trusts another packer's key refuses
/// what this AppTracker built, failing in `verifying` with the reason and
/// installing nothing, while a host trusting AppTracker's key runs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_host_trusting_another_key_refuses_the_release() -> anyhow::Result<()> {
    let mut p = platform().hosts(&["local-1", "local-2"]).start().await?;
    // local-2 comes back trusting only a stranger's key.
    p.stop_grabber(1).await?;
    p.trusted_keys = vec![deploy::signing::SigningKey::from_seed([5; 32]).public_key()];
    p.start_grabber(1);
    let repo = AppRepo::new(p.dir().join("repo"))?;
    commit_hello(&repo, "A", true)?;
    let app = p.register("hello", &repo.path).await?;

    let d = p.release_and_wait(&app, "main", None).await?;
    assert_eq!(d.status, DeployStatus::Partial, "{d:#?}");
    let version = d.version.clone().expect("a version");
    let by_host: BTreeMap<&str, &deploy::DeployHost> =
        d.hosts.iter().map(|h| (h.host.as_str(), h)).collect();
    assert_eq!(by_host["local-1"].phase, HostPhase::Done, "{d:#?}");
    let refused = by_host["local-2"];
    assert_eq!(refused.phase, HostPhase::Failed, "{refused:#?}");
    assert_eq!(refused.failed_phase, Some(HostPhase::Verifying));
    assert!(!refused.rolled_back);
    let message = refused.message.clone().unwrap_or_default();
    assert!(
        message.contains(&format!(
            "the signature of hello {version} does not verify with the trusted key"
        )),
        "{message}"
    );

    assert_eq!(
        get_app(p.host("local-1").port).await?,
        format!("A {version}\n")
    );
    let local_2 = p.host("local-2");
    assert_eq!(local_2.current("hello"), None);
    let releases = local_2.root.join("apps/hello/releases");
    assert!(
        std::fs::read_dir(&releases).map_or(true, |mut d| d.next().is_none()),
        "nothing was extracted on local-2"
    );
    assert!(pid_of(&p, "local-2", "hello").is_none());
    p.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_host_that_joins_later_gets_its_clusters_apps() -> anyhow::Result<()> {
    let mut p = platform().hosts(&["local-1"]).start().await?;
    let repo = AppRepo::new(p.dir().join("repo"))?;
    commit_hello(&repo, "A", true)?;
    let app = p.register("hello", &repo.path).await?;
    let first = p.release_and_wait(&app, "main", None).await?;
    assert_eq!(first.status, DeployStatus::Succeeded, "{first:#?}");
    let version = first.version.clone().expect("a version");
    // An app whose policy is `manual` waits for a deploy (it pins no port,
    // so it runs beside hello).
    let manual_repo = AppRepo::new(p.dir().join("manual-repo"))?;
    let files = slipway_tests::hello_app("M", true);
    let unpinned = files[0]
        .1
        .replace(&format!("port = {}\n", slipway_tests::APP_PORT), "");
    manual_repo.commit(&[("slipway.toml", &unpinned), ("app.py", &files[1].1)], "M")?;
    let manual = deploy::AppName::parse("manual")?;
    p.client
        .register_app(&deploy::RegisterApp {
            new_hosts: deploy::NewHostPolicy::Manual,
            ..deploy::RegisterApp::new(manual.clone(), manual_repo.path.display().to_string())
        })
        .await?;
    let m = p.release_and_wait(&manual, "main", None).await?;
    assert_eq!(m.status, DeployStatus::Succeeded, "{m:#?}");
    // A newer build that was never deployed is not what the cluster runs.
    commit_hello(&repo, "B", true)?;
    p.client
        .request_build(&app, &deploy::RequestBuild { git_ref: None })
        .await?;

    // A machine joins the cluster after the deploy.
    let offset = i32::from(slipway_tests::free_port()?) - i32::from(slipway_tests::APP_PORT);
    p.add_host("local-2", offset)?;
    let for_new_host = |d: &deploy::Deploy| {
        d.id != first.id && d.hosts.iter().any(|h| h.host.as_str() == "local-2")
    };
    poll(Duration::from_secs(60), || async {
        Ok(p.client.deploys(20).await?.iter().any(for_new_host))
    })
    .await?;
    let joined = p
        .client
        .deploys(20)
        .await?
        .into_iter()
        .find(for_new_host)
        .expect("a deploy for the new host");
    let done = p.wait_deploy(joined.id).await?;
    assert_eq!(done.status, DeployStatus::Succeeded, "{done:#?}");
    assert_eq!(done.version.as_ref(), Some(&version));
    assert_eq!(done.requested_by.as_deref(), Some("slipway: new host"));
    let hosts: Vec<&str> = done.hosts.iter().map(|h| h.host.as_str()).collect();
    assert_eq!(hosts, ["local-2"], "only the new host is touched");
    // Converging is one pass over the apps, hello's deploy made first:
    // none came for the manual app.
    let all = p.client.deploys(20).await?;
    assert!(
        !all.iter().any(|d| d.app == manual && for_new_host(d)),
        "a manual app was deployed to the new host: {all:#?}"
    );
    assert_eq!(
        get_app(p.host("local-2").port).await?,
        format!("A {version}\n")
    );
    // A grabber restarting on a known host is no new host: no deploy.
    p.stop_grabber(1).await?;
    p.start_grabber(1);
    p.wait_for_hosts(2).await?;
    let count = p.client.deploys(20).await?.len();
    assert_eq!(count, 3, "a restarted grabber made a deploy");
    p.shutdown().await
}
