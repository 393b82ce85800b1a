//! Following a deploy to its real end: over its event stream, re-opened
//! when it closes or breaks (an AppTracker restarted behind a load
//! balancer), with the deploy's record read between tries, so `--wait` and
//! `--follow` never end before the deploy has. The exit code is the one the
//! deploy's end makes.

use std::process::ExitCode;
use std::time::Duration;

use deploy::{Backoff, Deploy, DeployEvent, DeployId, DeployStatus};
use futures::StreamExt;

use crate::Ctx;
use crate::live::View;

/// 0 for a deploy that succeeded or is still going; 1 for one that ended
/// otherwise.
pub(crate) fn exit_for(status: DeployStatus) -> ExitCode {
    match status {
        DeployStatus::Succeeded => ExitCode::SUCCESS,
        s if s.is_terminal() => ExitCode::from(crate::exit::FAILED),
        _ => ExitCode::SUCCESS,
    }
}

/// Follows a deploy until it ends, as a live table on a terminal or one
/// line per change otherwise (its final record as JSON with `-o json`);
/// 0 when every host succeeded, 1 otherwise.
pub(crate) async fn to_end(ctx: &Ctx, id: DeployId) -> anyhow::Result<ExitCode> {
    let mut view = View::new(ctx.out, id);
    let end = follow(ctx, id, &mut view).await?;
    view.finish(&end)?;
    Ok(exit_for(end.status))
}

/// The deploy's record once it has ended, feeding `view` meanwhile.
async fn follow(ctx: &Ctx, id: DeployId, view: &mut View) -> anyhow::Result<Deploy> {
    // Quick to come back after a restart, never hammering a server that is
    // down: waits from 250 ms up to 5 s.
    let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(5));
    loop {
        match ctx.deploy_stream(id).await {
            Ok(events) => {
                let mut events = Box::pin(events);
                let mut first = true;
                let mut ended = false;
                let mut broke = false;
                while let Some(ev) = events.next().await {
                    if first {
                        first = false;
                        if backoff.recovered() {
                            view.note("reconnected to AppTracker");
                        }
                        backoff.reset();
                    }
                    match ev {
                        Ok(DeployEvent::Host { host, .. }) => view.host(&host),
                        Ok(DeployEvent::Status {
                            status,
                            version,
                            error,
                            ..
                        }) => {
                            view.status(status, version.as_ref(), error.as_deref());
                            if status.is_terminal() {
                                ended = true;
                                break;
                            }
                        }
                        Ok(DeployEvent::Unknown) => {}
                        Err(e) => {
                            if backoff.failed() {
                                view.note(&format!("the event stream broke ({e}); reconnecting"));
                            }
                            broke = true;
                            break;
                        }
                    }
                }
                if !ended && !broke && backoff.failed() {
                    view.note("the event stream closed before the deploy ended; reconnecting");
                }
            }
            Err(e) if e.is_retryable() => {
                if backoff.failed() {
                    view.note(&format!("{e}; retrying until it answers"));
                }
            }
            Err(e) => return Err(e.into()),
        }
        // The record decides: a stream can close or break at any moment,
        // and a deploy can end while nobody listens.
        match ctx.deploy(id).await {
            Ok(d) if d.status.is_terminal() => return Ok(d),
            Ok(d) => view.record(&d),
            Err(e) if e.is_retryable() => {
                if backoff.failed() {
                    view.note(&format!("{e}; retrying until it answers"));
                }
            }
            Err(e) => return Err(e.into()),
        }
        tokio::time::sleep(backoff.next_wait()).await;
    }
}
