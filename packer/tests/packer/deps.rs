//! Real dependencies from PyPI and npm: installed into the release so it
//! runs anywhere the same interpreter does, cached by lockfile, identical
//! bytes across clean caches, and clear errors for what does not exist.

use std::path::Path;

use deploy::RuntimeKind;
use packer::BuildError;

use crate::helpers::{Build, TestRepo, by_path, manifest_of, unpack};

/// Small pure-Python packages; pyflakes brings a console script, whose
/// shebang pip writes with the build machine's interpreter path.
const REQUIREMENTS: &str = "six==1.16.0\npyflakes==3.2.0\n";

const PY_TOML: &str = "[run]\ncommand = \"python3 app.py\"\n";

fn python_prefix() -> String {
    let out = std::process::Command::new("python3")
        .args(["-c", "import sys; print(sys.base_prefix)"])
        .output()
        .expect("python3 runs");
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_string()
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[test]
fn python_dependencies_are_installed_relocatably_and_cached_by_requirements() {
    let cache = tempfile::tempdir().unwrap();
    let mut repo = TestRepo::new();
    repo.write("requirements.txt", REQUIREMENTS)
        .write("app.py", "import six\nprint(six.PY3)\n")
        .write("slipway.toml", PY_TOML);
    let first = repo.commit("first");

    let b1 = Build::cached(&first, cache.path());
    let out = b1.run(&repo.url(), &first).unwrap();
    assert!(out.log.contains("cache miss"), "{}", out.log);
    assert!(out.log.contains(" -m pip install"), "{}", out.log);
    let entries = unpack(&out.artifact_path);
    let files = by_path(&entries);
    assert!(
        files.contains_key(".slipway/python/six.py"),
        "six installed"
    );
    assert!(files.contains_key(".slipway/python/pyflakes/__init__.py"));
    let script = &files[".slipway/python/bin/pyflakes"];
    assert!(
        script.data.starts_with(b"#!/usr/bin/env python3\n"),
        "{}",
        String::from_utf8_lossy(&script.data)
    );
    assert_eq!(script.mode, 0o755);
    // Nothing in the release names the build machine: not the interpreter's
    // prefix, not the scratch directory, and no bytecode compiled there.
    let prefix = python_prefix();
    let scratch = b1.work.path().display().to_string();
    for (path, e) in &entries {
        assert!(!contains(&e.data, &prefix), "{path} names {prefix}");
        assert!(!contains(&e.data, &scratch), "{path} names {scratch}");
        assert!(!path.ends_with(".pyc"), "{path}");
    }
    let manifest = manifest_of(&entries);
    let runtime = manifest.runtime.clone().unwrap();
    assert_eq!(runtime.kind, RuntimeKind::Python);
    assert_eq!(manifest.run.paths["PYTHONPATH"], [".slipway/python"]);
    assert_eq!(manifest.run.paths["PATH"], [".slipway/python/bin"]);

    // The installed release runs from anywhere on the host's python3: unpack
    // it somewhere else and use the dependency and the console script.
    let elsewhere = tempfile::tempdir().unwrap();
    let f = std::fs::File::open(&out.artifact_path).unwrap();
    tar::Archive::new(flate2::read::GzDecoder::new(f))
        .unpack(elsewhere.path())
        .unwrap();
    drop(b1);
    let deps = elsewhere.path().join(".slipway/python");
    let path = format!(
        "{}:{}",
        deps.join("bin").display(),
        std::env::var("PATH").unwrap()
    );
    let ran = std::process::Command::new("sh")
        .args(["-c", "python3 app.py && pyflakes --version"])
        .current_dir(elsewhere.path())
        .env("PYTHONPATH", &deps)
        .env("PATH", path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&ran.stdout);
    assert!(
        ran.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&ran.stderr)
    );
    assert!(stdout.starts_with("True\n3.2.0"), "{stdout}");

    // A code-only change: pip is not run, the same packages are there.
    repo.write("app.py", "import six\nprint('changed', six.PY3)\n");
    let second = repo.commit("code only");
    let b2 = Build::cached(&second, cache.path());
    let out = b2.run(&repo.url(), &second).unwrap();
    assert!(
        out.log.contains("cache hit") && out.log.contains("install skipped"),
        "{}",
        out.log
    );
    assert!(!out.log.contains("pip install"), "{}", out.log);
    assert!(
        out.log.contains("fetched into the cached mirror"),
        "{}",
        out.log
    );
    let files = by_path(&unpack(&out.artifact_path));
    assert!(files.contains_key(".slipway/python/six.py"));
    assert_eq!(
        files["app.py"].data,
        b"import six\nprint('changed', six.PY3)\n"
    );

    // A changed requirement is a miss again.
    repo.write("requirements.txt", "six==1.16.0\n");
    let third = repo.commit("fewer deps");
    let b3 = Build::cached(&third, cache.path());
    let out = b3.run(&repo.url(), &third).unwrap();
    assert!(out.log.contains("cache miss"), "{}", out.log);
    assert!(!by_path(&unpack(&out.artifact_path)).contains_key(".slipway/python/bin/pyflakes"));
}

#[test]
fn the_same_commit_on_two_clean_caches_gives_the_same_bytes() {
    let mut repo = TestRepo::new();
    repo.write("requirements.txt", REQUIREMENTS)
        .write("app.py", "import six\n")
        .write("slipway.toml", PY_TOML);
    let sha = repo.commit("deps");
    let (ca, cb) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Build::cached(&sha, ca.path())
        .run(&repo.url(), &sha)
        .unwrap();
    let b = Build::cached(&sha, cb.path())
        .run(&repo.url(), &sha)
        .unwrap();
    assert!(a.log.contains("cache miss") && b.log.contains("cache miss"));
    assert_eq!(a.sha256, b.sha256);
    assert_eq!(a.size, b.size);
    // And a cache hit packs the same bytes as the install it replays.
    let c = Build::cached(&sha, ca.path())
        .run(&repo.url(), &sha)
        .unwrap();
    assert!(c.log.contains("cache hit"), "{}", c.log);
    assert_eq!(c.sha256, a.sha256);
}

#[test]
fn a_python_dependency_that_does_not_exist_is_named() {
    let mut repo = TestRepo::new();
    repo.write(
        "requirements.txt",
        "six==1.16.0\nslipway-no-such-package-4f1c==1.0\n",
    )
    .write("app.py", "\n")
    .write("slipway.toml", PY_TOML);
    let sha = repo.commit("bad dep");
    let cache = tempfile::tempdir().unwrap();
    let b = Build::cached(&sha, cache.path());
    let e = b.run(&repo.url(), &sha).unwrap_err();
    assert!(matches!(e, BuildError::Dependencies { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("`pip`") && msg.contains("slipway-no-such-package-4f1c"),
        "{msg}"
    );
    assert!(e.log().contains(" -m pip install"), "{}", e.log());
    assert!(
        e.log().contains("error: installing dependencies"),
        "{}",
        e.log()
    );
    // Nothing was cached and nothing was packed.
    assert_eq!(std::fs::read_dir(b.out.path()).unwrap().count(), 0);
    let cached: Vec<_> = std::fs::read_dir(cache.path().join("deps"))
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .collect();
    assert!(cached.is_empty(), "{cached:?}");
}

/// A node app whose lockfile npm writes now (from the registry).
fn node_repo(dir_files: &[(&str, &str)]) -> TestRepo {
    let repo = TestRepo::new();
    for (name, text) in dir_files {
        repo.write(name, text);
    }
    lock(repo.path());
    repo
}

fn lock(dir: &Path) {
    let out = std::process::Command::new("npm")
        .args(["install", "--package-lock-only", "--no-audit", "--no-fund"])
        .current_dir(dir)
        .output()
        .expect("npm runs");
    assert!(
        out.status.success(),
        "npm could not write the lockfile: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const NODE_TOML: &str = "[run]\ncommand = \"node server.js\"\n";

#[test]
fn node_dependencies_come_from_the_lockfile_without_dev_dependencies() {
    let cache = tempfile::tempdir().unwrap();
    let package = r#"{
  "name": "hello-node",
  "version": "1.0.0",
  "private": true,
  "dependencies": { "is-number": "7.0.0" },
  "devDependencies": { "is-odd": "3.0.1" },
  "scripts": { "build": "node -e \"require('is-odd'); require('fs').writeFileSync('built.txt', 'built with is-odd')\"" }
}
"#;
    let mut repo = node_repo(&[
        ("package.json", package),
        ("server.js", "require('is-number');\n"),
        ("slipway.toml", NODE_TOML),
    ]);
    let first = repo.commit("node");
    let b1 = Build::cached(&first, cache.path());
    let out = b1.run(&repo.url(), &first).unwrap();
    assert!(
        out.log.contains("frozen install from package-lock.json"),
        "{}",
        out.log
    );
    assert!(out.log.contains("$ npm ci"), "{}", out.log);
    assert!(out.log.contains("$ npm run build"), "{}", out.log);
    let entries = unpack(&out.artifact_path);
    let files = by_path(&entries);
    assert_eq!(files["built.txt"].data, b"built with is-odd");
    assert!(files.contains_key("node_modules/is-number/package.json"));
    assert!(
        !files.keys().any(|p| p.starts_with("node_modules/is-odd")),
        "the dev dependency was shipped"
    );
    let manifest = manifest_of(&entries);
    assert_eq!(manifest.runtime.unwrap().kind, RuntimeKind::Node);
    assert_eq!(manifest.run.env["NODE_ENV"], "production");
    assert_eq!(manifest.run.paths["PATH"], ["node_modules/.bin"]);

    repo.write("server.js", "require('is-number'); // changed\n");
    let second = repo.commit("code only");
    let b2 = Build::cached(&second, cache.path());
    let out = b2.run(&repo.url(), &second).unwrap();
    assert!(out.log.contains("cache hit"), "{}", out.log);
    assert!(!out.log.contains("$ npm ci"), "{}", out.log);
    let files = by_path(&unpack(&out.artifact_path));
    assert!(files.contains_key("node_modules/is-number/package.json"));
    assert!(!files.keys().any(|p| p.starts_with("node_modules/is-odd")));
}

#[test]
fn an_npm_dependency_that_does_not_exist_is_named() {
    let mut repo = TestRepo::new();
    repo.write(
        "package.json",
        r#"{"name": "x", "version": "1.0.0", "dependencies": {"slipway-no-such-package-4f1c": "^1.0.0"}}"#,
    )
    .write("server.js", "\n")
    .write("slipway.toml", NODE_TOML);
    let sha = repo.commit("bad dep");
    let e = Build::new(&sha).run(&repo.url(), &sha).unwrap_err();
    assert!(matches!(e, BuildError::Dependencies { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("`npm`") && msg.contains("slipway-no-such-package-4f1c"),
        "{msg}"
    );
    assert!(
        e.log().contains("no lockfile: npm resolves versions anew"),
        "{}",
        e.log()
    );
}
