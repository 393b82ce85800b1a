//! The in-process build worker (the embedded default): claims queued builds
//! like any `packer worker` does, builds them with the packer library,
//! stores the artifact and reports the build. It calls the tracker, not the
//! HTTP API, and holds its leases as an in-process holder no token can be.

use std::time::Duration;

use deploy::{BuildJob, BuildOutcome};
use tokio_util::sync::CancellationToken;

use crate::queue::Holder;
use crate::tracker::Tracker;

/// Says at start-up whether builds can run sandboxed: a builder whose
/// sandbox cannot be set up fails every build (never silently unsandboxed),
/// so someone must act; `sandbox = "none"` warns.
pub async fn check_sandbox(settings: &packer::Settings) {
    let sandbox = settings.sandbox.clone();
    match tokio::task::spawn_blocking(move || packer::check_sandbox(&sandbox)).await {
        Ok(Ok(packer::SandboxKind::Bubblewrap)) => {
            tracing::info!("builds run in a bubblewrap sandbox");
        }
        Ok(Ok(packer::SandboxKind::None)) => tracing::warn!(
            "builds are not sandboxed (builder.sandbox = \"none\"): a build can read the signing key, the database and this process's environment; use only for trusted single-user setups"
        ),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "the in-process builder cannot sandbox builds: every build will fail until this is fixed")
        }
        Err(e) => tracing::error!(error = %e, "checking the build sandbox failed"),
    }
}

/// Runs queued builds until `shutdown`; a build in flight is finished first.
pub async fn run(tracker: Tracker, shutdown: CancellationToken) {
    // Named like a packer worker: the machine (by the agents' one rule),
    // then the process. Only a label: the lease is bound to the holder.
    let machine = deploy::HostName::of_this_machine()
        .map(|h| h.to_string())
        .unwrap_or_else(|_| "localhost".to_string());
    let worker = Holder::in_process(&format!("apptracker-{machine}-{}", std::process::id()));
    loop {
        match tracker.claim_build(&worker, true).await {
            Ok(Some(job)) => {
                run_one(&tracker, &worker, job).await;
                continue;
            }
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "cannot claim a build"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tracker.build_queued().notified() => {}
            // A safety net for a notification lost to a race.
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
}

/// The machine's host name, or `localhost` when it is not a valid one
/// (the rule the grabber follows too).
#[tracing::instrument(skip_all, fields(build_id = %job.build.id, app = %job.build.app, version = %job.build.version))]
async fn run_one(tracker: &Tracker, worker: &Holder, job: BuildJob) {
    let build = &job.build;
    tracing::info!(commit = %build.commit, "build started");
    // Renew the lease while the build runs, so the sweeper leaves it alone.
    let renew = {
        let tracker = tracker.clone();
        let worker = worker.clone();
        let id = build.id;
        let every = tracker.config().build_lease / 3;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                if let Err(e) = tracker.renew_build_lease(id, &worker).await {
                    tracing::warn!(error = %e, "lost the build's lease");
                    return;
                }
            }
        })
    };
    let (outcome, log) = build_and_store(tracker, worker, &job).await;
    renew.abort();
    if let Err(e) = tracker.finish_build(build.id, worker, &outcome, &log).await {
        tracing::error!(error = %e, "cannot record the build's outcome");
    }
}

async fn build_and_store(
    tracker: &Tracker,
    worker: &Holder,
    job: &BuildJob,
) -> (BuildOutcome, String) {
    let build = &job.build;
    let settings = tracker.packer_settings();
    // The log goes to the database as it is written, like a worker's
    // through the API, so `GET /api/v1/builds/{id}` shows a running build.
    let stream: packer::worker::LogStream = {
        let tracker = tracker.clone();
        let id = build.id;
        let worker = worker.clone();
        Box::new(move |text| {
            let tracker = tracker.clone();
            let worker = worker.clone();
            Box::pin(async move {
                if let Err(e) = tracker.append_build_log(id, &worker, &text).await {
                    tracing::debug!(error = %e, "cannot stream the build log");
                }
            })
        })
    };
    packer::worker::build_and_deliver(job, settings, stream, async |out: &packer::BuildOutput| {
        // The settings always hold AppTracker's key (see startup.rs).
        tracker
            .store_local_artifact(build, worker, out)
            .await
            .map_err(|e| format!("{e:#}"))
    })
    .await
}
