//! Runs one parsed command against AppTracker: one module per command
//! group, each printing what the API answers (a table, or JSON with
//! `--output json`) and returning the exit code.

use std::process::ExitCode;

use deploy::{Cluster, DeployAction};

use crate::Ctx;
use crate::args::{
    AppsCommand, Cli, Command, EnvCommand, HostsCommand, NotifyCommand, TokenCommand,
};

mod apps;
mod audit;
mod builds;
mod clusters;
mod deploys;
mod drift;
mod env;
mod hosts;
mod logs;
mod meta;
mod notify;
mod release;
mod tokens;
mod webhooks;

/// Runs `cli`'s command; `confirmed` holds the clusters named by
/// `--yes-i-mean-CLUSTER` flags.
pub(crate) async fn run(ctx: &Ctx, cli: Cli, confirmed: &[Cluster]) -> anyhow::Result<ExitCode> {
    let client = ctx;
    match cli.command {
        Command::Login => {
            meta::login(
                ctx,
                cli.server.as_deref(),
                cli.ca_file.as_deref(),
                cli.profile.as_deref(),
            )
            .await
        }
        Command::Logout => meta::logout(cli.profile.as_deref()),
        Command::Whoami => meta::whoami(ctx).await,
        Command::Completions { shell } => meta::completions(shell),
        Command::Man { dir } => meta::man(dir.as_deref()),
        Command::Apps { command } => match command {
            None => apps::list(client).await,
            Some(AppsCommand::Show { app }) => apps::show(client, &app).await,
            Some(AppsCommand::Edit {
                app,
                branch,
                auto_deploy,
                auto_deploy_hosts,
                no_auto_deploy,
                new_hosts,
            }) => {
                let rule = match (auto_deploy, no_auto_deploy) {
                    (Some(cluster), _) => Some(Some(deploy::AutoDeploy {
                        cluster,
                        hosts: auto_deploy_hosts,
                    })),
                    (None, true) => Some(None),
                    (None, false) => None,
                };
                apps::edit(client, &app, branch, rule, new_hosts).await
            }
            Some(AppsCommand::Remove { app, yes }) => apps::remove(client, &app, yes).await,
        },
        Command::Register {
            app,
            git_url,
            branch,
            new_hosts,
            root,
        } => apps::register(client, app, git_url, branch, new_hosts, root).await,
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
        Command::Build {
            app,
            git_ref,
            ref_flag,
            wait,
            follow,
        } => builds::build(client, &app, git_ref.or(ref_flag), wait, follow).await,
        Command::BuildLogs { build, follow } => builds::logs(client, build, follow).await,
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
        Command::Hosts { command } => match command {
            None => hosts::list(client).await,
            Some(HostsCommand::Remove { cluster, host }) => {
                hosts::remove(client, &cluster, &host).await
            }
        },
        Command::Deploys(args) => deploys::list(client, args).await,
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
