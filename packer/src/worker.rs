//! Worker mode: claim queued builds from AppTracker, build them, upload the
//! file index and the artifact and report the result, renewing the claim's lease while
//! building. On shutdown the build in flight is finished first; a worker
//! that dies simply stops renewing and its build goes back in the queue.

use std::time::Duration;

use deploy::{BuildJob, BuildOutcome, BuildResult, Client};
use tokio_util::sync::CancellationToken;

/// How a worker runs.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Unique per process: claims are held in its name.
    pub name: String,
    /// How long to wait before asking again when the queue is empty.
    pub poll: Duration,
    /// Credentials, the cache directory and the signing key (required).
    pub settings: crate::Settings,
}

/// Claims and runs builds until `shutdown`.
pub async fn run(client: Client, config: WorkerConfig, shutdown: CancellationToken) {
    let public_key = match &config.settings.signing_key {
        Some(k) => k.public_key().to_string(),
        None => "none".into(),
    };
    tracing::info!(
        worker = %config.name,
        server = %client.base_url(),
        %public_key,
        "packer worker started"
    );
    // Ready: token, signing key and sandbox settings are read and the claim
    // loop starts. Not "AppTracker answered": a worker started before the
    // control plane simply keeps asking, and systemd should not fail it.
    deploy::binary::announce_ready("packer worker claim loop starting");
    // The poll interval stays; only the outage is tracked.
    let mut claims = deploy::Backoff::new(config.poll, config.poll);
    while !shutdown.is_cancelled() {
        match client.claim_build(&config.name).await {
            Ok(Some(job)) => {
                claims.recovered();
                run_job(&client, &config, job).await;
                continue;
            }
            Ok(None) => {
                claims.recovered();
            }
            Err(e) if claims.failed() => {
                tracing::warn!(error = %e, "cannot claim builds; retrying")
            }
            Err(e) => tracing::debug!(error = %e, "cannot claim builds"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(config.poll) => {}
        }
    }
    deploy::binary::announce_stopping();
    tracing::info!(worker = %config.name, "packer worker stopped");
}

#[tracing::instrument(skip_all, fields(build_id = %job.build.id, app = %job.build.app, version = %job.build.version))]
async fn run_job(client: &Client, config: &WorkerConfig, job: BuildJob) {
    let worker = config.name.as_str();
    tracing::info!(commit = %job.build.commit, "build started");
    let renew = {
        let client = client.clone();
        let worker = worker.to_string();
        let id = job.build.id;
        let every = Duration::from_millis((job.lease_ms / 3).max(100));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                if let Err(e) = client.renew_build_lease(id, &worker).await {
                    tracing::warn!(error = %e, "cannot renew the build's lease");
                }
            }
        })
    };
    let (outcome, log) = build_and_upload(client, config, &job).await;
    renew.abort();
    let mut report = BuildResult {
        worker: worker.to_string(),
        outcome,
        log: fit_log(&log, RESULT_LOG_JSON_MAX),
    };
    // The result is what makes the build count: try hard to deliver it.
    let mut retry = deploy::Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
    let mut shrunk = false;
    for attempt in 1..=8 {
        match client.report_build(job.build.id, &report).await {
            Ok(b) => {
                tracing::info!(status = ?b.status, "build reported");
                return;
            }
            // The server takes less than we thought: send a much shorter
            // log once rather than let the lease run out and the build
            // loop forever.
            Err(deploy::ClientError::Api { status: 413, .. }) if !shrunk => {
                tracing::warn!(
                    "the server refused the build's log as too large; sending it shortened"
                );
                report.log = fit_log(&log, RESULT_LOG_JSON_MAX / 8);
                shrunk = true;
            }
            Err(e) if e.is_retryable() && attempt < 8 => {
                tracing::warn!(error = %e, "cannot report the build; retrying");
                tokio::time::sleep(retry.next_wait()).await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot report the build; its lease will run out and it will be retried");
                return;
            }
        }
    }
}

/// What the worker's result log may take once JSON-encoded: 2 MiB, the
/// size of log worth keeping in the build row, well inside the
/// build-result route's body limit (checked below, with room for the rest
/// of the body).
const RESULT_LOG_JSON_MAX: usize = 2 << 20;
const _: () = assert!(RESULT_LOG_JSON_MAX + (64 << 10) <= deploy::BUILD_RESULT_BODY_LIMIT);

/// `log` cut to at most `max` bytes once JSON-encoded (escaping can grow a
/// control byte sixfold), keeping its start (what was built, how) and its
/// end (what went wrong), with a marker saying how much is missing.
pub fn fit_log(log: &str, max: usize) -> String {
    let json_len = |s: &str| serde_json::to_string(s).map_or(usize::MAX, |j| j.len());
    if json_len(log) <= max {
        return log.to_string();
    }
    // Halve the kept parts until they fit; escaping makes the ratio of
    // bytes to encoded bytes unknown up front.
    let mut keep = max / 2;
    loop {
        let head_end = floor_char_boundary(log, keep / 4);
        let tail_start = ceil_char_boundary(log, log.len().saturating_sub(keep - keep / 4));
        let dropped = tail_start.saturating_sub(head_end);
        let fitted = format!(
            "{}\n[... {dropped} bytes of the build log left out: it was too long to send whole ...]\n{}",
            &log[..head_end],
            &log[tail_start..]
        );
        if json_len(&fitted) <= max || keep < 64 {
            return fitted;
        }
        keep /= 2;
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn ceil_char_boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i += 1;
    }
    i
}

/// A build done in a scratch directory; the artifact lives there, so keep
/// `scratch` while uploading or storing it.
struct ScratchBuild {
    output: crate::BuildOutput,
    _scratch: tempfile::TempDir,
}

/// Where a running build's log goes as it is written: AppTracker's API for
/// a worker, the database for the in-process builder.
pub type LogStream =
    Box<dyn Fn(String) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// Batches what the build writes (a quarter second, or 64 KiB) and hands
/// each batch to `stream`, until the build drops its end of the channel.
async fn forward_log(mut rx: tokio::sync::mpsc::Receiver<String>, stream: LogStream) {
    while let Some(mut batch) = rx.recv().await {
        let until = tokio::time::Instant::now() + Duration::from_millis(250);
        while batch.len() < 64 * 1024 {
            match tokio::time::timeout_at(until, rx.recv()).await {
                Ok(Some(more)) => batch.push_str(&more),
                Ok(None) | Err(_) => break,
            }
        }
        stream(batch).await;
    }
}

/// Builds a claimed build in a fresh scratch directory, off the async
/// threads, streaming its log. The error is `(message, build log so far)`.
async fn build_in_scratch(
    job: &BuildJob,
    settings: &crate::Settings,
    stream: LogStream,
) -> Result<ScratchBuild, (String, String)> {
    // Checked at registration; checked again here, since it names a path.
    let app_root: Option<deploy::AppRoot> = job
        .root
        .as_deref()
        .map(deploy::AppRoot::parse)
        .transpose()
        .map_err(|e| (format!("the app's root: {e}"), String::new()))?;
    let scratch = tempfile::Builder::new()
        .prefix("slipway-build-")
        .tempdir()
        .map_err(|e| {
            (
                format!("cannot create a scratch directory: {e}"),
                String::new(),
            )
        })?;
    let root = scratch.path().to_path_buf();
    let b = job.build.clone();
    let git_url = job.git_url.clone();
    let settings = settings.clone();
    let span = tracing::Span::current();
    let (tx, rx) = crate::LogSink::channel();
    let forwarder = tokio::spawn(forward_log(rx, stream));
    let built = tokio::task::spawn_blocking(move || {
        let _enter = span.enter();
        let out = root.join("out");
        std::fs::create_dir_all(&out).map_err(|e| {
            (
                format!("cannot create {}: {e}", out.display()),
                String::new(),
            )
        })?;
        crate::build(&crate::BuildRequest {
            app: &b.app,
            git_url: &git_url,
            commit: &b.commit,
            root: app_root.as_ref(),
            version: &b.version,
            work_dir: &root.join("src"),
            out_dir: &out,
            settings: &settings,
            log_sink: Some(&tx),
        })
        .map_err(|e| (e.to_string(), e.log().to_string()))
    })
    .await;
    // The sender is gone with the build: the last batch goes out before
    // the result, which replaces the streamed log with the whole one.
    let _ = forwarder.await;
    let output = built.map_err(|e| (format!("build task failed: {e}"), String::new()))??;
    Ok(ScratchBuild {
        output,
        _scratch: scratch,
    })
}

async fn build_and_upload(
    client: &Client,
    config: &WorkerConfig,
    job: &BuildJob,
) -> (BuildOutcome, String) {
    let stream: LogStream = {
        let client = client.clone();
        let id = job.build.id;
        let worker = config.name.clone();
        Box::new(move |text| {
            let client = client.clone();
            let chunk = deploy::BuildLogChunk {
                worker: worker.clone(),
                text,
            };
            Box::pin(async move {
                if let Err(e) = client.append_build_log(id, &chunk).await {
                    tracing::debug!(error = %e, "cannot stream the build log");
                }
            })
        })
    };
    build_and_deliver(
        job,
        &config.settings,
        stream,
        async |out: &crate::BuildOutput| {
            // The CLI refuses to start a worker without a key; a library
            // caller that forgot one fails its builds rather than uploading
            // artifacts no grabber would take.
            let signature = out
                .signature
                .as_ref()
                .ok_or("this worker has no signing key: the artifact is not signed")?;
            // The index goes first: AppTracker presents it only with the
            // artifact it came before. It saves hosts bytes and nothing
            // more, so a refusal (an AppTracker without the route) leaves
            // the build whole: hosts download the full artifact.
            if let Some(index) = &out.index
                && let Some(index_signature) = &index.signature
                && let Err(e) = client
                    .upload_index(
                        job.build.id,
                        &config.name,
                        &index.path,
                        &index.sha256,
                        index_signature,
                    )
                    .await
            {
                tracing::warn!(error = %e, "cannot upload the release's file index; hosts will download the whole artifact");
            }
            client
                .upload_artifact(
                    job.build.id,
                    &config.name,
                    &out.artifact_path,
                    &out.sha256,
                    signature,
                )
                .await
                .map_err(|e| format!("cannot upload the artifact: {e}"))
        },
    )
    .await
}

/// Builds a claimed build, hands the artifact to `deliver` (upload it, or
/// store it) and says how it went, with the build log.
pub async fn build_and_deliver(
    job: &BuildJob,
    settings: &crate::Settings,
    stream: LogStream,
    deliver: impl AsyncFnOnce(&crate::BuildOutput) -> Result<(), String>,
) -> (BuildOutcome, String) {
    let built = match build_in_scratch(job, settings, stream).await {
        Ok(b) => b,
        Err((error, log)) => return (BuildOutcome::Failed { error }, log),
    };
    let out = &built.output;
    if let Err(error) = deliver(out).await {
        return (BuildOutcome::Failed { error }, out.log.clone());
    }
    (
        BuildOutcome::Succeeded {
            build_type: out.build_type,
            sha256: out.sha256.clone(),
            size: out.size,
            release_timeout_ms: out.manifest.release.as_ref().map(|r| r.timeout_ms),
            author: out.author.clone(),
            message: out.message.clone(),
            watch: Some(out.watch.clone()),
        },
        out.log.clone(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_that_fits_is_kept_whole() {
        assert_eq!(fit_log("short\n", 100), "short\n");
    }

    #[test]
    fn a_long_log_keeps_its_start_and_end_within_the_encoded_limit() {
        let log = format!("start\n{}\nthe end\n", "x".repeat(100_000));
        let fitted = fit_log(&log, 10_000);
        assert!(serde_json::to_string(&fitted).unwrap().len() <= 10_000);
        assert!(fitted.starts_with("start\n"), "{}", &fitted[..50]);
        assert!(fitted.ends_with("the end\n"));
        assert!(fitted.contains("bytes of the build log left out"));
    }

    #[test]
    fn escaping_growth_is_counted() {
        // Control bytes become \u00XX: six bytes each once encoded.
        let log = "\u{1}".repeat(100_000) + "é";
        let fitted = fit_log(&log, 50_000);
        assert!(serde_json::to_string(&fitted).unwrap().len() <= 50_000);
        assert!(fitted.ends_with('é'));
    }
}
