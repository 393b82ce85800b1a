//! A host's disk fills up under an install: the grabber's root on a small
//! tmpfs, the download and then the extraction running out of space. Each
//! fails cleanly: the old release keeps running, nothing of the new one is
//! left behind, and once there is room the same deploy installs.
//!
//! Needs root (a tmpfs mount): outside CI it skips, saying so; under
//! `CI=true` it fails.

use super::*;

/// A tmpfs of `bytes` mounted at `at`, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, bytes: u64) -> Option<Self> {
        std::fs::create_dir_all(at).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}")])
            .arg("tmpfs")
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "cannot mount a tmpfs (the disk-full test needs root)"
            );
            eprintln!("\n!!! SKIPPING the disk-full test: cannot mount a tmpfs (not root?)\n");
            return None;
        }
        Some(Self(at.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Incompressible bytes (SHA-256 in counter mode): the artifact is as big
/// as what it holds.
fn noise(n: usize) -> Vec<u8> {
    let mut b = Vec::with_capacity(n + 32);
    let mut i = 0u64;
    while b.len() < n {
        b.extend_from_slice(&sha2::Sha256::digest(i.to_le_bytes()));
        i += 1;
    }
    b.truncate(n);
    b
}

/// Free bytes on the filesystem holding `p`, as `df` says.
fn free(p: &Path) -> u64 {
    let out = std::process::Command::new("df")
        .args(["-B1", "--output=avail"])
        .arg(p)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("df said {text:?}"))
}

/// Fills the filesystem of `dir` until `left` bytes are free.
fn fill_until(dir: &Path, left: u64) -> PathBuf {
    let filler = dir.join("filler");
    let n = free(dir).saturating_sub(left);
    std::fs::write(&filler, vec![0u8; n as usize]).unwrap();
    filler
}

/// Every file under `dir` (the host's scratch and releases), for the
/// "nothing left behind" checks.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() && !p.is_symlink() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_the_install_cleanly_and_the_old_release_runs_on() {
    let dir = tempfile::tempdir().unwrap();
    let Some(_tmpfs) = Tmpfs::mount(&dir.path().join("disk"), 4 << 20) else {
        return;
    };
    let host = Host::at(dir.path().join("disk").join("host"));
    let server = ArtifactServer::start().await;
    let rec = Recorder::default();
    let token = CancellationToken::new();
    let app = hello();
    let a = release("1-aaaaaaa", "exec sleep 1000", HealthCheck::Running, None);
    let a_ref = server.publish(&a, FILES);
    let out = host
        .engine
        .install(&request(1, &a, a_ref), &rec, &token)
        .await;
    assert_eq!(out, Outcome::Done, "{:?}", rec.of(DeployId(1)));
    let pid_a = host.state(&app).pid.expect("a pid");

    // B holds 700 KB that do not compress.
    let data = noise(700 << 10);
    let mut b = release("2-bbbbbbb", "exec sleep 1000", HealthCheck::Running, None);
    (b.files, b.content_bytes) = (1, data.len() as u64);
    let b_ref = server.publish(&b, &[E::File("data.bin", &data)]);
    let root = host.layout().root().to_path_buf();
    // What an install may leave: downloads, scratch, the content store,
    // releases.
    let scratch = |host: &Host| {
        let l = host.layout();
        let mut f = files_under(&l.tmp_dir());
        f.extend(files_under(&l.cache_dir()));
        f.extend(files_under(&l.content_dir(&app)));
        f.extend(files_under(&l.releases_dir(&app)));
        f
    };
    let before = scratch(&host);

    // Room for neither the download nor the release: the download fails.
    // Then room for the download, not for the release: extraction fails.
    for (i, left) in [(2, 300u64 << 10), (3, 1_000 << 10)] {
        let filler = fill_until(&root, left);
        let out = host
            .engine
            .install(&request(i, &b, b_ref.clone()), &rec, &token)
            .await;
        let events = rec.of(DeployId(i));
        assert!(
            matches!(
                out,
                Outcome::Failed {
                    rolled_back: false,
                    ..
                }
            ),
            "{out:?} {events:?}"
        );
        let msg = rec.last(DeployId(i)).message.unwrap_or_default();
        assert!(
            msg.contains("No space left on device") || msg.contains("no space"),
            "the failure says the disk is full: {msg}"
        );
        assert_eq!(
            host.layout().read_current(&app).unwrap(),
            Some(a.version.clone())
        );
        assert!(pid_alive(pid_a), "the running release was not touched");
        assert_eq!(
            scratch(&host),
            before,
            "what the failed install left behind"
        );
        std::fs::remove_file(filler).unwrap();
    }

    // With room again, the same release installs (a new deploy of it).
    let out = host
        .engine
        .install(&request(4, &b, b_ref), &rec, &token)
        .await;
    assert_eq!(out, Outcome::Done, "{:?}", rec.of(DeployId(4)));
    assert_eq!(
        host.layout().read_current(&app).unwrap(),
        Some(b.version.clone())
    );
}
