//! HTTPS served by AppTracker itself (`[tls] cert_file` and `key_file`), and
//! the CA its own outgoing connections trust (`tls.ca_file`).
//!
//! The server side is a [`axum::serve::Listener`] that completes TLS
//! handshakes (tokio-rustls, ring) before handing connections to axum, so
//! HTTPS runs through the same `axum::serve` as plain HTTP: graceful
//! shutdown and the peer address the audit log records work unchanged.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// `[tls]` in the config.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain (the server's certificate first) to serve
    /// HTTPS with; plain HTTP when unset (e.g. behind a TLS proxy).
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file` (PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
    /// PEM file of a private CA that AppTracker's own connections trust
    /// besides the system's roots: the S3 store, a `rediss://` bus, the
    /// dashboard's calls to `public_url`. `SLIPWAY_CA_FILE` when unset.
    pub ca_file: Option<PathBuf>,
}

impl TlsConfig {
    /// Whether AppTracker serves HTTPS.
    pub fn serves_https(&self) -> bool {
        self.cert_file.is_some()
    }

    /// What AppTracker's own clients trust: the system's roots plus
    /// `ca_file` (or `SLIPWAY_CA_FILE`).
    pub fn trust(&self) -> anyhow::Result<deploy::tls::Trust> {
        let (setting, file) = match &self.ca_file {
            Some(f) => ("tls.ca_file", Some(f.clone())),
            None => (
                deploy::tls::CA_FILE_ENV,
                std::env::var_os(deploy::tls::CA_FILE_ENV).map(PathBuf::from),
            ),
        };
        deploy::tls::Trust::from_ca_file(file.as_deref())
            .with_context(|| format!("invalid {setting}"))
    }

    /// The handshake side of HTTPS, when `cert_file` and `key_file` are set;
    /// errors name the setting and the file.
    pub(crate) fn acceptor(&self) -> anyhow::Result<Option<TlsAcceptor>> {
        let (cert_file, key_file) = match (&self.cert_file, &self.key_file) {
            (None, None) => return Ok(None),
            (Some(c), Some(k)) => (c, k),
            (Some(_), None) => {
                anyhow::bail!("tls.cert_file is set but tls.key_file is not: HTTPS needs both")
            }
            (None, Some(_)) => {
                anyhow::bail!("tls.key_file is set but tls.cert_file is not: HTTPS needs both")
            }
        };
        let certs = read_certs(cert_file)?;
        let key = read_key(key_file)?;
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .context("the TLS provider supports no protocol version")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .with_context(|| {
            format!(
                "tls.key_file {} does not match the certificate in tls.cert_file {}",
                key_file.display(),
                cert_file.display()
            )
        })?;
        let mut config = config;
        // axum is built for HTTP/1.1 only.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Some(TlsAcceptor::from(Arc::new(config))))
    }
}

fn read_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let pem = std::fs::read(path)
        .with_context(|| format!("cannot read tls.cert_file {}", path.display()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("tls.cert_file {} is not PEM", path.display()))?;
    anyhow::ensure!(
        !certs.is_empty(),
        "tls.cert_file {} holds no certificate (expected `-----BEGIN CERTIFICATE-----`)",
        path.display()
    );
    Ok(certs)
}

fn read_key(path: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    let pem = std::fs::read(path)
        .with_context(|| format!("cannot read tls.key_file {}", path.display()))?;
    PrivateKeyDer::from_pem_slice(&pem).with_context(|| {
        format!(
            "tls.key_file {} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)",
            path.display()
        )
    })
}

/// Handshakes allowed to be under way at once; more connections wait in
/// the kernel's backlog.
const MAX_HANDSHAKES: usize = 256;
/// A client that has not finished its handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A TCP listener whose connections come out TLS-terminated. Handshakes run
/// concurrently (a slow client does not hold up the others) and failed
/// ones are logged and skipped.
pub(crate) struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    handshakes: JoinSet<Option<(TlsStream<TcpStream>, SocketAddr)>>,
}

impl TlsListener {
    pub(crate) fn new(tcp: TcpListener, acceptor: TlsAcceptor) -> Self {
        Self {
            tcp,
            acceptor,
            handshakes: JoinSet::new(),
        }
    }

    fn start_handshake(&mut self, stream: TcpStream, peer: SocketAddr) {
        let acceptor = self.acceptor.clone();
        self.handshakes.spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => Some((tls, peer)),
                // A client that does not trust the certificate ends up here
                // too (it says so in its own error).
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    None
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    None
                }
            }
        });
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            tokio::select! {
                accepted = self.tcp.accept(), if self.handshakes.len() < MAX_HANDSHAKES => {
                    match accepted {
                        Ok((stream, peer)) => self.start_handshake(stream, peer),
                        Err(e) => accept_error(e).await,
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

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// As axum's own listener does: a connection that died before it was
/// accepted is nothing; anything else (out of file descriptors) is logged
/// and waited out.
async fn accept_error(e: io::Error) {
    if matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "cannot accept a connection; waiting a second");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_needs_both_files_and_names_them() {
        let dir = tempfile::tempdir().unwrap();
        let only_cert = TlsConfig {
            cert_file: Some(dir.path().join("c.pem")),
            ..TlsConfig::default()
        };
        let e = format!("{:#}", only_cert.acceptor().err().unwrap());
        assert!(e.contains("tls.key_file"), "{e}");

        let missing = TlsConfig {
            cert_file: Some(dir.path().join("cert.pem")),
            key_file: Some(dir.path().join("key.pem")),
            ca_file: None,
        };
        let e = format!("{:#}", missing.acceptor().err().unwrap());
        assert!(e.contains("tls.cert_file") && e.contains("cert.pem"), "{e}");

        std::fs::write(dir.path().join("cert.pem"), "no pem here").unwrap();
        let e = format!("{:#}", missing.acceptor().err().unwrap());
        assert!(e.contains("holds no certificate"), "{e}");

        assert!(TlsConfig::default().acceptor().unwrap().is_none());
    }
}
