//! Who holds a port. Two rules rest on it: a release whose pinned port
//! another app or process already listens on fails in `starting`, naming
//! the port and its holder, before anything running is touched; and a
//! health check only counts when the listening socket that answered belongs
//! to the app's own process group (the shim leads it), so a stranger
//! answering on the app's port never passes for the app.

use std::path::{Path, PathBuf};

use deploy::layout::HostLayout;
use deploy::procfs;

/// Refuses `port` when a process other than `own` ones listens on it.
/// `own` says which holders are this app's (its running release, about to
/// be replaced). A listener this process cannot look into (another user's,
/// when the grabber is not root) is a holder too.
pub(crate) fn check_free(
    port: u16,
    layout: &HostLayout,
    own: impl Fn(u32) -> bool,
) -> Result<(), String> {
    let holders = procfs::port_holders(port);
    if !holders.listening {
        return Ok(());
    }
    let others: Vec<u32> = holders.pids.iter().copied().filter(|p| !own(*p)).collect();
    if holders.pids.is_empty() {
        return Err(format!(
            "port {port} is already in use by a process this grabber cannot see (another user's)"
        ));
    }
    match others.first() {
        None => Ok(()),
        Some(pid) => Err(format!(
            "port {port} is already in use by {}",
            describe(*pid, layout)
        )),
    }
}

/// Whether what listens on `port` is the app whose process group is
/// `group`: every visible listener must be in it, and there must be one.
pub(crate) fn answered_by_group(port: u16, group: u32, layout: &HostLayout) -> Result<(), String> {
    let holders = procfs::port_holders(port);
    let in_group = |pid: u32| procfs::stat(pid).is_some_and(|s| s.pgrp == group);
    match holders.pids.iter().find(|p| !in_group(**p)) {
        Some(stranger) => Err(format!(
            "port {port} answered, but it is held by {}, not by the app",
            describe(*stranger, layout)
        )),
        None if holders.pids.is_empty() => Err(format!(
            "port {port} answered, but no process of the app listens on it"
        )),
        None => Ok(()),
    }
}

/// Whether `pid` runs from `app_dir` (one of the app's releases).
pub(crate) fn runs_from(pid: u32, app_dir: &Path) -> bool {
    let dir = canonical(app_dir);
    procfs::cwd(pid).is_some_and(|cwd| cwd.starts_with(&dir))
}

/// "app `web` (pid 123)" when the process runs from an app's directory of
/// this host, else "pid 123 (`nginx`)".
fn describe(pid: u32, layout: &HostLayout) -> String {
    let apps = canonical(&layout.apps_dir());
    let app = procfs::cwd(pid).and_then(|cwd| {
        cwd.strip_prefix(&apps)
            .ok()
            .and_then(|rest| rest.components().next())
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
    });
    match (app, procfs::comm(pid)) {
        (Some(app), _) => format!("app `{app}` (pid {pid})"),
        (None, Some(comm)) => format!("pid {pid} (`{comm}`)"),
        (None, None) => format!("pid {pid}"),
    }
}

fn canonical(dir: &Path) -> PathBuf {
    dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stranger_on_the_port_is_named_and_refused() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let port = listener.local_addr().expect("its address").port();
        let dir = tempfile::tempdir().expect("a temp dir");
        let layout = HostLayout::new(dir.path());
        let err = check_free(port, &layout, |_| false).expect_err("the port is held");
        assert!(
            err.contains(&format!(
                "port {port} is already in use by pid {}",
                std::process::id()
            )),
            "{err}"
        );
        // This process is the app's own: free for it.
        assert_eq!(
            check_free(port, &layout, |p| p == std::process::id()),
            Ok(())
        );
        // Answered by this process, which is not in group 1.
        let err = answered_by_group(port, 1, &layout).expect_err("not the app's group");
        assert!(err.contains("not by the app"), "{err}");
        let own_group = procfs::stat(std::process::id()).expect("own stat").pgrp;
        assert_eq!(answered_by_group(port, own_group, &layout), Ok(()));
        drop(listener);
        assert_eq!(check_free(port, &layout, |_| false), Ok(()));
        assert!(answered_by_group(port, own_group, &layout).is_err());
    }
}
