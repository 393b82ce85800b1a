//! Downloading an artifact: streamed to a `.part` file and hashed on the
//! way, within the size announced and the timeouts.

use std::path::Path;
use std::time::Duration;

use deploy::ArtifactRef;
use futures::StreamExt;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::Engine;
use super::error::InstallErrorKind;
use super::report::without_query;
use crate::fault;

/// How long an artifact download may wait, so a server that never answers
/// cannot hold the app's install lock.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DownloadTimeouts {
    /// For the response's headers (connecting and sending the request
    /// included).
    pub response: Duration,
    /// Between two chunks of the body.
    pub stall: Duration,
}

/// How long to wait before asking again a server that answered `resp`
/// busy (503 or 429): its `Retry-After` in seconds (1 when absent, at most
/// 10), plus up to a second at random so a fleet does not come back at
/// once. `None` for any other answer.
fn busy_wait(resp: &reqwest::Response) -> Option<Duration> {
    let status = resp.status().as_u16();
    if status != 503 && status != 429 {
        return None;
    }
    let after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
        .unwrap_or(1)
        .min(10);
    let mut spread = [0u8; 2];
    let spread_ms = match getrandom::fill(&mut spread) {
        Ok(()) => u64::from(u16::from_le_bytes(spread)) % 1000,
        Err(_) => 500,
    };
    Some(Duration::from_secs(after) + Duration::from_millis(spread_ms))
}

impl Engine {
    /// Streams the artifact into `part`, hashing on the way; returns its
    /// sha256 and size.
    pub(super) async fn download(
        &self,
        artifact: &ArtifactRef,
        part: &Path,
    ) -> Result<(deploy::Sha256, u64), InstallErrorKind> {
        self.fetch(&artifact.url, artifact.size, "artifact", part)
            .await
    }

    /// Streams `url` (`what`: the artifact, the index, a file) into `part`,
    /// hashing on the way, refusing more than `announced` bytes or than
    /// this host accepts; returns its sha256 and size.
    pub(super) async fn fetch(
        &self,
        url: &str,
        announced: u64,
        what: &str,
        part: &Path,
    ) -> Result<(deploy::Sha256, u64), InstallErrorKind> {
        self.fetch_with(&self.http, url, None, announced, what, part)
            .await
    }

    /// [`fetch`](Self::fetch) with another client and an `Authorization`
    /// header (a peer).
    pub(super) async fn fetch_with(
        &self,
        http: &reqwest::Client,
        url: &str,
        authorization: Option<&str>,
        announced: u64,
        what: &str,
        part: &Path,
    ) -> Result<(deploy::Sha256, u64), InstallErrorKind> {
        let mut request = http.get(url);
        if let Some(auth) = authorization {
            request = request.header(reqwest::header::AUTHORIZATION, auth);
        }
        let limit = self.cfg.max_artifact_bytes.min(announced);
        let too_big = |n: u64| {
            InstallErrorKind::TooLarge(if n > self.cfg.max_artifact_bytes {
                format!(
                    "{what} is larger than the {} bytes this host accepts",
                    self.cfg.max_artifact_bytes
                )
            } else {
                format!("{what} is larger than the {announced} bytes announced")
            })
        };
        let timeouts = self.cfg.download;
        let no_answer = || {
            InstallErrorKind::Fetch(format!(
                "cannot download {}: no answer within {:?}",
                without_query(url),
                timeouts.response
            ))
        };
        // A server too busy to answer now (503, 429: AppTracker's limit on
        // requests at once during a fleet-wide deploy) is asked again after
        // its `Retry-After` and a random spread, within the response
        // timeout: a busy moment is not a failed host.
        let deadline = tokio::time::Instant::now() + timeouts.response;
        let resp = loop {
            let attempt = request.try_clone().ok_or_else(|| {
                InstallErrorKind::Fetch(format!("cannot download {}", without_query(url)))
            })?;
            let resp = tokio::time::timeout_at(deadline, attempt.send())
                .await
                .map_err(|_| no_answer())?
                .map_err(|e| {
                    InstallErrorKind::Fetch(format!(
                        "cannot download {}: {}",
                        without_query(url),
                        deploy::tls::error_chain(&e.without_url())
                    ))
                })?;
            match busy_wait(&resp) {
                Some(wait) if tokio::time::Instant::now() + wait < deadline => {
                    tracing::debug!(url = %without_query(url), status = %resp.status(), ?wait,
                        "the server is busy; asking again");
                    tokio::time::sleep(wait).await;
                }
                _ => break resp,
            }
        };
        if !resp.status().is_success() {
            return Err(InstallErrorKind::Fetch(format!(
                "cannot download {}: HTTP {}",
                without_query(url),
                resp.status()
            )));
        }
        if let Some(len) = resp.content_length()
            && len > limit
        {
            return Err(too_big(len));
        }
        let mut file = tokio::fs::File::create(part).await.map_err(|e| {
            InstallErrorKind::Host(format!("cannot create {}: {e}", part.display()))
        })?;
        let mut hasher = Sha256::new();
        let mut size: u64 = 0;
        let mut halfway = false;
        let mut body = resp.bytes_stream();
        loop {
            let chunk = match tokio::time::timeout(timeouts.stall, body.next()).await {
                Err(_) => {
                    return Err(InstallErrorKind::Fetch(format!(
                        "download of {} stalled: nothing arrived for {:?}",
                        without_query(url),
                        timeouts.stall
                    )));
                }
                Ok(None) => break,
                Ok(Some(Err(e))) => {
                    return Err(InstallErrorKind::Fetch(format!(
                        "download of {} broke: {}",
                        without_query(url),
                        e.without_url()
                    )));
                }
                Ok(Some(Ok(c))) => c,
            };
            size += chunk.len() as u64;
            if size > limit {
                return Err(too_big(size));
            }
            hasher.update(&chunk);
            file.write_all(&chunk).await.map_err(|e| {
                InstallErrorKind::Host(format!("cannot write {}: {e}", part.display()))
            })?;
            if !halfway && what == "artifact" && size * 2 >= announced {
                halfway = true;
                let _ = file.flush().await;
                fault::point("downloading").await;
            }
        }
        file.sync_all()
            .await
            .map_err(|e| InstallErrorKind::Host(format!("cannot write {}: {e}", part.display())))?;
        let sha256 = deploy::Sha256::parse(hex::encode(hasher.finalize()))
            .map_err(|e| InstallErrorKind::Host(format!("cannot read the digest: {e}")))?;
        Ok((sha256, size))
    }
}
