//! Builds cannot reach the control plane's secrets, and cannot exhaust it.
//!
//! - The malicious build of issue 15, built by AppTracker's in-process
//!   builder (`apptracker serve`) and by a `packer worker`: it cannot read
//!   the signing key, the database, the admin token file or the builder's
//!   environment, runs as an unprivileged user, and cannot write outside its
//!   checkout and cache.
//! - `yes` and output without a newline: AppTracker's resident memory stays
//!   bounded while the build prints GBs; the build ends at its output limit
//!   or its timeout, saying which.
//! - A worker whose log is over the API's body limit sends it cut, and the
//!   build and its deploy succeed instead of looping.
//! - A git remote that accepts connections and never answers fails a ref
//!   resolution (`POST /builds`) after the configured timeout.

use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine;
use deploy::{AppName, Build, BuildStatus, CreateToken, RegisterApp, RequestBuild};
use slipway_tests::procs::{Proc, TrackerProc, packer_keygen, start_apptracker_with_env};
use slipway_tests::{AppRepo, platform, poll};

const APPTRACKER: &str = env!("CARGO_BIN_EXE_slipway-apptracker");
const PACKER: &str = env!("CARGO_BIN_EXE_slipway-packer");

/// A variable only the builder's own environment holds.
const ENV_SECRET_NAME: &str = "SLIPWAY_TEST_ENV_SECRET";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn random_tag() -> anyhow::Result<String> {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    Ok(hex::encode(b))
}

/// The build of issue 15, aimed at `data_dir` (and `key_file`): it prints
/// what it can read, tries to write outside its checkout, and succeeds.
fn malicious_command(data_dir: &Path, key_file: &Path) -> String {
    let data = data_dir.display();
    let key = key_file.display();
    format!(
        "cat /proc/$PPID/cwd/.slipway/signing.key | base64; id; tr '\\0' '\\n' < /proc/$PPID/environ; \
         for p in /proc/[0-9]*; do echo \"== $p\"; tr '\\0' '\\n' < $p/environ; ls -l $p/cwd $p/root; done; \
         ls -l /proc/$$/fd; \
         ls -la {data}; cat {key} | base64; cat {data}/signing.key | base64; \
         head -c 64 {data}/apptracker.db | base64; cat {data}/admin.token; \
         echo owned > {data}/owned && echo WROTE-DATA; \
         echo owned > /owned && echo WROTE-ROOT; \
         echo owned > /usr/owned && echo WROTE-USR; \
         echo owned > /etc/owned && echo WROTE-ETC; \
         echo ok > in-checkout && echo WROTE-CHECKOUT; \
         echo ok > /tmp/scratch && echo WROTE-TMP; \
         echo END-OF-PROBE"
    )
}

/// The repository of an app whose `[build] command` is `command`.
fn commit_app(dir: &Path, command: &str) -> anyhow::Result<AppRepo> {
    let repo = AppRepo::new(dir.to_path_buf())?;
    let toml = format!(
        "type = \"generic\"\n[build]\ncommand = '''{command}'''\ntimeout = \"120s\"\n[run]\ncommand = \"sleep 1000\"\n"
    );
    repo.commit(&[("slipway.toml", &toml)], "build")?;
    Ok(repo)
}

async fn build_to_end(client: &deploy::Client, app: &AppName) -> anyhow::Result<Build> {
    let b = client.request_build(app, &RequestBuild::default()).await?;
    poll(Duration::from_secs(180), || async {
        Ok(client.build(b.id).await?.status.is_terminal())
    })
    .await?;
    Ok(client.build(b.id).await?)
}

/// Checks the malicious build's log: it ran, as someone else than root,
/// and none of `secrets` (nor their base64) is in it.
fn assert_contained(log: &str, secrets: &[(&str, Vec<u8>)], outside_file: &Path) {
    let uid_line = log
        .lines()
        .find(|l| l.starts_with("uid="))
        .unwrap_or_else(|| panic!("`id` printed nothing: {log}"));
    assert!(!uid_line.starts_with("uid=0("), "{uid_line}");
    assert!(!uid_line.starts_with("uid=0 "), "{uid_line}");
    for (what, bytes) in secrets {
        let text = String::from_utf8_lossy(bytes);
        assert!(
            !log.contains(text.trim()),
            "the build log holds the {what}: {log}"
        );
        let encoded = b64(bytes);
        assert!(
            !log.contains(&encoded[..encoded.len().min(40)]),
            "the build log holds the {what} (base64): {log}"
        );
    }
    // Each marker is a line of its own when the write worked (the
    // command line, also in the log, has them inside).
    let said = |marker: &str| log.lines().any(|l| l.trim() == marker);
    for marker in ["WROTE-DATA", "WROTE-ROOT", "WROTE-USR", "WROTE-ETC"] {
        assert!(!said(marker), "{marker}: {log}");
    }
    for marker in ["WROTE-CHECKOUT", "WROTE-TMP", "END-OF-PROBE"] {
        assert!(said(marker), "{marker}: {log}");
    }
    assert!(
        !outside_file.exists(),
        "the build wrote {}",
        outside_file.display()
    );
    // The only open descriptors are its own output and the listing.
    for line in log.lines().filter(|l| l.contains(" -> ")) {
        assert!(
            !line.contains("apptracker.db") && !line.contains("signing.key"),
            "{line}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_malicious_build_in_apptracker_reaches_none_of_its_secrets() -> anyhow::Result<()> {
    slipway_tests::init_tracing();
    let dir = tempfile::Builder::new()
        .prefix("slipway-sandbox-")
        .tempdir()?;
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs)?;
    let env_secret = format!("env-secret-{}", random_tag()?);
    let TrackerProc {
        proc: mut tracker,
        client,
        ..
    } = start_apptracker_with_env(
        APPTRACKER,
        dir.path(),
        &logs,
        "",
        &[(ENV_SECRET_NAME, env_secret.clone())],
    )
    .await?;
    let data = dir.path().join("apptracker");
    // As `slipway dev` keeps it: the admin token in the data directory.
    let admin = client
        .create_token(&CreateToken::new("admin-file", "admin"))
        .await?
        .token;
    let token_file = data.join("admin.token");
    std::fs::write(&token_file, &admin)?;
    std::fs::set_permissions(
        &token_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )?;

    let key = std::fs::read(data.join("signing.key"))?;
    let mut db_header = vec![0u8; 64];
    std::fs::File::open(data.join("apptracker.db"))?.read_exact(&mut db_header)?;
    assert!(db_header.starts_with(b"SQLite format 3"));

    let repo = commit_app(
        &dir.path().join("evil"),
        &malicious_command(&data, &data.join("signing.key")),
    )?;
    let app = AppName::parse("evil")?;
    client
        .register_app(&RegisterApp::new(
            app.clone(),
            repo.path.display().to_string(),
        ))
        .await?;
    let b = build_to_end(&client, &app).await?;
    assert_eq!(b.status, BuildStatus::Succeeded, "{b:#?}");
    assert!(
        b.log.contains("sandbox: bubblewrap"),
        "the log says how it ran: {}",
        b.log
    );
    assert_contained(
        &b.log,
        &[
            ("signing key", key),
            ("database header", b"SQLite format 3".to_vec()),
            ("admin token", admin.into_bytes()),
            ("builder's environment", env_secret.into_bytes()),
        ],
        &data.join("owned"),
    );
    assert!(tracker.stop().await?, "{}", tracker.tail());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_malicious_build_in_a_packer_worker_reaches_none_of_its_secrets() -> anyhow::Result<()> {
    slipway_tests::init_tracing();
    let dir = tempfile::Builder::new()
        .prefix("slipway-sandbox-")
        .tempdir()?;
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs)?;
    let TrackerProc {
        proc: mut tracker,
        url,
        client,
        ..
    } = start_apptracker_with_env(APPTRACKER, dir.path(), &logs, "builder = false\n", &[]).await?;
    let token = client
        .create_token(&CreateToken::new("builders", "builder"))
        .await?
        .token;
    let worker_dir = dir.path().join("worker");
    std::fs::create_dir_all(&worker_dir)?;
    let key_file = worker_dir.join("signing.key");
    packer_keygen(PACKER, &key_file).await?;
    let key = std::fs::read(&key_file)?;
    let env_secret = format!("env-secret-{}", random_tag()?);

    let repo = commit_app(
        &dir.path().join("evil"),
        &malicious_command(&worker_dir, &key_file),
    )?;
    let app = AppName::parse("evil")?;
    client
        .register_app(&RegisterApp::new(
            app.clone(),
            repo.path.display().to_string(),
        ))
        .await?;
    let mut worker = Proc::spawn(
        "worker",
        PACKER,
        &[
            "worker", "--server", &url, "--poll", "200ms", "--name", "w1",
        ]
        .map(String::from),
        &[
            ("SLIPWAY_TOKEN", token.clone()),
            ("SLIPWAY_SIGNING_KEY", key_file.display().to_string()),
            (
                "SLIPWAY_PACKER_CACHE",
                worker_dir.join("cache").display().to_string(),
            ),
            (ENV_SECRET_NAME, env_secret.clone()),
        ],
        &logs,
    )?;
    let b = build_to_end(&client, &app)
        .await
        .map_err(|e| anyhow::anyhow!("{e}\n{}", worker.tail()))?;
    assert_eq!(b.status, BuildStatus::Succeeded, "{b:#?}");
    assert_contained(
        &b.log,
        &[
            ("worker's signing key", key),
            ("worker's token", token.into_bytes()),
            ("worker's environment", env_secret.into_bytes()),
        ],
        &worker_dir.join("owned"),
    );
    assert!(worker.stop().await?, "{}", worker.tail());
    assert!(tracker.stop().await?, "{}", tracker.tail());
    Ok(())
}

/// The resident memory of a process, in bytes.
fn rss(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no VmRSS for {pid}"))?;
    Ok(kb * 1024)
}

/// The bytes a build printed, from the marker the packer leaves when it
/// keeps only the end of a command's output.
fn dropped_bytes(log: &str) -> u64 {
    log.split("[... ")
        .filter_map(|rest| rest.split(' ').next()?.parse::<u64>().ok())
        .max()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn endless_output_keeps_apptracker_memory_bounded() -> anyhow::Result<()> {
    slipway_tests::init_tracing();
    let dir = tempfile::Builder::new()
        .prefix("slipway-sandbox-")
        .tempdir()?;
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs)?;
    // An output limit far above what the builds print in their time, so the
    // memory under test is the streaming path's, not the limit's doing.
    let TrackerProc {
        proc: mut tracker,
        client,
        ..
    } = start_apptracker_with_env(
        APPTRACKER,
        dir.path(),
        &logs,
        "[builder]\nmax_output_mib = 1000000\n",
        &[],
    )
    .await?;
    let pid = tracker.pid().ok_or_else(|| anyhow::anyhow!("no pid"))?;
    let before = rss(pid)?;
    const BOUND: u64 = 200 << 20;

    for (name, command, timeout) in [
        ("yes", "yes", "25s"),
        ("zeros", "head -c 200000000000 /dev/zero", "25s"),
    ] {
        let repo = AppRepo::new(dir.path().join(name))?;
        let toml = format!(
            "type = \"generic\"\n[build]\ncommand = \"{command}\"\ntimeout = \"{timeout}\"\n[run]\ncommand = \"x\"\n"
        );
        repo.commit(&[("slipway.toml", &toml)], "loud")?;
        let app = AppName::parse(name)?;
        client
            .register_app(&RegisterApp::new(
                app.clone(),
                repo.path.display().to_string(),
            ))
            .await?;
        let b = client.request_build(&app, &RequestBuild::default()).await?;
        let mut peak = before;
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            peak = peak.max(rss(pid)?);
            if client.build(b.id).await?.status.is_terminal() {
                break;
            }
            anyhow::ensure!(Instant::now() < deadline, "{name} did not end");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let done = client.build(b.id).await?;
        assert_eq!(done.status, BuildStatus::Failed, "{name}");
        let error = done.error.clone().unwrap_or_default();
        assert!(
            error.contains("timeout of 25s ran out") || error.contains("output limit"),
            "{name}: {error}"
        );
        let printed = dropped_bytes(&done.log);
        tracing::info!(
            name,
            printed_mb = printed >> 20,
            rss_growth_mb = (peak.saturating_sub(before)) >> 20,
            "endless output"
        );
        // The test means something only if the output dwarfs the bound.
        assert!(
            printed > 2 * BOUND,
            "{name} printed only {printed} bytes: {}",
            &done.log[..done.log.len().min(2000)]
        );
        assert!(
            peak.saturating_sub(before) < BOUND,
            "{name}: AppTracker grew from {before} to {peak} bytes while the build printed {printed}"
        );
        assert!(done.log.len() < 8 << 20, "{}", done.log.len());
    }
    assert!(tracker.stop().await?, "{}", tracker.tail());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_log_over_the_api_limit_is_cut_and_the_deploy_goes_on() -> anyhow::Result<()> {
    // The worker's key, made first: the hosts trust it.
    let keys = tempfile::tempdir()?;
    let key_file = keys.path().join("worker.key");
    let public_key = packer_keygen(PACKER, &key_file).await?;
    let p = platform()
        .hosts(&["local-1"])
        .configure(|c| c.builder = apptracker::config::BuilderConfig::disabled())
        .trusted_keys(vec![public_key])
        .start()
        .await?;
    let logs = p.dir().join("logs");
    std::fs::create_dir_all(&logs)?;
    // 1.5 MB of control bytes: 9 MB once JSON-escaped, far over the 2 MiB
    // the result route takes.
    let repo = AppRepo::new(p.dir().join("loud"))?;
    let mut files = slipway_tests::hello_app("loud", true);
    files[0].1 = files[0].1.replace(
        "type = \"python\"\n",
        "type = \"generic\"\n[build]\ncommand = \"head -c 1500000 /dev/zero | tr '\\\\0' '\\\\1'; echo; echo built-fine\"\n",
    );
    let refs: Vec<(&str, &str)> = files.iter().map(|(n, c)| (*n, c.as_str())).collect();
    repo.commit(&refs, "loud")?;
    let app = p.register("loud", &repo.path).await?;
    let builder = p
        .client
        .create_token(&CreateToken::new("builders", "builder"))
        .await?
        .token;
    let mut worker = Proc::spawn(
        "worker",
        PACKER,
        &[
            "worker",
            "--server",
            &p.base_url,
            "--poll",
            "200ms",
            "--name",
            "w-loud",
        ]
        .map(String::from),
        &[
            ("SLIPWAY_TOKEN", builder),
            ("SLIPWAY_SIGNING_KEY", key_file.display().to_string()),
            (
                "SLIPWAY_PACKER_CACHE",
                logs.join("cache").display().to_string(),
            ),
        ],
        &logs,
    )?;
    let d = p.release(&app, "main", None).await?;
    let d = p
        .wait_deploy(d.id)
        .await
        .map_err(|e| anyhow::anyhow!("{e}\n{}", worker.tail()))?;
    let builds = p.client.builds(&app).await?;
    assert_eq!(builds.len(), 1);
    let b = &p.client.build(builds[0].id).await?;
    assert_eq!(b.status, BuildStatus::Succeeded, "{}", worker.tail());
    let shown = b.log.replace('\u{1}', "");
    assert!(
        b.log.contains("bytes of the build log left out") && b.log.contains("built-fine"),
        "{} bytes: {shown}",
        b.log.len()
    );
    assert!(b.log.len() < 2 << 20);
    // Built once: the result was accepted, not refused and requeued.
    assert_eq!(b.worker.as_deref(), Some("w-loud"));
    assert!(
        !std::fs::read_to_string(&worker.log)?.contains("cannot report the build"),
        "{}",
        worker.tail()
    );
    // Its deploy went on: the release runs.
    assert_eq!(d.status, deploy::DeployStatus::Succeeded, "{d:#?}");
    let version = d.version.clone().expect("a version");
    assert_eq!(
        slipway_tests::get_app(p.hosts[0].port).await?,
        format!("loud {version}\n")
    );
    assert!(worker.stop().await?, "{}", worker.tail());
    p.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_git_remote_that_never_answers_fails_ref_resolution_after_the_timeout()
-> anyhow::Result<()> {
    let p = platform()
        .configure(|c| {
            c.git.connect_timeout = Duration::from_secs(2);
            c.git.timeout = Duration::from_secs(2);
        })
        .start()
        .await?;
    // Accepts connections and never says a word.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let app = AppName::parse("stalled")?;
    p.client
        .register_app(&RegisterApp::new(app.clone(), format!("git://{addr}/x")))
        .await?;
    let started = Instant::now();
    let e = tokio::time::timeout(
        Duration::from_secs(60),
        p.client.request_build(&app, &RequestBuild::default()),
    )
    .await
    .map_err(|_| anyhow::anyhow!("POST /builds still hangs after 60s"))?
    .unwrap_err();
    assert_eq!(e.code(), Some("bad_ref"), "{e}");
    assert!(e.to_string().contains("did not answer in time"), "{e}");
    tracing::info!(took = ?started.elapsed(), "stalled remote refused");
    silent.abort();
    p.shutdown().await
}
