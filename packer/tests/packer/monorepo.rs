//! Apps in a monorepo: a build from the app's root takes that
//! subdirectory as the project (its `slipway.toml`, its build command's
//! working directory) and ships only it; a root the commit lacks is an
//! error naming the root and the commit; `[build] watch` comes back with
//! the build.

use deploy::AppRoot;
use packer::BuildError;

use crate::helpers::{Build, TestRepo, by_path, manifest_of, unpack};

/// Two generic apps under `services/a` and `services/b`, a shared library
/// and a top-level file: each app's build writes which app it built.
fn monorepo() -> (TestRepo, String) {
    let mut repo = TestRepo::new();
    for app in ["a", "b"] {
        repo.write(
            &format!("services/{app}/slipway.toml"),
            &format!(
                "type = \"generic\"\n[build]\ncommand = \"echo built {app} > built.txt; ls > \
                 listing.txt\"\nwatch = [\"libs/shared\", \"proto/*.proto\"]\n\
                 [run]\ncommand = \"cat built.txt\"\n"
            ),
        )
        .write(&format!("services/{app}/src/{app}.txt"), app);
    }
    repo.write("libs/shared/util.txt", "shared\n")
        .write("README.md", "the monorepo\n")
        .write("slipway.toml", "this top-level file is not toml [[[\n");
    let sha = repo.commit("two apps");
    (repo, sha)
}

#[test]
fn an_app_builds_from_its_root_and_ships_only_that_subtree() {
    let (repo, sha) = monorepo();
    let mut b = Build::new(&sha);
    b.root = Some(AppRoot::parse("services/a").unwrap());
    let out = b.run(&repo.url(), &sha).unwrap();

    let entries = unpack(&out.artifact_path);
    let names: Vec<&str> = entries.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        names,
        [
            ".slipway",
            ".slipway/manifest.json",
            "built.txt",
            "listing.txt",
            "slipway.toml",
            "src",
            "src/a.txt",
        ],
        "only services/a, at the release's top"
    );
    let m = by_path(&entries);
    // The build command ran in the app's root, which it saw as the whole
    // project: nothing of b, the library or the top level.
    assert_eq!(m["built.txt"].data, b"built a\n");
    assert_eq!(
        m["listing.txt"].data,
        b"built.txt\nlisting.txt\nslipway.toml\nsrc\n"
    );
    assert_eq!(manifest_of(&entries).run.command, "cat built.txt");
    assert_eq!(out.watch, ["libs/shared", "proto/*.proto"]);
    assert!(
        out.log
            .contains("building the app's root `services/a` of the repository"),
        "{}",
        out.log
    );

    // b, from the same commit, is b.
    let mut b2 = Build::new(&sha);
    b2.root = Some(AppRoot::parse("services/b/").unwrap());
    let out = b2.run(&repo.url(), &sha).unwrap();
    let entries = unpack(&out.artifact_path);
    let m = by_path(&entries);
    assert_eq!(m["built.txt"].data, b"built b\n");
    assert!(m.contains_key("src/b.txt") && !m.contains_key("src/a.txt"));
}

#[test]
fn a_root_missing_in_the_commit_is_an_error_naming_it_and_the_commit() {
    let (repo, sha) = monorepo();
    let mut b = Build::new(&sha);
    b.root = Some(AppRoot::parse("services/c").unwrap());
    let e = b.run(&repo.url(), &sha).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("root `services/c`") && msg.contains(&sha),
        "names the root and the commit: {msg}"
    );
    assert!(msg.contains("has no `services/c`"), "{msg}");
    assert!(e.log().contains(&format!("error: {msg}")), "{}", e.log());
    assert_eq!(std::fs::read_dir(b.out.path()).unwrap().count(), 0);

    // A file where the root should be is no root either.
    let mut b = Build::new(&sha);
    b.root = Some(AppRoot::parse("README.md").unwrap());
    let e = b.run(&repo.url(), &sha).unwrap_err();
    assert!(e.to_string().contains("is a file"), "{e}");
}

#[test]
fn a_root_without_slipway_toml_says_so() {
    let (repo, sha) = monorepo();
    let mut b = Build::new(&sha);
    b.root = Some(AppRoot::parse("libs/shared").unwrap());
    let e = b.run(&repo.url(), &sha).unwrap_err();
    assert!(
        matches!(
            e,
            BuildError::Config {
                error: packer::ConfigError::Missing,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("app's registered root"), "{e}");
}
