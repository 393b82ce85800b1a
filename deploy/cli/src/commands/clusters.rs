//! Cluster controls: `deploy clusters`, `protect`, `freeze` and `thaw`.

use crate::Ctx;
use std::process::ExitCode;

use deploy::Cluster;

/// `deploy clusters`: those protected or frozen.
pub(crate) async fn list(client: &Ctx) -> anyhow::Result<ExitCode> {
    let clusters = client.clusters().await?;
    if client.out.json() {
        crate::output::json(&clusters)?;
        return Ok(ExitCode::SUCCESS);
    }
    if clusters.is_empty() {
        println!("no cluster is protected or frozen");
    }
    let now = deploy::Timestamp::now();
    for c in clusters {
        let mut line = format!("{:<16}", c.name.as_str());
        if c.protected {
            line.push_str(" protected");
        }
        if let Some(until) = c.frozen_at(now) {
            line.push_str(&format!(
                " frozen until {until} by {}: {}",
                c.frozen_by.as_deref().unwrap_or("?"),
                c.freeze_reason.as_deref().unwrap_or("")
            ));
        }
        println!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `deploy protect CLUSTER [--off]`.
pub(crate) async fn protect(
    client: &Ctx,
    cluster: &Cluster,
    protected: bool,
) -> anyhow::Result<ExitCode> {
    let c = client.set_protected(cluster, protected).await?;
    println!(
        "{} is {}",
        c.name,
        if c.protected {
            "protected"
        } else {
            "not protected"
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// `deploy freeze CLUSTER --for D --reason R`.
pub(crate) async fn freeze(
    client: &Ctx,
    cluster: &Cluster,
    duration: String,
    reason: String,
) -> anyhow::Result<ExitCode> {
    let c = client
        .freeze(
            cluster,
            &deploy::Freeze {
                until: None,
                duration: Some(duration),
                reason,
            },
        )
        .await?;
    println!(
        "{} is frozen until {}",
        c.name,
        c.frozen_until.map_or("?".into(), |t| t.to_string())
    );
    Ok(ExitCode::SUCCESS)
}

/// `deploy thaw CLUSTER`.
pub(crate) async fn thaw(client: &Ctx, cluster: &Cluster) -> anyhow::Result<ExitCode> {
    let c = client.thaw(cluster).await?;
    println!("{} is no longer frozen", c.name);
    Ok(ExitCode::SUCCESS)
}
