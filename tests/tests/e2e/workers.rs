//! The build queue under failure: a `packer worker` killed in the middle of a
//! build loses its claim when its lease runs out, and another worker builds
//! the job to success. While a worker builds, its log reaches the API as it
//! is written. Uploads must carry a well-formed signature.

use std::time::Duration;

use deploy::{AppName, BuildStatus, CreateToken, RegisterApp, RequestBuild};
use slipway_tests::procs::{Proc, TrackerProc, packer_keygen, start_apptracker};
use slipway_tests::{AppRepo, poll};

const APPTRACKER: &str = env!("CARGO_BIN_EXE_slipway-apptracker");
const PACKER: &str = env!("CARGO_BIN_EXE_slipway-packer");

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_killed_mid_build_loses_its_claim_and_another_finishes_the_job()
-> anyhow::Result<()> {
    slipway_tests::init_tracing();
    let dir = tempfile::Builder::new()
        .prefix("slipway-workers-")
        .tempdir()?;
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs)?;
    // Embedded state, no builder inside, short leases so the test is quick.
    let TrackerProc {
        proc: mut tracker,
        url: server,
        client,
        ..
    } = start_apptracker(
        APPTRACKER,
        dir.path(),
        &logs,
        "builder = false\nbuild_lease = \"2s\"\n",
    )
    .await?;
    let token = client
        .create_token(&CreateToken::new("builders", "builder"))
        .await?
        .token;

    // A generic app whose build takes a few seconds.
    let repo = AppRepo::new(dir.path().join("repo"))?;
    repo.commit(
        &[
            (
                "slipway.toml",
                "type = \"generic\"\n[build]\ncommand = \"echo step-$((1)) && sleep 3 && echo built > out.txt\"\n[run]\ncommand = \"sleep 1000\"\n",
            ),
            ("README", "slow to build\n"),
        ],
        "slow build",
    )?;
    let app = AppName::parse("slow")?;
    client
        .register_app(&RegisterApp::new(
            app.clone(),
            repo.path.display().to_string(),
        ))
        .await?;

    let cache = logs.join("packer-cache");
    let signing_key = dir.path().join("packer-signing.key");
    let public_key = packer_keygen(PACKER, &signing_key).await?;
    let worker = |name: &str| {
        Proc::spawn(
            name,
            PACKER,
            &[
                "worker", "--server", &server, "--poll", "200ms", "--name", name,
            ]
            .map(String::from),
            &[
                ("SLIPWAY_TOKEN", token.clone()),
                // Both workers share one machine's cache, as they would.
                ("SLIPWAY_PACKER_CACHE", cache.display().to_string()),
                ("SLIPWAY_SIGNING_KEY", signing_key.display().to_string()),
            ],
            &logs,
        )
    };
    let mut doomed = worker("w-doomed")?;
    let build = client.request_build(&app, &RequestBuild::default()).await?;
    // The worker streams its log through the API while the command runs.
    poll(Duration::from_secs(30), || async {
        let now = client.build(build.id).await?;
        Ok(now.worker.as_deref() == Some("w-doomed") && now.log.contains("step-1\n"))
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}\n{}", doomed.tail()))?;
    // The worker dies as a crash would: no chance to hand the build back.
    doomed.kill().await?;
    assert_eq!(client.build(build.id).await?.status, BuildStatus::Running);

    let mut survivor = worker("w-survivor")?;
    poll(Duration::from_secs(60), || async {
        Ok(client.build(build.id).await?.status.is_terminal())
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}\n{}", survivor.tail()))?;
    let done = client.build(build.id).await?;
    assert_eq!(done.status, BuildStatus::Succeeded, "{}", done.log);
    assert_eq!(done.worker.as_deref(), Some("w-survivor"));
    // Signed by the worker's key (the survivor's upload; a claim clears
    // whatever an earlier holder sent).
    let artifact = done.artifact.as_ref().expect("an artifact");
    deploy::signing::verify(
        &[public_key],
        &app,
        &done.version,
        &artifact.sha256,
        &artifact.signature,
    )?;
    assert!(
        done.log.contains("sleep 3"),
        "the build log shows the command: {}",
        done.log
    );
    assert_eq!(
        done.log.matches("step-1\n").count(),
        1,
        "the second claim starts the log afresh: {}",
        done.log
    );
    assert!(
        std::fs::read_to_string(&tracker.log)?
            .contains("requeued builds whose worker stopped renewing"),
        "AppTracker says why the build moved"
    );

    assert!(survivor.stop().await?, "{}", survivor.tail());
    assert!(tracker.stop().await?, "{}", tracker.tail());
    Ok(())
}

/// A worker's upload without a signature, or with a malformed one, is
/// refused (400, saying why) and stores nothing; a success reported before
/// a signed upload is refused; a signed upload is recorded and handed out
/// with the artifact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_need_a_well_formed_signature() -> anyhow::Result<()> {
    use sha2::Digest;
    slipway_tests::init_tracing();
    let dir = tempfile::Builder::new()
        .prefix("slipway-uploads-")
        .tempdir()?;
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs)?;
    let TrackerProc {
        proc: mut tracker,
        url: server,
        client,
        ..
    } = start_apptracker(APPTRACKER, dir.path(), &logs, "builder = false\n").await?;
    let token = client
        .create_token(&CreateToken::new("builders", "builder"))
        .await?
        .token;
    let repo = AppRepo::new(dir.path().join("repo"))?;
    repo.commit(
        &[(
            "slipway.toml",
            "type = \"generic\"\n[run]\ncommand = \"sleep 1000\"\n",
        )],
        "first",
    )?;
    let app = AppName::parse("signed")?;
    client
        .register_app(&RegisterApp::new(
            app.clone(),
            repo.path.display().to_string(),
        ))
        .await?;
    let build = client.request_build(&app, &RequestBuild::default()).await?;
    // This test is the worker.
    let worker = deploy::Client::new(server.clone()).with_token(token.clone());
    let job = worker
        .claim_build("w-test")
        .await?
        .expect("the queued build");
    assert_eq!(job.build.id, build.id);

    let bytes = b"not really a tarball".to_vec();
    let sha = deploy::Sha256::parse(hex::encode(sha2::Sha256::digest(&bytes)))?;
    let http = slipway_tests::http();
    let upload = |signature: Option<&'static str>| {
        let mut req = http
            .put(format!(
                "{server}/api/v1/builds/{}/artifact?worker=w-test",
                build.id
            ))
            .bearer_auth(&token)
            .header("x-slipway-sha256", sha.as_str())
            .body(bytes.clone());
        if let Some(s) = signature {
            req = req.header("x-slipway-signature", s);
        }
        req.send()
    };
    for (signature, expected) in [
        (None, "`x-slipway-signature` header is required"),
        (Some("c2lnbmF0dXJl"), "malformed signature"),
    ] {
        let r = upload(signature).await?;
        assert_eq!(r.status(), 400, "{signature:?}");
        let body: deploy::ErrorBody = r.json().await?;
        assert_eq!(body.code, "invalid_input");
        assert!(body.message.contains(expected), "{}", body.message);
    }
    let stored = dir
        .path()
        .join("apptracker/artifacts/signed")
        .join(format!("signed-{}.tar.gz", build.version));
    assert!(!stored.exists(), "a refused upload stores nothing");

    // Claiming success before a signed upload is refused.
    let result = deploy::BuildResult {
        worker: "w-test".into(),
        outcome: deploy::BuildOutcome::Succeeded {
            build_type: deploy::BuildType::Generic,
            sha256: sha.clone(),
            size: bytes.len() as u64,
            release_timeout_ms: None,
            author: None,
            message: None,
            watch: None,
        },
        log: String::new(),
    };
    let e = worker.report_build(build.id, &result).await.unwrap_err();
    assert_eq!(e.code(), Some("invalid_input"), "{e}");
    assert!(e.to_string().contains("no signed artifact"), "{e}");

    // Signed: accepted, recorded, and part of the artifact reference.
    let key = deploy::signing::SigningKey::from_seed([3; 32]);
    let signature = key.sign(&app, &build.version, &sha);
    let file = dir.path().join("artifact.tar.gz");
    std::fs::write(&file, &bytes)?;
    worker
        .upload_artifact(build.id, "w-test", &file, &sha, &signature)
        .await?;
    assert!(stored.is_file());
    let done = worker.report_build(build.id, &result).await?;
    assert_eq!(done.status, BuildStatus::Succeeded);
    let artifact = done.artifact.expect("an artifact");
    assert_eq!(artifact.signature, signature.to_string());
    deploy::signing::verify(
        &[key.public_key()],
        &app,
        &done.version,
        &artifact.sha256,
        &artifact.signature,
    )?;

    assert!(tracker.stop().await?, "{}", tracker.tail());
    Ok(())
}
