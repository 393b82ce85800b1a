//! The in-process build worker (the embedded default): claims queued builds
//! from the database, runs packer, stores the artifact and reports the build.

use std::time::Duration;

use deploy::Build;
use tokio_util::sync::CancellationToken;

use crate::tracker::Tracker;

/// Runs queued builds until `shutdown`; a build in flight is finished first.
pub async fn run(tracker: Tracker, shutdown: CancellationToken) {
    match tracker.db().requeue_running_builds().await {
        Ok(0) => {}
        Ok(n) => tracing::warn!(
            builds = n,
            "requeued builds left running by a previous process"
        ),
        Err(e) => tracing::error!(error = %e, "cannot requeue interrupted builds"),
    }
    loop {
        match tracker.db().claim_build().await {
            Ok(Some((build, git_url))) => {
                run_one(&tracker, build, git_url).await;
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

#[tracing::instrument(skip_all, fields(build_id = %build.id, app = %build.app, version = %build.version))]
async fn run_one(tracker: &Tracker, build: Build, git_url: String) {
    tracing::info!(commit = %build.commit, "build started");
    let outcome = build_and_store(tracker, &build, &git_url).await;
    let db = tracker.db();
    let saved = match &outcome {
        Ok((artifact, build_type, log)) => {
            tracing::info!(sha256 = %artifact.sha256, size = artifact.size, "build succeeded");
            db.finish_build_ok(build.id, *build_type, artifact, log)
                .await
        }
        Err((error, log)) => {
            tracing::warn!(error = %error, "build failed");
            db.finish_build_failed(build.id, error, log).await
        }
    };
    if let Err(e) = saved {
        tracing::error!(error = %e, "cannot record the build's outcome");
        return;
    }
    if let Err(e) = tracker.on_build_finished(build.id).await {
        tracing::error!(error = ?e, "cannot start the deploys waiting on the build");
    }
}

type Outcome = Result<(deploy::ArtifactRef, deploy::BuildType, String), (String, String)>;

async fn build_and_store(tracker: &Tracker, build: &Build, git_url: &str) -> Outcome {
    let scratch = tempfile::Builder::new()
        .prefix("slipway-build-")
        .tempdir()
        .map_err(|e| {
            (
                format!("cannot create a scratch directory: {e}"),
                String::new(),
            )
        })?;
    let (app, version, commit, url) = (
        build.app.clone(),
        build.version.clone(),
        build.commit.clone(),
        git_url.to_string(),
    );
    let root = scratch.path().to_path_buf();
    let span = tracing::Span::current();
    let result = tokio::task::spawn_blocking(move || {
        let _enter = span.enter();
        let work = root.join("src");
        let out = root.join("out");
        std::fs::create_dir_all(&out).map_err(|e| {
            (
                format!("cannot create {}: {e}", out.display()),
                String::new(),
            )
        })?;
        packer::build(&packer::BuildRequest {
            app: &app,
            git_url: &url,
            commit: &commit,
            version: &version,
            work_dir: &work,
            out_dir: &out,
        })
        .map_err(|e| (e.to_string(), e.log().to_string()))
    })
    .await
    .map_err(|e| (format!("build task failed: {e}"), String::new()))??;
    let key = crate::store::artifact_key(&build.app, &build.version);
    tracker
        .store()
        .put(&key, &result.artifact_path)
        .await
        .map_err(|e| (format!("{e:#}"), result.log.clone()))?;
    let artifact = deploy::ArtifactRef {
        url: key,
        sha256: result.sha256.clone(),
        size: result.size,
    };
    Ok((artifact, result.build_type, result.log))
}
