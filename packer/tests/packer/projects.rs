//! The Python and Node projects people have, from `tests/fixtures/projects`
//! (real lockfiles, real dependencies from PyPI and npm): each builds with
//! its own package manager, ships its own code and data file with the
//! dependencies, gives the same bytes on two clean dependency caches, and a
//! code-only change skips the dependency install.

use std::path::{Path, PathBuf};

use packer::{BuildError, BuildOutput};

use crate::helpers::{Build, TestRepo, by_path, unpack};

/// The fixture projects, shared with the end-to-end tests.
pub fn fixture_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/projects")
        .join(name)
}

/// A repository holding fixture `name` and a minimal `slipway.toml`.
fn repo_of(name: &str, run: &str) -> TestRepo {
    let repo = TestRepo::new();
    copy_dir(&fixture_dir(name), repo.path());
    repo.write("slipway.toml", &format!("[run]\ncommand = \"{run}\"\n"));
    repo
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in walkdir::WalkDir::new(from) {
        let entry = entry.unwrap();
        let rel = entry.path().strip_prefix(from).unwrap();
        let target = to.join(rel);
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Builds `sha` on a clean dependency cache whose tools directory is
/// `tools`' (the pinned package managers need not be fetched twice).
fn build_clean(
    repo: &TestRepo,
    sha: &str,
    tools: Option<&Path>,
) -> (tempfile::TempDir, Build, BuildOutput) {
    let cache = tempfile::tempdir().unwrap();
    if let Some(tools) = tools {
        let status = std::process::Command::new("cp")
            .arg("-a")
            .arg(tools)
            .arg(cache.path().join("tools"))
            .status()
            .unwrap();
        assert!(status.success());
    }
    let build = Build::cached(sha, cache.path());
    let out = build
        .run(&repo.url(), sha)
        .unwrap_or_else(|e| panic!("{e}\n{}", e.log()));
    (cache, build, out)
}

/// Builds the fixture twice on clean caches; both give the same bytes.
fn reproducible(
    name: &str,
    run: &str,
) -> (TestRepo, String, tempfile::TempDir, Build, BuildOutput) {
    let mut repo = repo_of(name, run);
    let sha = repo.commit(name);
    let (cache, build, first) = build_clean(&repo, &sha, None);
    let (_, _, second) = build_clean(&repo, &sha, Some(&cache.path().join("tools")));
    assert!(first.log.contains("cache miss"), "{}", first.log);
    assert!(second.log.contains("cache miss"), "{}", second.log);
    assert_eq!(
        first.sha256, second.sha256,
        "{name}: two clean builds of one commit differ\n{}\n{}",
        first.log, second.log
    );
    (repo, sha, cache, build, first)
}

fn files(out: &BuildOutput) -> std::collections::BTreeMap<String, crate::helpers::Entry> {
    by_path(&unpack(&out.artifact_path))
}

#[test]
fn a_src_layout_package_is_installed_with_its_data_and_scripts() {
    let (_, _, _, _b, out) = reproducible("pip-src", "greeter-serve");
    assert!(
        out.log
            .contains("dependencies: pyproject.toml [project] dependencies"),
        "{}",
        out.log
    );
    assert!(out.log.contains("installing greeter itself"), "{}", out.log);
    let f = files(&out);
    for path in [
        ".slipway/python/six.py",
        ".slipway/python/greeter/app.py",
        ".slipway/python/greeter/greeting.txt",
    ] {
        assert!(f.contains_key(path), "{path} missing: {:?}", f.keys());
    }
    let script = &f[".slipway/python/bin/greeter-serve"];
    assert!(script.data.starts_with(b"#!/usr/bin/env python3\n"));
    // The build backend's leftovers stayed out of the release.
    assert!(
        !f.keys()
            .any(|p| p.contains("egg-info") || p.starts_with("build/"))
    );
    assert!(!f.keys().any(|p| p.ends_with("direct_url.json")));
}

#[test]
fn a_uv_project_installs_frozen_and_a_code_change_skips_the_install() {
    let (mut repo, _, cache, _b, out) = reproducible("uv", "python3 -m uvapp");
    assert!(
        out.log.contains("dependencies: uv.lock: uv, frozen"),
        "{}",
        out.log
    );
    assert!(out.log.contains("uv export --locked"), "{}", out.log);
    assert!(out.log.contains("python: 3.11"), "{}", out.log);
    assert!(
        out.log.contains("(for `3.11` from .python-version"),
        "{}",
        out.log
    );
    let f = files(&out);
    assert!(
        f.contains_key(".slipway/python/idna/core.py"),
        "{:?}",
        f.keys()
    );
    assert!(f.contains_key(".slipway/python/uvapp/message.txt"));
    assert!(
        !f.keys()
            .any(|p| p.ends_with("uv_cache.json") || p == ".slipway/python/.lock")
    );

    std::fs::write(
        repo.path().join("src/uvapp/__init__.py"),
        "\"\"\"Changed code, same dependencies.\"\"\"\n",
    )
    .unwrap();
    let sha = repo.commit("code only");
    let b2 = Build::cached(&sha, cache.path());
    let again = b2.run(&repo.url(), &sha).unwrap();
    assert!(
        again
            .log
            .contains("Python dependencies (uv.lock): cache hit"),
        "{}",
        again.log
    );
    // The dependencies' install (from the export) did not run; only the
    // project's own.
    assert!(!again.log.contains("--no-deps -r"), "{}", again.log);
    assert!(out.log.contains("--no-deps -r"), "{}", out.log);
    assert_eq!(
        files(&again)[".slipway/python/uvapp/__init__.py"].data,
        b"\"\"\"Changed code, same dependencies.\"\"\"\n"
    );
}

#[test]
fn a_poetry_project_installs_from_its_lock() {
    let (_, _, _, _b, out) = reproducible("poetry", "python3 -m poetry_app");
    assert!(out.log.contains("dependencies: poetry.lock"), "{}", out.log);
    let f = files(&out);
    assert!(f.contains_key(".slipway/python/six.py"));
    assert!(
        f.contains_key(".slipway/python/poetry_app/words.txt"),
        "{:?}",
        f.keys()
    );
}

#[test]
fn an_npm_project_with_a_typescript_build_ships_the_output_without_dev_dependencies() {
    let (_, _, _, _b, out) = reproducible("npm-ts", "node dist/server.js");
    assert!(out.log.contains("$ npm ci"), "{}", out.log);
    assert!(out.log.contains("$ npm run build"), "{}", out.log);
    let f = files(&out);
    assert!(
        f.contains_key("dist/server.js"),
        "{:?}",
        f.keys().take(20).collect::<Vec<_>>()
    );
    assert!(f.contains_key("node_modules/ms/index.js"));
    assert!(
        !f.contains_key("node_modules/typescript/package.json"),
        "dev dependency shipped"
    );
}

#[test]
fn a_pnpm_project_installs_frozen_and_a_code_change_skips_the_install() {
    let (mut repo, _, cache, _b, out) = reproducible("pnpm", "node server.js");
    assert!(
        out.log.contains("package manager: pnpm@9.15.9, from package.json packageManager; frozen install from pnpm-lock.yaml"),
        "{}",
        out.log
    );
    let f = files(&out);
    assert!(f.contains_key("node_modules/ms"), "the top-level link");
    assert!(
        f.keys()
            .any(|p| p.starts_with("node_modules/.pnpm/ms@2.1.3/"))
    );
    assert!(
        !f.keys().any(|p| p.contains("left-pad")),
        "dev dependency shipped"
    );
    assert!(!f.contains_key("node_modules/.modules.yaml"));

    repo.write(
        "server.js",
        &format!(
            "{}// changed\n",
            std::fs::read_to_string(fixture_dir("pnpm").join("server.js")).unwrap()
        ),
    );
    let sha = repo.commit("code only");
    let b2 = Build::cached(&sha, cache.path());
    let again = b2.run(&repo.url(), &sha).unwrap();
    assert!(
        again
            .log
            .contains("pnpm dependencies (production): cache hit"),
        "{}",
        again.log
    );
    assert!(!again.log.contains("pnpm.cjs install"), "{}", again.log);
}

#[test]
fn a_yarn_classic_project_installs_frozen() {
    let (_, _, _, _b, out) = reproducible("yarn", "node server.js");
    assert!(
        out.log
            .contains("package manager: yarn@1.22.22 (classic), from yarn.lock"),
        "{}",
        out.log
    );
    let f = files(&out);
    assert!(f.contains_key("node_modules/is-number/index.js"));
    assert!(
        !f.keys().any(|p| p.contains("left-pad")),
        "dev dependency shipped"
    );
}

#[test]
fn a_pdm_project_installs_its_default_group() {
    let (_, _, _, _b, out) = reproducible("pdm", "python3 -m pdm_app");
    assert!(out.log.contains("dependencies: pdm.lock"), "{}", out.log);
    let f = files(&out);
    assert!(f.contains_key(".slipway/python/six.py"));
    assert!(
        f.contains_key(".slipway/python/pdm_app/note.txt"),
        "{:?}",
        f.keys()
    );
    assert!(
        !f.keys().any(|p| p.contains("pytest")),
        "a dev dependency shipped"
    );
}

#[test]
fn a_bun_project_installs_frozen() {
    let (_, _, _, _b, out) = reproducible("bun", "node server.js");
    assert!(
        out.log
            .contains("package manager: bun@1.2.19, from bun.lock; frozen install from bun.lock"),
        "{}",
        out.log
    );
    let f = files(&out);
    assert!(
        f.contains_key("node_modules/ms/index.js"),
        "{:?}",
        f.keys().take(30).collect::<Vec<_>>()
    );
    assert!(
        !f.keys().any(|p| p.contains("left-pad")),
        "dev dependency shipped"
    );
}

#[test]
fn a_yarn_berry_project_installs_immutably_into_node_modules() {
    let (_, _, _, _b, out) = reproducible("berry", "node server.js");
    assert!(
        out.log
            .contains("package manager: yarn@4.9.2 (berry), from package.json packageManager"),
        "{}",
        out.log
    );
    let f = files(&out);
    assert!(
        f.contains_key("node_modules/is-number/index.js"),
        "{:?}",
        f.keys().take(30).collect::<Vec<_>>()
    );
    assert!(
        !f.keys().any(|p| p.contains("left-pad")),
        "dev dependency shipped"
    );
}

fn fails(repo: &mut TestRepo) -> BuildError {
    let sha = repo.commit("broken");
    let cache = tempfile::tempdir().unwrap();
    Build::cached(&sha, cache.path())
        .run(&repo.url(), &sha)
        .expect_err("the build must fail")
}

#[test]
fn out_of_date_lockfiles_are_named_with_their_fix() {
    let mut uv = repo_of("uv", "python3 -m uvapp");
    let text = std::fs::read_to_string(uv.path().join("pyproject.toml")).unwrap();
    uv.write(
        "pyproject.toml",
        &text.replace("\"idna==3.10\"", "\"idna==3.10\", \"six==1.16.0\""),
    );
    let e = fails(&mut uv);
    assert!(matches!(e, BuildError::LockOutdated { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        "uv.lock is out of date with pyproject.toml: run `uv lock`, and commit it"
    );

    let mut pnpm = repo_of("pnpm", "node server.js");
    let text = std::fs::read_to_string(pnpm.path().join("package.json")).unwrap();
    pnpm.write(
        "package.json",
        &text.replace("\"ms\": \"2.1.3\"", "\"ms\": \"2.1.2\""),
    );
    let e = fails(&mut pnpm);
    assert_eq!(
        e.to_string(),
        "pnpm-lock.yaml is out of date with package.json: run `pnpm install`, and commit it",
        "{}",
        e.log()
    );

    for (fixture, lock, fix) in [
        ("yarn", "yarn.lock", "yarn install"),
        ("npm-ts", "package-lock.json", "npm install"),
    ] {
        let mut repo = repo_of(fixture, "node server.js");
        let text = std::fs::read_to_string(repo.path().join("package.json")).unwrap();
        repo.write(
            "package.json",
            &text.replace("\"ms\": \"2.1.3\"", "\"ms\": \"2.1.2\""),
        );
        let e = fails(&mut repo);
        assert_eq!(
            e.to_string(),
            format!("{lock} is out of date with package.json: run `{fix}`, and commit it"),
            "{}",
            e.log()
        );
    }
}

#[test]
fn interpreters_and_package_managers_that_cannot_be_had_are_named() {
    let mut py = repo_of("uv", "python3 -m uvapp");
    py.write(".python-version", "3.99\n");
    let e = fails(&mut py);
    let msg = e.to_string();
    assert!(
        msg.contains("no Python on this build machine matches `3.99` (from .python-version)")
            && msg.contains("it has 3."),
        "{msg}"
    );
    assert!(matches!(e, BuildError::Interpreter { .. }));

    let mut node = repo_of("yarn", "node server.js");
    let text = std::fs::read_to_string(node.path().join("package.json")).unwrap();
    node.write(
        "package.json",
        &text.replacen('{', "{\n  \"engines\": { \"node\": \">=99\" },", 1),
    );
    let msg = fails(&mut node).to_string();
    assert!(
        msg.contains("`>=99` (from package.json engines.node)"),
        "{msg}"
    );

    let mut pm = repo_of("pnpm", "node server.js");
    let text = std::fs::read_to_string(pm.path().join("package.json")).unwrap();
    pm.write("package.json", &text.replace("pnpm@9.15.9", "pnpm@0.0.404"));
    let e = fails(&mut pm);
    let msg = e.to_string();
    assert!(
        matches!(e, BuildError::PackageManager { .. })
            && msg.contains(
                "pnpm@0.0.404 (asked for by package.json packageManager) is not available"
            ),
        "{msg}"
    );
}
