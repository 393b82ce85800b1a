//! The S3 artifact store against a real S3-protocol server (SigV4 checked):
//! small and multipart uploads, presigned downloads, expiry.

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
        store.put(name, &file).await?;
        let url = store.download_url(name).await?;
        assert!(url.contains("X-Amz-Expires=60"), "{url}");
        let got = reqwest::get(&url).await?;
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
        Ok(reqwest::get(&url).await?.status() == 403)
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
