//! `slipway dev`: the whole platform on one machine with the embedded
//! defaults: AppTracker, the in-process packer, three grabbers (`local-1..3`
//! of cluster `local`) with their versioncheckers, and the example apps as
//! git repositories.

use std::path::{Path, PathBuf};

use anyhow::Context;
use deploy::{AppName, Client, Cluster, HostName, RegisterApp};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use apptracker::{Application, Config};

/// The examples shipped with the source tree.
pub const EXAMPLES_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples");

/// What `slipway dev` runs.
#[derive(Debug, Clone)]
pub struct DevOptions {
    pub config: Config,
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
            config: Config::default(),
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
    // Fresh tokens at every start: only their hashes are stored, so the old
    // plaintexts cannot be shown again.
    let admin = apptracker::bootstrap_token(&config, "dev-admin", "admin", None, true).await?;
    let cluster = Cluster::parse("local")?;
    let agent =
        apptracker::bootstrap_token(&config, "dev-agent-local", "agent", Some(&cluster), true)
            .await?;
    let token_file = data_dir.join("admin.token");
    write_secret(&token_file, &admin)?;
    // The in-process clients trust what AppTracker's own clients do (its
    // certificate may come from `tls.ca_file`'s CA).
    let trust = config.tls.trust()?;
    let app = Application::build(config).await?;
    let base_url = app.base_url().to_string();
    // The grabbers trust what this AppTracker's builder signs, nothing else.
    let trusted_keys = vec![app.public_key()];
    let tasks = TaskTracker::new();
    let server = tasks.spawn(app.run(shutdown.clone()));

    let client = Client::with_trust(base_url.clone(), &trust)?.with_token(admin);
    for (name, path) in &repos {
        let req = RegisterApp::new(name.clone(), path.display().to_string());
        match client.register_app(&req).await {
            Ok(_) => tracing::info!(app = %name, "registered example app"),
            Err(e) if e.code() == Some("conflict") => {}
            Err(e) => return Err(anyhow::Error::new(e).context("cannot register example apps")),
        }
    }

    for n in 1..=opts.hosts {
        let host = HostName::parse(format!("local-{n}"))?;
        let cfg = grabber::Config {
            server: base_url.clone(),
            cluster: cluster.clone(),
            host: host.clone(),
            root: data_dir.join("hosts").join(host.as_str()),
            port_offset: i32::from(n) * i32::from(opts.port_step),
            stop_apps_on_exit: true,
            token: Some(secrecy::SecretString::from(agent.clone())),
            trusted_keys: trusted_keys.clone(),
            trust: trust.clone(),
            ..grabber::Config::default()
        };
        // Each host's versionchecker too, so the drift table has reports.
        let checker = versionchecker::AgentConfig {
            token: Some(secrecy::SecretString::from(agent.clone())),
            trust: trust.clone(),
            ..versionchecker::AgentConfig::new(
                base_url.clone(),
                cluster.clone(),
                host.clone(),
                cfg.root.clone(),
            )
        };
        let token = shutdown.clone();
        tasks.spawn(async move {
            if let Err(e) = versionchecker::agent::run(checker, token).await {
                tracing::error!(host = %host, error = ?e, "versionchecker stopped");
            }
        });
        let token = shutdown.clone();
        let host = cfg.host.clone();
        tasks.spawn(async move {
            if let Err(e) = grabber::run(cfg, token).await {
                tracing::error!(host = %host, error = ?e, "grabber stopped");
            }
        });
    }
    tasks.close();

    print_tour(&base_url, &token_file, &repos, opts.hosts, opts.port_step);
    shutdown.cancelled().await;
    tasks.wait().await;
    server.await.context("server task failed")?
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
        "\nSlipway is running.\n\n  dashboard   {base_url}/  (sign in with the admin token)\n  token       {}  (admin; new at every start)\n  api         {base_url}/api/v1\n  apps        {}\n  hosts       local-1..{hosts} (cluster `local`); app ports are shifted by {step} per host\n\nTry:\n  export SLIPWAY_TOKEN=$(cat {})\n  cargo run -p deploy -- release hello-python main --cluster local --wait\n  cargo run -p deploy -- status 1\n  cargo run -p deploy -- hosts\n  curl http://127.0.0.1:{}/      # hello-python on local-1\n",
        token_file.display(),
        apps.join(", "),
        token_file.display(),
        8000 + u32::from(step)
    );
}

/// Makes each `examples/<name>/` (with a `slipway.toml`) a git repository
/// under `repos/<name>` with a `main` branch, once. Returns the apps.
pub fn example_repos(examples: &Path, repos: &Path) -> anyhow::Result<Vec<(AppName, PathBuf)>> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(examples) {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(dir = %examples.display(), error = %e, "no example apps");
            return Ok(out);
        }
    };
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("slipway.toml").is_file())
        .collect();
    dirs.sort();
    for dir in dirs {
        let Some(name) = dir.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let app =
            AppName::parse(name).with_context(|| format!("example directory {}", dir.display()))?;
        let repo = repos.join(name);
        if !repo.join(".git").exists() {
            init_repo_from(&dir, &repo)?;
        }
        out.push((app, repo));
    }
    Ok(out)
}

/// Copies `src` into a new repository at `dest` and commits it on `main`.
pub fn init_repo_from(src: &Path, dest: &Path) -> anyhow::Result<git2::Oid> {
    std::fs::create_dir_all(dest).with_context(|| format!("cannot create {}", dest.display()))?;
    copy_tree(src, dest)?;
    let mut opts = git2::RepositoryInitOptions::new();
    opts.initial_head("main");
    let repo = git2::Repository::init_opts(dest, &opts)
        .with_context(|| format!("cannot create a git repository in {}", dest.display()))?;
    commit_all(&repo, "Initial commit")
}

/// Stages every file and commits on the current branch.
pub fn commit_all(repo: &git2::Repository, message: &str) -> anyhow::Result<git2::Oid> {
    let mut index = repo.index()?;
    index.add_all(["*"], git2::IndexAddOption::DEFAULT, None)?;
    index.write()?;
    let tree = repo.find_tree(index.write_tree()?)?;
    let sig = git2::Signature::now("Slipway", "slipway@localhost")?;
    let parent = repo.head().ok().and_then(|h| h.peel_to_commit().ok());
    let parents: Vec<&git2::Commit> = parent.iter().collect();
    Ok(repo.commit(Some("HEAD"), &sig, &sig, message, &tree, &parents)?)
}

fn copy_tree(src: &Path, dest: &Path) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(src).with_context(|| format!("cannot read {}", src.display()))? {
        let entry = entry?;
        let from = entry.path();
        let to = dest.join(entry.file_name());
        let ty = entry.file_type()?;
        if ty.is_dir() {
            std::fs::create_dir_all(&to)?;
            copy_tree(&from, &to)?;
        } else if ty.is_file() {
            std::fs::copy(&from, &to).with_context(|| format!("cannot copy {}", from.display()))?;
        }
    }
    Ok(())
}
