//! The host layout on disk: paths, state, `current`, and what a release was
//! installed with.

use super::*;
use std::sync::atomic::{AtomicU32, Ordering};

/// A fresh directory under the system temp dir, removed on drop.
struct TempRoot(PathBuf);

impl TempRoot {
    fn new() -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "slipway-layout-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap();
        Self(p)
    }
}

impl Drop for TempRoot {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn app(s: &str) -> AppName {
    AppName::parse(s).unwrap()
}

fn ver(s: &str) -> Version {
    Version::parse(s).unwrap()
}

#[test]
fn paths_follow_the_documented_layout() {
    let l = HostLayout::new("/r");
    let a = app("hello");
    let v = ver("3-abcdef0");
    assert_eq!(
        l.release_dir(&a, &v),
        Path::new("/r/apps/hello/releases/3-abcdef0")
    );
    assert_eq!(l.current_link(&a), Path::new("/r/apps/hello/current"));
    assert_eq!(l.log_file(&a), Path::new("/r/apps/hello/log/hello.log"));
    assert_eq!(
        l.digest_file(&a, &v),
        Path::new("/r/apps/hello/digests/3-abcdef0.json")
    );
    assert_eq!(l.state_file(&a), Path::new("/r/apps/hello/state.json"));
    assert_eq!(
        l.cached_artifact(&a, &v),
        Path::new("/r/cache/hello-3-abcdef0.tar.gz")
    );
    assert_eq!(l.tmp_dir(), Path::new("/r/tmp"));
}

#[test]
fn state_round_trips_and_missing_state_is_none() {
    let root = TempRoot::new();
    let l = HostLayout::new(&root.0);
    let a = app("hello");
    assert_eq!(l.read_state(&a).unwrap(), None);
    let mut s = AppState::new(a.clone());
    s.current = Some(ver("2-bbbbbbb"));
    s.previous = Some(ver("1-aaaaaaa"));
    s.pid = Some(1234);
    s.port = Some(8001);
    s.last_deploy = Some(DeployId(9));
    for i in 0..(HISTORY_LEN + 5) {
        s.record(InstallRecord {
            version: ver("2-bbbbbbb"),
            deploy_id: Some(DeployId(i as i64 + 1)),
            at: Timestamp(i as i64),
            outcome: "done".into(),
        });
    }
    assert_eq!(s.history.len(), HISTORY_LEN);
    assert_eq!(s.history[0].deploy_id, Some(DeployId(6)));
    l.write_state(&s).unwrap();
    assert_eq!(l.read_state(&a).unwrap(), Some(s.clone()));
    // Overwriting leaves no temporary file behind.
    s.pid = None;
    l.write_state(&s).unwrap();
    assert_eq!(l.read_state(&a).unwrap().unwrap().pid, None);
    assert!(!l.app_dir(&a).join("state.json.tmp").exists());
}

#[test]
fn corrupt_state_is_an_error_naming_the_file() {
    let root = TempRoot::new();
    let l = HostLayout::new(&root.0);
    let a = app("hello");
    fs::create_dir_all(l.app_dir(&a)).unwrap();
    fs::write(l.state_file(&a), "{not json").unwrap();
    let err = l.read_state(&a).unwrap_err().to_string();
    assert!(err.contains("state.json"), "{err}");
}

#[test]
fn current_and_apps_are_read_from_disk() {
    let root = TempRoot::new();
    let l = HostLayout::new(&root.0);
    assert!(l.list_apps().unwrap().is_empty());
    let a = app("hello");
    let b = app("api");
    l.ensure_dirs().unwrap();
    l.ensure_app_dirs(&a).unwrap();
    l.ensure_app_dirs(&b).unwrap();
    fs::create_dir_all(l.apps_dir().join("Not An App")).unwrap();
    assert_eq!(l.list_apps().unwrap(), vec![b.clone(), a.clone()]);
    assert_eq!(l.read_current(&a).unwrap(), None);

    let v = ver("1-abcdef0");
    fs::create_dir_all(l.release_dir(&a, &v)).unwrap();
    std::os::unix::fs::symlink(HostLayout::current_target(&v), l.current_link(&a)).unwrap();
    assert_eq!(l.read_current(&a).unwrap(), Some(v.clone()));
    assert_eq!(l.list_releases(&a).unwrap(), vec![v]);

    std::os::unix::fs::symlink("/etc", l.current_link(&b)).unwrap();
    assert!(matches!(
        l.read_current(&b),
        Err(LayoutError::BadCurrent { .. })
    ));
}

#[test]
fn what_a_release_was_installed_with_is_read_back() {
    let root = TempRoot::new();
    let l = HostLayout::new(&root.0);
    let (a, v) = (app("hello"), ver("1-abcdef0"));
    assert_eq!(l.read_installed(&a, &v).unwrap(), None, "nothing recorded");
    let release = l.release_dir(&a, &v);
    fs::create_dir_all(&release).unwrap();
    fs::write(release.join("app.py"), "print('hi')\n").unwrap();
    let inventory = crate::tree::inventory(&release).unwrap();
    let old = ReleaseDigest {
        artifact_sha256: crate::Sha256::parse("ab".repeat(32)).unwrap(),
        tree_sha256: inventory.digest(),
        inventory_sha256: None,
    };

    // An older grabber's record: a digest only, the whole tree compared.
    l.write_digest(&a, &v, &old).unwrap();
    let text = fs::read_to_string(l.digest_file(&a, &v)).unwrap();
    assert!(!text.contains("inventory"), "{text}");
    let installed = l.read_installed(&a, &v).unwrap().unwrap();
    assert_eq!(installed.inventory, None);
    assert_eq!(installed.check(&release).unwrap(), None);
    fs::write(release.join("app.log"), "started\n").unwrap();
    assert_eq!(
        installed.check(&release).unwrap(),
        Some(Change::Tree),
        "without an inventory any file added is a change, as before"
    );
    fs::remove_file(release.join("app.log")).unwrap();

    // Today's: the inventory first, then the digest naming it.
    let sha = l.write_inventory(&a, &v, &inventory).unwrap();
    let new = ReleaseDigest {
        inventory_sha256: Some(sha),
        ..old
    };
    l.write_digest(&a, &v, &new).unwrap();
    let installed = l.read_installed(&a, &v).unwrap().unwrap();
    assert_eq!(installed.inventory.as_ref(), Some(&inventory));
    fs::write(release.join("app.log"), "started\n").unwrap();
    assert_eq!(installed.check(&release).unwrap(), None);
    fs::write(release.join("app.py"), "print('patched')\n").unwrap();
    assert_eq!(
        installed.check(&release).unwrap(),
        Some(Change::Content("app.py".into()))
    );

    // An inventory that is not the one the digest names is refused.
    fs::write(l.inventory_file(&a, &v), b"slipway-inventory-v1\n").unwrap();
    let err = l.read_installed(&a, &v).unwrap_err().to_string();
    assert!(
        err.contains(".inventory") && err.contains("sha256"),
        "{err}"
    );

    l.remove_digest(&a, &v);
    assert!(!l.inventory_file(&a, &v).exists());
    assert_eq!(l.read_installed(&a, &v).unwrap(), None);
}
