//! The artifact's bytes and the index made beside them.

use std::io::Read;
use std::os::unix::fs::symlink;

use deploy::{AppName, BuildType, HealthSpec, RunSpec, Timestamp, Version};

use super::*;

fn manifest() -> Manifest {
    Manifest {
        app: AppName::parse("hello").unwrap(),
        version: Version::parse("1-abcdef0").unwrap(),
        commit: "a".repeat(40),
        build_type: BuildType::Python,
        built_at: Timestamp(1_700_000_000_000),
        run: RunSpec {
            command: "python3 app.py".into(),
            port: Some(8000),
            env: Default::default(),
            stop_timeout_ms: 10_000,
            paths: Default::default(),
            shared: Vec::new(),
            user: None,
        },
        health: HealthSpec::default(),
        processes: Default::default(),
        runtime: None,
        files: 999,
        content_bytes: 999,
        release: None,
        hooks: Default::default(),
    }
}

fn tree() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    std::fs::write(p.join("app.py"), "print('hi')\n").unwrap();
    std::fs::create_dir_all(p.join("bin")).unwrap();
    std::fs::write(p.join("bin/run"), "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(p.join("bin/run"), std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::set_permissions(p.join("app.py"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::create_dir_all(p.join("empty")).unwrap();
    std::fs::create_dir_all(p.join(".git")).unwrap();
    std::fs::write(p.join(".git/HEAD"), "x").unwrap();
    symlink("bin/run", p.join("start")).unwrap();
    dir
}

/// (path, type, mode, uid, gid, mtime, size, link target, content)
type Row = (
    String,
    tar::EntryType,
    u32,
    u64,
    u64,
    u64,
    u64,
    Option<String>,
    Vec<u8>,
);

fn read(path: &Path) -> Vec<Row> {
    let f = File::open(path).unwrap();
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(f));
    let mut rows = Vec::new();
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let h = e.header().clone();
        assert_eq!(h.username().unwrap(), Some(""));
        assert_eq!(h.groupname().unwrap(), Some(""));
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        rows.push((
            e.path().unwrap().display().to_string(),
            h.entry_type(),
            h.mode().unwrap(),
            h.uid().unwrap(),
            h.gid().unwrap(),
            h.mtime().unwrap(),
            h.size().unwrap(),
            e.link_name().unwrap().map(|l| l.display().to_string()),
            data,
        ));
    }
    rows
}

#[test]
fn packs_sorted_normalised_entries_and_manifest() {
    let src = tree();
    let out = tempfile::tempdir().unwrap();
    let path = out.path().join("a.tar.gz");
    let packed = pack(src.path(), &manifest(), &path).unwrap();

    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(packed.size, bytes.len() as u64);
    assert_eq!(
        packed.sha256.as_str(),
        hex::encode(sha2::Sha256::digest(&bytes))
    );

    let rows = read(&path);
    let names: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(
        names,
        [
            ".slipway",
            ".slipway/manifest.json",
            "app.py",
            "bin",
            "bin/run",
            "empty",
            "start"
        ]
    );
    for r in &rows {
        assert_eq!((r.3, r.4, r.5), (0, 0, 1_700_000_000), "{}", r.0);
    }
    let by = |n: &str| rows.iter().find(|r| r.0 == n).unwrap();
    assert_eq!(by("app.py").2, 0o644);
    assert_eq!(by("app.py").8, b"print('hi')\n");
    assert_eq!(by("bin/run").2, 0o755);
    assert_eq!(by("bin").2, 0o755);
    assert_eq!(by("bin").1, tar::EntryType::Directory);
    assert_eq!(by("start").1, tar::EntryType::Symlink);
    assert_eq!(by("start").7.as_deref(), Some("bin/run"));

    let m: Manifest = serde_json::from_slice(&by(".slipway/manifest.json").8).unwrap();
    assert_eq!(m.files, 2);
    assert_eq!(m.content_bytes, 12 + 10);
    assert_eq!(m, packed.manifest);
    assert_eq!(m.app.as_str(), "hello");
}

#[test]
fn same_input_same_bytes() {
    let src = tree();
    let out = tempfile::tempdir().unwrap();
    let (a, na) = pack_dir(src.path(), &manifest(), &out.path().join("a.tar.gz")).unwrap();
    // Touch a file's mtime and perms (but not its exec bit): no change.
    std::fs::set_permissions(
        src.path().join("app.py"),
        std::fs::Permissions::from_mode(0o664),
    )
    .unwrap();
    let (b, nb) = pack_dir(src.path(), &manifest(), &out.path().join("b.tar.gz")).unwrap();
    assert_eq!((a.clone(), na), (b, nb));
    std::fs::write(src.path().join("app.py"), "print('ho')\n").unwrap();
    let (c, _) = pack_dir(src.path(), &manifest(), &out.path().join("c.tar.gz")).unwrap();
    assert_ne!(a, c);
}

#[test]
fn symlinks_escaping_are_refused() {
    for target in ["/etc/passwd", "../outside", "bin/../../x"] {
        let src = tree();
        symlink(target, src.path().join("bad")).unwrap();
        let out = tempfile::tempdir().unwrap();
        let path = out.path().join("a.tar.gz");
        let e = pack_dir(src.path(), &manifest(), &path).unwrap_err();
        assert!(matches!(e, BuildError::SymlinkEscapes { .. }), "{e}");
        assert!(e.to_string().contains("`bad` points outside"), "{e}");
        assert!(!path.exists());
    }
    // Inside the tree, even via `..`, is fine.
    let src = tree();
    symlink("../app.py", src.path().join("bin/app")).unwrap();
    let out = tempfile::tempdir().unwrap();
    pack_dir(src.path(), &manifest(), &out.path().join("a.tar.gz")).unwrap();
}

#[test]
fn escape_rule() {
    assert!(escapes(Path::new("a"), Path::new("..")));
    assert!(!escapes(Path::new("a/b"), Path::new("..")));
    assert!(escapes(Path::new("a/b"), Path::new("../..")));
    assert!(!escapes(Path::new("a/b"), Path::new("./c/../../d")));
    assert!(escapes(Path::new("a"), Path::new("/a")));
}

#[test]
fn existing_manifest_is_refused() {
    let src = tree();
    std::fs::create_dir_all(src.path().join(".slipway")).unwrap();
    std::fs::write(src.path().join(".slipway/manifest.json"), "{}").unwrap();
    let out = tempfile::tempdir().unwrap();
    let e = pack_dir(src.path(), &manifest(), &out.path().join("a.tar.gz")).unwrap_err();
    assert!(e.to_string().contains(".slipway/manifest.json"), "{e}");
}

#[test]
fn the_index_is_what_the_tar_holds() {
    let src = tree();
    // `a/b` sorts before `a-b` in `Path` order (not in byte order).
    std::fs::create_dir_all(src.path().join("a")).unwrap();
    std::fs::write(src.path().join("a/b"), "inner").unwrap();
    std::fs::write(src.path().join("a-b"), "outer").unwrap();
    let out = tempfile::tempdir().unwrap();
    let path = out.path().join("a.tar.gz");
    let packed = pack(src.path(), &manifest(), &path).unwrap();
    let index = packed.index.unwrap();
    let rows = read(&path);
    assert_eq!(index.entries.len(), rows.len());
    for (entry, row) in index.entries.iter().zip(&rows) {
        assert_eq!(entry.path, row.0);
        match &entry.kind {
            EntryKind::Dir { mode } => {
                assert_eq!((row.1, *mode), (tar::EntryType::Directory, row.2));
            }
            EntryKind::File { mode, size, sha256 } => {
                assert_eq!(
                    (row.1, *mode, *size),
                    (tar::EntryType::Regular, row.2, row.6)
                );
                assert_eq!(sha256.as_str(), hex::encode(sha2::Sha256::digest(&row.8)));
            }
            EntryKind::Symlink { target } => {
                assert_eq!(row.1, tar::EntryType::Symlink);
                assert_eq!(Some(target), row.7.as_ref());
            }
        }
    }
    let names: Vec<&str> = index.entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        names,
        [
            ".slipway",
            ".slipway/manifest.json",
            "a",
            "a/b",
            "a-b",
            "app.py",
            "bin",
            "bin/run",
            "empty",
            "start"
        ]
    );
    let m = &packed.manifest;
    let parsed = ReleaseIndex::parse(&index.to_bytes(), &m.app, &m.version).unwrap();
    assert_eq!(parsed, index);
    assert_eq!(parsed.content_bytes(), m.content_bytes + rows[1].6);
}

#[test]
fn a_path_that_is_not_utf8_makes_no_index() {
    use std::os::unix::ffi::OsStrExt;
    let src = tree();
    let name = std::ffi::OsStr::from_bytes(b"caf\xe9.txt");
    std::fs::write(src.path().join(name), "x").unwrap();
    let out = tempfile::tempdir().unwrap();
    let path = out.path().join("a.tar.gz");
    let packed = pack(src.path(), &manifest(), &path).unwrap();
    let why = packed.index.unwrap_err();
    assert!(why.contains("is not UTF-8"), "{why}");
    // The artifact is still made.
    assert_eq!(read(&path).len(), 8);
}
