//! The peer listener: this host serves the content of its releases to the
//! other hosts of its cluster, so a fleet does not take every byte of a
//! deploy from the artifact store.
//!
//! - **TLS** with a certificate made at start (rcgen, never written to
//!   disk); its sha256 goes to AppTracker with every heartbeat, and a host
//!   fetching from this one pins it (`deploy::tls::pinned_http_client`):
//!   AppTracker vouches for the certificate, no CA is needed.
//! - **Authenticated**: a request carries a peer ticket
//!   (`Authorization: Slipway-Peer <ticket>`) AppTracker signed for the
//!   asking host, this cluster and the app, not expired; the key comes with
//!   the heartbeat's answer. Nothing is served before one is known.
//! - **Read-only**: one route, `GET /v1/content/{app}/{sha256}`, answering
//!   a file of the app's content store (`crate::content`), streamed.
//! - **Rate-limited**: at most `MAX_SERVING` answers under way; more get
//!   `503`, and the asking host tries its next source.
//!
//! What a peer serves is never trusted: the fetching host checks every file
//! against the signed index, and skips (and reports) a peer whose bytes do
//! not match.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use deploy::layout::HostLayout;
use deploy::signing::PublicKey;
use deploy::{AppName, Cluster, Sha256};
use sha2::Digest;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::content::ContentStore;

/// Answers under way at once.
const MAX_SERVING: usize = 8;
/// Handshakes under way at once; more connections wait in the backlog.
const MAX_HANDSHAKES: usize = 64;
/// A client that has not finished its handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
use crate::install::PEER_AUTH_SCHEME as AUTH_SCHEME;

/// A running listener: what the heartbeat advertises.
#[derive(Debug, Clone)]
pub(crate) struct Listening {
    /// `https://addr:port`.
    pub url: String,
    /// sha256 (hex) of the certificate's DER.
    pub fingerprint: String,
}

/// The keys of the tickets this listener accepts (AppTracker's, from the
/// heartbeat's answer); empty until the first answer.
pub(crate) type TicketKeys = Arc<RwLock<Vec<PublicKey>>>;

#[derive(Clone)]
struct Shared {
    layout: HostLayout,
    cluster: Cluster,
    keys: TicketKeys,
    serving: Arc<tokio::sync::Semaphore>,
}

/// Binds `listen` and serves until `shutdown`. `advertise` is the host
/// name or address other hosts reach this one by (the bound address when
/// `None`).
pub(crate) async fn start(
    listen: SocketAddr,
    advertise: Option<&str>,
    layout: HostLayout,
    cluster: Cluster,
    keys: TicketKeys,
    shutdown: CancellationToken,
) -> anyhow::Result<Listening> {
    let tcp = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen for peers on {listen}"))?;
    let bound = tcp
        .local_addr()
        .context("the peer listener has no address")?;
    let host = match advertise {
        Some(h) => h.to_string(),
        None if bound.ip().is_unspecified() => anyhow::bail!(
            "the peer listener is bound to {bound}: say which address other hosts reach it by \
             (--peer-advertise)"
        ),
        None => bound.ip().to_string(),
    };
    let url = if host.contains(':') && !host.starts_with('[') {
        format!("https://[{host}]:{}", bound.port())
    } else {
        format!("https://{host}:{}", bound.port())
    };
    let cert = rcgen::generate_simple_self_signed(vec![host.clone()])
        .context("cannot make the peer listener's certificate")?;
    let der = cert.cert.der().clone();
    let fingerprint = hex::encode(sha2::Sha256::digest(der.as_ref()));
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("the TLS provider supports no protocol version")?
    .with_no_client_auth()
    .with_single_cert(vec![der], key)
    .context("cannot use the peer listener's certificate")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let shared = Shared {
        layout,
        cluster,
        keys,
        serving: Arc::new(tokio::sync::Semaphore::new(MAX_SERVING)),
    };
    let app = axum::Router::new()
        .route("/v1/content/{app}/{sha256}", axum::routing::get(content))
        .with_state(shared);
    let listener = PeerListener {
        tcp,
        acceptor: TlsAcceptor::from(Arc::new(config)),
        handshakes: JoinSet::new(),
    };
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await;
        if let Err(e) = served {
            tracing::warn!(error = %e, "the peer listener stopped");
        }
    });
    tracing::info!(%url, %fingerprint, "serving release files to peers");
    Ok(Listening { url, fingerprint })
}

/// `GET /v1/content/{app}/{sha256}`.
async fn content(
    State(s): State<Shared>,
    UrlPath((app, sha256)): UrlPath<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let refuse = |status: StatusCode, why: String| (status, why).into_response();
    let (Ok(app), Ok(sha256)) = (AppName::parse(&app), Sha256::parse(&sha256)) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "not an app name and a sha256".into(),
        );
    };
    let ticket = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix(AUTH_SCHEME))
        .map(str::trim);
    let Some(ticket) = ticket else {
        return refuse(
            StatusCode::UNAUTHORIZED,
            format!("no `Authorization: {AUTH_SCHEME} <ticket>`"),
        );
    };
    let keys = s.keys.read().map(|k| k.clone()).unwrap_or_default();
    match deploy::peer::verify(&keys, ticket, deploy::Timestamp::now()) {
        Ok(t) if t.cluster == s.cluster && t.app == app => {}
        Ok(t) => {
            return refuse(
                StatusCode::FORBIDDEN,
                format!("the ticket is for {} in {}", t.app, t.cluster),
            );
        }
        Err(e) => return refuse(StatusCode::UNAUTHORIZED, format!("bad ticket: {e}")),
    }
    let Ok(permit) = s.serving.clone().try_acquire_owned() else {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy serving other hosts".into(),
        );
    };
    let store = ContentStore::new(s.layout.content_dir(&app));
    let Some(path) = store.find(sha256.as_str()) else {
        return refuse(StatusCode::NOT_FOUND, format!("no file {sha256} here"));
    };
    let file = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(e) => return refuse(StatusCode::NOT_FOUND, format!("cannot open {sha256}: {e}")),
    };
    let len = file.metadata().await.map(|m| m.len()).unwrap_or(0);
    let stream = tokio_util::io::ReaderStream::new(file);
    // The permit lives as long as the body is being sent.
    let body = Body::from_stream(futures::StreamExt::map(stream, move |chunk| {
        let _held = &permit;
        chunk
    }));
    ([(header::CONTENT_LENGTH, len.to_string())], body).into_response()
}

/// A TCP listener whose connections come out TLS-terminated, handshakes
/// running side by side.
struct PeerListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    handshakes: JoinSet<Option<(tokio_rustls::server::TlsStream<TcpStream>, SocketAddr)>>,
}

impl axum::serve::Listener for PeerListener {
    type Io = tokio_rustls::server::TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            tokio::select! {
                accepted = self.tcp.accept(), if self.handshakes.len() < MAX_HANDSHAKES => {
                    match accepted {
                        Ok((stream, peer)) => {
                            let acceptor = self.acceptor.clone();
                            self.handshakes.spawn(async move {
                                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                                    Ok(Ok(tls)) => Some((tls, peer)),
                                    _ => None,
                                }
                            });
                        }
                        Err(e) => {
                            tracing::debug!(error = %e, "peer connection not accepted");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
                Some(done) = self.handshakes.join_next(), if !self.handshakes.is_empty() => {
                    if let Ok(Some(conn)) = done {
                        return conn;
                    }
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use deploy::peer::PeerTicket;
    use deploy::signing::SigningKey;
    use deploy::{HostName, Timestamp};

    use super::*;

    fn ticket(key: &SigningKey, app: &str, cluster: &str, expires_in: i64) -> String {
        deploy::peer::mint(
            key,
            &PeerTicket {
                cluster: Cluster::parse(cluster).unwrap(),
                host: HostName::parse("h2").unwrap(),
                app: AppName::parse(app).unwrap(),
                expires_at: Timestamp(Timestamp::now().0 + expires_in * 1000),
            },
        )
    }

    /// A real TLS listener, a pinned client, tickets made with a key: who
    /// is answered and who is not.
    #[tokio::test]
    async fn serves_the_store_over_pinned_tls_to_ticket_holders_only() {
        let dir = tempfile::tempdir().unwrap();
        let layout = HostLayout::new(dir.path());
        let app = AppName::parse("hello").unwrap();
        let content = b"the file's bytes".to_vec();
        let sha = hex::encode(sha2::Sha256::digest(&content));
        let src = dir.path().join("src");
        std::fs::write(&src, &content).unwrap();
        ContentStore::new(layout.content_dir(&app))
            .adopt(&src, &sha, 0o644)
            .unwrap();
        let key = SigningKey::from_seed([7; 32]);
        let keys = TicketKeys::default();
        let stop = CancellationToken::new();
        let l = start(
            "127.0.0.1:0".parse().unwrap(),
            None,
            layout,
            Cluster::parse("prod").unwrap(),
            keys.clone(),
            stop.clone(),
        )
        .await
        .unwrap();
        assert!(l.url.starts_with("https://127.0.0.1:"), "{}", l.url);
        let http = deploy::tls::pinned_http_client(&l.fingerprint).unwrap();
        let get = async |path: &str, ticket: Option<&str>| {
            let mut r = http.get(format!("{}{path}", l.url));
            if let Some(t) = ticket {
                r = r.header("authorization", format!("{AUTH_SCHEME} {t}"));
            }
            let resp = r.send().await.unwrap();
            (resp.status().as_u16(), resp.bytes().await.unwrap().to_vec())
        };
        let path = format!("/v1/content/hello/{sha}");
        let good = ticket(&key, "hello", "prod", 60);

        // No key known yet (no heartbeat answered): nothing is served.
        assert_eq!(get(&path, Some(&good)).await.0, 401);
        *keys.write().unwrap() = vec![key.public_key()];
        assert_eq!(get(&path, Some(&good)).await, (200, content.clone()));
        assert_eq!(get(&path, None).await.0, 401);
        assert_eq!(
            get(&path, Some(&ticket(&key, "other", "prod", 60))).await.0,
            403
        );
        assert_eq!(
            get(&path, Some(&ticket(&key, "hello", "staging", 60)))
                .await
                .0,
            403
        );
        assert_eq!(
            get(&path, Some(&ticket(&key, "hello", "prod", -1))).await.0,
            401
        );
        let stranger = SigningKey::from_seed([8; 32]);
        assert_eq!(
            get(&path, Some(&ticket(&stranger, "hello", "prod", 60)))
                .await
                .0,
            401
        );
        assert_eq!(
            get(
                &format!("/v1/content/hello/{}", "0".repeat(64)),
                Some(&good)
            )
            .await
            .0,
            404
        );

        // A client pinning another certificate does not talk to it.
        let wrong = deploy::tls::pinned_http_client(&"ab".repeat(32)).unwrap();
        let err = wrong
            .get(format!("{}{path}", l.url))
            .send()
            .await
            .unwrap_err();
        assert!(
            deploy::tls::error_chain(&err).contains("not the one AppTracker vouched for"),
            "{}",
            deploy::tls::error_chain(&err)
        );
        stop.cancel();
    }
}
