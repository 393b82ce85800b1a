//! Reads a host: the layout under its root (`current`, releases, `state.json`,
//! disk use) and `/proc` (the app's process group), never the grabber.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use deploy::layout::{HostLayout, LayoutError};
use deploy::report::{AppDisk, AppReport, FsSpace, ProcessReport};
use deploy::tree::Change;
use deploy::{AppName, Version};

use deploy::procfs;

/// Reads one host layout, again and again: it remembers what does not
/// change (the size of a release, which is never modified once renamed into
/// place) and the previous CPU sample of each app, so a scan every minute
/// costs little and can say how busy an app was since the last one.
#[derive(Debug)]
pub struct Scanner {
    layout: HostLayout,
    release_sizes: HashMap<(AppName, Version), u64>,
    cpu: HashMap<AppName, CpuSample>,
    ticks_per_second: u64,
    page_size: u64,
}

#[derive(Debug, Clone, Copy)]
struct CpuSample {
    pid: u32,
    ticks: u64,
    at: Instant,
}

impl Scanner {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            layout: HostLayout::new(root),
            release_sizes: HashMap::new(),
            cpu: HashMap::new(),
            ticks_per_second: procfs::ticks_per_second(),
            page_size: procfs::page_size(),
        }
    }

    pub fn root(&self) -> &Path {
        self.layout.root()
    }

    /// Every app under the root. A broken app (unreadable `state.json`, a
    /// `current` naming no release) is reported with its `error`; only a
    /// root that cannot be listed is an error.
    pub fn scan(&mut self) -> Result<Vec<AppReport>, LayoutError> {
        let apps = self.layout.list_apps()?;
        let groups = procfs::by_group();
        let mut out = Vec::with_capacity(apps.len());
        for app in &apps {
            out.push(self.scan_app(app, &groups));
        }
        // Forget what belongs to apps or releases that are gone.
        let present: HashSet<(&AppName, &Version)> = out
            .iter()
            .flat_map(|a| a.releases.iter().map(move |v| (&a.app, v)))
            .collect();
        self.release_sizes
            .retain(|(a, v), _| present.contains(&(a, v)));
        self.cpu.retain(|a, _| apps.contains(a));
        Ok(out)
    }

    /// Free and total space of the filesystem holding the root.
    pub fn fs_space(&self) -> Option<FsSpace> {
        let s = nix::sys::statvfs::statvfs(self.layout.root()).ok()?;
        let unit = s.fragment_size() as u64;
        Some(FsSpace {
            free_bytes: s.blocks_available() as u64 * unit,
            total_bytes: s.blocks() as u64 * unit,
        })
    }

    fn scan_app(&mut self, app: &AppName, groups: &HashMap<u32, Vec<procfs::Stat>>) -> AppReport {
        let mut errors = Vec::new();
        let current = self.layout.read_current(app).unwrap_or_else(|e| {
            errors.push(e.to_string());
            None
        });
        let releases = self.layout.list_releases(app).unwrap_or_else(|e| {
            errors.push(e.to_string());
            Vec::new()
        });
        let state = self.layout.read_state(app).unwrap_or_else(|e| {
            errors.push(e.to_string());
            None
        });
        let process = state
            .as_ref()
            .and_then(|s| s.pid)
            .and_then(|pid| self.process(app, pid, groups));
        match &process {
            Some(p) => {
                let ticks = groups
                    .get(&p.pid)
                    .map(|g| group_ticks(p.pid, g))
                    .unwrap_or(0);
                self.cpu.insert(
                    app.clone(),
                    CpuSample {
                        pid: p.pid,
                        ticks,
                        at: Instant::now(),
                    },
                );
            }
            None => {
                self.cpu.remove(app);
            }
        }
        let disk = self.disk(app, &releases);
        let change = current.as_ref().and_then(|v| self.changed_on_disk(app, v));
        AppReport {
            app: app.clone(),
            current,
            releases,
            process,
            restarts: state.as_ref().map_or(0, |s| s.restarts),
            config_version: state.as_ref().map_or(0, |s| s.config),
            stopped: state.is_some_and(|s| s.stopped),
            changed_on_disk: change.as_ref().map(Option::is_some),
            changed_path: change
                .flatten()
                .and_then(|c| c.path().map(|p| p.display().to_string())),
            disk,
            error: (!errors.is_empty()).then(|| errors.join("; ")),
        }
    }

    /// Whether the files of `version` the grabber installed changed since:
    /// checked against the inventory it recorded (files added since, such
    /// as an app's `__pycache__/` or log, are not a change), or against the
    /// tree digest for a release recorded by an older grabber. None without
    /// a record or when the release cannot be read; else the first change
    /// found, if any. Reads every installed file of the release, once per
    /// report.
    fn changed_on_disk(&self, app: &AppName, version: &Version) -> Option<Option<Change>> {
        let installed = match self.layout.read_installed(app, version) {
            Ok(installed) => installed?,
            Err(e) => {
                tracing::debug!(%app, %version, error = %e, "cannot read what the current release was installed with");
                return None;
            }
        };
        match installed.check(&self.layout.release_dir(app, version)) {
            Ok(None) => Some(None),
            Ok(Some(change)) => {
                tracing::debug!(%app, %version, %change, "the current release changed on disk");
                Some(Some(change))
            }
            Err(e) => {
                tracing::debug!(%app, %version, error = %e, "cannot check the current release");
                None
            }
        }
    }

    /// The app's process group, if `pid` leads a live one that runs from
    /// this app's releases (a recorded pid may have been reused since).
    fn process(
        &self,
        app: &AppName,
        pid: u32,
        groups: &HashMap<u32, Vec<procfs::Stat>>,
    ) -> Option<ProcessReport> {
        let group = groups.get(&pid)?;
        let leader = group.iter().find(|s| s.pid == pid && s.is_alive())?;
        let releases = self.layout.releases_dir(app);
        let releases = releases.canonicalize().unwrap_or(releases);
        let cwd = procfs::cwd(pid)?;
        let rel = cwd.strip_prefix(&releases).ok()?;
        let version = rel
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .and_then(|v| Version::parse(v).ok());
        let alive: Vec<&procfs::Stat> = group.iter().filter(|s| s.is_alive()).collect();
        let hz = self.ticks_per_second as f64;
        let ticks = group_ticks(pid, group);
        let uptime_ms = procfs::uptime_seconds()
            .map(|up| ((up - leader.starttime as f64 / hz).max(0.0) * 1000.0) as u64)
            .unwrap_or(0);
        let cpu_percent = self.cpu.get(app).filter(|s| s.pid == pid).and_then(|s| {
            let secs = s.at.elapsed().as_secs_f64();
            (secs > 0.0).then(|| ticks.saturating_sub(s.ticks) as f64 / hz / secs * 100.0)
        });
        Some(ProcessReport {
            pid,
            version,
            uptime_ms,
            rss_bytes: alive.iter().map(|s| s.rss_pages).sum::<u64>() * self.page_size,
            cpu_ms: ticks * 1000 / self.ticks_per_second,
            cpu_percent,
        })
    }

    fn disk(&mut self, app: &AppName, releases: &[Version]) -> AppDisk {
        let mut releases_bytes = 0;
        for v in releases {
            let key = (app.clone(), v.clone());
            let size = match self.release_sizes.get(&key) {
                Some(size) => *size,
                None => {
                    let size = du(&self.layout.release_dir(app, v), None);
                    self.release_sizes.insert(key, size);
                    size
                }
            };
            releases_bytes += size;
        }
        let shared = self.layout.shared_dir(app);
        let logs = self
            .layout
            .log_file(app)
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| shared.join("log"));
        AppDisk {
            releases_bytes,
            shared_bytes: du(&shared, Some(&logs)),
            logs_bytes: du(&logs, None),
        }
    }
}

/// CPU ticks of a process group: its live members, plus what the leader
/// collected from children it waited for.
fn group_ticks(leader: u32, group: &[procfs::Stat]) -> u64 {
    group
        .iter()
        .filter(|s| s.is_alive())
        .map(|s| {
            let waited = if s.pid == leader {
                s.cutime + s.cstime
            } else {
                0
            };
            s.cpu_ticks() + waited
        })
        .sum()
}

/// Bytes allocated under `dir` (like `du`: blocks, each hard-linked file
/// once, symlinks not followed), leaving out `skip`.
pub fn du(dir: &Path, skip: Option<&Path>) -> u64 {
    let mut seen = HashSet::new();
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            if skip == Some(path.as_path()) {
                continue;
            }
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.nlink() > 1 && !meta.is_dir() && !seen.insert((meta.dev(), meta.ino())) {
                continue;
            }
            total += meta.blocks() * 512;
            if meta.is_dir() {
                stack.push(path);
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use deploy::layout::AppState;

    fn app(s: &str) -> AppName {
        AppName::parse(s).unwrap()
    }

    fn ver(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    #[test]
    fn reads_current_releases_disk_and_broken_apps() {
        let dir = tempfile::tempdir().unwrap();
        let layout = HostLayout::new(dir.path());
        let hello = app("hello");
        let (v1, v2) = (ver("1-aaaaaaa"), ver("2-bbbbbbb"));
        layout.ensure_app_dirs(&hello).unwrap();
        for v in [&v1, &v2] {
            std::fs::create_dir_all(layout.release_dir(&hello, v)).unwrap();
            std::fs::write(
                layout.release_dir(&hello, v).join("app.py"),
                vec![b'x'; 10_000],
            )
            .unwrap();
        }
        std::fs::write(layout.log_file(&hello), vec![b'l'; 50_000]).unwrap();
        std::fs::write(layout.shared_dir(&hello).join("data"), vec![b'd'; 20_000]).unwrap();
        std::os::unix::fs::symlink(HostLayout::current_target(&v2), layout.current_link(&hello))
            .unwrap();
        let mut state = AppState::new(hello.clone());
        state.restarts = 2;
        // A pid that runs but not from this app's releases: not its process.
        state.pid = Some(std::process::id());
        layout.write_state(&state).unwrap();

        let broken = app("broken");
        layout.ensure_app_dirs(&broken).unwrap();
        std::fs::write(layout.state_file(&broken), "{not json").unwrap();

        let mut scanner = Scanner::new(dir.path());
        let apps = scanner.scan().unwrap();
        assert_eq!(apps.len(), 2);
        let b = &apps[0];
        assert_eq!(b.app, broken);
        assert!(b.error.as_deref().unwrap().contains("state.json"), "{b:?}");
        let h = &apps[1];
        assert_eq!(h.current, Some(v2.clone()));
        assert_eq!(h.releases, vec![v1.clone(), v2.clone()]);
        assert_eq!(h.process, None, "this test runs from elsewhere");
        assert_eq!(h.restarts, 2);
        assert!(h.disk.releases_bytes >= 20_000, "{:?}", h.disk);
        assert!(h.disk.logs_bytes >= 50_000, "{:?}", h.disk);
        assert!(
            (20_000..50_000).contains(&h.disk.shared_bytes),
            "logs are not counted twice: {:?}",
            h.disk
        );
        assert!(scanner.fs_space().unwrap().total_bytes > 0);

        // Release sizes are remembered while the release exists.
        assert_eq!(scanner.release_sizes.len(), 2);
        std::fs::remove_dir_all(layout.release_dir(&hello, &v1)).unwrap();
        scanner.scan().unwrap();
        assert_eq!(scanner.release_sizes.len(), 1);
    }

    #[test]
    fn finds_the_process_group_running_from_a_release() {
        let dir = tempfile::tempdir().unwrap();
        let layout = HostLayout::new(dir.path());
        let hello = app("hello");
        let v = ver("1-aaaaaaa");
        layout.ensure_app_dirs(&hello).unwrap();
        let release = layout.release_dir(&hello, &v);
        std::fs::create_dir_all(&release).unwrap();
        std::os::unix::fs::symlink(HostLayout::current_target(&v), layout.current_link(&hello))
            .unwrap();
        // A group leader with a child, both running from the release, as the
        // grabber's shim and the app would.
        let mut child = {
            use std::os::unix::process::CommandExt;
            std::process::Command::new("sh")
                .arg("-c")
                .arg("sleep 30 & wait")
                .current_dir(&release)
                .process_group(0)
                .spawn()
                .unwrap()
        };
        let mut state = AppState::new(hello.clone());
        state.pid = Some(child.id());
        layout.write_state(&state).unwrap();

        let mut scanner = Scanner::new(dir.path());
        let deadline = Instant::now() + std::time::Duration::from_secs(5);
        let p = loop {
            // The child may not have started `sleep` yet: wait for two.
            let a = scanner.scan().unwrap().remove(0);
            let members = procfs::by_group().get(&child.id()).map_or(0, Vec::len);
            if members >= 2 || Instant::now() > deadline {
                break a.process.unwrap();
            }
        };
        assert_eq!(p.pid, child.id());
        assert_eq!(p.version, Some(v.clone()));
        assert!(p.rss_bytes > 0);
        let p2 = scanner.scan().unwrap().remove(0).process.unwrap();
        assert!(p2.cpu_percent.is_some(), "a second scan has a CPU rate");

        // Dead (a zombie until reaped, then gone): not running.
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let deadline = Instant::now() + std::time::Duration::from_secs(5);
        while scanner.scan().unwrap()[0].process.is_some() {
            assert!(
                Instant::now() < deadline,
                "a killed app still shows as running"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = child.wait();
    }

    /// A release installed with an inventory (or, without, as an older
    /// grabber recorded it): `changed_on_disk` and `changed_path` after
    /// `edit`.
    fn changed_after(edit: impl FnOnce(&Path), inventory: bool) -> (Option<bool>, Option<String>) {
        let dir = tempfile::tempdir().unwrap();
        let layout = HostLayout::new(dir.path());
        let (hello, v) = (app("hello"), ver("1-aaaaaaa"));
        layout.ensure_app_dirs(&hello).unwrap();
        let release = layout.release_dir(&hello, &v);
        std::fs::create_dir_all(release.join("lib")).unwrap();
        std::fs::write(release.join("app.py"), "import greeting\n").unwrap();
        std::fs::write(release.join("lib/greeting.py"), "WORD = 'hi'\n").unwrap();
        std::os::unix::fs::symlink(HostLayout::current_target(&v), layout.current_link(&hello))
            .unwrap();
        let installed = deploy::tree::inventory(&release).unwrap();
        let inventory_sha256 =
            inventory.then(|| layout.write_inventory(&hello, &v, &installed).unwrap());
        let digest = deploy::layout::ReleaseDigest {
            artifact_sha256: deploy::Sha256::parse("ab".repeat(32)).unwrap(),
            tree_sha256: installed.digest(),
            inventory_sha256,
        };
        layout.write_digest(&hello, &v, &digest).unwrap();
        let mut scanner = Scanner::new(dir.path());
        assert_eq!(scanner.scan().unwrap()[0].changed_on_disk, Some(false));
        edit(&release);
        let a = scanner.scan().unwrap().remove(0);
        (a.changed_on_disk, a.changed_path)
    }

    #[test]
    fn files_the_app_adds_to_its_release_are_not_a_change() {
        let pycache = |r: &Path| {
            std::fs::create_dir(r.join("__pycache__")).unwrap();
            std::fs::write(r.join("__pycache__/greeting.cpython-311.pyc"), "pyc").unwrap();
            std::fs::write(r.join("lib/app.log"), "started\n").unwrap();
        };
        assert_eq!(changed_after(pycache, true), (Some(false), None));
        // A release an older grabber recorded (a tree digest only) is
        // compared whole, as before.
        assert_eq!(changed_after(pycache, false), (Some(true), None));
    }

    #[test]
    fn an_installed_file_modified_removed_chmoded_or_retyped_is_a_change() {
        use std::os::unix::fs::PermissionsExt;
        /// What is done, how, and the path that then changed first.
        type Edit = (&'static str, fn(&Path), &'static str);
        let edits: [Edit; 4] = [
            (
                "modified",
                |r| std::fs::write(r.join("app.py"), "import greeting # patched\n").unwrap(),
                "app.py",
            ),
            (
                "removed",
                |r| std::fs::remove_file(r.join("lib/greeting.py")).unwrap(),
                "lib/greeting.py",
            ),
            (
                "chmod",
                |r| {
                    std::fs::set_permissions(
                        r.join("app.py"),
                        std::fs::Permissions::from_mode(0o600),
                    )
                    .unwrap()
                },
                "app.py",
            ),
            (
                "retyped",
                |r| {
                    std::fs::remove_file(r.join("app.py")).unwrap();
                    std::os::unix::fs::symlink("lib/greeting.py", r.join("app.py")).unwrap();
                },
                "app.py",
            ),
        ];
        for (what, edit, path) in edits {
            assert_eq!(
                changed_after(edit, true),
                (Some(true), Some(path.to_string())),
                "{what}"
            );
            assert_eq!(
                changed_after(edit, false),
                (Some(true), None),
                "{what}, old record"
            );
        }
    }

    #[test]
    fn a_release_without_a_record_or_with_a_damaged_one_is_not_judged() {
        let dir = tempfile::tempdir().unwrap();
        let layout = HostLayout::new(dir.path());
        let (hello, v) = (app("hello"), ver("1-aaaaaaa"));
        layout.ensure_app_dirs(&hello).unwrap();
        std::fs::create_dir_all(layout.release_dir(&hello, &v)).unwrap();
        std::os::unix::fs::symlink(HostLayout::current_target(&v), layout.current_link(&hello))
            .unwrap();
        let mut scanner = Scanner::new(dir.path());
        assert_eq!(scanner.scan().unwrap()[0].changed_on_disk, None);
        let digest = deploy::layout::ReleaseDigest {
            artifact_sha256: deploy::Sha256::parse("ab".repeat(32)).unwrap(),
            tree_sha256: "00".repeat(32),
            inventory_sha256: Some("00".repeat(32)),
        };
        layout.write_digest(&hello, &v, &digest).unwrap();
        std::fs::write(layout.inventory_file(&hello, &v), "garbage").unwrap();
        assert_eq!(scanner.scan().unwrap()[0].changed_on_disk, None);
    }
}
