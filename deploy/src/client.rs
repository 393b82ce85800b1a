//! The typed async client of the AppTracker API, used by the CLI, the
//! dashboard, the grabber and the tests alike. This file holds the client,
//! its errors and how requests are sent; the calls per resource are in
//! `client/`.

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::api::{ErrorBody, MAX_PAGE_LIMIT, NEXT_CURSOR_HEADER, Page, PageQuery};

// One `impl Client` block per resource; the plumbing (requests, errors,
// pages) stays here, where the blocks below reach its private methods.
mod apps;
mod builds;
mod clusters;
mod config;
mod deploys;
mod hosts;
mod stream;
mod tokens;

/// The address `slipway dev` listens on, the default everywhere.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";

/// What can go wrong talking to AppTracker.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error body.
    #[error("{message} ({code}, HTTP {status})")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
    /// The server could not be reached or the connection broke.
    #[error("cannot reach AppTracker at {url}: {source}")]
    Transport {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// The TLS handshake failed: most often a certificate this client does
    /// not trust (`reason` says what to do).
    #[error("cannot reach AppTracker at {url} securely: {reason}")]
    Tls {
        url: String,
        reason: String,
        #[source]
        source: reqwest::Error,
    },
    /// The server answered something this client cannot read.
    #[error("unexpected answer from {url}: {reason}")]
    Decode { url: String, reason: String },
}

impl ClientError {
    /// A failed request, explained when TLS is why.
    fn transport(url: String, source: reqwest::Error) -> Self {
        match crate::tls::explain(&source) {
            Some(reason) => ClientError::Tls {
                url,
                reason,
                source,
            },
            None => ClientError::Transport { url, source },
        }
    }

    /// Whether trying again later may work (the server was away or failed).
    pub fn is_retryable(&self) -> bool {
        match self {
            ClientError::Api { status, .. } => *status >= 500,
            // A certificate can be renewed or the CA file fixed meanwhile;
            // agents keep trying (and keep saying why).
            ClientError::Transport { .. } | ClientError::Tls { .. } => true,
            ClientError::Decode { .. } => false,
        }
    }

    /// The stable error code, for an API error.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// The stable error code as the shared enum, for an API error
    /// ([`crate::ErrorCode::Unknown`] for a code this build does not know).
    pub fn error_code(&self) -> Option<crate::ErrorCode> {
        self.code().map(crate::ErrorCode::parse)
    }
}

/// A client of one AppTracker.
#[derive(Clone)]
pub struct Client {
    base: String,
    http: reqwest::Client,
    /// Sent as `Authorization: Bearer`; never logged.
    token: Option<String>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token is a secret: say whether there is one, never what it is.
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}
impl Client {
    /// A client of the server at `base` (`http://host:port` or
    /// `https://host`, no trailing path) trusting the system's CA roots.
    pub fn new(base: impl Into<String>) -> Self {
        let http = crate::tls::Trust::system().http_client().unwrap_or_else(|e| {
            // Not expected (the settings are fixed); reqwest's defaults still
            // verify against the system roots.
            tracing::warn!(error = %e, "cannot build the HTTP client; using reqwest's defaults");
            reqwest::Client::new()
        });
        Self::with_http(base, http)
    }

    /// A client of the server at `base` trusting `trust`'s roots (the
    /// system's plus a private CA file).
    pub fn with_trust(
        base: impl Into<String>,
        trust: &crate::tls::Trust,
    ) -> Result<Self, crate::tls::TlsError> {
        Ok(Self::with_http(base, trust.http_client()?))
    }

    /// A client of the server at `base` over a given HTTP client.
    pub fn with_http(base: impl Into<String>, http: reqwest::Client) -> Self {
        Self {
            base: base.into().trim_end_matches('/').to_string(),
            http,
            token: None,
        }
    }

    /// The same client, authenticating with `token`.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        let token = token.into();
        self.token = (!token.is_empty()).then_some(token);
        self
    }

    /// Adds the token to a request.
    fn auth(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    /// The server's base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The underlying HTTP client, for downloads.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    async fn send<T: DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<T, ClientError> {
        self.send_within(req, Duration::from_secs(60)).await
    }

    async fn send_within<T: DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
        timeout: Duration,
    ) -> Result<T, ClientError> {
        let (_, bytes, url) = self.fetch(req, timeout).await?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode {
            url,
            reason: e.to_string(),
        })
    }

    /// Sends a request; a successful answer's headers and body, and the URL.
    async fn fetch(
        &self,
        req: reqwest::RequestBuilder,
        timeout: Duration,
    ) -> Result<(reqwest::header::HeaderMap, bytes::Bytes, String), ClientError> {
        let req = self.auth(req).timeout(timeout);
        let (client, req) = req.build_split();
        let req = req.map_err(|e| ClientError::Decode {
            url: self.base.clone(),
            reason: e.to_string(),
        })?;
        let url = req.url().to_string();
        let resp = client
            .execute(req)
            .await
            .map_err(|source| ClientError::transport(url.clone(), source))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp
            .bytes()
            .await
            .map_err(|source| ClientError::transport(url.clone(), source))?;
        if !status.is_success() {
            return Err(match serde_json::from_slice::<ErrorBody>(&bytes) {
                Ok(body) => ClientError::Api {
                    status: status.as_u16(),
                    code: body.code,
                    message: body.message,
                },
                Err(_) => ClientError::Api {
                    status: status.as_u16(),
                    code: "http_error".into(),
                    message: String::from_utf8_lossy(&bytes).chars().take(200).collect(),
                },
            });
        }
        Ok((headers, bytes, url))
    }

    /// One page of the list at `path` (any list endpoint), with the cursor
    /// of the next page from `X-Next-Cursor`. `query` holds `limit` and
    /// `cursor`, and the list's own filters.
    pub async fn page<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &(impl Serialize + ?Sized),
    ) -> Result<Page<T>, ClientError> {
        let req = self.http.get(self.url(path)).query(query);
        let (headers, bytes, url) = self.fetch(req, Duration::from_secs(60)).await?;
        let items = serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode {
            url,
            reason: e.to_string(),
        })?;
        let next = headers
            .get(NEXT_CURSOR_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        Ok(Page { items, next })
    }

    /// The whole list at `path`, page after page (up to `max` items).
    async fn collect<T: DeserializeOwned>(
        &self,
        path: &str,
        max: Option<usize>,
    ) -> Result<Vec<T>, ClientError> {
        let mut out: Vec<T> = Vec::new();
        let mut query = PageQuery::first(MAX_PAGE_LIMIT);
        loop {
            if let Some(max) = max {
                let left = max.saturating_sub(out.len());
                if left == 0 {
                    return Ok(out);
                }
                query.limit = Some(left.min(MAX_PAGE_LIMIT as usize) as u32);
            }
            let page: Page<T> = self.page(path, &query).await?;
            out.extend(page.items);
            match page.next {
                // A server naming the same page again would loop forever.
                Some(next) if query.cursor.as_ref() == Some(&next) => {
                    return Err(ClientError::Decode {
                        url: self.url(path),
                        reason: format!("the next page's cursor {next:?} repeats"),
                    });
                }
                Some(next) => query.cursor = Some(next),
                None => return Ok(out),
            }
        }
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.send(self.http.get(self.url(path))).await
    }

    async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        self.send(self.http.post(self.url(path)).json(body)).await
    }
}
