//! `deploy drift` (what each host runs against what it should) and
//! `deploy sync` (deploy the desired version to the hosts that drifted).

use crate::Ctx;
use std::process::ExitCode;

use deploy::{AppName, Cluster, DriftQuery, SyncRequest};

use crate::{follow, print};

/// `deploy drift`: 1 when a host is out of sync or stale.
pub(crate) async fn show(
    client: &Ctx,
    app: Option<AppName>,
    cluster: Option<Cluster>,
    state: Option<String>,
    all: bool,
) -> anyhow::Result<ExitCode> {
    let report = client
        .drift(&DriftQuery {
            app: app.map(|a| a.to_string()),
            cluster: cluster.map(|c| c.to_string()),
            state: state.clone(),
        })
        .await?;
    if client.out.json() {
        crate::output::json(&report)?;
    } else {
        print::drift(&report, all || state.is_some());
    }
    let bad = report
        .summary
        .iter()
        .any(|s| s.counts.out_of_sync() + s.counts.stale > 0);
    Ok(if bad {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// `deploy sync APP --cluster C [--wait]`.
pub(crate) async fn sync(
    client: &Ctx,
    app: AppName,
    cluster: Cluster,
    wait: bool,
) -> anyhow::Result<ExitCode> {
    let out = client.sync(&SyncRequest { app, cluster }).await?;
    let d = &out.deploy;
    let names: Vec<&str> = out.hosts.iter().map(|h| h.as_str()).collect();
    println!(
        "deploy {} puts {} {} back on {} host(s) of {}: {}",
        d.id,
        d.app,
        d.version.as_ref().map_or("?".into(), |v| v.to_string()),
        out.hosts.len(),
        d.cluster,
        names.join(", ")
    );
    for l in &out.left {
        println!(
            "  left {:<20} {:<12} {}",
            l.host.as_str(),
            l.state.as_str(),
            l.reason
        );
    }
    if wait {
        return follow::to_end(client, d.id).await;
    }
    Ok(ExitCode::SUCCESS)
}
