//! TLS on every connection, with a private CA made by the test: AppTracker
//! serves HTTPS itself; the `deploy` CLI, a packer worker, grabbers and
//! versioncheckers (separate processes, given the CA with `--ca-file` or
//! `SLIPWAY_CA_FILE`) work through it; the bus is Redis over TLS
//! (`rediss://`); artifacts live in an S3-compatible store behind a TLS
//! proxy, so grabbers download presigned `https://` URLs. Clients without
//! the CA refuse the server and say how to fix it.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use deploy::{AppName, AuditQuery, Client, Cluster, CreateToken, DriftQuery, DriftState};
use slipway_tests::procs::{Proc, TrackerProc, packer_keygen, start_apptracker_tls};
use slipway_tests::services::{OwnRedis, s3};
use slipway_tests::tls::{TestCa, TlsProxy};
use slipway_tests::{APP_PORT, AppRepo, commit_hello, free_port, get_app, poll};

const APPTRACKER: &str = env!("CARGO_BIN_EXE_slipway-apptracker");
const GRABBER: &str = env!("CARGO_BIN_EXE_slipway-grabber");
const PACKER: &str = env!("CARGO_BIN_EXE_slipway-packer");
const VERSIONCHECKER: &str = env!("CARGO_BIN_EXE_slipway-versionchecker");
const DEPLOY: &str = env!("CARGO_BIN_EXE_slipway-deploy");

/// Runs a command to its end: (success, stdout, stderr).
async fn run(
    exe: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> anyhow::Result<(bool, String, String)> {
    let mut cmd = tokio::process::Command::new(exe);
    cmd.args(args)
        .env_remove("SLIPWAY_CA_FILE")
        .env_remove("SLIPWAY_TOKEN")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = tokio::time::timeout(Duration::from_secs(180), cmd.output()).await??;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// Whether `secret` appears in the environment block of process `pid`
/// (what `/proc/<pid>/environ` shows).
fn environ_holds(pid: u32, secret: &str) -> anyhow::Result<bool> {
    let env = std::fs::read(format!("/proc/{pid}/environ"))?;
    Ok(env.windows(secret.len()).any(|w| w == secret.as_bytes()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_binary_works_over_https_with_a_private_ca() -> anyhow::Result<()> {
    let Some(s3) = s3().await else {
        return Ok(());
    };
    slipway_tests::init_tracing();
    let dir = tempfile::Builder::new().prefix("slipway-tls-").tempdir()?;
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs)?;

    // The private PKI: one CA, a certificate for each server.
    let ca = TestCa::new(&dir.path().join("pki"))?;
    let ca_file = ca.ca_file.display().to_string();
    let tracker_cert = ca.server_cert("apptracker", &["localhost", "127.0.0.1"])?;
    let Some(redis) = OwnRedis::start_tls(&ca.server_cert("redis", &["127.0.0.1"])?).await else {
        return Ok(());
    };
    assert!(redis.url().starts_with("rediss://"));
    // s3s-fs speaks plain HTTP: a TLS proxy in front of it is the endpoint.
    let s3_plain: SocketAddr = s3.endpoint.trim_start_matches("http://").parse()?;
    let s3_proxy = TlsProxy::start(&ca.server_cert("s3", &["127.0.0.1"])?, s3_plain).await?;

    let prefix = format!("tls-{}", std::process::id());
    let bucket = s3.config().bucket;
    let extra = format!(
        "redis_url = \"{}\"\nredis_prefix = \"{prefix}\"\nbuilder = false\n\n[s3]\nbucket = \"{bucket}\"\nendpoint_url = \"{}\"\nregion = \"us-east-1\"\nforce_path_style = true\ncreate_bucket = true\n",
        redis.url(),
        s3_proxy.url(),
    );
    let TrackerProc {
        proc: mut tracker,
        url: server,
        client,
        ..
    } = start_apptracker_tls(
        APPTRACKER,
        dir.path(),
        &logs,
        &extra,
        &tracker_cert,
        &ca.ca_file,
    )
    .await?;
    assert!(server.starts_with("https://"), "{server}");
    assert!(
        s3_proxy.connections() > 0,
        "AppTracker reached its bucket through the TLS proxy"
    );

    let token = |name: &str, role: &str, cluster: Option<&str>| {
        let client = client.clone();
        let (name, role) = (name.to_string(), role.to_string());
        let cluster = cluster.map(Cluster::parse).transpose();
        async move {
            anyhow::Ok(
                client
                    .create_token(&CreateToken {
                        name,
                        role,
                        cluster: cluster?,
                        host: None,
                    })
                    .await?
                    .token,
            )
        }
    };
    let builders = token("builders", "builder", None).await?;
    let alpha = token("agents-alpha", "agent", Some("alpha")).await?;
    let deployer = token("ops-cli", "deployer", None).await?;

    // A packer worker, given the CA by flag.
    let signing_key = dir.path().join("packer-signing.key");
    let packer_key = packer_keygen(PACKER, &signing_key).await?;
    let mut packer = Proc::spawn(
        "packer",
        PACKER,
        &[
            "worker",
            "--server",
            &server,
            "--ca-file",
            &ca_file,
            "--poll",
            "200ms",
        ]
        .map(String::from),
        &[
            ("SLIPWAY_TOKEN", builders.clone()),
            (
                "SLIPWAY_PACKER_CACHE",
                dir.path().join("packer-cache").display().to_string(),
            ),
            ("SLIPWAY_SIGNING_KEY", signing_key.display().to_string()),
        ],
        &logs,
    )?;

    // Two grabbers: a-1 on the rediss:// bus with --ca-file, a-2 on
    // AppTracker's https event stream with SLIPWAY_CA_FILE. Each host has a
    // versionchecker agent too.
    let root = dir.path().join("hosts");
    std::fs::create_dir_all(&root)?;
    std::fs::write(root.join("trusted.keys"), format!("{packer_key}\n"))?;
    let mut procs = Vec::new();
    let mut ports = Vec::new();
    for (host, via_redis) in [("a-1", true), ("a-2", false)] {
        let port = free_port()?;
        ports.push(port);
        let host_root = root.join(host).display().to_string();
        let mut args: Vec<String> = [
            "--server",
            &server,
            "--cluster",
            "alpha",
            "--host",
            host,
            "--root",
            &host_root,
            "--port-offset",
            &(i32::from(port) - i32::from(APP_PORT)).to_string(),
            "--heartbeat",
            "500ms",
            "--stop-apps-on-exit",
            "--trusted-keys-file",
            &root.join("trusted.keys").display().to_string(),
        ]
        .map(String::from)
        .to_vec();
        let mut env = vec![("SLIPWAY_TOKEN", alpha.clone())];
        if via_redis {
            args.extend(
                [
                    "--redis",
                    &redis.url(),
                    "--redis-prefix",
                    &prefix,
                    "--ca-file",
                    &ca_file,
                ]
                .map(String::from),
            );
        } else {
            env.push(("SLIPWAY_CA_FILE", ca_file.clone()));
        }
        procs.push(Proc::spawn(host, GRABBER, &args, &env, &logs)?);
        let checker_args = [
            "agent",
            "--server",
            &server,
            "--cluster",
            "alpha",
            "--host",
            host,
            "--root",
            &host_root,
            "--interval",
            "1s",
        ]
        .map(String::from);
        let mut checker_env = vec![("SLIPWAY_TOKEN", alpha.clone())];
        let mut checker_args = checker_args.to_vec();
        if via_redis {
            checker_args.extend(["--ca-file".to_string(), ca_file.clone()]);
        } else {
            checker_env.push(("SLIPWAY_CA_FILE", ca_file.clone()));
        }
        procs.push(Proc::spawn(
            &format!("versionchecker-{host}"),
            VERSIONCHECKER,
            &checker_args,
            &checker_env,
            &logs,
        )?);
    }
    let tails = |procs: &[Proc]| {
        procs
            .iter()
            .map(|p| format!("--- {}\n{}", p.name, p.tail()))
            .collect::<Vec<_>>()
            .join("\n")
    };
    poll(Duration::from_secs(30), || async {
        Ok(client.hosts().await?.len() == 2)
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e:#}\n{}", tails(&procs)))?;

    // The CLI registers nothing here (a local path is an admin's call);
    // it releases, over https, and follows the deploy to its end.
    let repo = AppRepo::new(dir.path().join("repo"))?;
    commit_hello(&repo, "A", true)?;
    client
        .register_app(&deploy::RegisterApp::new(
            AppName::parse("hello")?,
            repo.path.display().to_string(),
        ))
        .await?;
    let (ok, stdout, stderr) = run(
        DEPLOY,
        &[
            "--server",
            &server,
            "--ca-file",
            &ca_file,
            "release",
            "hello",
            "main",
            "--cluster",
            "alpha",
            "--wait",
        ],
        &[("SLIPWAY_TOKEN", &deployer)],
    )
    .await?;
    assert!(
        ok,
        "deploy release over https failed:\n{stdout}\n{stderr}\n--- packer\n{}\n{}",
        packer.tail(),
        tails(&procs)
    );
    let builds = client.builds(&AppName::parse("hello")?).await?;
    let version = builds[0].version.clone();
    for port in &ports {
        assert_eq!(get_app(*port).await?, format!("A {version}\n"));
    }

    // The artifact the grabbers fetched is a presigned https URL of the
    // store behind the TLS proxy.
    let as_agent = Client::with_trust(
        server.clone(),
        &deploy::tls::Trust::with_ca_file(&ca.ca_file)?,
    )?
    .with_token(alpha.clone());
    let desired = as_agent
        .desired_state(&Cluster::parse("alpha")?, &deploy::HostName::parse("a-1")?)
        .await?;
    let url = &desired.apps[0].artifact.url;
    assert!(
        url.starts_with(&format!("{}/{bucket}/", s3_proxy.url())),
        "{url}"
    );

    // Both versioncheckers report over https: the drift table sees both
    // hosts in sync, and the Nagios check with --ca-file says OK.
    poll(Duration::from_secs(30), || async {
        let report = client
            .drift(&DriftQuery {
                app: Some("hello".into()),
                cluster: Some("alpha".into()),
                state: None,
            })
            .await?;
        Ok(report.hosts.len() == 2 && report.hosts.iter().all(|h| h.state == DriftState::InSync))
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e:#}\n{}", tails(&procs)))?;
    let (_, line, _) = run(
        VERSIONCHECKER,
        &[
            "check",
            "--server",
            &server,
            "--ca-file",
            &ca_file,
            "--app",
            "hello",
        ],
        &[("SLIPWAY_TOKEN", &deployer)],
    )
    .await?;
    assert!(line.starts_with("SLIPWAY DRIFT OK"), "{line}");

    // The dashboard calls the API at its https public_url, trusting the CA
    // from tls.ca_file.
    let http = deploy::tls::Trust::with_ca_file(&ca.ca_file)?.http_client()?;
    let page = http
        .get(format!("{server}/"))
        .bearer_auth(&deployer)
        .send()
        .await?;
    assert_eq!(page.status(), 200);
    assert!(page.text().await?.contains("hello"));

    // The audit log still records where requests came from.
    let audit = client
        .audit(&AuditQuery {
            actor: Some("ops-cli".into()),
            ..AuditQuery::default()
        })
        .await?;
    assert!(
        audit
            .iter()
            .any(|e| e.method == "POST" && e.peer.as_deref() == Some("127.0.0.1")),
        "{audit:#?}"
    );

    // The daemons took their token out of their environment.
    for p in std::iter::once(&packer).chain(procs.iter().filter(|p| p.name.starts_with("v"))) {
        let pid = p.pid().expect("running");
        let token = if p.name == "packer" {
            &builders
        } else {
            &alpha
        };
        assert!(
            !environ_holds(pid, token)?,
            "{} still has its token in /proc/{pid}/environ: {}",
            p.name,
            p.tail()
        );
    }

    // Without the CA, every client refuses the server and says what to do.
    let (ok, _, stderr) = run(
        DEPLOY,
        &["--server", &server, "apps"],
        &[("SLIPWAY_TOKEN", &deployer)],
    )
    .await?;
    assert!(!ok);
    assert!(
        stderr.contains("certificate is not trusted")
            && stderr.contains("--ca-file")
            && stderr.contains("SLIPWAY_CA_FILE"),
        "{stderr}"
    );
    let (_, line, _) = run(
        VERSIONCHECKER,
        &["check", "--server", &server],
        &[("SLIPWAY_TOKEN", &deployer)],
    )
    .await?;
    assert!(
        line.starts_with("SLIPWAY DRIFT UNKNOWN") && line.contains("not trusted"),
        "{line}"
    );
    let untrusting = Proc::spawn(
        "grabber-without-ca",
        GRABBER,
        &[
            "--server",
            &server,
            "--cluster",
            "alpha",
            "--host",
            "a-3",
            "--root",
            &root.join("a-3").display().to_string(),
            "--trusted-keys-file",
            &root.join("trusted.keys").display().to_string(),
        ]
        .map(String::from),
        &[("SLIPWAY_TOKEN", alpha.clone())],
        &logs,
    )?;
    poll(Duration::from_secs(30), || async {
        let log = std::fs::read_to_string(&untrusting.log)?;
        Ok(log.contains("certificate is not trusted") && log.contains("--ca-file"))
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e:#}\n{}", untrusting.tail()))?;
    assert_eq!(client.hosts().await?.len(), 2, "a-3 never got through");
    drop(untrusting);

    // Everything stops cleanly, AppTracker's HTTPS server included.
    for p in &mut procs {
        assert!(p.stop().await?, "{} exits cleanly: {}", p.name, p.tail());
    }
    assert!(packer.stop().await?, "{}", packer.tail());
    assert!(tracker.stop().await?, "{}", tracker.tail());
    Ok(())
}

/// A bad TLS setting stops AppTracker at start-up, naming the setting and
/// the file.
#[tokio::test]
async fn apptracker_refuses_a_broken_tls_config() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let ca = TestCa::new(&dir.path().join("pki"))?;
    let cert = ca.server_cert("server", &["127.0.0.1"])?;
    let other = ca.server_cert("other", &["127.0.0.1"])?;
    let port = free_port()?;
    let data = dir.path().join("data").display().to_string();
    let serve = |tls: String| {
        let config = dir.path().join("apptracker.toml");
        let data = data.clone();
        async move {
            std::fs::write(
                &config,
                format!("listen = \"127.0.0.1:{port}\"\ndata_dir = \"{data}\"\n\n[tls]\n{tls}"),
            )?;
            let config = config.display().to_string();
            run(APPTRACKER, &["serve", "--config", &config], &[]).await
        }
    };
    let quote = |p: &Path| format!("\"{}\"", p.display());

    // The key of another certificate.
    let (ok, _, stderr) = serve(format!(
        "cert_file = {}\nkey_file = {}\n",
        quote(&cert.cert_file),
        quote(&other.key_file)
    ))
    .await?;
    assert!(!ok);
    assert!(
        stderr.contains("tls.key_file") && stderr.contains("other.key"),
        "{stderr}"
    );
    // A certificate without its key.
    let (ok, _, stderr) = serve(format!("cert_file = {}\n", quote(&cert.cert_file))).await?;
    assert!(!ok);
    assert!(stderr.contains("tls.key_file is not"), "{stderr}");
    // A CA file that is not one.
    let (ok, _, stderr) = serve(format!("ca_file = {}\n", quote(&cert.key_file))).await?;
    assert!(!ok);
    assert!(
        stderr.contains("tls.ca_file")
            && stderr.contains("server.key")
            && stderr.contains("no certificate"),
        "{stderr}"
    );
    Ok(())
}

/// `deploy --token VALUE` is refused before anything is sent: the value
/// would be visible to every user in `ps` and stay in the shell's history.
#[tokio::test]
async fn the_cli_refuses_a_token_on_its_command_line() -> anyhow::Result<()> {
    let (ok, _, stderr) = run(
        DEPLOY,
        &[
            "--server",
            "http://127.0.0.1:9",
            "--token",
            "slp_secret",
            "apps",
        ],
        &[],
    )
    .await?;
    assert!(!ok);
    assert!(
        stderr.contains("--token is refused")
            && stderr.contains("--token-file")
            && !stderr.contains("slp_secret"),
        "{stderr}"
    );
    Ok(())
}
