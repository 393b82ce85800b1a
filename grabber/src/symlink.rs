//! Atomic switching of `current`: a new symlink `current.tmp` is renamed
//! over `current`, so at every instant `current` names a complete release.

use std::io;

use deploy::layout::{HostLayout, sync_dir};
use deploy::{AppName, Version};

/// Points `current` at `releases/<version>` in one rename.
pub(crate) fn switch_current(
    layout: &HostLayout,
    app: &AppName,
    version: &Version,
) -> io::Result<()> {
    let app_dir = layout.app_dir(app);
    let tmp = app_dir.join("current.tmp");
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::os::unix::fs::symlink(HostLayout::current_target(version), &tmp)?;
    std::fs::rename(&tmp, layout.current_link(app))?;
    sync_dir(&app_dir).map_err(io::Error::other)
}

/// Removes `current`: the app has no release to run.
pub(crate) fn remove_current(layout: &HostLayout, app: &AppName) -> io::Result<()> {
    match std::fs::remove_file(layout.current_link(app)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switch_replaces_the_link_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let l = HostLayout::new(dir.path());
        let app = AppName::parse("hello").unwrap();
        let (a, b) = (
            Version::parse("1-aaaaaaa").unwrap(),
            Version::parse("2-bbbbbbb").unwrap(),
        );
        l.ensure_app_dirs(&app).unwrap();
        switch_current(&l, &app, &a).unwrap();
        assert_eq!(l.read_current(&app).unwrap(), Some(a));
        switch_current(&l, &app, &b).unwrap();
        assert_eq!(l.read_current(&app).unwrap(), Some(b));
        assert!(!l.app_dir(&app).join("current.tmp").exists());
        remove_current(&l, &app).unwrap();
        remove_current(&l, &app).unwrap();
        assert_eq!(l.read_current(&app).unwrap(), None);
    }
}
