//! Two workers racing on one build (issue 22, review M10): the first
//! one's lease runs out while its artifact is being stored, the build is
//! claimed again and the second worker stores its own. Whatever order the
//! stores finish in, the bytes under the build's key and the sha256 its
//! row records are the current holder's.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use deploy::signing::SigningKey;
use deploy::{AppName, BuildOutcome, BuildType, NewHostPolicy, Sha256, Timestamp};
use futures::future::BoxFuture;
use sha2::Digest;
use tokio::sync::{Notify, Semaphore};

use crate::bus::Bus;
use crate::config::{BuilderConfig, Config};
use crate::db::Db;
use crate::model::Holder;
use crate::store::{ArtifactStore, LocalStore, artifact_key};
use crate::tracker::{Error, Parts, Tracker};

/// A local store whose first upload under keys starting with `prefix`
/// stops before it writes, until the test lets it go: the slow upload of a
/// worker whose lease runs out meanwhile.
struct Gated {
    inner: Arc<LocalStore>,
    prefix: String,
    armed: AtomicBool,
    /// Told when the held upload has started.
    reached: Notify,
    /// One permit lets it go on.
    release: Semaphore,
}

impl ArtifactStore for Gated {
    fn put<'a>(&'a self, key: &'a str, file: &'a Path) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            if key.starts_with(&self.prefix) && self.armed.swap(false, Ordering::SeqCst) {
                self.reached.notify_one();
                self.release.acquire().await?.forget();
            }
            self.inner.put(key, file).await
        })
    }

    fn promote<'a>(&'a self, from: &'a str, key: &'a str) -> BoxFuture<'a, anyhow::Result<()>> {
        self.inner.promote(from, key)
    }

    fn remove<'a>(&'a self, key: &'a str) -> BoxFuture<'a, anyhow::Result<()>> {
        self.inner.remove(key)
    }

    fn exists<'a>(&'a self, key: &'a str) -> BoxFuture<'a, anyhow::Result<bool>> {
        self.inner.exists(key)
    }

    fn download_url<'a>(&'a self, key: &'a str) -> BoxFuture<'a, anyhow::Result<String>> {
        self.inner.download_url(key)
    }

    fn describe(&self) -> String {
        "gated local store".into()
    }
}

/// A tracker on SQLite in `dir` whose store is `store` over the local one.
async fn tracker(
    dir: &Path,
    store: impl FnOnce(Arc<LocalStore>) -> Arc<dyn ArtifactStore>,
) -> Tracker {
    let config = Config {
        data_dir: dir.to_path_buf(),
        builder: BuilderConfig::disabled(),
        ..Config::default()
    };
    let db = Db::connect(&config.database_url()).await.unwrap();
    let local = Arc::new(LocalStore::new(
        config.artifacts_dir(),
        "http://127.0.0.1:9".into(),
        b"key".to_vec(),
        Duration::from_secs(60),
    ));
    let (secrets, _) =
        crate::secrets::SecretsKey::load_or_generate(&config.secrets_key_path()).unwrap();
    Tracker::new(Parts {
        packer: config.packer_settings().unwrap(),
        signing_key: config.signing_key().unwrap().0,
        peer_ticket_key: config.peer_ticket_key().unwrap().0,
        db,
        bus: Bus::in_process(),
        store: store(local.clone()),
        local: Some(local),
        config,
        base_url: "http://127.0.0.1:9".into(),
        secrets,
    })
}

fn sha_of(bytes: &[u8]) -> Sha256 {
    Sha256::parse(hex::encode(sha2::Sha256::digest(bytes))).unwrap()
}

/// Uploads `bytes` as `holder`'s artifact of `build`.
async fn upload(
    t: &Tracker,
    build: &deploy::Build,
    holder: &Holder,
    bytes: Vec<u8>,
) -> Result<crate::model::Upload, Error> {
    let sha = sha_of(&bytes);
    let sig = SigningKey::from_seed([3; 32]).sign(&build.app, &build.version, &sha);
    let body = futures::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from(bytes))]);
    t.receive_artifact(build.id, holder, &sha, &sig, None, body)
        .await
}

#[tokio::test]
async fn a_stale_holders_upload_never_replaces_the_current_holders() {
    let dir = tempfile::tempdir().unwrap();
    let app = AppName::parse("hello").unwrap();
    // Holds the first upload of any of the app's artifacts (its blobs
    // are under `hello/blobs/`).
    let gated = Arc::new(Gated {
        inner: Arc::new(LocalStore::new(
            dir.path().join("artifacts"),
            "http://127.0.0.1:9".into(),
            b"key".to_vec(),
            Duration::from_secs(60),
        )),
        prefix: "hello/hello-".into(),
        armed: AtomicBool::new(true),
        reached: Notify::new(),
        release: Semaphore::new(0),
    });
    let store = gated.clone();
    let t = tracker(dir.path(), move |_| store).await;
    t.db()
        .insert_app(&deploy::App {
            name: app.clone(),
            git_url: "/nowhere".into(),
            branch: "main".into(),
            auto_deploy: None,
            new_hosts: NewHostPolicy::default(),
            root: None,
            created_at: Timestamp::now(),
        })
        .await
        .unwrap();
    let queued = t
        .db()
        .insert_build(&app, "main", &"a".repeat(40))
        .await
        .unwrap();
    let (first, second) = (Holder::in_process("w1"), Holder::in_process("w2"));
    let build = t.claim_build(&first, true).await.unwrap().unwrap().build;
    assert_eq!(build.id, queued.id);
    let key = artifact_key(&build.app, &build.version);

    // The first worker's upload is received and stops while it is stored.
    let (old_bytes, new_bytes) = (
        b"from the first worker".to_vec(),
        b"from the second".to_vec(),
    );
    let stale = tokio::spawn({
        let (t, build, first) = (t.clone(), build.clone(), first.clone());
        async move { upload(&t, &build, &first, old_bytes).await }
    });
    tokio::time::timeout(Duration::from_secs(30), gated.reached.notified())
        .await
        .expect("the first upload reaches the store");

    // Meanwhile its lease runs out, the build goes back to the queue and
    // the second worker claims it and uploads its own artifact.
    sqlx::query("UPDATE builds SET lease_until = 0 WHERE id = $1")
        .bind(build.id.0)
        .execute(t.db().pool())
        .await
        .unwrap();
    t.requeue_expired_builds().await.unwrap();
    let again = t.claim_build(&second, true).await.unwrap().unwrap().build;
    assert_eq!(again.id, build.id);
    let current = upload(&t, &again, &second, new_bytes.clone())
        .await
        .unwrap();
    assert_eq!(current.sha256, sha_of(&new_bytes));

    // Then the first worker's store goes on: it must not win.
    gated.release.add_permits(1);
    let refused = stale.await.unwrap();
    assert!(
        matches!(refused, Err(Error::Conflict(_))),
        "the stale upload is refused: {refused:?}"
    );
    let stored = std::fs::read(gated.inner.path(&key)).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&stored),
        String::from_utf8_lossy(&new_bytes),
        "the stored artifact is the current holder's"
    );
    let (_, recorded, size) = t.db().build_upload(build.id).await.unwrap().unwrap();
    assert_eq!(recorded, Some(sha_of(&new_bytes)));
    assert_eq!(size, Some(new_bytes.len() as u64));
    // Nothing staged is left behind.
    let left: Vec<String> = std::fs::read_dir(gated.inner.path("hello"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".part"))
        .collect();
    assert!(left.is_empty(), "{left:?}");

    // The current holder's result is accepted with what it uploaded.
    let done = t
        .finish_build(
            build.id,
            &second,
            &BuildOutcome::Succeeded {
                build_type: BuildType::Generic,
                sha256: current.sha256.clone(),
                size: current.size,
                release_timeout_ms: None,
                author: None,
                message: None,
                watch: None,
            },
            "",
        )
        .await
        .unwrap();
    assert_eq!(done.artifact.map(|a| a.sha256), Some(sha_of(&new_bytes)));
}
