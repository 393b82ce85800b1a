//! The inventory of a release: what counts as a change, and its file format.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;

use super::*;
use crate::tree::{inventory as inventory_of, tree_digest};

/// A small release: a file, a script, a package with a module, a symlink
/// and an empty directory.
fn release() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fs::write(root.join("app.py"), "import greeting\n").unwrap();
    fs::write(root.join("run.sh"), "#!/bin/sh\n").unwrap();
    fs::set_permissions(root.join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::create_dir(root.join("lib")).unwrap();
    fs::write(root.join("lib/greeting.py"), "WORD = 'hi'\n").unwrap();
    symlink("lib/greeting.py", root.join("greeting.py")).unwrap();
    fs::create_dir(root.join("empty")).unwrap();
    dir
}

fn change(root: &Path, inventory: &Inventory) -> Option<Change> {
    inventory.check(root).unwrap()
}

#[test]
fn an_untouched_release_has_no_change_and_its_digest_is_the_tree_digest() {
    let r = release();
    let inv = inventory_of(r.path()).unwrap();
    assert_eq!(inv.len(), 6);
    assert_eq!(change(r.path(), &inv), None);
    // The digest an older grabber recorded still compares equal.
    assert_eq!(inv.digest(), tree_digest(r.path()).unwrap());
}

#[test]
fn files_added_after_install_are_not_a_change() {
    let r = release();
    let root = r.path();
    let inv = inventory_of(root).unwrap();
    let before = tree_digest(root).unwrap();
    // What Python run as root, or an app logging into its cwd, leaves.
    fs::create_dir(root.join("__pycache__")).unwrap();
    fs::write(
        root.join("__pycache__/greeting.cpython-311.pyc"),
        b"\x00pyc",
    )
    .unwrap();
    fs::create_dir(root.join("lib/__pycache__")).unwrap();
    fs::write(
        root.join("lib/__pycache__/greeting.cpython-311.pyc"),
        b"pyc",
    )
    .unwrap();
    fs::write(root.join("app.log"), "started\n").unwrap();
    fs::write(root.join("empty/cache.db"), "x").unwrap();
    assert_ne!(
        tree_digest(root).unwrap(),
        before,
        "the whole tree did change"
    );
    assert_eq!(change(root, &inv), None, "but nothing installed did");
}

#[test]
fn an_installed_entry_modified_removed_chmoded_or_retyped_is_a_change() {
    type Edit = fn(&Path);
    let cases: [(&str, Edit, Change); 8] = [
        (
            "content edited",
            |root| fs::write(root.join("lib/greeting.py"), "WORD = 'bye'\n").unwrap(),
            Change::Content("lib/greeting.py".into()),
        ),
        (
            "same size, other bytes",
            |root| fs::write(root.join("run.sh"), "#!/bin/bash").unwrap(),
            Change::Content("run.sh".into()),
        ),
        (
            "file removed",
            |root| fs::remove_file(root.join("app.py")).unwrap(),
            Change::Removed("app.py".into()),
        ),
        (
            "directory removed",
            |root| fs::remove_dir_all(root.join("lib")).unwrap(),
            Change::Removed("lib".into()),
        ),
        (
            "chmod",
            |root| {
                fs::set_permissions(root.join("run.sh"), fs::Permissions::from_mode(0o777)).unwrap()
            },
            Change::Mode("run.sh".into()),
        ),
        (
            "symlink retargeted",
            |root| {
                fs::remove_file(root.join("greeting.py")).unwrap();
                symlink("app.py", root.join("greeting.py")).unwrap();
            },
            Change::Content("greeting.py".into()),
        ),
        (
            "symlink replaced by a file with the same content",
            |root| {
                fs::remove_file(root.join("greeting.py")).unwrap();
                fs::write(root.join("greeting.py"), "WORD = 'hi'\n").unwrap();
            },
            Change::Retyped("greeting.py".into()),
        ),
        (
            "directory replaced by a file",
            |root| {
                fs::remove_dir(root.join("empty")).unwrap();
                fs::write(root.join("empty"), "").unwrap();
            },
            Change::Retyped("empty".into()),
        ),
    ];
    for (what, edit, want) in cases {
        let r = release();
        let inv = inventory_of(r.path()).unwrap();
        edit(r.path());
        assert_eq!(change(r.path(), &inv), Some(want), "{what}");
    }
}

#[test]
fn a_file_given_to_another_owner_is_a_change() {
    let r = release();
    let inv = inventory_of(r.path()).unwrap();
    let file = r.path().join("app.py");
    let uid = fs::metadata(&file).unwrap().uid();
    // Only root can give a file away; elsewhere there is nothing to test.
    if std::os::unix::fs::chown(&file, Some(uid + 1), None).is_err() {
        return;
    }
    assert_eq!(change(r.path(), &inv), Some(Change::Owner("app.py".into())));
}

#[test]
fn the_first_change_is_named() {
    let r = release();
    let inv = inventory_of(r.path()).unwrap();
    fs::write(r.path().join("run.sh"), "edited").unwrap();
    fs::write(r.path().join("app.py"), "edited").unwrap();
    let c = change(r.path(), &inv).unwrap();
    assert_eq!(c.path(), Some(Path::new("app.py")));
    assert_eq!(c.to_string(), "`app.py` was modified");
}

#[test]
fn the_file_format_round_trips_any_path() {
    let r = release();
    let root = r.path();
    // Paths may hold newlines, spaces and bytes that are not UTF-8.
    fs::write(root.join("two\nlines and spaces"), "x").unwrap();
    fs::write(root.join(OsStr::from_bytes(b"latin-\xe9")), "y").unwrap();
    symlink(OsStr::from_bytes(b"to \xff\n"), root.join("odd-link")).unwrap();
    let inv = inventory_of(root).unwrap();
    let bytes = inv.encode();
    assert!(bytes.starts_with(b"slipway-inventory-v1\n"));
    let back = Inventory::decode(&bytes).unwrap();
    assert_eq!(back, inv);
    assert_eq!(back.digest(), tree_digest(root).unwrap());
    assert_eq!(change(root, &back), None);
}

#[test]
fn an_unknown_or_damaged_inventory_is_refused() {
    let r = release();
    let bytes = inventory_of(r.path()).unwrap().encode();
    let newer = [b"slipway-inventory-v2\n", &bytes[HEADER.len()..]].concat();
    let err = Inventory::decode(&newer).unwrap_err().to_string();
    assert!(err.contains("unknown format"), "{err}");
    let cut = &bytes[..bytes.len() - 5];
    let err = Inventory::decode(cut).unwrap_err().to_string();
    assert!(err.contains("cut short"), "{err}");
    let err = Inventory::decode(b"slipway-inventory-v1\nf\x00644\x000\x000\x00a\x00zz\x00\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("record 1: bad sha256"), "{err}");
    let mut garbled = bytes.clone();
    let i = HEADER.len();
    garbled[i] = b'x';
    let err = Inventory::decode(&garbled).unwrap_err().to_string();
    assert!(err.contains("unknown kind"), "{err}");
}
