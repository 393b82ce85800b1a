//! The subcommand groups: `apps`, `hosts`, `token`, `env` and `notify`.

use clap::Subcommand;
use deploy::{AppName, Cluster};

#[derive(Subcommand)]
pub(crate) enum AppsCommand {
    /// Show one app: its repository, branch, auto-deploy rule and root.
    #[command(after_help = "Examples:\n  $ deploy apps show web\n  $ deploy apps show web -o json")]
    Show { app: AppName },
    /// Change an app's branch, auto-deploy rule or new-host policy.
    #[command(after_help = "Examples:\n  \
        $ deploy apps edit web --branch release\n  \
        $ deploy apps edit web --auto-deploy staging --auto-deploy-hosts 'web-.*'\n  \
        $ deploy apps edit web --no-auto-deploy")]
    Edit {
        app: AppName,
        /// The branch whose pushes build, and that builds without a ref use.
        #[arg(long)]
        branch: Option<String>,
        /// Deploy every successful push build of the branch to this cluster.
        #[arg(long, conflicts_with = "no_auto_deploy")]
        auto_deploy: Option<Cluster>,
        /// With `--auto-deploy`: only the hosts whose whole name matches.
        #[arg(long, requires = "auto_deploy")]
        auto_deploy_hosts: Option<deploy::HostSelector>,
        /// Stop auto-deploying.
        #[arg(long)]
        no_auto_deploy: bool,
        /// `auto` or `manual`: what a host that joins a cluster gets.
        #[arg(long)]
        new_hosts: Option<deploy::NewHostPolicy>,
    },
    /// Remove an app that no host runs any more (`deploy stop` it first).
    #[command(after_help = "Examples:\n  $ deploy apps remove old-web --yes")]
    Remove {
        app: AppName,
        /// Do not ask to type the app's name back.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Subcommand)]
pub(crate) enum HostsCommand {
    /// Forget a retired host: it leaves the hosts list and the drift table
    /// (a host that reports again comes back). Admins only.
    #[command(after_help = "Examples:\n  $ deploy hosts remove prod web-7")]
    Remove {
        cluster: Cluster,
        host: deploy::HostName,
    },
}

#[derive(Subcommand)]
pub(crate) enum TokenCommand {
    /// Make a token and print it (the only time it is shown).
    #[command(after_help = "Examples:\n  \
        $ deploy token create ci-bot --role deployer\n  \
        $ deploy token create grabber-web-1 --role agent --cluster prod --host web-1 > web-1.token")]
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
    #[command(after_help = "Examples:\n  $ deploy token list\n  $ deploy token list -o json")]
    List,
    /// Revoke a token: it stops working at once, and its event streams end.
    #[command(after_help = "Examples:\n  $ deploy token revoke grabber-web-1")]
    Revoke { name: String },
}

#[derive(Subcommand)]
pub(crate) enum EnvCommand {
    /// Set variables: `KEY=VALUE`, or `KEY` alone to read its value from
    /// standard input (one line per key, in order), which keeps a secret out
    /// of the shell history and `ps`.
    #[command(after_help = "Examples:\n  \
        $ deploy env set web LOG_LEVEL=debug --cluster staging --apply --wait\n  \
        $ deploy env set web DATABASE_PASSWORD --secret < password.txt")]
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
    #[command(
        after_help = "Examples:\n  $ deploy env unset web LOG_LEVEL --cluster staging --apply"
    )]
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
    #[command(after_help = "Examples:\n  $ deploy env list web --cluster prod -o json")]
    List {
        app: AppName,
        #[arg(long)]
        cluster: Option<Cluster>,
    },
}

#[derive(Subcommand)]
pub(crate) enum NotifyCommand {
    /// Send events to URL (admins only); prints the signing secret once.
    #[command(after_help = "Examples:\n  \
        $ deploy notify add https://hooks.slack.com/services/T/B/X --slack --cluster prod\n  \
        $ deploy notify add https://ops.example.com/hook --events deploy_failed,drift_found")]
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
    #[command(after_help = "Examples:\n  $ deploy notify list")]
    List,
    /// Stop sending to a notification (admins only).
    #[command(after_help = "Examples:\n  $ deploy notify rm 3")]
    Rm { id: i64 },
    /// A notification's last deliveries, with their tries.
    #[command(after_help = "Examples:\n  $ deploy notify deliveries 3")]
    Deliveries { id: i64 },
}
