//! Errors for people: what happened, in the CLI's words, and the command
//! to run next (`unknown app "api"; registered apps: web, worker — see
//! `deploy apps``), instead of the API's paths.

use deploy::{AppName, BuildId, ClientError, Cluster, DeployId, ErrorCode};

use crate::Ctx;
use crate::args::{AppsCommand, Command};

/// What a command named, to explain its errors.
#[derive(Debug, Default)]
pub(crate) struct Subject {
    app: Option<AppName>,
    cluster: Option<Cluster>,
    deploy: Option<DeployId>,
    build: Option<BuildId>,
}

impl Subject {
    pub(crate) fn of(command: &Command) -> Self {
        let mut s = Subject::default();
        match command {
            Command::Register { app, .. }
            | Command::WebhookSecret { app, .. }
            | Command::WebhookSecrets { app }
            | Command::Builds { app }
            | Command::Build { app, .. }
            | Command::Sync { app, .. }
            | Command::Logs { app, .. } => s.app = Some(app.clone()),
            Command::Apps {
                command:
                    Some(
                        AppsCommand::Show { app }
                        | AppsCommand::Edit { app, .. }
                        | AppsCommand::Remove { app, .. },
                    ),
            } => s.app = Some(app.clone()),
            Command::Release(a) => {
                s.app = Some(a.app.clone());
                s.cluster = Some(a.cluster.clone());
            }
            Command::Rollback { app, cluster, .. } | Command::Unpin { app, cluster } => {
                s.app = Some(app.clone());
                s.cluster = Some(cluster.clone());
            }
            Command::Restart(a) | Command::Stop(a) | Command::Start(a) => {
                s.app = Some(a.app.clone());
                s.cluster = Some(a.cluster.clone());
            }
            Command::Status { deploy, .. }
            | Command::Cancel { deploy }
            | Command::Retry { deploy, .. }
            | Command::Continue { deploy, .. } => s.deploy = Some(*deploy),
            Command::BuildLogs { build, .. } | Command::BuildBad { build, .. } => {
                s.build = Some(*build)
            }
            Command::Freeze { cluster, .. }
            | Command::Thaw { cluster }
            | Command::Protect { cluster, .. } => s.cluster = Some(cluster.clone()),
            _ => {}
        }
        s
    }
}

/// The message to print for `e` (without `error: `), with a `hint:` line
/// when there is a command to run next.
pub(crate) async fn explain(ctx: &Ctx, subject: &Subject, e: &anyhow::Error) -> String {
    let Some(api) = e.chain().find_map(|c| c.downcast_ref::<ClientError>()) else {
        return format!("{e:#}");
    };
    let text = format!("{e:#}");
    let hint = match api {
        ClientError::Transport { url, .. } => Some(format!(
            "is AppTracker running at {}? Check --server, SLIPWAY_SERVER or your profile \
             (`deploy login --server URL`)",
            base(url)
        )),
        ClientError::Tls { .. } | ClientError::Decode { .. } => None,
        ClientError::Api { .. } => match api.error_code().unwrap_or(ErrorCode::Unknown) {
            ErrorCode::NotFound => {
                if let Some(msg) = not_found(ctx, subject).await {
                    return msg;
                }
                None
            }
            ErrorCode::Unauthorized => Some(
                "log in with `deploy login` (the token is read from standard input), or set \
                 SLIPWAY_TOKEN or --token-file FILE; an admin makes tokens with `deploy token \
                 create`"
                    .into(),
            ),
            ErrorCode::Forbidden => Some(
                "`deploy whoami` shows your token's role; ask an admin for a token with the \
                 role this needs"
                    .into(),
            ),
            ErrorCode::ClusterFrozen => Some(match &subject.cluster {
                Some(c) => format!(
                    "`deploy clusters` shows the freeze; an admin can lift it with `deploy thaw {c}`"
                ),
                None => "`deploy clusters` shows the freeze".into(),
            }),
            ErrorCode::DeployInProgress => Some(
                "add --queue to start once it ends, or follow it with `deploy status ID --follow` \
                 (`deploy deploys --status running` lists them)"
                    .into(),
            ),
            ErrorCode::Pinned => match (&subject.app, &subject.cluster) {
                (Some(a), Some(c)) => Some(format!(
                    "a rollback pinned it; `deploy unpin {a} --cluster {c}` lets other versions through"
                )),
                _ => None,
            },
            ErrorCode::ConfirmationRequired => subject
                .cluster
                .as_ref()
                .map(|c| format!("add --yes-i-mean-{c} to confirm the cluster by name")),
            _ => None,
        },
    };
    match hint {
        Some(h) => format!("{text}\nhint: {h}"),
        None => text,
    }
}

/// A 404 said in the CLI's words, naming what exists instead.
async fn not_found(ctx: &Ctx, subject: &Subject) -> Option<String> {
    if let Some(app) = &subject.app {
        let apps = ctx.apps().await.ok()?;
        if !apps.iter().any(|a| a.name == *app) {
            let names: Vec<&str> = apps.iter().map(|a| a.name.as_str()).collect();
            return Some(if names.is_empty() {
                format!(
                    "unknown app {:?}; no app is registered yet — see `deploy register APP GIT_URL`",
                    app.as_str()
                )
            } else {
                format!(
                    "unknown app {:?}; registered apps: {} — see `deploy apps`",
                    app.as_str(),
                    names.join(", ")
                )
            });
        }
    }
    if let Some(d) = subject.deploy {
        return Some(format!(
            "no deploy {d} — see `deploy deploys` for the recent ones"
        ));
    }
    if let Some(b) = subject.build {
        return Some(format!(
            "no build {b} — see `deploy builds APP` for an app's builds"
        ));
    }
    None
}

/// `http://host:port` of a request URL.
fn base(url: &str) -> &str {
    match url.find("/api/") {
        Some(i) => &url[..i],
        None => url,
    }
}
