//! Who an app runs as: the release's `[run] user`, else the grabber's
//! `--app-user`, else the grabber's own user. Resolved in the host's user
//! database; the shim switches to it (setgid, setgroups, setuid) just
//! before it starts the app, so the app cannot read the grabber's token or
//! its `/proc` entries, nor write its own release.
//!
//! What the app may write, and what it may not: `apps/<app>/shared/` is
//! given to the app's user; releases, `current`, `state.json`, the logs,
//! the digests and the cache stay the grabber's, writable by it alone.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use deploy::{RunUser, RunUserKind};
use nix::unistd::{Uid, User, getegid, geteuid};

/// A user resolved on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppUser {
    pub uid: u32,
    pub gid: u32,
    /// Its name in the user database, when it has an entry (`USER`,
    /// `LOGNAME`).
    pub name: Option<String>,
    /// Its home directory in the user database (`HOME`).
    pub home: Option<PathBuf>,
}

impl AppUser {
    /// Looks `spec` up in the host's user database. A bare uid must have an
    /// entry (for its group); `uid:gid` need not.
    pub fn resolve(spec: &RunUser) -> Result<AppUser, String> {
        let lookup_err = |e: nix::Error| format!("cannot look up user {spec} on this host: {e}");
        match spec.kind() {
            RunUserKind::Name(name) => match User::from_name(name).map_err(lookup_err)? {
                Some(u) => Ok(Self::from_entry(u)),
                None => Err(format!(
                    "there is no user {name} on this host (create it, e.g. `useradd --system \
                     --no-create-home {name}`, or name another)"
                )),
            },
            RunUserKind::Id { uid, gid } => {
                let entry = User::from_uid(Uid::from_raw(uid)).map_err(lookup_err)?;
                match (entry, gid) {
                    (Some(u), gid) => Ok(AppUser {
                        gid: gid.unwrap_or(u.gid.as_raw()),
                        ..Self::from_entry(u)
                    }),
                    (None, Some(gid)) => Ok(AppUser {
                        uid,
                        gid,
                        name: None,
                        home: None,
                    }),
                    (None, None) => Err(format!(
                        "uid {uid} has no entry in this host's user database, so its group is \
                         unknown: write it as {uid}:GID"
                    )),
                }
            }
        }
    }

    fn from_entry(u: User) -> AppUser {
        AppUser {
            uid: u.uid.as_raw(),
            gid: u.gid.as_raw(),
            name: Some(u.name),
            home: Some(u.dir),
        }
    }

    /// This process's own (effective) user.
    pub fn current() -> AppUser {
        let uid = geteuid();
        let entry = User::from_uid(uid).ok().flatten();
        AppUser {
            uid: uid.as_raw(),
            gid: getegid().as_raw(),
            name: entry.as_ref().map(|u| u.name.clone()),
            home: entry.map(|u| u.dir),
        }
    }

    /// `nobody (uid 65534, gid 65534)`.
    pub fn describe(&self) -> String {
        match &self.name {
            Some(n) => format!("{n} (uid {}, gid {})", self.uid, self.gid),
            None => format!("uid {}, gid {}", self.uid, self.gid),
        }
    }
}

/// Whether a process running as `euid`/`egid` can start one as `user`:
/// root can become anyone; anyone else only themselves. `Ok(false)`: it is
/// that user already, nothing to switch.
pub(crate) fn must_switch(euid: u32, egid: u32, user: &AppUser) -> Result<bool, String> {
    if user.uid == euid && user.gid == egid {
        return Ok(false);
    }
    if euid == 0 {
        return Ok(true);
    }
    Err(format!(
        "this grabber runs as uid {euid} and cannot start apps as {}: only root can switch \
         users (run the grabber as root, or leave out --app-user and `[run] user`)",
        user.describe()
    ))
}

/// [`must_switch`] for this process.
pub(crate) fn must_switch_from_here(user: &AppUser) -> Result<bool, String> {
    must_switch(geteuid().as_raw(), getegid().as_raw(), user)
}

/// Makes `dir` (the app's `shared/`) its user's, mode 0700. When root
/// owned it (the app ran as root before), what is inside is handed over
/// too, as systemd does for a `StateDirectory`: links are not followed, and
/// a file with more than one hard link is left alone (it may be a link to a
/// file outside, made while the app ran as root). Only from root: a tree an
/// unprivileged user owns could be changed under the walk (a directory
/// swapped for a link) by that user's other processes; its contents keep
/// their owner, and a warning says so.
pub(crate) fn give_to(dir: &Path, user: &AppUser) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let meta = std::fs::symlink_metadata(dir)?;
    if meta.file_type().is_symlink() {
        return Err(std::io::Error::other(format!(
            "{} is a symlink; refusing to hand it to the app",
            dir.display()
        )));
    }
    if meta.uid() != user.uid || meta.gid() != user.gid {
        if meta.uid() == 0 {
            hand_over_tree(dir, user)?;
        } else if std::fs::read_dir(dir)?.next().is_some() {
            tracing::warn!(
                dir = %dir.display(),
                "handing shared/ from uid {} to {}: what is inside keeps its owner (chown it if the app needs it)",
                meta.uid(),
                user.describe()
            );
        }
        std::os::unix::fs::lchown(dir, Some(user.uid), Some(user.gid))?;
    }
    if meta.permissions().mode() & 0o7777 != 0o700 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Gives everything below `dir` (owned by root, so nobody else can change
/// it meanwhile) to `user`, links not followed, hard-linked files skipped.
fn hand_over_tree(dir: &Path, user: &AppUser) -> std::io::Result<()> {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)? {
            let e = e?;
            let m = e.metadata()?;
            if m.is_dir() {
                stack.push(e.path());
            } else if !m.file_type().is_symlink() && m.nlink() > 1 {
                tracing::warn!(path = %e.path().display(), "not handing a hard-linked file to the app");
                continue;
            }
            std::os::unix::fs::lchown(e.path(), Some(user.uid), Some(user.gid))?;
        }
    }
    Ok(())
}

/// Sets `dir`'s mode (the grabber's own directories: 0755 where the app
/// must pass through, 0700 where it has nothing to do).
pub(crate) fn set_mode(dir: &Path, mode: u32) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(dir)?;
    if meta.permissions().mode() & 0o7777 != mode {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

/// The first directory on the way to `root` that other users cannot pass
/// through (no `x` for others), which would keep an app user from
/// reaching its release.
pub(crate) fn unreachable_ancestor(root: &Path) -> Option<PathBuf> {
    let root = root.canonicalize().ok()?;
    root.ancestors()
        .filter(|a| {
            std::fs::metadata(a).is_ok_and(|m| m.is_dir() && m.permissions().mode() & 0o001 == 0)
        })
        .last()
        .map(Path::to_path_buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(uid: u32, gid: u32) -> AppUser {
        AppUser {
            uid,
            gid,
            name: None,
            home: None,
        }
    }

    #[test]
    fn root_switches_to_anyone_and_others_only_stay_themselves() {
        assert_eq!(must_switch(0, 0, &user(65534, 65534)), Ok(true));
        assert_eq!(must_switch(0, 0, &user(0, 0)), Ok(false));
        assert_eq!(must_switch(1000, 1000, &user(1000, 1000)), Ok(false));
        let e = must_switch(1000, 1000, &user(65534, 65534)).unwrap_err();
        assert!(
            e.contains("runs as uid 1000") && e.contains("uid 65534") && e.contains("root"),
            "{e}"
        );
        // Another group is a switch too.
        assert!(must_switch(1000, 1000, &user(1000, 0)).is_err());
    }

    #[test]
    fn names_and_ids_resolve_in_the_user_database() {
        let root = AppUser::resolve(&RunUser::parse("root").unwrap()).unwrap();
        assert_eq!((root.uid, root.gid), (0, 0));
        assert_eq!(root.name.as_deref(), Some("root"));
        let by_id = AppUser::resolve(&RunUser::parse("0").unwrap()).unwrap();
        assert_eq!(by_id, root);
        let with_group = AppUser::resolve(&RunUser::parse("0:5").unwrap()).unwrap();
        assert_eq!((with_group.uid, with_group.gid), (0, 5));
        // A uid without an entry needs its group spelt out.
        let e = AppUser::resolve(&RunUser::parse("4000000000").unwrap()).unwrap_err();
        assert!(e.contains("write it as 4000000000:GID"), "{e}");
        let u = AppUser::resolve(&RunUser::parse("4000000000:4000000000").unwrap()).unwrap();
        assert_eq!((u.uid, u.name), (4_000_000_000, None));
        let e = AppUser::resolve(&RunUser::parse("no-such-user-x").unwrap()).unwrap_err();
        assert!(
            e.contains("there is no user no-such-user-x on this host"),
            "{e}"
        );
    }

    #[test]
    fn shared_data_of_an_app_that_ran_as_root_is_handed_over_but_not_hard_links() {
        if !geteuid().is_root() {
            eprintln!("\n!!! SKIPPING: handing files to another user needs root\n");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let shared = dir.path().join("shared");
        std::fs::create_dir_all(shared.join("sub")).unwrap();
        std::fs::write(shared.join("sub/data"), b"x").unwrap();
        let outside = dir.path().join("outside");
        std::fs::write(&outside, b"secret").unwrap();
        std::fs::hard_link(&outside, shared.join("linked")).unwrap();
        std::os::unix::fs::symlink(&outside, shared.join("sym")).unwrap();
        let app = user(65534, 65534);
        give_to(&shared, &app).unwrap();
        let owner = |p: &Path| {
            let m = std::fs::symlink_metadata(p).unwrap();
            (m.uid(), m.gid())
        };
        assert_eq!(owner(&shared), (65534, 65534));
        assert_eq!(owner(&shared.join("sub/data")), (65534, 65534));
        assert_eq!(
            owner(&shared.join("sym")),
            (65534, 65534),
            "the link itself"
        );
        assert_eq!(
            owner(&outside),
            (0, 0),
            "neither through the hard link nor the symlink"
        );
        let mode = std::fs::metadata(&shared).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o700);

        // From another unprivileged user, only the directory changes hands.
        let next = user(65533, 65533);
        give_to(&shared, &next).unwrap();
        assert_eq!(owner(&shared), (65533, 65533));
        assert_eq!(owner(&shared.join("sub/data")), (65534, 65534));
    }

    #[test]
    fn a_closed_directory_on_the_way_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("a/b/c");
        std::fs::create_dir_all(&deep).unwrap();
        for d in [
            dir.path(),
            &dir.path().join("a"),
            &dir.path().join("a/b"),
            &deep,
        ] {
            set_mode(d, 0o755).unwrap();
        }
        assert_eq!(unreachable_ancestor(&deep), None);
        set_mode(&dir.path().join("a"), 0o700).unwrap();
        assert_eq!(
            unreachable_ancestor(&deep),
            Some(dir.path().join("a").canonicalize().unwrap())
        );
    }
}
