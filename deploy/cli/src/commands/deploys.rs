//! Commands on deploys that exist: `deploy status`, `continue`, `cancel`,
//! `retry`, `rollback` and `unpin` (a rollback's pin).

use std::process::ExitCode;

use deploy::{AppName, Client, Cluster, DeployId};

use crate::confirm::{ask_confirmation, confirmation_for};
use crate::{follow, print};

/// `deploy status DEPLOY [--follow]`: 1 when the deploy ended without
/// succeeding.
pub(crate) async fn status(
    client: &Client,
    deploy: DeployId,
    live: bool,
) -> anyhow::Result<ExitCode> {
    if live {
        return follow::to_end(client, deploy).await;
    }
    let d = client.deploy(deploy).await?;
    print::deploy_with_hosts(&d);
    Ok(follow::exit_for(d.status))
}

/// `deploy retry DEPLOY [--wait]`.
pub(crate) async fn retry(
    client: &Client,
    deploy: DeployId,
    wait: bool,
) -> anyhow::Result<ExitCode> {
    let d = client.retry_deploy(deploy).await?;
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
    client: &Client,
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
pub(crate) async fn go_on(
    client: &Client,
    deploy: DeployId,
    wait: bool,
) -> anyhow::Result<ExitCode> {
    let d = client.continue_deploy(deploy).await?;
    println!("deploy {} goes on: batch {}", d.id, d.current_batch + 1);
    if wait {
        return follow::to_end(client, d.id).await;
    }
    Ok(ExitCode::SUCCESS)
}

/// `deploy unpin APP --cluster C`.
pub(crate) async fn unpin(
    client: &Client,
    app: &AppName,
    cluster: &Cluster,
) -> anyhow::Result<ExitCode> {
    client.unpin(app, cluster).await?;
    println!("{app} on {cluster} is no longer pinned");
    Ok(ExitCode::SUCCESS)
}

/// `deploy cancel DEPLOY`: the deploy as it stopped, a row per host.
pub(crate) async fn cancel(client: &Client, deploy: DeployId) -> anyhow::Result<ExitCode> {
    let d = client.cancel_deploy(deploy).await?;
    println!("deploy {} {}", d.id, d.status);
    for h in &d.hosts {
        print::host_row(h);
    }
    Ok(ExitCode::SUCCESS)
}
