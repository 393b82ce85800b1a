//! Delta installs: an upgrade that changes one file of a large release
//! fetches and writes only that file (and the manifest, which names the
//! version), and the release it makes is the one a full extraction makes;
//! a file of the content store changed on disk is found, fetched again and
//! never linked into a release.

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use deploy::index::{EntryKind, INDEX_FORMAT, IndexEntry, ReleaseIndex};

use super::*;

impl ArtifactServer {
    /// Publishes a release with its signed index and one `blob-<sha256>`
    /// per file, as AppTracker's store holds them; the index is made from
    /// the tree the artifact extracts to, so the two agree as packer's do.
    fn publish_indexed(&self, m: &Manifest, entries: &[E<'_>]) -> ArtifactRef {
        let mut r = self.publish(m, entries);
        let name = format!("{}-{}.tar.gz", m.app, m.version);
        let bytes = self.files.lock().unwrap()[&name].clone();
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("a.tar.gz");
        std::fs::write(&archive, bytes).unwrap();
        let tree = dir.path().join("tree");
        std::fs::create_dir(&tree).unwrap();
        crate::extract::unpack_checked(&archive, &tree, 1 << 30).unwrap();
        let mut walked = deploy::tree::walk(&tree, None).unwrap();
        walked.sort_by(|a, b| a.0.cmp(&b.0));
        let mut index = ReleaseIndex {
            format: INDEX_FORMAT.into(),
            app: m.app.clone(),
            version: m.version.clone(),
            entries: vec![],
        };
        for (rel, meta) in walked {
            let path = rel.to_str().unwrap().to_string();
            let kind = if meta.is_dir() {
                EntryKind::Dir {
                    mode: meta.mode() & 0o7777,
                }
            } else if meta.file_type().is_symlink() {
                EntryKind::Symlink {
                    target: std::fs::read_link(tree.join(&rel))
                        .unwrap()
                        .to_str()
                        .unwrap()
                        .into(),
                }
            } else {
                let content = std::fs::read(tree.join(&rel)).unwrap();
                let sha = Digest256::parse(hex::encode(sha2::Sha256::digest(&content))).unwrap();
                self.files
                    .lock()
                    .unwrap()
                    .insert(format!("blob-{sha}"), content.clone());
                EntryKind::File {
                    mode: meta.mode() & 0o7777,
                    size: content.len() as u64,
                    sha256: sha,
                }
            };
            index.entries.push(IndexEntry { path, kind });
        }
        let bytes = index.to_bytes();
        let sha256 = Digest256::parse(hex::encode(sha2::Sha256::digest(&bytes))).unwrap();
        let name = format!("{}-{}.index.json", m.app, m.version);
        r.index = Some(deploy::IndexRef {
            url: format!("{}/{name}", self.base),
            signature: packer_key()
                .sign_index(&m.app, &m.version, &sha256)
                .to_string(),
            sha256,
            size: bytes.len() as u64,
        });
        self.files.lock().unwrap().insert(name, bytes);
        r
    }

    fn blob_hits(&self) -> Vec<String> {
        self.hits
            .lock()
            .unwrap()
            .iter()
            .filter(|n| n.starts_with("blob-"))
            .cloned()
            .collect()
    }
}

/// Bytes that do not compress away.
fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn versioned(version: &str, bytes: u64) -> Manifest {
    let mut m = release(version, "exec sleep 1000", HealthCheck::Running, None);
    m.content_bytes = bytes;
    m
}

/// The transfer the host reported for deploy `id`.
fn transfer(rec: &Recorder, id: i64) -> deploy::Transfer {
    rec.of(DeployId(id))
        .into_iter()
        .find_map(|e| e.transfer)
        .unwrap_or_else(|| {
            panic!(
                "deploy {id} reported no transfer: {:?}",
                rec.of(DeployId(id))
            )
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_fetches_and_writes_only_the_changed_file() {
    let server = ArtifactServer::start().await;
    let host = Host::new();
    let rec = Recorder::default();
    *rec.blobs.lock().unwrap() = Some(server.base.clone());
    let token = CancellationToken::new();
    let app = hello();
    let (big, lib) = (noise(300_000, 7), noise(100_000, 9));
    let files = |code: &'static [u8]| -> Vec<E<'static>> {
        vec![
            E::Dir("deps"),
            E::File("deps/big.bin", Box::leak(big.clone().into_boxed_slice())),
            E::File("deps/lib.so", Box::leak(lib.clone().into_boxed_slice())),
            E::Symlink("deps/current.so", "lib.so"),
            E::File("app.py", code),
        ]
    };
    let v1 = versioned("1-aaaaaaa", 500_000);
    let r1 = server.publish_indexed(&v1, &files(b"print('one')"));
    assert_eq!(
        host.engine
            .install(&request(1, &v1, r1.clone()), &rec, &token)
            .await,
        Outcome::Done,
        "{:?}",
        rec.of(DeployId(1))
    );
    // Nothing of the app on the host: the whole artifact.
    assert_eq!(
        transfer(&rec, 1),
        deploy::Transfer {
            bytes_downloaded: r1.size,
            bytes_from_peers: 0,
            bytes_reused: 0
        }
    );
    assert!(server.blob_hits().is_empty(), "{:?}", server.blob_hits());

    let code = b"print('two, and longer')";
    let v2 = versioned("2-bbbbbbb", 500_000);
    let r2 = server.publish_indexed(&v2, &files(code));
    assert_eq!(
        host.engine
            .install(&request(2, &v2, r2.clone()), &rec, &token)
            .await,
        Outcome::Done,
        "{:?}",
        rec.of(DeployId(2))
    );
    let new_dir = host.layout().release_dir(&app, &v2.version);
    let old_dir = host.layout().release_dir(&app, &v1.version);
    let manifest_bytes = std::fs::metadata(new_dir.join(deploy::MANIFEST_PATH))
        .unwrap()
        .len();
    // Fetched: the index, the changed file and the manifest (it names the
    // version); nothing else.
    let t = transfer(&rec, 2);
    let index_size = r2.index.as_ref().unwrap().size;
    assert_eq!(
        t.bytes_downloaded,
        index_size + code.len() as u64 + manifest_bytes,
        "{t:?}"
    );
    assert_eq!(t.bytes_reused, (big.len() + lib.len()) as u64, "{t:?}");
    assert_eq!(server.blob_hits().len(), 2, "{:?}", server.blob_hits());
    assert!(
        !server
            .hits
            .lock()
            .unwrap()
            .contains(&"hello-2-bbbbbbb.tar.gz".to_string()),
        "the artifact was not downloaded"
    );
    // Written: only those; the unchanged files are the old release's.
    for same in ["deps/big.bin", "deps/lib.so"] {
        assert_eq!(
            std::fs::metadata(new_dir.join(same)).unwrap().ino(),
            std::fs::metadata(old_dir.join(same)).unwrap().ino(),
            "{same} was linked, not written"
        );
    }
    assert_ne!(
        std::fs::metadata(new_dir.join("app.py")).unwrap().ino(),
        std::fs::metadata(old_dir.join("app.py")).unwrap().ino()
    );
    // And it is, entry for entry, what extracting the artifact makes.
    let full = tempfile::tempdir().unwrap();
    let archive = full.path().join("a.tar.gz");
    std::fs::write(
        &archive,
        server.files.lock().unwrap()["hello-2-bbbbbbb.tar.gz"].clone(),
    )
    .unwrap();
    let tree = full.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    let extracted = crate::extract::unpack_checked(&archive, &tree, 1 << 30).unwrap();
    std::fs::set_permissions(&tree, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(
        deploy::tree::inventory(&new_dir).unwrap(),
        deploy::tree::inventory(&tree).unwrap()
    );
    assert_eq!(
        deploy::tree::inventory(&new_dir).unwrap().digest(),
        extracted.inventory.digest()
    );
    assert_eq!(
        host.layout()
            .read_digest(&app, &v2.version)
            .unwrap()
            .unwrap()
            .tree_sha256,
        extracted.inventory.digest(),
        "the recorded digest is a full extraction's"
    );
    assert_eq!(std::fs::read(new_dir.join("app.py")).unwrap(), code);
    assert_eq!(
        host.layout().read_current(&app).unwrap(),
        Some(v2.version.clone())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_file_of_the_content_store_is_fetched_again_never_linked() {
    let server = ArtifactServer::start().await;
    let host = Host::new();
    let rec = Recorder::default();
    *rec.blobs.lock().unwrap() = Some(server.base.clone());
    let token = CancellationToken::new();
    let app = hello();
    let big = noise(400_000, 3);
    let files = |code: &'static [u8]| -> Vec<E<'static>> {
        vec![
            E::File("big.bin", Box::leak(big.clone().into_boxed_slice())),
            E::File("app.py", code),
        ]
    };
    let v1 = versioned("1-aaaaaaa", 500_000);
    let r1 = server.publish_indexed(&v1, &files(b"one"));
    assert_eq!(
        host.engine
            .install(&request(1, &v1, r1), &rec, &token)
            .await,
        Outcome::Done
    );
    // Someone writes into the store's copy (same size, other bytes): the
    // release that links it changes with it, as an app running as root
    // writing into its own release would do.
    let big_sha = hex::encode(sha2::Sha256::digest(&big));
    let store = crate::content::ContentStore::new(host.layout().content_dir(&app));
    let stored = store.path(&big_sha, 0o755);
    assert!(stored.is_file(), "the full install filled the store");
    std::fs::write(&stored, noise(400_000, 4)).unwrap();

    let v2 = versioned("2-bbbbbbb", 500_000);
    let r2 = server.publish_indexed(&v2, &files(b"two"));
    assert_eq!(
        host.engine
            .install(&request(2, &v2, r2), &rec, &token)
            .await,
        Outcome::Done,
        "{:?}",
        rec.of(DeployId(2))
    );
    let new_dir = host.layout().release_dir(&app, &v2.version);
    assert_eq!(
        std::fs::read(new_dir.join("big.bin")).unwrap(),
        big,
        "the release has the signed content"
    );
    assert!(
        server.blob_hits().contains(&format!("blob-{big_sha}")),
        "fetched again: {:?}",
        server.blob_hits()
    );
    assert_ne!(
        std::fs::metadata(new_dir.join("big.bin")).unwrap().ino(),
        std::fs::metadata(host.layout().release_dir(&app, &v1.version).join("big.bin"))
            .unwrap()
            .ino(),
        "the changed file was not linked into the new release"
    );
    assert_eq!(
        crate::content::hash(&store.path(&big_sha, 0o755)).unwrap(),
        big_sha
    );
    let t = transfer(&rec, 2);
    assert!(t.bytes_downloaded >= big.len() as u64, "{t:?}");
    assert!(t.bytes_reused < big.len() as u64, "{t:?}");
}
