//! Following a deploy live over its event stream, and the exit code a
//! deploy's end makes.

use std::process::ExitCode;

use deploy::{Client, DeployEvent, DeployId, DeployStatus};
use futures::StreamExt;

use crate::print;

/// 0 for a deploy that succeeded or is still going; 1 for one that ended
/// otherwise.
pub(crate) fn exit_for(status: DeployStatus) -> ExitCode {
    match status {
        DeployStatus::Succeeded => ExitCode::SUCCESS,
        s if s.is_terminal() => ExitCode::FAILURE,
        _ => ExitCode::SUCCESS,
    }
}

/// Follows a deploy live, printing each host's phase changes; the exit code
/// says whether every host succeeded.
pub(crate) async fn to_end(client: &Client, id: DeployId) -> anyhow::Result<ExitCode> {
    let mut events = Box::pin(client.deploy_stream(id).await?);
    let mut status = DeployStatus::Unknown;
    while let Some(ev) = events.next().await {
        match ev? {
            DeployEvent::Host { host, .. } => print::host_row(&host),
            DeployEvent::Status {
                status: s,
                version,
                error,
                ..
            } => {
                status = s;
                let v = version.map(|v| format!(" {v}")).unwrap_or_default();
                println!("deploy {id}{v}: {s}");
                if let Some(e) = error {
                    println!("  error: {e}");
                }
                if s.is_terminal() {
                    break;
                }
            }
            DeployEvent::Unknown => {}
        }
    }
    if !status.is_terminal() {
        // The stream broke before the end: report what the record says.
        let d = client.deploy(id).await?;
        print::deploy_with_hosts(&d);
        status = d.status;
    }
    Ok(exit_for(status))
}
