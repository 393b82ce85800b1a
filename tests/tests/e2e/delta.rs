//! Delta releases through the whole pipeline: packer signs a file index,
//! AppTracker keeps each file as an object, and an upgrade that changes
//! the app's code (not its vendored weight) makes each host download the
//! index and the changed files only, link the rest, and report it on its
//! row of the deploy; the release on disk is, entry for entry, what
//! extracting the artifact makes. Hosts serve their files to each other:
//! a peer whose copy was changed on disk serves bytes the index does not
//! sign, and the host fetching from it skips it, says so, and installs from
//! another source.

use std::collections::{BTreeMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use deploy::index::ReleaseIndex;
use deploy::{
    CreateDeploy, Deploy, DeployHost, DeployStatus, HostPhase, Portion, Strategy, Transfer,
};
use slipway_tests::{AppRepo, commit_hello, platform, poll};

const HOSTS: [&str; 3] = ["d-1", "d-2", "d-3"];

/// Text that does not compress away.
fn noise(n: usize, seed: u64) -> String {
    let mut x = 0x9e37_79b9_7f4a_7c15 ^ seed;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b"0123456789abcdef"[(x & 0xf) as usize])
        })
        .collect()
}

fn row<'a>(d: &'a Deploy, host: &str) -> &'a DeployHost {
    d.hosts
        .iter()
        .find(|h| h.host.as_str() == host)
        .unwrap_or_else(|| panic!("{host} in {d:#?}"))
}

fn transfer(d: &Deploy, host: &str) -> Transfer {
    row(d, host)
        .transfer
        .unwrap_or_else(|| panic!("{host} reported no transfer: {d:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_upgrade_moves_only_what_changed_and_a_lying_peer_is_skipped() -> anyhow::Result<()> {
    let p = platform()
        .hosts(&HOSTS)
        .configure_grabbers(|c| c.peer_listen = "127.0.0.1:0".parse().ok())
        .start()
        .await?;
    let agent = deploy::Client::new(p.base_url.clone()).with_token(p.agent_token.clone());
    let index_of = async |host: &str| -> anyhow::Result<(ReleaseIndex, deploy::Release)> {
        let desired = agent.desired_state(&p.cluster, &p.host(host).name).await?;
        let release = desired.apps.into_iter().next().expect("an app");
        let ix = release.artifact.index.clone().expect("an indexed release");
        let bytes = slipway_tests::http()
            .get(&ix.url)
            .send()
            .await?
            .bytes()
            .await?;
        Ok((
            ReleaseIndex::parse(&bytes, &release.app, &release.version)?,
            release,
        ))
    };

    // The app with weight that does not change: 1.5 MB of vendored data.
    let repo = AppRepo::new(p.dir().join("repo"))?;
    let vendored = noise(1_500_000, 1);
    repo.commit(&[("vendor/data.txt", &vendored)], "vendored data")?;
    commit_hello(&repo, "A", true)?;
    let app = p.register("hello", &repo.path).await?;
    let a = p.release_and_wait(&app, "main", None).await?;
    assert_eq!(a.status, DeployStatus::Succeeded, "{a:#?}");
    let (index_a, release_a) = index_of("d-1").await?;
    for host in HOSTS {
        // Nothing of the app on the hosts yet: the whole artifact.
        assert_eq!(
            transfer(&a, host),
            Transfer {
                bytes_downloaded: release_a.artifact.size,
                bytes_from_peers: 0,
                bytes_reused: 0
            },
            "{host}"
        );
    }

    // Only the code changes: the canary hosts first, then a pause.
    commit_hello(&repo, "B", true)?;
    let b = p
        .client
        .create_deploy(&CreateDeploy {
            app: app.clone(),
            version: None,
            git_ref: Some(deploy::GitRef::parse("main")?),
            cluster: p.cluster.clone(),
            hosts: None,
            strategy: Strategy::Canary {
                canary: Portion::Count(2),
                bake_ms: 0,
                manual: true,
            },
            max_failures: Default::default(),
            rollback_on_failure: false,
            confirm: None,
            wait: false,
        })
        .await?;
    poll(Duration::from_secs(120), || async {
        let d = p.client.deploy(b.id).await?;
        anyhow::ensure!(!d.status.is_terminal(), "{d:#?}");
        Ok(["d-1", "d-2"].iter().all(|h| {
            d.hosts
                .iter()
                .any(|r| r.host.as_str() == *h && r.phase == HostPhase::Done)
        }))
    })
    .await?;
    let (index_b, release_b) = index_of("d-1").await?;
    let old: HashSet<&deploy::Sha256> = index_a.files().map(|(_, _, _, sha)| sha).collect();
    let mut changed: BTreeMap<&deploy::Sha256, (u64, &str)> = BTreeMap::new();
    for (path, _, size, sha) in index_b.files() {
        if !old.contains(sha) {
            changed.insert(sha, (size, path));
        }
    }
    let changed_bytes: u64 = changed.values().map(|(size, _)| size).sum();
    let mut paths: Vec<&str> = changed.values().map(|(_, p)| *p).collect();
    paths.sort();
    assert_eq!(
        paths,
        [".slipway/manifest.json", "app.py"],
        "the code and the manifest (it names the version) changed, nothing else"
    );
    let index_size = release_b.artifact.index.as_ref().expect("index").size;
    let d = p.client.deploy(b.id).await?;
    for host in ["d-1", "d-2"] {
        let t = transfer(&d, host);
        assert_eq!(
            t.bytes_downloaded,
            index_size + changed_bytes,
            "{host}: {t:?}"
        );
        assert_eq!(
            t.bytes_reused,
            index_b.content_bytes() - changed_bytes,
            "{host}: {t:?}"
        );
        assert!(
            t.bytes_downloaded <= 2 * changed_bytes + index_size,
            "at most twice the changed bytes plus the index"
        );
        // Written: only what changed; the vendored data is the old file.
        let releases = p.host(host).root.join("apps/hello/releases");
        let ino = |v: &deploy::Version, path: &str| -> anyhow::Result<u64> {
            Ok(std::fs::metadata(releases.join(v.as_str()).join(path))?.ino())
        };
        assert_eq!(
            ino(&release_a.version, "vendor/data.txt")?,
            ino(&release_b.version, "vendor/data.txt")?,
            "{host} linked the unchanged file"
        );
        assert_ne!(
            ino(&release_a.version, "app.py")?,
            ino(&release_b.version, "app.py")?
        );
    }

    // d-1's copies of the changed files go bad on its disk: as a peer, it
    // now serves bytes the index does not sign.
    let store = p.host("d-1").root.join("apps/hello/content");
    let mut spoiled = 0;
    for entry in std::fs::read_dir(&store)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if changed.keys().any(|sha| name.starts_with(sha.as_str())) {
            let len = std::fs::metadata(&path)?.len() as usize;
            std::fs::write(&path, noise(len, 99))?;
            spoiled += 1;
        }
    }
    assert_eq!(spoiled, changed.len(), "d-1 held every changed file");

    p.client.continue_deploy(b.id).await?;
    let b = p.wait_deploy(b.id).await?;
    assert_eq!(b.status, DeployStatus::Succeeded, "{b:#?}");
    let t = transfer(&b, "d-3");
    assert!(t.bytes_from_peers > 0, "d-3 fetched from its peers: {t:?}");
    assert_eq!(t.bytes_downloaded, index_size + changed_bytes, "{t:?}");
    let events = p.client.deploy_events(b.id).await?;
    let said = events
        .iter()
        .filter(|e| e.host.as_str() == "d-3")
        .filter_map(|e| e.message.clone())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        said.contains("skipped peers that served files not matching the signed index: d-1"),
        "d-3 reports the peer that lied: {said}"
    );

    // d-3's release is, entry for entry, the artifact extracted.
    let archive = slipway_tests::http()
        .get(&release_b.artifact.url)
        .send()
        .await?
        .bytes()
        .await?;
    let scratch = tempfile::tempdir()?;
    let file = scratch.path().join("a.tar.gz");
    std::fs::write(&file, &archive)?;
    let tree = scratch.path().join("tree");
    std::fs::create_dir(&tree)?;
    let unpacked = grabber::extract::unpack_checked(&file, &tree, 1 << 30)?;
    let on_host = p
        .host("d-3")
        .root
        .join("apps/hello/releases")
        .join(release_b.version.as_str());
    assert_eq!(
        deploy::tree::inventory(&on_host)?.digest(),
        unpacked.inventory.digest()
    );
    assert_eq!(
        slipway_tests::get_app(p.host("d-3").port).await?,
        format!("B {}\n", release_b.version)
    );
    p.shutdown().await
}
