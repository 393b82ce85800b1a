//! `deploy release`: a deploy of a version or a git ref, with its rollout
//! strategy, confirmed by name on a protected cluster.

use crate::Ctx;
use std::process::ExitCode;

use deploy::{Cluster, CreateDeploy, DeployStatus, Source, Strategy};

use crate::args::ReleaseArgs;
use crate::confirm::{ask_confirmation, confirmation_for};
use crate::follow;

/// Creates the deploy (asking for the cluster's name when the server wants
/// it and a person is there); with `--wait`, follows it to its end.
pub(crate) async fn release(
    client: &Ctx,
    args: ReleaseArgs,
    confirmed: &[Cluster],
) -> anyhow::Result<ExitCode> {
    let ReleaseArgs {
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
    } = args;
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
    let (version, git_ref) = Source::from_arg(&version_or_ref)?.into_fields();
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
    if client.out.json() {
        if wait {
            return follow::to_end(client, d.id).await;
        }
        crate::output::json(&d)?;
        return Ok(ExitCode::SUCCESS);
    }
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
        return follow::to_end(client, d.id).await;
    }
    Ok(ExitCode::SUCCESS)
}
