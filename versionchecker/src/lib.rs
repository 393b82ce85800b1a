//! The version checker: reads a host's layout (never asking the grabber) and
//! says what is installed and running there. The periodic reporting daemon,
//! the drift computation and the alert check build on [`scan`].

use std::path::Path;

use deploy::layout::{HostLayout, LayoutError};
use deploy::{AppName, Version};
use serde::Serialize;

/// What one app looks like on disk and in the process table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppReport {
    pub app: AppName,
    /// The release `current` names.
    pub current: Option<Version>,
    /// Every release directory on disk, oldest name first.
    pub releases: Vec<Version>,
    /// The supervised process recorded in `state.json`, if it is alive.
    pub pid: Option<u32>,
    pub port: Option<u16>,
}

/// Reads every app under `root`.
pub fn scan(root: &Path) -> Result<Vec<AppReport>, LayoutError> {
    let layout = HostLayout::new(root);
    let mut out = Vec::new();
    for app in layout.list_apps()? {
        let state = layout.read_state(&app)?;
        let pid = state
            .as_ref()
            .and_then(|s| s.pid)
            .filter(|pid| Path::new("/proc").join(pid.to_string()).exists());
        out.push(AppReport {
            current: layout.read_current(&app)?,
            releases: layout.list_releases(&app)?,
            pid,
            port: state.and_then(|s| s.port),
            app,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_current_releases_and_liveness() {
        let dir = tempfile::tempdir().unwrap();
        let layout = HostLayout::new(dir.path());
        let app = AppName::parse("hello").unwrap();
        let v1 = Version::parse("1-aaaaaaa").unwrap();
        let v2 = Version::parse("2-bbbbbbb").unwrap();
        layout.ensure_app_dirs(&app).unwrap();
        std::fs::create_dir_all(layout.release_dir(&app, &v1)).unwrap();
        std::fs::create_dir_all(layout.release_dir(&app, &v2)).unwrap();
        std::os::unix::fs::symlink(HostLayout::current_target(&v2), layout.current_link(&app))
            .unwrap();
        let mut state = deploy::layout::AppState::new(app.clone());
        state.pid = Some(std::process::id());
        state.port = Some(9000);
        layout.write_state(&state).unwrap();

        let report = scan(dir.path()).unwrap();
        assert_eq!(report.len(), 1);
        assert_eq!(report[0].current, Some(v2.clone()));
        assert_eq!(report[0].releases, vec![v1, v2]);
        assert_eq!(
            report[0].pid,
            Some(std::process::id()),
            "this test process is alive"
        );
        assert_eq!(report[0].port, Some(9000));

        // A pid that is not running is not reported as running.
        state.pid = Some(u32::MAX - 1);
        layout.write_state(&state).unwrap();
        assert_eq!(scan(dir.path()).unwrap()[0].pid, None);
    }
}
