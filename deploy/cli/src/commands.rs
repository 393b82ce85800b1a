//! Runs one parsed command against AppTracker: one module per command
//! group, each printing what the API answers and returning the exit code.

use std::process::ExitCode;

use deploy::{Client, Cluster};

use deploy::DeployAction;

use crate::args::{Command, EnvCommand, NotifyCommand, TokenCommand};

mod apps;
mod audit;
mod builds;
mod clusters;
mod deploys;
mod drift;
mod env;
mod hosts;
mod logs;
mod notify;
mod release;
mod tokens;
mod webhooks;

/// Runs `command`; `confirmed` holds the clusters named by
/// `--yes-i-mean-CLUSTER` flags.
pub(crate) async fn run(
    client: &Client,
    command: Command,
    confirmed: &[Cluster],
) -> anyhow::Result<ExitCode> {
    match command {
        Command::Apps => apps::list(client).await,
        Command::Register {
            app,
            git_url,
            new_hosts,
            root,
        } => apps::register(client, app, git_url, new_hosts, root).await,
        Command::WebhookSecret {
            app,
            provider,
            rotate,
            grace,
            delete,
        } => {
            if delete {
                webhooks::delete(client, &app, provider).await
            } else {
                webhooks::set(client, &app, provider, rotate, grace).await
            }
        }
        Command::WebhookSecrets { app } => webhooks::list(client, &app).await,
        Command::Builds { app } => builds::list(client, &app).await,
        Command::BuildBad { build, reason } => builds::mark_bad(client, build, &reason).await,
        Command::Build { app, git_ref, wait } => builds::build(client, &app, git_ref, wait).await,
        Command::Token { command } => match command {
            TokenCommand::Create {
                name,
                role,
                cluster,
                host,
            } => tokens::create(client, name, role, cluster, host).await,
            TokenCommand::List => tokens::list(client).await,
            TokenCommand::Revoke { name } => tokens::revoke(client, &name).await,
        },
        Command::Release(args) => release::release(client, args, confirmed).await,
        Command::Status { deploy, follow } => deploys::status(client, deploy, follow).await,
        Command::Targets { cluster, hosts } => {
            hosts::targets(client, &cluster, hosts.as_ref()).await
        }
        Command::Retry { deploy, wait } => deploys::retry(client, deploy, wait).await,
        Command::Rollback { app, cluster, wait } => {
            deploys::rollback(client, &app, &cluster, wait, confirmed).await
        }
        Command::Continue { deploy, wait } => deploys::go_on(client, deploy, wait).await,
        Command::Clusters => clusters::list(client).await,
        Command::Protect { cluster, off } => clusters::protect(client, &cluster, !off).await,
        Command::Freeze {
            cluster,
            duration,
            reason,
        } => clusters::freeze(client, &cluster, duration, reason).await,
        Command::Thaw { cluster } => clusters::thaw(client, &cluster).await,
        Command::Unpin { app, cluster } => deploys::unpin(client, &app, &cluster).await,
        Command::Cancel { deploy } => deploys::cancel(client, deploy).await,
        Command::Hosts => hosts::list(client).await,
        Command::Drift {
            app,
            cluster,
            state,
            all,
        } => drift::show(client, app, cluster, state, all).await,
        Command::Sync { app, cluster, wait } => drift::sync(client, app, cluster, wait).await,
        Command::Env { command } => match command {
            EnvCommand::Set {
                app,
                vars,
                cluster,
                secret,
                apply,
                wait,
            } => env::set(client, &app, &vars, cluster, secret, apply, wait).await,
            EnvCommand::Unset {
                app,
                keys,
                cluster,
                apply,
                wait,
            } => env::unset(client, &app, keys, cluster, apply, wait).await,
            EnvCommand::List { app, cluster } => env::list(client, &app, cluster.as_ref()).await,
        },
        Command::Restart(args) => {
            env::operate(client, DeployAction::Restart, args, confirmed).await
        }
        Command::Stop(args) => env::operate(client, DeployAction::Stop, args, confirmed).await,
        Command::Start(args) => env::operate(client, DeployAction::Start, args, confirmed).await,
        Command::Logs {
            app,
            cluster,
            host,
            follow,
            bytes,
        } => logs::show(client, &app, cluster, host, follow, bytes).await,
        Command::Notify { command } => match command {
            NotifyCommand::Add {
                url,
                app,
                cluster,
                slack,
                events,
            } => notify::add(client, url, app, cluster, slack, events).await,
            NotifyCommand::List => notify::list(client).await,
            NotifyCommand::Rm { id } => notify::rm(client, id).await,
            NotifyCommand::Deliveries { id } => notify::deliveries(client, id).await,
        },
        Command::Audit {
            limit,
            before,
            actor,
            app,
        } => audit::page(client, limit, before, actor, app).await,
    }
}
