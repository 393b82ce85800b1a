//! The `deploy` CLI for ops engineers, built on the typed API client.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use deploy::{
    AppName, AppRunStatus, AuditEntry, AuditQuery, Build, BuildId, BuildStatus, Client, Cluster,
    CreateDeploy, Deploy, DeployEvent, DeployHost, DeployId, DeployStatus, DriftQuery, DriftReport,
    DriftState, GitRef, HostPhase, HostSelector, Portion, RegisterApp, RequestBuild,
    SetWebhookSecret, Strategy, SyncRequest, Version, WebhookProvider,
};
use futures::StreamExt;

#[derive(Parser)]
#[command(
    name = "deploy",
    version,
    about = "Ask Slipway for an app at a version on a cluster",
    after_help = "A protected cluster needs its name typed back: add --yes-i-mean-CLUSTER \
                  (e.g. --yes-i-mean-prod) to release or rollback, or type it when asked."
)]
struct Cli {
    /// AppTracker's URL.
    #[arg(long, env = "SLIPWAY_SERVER", default_value = deploy::DEFAULT_SERVER, global = true)]
    server: String,
    /// File holding the API token (`apptracker dev` prints one); or set
    /// SLIPWAY_TOKEN.
    #[arg(long, env = "SLIPWAY_TOKEN_FILE", global = true)]
    token_file: Option<std::path::PathBuf>,
    /// Refused: a token given as a flag shows in `ps` and the shell's
    /// history (use --token-file or SLIPWAY_TOKEN).
    #[arg(long, hide = true, global = true)]
    token: Option<String>,
    /// PEM file of the CA that signed AppTracker's certificate, trusted
    /// besides the system's roots (a private PKI).
    #[arg(long, env = "SLIPWAY_CA_FILE", global = true)]
    ca_file: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List registered apps.
    Apps,
    /// Register an app by its git repository.
    Register {
        app: AppName,
        /// A local path or file:// URL of the repository.
        git_url: String,
    },
    /// Make an app's webhook secret for a provider, or rotate it, and print
    /// it (shown once) with the URL to give the provider. Admins only.
    #[command(name = "webhook-secret")]
    WebhookSecret {
        app: AppName,
        /// `github`, `gitlab`, `gitea` or `forgejo`.
        #[arg(long)]
        provider: WebhookProvider,
        /// Replace the existing secret; the old one keeps working for the
        /// grace (AppTracker's `webhook_secret_grace`, 24h by default).
        #[arg(long, conflicts_with = "delete")]
        rotate: bool,
        /// With `--rotate`: how long the old secret keeps working (`1h`;
        /// `0s` ends it now, for a leaked secret).
        #[arg(long, requires = "rotate")]
        grace: Option<String>,
        /// Stop taking the app's webhooks from the provider.
        #[arg(long)]
        delete: bool,
    },
    /// List the providers an app takes webhooks from, with their URLs
    /// (never the secrets). Admins only.
    #[command(name = "webhook-secrets")]
    WebhookSecrets { app: AppName },
    /// List an app's builds, newest first.
    Builds { app: AppName },
    /// Mark an ended build bad (admins only): it is never reused (the next
    /// deploy of its commit by ref builds it again) and deploys of its
    /// version are refused.
    BuildBad {
        /// The build's id (`deploy builds APP` lists them).
        build: BuildId,
        /// Why, shown to whoever is refused its version later.
        #[arg(long)]
        reason: String,
    },
    /// Manage API tokens (admins only).
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Build an app at a git ref (reuses an existing build of the same commit).
    Build {
        app: AppName,
        /// Branch, tag or sha; `main` when absent.
        #[arg(long = "ref")]
        git_ref: Option<GitRef>,
        /// Wait for the build to finish; print its log if it fails.
        #[arg(long)]
        wait: bool,
    },
    /// Deploy an app at a version (`17-3f9c2ab`) or a git ref to a cluster.
    Release {
        app: AppName,
        /// A built version (`<number>-<sha>`), or a git ref to build first.
        version_or_ref: String,
        #[arg(long)]
        cluster: Cluster,
        /// Regular expression the whole host name must match; every host when absent.
        #[arg(long)]
        hosts: Option<HostSelector>,
        /// Follow the deploy to its end; exit non-zero unless every host succeeded.
        #[arg(long)]
        wait: bool,
        /// Rolling deploy: hosts at a time (`3`) or a share of them (`25%`).
        #[arg(long, conflicts_with = "canary")]
        batch: Option<Portion>,
        /// Canary deploy: these hosts first (`1` or `10%`), the rest once they are healthy.
        #[arg(long)]
        canary: Option<Portion>,
        /// Wait between batches (e.g. `30s`).
        #[arg(long, value_parser = humantime::parse_duration)]
        bake: Option<std::time::Duration>,
        /// Failed hosts tolerated before the rollout halts (`0` by default, or `10%`).
        #[arg(long, default_value = "0")]
        max_failures: Portion,
        /// With `--batch`: hosts that may be under way at once (`3`, `20%`);
        /// above the batch size, batches overlap (`--batch 1
        /// --max-unavailable 3` keeps three hosts going at all times).
        #[arg(long, requires = "batch")]
        max_unavailable: Option<Portion>,
        /// If the rollout fails, put the previous version back on the hosts
        /// that switched.
        #[arg(long)]
        rollback_on_failure: bool,
        /// With `--canary`: after the canaries are healthy, wait for
        /// `deploy continue DEPLOY` before the rest.
        #[arg(long, requires = "canary")]
        manual: bool,
        /// If another deploy of the app to the cluster is under way, queue
        /// behind it instead of being refused.
        #[arg(long)]
        queue: bool,
    },
    /// Let a deploy waiting after its canaries (`--manual`) go on.
    Continue {
        deploy: DeployId,
        /// Follow it to its end.
        #[arg(long)]
        wait: bool,
    },
    /// List the clusters with deploy controls (protected, frozen).
    Clusters,
    /// Protect a cluster: deploys to it must name it back
    /// (`--yes-i-mean-CLUSTER`, or typed when asked). Admins only.
    Protect {
        cluster: Cluster,
        /// Remove the protection instead.
        #[arg(long)]
        off: bool,
    },
    /// Freeze a cluster: no deploys (rollbacks still go) until the time is
    /// up or `deploy thaw`. Admins only.
    Freeze {
        cluster: Cluster,
        /// How long (`2h`, `3d`).
        #[arg(long = "for")]
        duration: String,
        /// Why: shown to everyone whose deploy is refused.
        #[arg(long)]
        reason: String,
    },
    /// Lift a freeze; deploys queued behind it start.
    Thaw { cluster: Cluster },
    /// The hosts a release with these `--cluster` and `--hosts` would touch,
    /// with what each runs now. Nothing is changed.
    Targets {
        #[arg(long)]
        cluster: Cluster,
        /// Regular expression the whole host name must match.
        #[arg(long)]
        hosts: Option<HostSelector>,
    },
    /// Stop a running deploy: no further host starts.
    Cancel { deploy: DeployId },
    /// Put back the version that ran before the newest deploy of an app to a
    /// cluster, and pin it there until `deploy unpin`.
    Rollback {
        app: AppName,
        #[arg(long)]
        cluster: Cluster,
        /// Follow the rollback to its end.
        #[arg(long)]
        wait: bool,
    },
    /// Let deploys of other versions through again after a rollback.
    Unpin {
        app: AppName,
        #[arg(long)]
        cluster: Cluster,
    },
    /// Deploy the same version again to the hosts of a deploy that failed
    /// or timed out (a new deploy, linked to it).
    Retry {
        deploy: DeployId,
        /// Follow the retry to its end.
        #[arg(long)]
        wait: bool,
    },
    /// Show a deploy with one row per host.
    Status {
        deploy: DeployId,
        /// Follow it live until it ends.
        #[arg(long)]
        follow: bool,
    },
    /// List registered hosts and what they run.
    Hosts,
    /// What each host should run against what its versionchecker reports:
    /// a summary per app and cluster, then every host that is not in sync
    /// (all of them with --all).
    Drift {
        #[arg(long)]
        app: Option<AppName>,
        #[arg(long)]
        cluster: Option<Cluster>,
        /// Only hosts in these states (`drifted`, `not-running,missing`, …).
        #[arg(long)]
        state: Option<String>,
        /// Show in-sync hosts too.
        #[arg(long)]
        all: bool,
    },
    /// Deploy the desired version to exactly the hosts of an app on a
    /// cluster that drifted (drifted, not running or missing).
    Sync {
        app: AppName,
        #[arg(long)]
        cluster: Cluster,
        /// Follow the deploy to its end.
        #[arg(long)]
        wait: bool,
    },
    /// Show who changed what through the API, newest first (deployers and
    /// admins).
    Audit {
        /// How many entries (at most 1000).
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Only entries older than this id: the last id of the previous page.
        #[arg(long)]
        before: Option<i64>,
        /// Only this token's (or `webhook:github`, `build-trigger`,
        /// `anonymous`) requests.
        #[arg(long)]
        actor: Option<String>,
        /// Only requests concerning this app.
        #[arg(long)]
        app: Option<AppName>,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Make a token and print it (the only time it is shown).
    Create {
        /// A unique name, shown in logs, the audit log and the token list.
        name: String,
        /// `viewer`, `deployer` or `admin` for people; `agent` for grabbers
        /// and versioncheckers (with `--cluster`, and `--host` to bind it to
        /// one host); `builder` for packer workers.
        #[arg(long)]
        role: String,
        /// The cluster an agent token acts for.
        #[arg(long)]
        cluster: Option<Cluster>,
        /// The one host of `--cluster` an agent token reports for.
        #[arg(long, requires = "cluster")]
        host: Option<deploy::HostName>,
    },
    /// List tokens (never their secret).
    List,
    /// Revoke a token: it stops working at once, and its event streams end.
    Revoke { name: String },
}

/// The CLI's entry point (also `deploy::cli::main`, for the end-to-end
/// tests' copy of the binary).
#[tokio::main(flavor = "current_thread")]
pub async fn main() -> ExitCode {
    let (args, confirmed) = match confirmations(std::env::args_os()) {
        Ok(split) => split,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let cli = Cli::parse_from(args);
    let client = match connect(&cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    match run(&client, cli.command, &confirmed).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Takes the `--yes-i-mean-CLUSTER` flags out of the arguments (clap cannot
/// declare a flag whose name holds a value) and returns the clusters they
/// name.
fn confirmations(
    args: impl Iterator<Item = std::ffi::OsString>,
) -> anyhow::Result<(Vec<std::ffi::OsString>, Vec<Cluster>)> {
    let (mut rest, mut confirmed) = (Vec::new(), Vec::new());
    for arg in args {
        match arg.to_str().and_then(|a| a.strip_prefix("--yes-i-mean-")) {
            Some(name) => confirmed.push(
                Cluster::parse(name)
                    .with_context(|| format!("`--yes-i-mean-{name}` does not name a cluster"))?,
            ),
            None => rest.push(arg),
        }
    }
    Ok((rest, confirmed))
}

/// The confirmation to send for `cluster`: the `--yes-i-mean-` flag naming
/// it, else any other one given (the server says it names another).
fn confirmation_for(cluster: &Cluster, confirmed: &[Cluster]) -> Option<Cluster> {
    confirmed
        .iter()
        .find(|c| *c == cluster)
        .or(confirmed.first())
        .cloned()
}

/// When the server wants a protected cluster's name typed back and a
/// person is at the terminal, asks for it; None when nobody can answer or
/// the answer is not the name.
fn ask_confirmation(e: &deploy::ClientError, cluster: &Cluster) -> Option<Cluster> {
    use std::io::{BufRead, IsTerminal, Write};
    if e.code() != Some("confirmation_required") || !std::io::stdin().is_terminal() {
        return None;
    }
    eprint!("cluster {cluster} is protected; type its name to go on: ");
    std::io::stderr().flush().ok()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).ok()?;
    (line.trim() == cluster.as_str()).then(|| cluster.clone())
}

/// The API client the flags describe: server, trusted CA, token.
fn connect(cli: &Cli) -> anyhow::Result<Client> {
    if cli.token.is_some() {
        anyhow::bail!(
            "--token is refused: a token on the command line is visible to every user in `ps` \
             and stays in the shell's history; put it in a file readable only by you and pass \
             --token-file FILE, or set SLIPWAY_TOKEN"
        );
    }
    let trust = deploy::tls::Trust::from_ca_file(cli.ca_file.as_deref())?;
    let mut client = Client::with_trust(cli.server.clone(), &trust)?;
    if let Some(token) = deploy::binary::read_token(cli.token_file.as_deref(), false)? {
        if let Some(warning) = deploy::tls::cleartext_warning(&cli.server) {
            eprintln!("warning: {warning}");
        }
        client = client.with_token(token);
    }
    Ok(client)
}

async fn run(client: &Client, command: Command, confirmed: &[Cluster]) -> anyhow::Result<ExitCode> {
    match command {
        Command::Apps => {
            let apps = client.apps().await?;
            if apps.is_empty() {
                println!("no apps registered: `deploy register APP GIT_URL`");
            }
            for a in apps {
                println!("{:<24} {}", a.name, a.git_url);
            }
        }
        Command::Register { app, git_url } => {
            let a = client.register_app(&RegisterApp::new(app, git_url)).await?;
            println!("registered {} ({})", a.name, a.git_url);
        }
        Command::WebhookSecret {
            app,
            provider,
            rotate,
            grace,
            delete,
        } => {
            if delete {
                client.delete_webhook_secret(&app, provider).await?;
                println!("{app} no longer takes {provider} webhooks");
                return Ok(ExitCode::SUCCESS);
            }
            let made = client
                .set_webhook_secret(&app, provider, &SetWebhookSecret { rotate, grace })
                .await?;
            println!("{provider} webhook secret of {app} (shown once, keep it safe):");
            println!("  {}", made.secret);
            println!("payload URL:  {}", made.url);
            println!("content type: application/json; events: push");
            if let Some(until) = made.previous_valid_until {
                println!(
                    "the previous secret is accepted until {until}: update the provider before then"
                );
            }
        }
        Command::WebhookSecrets { app } => {
            let list = client.webhook_secrets(&app).await?;
            if list.is_empty() {
                println!(
                    "{app} takes no webhooks: `deploy webhook-secret {app} --provider github`"
                );
            }
            for s in list {
                let grace = match s.previous_valid_until {
                    Some(until) => format!(" (previous secret accepted until {until})"),
                    None => String::new(),
                };
                println!("{:<8} {}{grace}", s.provider, s.url);
            }
        }
        Command::Builds { app } => {
            let builds = client.builds(&app).await?;
            if builds.is_empty() {
                println!("no builds of {app} yet: `deploy build {app}`");
            }
            for b in builds {
                print_build_line(&b);
            }
        }
        Command::BuildBad { build, reason } => {
            let b = client.mark_build_bad(build, &reason).await?;
            print_build_line(&b);
        }
        Command::Token { command } => match command {
            TokenCommand::Create {
                name,
                role,
                cluster,
                host,
            } => {
                let created = client
                    .create_token(&deploy::CreateToken {
                        name,
                        role,
                        cluster,
                        host,
                    })
                    .await?;
                println!("{}", created.token);
            }
            TokenCommand::List => {
                for t in client.tokens().await? {
                    let scope = match (&t.cluster, &t.host) {
                        (Some(c), Some(h)) => format!("{c}/{h}"),
                        (Some(c), None) => c.to_string(),
                        _ => "-".into(),
                    };
                    let used = t
                        .last_used_at
                        .map_or_else(|| "never used".to_string(), |at| format!("used {at}"));
                    println!("{:<32} {:<9} {:<24} {used}", t.name, t.role, scope);
                }
            }
            TokenCommand::Revoke { name } => {
                client.revoke_token(&name).await?;
                println!("revoked {name}");
            }
        },
        Command::Build { app, git_ref, wait } => {
            let mut b = client
                .request_build(&app, &RequestBuild { git_ref })
                .await?;
            print_build_line(&b);
            if wait {
                b = wait_for_build(client, b).await?;
                print_build_line(&b);
                if b.status != BuildStatus::Succeeded {
                    print_build_failure(&b);
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
        Command::Release {
            app,
            version_or_ref,
            cluster,
            hosts,
            wait,
            batch,
            canary,
            bake,
            max_failures,
            rollback_on_failure,
            manual,
            queue,
            max_unavailable,
        } => {
            let bake_ms = bake.map_or(0, |b| b.as_millis() as u64);
            let strategy = match (batch, canary) {
                (Some(batch), _) => Strategy::Rolling {
                    batch,
                    bake_ms,
                    max_unavailable,
                },
                (None, Some(canary)) => Strategy::Canary {
                    canary,
                    bake_ms,
                    manual,
                },
                (None, None) => Strategy::AllAtOnce,
            };
            let (version, git_ref) = if Version::looks_built(&version_or_ref) {
                (Some(Version::parse(version_or_ref)?), None)
            } else {
                (None, Some(GitRef::parse(version_or_ref)?))
            };
            let mut req = CreateDeploy {
                confirm: confirmation_for(&cluster, confirmed),
                app,
                version,
                git_ref,
                cluster,
                hosts,
                strategy,
                max_failures,
                rollback_on_failure,
                wait: queue,
            };
            let d = match client.create_deploy(&req).await {
                Ok(d) => d,
                Err(e) => match ask_confirmation(&e, &req.cluster) {
                    Some(typed) => {
                        req.confirm = Some(typed);
                        client.create_deploy(&req).await?
                    }
                    None => return Err(e.into()),
                },
            };
            if d.status == DeployStatus::Queued {
                println!(
                    "deploy {} of {} to {} is queued behind the active one",
                    d.id, d.app, d.cluster
                );
            }
            println!(
                "deploy {} of {} to {} ({} hosts): {}",
                d.id,
                d.app,
                d.cluster,
                d.hosts.len(),
                d.status
            );
            if wait {
                return follow(client, d.id).await;
            }
        }
        Command::Status { deploy, follow: f } => {
            if f {
                return follow(client, deploy).await;
            }
            let d = client.deploy(deploy).await?;
            print_deploy(&d);
            return Ok(exit_for(d.status));
        }
        Command::Targets { cluster, hosts } => {
            let t = client.targets(&cluster, hosts.as_ref()).await?;
            println!(
                "{} host(s) of {} match `{}`:",
                t.hosts.len(),
                t.cluster,
                t.hosts_selector
            );
            for h in &t.hosts {
                let apps: Vec<String> = h
                    .apps
                    .iter()
                    .map(|a| {
                        let v = a.version.as_ref().map_or("-".into(), |v| v.to_string());
                        format!("{}@{v}", a.app)
                    })
                    .collect();
                println!("  {:<24} {}", h.name, apps.join(" "));
            }
            for e in &t.excluded {
                println!("  {:<24} left out: {}", e.host, e.reason);
            }
        }
        Command::Retry { deploy, wait } => {
            let d = client.retry_deploy(deploy).await?;
            println!(
                "deploy {} retries {} on {} host(s): {}",
                d.id,
                deploy,
                d.hosts.len(),
                d.status
            );
            if wait {
                return follow(client, d.id).await;
            }
        }
        Command::Rollback { app, cluster, wait } => {
            let confirm = confirmation_for(&cluster, confirmed);
            let d = match client
                .rollback_confirmed(&app, &cluster, confirm.as_ref())
                .await
            {
                Ok(d) => d,
                Err(e) => match ask_confirmation(&e, &cluster) {
                    Some(typed) => {
                        client
                            .rollback_confirmed(&app, &cluster, Some(&typed))
                            .await?
                    }
                    None => return Err(e.into()),
                },
            };
            println!(
                "deploy {} rolls {} back to {} on {} host(s); pinned until `deploy unpin {} --cluster {}`",
                d.id,
                d.app,
                d.version.as_ref().map_or("?".into(), |v| v.to_string()),
                d.hosts.len(),
                d.app,
                d.cluster
            );
            if wait {
                return follow(client, d.id).await;
            }
        }
        Command::Continue { deploy, wait } => {
            let d = client.continue_deploy(deploy).await?;
            println!("deploy {} goes on: batch {}", d.id, d.current_batch + 1);
            if wait {
                return follow(client, d.id).await;
            }
        }
        Command::Clusters => {
            let clusters = client.clusters().await?;
            if clusters.is_empty() {
                println!("no cluster is protected or frozen");
            }
            let now = deploy::Timestamp::now();
            for c in clusters {
                let mut line = format!("{:<16}", c.name.as_str());
                if c.protected {
                    line.push_str(" protected");
                }
                if let Some(until) = c.frozen_at(now) {
                    line.push_str(&format!(
                        " frozen until {until} by {}: {}",
                        c.frozen_by.as_deref().unwrap_or("?"),
                        c.freeze_reason.as_deref().unwrap_or("")
                    ));
                }
                println!("{line}");
            }
        }
        Command::Protect { cluster, off } => {
            let c = client.set_protected(&cluster, !off).await?;
            println!(
                "{} is {}",
                c.name,
                if c.protected {
                    "protected"
                } else {
                    "not protected"
                }
            );
        }
        Command::Freeze {
            cluster,
            duration,
            reason,
        } => {
            let c = client
                .freeze(
                    &cluster,
                    &deploy::Freeze {
                        until: None,
                        duration: Some(duration),
                        reason,
                    },
                )
                .await?;
            println!(
                "{} is frozen until {}",
                c.name,
                c.frozen_until.map_or("?".into(), |t| t.to_string())
            );
        }
        Command::Thaw { cluster } => {
            let c = client.thaw(&cluster).await?;
            println!("{} is no longer frozen", c.name);
        }
        Command::Unpin { app, cluster } => {
            client.unpin(&app, &cluster).await?;
            println!("{app} on {cluster} is no longer pinned");
        }
        Command::Cancel { deploy } => {
            let d = client.cancel_deploy(deploy).await?;
            println!("deploy {} {}", d.id, d.status);
            for h in &d.hosts {
                print_host(h);
            }
        }
        Command::Hosts => {
            let hosts = client.hosts().await?;
            if hosts.is_empty() {
                println!("no hosts registered: start a grabber");
            }
            for h in hosts {
                let apps: Vec<String> = h
                    .apps
                    .iter()
                    .map(|a| {
                        let v = a
                            .version
                            .as_ref()
                            .map(|v| v.to_string())
                            .unwrap_or("-".into());
                        let mut s = match a.port {
                            Some(p) => format!("{}@{v}:{p}", a.app),
                            None => format!("{}@{v}", a.app),
                        };
                        match a.status {
                            AppRunStatus::Restarting | AppRunStatus::Failing => {
                                s.push_str(&format!("({}, {} restarts)", a.status, a.restarts))
                            }
                            AppRunStatus::Stopped => s.push_str("(stopped)"),
                            AppRunStatus::Running => {}
                        }
                        s
                    })
                    .collect();
                println!(
                    "{:<12} {:<20} last seen {}  {}",
                    h.cluster,
                    h.name,
                    h.last_seen,
                    apps.join(" ")
                );
            }
        }
        Command::Drift {
            app,
            cluster,
            state,
            all,
        } => {
            let report = client
                .drift(&DriftQuery {
                    app: app.map(|a| a.to_string()),
                    cluster: cluster.map(|c| c.to_string()),
                    state: state.clone(),
                })
                .await?;
            print_drift(&report, all || state.is_some());
            let bad = report
                .summary
                .iter()
                .any(|s| s.counts.out_of_sync() + s.counts.stale > 0);
            return Ok(if bad {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            });
        }
        Command::Sync { app, cluster, wait } => {
            let out = client.sync(&SyncRequest { app, cluster }).await?;
            let d = &out.deploy;
            let names: Vec<&str> = out.hosts.iter().map(|h| h.as_str()).collect();
            println!(
                "deploy {} puts {} {} back on {} host(s) of {}: {}",
                d.id,
                d.app,
                d.version.as_ref().map_or("?".into(), |v| v.to_string()),
                out.hosts.len(),
                d.cluster,
                names.join(", ")
            );
            for l in &out.left {
                println!(
                    "  left {:<20} {:<12} {}",
                    l.host.as_str(),
                    l.state.as_str(),
                    l.reason
                );
            }
            if wait {
                return follow(client, d.id).await;
            }
        }
        Command::Audit {
            limit,
            before,
            actor,
            app,
        } => {
            let page = client
                .audit_page(&AuditQuery {
                    limit: Some(limit),
                    before,
                    cursor: None,
                    actor,
                    app,
                })
                .await?;
            if page.items.is_empty() {
                println!("no audit entries");
            } else {
                print_audit(&page.items);
                // The cursor of the audit log is the last entry's id.
                if page.next.is_some()
                    && let Some(last) = page.items.last()
                {
                    println!("(older: --before {})", last.id);
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The drift summary, then one line per host (not in sync, or all).
fn print_drift(report: &DriftReport, all: bool) {
    if report.summary.is_empty() {
        println!("no host runs or should run anything here yet");
        return;
    }
    println!(
        "{:<20} {:<12} {:>7} {:>7} {:>11} {:>7} {:>5} {:>7} {:>9}  SHOULD RUN",
        "APP",
        "CLUSTER",
        "IN-SYNC",
        "DRIFTED",
        "NOT-RUNNING",
        "MISSING",
        "STALE",
        "UNKNOWN",
        "DEPLOYING"
    );
    for s in &report.summary {
        let c = &s.counts;
        let desired: Vec<String> = s.desired.iter().map(|v| v.to_string()).collect();
        println!(
            "{:<20} {:<12} {:>7} {:>7} {:>11} {:>7} {:>5} {:>7} {:>9}  {}",
            s.app.as_str(),
            s.cluster.as_str(),
            c.in_sync,
            c.drifted,
            c.not_running,
            c.missing,
            c.stale,
            c.unknown_app,
            c.deploying,
            desired.join(", ")
        );
    }
    let rows: Vec<_> = report
        .hosts
        .iter()
        .filter(|h| all || h.state != DriftState::InSync || !h.over_limits.is_empty())
        .collect();
    if rows.is_empty() {
        return;
    }
    println!();
    println!(
        "{:<12} {:<20} {:<20} {:<12} {:<14} {:<14} WHY",
        "CLUSTER", "HOST", "APP", "STATE", "SHOULD RUN", "CURRENT"
    );
    for h in rows {
        let v = |v: &Option<deploy::Version>| v.as_ref().map_or("-".into(), |v| v.to_string());
        let mut why = h.reason.clone();
        for b in &h.over_limits {
            why.push_str(&format!(
                "; {} {} over its {} limit",
                b.resource,
                bytes(b.used_bytes),
                bytes(b.limit_bytes)
            ));
        }
        println!(
            "{:<12} {:<20} {:<20} {:<12} {:<14} {:<14} {}",
            h.cluster.as_str(),
            h.host.as_str(),
            h.app.as_str(),
            h.state.as_str(),
            v(&h.desired),
            v(&h.current),
            why
        );
    }
}

/// A size for people: `512 B`, `3.2 KiB`, `1.5 GiB`.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// The audit entries as a table, one line each.
fn print_audit(entries: &[AuditEntry]) {
    println!(
        "{:<6} {:<20} {:<24} {:<40} {:<15} {:<20} TARGET",
        "ID", "WHEN", "WHO", "REQUEST", "FROM", "OUTCOME"
    );
    for e in entries {
        let who = match &e.role {
            Some(role) => format!("{} ({role})", e.actor),
            None => e.actor.clone(),
        };
        let outcome = match &e.error_code {
            Some(code) => format!("{} {code}", e.status),
            None => e.status.to_string(),
        };
        println!(
            "{:<6} {:<20} {:<24} {:<40} {:<15} {:<20} {}",
            e.id,
            e.at.to_string(),
            who,
            format!("{} {}", e.method, e.path),
            e.peer.as_deref().unwrap_or("-"),
            outcome,
            e.target.as_deref().unwrap_or("")
        );
    }
}

fn exit_for(status: DeployStatus) -> ExitCode {
    match status {
        DeployStatus::Succeeded => ExitCode::SUCCESS,
        s if s.is_terminal() => ExitCode::FAILURE,
        _ => ExitCode::SUCCESS,
    }
}

fn print_build_line(b: &Build) {
    let bad = match &b.bad {
        Some(bad) => format!(" BAD ({}, by {})", bad.reason, bad.by),
        None => String::new(),
    };
    println!(
        "build {:<5} {:<14} {:<10} {} ({}){bad}",
        b.id.to_string(),
        b.version.as_str(),
        format!("{:?}", b.status).to_lowercase(),
        &b.commit.chars().take(12).collect::<String>(),
        b.git_ref
    );
}

fn print_build_failure(b: &Build) {
    if let Some(e) = &b.error {
        eprintln!("build failed: {e}");
    }
    if !b.log.is_empty() {
        eprintln!("--- build log ---\n{}", tail(&b.log, 40));
    }
}

/// Polls a build until it ends (builds have no event stream yet).
async fn wait_for_build(client: &Client, mut b: Build) -> anyhow::Result<Build> {
    while !b.status.is_terminal() {
        tokio::time::sleep(Duration::from_millis(500)).await;
        b = client.build(b.id).await?;
    }
    client
        .build(b.id)
        .await
        .context("cannot read the finished build")
}

fn print_host(h: &DeployHost) {
    let mut line = format!("  {:<20} {:<12}", h.host.as_str(), h.phase.as_str());
    if let Some(p) = h.failed_phase {
        line.push_str(&format!(" in {p}"));
    }
    if h.phase == HostPhase::Failed {
        line.push_str(if h.rolled_back {
            ", rolled back"
        } else {
            ", not rolled back"
        });
    }
    if let Some(m) = &h.message {
        line.push_str(&format!("  {m}"));
    }
    println!("{line}");
    if h.phase == HostPhase::Failed
        && let Some(t) = &h.log_tail
    {
        for l in tail(t, 20).lines() {
            println!("    | {l}");
        }
    }
}

fn print_deploy(d: &Deploy) {
    println!(
        "deploy {}: {} {} on {} (hosts ~ {}): {}",
        d.id,
        d.app,
        d.version
            .as_ref()
            .map(|v| v.to_string())
            .or_else(|| d.git_ref.clone())
            .unwrap_or_default(),
        d.cluster,
        d.hosts_selector,
        d.status
    );
    if let Some(e) = &d.error {
        println!("  error: {e}");
    }
    for h in &d.hosts {
        print_host(h);
    }
}

/// Follows a deploy live, printing each host's phase changes; the exit code
/// says whether every host succeeded.
async fn follow(client: &Client, id: DeployId) -> anyhow::Result<ExitCode> {
    let mut events = Box::pin(client.deploy_stream(id).await?);
    let mut status = DeployStatus::Unknown;
    while let Some(ev) = events.next().await {
        match ev? {
            DeployEvent::Host { host, .. } => print_host(&host),
            DeployEvent::Status {
                status: s,
                version,
                error,
                ..
            } => {
                status = s;
                let v = version.map(|v| format!(" {v}")).unwrap_or_default();
                println!("deploy {id}{v}: {s}");
                if let Some(e) = error {
                    println!("  error: {e}");
                }
                if s.is_terminal() {
                    break;
                }
            }
            DeployEvent::Unknown => {}
        }
    }
    if !status.is_terminal() {
        // The stream broke before the end: report what the record says.
        let d = client.deploy(id).await?;
        print_deploy(&d);
        status = d.status;
    }
    Ok(exit_for(status))
}

/// The last `n` lines of `s`.
fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> impl Iterator<Item = std::ffi::OsString> {
        list.iter()
            .map(std::ffi::OsString::from)
            .collect::<Vec<_>>()
            .into_iter()
    }

    #[test]
    fn yes_i_mean_flags_become_confirmations() {
        let (rest, confirmed) = confirmations(args(&[
            "deploy",
            "release",
            "web",
            "main",
            "--cluster",
            "prod",
            "--yes-i-mean-prod",
        ]))
        .unwrap();
        assert_eq!(
            rest,
            ["deploy", "release", "web", "main", "--cluster", "prod"]
        );
        let prod = Cluster::parse("prod").unwrap();
        assert_eq!(confirmed, std::slice::from_ref(&prod));
        assert_eq!(confirmation_for(&prod, &confirmed), Some(prod.clone()));
        // A flag naming another cluster is sent as it is: the server says
        // which cluster it names.
        let staging = Cluster::parse("staging").unwrap();
        assert_eq!(confirmation_for(&staging, &confirmed), Some(prod));
        assert_eq!(confirmation_for(&staging, &[]), None);
        // The rest still parses as a command.
        assert!(Cli::try_parse_from(rest).is_ok());
    }

    #[test]
    fn a_yes_i_mean_flag_without_a_valid_cluster_is_an_error() {
        let e = confirmations(args(&["deploy", "--yes-i-mean-"])).unwrap_err();
        assert!(e.to_string().contains("--yes-i-mean-"), "{e}");
        let e = confirmations(args(&["deploy", "--yes-i-mean-no/pe"])).unwrap_err();
        assert!(e.to_string().contains("no/pe"), "{e}");
    }

    #[test]
    fn webhook_secret_flags_parse() {
        let cli = Cli::try_parse_from([
            "deploy",
            "webhook-secret",
            "hello",
            "--provider",
            "forgejo",
            "--rotate",
            "--grace",
            "1h",
        ])
        .unwrap();
        let Command::WebhookSecret {
            provider,
            rotate,
            grace,
            delete,
            ..
        } = cli.command
        else {
            panic!("not webhook-secret");
        };
        assert_eq!(provider, WebhookProvider::Gitea);
        assert!(rotate && !delete);
        assert_eq!(grace.as_deref(), Some("1h"));
        for bad in [
            &["deploy", "webhook-secret", "hello"][..],
            &["deploy", "webhook-secret", "hello", "--provider", "svn"],
            &[
                "deploy",
                "webhook-secret",
                "hello",
                "--provider",
                "github",
                "--grace",
                "1h",
            ],
            &[
                "deploy",
                "webhook-secret",
                "hello",
                "--provider",
                "github",
                "--rotate",
                "--delete",
            ],
        ] {
            assert!(Cli::try_parse_from(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(12_288), "12.0 KiB");
        assert_eq!(bytes(3 << 30), "3.0 GiB");
        assert_eq!(bytes(u64::MAX), "16777216.0 TiB");
    }
}
