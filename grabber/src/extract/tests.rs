//! Tests of the archive checks: hostile tarballs, limits, and the tree digest.

use super::*;
use deploy::{AppName, BuildType, HealthSpec, RunSpec, Timestamp, Version};
use flate2::Compression;
use flate2::write::GzEncoder;

pub(crate) fn manifest(content_bytes: u64) -> Manifest {
    Manifest {
        app: AppName::parse("hello").unwrap(),
        version: Version::parse("1-abcdef0").unwrap(),
        commit: "abcdef0".repeat(5),
        build_type: BuildType::Generic,
        built_at: Timestamp(0),
        run: RunSpec {
            command: "sleep 1000".into(),
            port: None,
            env: Default::default(),
            stop_timeout_ms: 1000,
            paths: Default::default(),
            shared: Vec::new(),
            user: None,
        },
        health: HealthSpec::default(),
        processes: Default::default(),
        runtime: None,
        files: 1,
        content_bytes,
        release: None,
        hooks: Default::default(),
    }
}

/// Raw entries for building malicious archives the tar builder's own
/// checks would refuse.
pub(crate) enum E<'a> {
    File(&'a str, &'a [u8]),
    Dir(&'a str),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
    Special(&'a str, EntryType),
}

fn header(path: &str, kind: EntryType, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(if kind == EntryType::Directory {
        0o755
    } else {
        0o644
    });
    h.set_mtime(0);
    // Write the name bytes directly: `set_path` refuses `..` and `/`.
    let name = &mut h.as_old_mut().name;
    name.fill(0);
    name[..path.len()].copy_from_slice(path.as_bytes());
    h.set_cksum();
    h
}

/// Builds a gzip'd tar holding the manifest (unless `with_manifest` is
/// false) followed by `entries`.
pub(crate) fn build(m: Option<&Manifest>, entries: &[E<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
    if let Some(m) = m {
        let json = serde_json::to_vec(m).unwrap();
        b.append(&header(".slipway/", EntryType::Directory, 0), io::empty())
            .unwrap();
        b.append(
            &header(MANIFEST_PATH, EntryType::Regular, json.len() as u64),
            &json[..],
        )
        .unwrap();
    }
    for e in entries {
        match e {
            E::File(p, data) => {
                let mut h = header(p, EntryType::Regular, data.len() as u64);
                h.set_mode(0o755);
                h.set_cksum();
                b.append(&h, *data).unwrap();
            }
            E::Dir(p) => b
                .append(&header(p, EntryType::Directory, 0), io::empty())
                .unwrap(),
            E::Symlink(p, t) | E::Hardlink(p, t) => {
                let kind = if matches!(e, E::Symlink(..)) {
                    EntryType::Symlink
                } else {
                    EntryType::Link
                };
                let mut h = header(p, kind, 0);
                let ln = &mut h.as_old_mut().linkname;
                ln.fill(0);
                ln[..t.len()].copy_from_slice(t.as_bytes());
                h.set_cksum();
                b.append(&h, io::empty()).unwrap();
            }
            E::Special(p, kind) => b.append(&header(p, *kind, 0), io::empty()).unwrap(),
        }
    }
    b.into_inner().unwrap().finish().unwrap()
}

fn try_unpack(bytes: &[u8], max: u64) -> (tempfile::TempDir, Result<Manifest, ExtractError>) {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("a.tar.gz");
    std::fs::write(&archive, bytes).unwrap();
    let dest = dir.path().join("out");
    std::fs::create_dir(&dest).unwrap();
    let r = unpack_checked(&archive, &dest, max).map(|u| u.manifest);
    (dir, r)
}

fn refused(entries: &[E<'_>], want: &str) {
    let bytes = build(Some(&manifest(1000)), entries);
    let (dir, r) = try_unpack(&bytes, 1 << 20);
    let err = r.expect_err("archive should be refused").to_string();
    assert!(err.contains(want), "error {err:?} should contain {want:?}");
    // Nothing was written outside the scratch directory.
    assert!(!dir.path().join("x").exists());
    assert!(!dir.path().join("evil").exists());
}

#[test]
fn accepts_a_good_release() {
    let bytes = build(
        Some(&manifest(11)),
        &[
            E::Dir("./bin/"),
            E::File("./bin/run.sh", b"echo hello"),
            E::File("README", b"x"),
            E::Symlink("bin/link", "../README"),
            E::Hardlink("bin/hard", "README"),
        ],
    );
    let (dir, r) = try_unpack(&bytes, 1 << 20);
    let m = r.unwrap();
    assert_eq!(m.content_bytes, 11);
    let out = dir.path().join("out");
    assert_eq!(
        std::fs::read(out.join("bin/run.sh")).unwrap(),
        b"echo hello"
    );
    assert_eq!(std::fs::read(out.join("bin/link")).unwrap(), b"x");
    assert_eq!(std::fs::read(out.join("bin/hard")).unwrap(), b"x");
    assert!(out.join(MANIFEST_PATH).exists());
}

#[test]
fn refuses_parent_dir_entries() {
    refused(
        &[E::File("../evil", b"x")],
        "archive entry `../evil` escapes the release directory",
    );
    refused(
        &[E::File("a/../../evil", b"x")],
        "escapes the release directory",
    );
}

#[test]
fn refuses_absolute_paths() {
    refused(
        &[E::File("/tmp/evil", b"x")],
        "`/tmp/evil` has an absolute path",
    );
}

#[test]
fn refuses_escaping_symlinks() {
    refused(
        &[E::Symlink("x", "../../etc")],
        "`x` is a symbolic link to `../../etc`",
    );
    refused(&[E::Dir("a/"), E::Symlink("a/x", "../..")], "escapes");
    refused(&[E::Symlink("x", "/etc")], "escapes");
}

#[test]
fn refuses_writing_through_a_symlink() {
    refused(
        &[E::Symlink("d", "."), E::File("d/evil", b"x")],
        "lies under the symlink `d`",
    );
    // `a/b -> .` stays inside lexically, but `a/b/c -> ../..` really
    // resolves to the parent of the release.
    refused(
        &[
            E::Dir("a/"),
            E::Symlink("a/b", "."),
            E::Symlink("a/b/c", "../.."),
        ],
        "under the symlink",
    );
}

#[test]
fn never_writes_the_manifest_through_a_symlink() {
    // `a/up -> ..` is the release root; the manifest's path is first a
    // symlink that stays inside lexically but really resolves to the
    // directory holding the release. It is refused before the manifest
    // comes, and nothing is written through it.
    let json = serde_json::to_vec(&manifest(0)).unwrap();
    let json = std::str::from_utf8(&json).unwrap();
    let bytes = build(
        None,
        &[
            E::Dir(".slipway/"),
            E::Dir("a/"),
            E::Symlink("a/up", ".."),
            E::Symlink(MANIFEST_PATH, "../a/up/a/up/../evil"),
            E::File(MANIFEST_PATH, json.as_bytes()),
        ],
    );
    let (dir, r) = try_unpack(&bytes, 1 << 20);
    assert!(
        !dir.path().join("evil").exists(),
        "the manifest was written outside the release"
    );
    let err = r.unwrap_err().to_string();
    assert!(
        err.contains("`.slipway/manifest.json` is a symbolic link, not a file"),
        "{err}"
    );
}

/// Found by fuzzing (`fuzz/corpus/extract/regression-manifest-link`): a
/// link put over the manifest *after* it was kept the release, whose
/// manifest on disk then was whatever the link reached; a grabber reading
/// the release again (recovery, `verify`) would have read that instead.
#[test]
fn refuses_a_link_over_the_manifest() {
    let json = serde_json::to_vec(&manifest(5)).unwrap();
    let json = std::str::from_utf8(&json).unwrap();
    for (last, says) in [
        (
            E::Symlink(MANIFEST_PATH, "../other"),
            "is a symbolic link, not a file",
        ),
        (
            E::Hardlink(MANIFEST_PATH, "other"),
            "is a hard link, not a file",
        ),
        (
            E::Dir(".slipway/manifest.json/"),
            "is a directory, not a file",
        ),
        (
            E::File(".slipway/manifest.json/x", b""),
            "lies under the manifest",
        ),
        (
            E::File(MANIFEST_PATH, json.as_bytes()),
            "is a second manifest",
        ),
    ] {
        let bytes = build(
            None,
            &[
                E::Dir(".slipway/"),
                E::File(MANIFEST_PATH, json.as_bytes()),
                E::File("other", b"{...}"),
                last,
            ],
        );
        let (_d, r) = try_unpack(&bytes, 1 << 20);
        let err = r.unwrap_err().to_string();
        assert!(err.contains(says), "{says}: {err}");
        assert!(
            err.contains("manifest .slipway/manifest.json is invalid"),
            "{err}"
        );
    }
}

#[test]
fn refuses_escaping_hardlinks() {
    refused(
        &[E::Hardlink("x", "../../etc/passwd")],
        "`x` is a hard link to `../../etc/passwd`",
    );
    refused(&[E::Hardlink("x", "/etc/passwd")], "hard link");
    refused(
        &[E::Symlink("l", "."), E::Hardlink("x", "l/README")],
        "hard link",
    );
}

#[test]
fn refuses_devices_and_fifos() {
    refused(&[E::Special("x", EntryType::Fifo)], "`x` is a fifo");
    refused(
        &[E::Special("x", EntryType::Char)],
        "`x` is a character device",
    );
    refused(
        &[E::Special("x", EntryType::Block)],
        "`x` is a block device",
    );
}

#[test]
fn refuses_more_bytes_than_the_manifest_or_the_limit() {
    let bytes = build(Some(&manifest(3)), &[E::File("big", b"0123456789")]);
    let (_d, r) = try_unpack(&bytes, 1 << 20);
    let err = r.unwrap_err().to_string();
    assert!(
        err.contains("holds 10 bytes of files but its manifest says 3"),
        "{err}"
    );

    let bytes = build(Some(&manifest(1000)), &[E::File("big", &[0u8; 600])]);
    let (_d, r) = try_unpack(&bytes, 500);
    let err = r.unwrap_err().to_string();
    assert!(
        err.contains("more than 500 bytes (at entry `big`)"),
        "{err}"
    );
}

#[test]
fn stops_at_the_first_entry_over_the_manifest_before_writing_it() {
    let bytes = build(
        Some(&manifest(3)),
        &[E::File("small", b"ab"), E::File("big", b"0123456789")],
    );
    let (dir, r) = try_unpack(&bytes, 1 << 20);
    let err = r.unwrap_err().to_string();
    assert!(
        err.contains("holds 12 bytes of files but its manifest says 3"),
        "{err}"
    );
    let out = dir.path().join("out");
    assert!(out.join("small").exists(), "entries before it were written");
    assert!(
        !out.join("big").exists(),
        "the entry over the manifest was not"
    );
}

#[test]
fn refuses_missing_or_bad_manifest() {
    let bytes = build(None, &[E::File("a", b"x")]);
    let (_d, r) = try_unpack(&bytes, 1 << 20);
    assert!(matches!(r, Err(ExtractError::NoManifest)), "{r:?}");

    let bytes = build(None, &[E::File(MANIFEST_PATH, b"{}")]);
    let (_d, r) = try_unpack(&bytes, 1 << 20);
    assert!(matches!(r, Err(ExtractError::BadManifest { .. })), "{r:?}");
}

/// Extracts `bytes` into a fresh directory; returns it (kept alive by
/// the `TempDir`) and the inventory the extraction made.
fn unpacked(bytes: &[u8]) -> (tempfile::TempDir, PathBuf, deploy::tree::Inventory) {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("a.tar.gz");
    std::fs::write(&archive, bytes).unwrap();
    let dest = dir.path().join("out");
    std::fs::create_dir(&dest).unwrap();
    std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o700)).unwrap();
    let u = unpack_checked(&archive, &dest, 1 << 20).unwrap();
    (dir, dest, u.inventory)
}

fn tricky() -> Vec<u8> {
    build(
        Some(&manifest(14)),
        &[
            E::Dir("bin/"),
            E::File("bin/run.sh", b"echo hello"),
            E::Hardlink("bin/hard", "bin/run.sh"),
            // Written over after a hard link to it was made: the link
            // keeps the old content.
            E::File("bin/run.sh", b"echo"),
            E::Symlink("bin/link", "run.sh"),
            E::File("README", b""),
        ],
    )
}

#[test]
fn the_digest_made_while_extracting_is_the_one_read_back_later() {
    let (_d1, dest, inventory) = unpacked(&tricky());
    assert_eq!(deploy::tree::inventory(&dest).unwrap(), inventory);
    assert_eq!(inventory.check(&dest).unwrap(), None);
    let digest = inventory.digest();
    assert_eq!(tree_digest(&dest).unwrap(), digest);
    assert_eq!(std::fs::read(dest.join("bin/hard")).unwrap(), b"echo hello");
    // The same archive elsewhere gives the same digest.
    let (_d2, _, again) = unpacked(&tricky());
    assert_eq!(again.digest(), digest);
    // Another archive does not.
    let (_d3, _, other) = unpacked(&build(Some(&manifest(5)), &[E::File("README", b"hello")]));
    assert_ne!(other.digest(), digest);
}

/// The digest (what an older grabber recorded) sees any change; the
/// inventory every change to what was installed, and no file added.
#[test]
fn any_change_to_the_tree_changes_the_digest() {
    type Change = (&'static str, fn(&Path));
    let changes: &[Change] = &[
        ("content", |d| {
            std::fs::write(d.join("bin/run.sh"), b"echO").unwrap()
        }),
        ("hard-linked content", |d| {
            std::fs::write(d.join("bin/hard"), b"echo hellO").unwrap()
        }),
        ("mode", |d| {
            std::fs::set_permissions(d.join("bin/run.sh"), std::fs::Permissions::from_mode(0o777))
                .unwrap()
        }),
        ("owner", |d| {
            std::os::unix::fs::lchown(d.join("README"), Some(65534), None).unwrap()
        }),
        ("a new file", |d| {
            std::fs::write(d.join("bin/new"), b"").unwrap()
        }),
        ("a removed file", |d| {
            std::fs::remove_file(d.join("README")).unwrap()
        }),
        ("a link target", |d| {
            std::fs::remove_file(d.join("bin/link")).unwrap();
            std::os::unix::fs::symlink("hard", d.join("bin/link")).unwrap();
        }),
        ("a file made a link", |d| {
            std::fs::remove_file(d.join("README")).unwrap();
            std::os::unix::fs::symlink("bin/run.sh", d.join("README")).unwrap();
        }),
    ];
    for (what, change) in changes {
        let (_d, dest, inventory) = unpacked(&tricky());
        change(&dest);
        assert_ne!(tree_digest(&dest).unwrap(), inventory.digest(), "{what}");
        let found = inventory.check(&dest).unwrap();
        if *what == "a new file" {
            assert_eq!(
                found, None,
                "a file added is not a change to the installed ones"
            );
        } else {
            assert!(found.is_some(), "{what}");
        }
    }
}

#[test]
fn nothing_in_a_release_is_writable_by_group_or_others() {
    let mut h = header("open", EntryType::Regular, 1);
    h.set_mode(0o777);
    h.set_cksum();
    let mut b = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
    let json = serde_json::to_vec(&manifest(1)).unwrap();
    b.append(
        &header(MANIFEST_PATH, EntryType::Regular, json.len() as u64),
        &json[..],
    )
    .unwrap();
    b.append(&h, &b"x"[..]).unwrap();
    let mut d = header("shared/", EntryType::Directory, 0);
    d.set_mode(0o777);
    d.set_cksum();
    b.append(&d, io::empty()).unwrap();
    let bytes = b.into_inner().unwrap().finish().unwrap();
    let (_d, dest, _) = unpacked(&bytes);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(
        mode(&dest),
        0o755,
        "the release root, made private as scratch"
    );
    assert_eq!(mode(&dest.join("open")), 0o755);
    assert_eq!(mode(&dest.join("shared")), 0o755);
    assert_eq!(mode(&dest.join(MANIFEST_PATH)) & 0o022, 0);
}

#[test]
fn refuses_garbage() {
    let (_d, r) = try_unpack(b"this is not gzip", 1 << 20);
    assert!(matches!(r, Err(ExtractError::Read { .. })), "{r:?}");
}
