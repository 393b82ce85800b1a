//! A release's file index and its blobs through the API (issue 21): a
//! worker uploads the index and then the artifact; the build presents the
//! index with a download URL; `sources` hands the host's own agent signed
//! URLs of the blobs, which download the bytes of the sha256 asked for.
//! A build without an index presents none and has no sources. The
//! in-process builder's path (`store_local_artifact`) keeps both too.

#![allow(clippy::unwrap_used)]

use deploy::index::ReleaseIndex;
use deploy::signing::SigningKey;
use deploy::{
    BuildOutcome, BuildResult, BuildType, CreateToken, HealthSpec, Manifest, RunSpec, Sha256,
    SourcesRequest, Timestamp,
};
use sha2::Digest;

use super::*;

/// What a worker packs: a tree with two files of the same content.
fn release(dir: &std::path::Path) -> std::path::PathBuf {
    let src = dir.join("release");
    std::fs::create_dir_all(src.join("bin")).unwrap();
    std::fs::write(src.join("app.py"), "print('hi')\n").unwrap();
    std::fs::write(src.join("bin/run"), "#!/bin/sh\nexec python3 app.py\n").unwrap();
    std::fs::write(src.join("copy.py"), "print('hi')\n").unwrap();
    std::os::unix::fs::symlink("bin/run", src.join("start")).unwrap();
    src
}

fn manifest(app: &AppName, version: &Version) -> Manifest {
    Manifest {
        app: app.clone(),
        version: version.clone(),
        commit: "a".repeat(40),
        build_type: BuildType::Generic,
        built_at: Timestamp(1_700_000_000_000),
        run: RunSpec {
            command: "python3 app.py".into(),
            port: Some(8000),
            env: Default::default(),
            stop_timeout_ms: 10_000,
            paths: Default::default(),
            shared: Vec::new(),
            user: None,
        },
        health: HealthSpec::default(),
        processes: Default::default(),
        runtime: None,
        files: 0,
        content_bytes: 0,
        release: None,
        hooks: Default::default(),
    }
}

fn sha_of(bytes: &[u8]) -> Sha256 {
    Sha256::parse(hex::encode(sha2::Sha256::digest(bytes))).unwrap()
}

async fn download(url: &str) -> Vec<u8> {
    let res = reqwest::get(url).await.unwrap();
    assert!(res.status().is_success(), "{url}: {}", res.status());
    res.bytes().await.unwrap().to_vec()
}

async fn token(api: &Api, name: &str, role: &str, host: Option<&HostName>) -> Client {
    let token = api
        .tracker
        .create_token_for(&CreateToken {
            name: name.into(),
            role: role.into(),
            cluster: (role == "agent").then(|| PROD.clone()),
            host: host.cloned(),
        })
        .await
        .unwrap();
    Client::new(api.admin.base_url().to_string()).with_token(token)
}

/// A build of `commit`, claimed by `worker` through the API.
async fn claimed(api: &Api, worker: &Client, commit: char) -> deploy::Build {
    let build = api
        .queue_build(&app("hello"), &commit.to_string().repeat(40))
        .await;
    let job = worker.claim_build("w1").await.unwrap().unwrap();
    assert_eq!(job.build.id, build.id);
    job.build
}

/// Packs the release of `build` into `dir`: (artifact path, sha256, size,
/// index).
fn pack(
    dir: &std::path::Path,
    build: &deploy::Build,
) -> (std::path::PathBuf, Sha256, u64, ReleaseIndex) {
    let out = dir.join(format!("{}-{}.tar.gz", build.app, build.version));
    let (sha, size, index) =
        packer::pack_dir_indexed(&release(dir), &manifest(&build.app, &build.version), &out)
            .unwrap();
    (out, sha, size, index.unwrap())
}

async fn succeed(
    worker: &Client,
    build: &deploy::Build,
    sha256: &Sha256,
    size: u64,
) -> deploy::Build {
    let result = BuildResult {
        worker: "w1".into(),
        outcome: BuildOutcome::Succeeded {
            build_type: BuildType::Generic,
            sha256: sha256.clone(),
            size,
            release_timeout_ms: None,
            author: None,
            message: None,
            watch: None,
        },
        log: String::new(),
    };
    worker.report_build(build.id, &result).await.unwrap()
}

async fn a_build_with_an_index_gives_its_blobs(api: &Api) {
    api.register("hello").await;
    let key = SigningKey::from_seed([7; 32]);
    let dir = tempfile::tempdir().unwrap();
    let worker = token(api, "w", "builder", None).await;
    let build = claimed(api, &worker, 'b').await;
    let (artifact, sha, size, index) = pack(dir.path(), &build);
    let index_bytes = index.to_bytes();
    let index_path = dir.path().join("index.json");
    let index_sha = sha_of(&index_bytes);

    // A bad index is refused, saying what is wrong: another release's,
    // and bytes that are not the announced ones.
    let other = ReleaseIndex {
        version: Version::parse("9-bbbbbbb").unwrap(),
        ..index.clone()
    };
    let other_bytes = other.to_bytes();
    std::fs::write(&index_path, &other_bytes).unwrap();
    let sig = key.sign_index(&build.app, &build.version, &sha_of(&other_bytes));
    let (status, code, message) = refused(
        worker
            .upload_index(build.id, "w1", &index_path, &sha_of(&other_bytes), &sig)
            .await,
    );
    assert_eq!((status, code.as_str()), (400, "invalid_input"), "{message}");
    assert!(message.contains("9-bbbbbbb"), "{message}");
    std::fs::write(&index_path, &index_bytes).unwrap();
    let sig = key.sign_index(&build.app, &build.version, &index_sha);
    let (status, _, message) = refused(
        worker
            .upload_index(build.id, "w1", &index_path, &sha, &sig)
            .await,
    );
    assert_eq!(status, 400, "{message}");
    assert!(message.contains("not the announced"), "{message}");

    // The index, then the artifact.
    worker
        .upload_index(build.id, "w1", &index_path, &index_sha, &sig)
        .await
        .unwrap();
    let artifact_sig = key.sign(&build.app, &build.version, &sha);
    worker
        .upload_artifact(build.id, "w1", &artifact, &sha, &artifact_sig)
        .await
        .unwrap();
    let (status, _, message) = refused(
        worker
            .upload_index(build.id, "w1", &index_path, &index_sha, &sig)
            .await,
    );
    assert_eq!(status, 400, "{message}");
    assert!(message.contains("before the artifact"), "{message}");
    let done = succeed(&worker, &build, &sha, size).await;

    // The build presents its index, whose URL downloads the signed bytes.
    let presented = done.artifact.unwrap().index.unwrap();
    assert_eq!(
        (&presented.sha256, presented.size),
        (&index_sha, index_bytes.len() as u64)
    );
    deploy::signing::verify_index(
        &[key.public_key()],
        &build.app,
        &build.version,
        &presented.sha256,
        &presented.signature,
    )
    .unwrap();
    let fetched = download(&presented.url).await;
    assert_eq!(sha_of(&fetched), index_sha);
    assert_eq!(
        ReleaseIndex::parse(&fetched, &build.app, &build.version).unwrap(),
        index
    );

    // So does the desired state of a host it is deployed to (the deploy
    // writes it).
    let web1 = host("web1");
    let deploy_id = api.deploy_build(&build, std::slice::from_ref(&web1)).await;
    let desired = api.tracker.desired(&PROD, &web1).await.unwrap();
    let desired_index = desired[0].artifact.index.as_ref().unwrap();
    assert_eq!(desired_index.sha256, index_sha);
    assert_eq!(sha_of(&download(&desired_index.url).await), index_sha);

    // The host's agent gets one URL per blob asked for (duplicates once),
    // each downloading the bytes of its sha256.
    let agent = token(api, "web1-agent", "agent", Some(&web1)).await;
    let mut wanted: Vec<Sha256> = index.files().map(|(_, _, _, sha)| sha.clone()).collect();
    assert_eq!(wanted.len(), 4, "manifest, app.py, bin/run, copy.py");
    wanted.push(wanted[0].clone());
    let req = SourcesRequest {
        cluster: PROD.clone(),
        blobs: wanted.clone(),
    };
    let sources = agent.sources(deploy_id, &web1, &req).await.unwrap();
    assert_eq!(sources.blobs.len(), 3, "app.py and copy.py are one blob");
    assert!(sources.peers.is_empty() && sources.ticket.is_none());
    for blob in &sources.blobs {
        assert!(wanted.contains(&blob.sha256));
        assert_eq!(sha_of(&download(&blob.url).await), blob.sha256);
    }

    // Another host's agent is refused, for web1 and for itself (not a
    // host of the deploy).
    let web2 = host("web2");
    let other_agent = token(api, "web2-agent", "agent", Some(&web2)).await;
    let (status, _, _) = refused(other_agent.sources(deploy_id, &web1, &req).await);
    assert_eq!(status, 403);
    let (status, _, message) = refused(other_agent.sources(deploy_id, &web2, &req).await);
    assert_eq!(status, 404, "{message}");
    // So is a viewer, and a request over the limit.
    let (status, _, _) = refused(api.viewer.sources(deploy_id, &web1, &req).await);
    assert_eq!(status, 403);
    let over = SourcesRequest {
        cluster: PROD.clone(),
        blobs: vec![wanted[0].clone(); 100_001],
    };
    let (status, code, message) = refused(agent.sources(deploy_id, &web1, &over).await);
    assert_eq!((status, code.as_str()), (400, "invalid_input"), "{message}");

    // A build without an index presents none, and has no sources.
    let plain = claimed(api, &worker, 'c').await;
    let dir = tempfile::tempdir().unwrap();
    let (artifact, sha, size, _) = pack(dir.path(), &plain);
    let sig = key.sign(&plain.app, &plain.version, &sha);
    worker
        .upload_artifact(plain.id, "w1", &artifact, &sha, &sig)
        .await
        .unwrap();
    let done = succeed(&worker, &plain, &sha, size).await;
    assert_eq!(done.artifact.unwrap().index, None);
    // One deploy of an app to a cluster at a time.
    api.finish(deploy_id).await;
    let plain_deploy = api.deploy_build(&plain, std::slice::from_ref(&web1)).await;
    let (status, code, message) = refused(agent.sources(plain_deploy, &web1, &req).await);
    assert_eq!((status, code.as_str()), (404, "not_found"), "{message}");
    assert!(message.contains("no file index"), "{message}");
}

on_both!(
    a_build_with_an_index_gives_its_blobs_on_sqlite,
    a_build_with_an_index_gives_its_blobs_on_postgres,
    a_build_with_an_index_gives_its_blobs
);

async fn the_in_process_builder_keeps_the_index_and_blobs(api: &Api) {
    api.register("hello").await;
    let key = SigningKey::from_seed([8; 32]);
    let holder = Holder::in_process("b1");
    api.queue_build(&app("hello"), &"d".repeat(40)).await;
    let job = api
        .tracker
        .claim_build(&holder, true)
        .await
        .unwrap()
        .unwrap();
    let build = job.build;
    let dir = tempfile::tempdir().unwrap();
    let (artifact, sha, size, index) = pack(dir.path(), &build);
    let index_bytes = index.to_bytes();
    let index_path = dir.path().join("hello.index.json");
    std::fs::write(&index_path, &index_bytes).unwrap();
    let index_sha = sha_of(&index_bytes);
    let out = packer::BuildOutput {
        artifact_path: artifact,
        sha256: sha.clone(),
        size,
        manifest: manifest(&build.app, &build.version),
        build_type: BuildType::Generic,
        signature: Some(key.sign(&build.app, &build.version, &sha)),
        log: String::new(),
        author: None,
        message: None,
        watch: Vec::new(),
        index: Some(packer::BuiltIndex {
            path: index_path,
            sha256: index_sha.clone(),
            size: index_bytes.len() as u64,
            signature: Some(key.sign_index(&build.app, &build.version, &index_sha)),
        }),
    };
    api.tracker
        .store_local_artifact(&build, &holder, &out)
        .await
        .unwrap();
    for (_, _, _, sha) in index.files() {
        let key = crate::store::blob_key(&build.app, sha);
        assert!(api.tracker.store().exists(&key).await.unwrap(), "{key}");
    }
    let outcome = BuildOutcome::Succeeded {
        build_type: BuildType::Generic,
        sha256: sha,
        size,
        release_timeout_ms: None,
        author: None,
        message: None,
        watch: None,
    };
    let done = api
        .tracker
        .finish_build(build.id, &holder, &outcome, "")
        .await
        .unwrap();
    let presented = done.artifact.unwrap().index.unwrap();
    assert_eq!(presented.sha256, index_sha);
    assert_eq!(sha_of(&download(&presented.url).await), index_sha);
}

on_both!(
    the_in_process_builder_keeps_the_index_and_blobs_on_sqlite,
    the_in_process_builder_keeps_the_index_and_blobs_on_postgres,
    the_in_process_builder_keeps_the_index_and_blobs
);
