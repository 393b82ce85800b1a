//! `slipway dev`: the whole platform on one machine with the embedded
//! defaults: AppTracker, the in-process packer, three grabbers (`local-1..3`
//! of cluster `local`) with their versioncheckers, and the example apps as
//! git repositories.

use std::path::{Path, PathBuf};

use anyhow::Context;
use deploy::AppName;
use deploy::RegisterApp;
use tokio_util::sync::CancellationToken;

use crate::Platform;
use crate::repos::{EXAMPLES_DIR, example_repos};

/// What `slipway dev` runs.
#[derive(Debug, Clone)]
pub struct DevOptions {
    pub config: apptracker::Config,
    /// Where the example apps' sources are.
    pub examples: PathBuf,
    /// How many local hosts to run.
    pub hosts: u16,
    /// Host `local-N` shifts every app port by `N * port_step`.
    pub port_step: u16,
}

impl Default for DevOptions {
    fn default() -> Self {
        Self {
            config: apptracker::Config::default(),
            examples: PathBuf::from(EXAMPLES_DIR),
            hosts: 3,
            port_step: 100,
        }
    }
}

/// Runs the platform until `shutdown`.
pub async fn run(opts: DevOptions, shutdown: CancellationToken) -> anyhow::Result<()> {
    let data_dir = opts.config.data_dir.clone();
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create {}", data_dir.display()))?;
    let data_dir = data_dir
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", data_dir.display()))?;
    let repos = example_repos(&opts.examples, &data_dir.join("repos"))?;

    let mut config = opts.config.clone();
    config.data_dir = data_dir.clone();
    let step = i32::from(opts.port_step);
    let platform = Platform::builder()
        .dir(&data_dir)
        .config(config)
        .token_prefix("dev")
        .hosts((1..=opts.hosts).map(|n| format!("local-{n}")))
        .port_offsets(move |i| {
            let n = i32::try_from(i + 1).context("too many hosts")?;
            Ok(n * step)
        })
        // Each host's versionchecker too, so the drift table has reports.
        .versioncheckers(true)
        .wait_for_hosts(None)
        .start()
        .await?;
    // Stopped at once (a second Ctrl-C, or past the stop timeout), the
    // platform still takes its apps down with it.
    let roots: Vec<PathBuf> = platform.hosts.iter().map(|h| h.root.clone()).collect();
    deploy::binary::on_forced_exit(move || {
        for root in &roots {
            crate::platform::kill_apps_under(root);
        }
    });
    // A fresh admin token at every start: only its hash is stored, so the
    // old plaintext cannot be shown again.
    let token_file = data_dir.join("admin.token");
    write_secret(&token_file, &platform.admin_token)?;

    for (name, path) in &repos {
        let req = RegisterApp::new(name.clone(), path.display().to_string());
        match platform.client.register_app(&req).await {
            Ok(_) => tracing::info!(app = %name, "registered example app"),
            Err(e) if e.error_code() == Some(deploy::ErrorCode::Conflict) => {}
            Err(e) => return Err(anyhow::Error::new(e).context("cannot register example apps")),
        }
    }

    print_tour(
        &platform.base_url,
        &token_file,
        &repos,
        opts.hosts,
        opts.port_step,
    );
    shutdown.cancelled().await;
    platform.shutdown().await
}

/// Writes a secret readable by its owner only.
fn write_secret(path: &Path, secret: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    writeln!(f, "{secret}").with_context(|| format!("cannot write {}", path.display()))
}

fn print_tour(
    base_url: &str,
    token_file: &Path,
    repos: &[(AppName, PathBuf)],
    hosts: u16,
    step: u16,
) {
    let apps: Vec<&str> = repos.iter().map(|(n, _)| n.as_str()).collect();
    println!(
        "\nSlipway is running.\n\n  dashboard   {base_url}/  (sign in with the admin token)\n  token       {}  (admin; new at every start)\n  api         {base_url}/api/v1\n  apps        {}\n  hosts       local-1..{hosts} (cluster `local`); app ports are shifted by {step} per host\n\nTry:\n  export SLIPWAY_TOKEN=$(cat {})\n  cargo run -q -p deploy-cli -- release hello-python main --cluster local --wait\n  cargo run -q -p deploy-cli -- status 1\n  cargo run -q -p deploy-cli -- hosts\n  curl http://127.0.0.1:{}/      # hello-python on local-1\n",
        token_file.display(),
        apps.join(", "),
        token_file.display(),
        8000 + u32::from(step)
    );
}
