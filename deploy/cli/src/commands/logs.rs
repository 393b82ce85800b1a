//! `deploy logs APP --cluster C --host H [--follow] [--bytes N]`: an app's
//! log from its host, relayed by the host's grabber through AppTracker.

use crate::Ctx;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use deploy::{AppName, Cluster, HostName, LogRequest};

/// How often `--follow` asks for more.
const FOLLOW_EVERY: Duration = Duration::from_secs(1);

pub(crate) async fn show(
    client: &Ctx,
    app: &AppName,
    cluster: Cluster,
    host: HostName,
    follow: bool,
    bytes: u64,
) -> anyhow::Result<ExitCode> {
    let mut req = LogRequest {
        cluster,
        host,
        offset: None,
        max_bytes: Some(bytes),
    };
    loop {
        let piece = client.read_log(app, &req).await?;
        if piece.truncated && req.offset.is_some() {
            eprintln!("[… the log was rotated or more was written than one piece holds …]");
        }
        let mut out = std::io::stdout().lock();
        out.write_all(piece.text.as_bytes())?;
        out.flush()?;
        if !follow {
            return Ok(ExitCode::SUCCESS);
        }
        req.offset = Some(piece.next_offset);
        req.max_bytes = Some(deploy::MAX_LOG_READ);
        tokio::time::sleep(FOLLOW_EVERY).await;
    }
}
