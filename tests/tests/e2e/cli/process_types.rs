//! `[processes]` end to end: a release with a web process and two workers,
//! built by packer, run by a grabber, shown by `deploy status` (the host's
//! `done` row names each process) and `deploy hosts` (each process with
//! its pid, and the restart of a worker killed under it).

use std::time::{Duration, Instant};

use slipway_tests::{AppRepo, hello_app, platform};

use super::{admin, first_version};

/// Polls `deploy hosts` until `re` matches, or returns what it printed last.
async fn hosts_until(p: &slipway_tests::Platform, re: &regex::Regex) -> anyhow::Result<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let hosts = admin(p, &["hosts"]).await?.ok();
        if re.is_match(&hosts) || Instant::now() > deadline {
            return Ok(hosts);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_web_and_two_workers_show_in_status_and_hosts_and_a_killed_worker_restarts()
-> anyhow::Result<()> {
    let p = platform().hosts(&["local-1"]).start().await?;
    let repo = AppRepo::new(p.dir().join("repo"))?;
    let mut files = hello_app("A", true);
    files[0]
        .1
        .push_str("\n[processes.worker]\ncommand = \"echo worker $SLIPWAY_APP; exec sleep 1000\"\ncount = 2\n");
    let refs: Vec<(&str, &str)> = files.iter().map(|(n, c)| (*n, c.as_str())).collect();
    let sha = repo.commit(&refs, "A with workers")?;
    let git_url = repo.path.display().to_string();
    admin(&p, &["register", "hello", &git_url]).await?.ok();
    let version = first_version(&sha);
    admin(&p, &["build", "hello", "--wait"]).await?.ok();
    let out = admin(
        &p,
        &["release", "hello", &version, "--cluster", "local", "--wait"],
    )
    .await?
    .ok();
    assert!(
        out.ends_with(&format!("deploy 1 {version}: succeeded\n")),
        "{out}"
    );

    // The deploy's host row names each process.
    let status = admin(&p, &["status", "1"]).await?.ok();
    let row =
        regex::Regex::new(r"done .*running \S+ \(pid \d+, worker\.1 pid \d+, worker\.2 pid \d+\)")?;
    assert!(row.is_match(&status), "{status}");

    // `deploy hosts` shows each process of the app.
    let port = p.host("local-1").port;
    let line = regex::Regex::new(&format!(
        r"hello@{version}:{port}\[web\.1=\d+:{port} worker\.1=(\d+) worker\.2=\d+\]\n$"
    ))?;
    let hosts = hosts_until(&p, &line).await?;
    let worker = line
        .captures(&hosts)
        .and_then(|c| c[1].parse::<i32>().ok())
        .unwrap_or_else(|| panic!("no worker.1 in {hosts:?}"));

    // A worker killed under the grabber is started again, and says so.
    nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(worker),
        nix::sys::signal::Signal::SIGKILL,
    )?;
    let restarted = regex::Regex::new(&format!(
        r"hello@{version}:{port}\[web\.1=\d+:{port} worker\.1=(\d+)\(1 restarts\) worker\.2=\d+\]\n$"
    ))?;
    let hosts = hosts_until(&p, &restarted).await?;
    let again = restarted
        .captures(&hosts)
        .and_then(|c| c[1].parse::<i32>().ok())
        .unwrap_or_else(|| panic!("worker.1 was not restarted: {hosts:?}"));
    assert_ne!(again, worker);
    p.shutdown().await
}
