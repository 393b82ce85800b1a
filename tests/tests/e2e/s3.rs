//! The S3 artifact store against a real S3-protocol server (SigV4 checked):
//! small and multipart uploads, presigned downloads, expiry, `exists`
//! (HeadObject).

use std::time::Duration;

use apptracker::store::{ArtifactStore, S3Store};
use sha2::Digest;
use slipway_tests::services;

fn sha(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_small_and_multipart_artifacts_and_presigns_downloads() -> anyhow::Result<()> {
    let Some(s3) = services::s3().await else {
        return Ok(());
    };
    let store = S3Store::connect(&s3.config(), Duration::from_secs(60)).await?;
    let dir = tempfile::tempdir()?;

    // 20 MiB of varied bytes: three parts of a multipart upload.
    let big: Vec<u8> = (0..20 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let small = b"a small artifact".to_vec();
    for (name, bytes) in [
        ("app/app-1-big.tar.gz", &big),
        ("app/app-2-small.tar.gz", &small),
    ] {
        let file = dir.path().join("upload");
        std::fs::write(&file, bytes)?;
        assert!(!store.exists(name).await?, "{name} is not there yet");
        store.put(name, &file).await?;
        assert!(store.exists(name).await?, "{name} is there once put");
        let url = store.download_url(name).await?;
        assert!(url.contains("X-Amz-Expires=60"), "{url}");
        let got = slipway_tests::http().get(&url).send().await?;
        assert_eq!(got.status(), 200, "{url}");
        let got = got.bytes().await?;
        assert_eq!(got.len(), bytes.len(), "{name}");
        assert_eq!(sha(&got), sha(bytes), "{name} comes back byte for byte");
    }

    // An expired URL is refused by the store.
    let short = S3Store::connect(&s3.config(), Duration::from_secs(1)).await?;
    let file = dir.path().join("upload");
    short.put("app/app-3.tar.gz", &file).await?;
    let url = short.download_url("app/app-3.tar.gz").await?;
    slipway_tests::poll(Duration::from_secs(10), || async {
        Ok(slipway_tests::http().get(&url).send().await?.status() == 403)
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn a_wrong_endpoint_or_bucket_is_a_clear_error() -> anyhow::Result<()> {
    let Some(s3) = services::s3().await else {
        return Ok(());
    };
    let mut cfg = s3.config();
    cfg.create_bucket = false;
    let e = match S3Store::connect(&cfg, Duration::from_secs(60)).await {
        Ok(_) => panic!("a missing bucket must be an error"),
        Err(e) => format!("{e:#}"),
    };
    assert!(e.contains(&cfg.bucket) && e.contains("s3.bucket"), "{e}");
    Ok(())
}

/// A deploy message that waits behind a slow install outlives its presigned
/// URL: the real grabber gets a 403 from the real store, fails cleanly in
/// `downloading`, and the release it runs is untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_expired_presigned_url_fails_cleanly_on_the_host() -> anyhow::Result<()> {
    use deploy::{DeployStatus, HostPhase};
    use slipway_tests::{AppRepo, commit_hello, platform, poll};
    let (Some(s3), Some(redis)) = (services::s3().await, services::redis().await) else {
        return Ok(());
    };
    let p = platform()
        .hosts(&["local-1"])
        .configure(move |c| {
            c.s3 = Some(s3.config());
            c.redis_url = Some(redis);
            // Two seconds: S3 dates a presigned URL to the second, so one
            // second could run out before even the first download.
            c.artifact_url_ttl = Duration::from_secs(2);
        })
        .start()
        .await?;
    let repo = AppRepo::new(p.dir().join("repo"))?;
    // X takes 6 s to come up; Y is built before anything is deployed.
    commit_hello(&repo, "Y", true)?;
    let app = p.register("hello", &repo.path).await?;
    let y = p
        .client
        .request_build(&app, &deploy::RequestBuild::default())
        .await?;
    commit_hello(&repo, "X", true)?;
    repo.commit(&[("delay.txt", "6")], "slow start")?;
    let x = p.release(&app, "main", None).await?;
    poll(Duration::from_secs(60), || async {
        let d = p.client.deploy(x.id).await?;
        Ok(d.hosts[0].phase == HostPhase::Checking)
    })
    .await?;
    // X is cancelled (one deploy of an app to a cluster at a time), which
    // lets the host finish the install under way. Y's message arrives now
    // and waits for that install, longer than its URL lives.
    p.client.cancel_deploy(x.id).await?;
    let y_deploy = p.release(&app, y.version.as_str(), None).await?;
    poll(Duration::from_secs(60), || async {
        let d = p.client.deploy(x.id).await?;
        Ok(d.hosts[0].phase == HostPhase::Done)
    })
    .await?;
    let x = p.client.deploy(x.id).await?;
    assert_eq!(x.status, DeployStatus::Cancelled, "{x:#?}");
    let y_deploy = p.wait_deploy(y_deploy.id).await?;
    assert_eq!(y_deploy.status, DeployStatus::Failed, "{y_deploy:#?}");
    let h = &y_deploy.hosts[0];
    assert_eq!(h.failed_phase, Some(HostPhase::Downloading), "{h:#?}");
    assert!(!h.rolled_back);
    let msg = h.message.as_deref().unwrap_or_default();
    assert!(
        msg.contains("403"),
        "the failure says the store refused the URL: {msg}"
    );
    let version_x = x.version.expect("version");
    assert_eq!(
        slipway_tests::get_app(p.hosts[0].port).await?,
        format!("X {version_x}\n")
    );
    assert_eq!(
        p.hosts[0].current("hello").as_deref(),
        Some(version_x.as_str())
    );
    p.shutdown().await
}
