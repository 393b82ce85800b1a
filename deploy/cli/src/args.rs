//! The command line: global flags, the commands and their flags (clap
//! derive). Doc comments here are the `--help` text.

use clap::{Args, Parser, Subcommand};
use deploy::{AppName, BuildId, Cluster, DeployId, GitRef, HostSelector, Portion, WebhookProvider};

#[derive(Parser)]
#[command(
    name = "deploy",
    version,
    about = "Ask Slipway for an app at a version on a cluster",
    after_help = "A protected cluster needs its name typed back: add --yes-i-mean-CLUSTER \
                  (e.g. --yes-i-mean-prod) to release or rollback, or type it when asked."
)]
pub(crate) struct Cli {
    /// AppTracker's URL.
    #[arg(long, env = "SLIPWAY_SERVER", default_value = deploy::DEFAULT_SERVER, global = true)]
    pub(crate) server: String,
    /// File holding the API token (`slipway dev` prints one); or set
    /// SLIPWAY_TOKEN.
    #[arg(long, env = "SLIPWAY_TOKEN_FILE", global = true)]
    pub(crate) token_file: Option<std::path::PathBuf>,
    /// Refused: a token given as a flag shows in `ps` and the shell's
    /// history (use --token-file or SLIPWAY_TOKEN).
    #[arg(long, hide = true, global = true)]
    pub(crate) token: Option<String>,
    /// PEM file of the CA that signed AppTracker's certificate, trusted
    /// besides the system's roots (a private PKI).
    #[arg(long, env = "SLIPWAY_CA_FILE", global = true)]
    pub(crate) ca_file: Option<std::path::PathBuf>,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// List registered apps.
    Apps,
    /// Register an app by its git repository.
    Register {
        app: AppName,
        /// A local path or file:// URL of the repository.
        git_url: String,
        /// What a host that joins a cluster gets: the version the cluster
        /// runs (`auto`, the default) or nothing until a deploy (`manual`).
        #[arg(long, default_value = "auto")]
        new_hosts: deploy::NewHostPolicy,
        /// For an app in a monorepo: the subdirectory of the repository
        /// it is built from (`services/api`), which holds its
        /// slipway.toml. Its pushes build only when they touch it or its
        /// `[build] watch` paths.
        #[arg(long)]
        root: Option<deploy::AppRoot>,
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
    Release(ReleaseArgs),
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
    /// An app's config variables and secrets, app-wide or per cluster
    /// (the cluster's value wins): set, unset, list. A change makes a new
    /// config version; `--apply` restarts the app with it (no rebuild).
    Env {
        #[command(subcommand)]
        command: EnvCommand,
    },
    /// Restart an app on a cluster's hosts (rolling with `--batch`,
    /// health-checked; a host whose restart fails goes back to running what
    /// it ran), as a deploy.
    Restart(OperateArgs),
    /// Stop an app on a cluster's hosts and keep it stopped (until `deploy
    /// start` or a deploy), as a deploy.
    Stop(OperateArgs),
    /// Start a stopped app on a cluster's hosts, health-checked, as a deploy.
    Start(OperateArgs),
    /// Show the end of an app's log on one host, relayed by its grabber
    /// (deployers); `--follow` keeps printing what the app writes.
    Logs {
        app: AppName,
        #[arg(long)]
        cluster: Cluster,
        #[arg(long)]
        host: deploy::HostName,
        #[arg(long)]
        follow: bool,
        /// How much of the end to show first (at most 262144).
        #[arg(long, default_value_t = 16384)]
        bytes: u64,
    },
    /// Send deploy events (started, succeeded, failed, rolled back,
    /// cancelled) to a URL, signed, as JSON or a Slack message.
    Notify {
        #[command(subcommand)]
        command: NotifyCommand,
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
pub(crate) enum TokenCommand {
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

#[derive(Subcommand)]
pub(crate) enum EnvCommand {
    /// Set variables: `KEY=VALUE`, or `KEY` alone to read its value from
    /// standard input (one line per key, in order), which keeps a secret out
    /// of the shell history and `ps`.
    Set {
        app: AppName,
        /// `KEY=VALUE` or `KEY` (value from standard input).
        #[arg(required = true)]
        vars: Vec<String>,
        /// For this cluster only (its value wins over the app-wide one).
        #[arg(long)]
        cluster: Option<Cluster>,
        /// Store the values sealed; they are never shown again.
        #[arg(long)]
        secret: bool,
        /// Restart the app with the new config (on `--cluster`, or on every
        /// cluster it runs on).
        #[arg(long)]
        apply: bool,
        /// With `--apply`: follow the restarts to their end.
        #[arg(long, requires = "apply")]
        wait: bool,
    },
    /// Remove variables.
    Unset {
        app: AppName,
        #[arg(required = true)]
        keys: Vec<String>,
        #[arg(long)]
        cluster: Option<Cluster>,
        #[arg(long)]
        apply: bool,
        #[arg(long, requires = "apply")]
        wait: bool,
    },
    /// List variables (secrets masked); with `--cluster`, the app-wide ones
    /// and that cluster's.
    List {
        app: AppName,
        #[arg(long)]
        cluster: Option<Cluster>,
    },
}

#[derive(Subcommand)]
pub(crate) enum NotifyCommand {
    /// Send events to URL (admins only); prints the signing secret once.
    Add {
        url: String,
        /// Only this app's events.
        #[arg(long)]
        app: Option<AppName>,
        /// Only this cluster's events (its deploys, its hosts' drift).
        #[arg(long)]
        cluster: Option<Cluster>,
        /// A Slack (Mattermost, Rocket.Chat) incoming webhook: `{"text": …}`.
        #[arg(long)]
        slack: bool,
        /// Only these events, of deploy_started, deploy_succeeded,
        /// deploy_failed, deploy_rolled_back, deploy_cancelled, drift_found
        /// (an app on a host turned out of sync); all when absent.
        #[arg(long, value_delimiter = ',')]
        events: Vec<deploy::NotifyEvent>,
    },
    /// List notifications (never their secrets).
    List,
    /// Stop sending to a notification (admins only).
    Rm { id: i64 },
    /// A notification's last deliveries, with their tries.
    Deliveries { id: i64 },
}

// The flags of `deploy restart|stop|start`.
#[derive(Args)]
pub(crate) struct OperateArgs {
    pub(crate) app: AppName,
    #[arg(long)]
    pub(crate) cluster: Cluster,
    /// Regular expression the whole host name must match; every host that
    /// runs the app when absent.
    #[arg(long)]
    pub(crate) hosts: Option<HostSelector>,
    /// Hosts at a time (rolling); all at once when absent.
    #[arg(long)]
    pub(crate) batch: Option<u32>,
    /// Follow the deploy to its end; exit non-zero unless every host succeeded.
    #[arg(long)]
    pub(crate) wait: bool,
}

// The flags of `deploy release` (a struct of their own: the command takes
// many). No doc comment: the command's help is the variant's.
#[derive(Args)]
pub(crate) struct ReleaseArgs {
    pub(crate) app: AppName,
    /// A built version (`<number>-<sha>`), or a git ref to build first.
    pub(crate) version_or_ref: String,
    #[arg(long)]
    pub(crate) cluster: Cluster,
    /// Regular expression the whole host name must match; every host when absent.
    #[arg(long)]
    pub(crate) hosts: Option<HostSelector>,
    /// Follow the deploy to its end; exit non-zero unless every host succeeded.
    #[arg(long)]
    pub(crate) wait: bool,
    /// Rolling deploy: hosts at a time (`3`) or a share of them (`25%`).
    #[arg(long, conflicts_with = "canary")]
    pub(crate) batch: Option<Portion>,
    /// Canary deploy: these hosts first (`1` or `10%`), the rest once they are healthy.
    #[arg(long)]
    pub(crate) canary: Option<Portion>,
    /// Wait between batches (e.g. `30s`).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub(crate) bake: Option<std::time::Duration>,
    /// Failed hosts tolerated before the rollout halts (`0` by default, or `10%`).
    #[arg(long, default_value = "0")]
    pub(crate) max_failures: Portion,
    /// With `--batch`: hosts that may be under way at once (`3`, `20%`);
    /// above the batch size, batches overlap (`--batch 1
    /// --max-unavailable 3` keeps three hosts going at all times).
    #[arg(long, requires = "batch")]
    pub(crate) max_unavailable: Option<Portion>,
    /// If the rollout fails, put the previous version back on the hosts
    /// that switched.
    #[arg(long)]
    pub(crate) rollback_on_failure: bool,
    /// With `--canary`: after the canaries are healthy, wait for
    /// `deploy continue DEPLOY` before the rest.
    #[arg(long, requires = "canary")]
    pub(crate) manual: bool,
    /// If another deploy of the app to the cluster is under way, queue
    /// behind it instead of being refused.
    #[arg(long)]
    pub(crate) queue: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
