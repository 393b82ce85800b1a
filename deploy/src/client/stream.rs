//! Server-sent event streams: one deploy's live events, and a cluster's bus
//! relayed to its grabbers.

use eventsource_stream::Eventsource;
use futures::{Stream, StreamExt};
use serde::de::DeserializeOwned;

use super::{Client, ClientError};
use crate::api::{DeployEvent, ErrorBody};
use crate::bus::BusMessage;
use crate::{Cluster, DeployId};

impl Client {
    /// Live events of one deploy: first a snapshot (one `Host` event per host
    /// and a `Status`), then every change. The stream ends after the deploy's
    /// terminal `Status`.
    pub async fn deploy_stream(
        &self,
        id: DeployId,
    ) -> Result<impl Stream<Item = Result<DeployEvent, ClientError>> + use<>, ClientError> {
        self.sse(&format!("/api/v1/deploys/{id}/stream")).await
    }

    /// The cluster's bus, relayed as server-sent events. The first item is
    /// `Sync` so a (re)connecting grabber reconciles before anything else.
    /// Malformed messages come through as `Err(Decode)` for the caller to
    /// log and skip.
    pub async fn bus_stream(
        &self,
        cluster: &Cluster,
    ) -> Result<impl Stream<Item = Result<BusMessage, ClientError>> + use<>, ClientError> {
        self.sse(&format!("/api/v1/bus/{cluster}")).await
    }

    async fn sse<T: DeserializeOwned + 'static>(
        &self,
        path: &str,
    ) -> Result<impl Stream<Item = Result<T, ClientError>> + use<T>, ClientError> {
        let url = self.url(path);
        let resp = self
            .auth(self.http.get(&url))
            .header("accept", "text/event-stream")
            .send()
            .await
            .map_err(|source| ClientError::transport(url.clone(), source))?;
        let status = resp.status();
        if !status.is_success() {
            let bytes = resp.bytes().await.unwrap_or_default();
            let body: Option<ErrorBody> = serde_json::from_slice(&bytes).ok();
            return Err(ClientError::Api {
                status: status.as_u16(),
                code: body
                    .as_ref()
                    .map(|b| b.code.clone())
                    .unwrap_or_else(|| "http_error".into()),
                message: body
                    .map(|b| b.message)
                    .unwrap_or_else(|| format!("GET {url} failed")),
            });
        }
        Ok(resp.bytes_stream().eventsource().filter_map(move |ev| {
            let url = url.clone();
            async move {
                match ev {
                    Ok(ev) if ev.data.is_empty() => None,
                    Ok(ev) => {
                        Some(
                            serde_json::from_str::<T>(&ev.data).map_err(|e| ClientError::Decode {
                                url,
                                reason: format!(
                                    "bad event {:?}: {e}",
                                    ev.data.chars().take(200).collect::<String>()
                                ),
                            }),
                        )
                    }
                    Err(e) => Some(Err(ClientError::Decode {
                        url,
                        reason: format!("event stream broke: {e}"),
                    })),
                }
            }
        }))
    }
}
