//! Logs from anywhere: a piece of an app's log on one host, asked of its
//! grabber over the bus and answered through the agent API into the
//! `log_requests` row the asking request polls (so any replica may take
//! the answer).

use std::time::Duration;

use super::*;
use deploy::{AppLog, LogAnswer, LogRequest, LogsMessage, MAX_LOG_READ};

/// How long a request waits for the host's answer.
const ANSWER_WAIT: Duration = Duration::from_secs(5);
/// Bytes read when a request names no size.
const DEFAULT_READ: u64 = 64 * 1024;

impl Tracker {
    /// Asks `req.host`'s grabber for a piece of `app`'s log and waits for
    /// it (at most [`ANSWER_WAIT`]).
    pub async fn read_log(
        &self,
        app: &AppName,
        req: &LogRequest,
        by: &str,
    ) -> Result<AppLog, Error> {
        self.app_or_404(app).await?;
        let hosts = self.db().hosts(Some(&req.cluster)).await?;
        let Some(host) = hosts.iter().find(|h| h.name == req.host) else {
            return Err(Error::NotFound(format!(
                "no host `{}` in cluster `{}`",
                req.host, req.cluster
            )));
        };
        let alive_since = self.alive_since().0;
        if host.last_seen.0 < alive_since {
            return Err(Error::refused(
                ErrorCode::NoMatchingHosts,
                format!(
                    "host `{}` is silent (no heartbeat since {}): nobody there to read the log",
                    req.host, host.last_seen
                ),
            ));
        }
        let max_bytes = req.max_bytes.unwrap_or(DEFAULT_READ).clamp(1, MAX_LOG_READ);
        let id = self
            .db()
            .insert_log_request(&req.cluster, &req.host, app, by)
            .await?;
        self.bus()
            .publish(
                &req.cluster,
                BusMessage::Logs(LogsMessage {
                    request_id: id,
                    app: app.clone(),
                    offset: req.offset,
                    max_bytes,
                    target: Target {
                        cluster: req.cluster.clone(),
                        hosts: HostSelector::all(),
                        only: Some(vec![req.host.clone()]),
                    },
                }),
            )
            .await;
        let deadline = tokio::time::Instant::now() + ANSWER_WAIT;
        loop {
            if let Some((_, _, _, Some(answer))) = self.db().log_request(id).await? {
                let a: LogAnswer = serde_json::from_str(&answer)
                    .with_context(|| format!("log request {id}: an unreadable answer"))?;
                if let Some(e) = a.error {
                    return Err(Error::NotFound(format!("{} on {}: {e}", app, req.host)));
                }
                return Ok(AppLog {
                    app: app.clone(),
                    host: req.host.clone(),
                    offset: a.offset,
                    next_offset: a.next_offset,
                    text: a.text,
                    truncated: a.truncated,
                });
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Timeout(format!(
                    "host `{}` did not send the log of `{app}` within {}s: is its grabber running \
                     (and new enough to serve logs)?",
                    req.host,
                    ANSWER_WAIT.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The answer of request `id`, from `host` (its agent). Bounded like a
    /// read; a second answer changes nothing.
    pub async fn answer_log(&self, id: i64, host: &HostName, a: &LogAnswer) -> Result<(), Error> {
        let Some((cluster, asked, _, _)) = self.db().log_request(id).await? else {
            return Err(Error::NotFound(format!("no log request {id}")));
        };
        if &asked != host || cluster != a.cluster {
            return Err(Error::Invalid(format!(
                "log request {id} was asked of `{asked}` in `{cluster}`"
            )));
        }
        if a.text.len() as u64 > MAX_LOG_READ * 4 {
            return Err(Error::TooLarge(format!(
                "a log piece is at most {MAX_LOG_READ} bytes"
            )));
        }
        self.db()
            .answer_log_request(id, &serde_json::to_string(a).map_err(anyhow::Error::from)?)
            .await?;
        Ok(())
    }

    /// The cluster and host a log request was asked of (for the agent
    /// route's check).
    pub async fn log_request_host(&self, id: i64) -> Result<(Cluster, HostName), Error> {
        match self.db().log_request(id).await? {
            Some((c, h, _, _)) => Ok((c, h)),
            None => Err(Error::NotFound(format!("no log request {id}"))),
        }
    }
}
