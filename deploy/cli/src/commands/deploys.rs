//! Commands on deploys that exist: `deploy status`, `continue`, `cancel`,
//! `retry`, `rollback` and `unpin` (a rollback's pin).

use crate::Ctx;
use std::process::ExitCode;

use deploy::{AppName, Cluster, DeployId};

use crate::args::DeploysArgs;
use crate::confirm::{ask_confirmation, confirmation_for};
use crate::output::{ago, print_table, table, took};
use crate::{follow, print};

/// `deploy status DEPLOY [--follow]`: 1 when the deploy ended without
/// succeeding.
pub(crate) async fn status(client: &Ctx, deploy: DeployId, live: bool) -> anyhow::Result<ExitCode> {
    if live {
        return follow::to_end(client, deploy).await;
    }
    let d = client.deploy(deploy).await?;
    if client.out.json() {
        crate::output::json(&d)?;
    } else {
        print::deploy_with_hosts(&d);
    }
    Ok(follow::exit_for(d.status))
}

/// `deploy deploys [--app A] [--cluster C] [--status S,…] [--limit N]`:
/// newest first.
pub(crate) async fn list(client: &Ctx, args: DeploysArgs) -> anyhow::Result<ExitCode> {
    let query = deploy::api::DeployQuery {
        limit: Some(args.limit),
        cursor: None,
        app: args.app,
        cluster: args.cluster,
        status: args.status,
    };
    let deploys: Vec<deploy::Deploy> = client.page("/api/v1/deploys", &query).await?.items;
    if client.out.json() {
        crate::output::json(&deploys)?;
        return Ok(ExitCode::SUCCESS);
    }
    if deploys.is_empty() {
        println!("no deploys match");
        return Ok(ExitCode::SUCCESS);
    }
    let mut t = table(&[
        "ID", "APP", "VERSION", "CLUSTER", "STATUS", "HOSTS", "BY", "STARTED", "TOOK",
    ]);
    for d in &deploys {
        let ok = d
            .hosts
            .iter()
            .filter(|h| {
                matches!(
                    h.phase,
                    deploy::HostPhase::Done | deploy::HostPhase::Skipped
                )
            })
            .count();
        let mut what = d
            .version
            .as_ref()
            .map(|v| v.to_string())
            .or_else(|| d.git_ref.clone())
            .unwrap_or_else(|| "-".into());
        if !d.action.is_deploy() {
            what = format!("{} {what}", d.action);
        }
        t.add_row(vec![
            d.id.to_string(),
            d.app.to_string(),
            what,
            d.cluster.to_string(),
            d.status.to_string(),
            format!("{ok}/{}", d.hosts.len()),
            d.requested_by.clone().unwrap_or_else(|| "-".into()),
            ago(d.created_at),
            d.finished_at
                .map(|f| took(f.millis_since(d.created_at)))
                .unwrap_or_else(|| "-".into()),
        ]);
    }
    print_table(&t);
    Ok(ExitCode::SUCCESS)
}

/// `deploy retry DEPLOY [--wait]`.
pub(crate) async fn retry(client: &Ctx, deploy: DeployId, wait: bool) -> anyhow::Result<ExitCode> {
    let d = client.retry_deploy(deploy).await?;
    if let Some(code) = json_or_follow(client, &d, wait).await? {
        return Ok(code);
    }
    println!(
        "deploy {} retries {} on {} host(s): {}",
        d.id,
        deploy,
        d.hosts.len(),
        d.status
    );
    if wait {
        return follow::to_end(client, d.id).await;
    }
    Ok(ExitCode::SUCCESS)
}

/// `deploy rollback APP --cluster C [--wait]`, confirmed by name on a
/// protected cluster.
pub(crate) async fn rollback(
    client: &Ctx,
    app: &AppName,
    cluster: &Cluster,
    wait: bool,
    confirmed: &[Cluster],
) -> anyhow::Result<ExitCode> {
    let confirm = confirmation_for(cluster, confirmed);
    let d = match client
        .rollback_confirmed(app, cluster, confirm.as_ref())
        .await
    {
        Ok(d) => d,
        Err(e) => match ask_confirmation(&e, cluster) {
            Some(typed) => {
                client
                    .rollback_confirmed(app, cluster, Some(&typed))
                    .await?
            }
            None => return Err(e.into()),
        },
    };
    if let Some(code) = json_or_follow(client, &d, wait).await? {
        return Ok(code);
    }
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
        return follow::to_end(client, d.id).await;
    }
    Ok(ExitCode::SUCCESS)
}

/// `deploy continue DEPLOY [--wait]`: the batches after a manual canary.
pub(crate) async fn go_on(client: &Ctx, deploy: DeployId, wait: bool) -> anyhow::Result<ExitCode> {
    let d = client.continue_deploy(deploy).await?;
    if let Some(code) = json_or_follow(client, &d, wait).await? {
        return Ok(code);
    }
    println!("deploy {} goes on: batch {}", d.id, d.current_batch + 1);
    if wait {
        return follow::to_end(client, d.id).await;
    }
    Ok(ExitCode::SUCCESS)
}

/// `deploy unpin APP --cluster C`.
pub(crate) async fn unpin(
    client: &Ctx,
    app: &AppName,
    cluster: &Cluster,
) -> anyhow::Result<ExitCode> {
    client.unpin(app, cluster).await?;
    println!("{app} on {cluster} is no longer pinned");
    Ok(ExitCode::SUCCESS)
}

/// `deploy cancel DEPLOY`: the deploy as it stopped, a row per host.
pub(crate) async fn cancel(client: &Ctx, deploy: DeployId) -> anyhow::Result<ExitCode> {
    let d = client.cancel_deploy(deploy).await?;
    if client.out.json() {
        crate::output::json(&d)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!("deploy {} {}", d.id, d.status);
    let width = print::transfer_width(&d.hosts);
    for h in &d.hosts {
        print::host_row(h, width);
    }
    Ok(ExitCode::SUCCESS)
}

/// With `--output json`: the deploy followed to its end (its final record)
/// or as it started; `None` when printing for people.
pub(crate) async fn json_or_follow(
    client: &Ctx,
    d: &deploy::Deploy,
    wait: bool,
) -> anyhow::Result<Option<ExitCode>> {
    if !client.out.json() {
        return Ok(None);
    }
    if wait {
        return follow::to_end(client, d.id).await.map(Some);
    }
    crate::output::json(d)?;
    Ok(Some(ExitCode::SUCCESS))
}
