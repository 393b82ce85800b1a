//! A private PKI for TLS tests: a CA made per test (rcgen), server
//! certificates it signs, and a TLS-terminating proxy (tokio-rustls) to put
//! in front of plain-HTTP servers such as s3s-fs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// A certificate authority of a test's own, with its certificate in a file
/// for `--ca-file`.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
    /// The CA's certificate (PEM), what clients are told to trust.
    pub ca_file: PathBuf,
    dir: PathBuf,
}

/// A server certificate and its key, as PEM files.
pub struct ServerCert {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

impl TestCa {
    /// A new CA; its certificate is written to `<dir>/ca.pem`.
    pub fn new(dir: &Path) -> anyhow::Result<Self> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "Slipway test CA");
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
        std::fs::create_dir_all(dir)?;
        let ca_file = dir.join("ca.pem");
        std::fs::write(&ca_file, issuer.pem())?;
        Ok(Self {
            issuer,
            ca_file,
            dir: dir.to_path_buf(),
        })
    }

    /// A server certificate for `names` (host names or IP addresses),
    /// written to `<dir>/<file_stem>.pem` and `<dir>/<file_stem>.key`.
    pub fn server_cert(&self, file_stem: &str, names: &[&str]) -> anyhow::Result<ServerCert> {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<String>>())?;
        params
            .distinguished_name
            .push(DnType::CommonName, names.first().copied().unwrap_or("test"));
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        let cert_file = self.dir.join(format!("{file_stem}.pem"));
        let key_file = self.dir.join(format!("{file_stem}.key"));
        std::fs::write(&cert_file, cert.pem())?;
        std::fs::write(&key_file, key.serialize_pem())?;
        Ok(ServerCert {
            cert_file,
            key_file,
        })
    }
}

impl ServerCert {
    /// A rustls server configuration serving this certificate.
    pub fn server_config(&self) -> anyhow::Result<rustls::ServerConfig> {
        let certs = CertificateDer::pem_file_iter(&self.cert_file)
            .context("reading the test certificate")?
            .collect::<Result<Vec<_>, _>>()?;
        let key = PrivateKeyDer::from_pem_file(&self.key_file).context("reading the test key")?;
        Ok(rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?)
    }
}

/// A TLS-terminating TCP proxy on a free loopback port: what a load
/// balancer in front of a plain-HTTP server does. Stops when dropped.
pub struct TlsProxy {
    pub addr: SocketAddr,
    connections: Arc<AtomicU64>,
    stop: CancellationToken,
}

impl TlsProxy {
    /// Listens on a free port and forwards every connection, decrypted, to
    /// `upstream`. Runs on the caller's runtime.
    pub async fn start(cert: &ServerCert, upstream: SocketAddr) -> anyhow::Result<Self> {
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cert.server_config()?));
        let listener = TcpListener::bind(("127.0.0.1", crate::free_port()?)).await?;
        let addr = listener.local_addr()?;
        let connections = Arc::new(AtomicU64::new(0));
        let stop = CancellationToken::new();
        let (count, stopped) = (connections.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let (client, _) = tokio::select! {
                    _ = stopped.cancelled() => return,
                    accepted = listener.accept() => match accepted {
                        Ok(c) => c,
                        Err(_) => continue,
                    },
                };
                let (acceptor, stopped) = (acceptor.clone(), stopped.clone());
                count.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(async move {
                    let forward = async {
                        let mut tls = acceptor.accept(client).await?;
                        let mut plain = TcpStream::connect(upstream).await?;
                        tokio::io::copy_bidirectional(&mut tls, &mut plain).await?;
                        anyhow::Ok(())
                    };
                    tokio::select! {
                        _ = stopped.cancelled() => {}
                        r = forward => {
                            if let Err(e) = r {
                                tracing::debug!(error = %e, "TLS proxy connection ended");
                            }
                        }
                    }
                });
            }
        });
        Ok(Self {
            addr,
            connections,
            stop,
        })
    }

    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
