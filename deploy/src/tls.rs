//! TLS for every connection a Slipway process opens: rustls with the ring
//! provider, trusting the system's roots plus, for a private PKI, the
//! certificates of one PEM file (`--ca-file`, `SLIPWAY_CA_FILE`, AppTracker's
//! `tls.ca_file`).
//!
//! The system roots come from rustls-platform-verifier, the verifier
//! reqwest 0.13 itself uses: on Linux it reads the system store through
//! rustls-native-certs (`SSL_CERT_FILE`/`SSL_CERT_DIR`, else Debian's
//! `/etc/ssl/certs`), on macOS and Windows it asks the OS. The extra CA is
//! added to those roots, never in place of them.
//!
//! Also here: what a TLS failure means for the user ([`explain`]), and the
//! warning for tokens sent over plain HTTP to another machine
//! ([`cleartext_warning`]).

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};

/// The environment variable every binary reads its extra CA file from.
pub const CA_FILE_ENV: &str = "SLIPWAY_CA_FILE";

/// What the user is told to do when a certificate is not trusted.
const CA_HINT: &str = "if it is signed by a private CA, give that CA's certificate (PEM) with \
                       --ca-file or SLIPWAY_CA_FILE (AppTracker: tls.ca_file)";

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the CA file {path}: {source}")]
    ReadCaFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the CA file {path} is not PEM: {reason}")]
    BadPem { path: PathBuf, reason: String },
    #[error(
        "the CA file {path} holds no certificate (expected `-----BEGIN CERTIFICATE-----` blocks)"
    )]
    NoCertificate { path: PathBuf },
    #[error("certificate {index} of the CA file {path} cannot be trusted as a CA: {reason}")]
    BadCertificate {
        path: PathBuf,
        index: usize,
        reason: String,
    },
    #[error("cannot set up TLS: {0}")]
    Setup(String),
}

/// Which certificate authorities a client trusts: the system's, plus the
/// certificates of an optional CA file. Cheap to clone.
#[derive(Clone, Default)]
pub struct Trust {
    ca_file: Option<PathBuf>,
    extra: Arc<Vec<CertificateDer<'static>>>,
    /// [`Trust::pem_bundle`], made once (it reads the system store).
    bundle: Arc<OnceLock<Vec<u8>>>,
}

impl std::fmt::Debug for Trust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trust")
            .field("ca_file", &self.ca_file)
            .field("extra_roots", &self.extra.len())
            .finish()
    }
}

impl Trust {
    /// The system's roots only.
    pub fn system() -> Self {
        Self::default()
    }

    /// The system's roots and every certificate in the PEM file at `path`;
    /// the file is read and checked now, and errors name it.
    pub fn with_ca_file(path: &Path) -> Result<Self, TlsError> {
        let pem = std::fs::read(path).map_err(|source| TlsError::ReadCaFile {
            path: path.to_path_buf(),
            source,
        })?;
        let certs = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TlsError::BadPem {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
        if certs.is_empty() {
            return Err(TlsError::NoCertificate {
                path: path.to_path_buf(),
            });
        }
        // The same check the verifier makes, so a bad file fails at start-up.
        let mut store = rustls::RootCertStore::empty();
        for (i, cert) in certs.iter().enumerate() {
            store
                .add(cert.clone())
                .map_err(|e| TlsError::BadCertificate {
                    path: path.to_path_buf(),
                    index: i + 1,
                    reason: e.to_string(),
                })?;
        }
        Ok(Self {
            ca_file: Some(path.to_path_buf()),
            extra: Arc::new(certs),
            bundle: Arc::default(),
        })
    }

    /// [`Trust::with_ca_file`] when a file is named, else the system roots.
    pub fn from_ca_file(path: Option<&Path>) -> Result<Self, TlsError> {
        match path {
            Some(p) => Self::with_ca_file(p),
            None => Ok(Self::system()),
        }
    }

    /// The extra CA file, if any.
    pub fn ca_file(&self) -> Option<&Path> {
        self.ca_file.as_deref()
    }

    /// A rustls client configuration (ring provider, HTTP/1.1 ALPN) that
    /// verifies servers against these roots.
    pub fn client_config(&self) -> rustls::ClientConfig {
        install_default_provider();
        if self.extra.is_empty() {
            // The system store is read once per process.
            static SYSTEM: OnceLock<rustls::ClientConfig> = OnceLock::new();
            return SYSTEM.get_or_init(|| build_config(&[])).clone();
        }
        build_config(&self.extra)
    }

    /// A reqwest builder with these roots and a 5-second connect timeout,
    /// for callers that add settings of their own.
    pub fn http_builder(&self) -> reqwest::ClientBuilder {
        reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .tls_backend_preconfigured(self.client_config())
    }

    /// A reqwest client with these roots and a 5-second connect timeout.
    pub fn http_client(&self) -> Result<reqwest::Client, TlsError> {
        self.http_builder()
            .build()
            .map_err(|e| TlsError::Setup(error_chain(&e)))
    }

    /// The extra CA certificates as PEM, for clients that take them that
    /// way (the S3 client adds them to the system roots itself).
    pub fn extra_pem(&self) -> Option<Vec<u8>> {
        (!self.extra.is_empty()).then(|| to_pem(self.extra.iter()))
    }

    /// The system roots and the extra CA together as one PEM bundle, for
    /// clients whose CA setting replaces the system roots instead of adding
    /// to them (the redis crate's `root_cert`). `None` without a CA file:
    /// such clients use the system roots on their own.
    pub fn pem_bundle(&self) -> Option<Vec<u8>> {
        if self.extra.is_empty() {
            return None;
        }
        let bundle = self.bundle.get_or_init(|| {
            let system = rustls_native_certs::load_native_certs();
            for e in &system.errors {
                tracing::debug!(error = %e, "skipping an unreadable system CA certificate");
            }
            to_pem(system.certs.iter().chain(self.extra.iter()))
        });
        Some(bundle.clone())
    }
}

/// Makes ring the process's default rustls provider, once, so clients that
/// do not get a prebuilt configuration (reqwest's own defaults, the redis
/// crate) find it. Harmless when a provider is installed already.
pub fn install_default_provider() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The message a TLS client without any trusted root fails with.
const NO_ROOTS: &str = "no CA certificates were found on this system (install Debian's \
                        ca-certificates, or set SSL_CERT_FILE) and no --ca-file or \
                        SLIPWAY_CA_FILE was given";

fn build_config(extra: &[CertificateDer<'static>]) -> rustls::ClientConfig {
    let provider = provider();
    let verifier: Arc<dyn ServerCertVerifier> =
        match rustls_platform_verifier::Verifier::new_with_extra_roots(
            extra.iter().cloned(),
            provider.clone(),
        ) {
            Ok(v) => Arc::new(v),
            Err(e) => {
                // Plain-HTTP use must not break on a machine without a CA
                // store: https connections fail, each saying why.
                tracing::debug!(error = %e, "no system roots; https will be refused");
                Arc::new(NoRoots(provider.clone(), None))
            }
        };
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap_or_else(|_| unreachable!("ring supports the default TLS versions"))
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    // Only HTTP/1.1: reqwest is built without HTTP/2.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config
}

/// A reqwest client for one server whose certificate is known in
/// advance: accepted when the sha256 of its certificate (DER) is
/// `fingerprint` (hex), whatever its name or issuer, refused otherwise. For
/// the grabbers' peer listeners, whose self-made certificates AppTracker
/// vouches for by their fingerprints.
pub fn pinned_http_client(fingerprint: &str) -> Result<reqwest::Client, TlsError> {
    let mut pin = [0u8; 32];
    hex::decode_to_slice(fingerprint, &mut pin)
        .map_err(|e| TlsError::Setup(format!("bad certificate fingerprint: {e}")))?;
    let provider = provider();
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap_or_else(|_| unreachable!("ring supports the default TLS versions"))
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(NoRoots(provider, Some(pin))))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .tls_backend_preconfigured(config)
        .build()
        .map_err(|e| TlsError::Setup(error_chain(&e)))
}

/// The verifier of a machine with no roots at all: it refuses every
/// certificate, saying what to install; or, with a pin, accepts exactly the
/// certificate whose sha256 it is.
#[derive(Debug)]
struct NoRoots(Arc<CryptoProvider>, Option<[u8; 32]>);

impl ServerCertVerifier for NoRoots {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        use sha2::Digest;
        match self.1 {
            None => Err(rustls::Error::General(NO_ROOTS.into())),
            Some(pin) if sha2::Sha256::digest(end_entity.as_ref())[..] == pin[..] => {
                Ok(ServerCertVerified::assertion())
            }
            Some(_) => Err(rustls::Error::General(
                "the certificate is not the one AppTracker vouched for (its fingerprint differs)"
                    .into(),
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn to_pem<'a>(certs: impl Iterator<Item = &'a CertificateDer<'a>>) -> Vec<u8> {
    use base64::Engine;
    let mut out = String::new();
    for cert in certs {
        let b64 = base64::engine::general_purpose::STANDARD.encode(cert.as_ref());
        out.push_str("-----BEGIN CERTIFICATE-----\n");
        for line in b64.as_bytes().chunks(64) {
            out.push_str(std::str::from_utf8(line).unwrap_or_default());
            out.push('\n');
        }
        out.push_str("-----END CERTIFICATE-----\n");
    }
    out.into_bytes()
}

/// What a failed connection's TLS problem means and how to fix it, when the
/// error (or one of its causes) is a TLS one; `None` otherwise.
pub fn explain(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    let tls = tls_cause(err)?;
    Some(match tls {
        rustls::Error::InvalidCertificate(cert) => match cert {
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                format!(
                    "the server's TLS certificate is not valid for this host name ({tls}); \
                     use a URL with a name the certificate was issued for"
                )
            }
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. } => {
                format!("the server's TLS certificate is out of its validity period ({tls})")
            }
            _ => format!("the server's TLS certificate is not trusted ({tls}); {CA_HINT}"),
        },
        rustls::Error::General(msg) if msg == NO_ROOTS => {
            format!("the server's TLS certificate cannot be checked: {NO_ROOTS}")
        }
        rustls::Error::InvalidMessage(_) => format!(
            "the TLS handshake failed ({tls}); does the server speak plain HTTP? \
             then use an http:// URL"
        ),
        other => format!("the TLS handshake failed: {other}"),
    })
}

/// The rustls error among `err`'s causes. An `io::Error` wrapping another
/// error does not list it as its source (it skips to the inner error's own
/// source), and connectors wrap io errors in io errors, so those are opened
/// by hand.
fn tls_cause<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        next = match e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    None
}

/// An error and its causes on one line (`a: b: c`), with the TLS
/// explanation in front when there is one. reqwest's own message names only
/// the URL, not why.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut next = err.source();
    while let Some(e) = next {
        let s = e.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        next = e.source();
    }
    match explain(err) {
        Some(why) => format!("{why} [{out}]"),
        None => out,
    }
}

/// A warning for a client about to send a token to `url`, when the URL is
/// plain `http://` (or `redis://`) to a host that is not this machine:
/// tokens and passwords would cross the network in clear. `None` for
/// `https://`, `rediss://` and loopback addresses.
pub fn cleartext_warning(url: &str) -> Option<String> {
    let parsed = reqwest::Url::parse(url).ok()?;
    let secure = match parsed.scheme() {
        "http" => "https://",
        "redis" => "rediss://",
        _ => return None,
    };
    // `redis://` is not a scheme the URL parser knows, so its IP addresses
    // come as plain host strings: parse them here for both.
    let host = parsed.host_str()?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = match host.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => {
            let name = host.trim_end_matches('.').to_ascii_lowercase();
            name == "localhost" || name.ends_with(".localhost")
        }
    };
    (!loopback).then(|| {
        format!(
            "{} is plain {}: tokens and passwords sent to it travel in clear over the \
             network; use {secure}",
            redact(&parsed),
            parsed.scheme()
        )
    })
}

/// The URL without its user name and password.
fn redact(url: &reqwest::Url) -> String {
    let mut url = url.clone();
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleartext_warning_only_for_plain_http_to_another_machine() {
        for url in [
            "http://apptracker.example.com:8080",
            "http://10.0.0.5",
            "http://[2001:db8::1]:8080/",
            "http://localhost.example.com",
            "redis://:secret@redis.internal:6379",
        ] {
            let w = cleartext_warning(url);
            assert!(
                w.as_deref().is_some_and(|w| w.contains("in clear")),
                "{url}: {w:?}"
            );
        }
        for url in [
            "https://apptracker.example.com",
            "https://10.0.0.5:8443",
            "http://127.0.0.1:8080",
            "http://127.8.9.10",
            "http://[::1]:8080",
            "http://localhost:8080",
            "http://LOCALHOST.",
            "http://app.localhost",
            "rediss://redis.internal:6380",
            "redis://127.0.0.1:6379",
            "not a url",
        ] {
            assert_eq!(cleartext_warning(url), None, "{url}");
        }
        // The warning never repeats a password from the URL.
        let w = cleartext_warning("redis://user:hunter2@redis.internal").unwrap_or_default();
        assert!(
            !w.contains("hunter2") && w.contains("redis.internal"),
            "{w}"
        );
    }

    #[test]
    fn ca_file_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let e = Trust::with_ca_file(&missing).unwrap_err().to_string();
        assert!(
            e.contains("missing.pem") && e.contains("cannot read"),
            "{e}"
        );

        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "just text\n").unwrap();
        let e = Trust::with_ca_file(&empty).unwrap_err().to_string();
        assert!(
            e.contains("empty.pem") && e.contains("no certificate"),
            "{e}"
        );

        let junk = dir.path().join("junk.pem");
        std::fs::write(
            &junk,
            "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let e = Trust::with_ca_file(&junk).unwrap_err().to_string();
        assert!(e.contains("junk.pem"), "{e}");

        let not_a_cert = dir.path().join("garbage.pem");
        std::fs::write(
            &not_a_cert,
            "-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let e = Trust::with_ca_file(&not_a_cert).unwrap_err().to_string();
        assert!(
            e.contains("garbage.pem") && e.contains("certificate 1"),
            "{e}"
        );
    }

    #[test]
    fn pem_round_trips() {
        let der = CertificateDer::from((0u8..200).collect::<Vec<u8>>());
        let pem = to_pem(std::iter::once(&der));
        let back: Vec<_> = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(back, vec![der]);
    }

    #[test]
    fn a_tls_error_inside_io_errors_is_explained() {
        let tls = rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, tls);
        let why = explain(&io).unwrap_or_default();
        assert!(
            why.contains("not trusted") && why.contains("--ca-file"),
            "{why}"
        );
        // Wrapped twice, as hyper-rustls does with tokio-rustls's error.
        let twice = std::io::Error::other(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
        ));
        assert!(explain(&twice).is_some_and(|w| w.contains("not trusted")));
        let plain = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert_eq!(explain(&plain), None);
    }
}
