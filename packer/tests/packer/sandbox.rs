//! The build sandbox with real bubblewrap: what a build step can and cannot
//! see and do, the refusal to build unsandboxed by accident, the warning of
//! an explicit `sandbox = "none"`, inputs that are symlinks, and a git
//! remote that never answers.

use std::io::Read;
use std::time::{Duration, Instant};

use packer::{BuildError, SandboxConfig, SandboxKind};

use crate::helpers::{Build, TestRepo};

fn generic(command: &str) -> (TestRepo, String) {
    let mut repo = TestRepo::new();
    repo.write(
        "slipway.toml",
        &format!(
            "type = \"generic\"\n[build]\ncommand = '''{command}'''\ntimeout = \"60s\"\n[run]\ncommand = \"true\"\n"
        ),
    );
    let sha = repo.commit("build");
    (repo, sha)
}

fn log_of(r: &Result<packer::BuildOutput, BuildError>) -> String {
    match r {
        Ok(out) => out.log.clone(),
        Err(e) => e.log().to_string(),
    }
}

#[test]
fn a_build_step_sees_only_its_checkout_cache_and_toolchain() {
    // A secret beside the build's directories, readable by its owner only,
    // as a signing key would be.
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("secret.key");
    std::fs::write(&secret, "SANDBOX-TEST-SECRET-4f1d").unwrap();
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let command = format!(
        "echo uid=$(id -u); echo cwd=$(pwd); echo home=$HOME; \
         cat '{secret}' 2>&1 || echo cannot-read-secret; \
         ls /proc | grep -c '^[0-9]' | sed 's/^/pids=/'; \
         touch /usr/x 2>/dev/null && echo wrote-usr || echo usr-read-only; \
         touch /outside-file 2>/dev/null && echo wrote-root || echo root-read-only; \
         echo built > out.txt && echo wrote-checkout; \
         echo t > /tmp/t && echo wrote-tmp; \
         python3 -c 'print(\"python-ok\")'; node -e 'console.log(\"node-ok\")'; \
         (exec 3<>/dev/tcp/127.0.0.1/22) 2>/dev/null && echo net || echo no-net; \
         env | sort | sed 's/^/env:/'",
        secret = secret.display()
    );
    let (repo, sha) = generic(&command);
    let build = Build::cached(&sha, cache.path());
    let out = build.run(&repo.url(), &sha).unwrap();
    let log = out.log;
    assert!(log.contains("sandbox: bubblewrap"), "{log}");
    assert!(!log.contains("SANDBOX-TEST-SECRET"), "{log}");
    assert!(log.contains("cannot-read-secret"), "{log}");
    let uid = log
        .lines()
        .find_map(|l| l.strip_prefix("uid="))
        .expect("id printed");
    if nix_is_root() {
        assert_ne!(uid, "0", "{log}");
    }
    for expected in [
        "cwd=/build",
        "home=/tmp",
        "usr-read-only",
        "root-read-only",
        "wrote-checkout",
        "wrote-tmp",
        "python-ok",
        "node-ok",
    ] {
        assert!(log.contains(expected), "{expected}: {log}");
    }
    // Its own PID namespace: the shell, its children, bwrap's init.
    let pids: u32 = log
        .lines()
        .find_map(|l| l.strip_prefix("pids="))
        .and_then(|n| n.trim().parse().ok())
        .expect("pids counted");
    assert!(pids < 10, "{pids} processes visible: {log}");
    // Nothing of the test's own environment beyond the pass-through.
    let env: Vec<&str> = log.lines().filter_map(|l| l.strip_prefix("env:")).collect();
    for line in &env {
        let name = line.split('=').next().unwrap_or("");
        assert!(
            packer::KEPT_VARS.contains(&name)
                || name.starts_with("SLIPWAY_")
                || ["PWD", "SHLVL", "OLDPWD", "_"].contains(&name),
            "unexpected variable {line}"
        );
    }
    // The build's writes are the release's; the artifact is packed.
    assert!(out.artifact_path.is_file());
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

#[test]
fn build_steps_reach_no_network_unless_the_builder_allows_it() {
    // A listener on loopback, as AppTracker or a database would be.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let command = format!(
        "(exec 3<>/dev/tcp/127.0.0.1/{port}) 2>/dev/null && echo reached || echo unreachable"
    );
    let (repo, sha) = generic(&format!("bash -c '{command}'"));
    let build = Build::new(&sha);
    let said = |log: &str, what: &str| log.lines().any(|l| l == what);
    let log = build.run(&repo.url(), &sha).unwrap().log;
    assert!(said(&log, "unreachable"), "{log}");

    let mut open = Build::new(&sha);
    open.settings.sandbox.build_network = true;
    let log = open.run(&repo.url(), &sha).unwrap().log;
    assert!(said(&log, "reached"), "{log}");
}

#[test]
fn without_bubblewrap_builds_refuse_to_run_and_name_it() {
    let (repo, sha) = generic("echo should-not-run > ran.txt");
    let mut build = Build::new(&sha);
    build.settings.sandbox.bwrap = "/nonexistent/bin/bwrap".into();
    let e = build.run(&repo.url(), &sha).unwrap_err();
    assert!(matches!(e, BuildError::Sandbox { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("bubblewrap") && msg.contains("apt-get install bubblewrap"),
        "{msg}"
    );
    assert!(!e.log().contains("should-not-run\n$"), "{}", e.log());
    assert!(
        e.log()
            .contains("error: builds run in a bubblewrap sandbox")
    );
    // The check does not depend on the build: it says the same up front.
    let e = packer::check_sandbox(&build.settings.sandbox).unwrap_err();
    assert!(e.to_string().contains("bubblewrap"), "{e}");
}

#[test]
fn an_explicit_no_sandbox_runs_and_warns_in_the_log() {
    let (repo, sha) = generic("echo uid=$(id -u)");
    let mut build = Build::new(&sha);
    build.settings.sandbox = SandboxConfig {
        kind: SandboxKind::None,
        ..SandboxConfig::default()
    };
    let out = build.run(&repo.url(), &sha).unwrap();
    assert!(
        out.log
            .contains("warning: this build is not sandboxed (sandbox = \"none\")"),
        "{}",
        out.log
    );
}

#[test]
fn limits_on_processes_file_size_and_output_hold() {
    // A fork bomb stops at the process limit; the build goes on.
    let mut repo = TestRepo::new();
    repo.write(
        "slipway.toml",
        "type = \"generic\"\n[build]\ncommand = \"python3 fork.py; head -c 3000000 /dev/zero > big 2>/dev/null; echo big=$(stat -c %s big)\"\n[run]\ncommand = \"true\"\n",
    )
    .write(
        "fork.py",
        r#"import os, time
n = 0
try:
    for _ in range(200):
        if os.fork() == 0:
            time.sleep(2)
            os._exit(0)
        n += 1
except OSError:
    pass
print("forked", n, flush=True)
while True:
    try:
        os.wait()
    except ChildProcessError:
        break
"#,
    );
    let sha = repo.commit("fork");
    let mut build = Build::new(&sha);
    build.settings.sandbox.limits.processes = 50;
    build.settings.sandbox.limits.file_size = 1 << 20;
    let r = build.run(&repo.url(), &sha);
    let log = log_of(&r);
    let forked: u32 = log
        .lines()
        .find_map(|l| l.strip_prefix("forked "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("{log}"));
    assert!(forked < 50, "{forked} forks under a limit of 50: {log}");
    assert!(log.contains("big=1048576"), "{log}");

    let (repo, sha) = generic("yes");
    let mut build = Build::new(&sha);
    build.settings.sandbox.limits.output = 1 << 20;
    let started = Instant::now();
    let e = build.run(&repo.url(), &sha).unwrap_err();
    assert!(matches!(e, BuildError::LimitExceeded { .. }), "{e:?}");
    assert!(e.to_string().contains("output limit of 1 MiB"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(e.log().len() < 3 << 20);
}

#[test]
fn a_build_that_fills_the_disk_is_stopped() {
    let (repo, sha) = generic(
        "i=0; while [ $i -lt 400 ]; do head -c 100000 /dev/zero > f$i; i=$((i+1)); sleep 0.02; done",
    );
    let mut build = Build::new(&sha);
    build.settings.sandbox.limits.disk = 8 << 20;
    let e = build.run(&repo.url(), &sha).unwrap_err();
    assert!(
        e.to_string().contains("disk limit of 8 MiB"),
        "{e}\n{}",
        e.log()
    );
}

#[test]
fn inputs_that_are_symlinks_are_refused() {
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("secret.txt");
    std::fs::write(&secret, "flask==99.0-SECRET\n").unwrap();
    let mut repo = TestRepo::new();
    repo.write(
        "slipway.toml",
        "type = \"python\"\n[run]\ncommand = \"python3 app.py\"\n",
    )
    .write("app.py", "\n")
    .symlink("requirements.txt", &secret.display().to_string());
    let sha = repo.commit("linked requirements");
    let e = Build::new(&sha).run(&repo.url(), &sha).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("requirements.txt") && msg.contains("symlink"),
        "{msg}"
    );
    assert!(!e.log().contains("SECRET"), "{}", e.log());

    let mut repo = TestRepo::new();
    repo.write("real.toml", "type = \"generic\"\n[run]\ncommand = \"x\"\n")
        .symlink("slipway.toml", "real.toml");
    let sha = repo.commit("linked slipway.toml");
    let e = Build::new(&sha).run(&repo.url(), &sha).unwrap_err();
    assert!(e.to_string().contains("symlink"), "{e}");

    // `[build] include` does not move things through a symlinked directory.
    let mut repo = TestRepo::new();
    repo.write(
        "slipway.toml",
        "type = \"generic\"\n[build]\ncommand = \"true\"\ninclude = [\"dist/app\"]\n[run]\ncommand = \"x\"\n",
    )
    .write("real/app", "x\n")
    .symlink("dist", "real");
    let sha = repo.commit("linked include");
    let e = Build::new(&sha).run(&repo.url(), &sha).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("`dist` is a symlink"), "{msg}");
}

/// A remote that accepts connections and never says a word.
// A setup helper: it panics on setup failures, like the tests calling it.
#[allow(clippy::unwrap_used)]
fn silent_remote() -> (std::net::SocketAddr, std::thread::JoinHandle<()>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = std::thread::spawn(move || {
        let mut held = Vec::new();
        // Accepts a few connections, then keeps them open until the test
        // process ends.
        for stream in listener.incoming().take(4) {
            let Ok(mut s) = stream else { break };
            let mut buf = [0u8; 1024];
            let _ = s.set_read_timeout(Some(Duration::from_millis(50)));
            let _ = s.read(&mut buf);
            held.push(s);
        }
        std::thread::sleep(Duration::from_secs(120));
    });
    (addr, handle)
}

#[test]
fn a_remote_that_never_answers_fails_the_build_after_the_timeout() {
    let (addr, _server) = silent_remote();
    let url = format!("git://{addr}/app");
    let sha = "0123456789abcdef0123456789abcdef01234567";
    let mut build = Build::new(sha);
    build.settings.git_timeouts.stall = Duration::from_secs(2);
    build.settings.git_timeouts.connect = Duration::from_secs(2);
    let started = Instant::now();
    let e = build.run(&url, sha).unwrap_err();
    let took = started.elapsed();
    assert!(
        e.to_string().contains("did not answer in time"),
        "{e} after {took:?}"
    );
    assert!(took < Duration::from_secs(60), "{took:?}");

    let started = Instant::now();
    let e = packer::resolve_ref(&build.settings, &url, "main", "main").unwrap_err();
    assert!(e.to_string().contains("did not answer in time"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(60));
}
