//! Tests of the build sandbox's setup.

use super::*;

#[test]
fn sandbox_users_parse() {
    assert_eq!(SandboxUser::parse("65534").unwrap().gid, 65534);
    let u = SandboxUser::parse("1001:1002").unwrap();
    assert_eq!((u.uid, u.gid), (1001, 1002));
    assert_eq!(SandboxUser::parse("nobody").unwrap().uid, 65534);
    assert!(SandboxUser::parse("0").unwrap_err().contains("root"));
    assert!(SandboxUser::parse("root").unwrap_err().contains("root"));
    assert!(
        SandboxUser::parse("no-such-user-xyz")
            .unwrap_err()
            .contains("does not exist")
    );
    assert!(SandboxUser::parse("1:x").is_err());
}

#[test]
fn paths_map_into_the_sandbox() {
    let jail = Jail::new(
        &SandboxConfig::default(),
        Path::new("/w/release"),
        Path::new("/w/tmp"),
        &[(PathBuf::from("/c/pip/app"), "/cache/pip")],
    );
    assert_eq!(jail.inside(Path::new("/w/release")), Path::new("/build"));
    assert_eq!(
        jail.inside(Path::new("/w/release/.slipway/python")),
        Path::new("/build/.slipway/python")
    );
    assert_eq!(
        jail.inside(Path::new("/w/tmp/req.txt")),
        Path::new("/tmp/req.txt")
    );
    assert_eq!(
        jail.inside(Path::new("/c/pip/app")),
        Path::new("/cache/pip")
    );
    let none = Jail::new(
        &SandboxConfig {
            kind: SandboxKind::None,
            ..SandboxConfig::default()
        },
        Path::new("/w/release"),
        Path::new("/w/tmp"),
        &[],
    );
    assert_eq!(
        none.inside(Path::new("/w/release")),
        Path::new("/w/release")
    );
}
