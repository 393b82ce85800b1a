//! The flags of the commands that take many: `release`, `deploys` and
//! `restart|stop|start`.

use clap::Args;
use deploy::api::DeployStatuses;
use deploy::{AppName, Cluster, HostSelector, Portion};

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
    /// Follow the deploy to its end; exit 1 unless every host succeeded.
    #[arg(long)]
    pub(crate) wait: bool,
}

// The flags of `deploy deploys`.
#[derive(Args)]
pub(crate) struct DeploysArgs {
    /// Only this app's deploys.
    #[arg(long)]
    pub(crate) app: Option<AppName>,
    /// Only deploys to this cluster.
    #[arg(long)]
    pub(crate) cluster: Option<Cluster>,
    /// Only deploys in these states: queued, building, running, succeeded,
    /// failed, partial, cancelled (comma separated).
    #[arg(long, value_parser = DeployStatuses::parse)]
    pub(crate) status: Option<DeployStatuses>,
    /// How many (the newest first; at most 500).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=500))]
    pub(crate) limit: u32,
}

// The flags of `deploy release` (a struct of their own: the command takes
// many). No doc comment: the command's help is the variant's.
#[derive(Args)]
pub(crate) struct ReleaseArgs {
    pub(crate) app: AppName,
    /// A built version (`<number>-<sha>`), or a git ref to build first
    /// (branch, tag, sha, `REF~N`; `HEAD` is the app's branch).
    pub(crate) version_or_ref: String,
    #[arg(long)]
    pub(crate) cluster: Cluster,
    /// Regular expression the whole host name must match; every host when absent.
    #[arg(long)]
    pub(crate) hosts: Option<HostSelector>,
    /// Follow the deploy to its end; exit 1 unless every host succeeded.
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
