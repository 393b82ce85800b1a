//! The command line: global flags and the commands (clap derive). Doc
//! comments here are the `--help` text; every command's help ends with
//! examples. The subcommand groups and the flags of the bigger commands are
//! in `args/`.

use clap::{Parser, Subcommand};
use deploy::{AppName, BuildId, Cluster, DeployId, GitRef, HostSelector, WebhookProvider};

mod flags;
mod groups;

pub(crate) use flags::{DeploysArgs, OperateArgs, ReleaseArgs};
pub(crate) use groups::{AppsCommand, EnvCommand, HostsCommand, NotifyCommand, TokenCommand};

#[derive(Parser)]
#[command(
    name = "deploy",
    version,
    about = "Ask Slipway for an app at a version on a cluster",
    after_help = concat!(
        "A protected cluster needs its name typed back: add --yes-i-mean-CLUSTER \
         (e.g. --yes-i-mean-prod) to release or rollback, or type it when asked.\n\n",
        "Examples:\n",
        "  $ deploy login --server https://slipway.example.com\n",
        "  $ deploy release web 17-3f9c2ab --cluster prod --wait\n",
        "  $ deploy deploys --app web --status failed -o json\n\n",
        "Exit codes:\n",
        "  0    success\n",
        "  1    the operation ran and failed (a failed or partial deploy, a failed build, drift found)\n",
        "  2    usage error (bad flag or value, input the server calls invalid)\n",
        "  3    not authenticated or not allowed (see `deploy login`, `deploy whoami`)\n",
        "  4    not found (app, deploy, build, host, ref)\n",
        "  5    refused by a rule (deploy in progress, frozen cluster, pinned, confirmation needed)\n",
        "  6    AppTracker unreachable or answering 5xx\n",
        "  130  interrupted"
    )
)]
pub(crate) struct Cli {
    /// AppTracker's URL (default: the profile's, else http://127.0.0.1:8080).
    #[arg(long, env = "SLIPWAY_SERVER", global = true)]
    pub(crate) server: Option<String>,
    /// File holding the API token; or set SLIPWAY_TOKEN, or `deploy login`.
    #[arg(long, env = "SLIPWAY_TOKEN_FILE", global = true)]
    pub(crate) token_file: Option<std::path::PathBuf>,
    /// Refused: a token given as a flag shows in `ps` and the shell's
    /// history (use --token-file, SLIPWAY_TOKEN or `deploy login`).
    #[arg(long, hide = true, global = true)]
    pub(crate) token: Option<String>,
    /// PEM file of the CA that signed AppTracker's certificate, trusted
    /// besides the system's roots (a private PKI).
    #[arg(long, env = "SLIPWAY_CA_FILE", global = true)]
    pub(crate) ca_file: Option<std::path::PathBuf>,
    /// The saved profile (`deploy login --profile NAME`) to use.
    #[arg(long, env = "SLIPWAY_PROFILE", global = true)]
    pub(crate) profile: Option<String>,
    /// `table` for people, `json` (the API's types) for scripts.
    #[arg(
        short = 'o',
        long,
        value_enum,
        default_value_t = crate::output::Format::Table,
        global = true
    )]
    pub(crate) output: crate::output::Format,
    /// No live view or spinner: one line per event, even on a terminal.
    #[arg(long, global = true)]
    pub(crate) no_progress: bool,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Save a server and its token as a profile (the token is read from
    /// standard input, or asked for without echo).
    #[command(after_help = "Examples:\n  \
        $ deploy login --server https://slipway.example.com\n  \
        $ deploy login --profile staging --server https://slipway.staging.example.com < token.txt")]
    Login,
    /// Forget a profile's token (the default profile's when none is named).
    #[command(after_help = "Examples:\n  $ deploy logout\n  $ deploy logout --profile staging")]
    Logout,
    /// Show who the token is: its name, role and cluster.
    #[command(after_help = "Examples:\n  $ deploy whoami\n  $ deploy whoami -o json")]
    Whoami,
    /// List registered apps; show, edit or remove one.
    #[command(after_help = "Examples:\n  \
        $ deploy apps\n  \
        $ deploy apps show web\n  \
        $ deploy apps edit web --branch release --auto-deploy staging\n  \
        $ deploy apps remove web --yes")]
    Apps {
        #[command(subcommand)]
        command: Option<AppsCommand>,
    },
    /// Register an app by its git repository.
    #[command(after_help = "Examples:\n  \
        $ deploy register web https://git.example.com/acme/web.git\n  \
        $ deploy register api https://git.example.com/acme/mono.git --root services/api")]
    Register {
        app: AppName,
        /// Where packer fetches the source: a path, a file://, https:// or
        /// ssh:// URL.
        git_url: String,
        /// The branch whose pushes build (and builds without a ref use).
        #[arg(long)]
        branch: Option<String>,
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
    #[command(
        name = "webhook-secret",
        after_help = "Examples:\n  \
            $ deploy webhook-secret web --provider github\n  \
            $ deploy webhook-secret web --provider github --rotate --grace 1h"
    )]
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
    #[command(
        name = "webhook-secrets",
        after_help = "Examples:\n  $ deploy webhook-secrets web"
    )]
    WebhookSecrets { app: AppName },
    /// List an app's builds, newest first.
    #[command(after_help = "Examples:\n  $ deploy builds web\n  $ deploy builds web -o json")]
    Builds { app: AppName },
    /// Build an app at a git ref: its branch's tip when none is given
    /// (reuses an existing build of the same commit).
    #[command(after_help = "Examples:\n  \
        $ deploy build web\n  \
        $ deploy build web v1.4.2 --follow\n  \
        $ deploy build web HEAD~1 --wait")]
    Build {
        app: AppName,
        /// Branch, tag, sha or `REF~N` (`HEAD` is the app's branch); the
        /// app's branch when absent.
        #[arg(value_name = "REF")]
        git_ref: Option<GitRef>,
        /// Same as the positional REF (kept for scripts).
        #[arg(long = "ref", hide = true, conflicts_with = "git_ref")]
        ref_flag: Option<GitRef>,
        /// Wait for the build to end; print its log if it fails.
        #[arg(long)]
        wait: bool,
        /// Stream the build's log while it runs (implies --wait).
        #[arg(long)]
        follow: bool,
    },
    /// Print a build's log; `--follow` streams it until the build ends.
    #[command(
        name = "build-logs",
        after_help = "Examples:\n  $ deploy build-logs 42\n  $ deploy build-logs 42 --follow"
    )]
    BuildLogs {
        build: BuildId,
        #[arg(long)]
        follow: bool,
    },
    /// Mark an ended build bad (admins only): it is never reused (the next
    /// deploy of its commit by ref builds it again) and deploys of its
    /// version are refused.
    #[command(
        name = "build-bad",
        after_help = "Examples:\n  $ deploy build-bad 42 --reason \"leaks memory under load\""
    )]
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
    /// Deploy an app at a version (`17-3f9c2ab`) or a git ref to a cluster.
    #[command(after_help = "Examples:\n  \
        $ deploy release web 17-3f9c2ab --cluster prod --wait\n  \
        $ deploy release web main --cluster staging --batch 25% --wait\n  \
        $ deploy release web HEAD~1 --cluster prod --canary 1 --manual --yes-i-mean-prod")]
    Release(ReleaseArgs),
    /// Let a deploy waiting after its canaries (`--manual`) go on.
    #[command(after_help = "Examples:\n  $ deploy continue 118 --wait")]
    Continue {
        deploy: DeployId,
        /// Follow it to its end.
        #[arg(long)]
        wait: bool,
    },
    /// List deploys, newest first.
    #[command(after_help = "Examples:\n  \
        $ deploy deploys\n  \
        $ deploy deploys --app web --cluster prod --status failed,partial --limit 5\n  \
        $ deploy deploys --status running -o json")]
    Deploys(DeploysArgs),
    /// Show a deploy with one row per host; `--follow` shows it live until
    /// it ends (a table redrawn in place on a terminal).
    #[command(after_help = "Examples:\n  $ deploy status 118\n  $ deploy status 118 --follow")]
    Status {
        deploy: DeployId,
        /// Follow it live until it ends.
        #[arg(long)]
        follow: bool,
    },
    /// Stop a running deploy: no further host starts.
    #[command(after_help = "Examples:\n  $ deploy cancel 118")]
    Cancel { deploy: DeployId },
    /// Put back the version that ran before the newest deploy of an app to a
    /// cluster, and pin it there until `deploy unpin`.
    #[command(
        after_help = "Examples:\n  $ deploy rollback web --cluster prod --wait --yes-i-mean-prod"
    )]
    Rollback {
        app: AppName,
        #[arg(long)]
        cluster: Cluster,
        /// Follow the rollback to its end.
        #[arg(long)]
        wait: bool,
    },
    /// Let deploys of other versions through again after a rollback.
    #[command(after_help = "Examples:\n  $ deploy unpin web --cluster prod")]
    Unpin {
        app: AppName,
        #[arg(long)]
        cluster: Cluster,
    },
    /// Deploy the same version again to the hosts of a deploy that failed
    /// or timed out (a new deploy, linked to it).
    #[command(after_help = "Examples:\n  $ deploy retry 118 --wait")]
    Retry {
        deploy: DeployId,
        /// Follow the retry to its end.
        #[arg(long)]
        wait: bool,
    },
    /// List the clusters with deploy controls (protected, frozen).
    #[command(after_help = "Examples:\n  $ deploy clusters")]
    Clusters,
    /// Protect a cluster: deploys to it must name it back
    /// (`--yes-i-mean-CLUSTER`, or typed when asked). Admins only.
    #[command(after_help = "Examples:\n  $ deploy protect prod\n  $ deploy protect prod --off")]
    Protect {
        cluster: Cluster,
        /// Remove the protection instead.
        #[arg(long)]
        off: bool,
    },
    /// Freeze a cluster: no deploys (rollbacks still go) until the time is
    /// up or `deploy thaw`. Admins only.
    #[command(
        after_help = "Examples:\n  $ deploy freeze prod --for 2d --reason \"year-end freeze\""
    )]
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
    #[command(after_help = "Examples:\n  $ deploy thaw prod")]
    Thaw { cluster: Cluster },
    /// The hosts a release with these `--cluster` and `--hosts` would touch,
    /// with what each runs now. Nothing is changed.
    #[command(after_help = "Examples:\n  $ deploy targets --cluster prod --hosts 'web-[0-9]+'")]
    Targets {
        #[arg(long)]
        cluster: Cluster,
        /// Regular expression the whole host name must match.
        #[arg(long)]
        hosts: Option<HostSelector>,
    },
    /// List registered hosts and what they run; remove a retired one.
    #[command(after_help = "Examples:\n  $ deploy hosts\n  $ deploy hosts remove prod web-7")]
    Hosts {
        #[command(subcommand)]
        command: Option<HostsCommand>,
    },
    /// What each host should run against what its versionchecker reports:
    /// a summary per app and cluster, then every host that is not in sync
    /// (all of them with --all). Exits 1 when a host is out of sync.
    #[command(after_help = "Examples:\n  \
        $ deploy drift\n  \
        $ deploy drift --app web --cluster prod --state drifted,missing")]
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
    #[command(after_help = "Examples:\n  $ deploy sync web --cluster prod --wait")]
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
    #[command(after_help = "Examples:\n  $ deploy restart web --cluster prod --batch 2 --wait")]
    Restart(OperateArgs),
    /// Stop an app on a cluster's hosts and keep it stopped (until `deploy
    /// start` or a deploy), as a deploy.
    #[command(after_help = "Examples:\n  $ deploy stop web --cluster staging --wait")]
    Stop(OperateArgs),
    /// Start a stopped app on a cluster's hosts, health-checked, as a deploy.
    #[command(after_help = "Examples:\n  $ deploy start web --cluster staging --wait")]
    Start(OperateArgs),
    /// Show the end of an app's log on one host, relayed by its grabber
    /// (deployers); `--follow` keeps printing what the app writes.
    #[command(after_help = "Examples:\n  $ deploy logs web --cluster prod --host web-3 --follow")]
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
    #[command(after_help = "Examples:\n  \
        $ deploy audit --app web --limit 20\n  \
        $ deploy audit --actor ci-bot -o json")]
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
    /// Print a shell completion script.
    #[command(after_help = "Examples:\n  \
        $ deploy completions bash > /etc/bash_completion.d/deploy\n  \
        $ deploy completions zsh > \"${fpath[1]}/_deploy\"\n  \
        $ deploy completions fish > ~/.config/fish/completions/deploy.fish")]
    Completions { shell: clap_complete::Shell },
    /// Print the man page (roff), or write one per command into a directory.
    #[command(after_help = "Examples:\n  \
        $ deploy man | man -l -\n  \
        $ deploy man --dir /usr/local/share/man/man1")]
    Man {
        /// Write deploy.1 and deploy-COMMAND.1 pages here instead.
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
    },
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
