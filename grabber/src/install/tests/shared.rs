//! `[run] shared`: linked paths survive releases; the release's own copy
//! is replaced by the link; the links are part of the digest, so a
//! rollback to the release verifies.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_paths_are_links_into_shared_and_outlive_releases() {
    let server = ArtifactServer::start().await;
    let host = Host::new();
    let rec = Recorder::default();
    let token = CancellationToken::new();
    let app = hello();
    let files = &[
        E::File("hello.txt", b"hello"),
        E::Dir("config"),
        E::File("config/local.yml", b"shipped: true\n"),
    ];
    let mut a = release(
        "1-aaaaaaa",
        "mkdir -p \"$SLIPWAY_SHARED/uploads\" && echo kept > uploads/file; exec sleep 1000",
        HealthCheck::Running,
        None,
    );
    a.run.shared = vec!["uploads".into(), "config/local.yml".into()];
    (a.files, a.content_bytes) = (2, 19);
    let a_ref = server.publish(&a, files);
    assert_eq!(
        host.engine
            .install(&request(1, &a, a_ref.clone()), &rec, &token)
            .await,
        Outcome::Done,
        "{:?}",
        rec.of(DeployId(1))
    );
    let shared = host.layout().shared_dir(&app);
    let dir_a = host.layout().release_dir(&app, &a.version);
    assert_eq!(
        std::fs::read_link(dir_a.join("uploads")).unwrap(),
        shared.join("uploads")
    );
    assert_eq!(
        std::fs::read_link(dir_a.join("config/local.yml")).unwrap(),
        shared.join("config/local.yml"),
        "the release's copy is replaced by the link"
    );
    assert_eq!(
        std::fs::read_to_string(shared.join("uploads/file")).unwrap(),
        "kept\n"
    );

    // The next release sees what the first wrote.
    let mut b = release(
        "2-bbbbbbb",
        "cat uploads/file > \"$SLIPWAY_SHARED/seen\"; exec sleep 1000",
        HealthCheck::Running,
        None,
    );
    b.run.shared = vec!["uploads".into()];
    let b_ref = server.publish(&b, FILES);
    assert_eq!(
        host.engine
            .install(&request(2, &b, b_ref), &rec, &token)
            .await,
        Outcome::Done
    );
    assert_eq!(
        std::fs::read_to_string(shared.join("seen")).unwrap(),
        "kept\n"
    );

    // Back to the first: reused from disk, its links verify.
    assert_eq!(
        host.engine
            .install(&request(3, &a, a_ref), &rec, &token)
            .await,
        Outcome::Done,
        "{:?}",
        rec.of(DeployId(3))
    );
    let reused = rec.of(DeployId(3)).iter().any(|e| {
        e.message
            .as_deref()
            .is_some_and(|m| m.contains("reusing release"))
    });
    assert!(reused, "{:?}", rec.of(DeployId(3)));
}
