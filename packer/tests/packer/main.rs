//! Packer against real git repositories: resolving refs (`refs.rs`),
//! building python and generic apps, and refusing what must be refused.

mod deps;
mod monorepo;
// Its setup helpers panic on failures, like the tests that call them.
#[allow(clippy::unwrap_used)]
mod projects;
// Its setup panics on failures, like the tests that call it.
#[allow(clippy::unwrap_used)]
mod refs;
mod sandbox;
// Helpers panic on setup failures, like the tests that call them.
#[allow(clippy::unwrap_used)]
mod helpers;

use deploy::{BuildType, HealthCheck, Sha256};
use helpers::{Build, FIRST_COMMIT_TIME, TestRepo, by_path, manifest_of, unpack};
use packer::BuildError;

const PYTHON_TOML: &str = r#"
[run]
command = "python3 app.py"
port = 8000
env = { GREETING = "hi" }

[health]
http = "/health"
"#;

fn python_repo() -> (TestRepo, String) {
    let mut repo = TestRepo::new();
    repo.write("app.py", "print('hello')\n")
        .write("lib/util.py", "X = 1\n")
        .write("requirements.txt", "# the standard library only\n")
        .write("slipway.toml", PYTHON_TOML)
        .write("bin/start", "#!/bin/sh\nexec python3 app.py\n")
        .chmod("bin/start", 0o755)
        .symlink("run", "bin/start");
    let sha = repo.commit("first");
    (repo, sha)
}

// ---- python builds -------------------------------------------------------

#[test]
fn python_build_packs_the_tree_and_a_right_manifest() {
    let (repo, sha) = python_repo();
    let b = Build::new(&sha);
    let out = b.run(&repo.url(), &sha).unwrap();

    assert_eq!(
        out.artifact_path,
        b.out.path().join(format!("hello-7-{}.tar.gz", &sha[..7]))
    );
    assert_eq!(out.build_type, BuildType::Python);
    let bytes = std::fs::read(&out.artifact_path).unwrap();
    assert_eq!(out.size, bytes.len() as u64);
    use sha2::Digest;
    let digest = hex::encode(sha2::Sha256::digest(&bytes));
    assert_eq!(out.sha256, Sha256::parse(digest).unwrap());

    let entries = unpack(&out.artifact_path);
    let names: Vec<&str> = entries.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        names,
        [
            ".slipway",
            ".slipway/manifest.json",
            "app.py",
            "bin",
            "bin/start",
            "lib",
            "lib/util.py",
            "requirements.txt",
            "run",
            "slipway.toml",
        ]
    );
    let m = by_path(&entries);
    assert_eq!(m["app.py"].data, b"print('hello')\n");
    assert_eq!(m["app.py"].mode, 0o644);
    assert_eq!(m["bin/start"].mode, 0o755);
    assert_eq!(m["run"].kind, tar::EntryType::Symlink);
    assert_eq!(
        m["run"].link.as_deref(),
        Some(std::path::Path::new("bin/start"))
    );
    for (path, e) in &entries {
        assert_eq!(e.mtime, FIRST_COMMIT_TIME as u64, "{path}");
    }

    let manifest = manifest_of(&entries);
    assert_eq!(manifest, out.manifest);
    assert_eq!(manifest.app.as_str(), "hello");
    assert_eq!(manifest.version.as_str(), format!("7-{}", &sha[..7]));
    assert_eq!(manifest.commit, sha);
    assert_eq!(manifest.build_type, BuildType::Python);
    assert_eq!(manifest.built_at.as_millis(), FIRST_COMMIT_TIME * 1000);
    assert_eq!(manifest.run.command, "python3 app.py");
    assert_eq!(manifest.run.port, Some(8000));
    assert_eq!(manifest.run.env["GREETING"], "hi");
    assert_eq!(manifest.run.stop_timeout_ms, 10_000);
    assert_eq!(
        manifest.health.check,
        HealthCheck::Http {
            path: "/health".into(),
            expect: None,
        }
    );
    assert_eq!(
        (manifest.health.timeout_ms, manifest.health.grace_ms),
        (30_000, 2_000)
    );
    // Regular files: app.py, bin/start, lib/util.py, requirements.txt,
    // slipway.toml; not the symlink, not the manifest.
    assert_eq!(manifest.files, 5);
    let sizes = [
        "app.py",
        "bin/start",
        "lib/util.py",
        "requirements.txt",
        "slipway.toml",
    ]
    .iter()
    .map(|p| m[*p].data.len() as u64)
    .sum::<u64>();
    assert_eq!(manifest.content_bytes, sizes);

    assert!(
        out.log.contains("build type: python (detected)"),
        "{}",
        out.log
    );
    assert!(
        out.log.contains("no Python dependencies declared"),
        "{}",
        out.log
    );
    // The interpreter is recorded even with no dependencies: the grabber
    // checks the host has the same one.
    let runtime = manifest
        .runtime
        .expect("python builds record their runtime");
    assert_eq!(runtime.kind, deploy::RuntimeKind::Python);
    assert!(runtime.version.starts_with("3."), "{runtime}");
    assert!(manifest.run.paths.is_empty(), "no dependencies, no paths");
}

#[test]
fn a_build_reports_its_commits_author_and_summary() {
    let mut repo = TestRepo::new();
    repo.write(
        "slipway.toml",
        "type = \"generic\"\n[build]\ncommand = \"true\"\n[run]\ncommand = \"x\"\n",
    );
    let sha = repo.commit("Fix <b>the</b> login page\n\nThe body is not recorded.\n");
    let out = Build::new(&sha).run(&repo.url(), &sha).unwrap();
    // `TestRepo::commit` commits as `Test <test@example.com>`.
    assert_eq!(out.author.as_deref(), Some("Test <test@example.com>"));
    assert_eq!(out.message.as_deref(), Some("Fix <b>the</b> login page"));
}

#[test]
fn same_commit_gives_the_same_bytes() {
    let (repo, sha) = python_repo();
    // Separate scratch and output directories, as two build machines would.
    let (mut ba, bb) = (Build::new(&sha), Build::new(&sha));
    let key = deploy::signing::SigningKey::from_seed([9; 32]);
    ba.settings.signing_key = Some(key.clone());
    let a = ba.run(&repo.url(), &sha).unwrap();
    let b = bb.run(&repo.url(), &sha).unwrap();
    assert_eq!(a.sha256, b.sha256);
    // Signing changes nothing in the artifact; the signature covers it.
    assert_eq!(b.signature, None);
    let sig = a
        .signature
        .expect("a build with a key is signed")
        .to_string();
    assert!(a.log.contains(&key.public_key().to_string()), "{}", a.log);
    deploy::signing::verify(&[key.public_key()], &ba.app, &ba.version, &a.sha256, &sig).unwrap();
    let other = deploy::signing::SigningKey::from_seed([8; 32]).public_key();
    assert!(deploy::signing::verify(&[other], &ba.app, &ba.version, &a.sha256, &sig).is_err());
    assert_eq!(a.size, b.size);
    assert_eq!(
        std::fs::read(&a.artifact_path).unwrap(),
        std::fs::read(&b.artifact_path).unwrap()
    );
}

#[test]
fn builds_an_older_commit_from_a_bare_file_url() {
    let (mut repo, first) = python_repo();
    repo.write("app.py", "print('second')\n");
    let second = repo.commit("second");
    let bare = repo.bare_clone();
    let url = format!("file://{}", bare.path().join("repo.git").display());

    let (bo, bn) = (Build::new(&first), Build::new(&second));
    let old = bo.run(&url, &first).unwrap();
    let m = by_path(&unpack(&old.artifact_path));
    assert_eq!(m["app.py"].data, b"print('hello')\n");
    let new = bn.run(&url, &second).unwrap();
    let m = by_path(&unpack(&new.artifact_path));
    assert_eq!(m["app.py"].data, b"print('second')\n");
    assert_ne!(old.sha256, new.sha256);
}

// ---- generic builds ------------------------------------------------------

#[test]
fn generic_build_runs_its_command_and_logs_its_output() {
    let mut repo = TestRepo::new();
    repo.write(
        "slipway.toml",
        r#"
type = "generic"
[build]
command = "echo building $SLIPWAY_APP $SLIPWAY_VERSION $SLIPWAY_COMMIT; mkdir dist && echo made > dist/out.txt; echo to-stderr >&2"
[run]
command = "cat dist/out.txt"
"#,
    );
    let sha = repo.commit("generic");
    let b = Build::new(&sha);
    let out = b.run(&repo.url(), &sha).unwrap();

    assert_eq!(out.build_type, BuildType::Generic);
    assert!(
        out.log
            .contains(&format!("building hello 7-{} {sha}\n", &sha[..7])),
        "{}",
        out.log
    );
    assert!(out.log.contains("to-stderr\n"), "{}", out.log);
    let entries = unpack(&out.artifact_path);
    let m = by_path(&entries);
    assert_eq!(m["dist/out.txt"].data, b"made\n");
    assert_eq!(manifest_of(&entries).build_type, BuildType::Generic);
    assert_eq!(manifest_of(&entries).health.check, HealthCheck::Running);
}

#[test]
fn an_include_list_ships_only_what_it_names() {
    let mut repo = TestRepo::new();
    repo.write(
        "slipway.toml",
        r#"
type = "generic"
[build]
command = "mkdir -p dist/css && echo app > dist/app.js && echo css > dist/css/a.css && echo tmp > scratch.o"
include = ["dist", "dist/css", "./bin/start"]
[run]
command = "bin/start"
"#,
    )
    .write("src/main.c", "int main() {}\n")
    .write("bin/start", "#!/bin/sh\n")
    .chmod("bin/start", 0o755);
    let sha = repo.commit("include");
    let b = Build::new(&sha);
    let out = b.run(&repo.url(), &sha).unwrap();
    let entries = unpack(&out.artifact_path);
    let names: Vec<&str> = entries.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        names,
        [
            ".slipway",
            ".slipway/manifest.json",
            "bin",
            "bin/start",
            "dist",
            "dist/app.js",
            "dist/css",
            "dist/css/a.css",
        ]
    );
    assert_eq!(by_path(&entries)["bin/start"].mode, 0o755);

    // A listed path the build did not make is named.
    repo.write(
        "slipway.toml",
        "type = \"generic\"\n[build]\ncommand = \"true\"\ninclude = [\"dist\"]\n[run]\ncommand = \"x\"\n",
    );
    let sha = repo.commit("no dist");
    let e = Build::new(&sha).run(&repo.url(), &sha).unwrap_err();
    assert!(matches!(e, BuildError::BadEntry { .. }), "{e:?}");
    assert!(
        e.to_string().contains("`dist`") && e.to_string().contains("include"),
        "{e}"
    );
}

#[test]
fn failing_build_command_is_an_error_with_its_output() {
    let mut repo = TestRepo::new();
    repo.write(
        "slipway.toml",
        "type = \"generic\"\n[build]\ncommand = \"echo compiling; echo 'cc: bad things' >&2; exit 4\"\n[run]\ncommand = \"x\"\n",
    );
    let sha = repo.commit("failing");
    let b = Build::new(&sha);
    let e = b.run(&repo.url(), &sha).unwrap_err();
    assert!(matches!(e, BuildError::CommandFailed { .. }), "{e:?}");
    assert!(e.to_string().contains("exited with status 4"), "{e}");
    assert!(
        e.log().contains("compiling\ncc: bad things\n"),
        "{}",
        e.log()
    );
    assert!(e.log().contains("error: build command"), "{}", e.log());
    assert!(!e.is_retryable());
    assert_eq!(std::fs::read_dir(b.out.path()).unwrap().count(), 0);
}

// ---- refusals ------------------------------------------------------------

#[test]
fn malformed_slipway_toml_names_key_and_line() {
    let mut repo = TestRepo::new();
    repo.write("app.py", "").write(
        "slipway.toml",
        "[run]\ncommand = \"x\"\n\ncolour = \"red\"\n",
    );
    let sha = repo.commit("unknown key");
    let e = Build::new(&sha).run(&repo.url(), &sha).unwrap_err();
    assert!(matches!(e, BuildError::Config { .. }), "{e:?}");
    assert!(
        e.to_string()
            .starts_with("slipway.toml: unknown key `run.colour` at line 4"),
        "{e}"
    );
    assert!(
        e.log().contains("unknown key `run.colour` at line 4"),
        "{}",
        e.log()
    );

    repo.write("slipway.toml", "[run]\ncommand = \"x\"\nport = \"x\"\n");
    let sha = repo.commit("wrong type");
    let e = Build::new(&sha).run(&repo.url(), &sha).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("slipway.toml: key `run.port` at line 3: invalid type"),
        "{e}"
    );
}

#[test]
fn missing_slipway_toml_is_a_clear_error() {
    let mut repo = TestRepo::new();
    repo.write("app.py", "");
    let sha = repo.commit("no config");
    let e = Build::new(&sha).run(&repo.url(), &sha).unwrap_err();
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
    assert!(e.to_string().contains("slipway.toml: not found"), "{e}");
}

#[test]
fn symlink_escaping_the_tree_is_refused() {
    let (mut repo, _) = python_repo();
    repo.symlink("secrets", "../../etc");
    let sha = repo.commit("escape");
    let b = Build::new(&sha);
    let e = b.run(&repo.url(), &sha).unwrap_err();
    assert!(matches!(e, BuildError::SymlinkEscapes { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        "symlink `secrets` points outside the release (to `../../etc`)"
    );
    assert_eq!(std::fs::read_dir(b.out.path()).unwrap().count(), 0);

    repo.remove("secrets").symlink("abs", "/etc/passwd");
    let sha = repo.commit("absolute");
    let e = Build::new(&sha).run(&repo.url(), &sha).unwrap_err();
    assert!(matches!(e, BuildError::SymlinkEscapes { .. }), "{e:?}");
}

#[test]
fn node_without_package_json_is_refused_by_name() {
    let mut repo = TestRepo::new();
    repo.write(
        "slipway.toml",
        "type = \"node\"\n[run]\ncommand = \"node x.js\"\n",
    );
    let sha = repo.commit("node");
    let e = Build::new(&sha).run(&repo.url(), &sha).unwrap_err();
    assert!(matches!(e, BuildError::Config { .. }), "{e:?}");
    assert!(e.to_string().contains("needs package.json"), "{e}");
}

#[test]
fn unknown_or_malformed_commit_is_refused() {
    let (repo, sha) = python_repo();
    let missing = "1234567890123456789012345678901234567890";
    let e = Build::new(&sha).run(&repo.url(), missing).unwrap_err();
    assert!(matches!(e, BuildError::CommitNotFound { .. }), "{e:?}");
    assert!(e.to_string().contains(missing), "{e}");
    let e = Build::new(&sha).run(&repo.url(), &sha[..7]).unwrap_err();
    assert!(matches!(e, BuildError::BadCommit { .. }), "{e:?}");
}

// ---- the binary ----------------------------------------------------------

#[test]
fn binary_builds_and_prints_the_artifact() {
    let (repo, sha) = python_repo();
    let out = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_packer"))
        .args([
            "build",
            "--git",
            &repo.url(),
            "--ref",
            "main",
            "--app",
            "hello",
            "--out",
        ])
        .arg(out.path())
        .arg("--cache-dir")
        .arg(out.path().join("cache"))
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let path = out.path().join(format!("hello-0-{}.tar.gz", &sha[..7]));
    assert!(
        stdout.contains(&format!("artifact: {}", path.display())),
        "{stdout}"
    );
    assert!(path.is_file());
    let size = std::fs::metadata(&path).unwrap().len();
    assert!(stdout.contains(&format!("size:     {size}\n")), "{stdout}");
    assert!(stdout.contains("signature: none"), "{stdout}");
}

#[test]
fn binary_keygen_then_signed_build_and_a_worker_needs_a_key() {
    let packer = env!("CARGO_BIN_EXE_packer");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(packer)
            .args(args)
            .env("RUST_LOG", "warn")
            .env_remove("SLIPWAY_SIGNING_KEY")
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("signing.key");
    let key_arg = key.display().to_string();
    let (ok, public, err) = run(&["keygen", "--out", &key_arg]);
    assert!(ok, "{err}");
    let public = deploy::signing::PublicKey::parse(public.trim()).unwrap();
    // Never replaced: a lost key means reconfiguring every grabber.
    let before = std::fs::read(&key).unwrap();
    let (ok, _, err) = run(&["keygen", "--out", &key_arg]);
    assert!(!ok && err.contains("already exists"), "{err}");
    assert_eq!(std::fs::read(&key).unwrap(), before);

    let (repo, sha) = python_repo();
    let out_dir = dir.path().join("out");
    let (ok, stdout, err) = run(&[
        "build",
        "--git",
        &repo.url(),
        "--app",
        "hello",
        "--no-cache",
        "--signing-key",
        &key_arg,
        "--out",
        &out_dir.display().to_string(),
    ]);
    assert!(ok, "{stdout}\n{err}");
    let field = |name: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
            .unwrap_or_else(|| panic!("no {name} in {stdout}"))
            .to_string()
    };
    let sha256 = Sha256::parse(field("sha256:")).unwrap();
    let version = deploy::Version::parse(format!("0-{}", &sha[..7])).unwrap();
    let app = deploy::AppName::parse("hello").unwrap();
    deploy::signing::verify(&[public], &app, &version, &sha256, &field("signature:")).unwrap();

    // A worker without a key refuses to start, saying what to do.
    let (ok, _, err) = run(&["worker", "--server", "http://127.0.0.1:9"]);
    assert!(!ok);
    assert!(
        err.contains("needs a signing key") && err.contains("packer keygen"),
        "{err}"
    );
}
