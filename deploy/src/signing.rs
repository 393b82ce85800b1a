//! Artifact signatures (ed25519): the packer signs what it built, grabbers
//! refuse what no trusted key signed.
//!
//! The signed message binds the app, the version and the artifact's sha256
//! under a domain-separation prefix, so a signature cannot be replayed for
//! another app or version, nor mistaken for a signature over anything else:
//!
//! ```text
//! slipway-artifact-v1\n<app>\n<version>\n<sha256 hex>\n
//! ```
//!
//! (`AppName` and `Version` cannot hold a newline, so the fields cannot run
//! into each other.) A release's file index (`crate::index`) is signed the
//! same way under its own prefix, `slipway-index-v1\n`, with the index
//! file's sha256: neither signature can stand for the other.
//!
//! Text forms:
//! - a signing key file holds the **base64** (standard alphabet, padded) of
//!   the 32-byte ed25519 seed, surrounding whitespace ignored; written with
//!   mode 0600;
//! - a public key is `ed25519:<base64 of the 32-byte key>`;
//! - a signature is the base64 of its 64 bytes (88 characters).

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::Signer as _;
use zeroize::Zeroizing;

use crate::{AppName, Sha256, Version};

/// What every signed artifact message starts with.
const DOMAIN: &[u8] = b"slipway-artifact-v1\n";
/// What every signed index message starts with.
const INDEX_DOMAIN: &[u8] = b"slipway-index-v1\n";
/// How a public key's text form starts.
const PUBLIC_PREFIX: &str = "ed25519:";
/// Characters of a base64-encoded signature (64 bytes).
const SIGNATURE_CHARS: usize = 88;
/// Characters of a base64-encoded key or seed (32 bytes).
const KEY_CHARS: usize = 44;

/// The message an artifact's signature covers.
fn message(app: &AppName, version: &Version, sha256: &Sha256) -> Vec<u8> {
    message_in(DOMAIN, app, version, sha256)
}

/// The message a signature under `domain` covers.
fn message_in(domain: &[u8], app: &AppName, version: &Version, sha256: &Sha256) -> Vec<u8> {
    let mut m = Vec::with_capacity(domain.len() + 128);
    m.extend_from_slice(domain);
    for field in [app.as_str(), version.as_str(), sha256.as_str()] {
        m.extend_from_slice(field.as_bytes());
        m.push(b'\n');
    }
    m
}

/// Why a signing key could not be loaded or written. Messages name the file,
/// never its content.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read the signing key {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write the signing key {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the signing key {0} already exists; not replacing it")]
    Exists(PathBuf),
    #[error(
        "the signing key {path} is malformed: {reason} (expected the base64 of a 32-byte seed)"
    )]
    Malformed { path: PathBuf, reason: String },
    #[error("no randomness for a new signing key: {0}")]
    Random(String),
}

/// A packer's private signing key. `Debug` shows the public half only.
#[derive(Clone)]
pub struct SigningKey(ed25519_dalek::SigningKey);

impl SigningKey {
    /// A key from a 32-byte seed (the secret).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        let seed = Zeroizing::new(seed);
        Self(ed25519_dalek::SigningKey::from_bytes(&seed))
    }

    /// A new random key.
    pub fn generate() -> Result<Self, KeyError> {
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::fill(&mut seed[..]).map_err(|e| KeyError::Random(e.to_string()))?;
        Ok(Self(ed25519_dalek::SigningKey::from_bytes(&seed)))
    }

    /// Reads a key file (the base64 of the seed).
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let text =
            Zeroizing::new(
                std::fs::read_to_string(path).map_err(|source| KeyError::Read {
                    path: path.to_path_buf(),
                    source,
                })?,
            );
        warn_if_readable_by_others(path);
        let malformed = |reason: String| KeyError::Malformed {
            path: path.to_path_buf(),
            reason,
        };
        let text = text.trim();
        if text.len() != KEY_CHARS {
            return Err(malformed(format!(
                "{} characters instead of {KEY_CHARS}",
                text.len()
            )));
        }
        let bytes = Zeroizing::new(
            B64.decode(text)
                .map_err(|e| malformed(format!("not base64: {e}")))?,
        );
        let seed: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| malformed(format!("{} bytes instead of 32", bytes.len())))?;
        Ok(Self::from_seed(seed))
    }

    /// Generates a key and writes it to `path` (mode 0600, written aside
    /// and moved into place, so the file is complete or absent). Refuses to
    /// replace an existing file: a lost key means reconfiguring every host.
    pub fn generate_to_file(path: &Path) -> Result<Self, KeyError> {
        let key = Self::generate()?;
        key.write_new(path)?;
        Ok(key)
    }

    /// Loads the key at `path`, generating it first when the file does not
    /// exist; says whether it was generated.
    pub fn load_or_generate(path: &Path) -> Result<(Self, bool), KeyError> {
        if path.exists() {
            return Ok((Self::load(path)?, false));
        }
        match Self::generate_to_file(path) {
            Ok(key) => Ok((key, true)),
            // Someone else (another replica) wrote it first: use theirs.
            Err(KeyError::Exists(_)) => Ok((Self::load(path)?, false)),
            Err(e) => Err(e),
        }
    }

    fn write_new(&self, path: &Path) -> Result<(), KeyError> {
        use std::os::unix::fs::OpenOptionsExt;
        let write_err = |source| KeyError::Write {
            path: path.to_path_buf(),
            source,
        };
        if path.exists() {
            return Err(KeyError::Exists(path.to_path_buf()));
        }
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        std::fs::create_dir_all(dir).map_err(write_err)?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "signing.key".into());
        let mut tag = [0u8; 6];
        getrandom::fill(&mut tag).map_err(|e| KeyError::Random(e.to_string()))?;
        let tmp = dir.join(format!(
            ".{name}.tmp-{}-{}",
            std::process::id(),
            tag.iter().map(|b| format!("{b:02x}")).collect::<String>()
        ));
        let written = (|| {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            let text = Zeroizing::new(format!("{}\n", B64.encode(self.0.to_bytes())));
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            // A hard link, unlike a rename, fails when the name exists: two
            // processes generating at once cannot replace each other's key.
            std::fs::hard_link(&tmp, path)
        })();
        let _ = std::fs::remove_file(&tmp);
        match written {
            Ok(()) => {
                if let Ok(d) = std::fs::File::open(dir) {
                    let _ = d.sync_all();
                }
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Err(KeyError::Exists(path.to_path_buf()))
            }
            Err(e) => Err(write_err(e)),
        }
    }

    /// The public half, for grabbers to trust.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    /// Signs an artifact: its app, version and sha256.
    pub fn sign(&self, app: &AppName, version: &Version, sha256: &Sha256) -> Signature {
        Signature(self.0.sign(&message(app, version, sha256)))
    }

    /// Signs the file index of a release: `sha256` is the index file's.
    pub fn sign_index(&self, app: &AppName, version: &Version, sha256: &Sha256) -> Signature {
        Signature(self.0.sign(&message_in(INDEX_DOMAIN, app, version, sha256)))
    }

    /// Signs `message` under `domain` (a prefix of its own, such as
    /// `slipway-peer-ticket-v1\n`, that no other kind of signed message
    /// starts with): for what is not an artifact or an index.
    pub fn sign_message(&self, domain: &str, message: &[u8]) -> Signature {
        Signature(self.0.sign(&in_domain(domain, message)))
    }
}

/// `message` behind its domain prefix.
fn in_domain(domain: &str, message: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(domain.len() + message.len());
    m.extend_from_slice(domain.as_bytes());
    m.extend_from_slice(message);
    m
}

/// Whether one of `keys` signed `message` under `domain`
/// (`SigningKey::sign_message`); strict, as `verify`.
pub fn verify_message(
    keys: &[PublicKey],
    domain: &str,
    message: &[u8],
    signature: &Signature,
) -> bool {
    let msg = in_domain(domain, message);
    keys.iter()
        .any(|k| k.0.verify_strict(&msg, &signature.0).is_ok())
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("public", &self.public_key())
            .finish_non_exhaustive()
    }
}

/// A key file others can read is worth a warning (not a refusal: secrets
/// mounted by orchestrators are often 0644 behind a private directory).
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            path = %path.display(),
            mode = format!("{:o}", meta.permissions().mode() & 0o777),
            "the signing key is readable by other users; chmod 600 it"
        );
    }
}

/// Why a public key or a signature was refused as text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FormatError(String);

/// A trusted public key: `ed25519:<base64>`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(ed25519_dalek::VerifyingKey);

impl PublicKey {
    pub fn parse(s: &str) -> Result<Self, FormatError> {
        let s = s.trim();
        let Some(b64) = s.strip_prefix(PUBLIC_PREFIX) else {
            return Err(FormatError(format!(
                "invalid public key: expected `{PUBLIC_PREFIX}<base64>`"
            )));
        };
        if b64.len() != KEY_CHARS {
            return Err(FormatError(format!(
                "invalid public key: {} base64 characters instead of {KEY_CHARS}",
                b64.len()
            )));
        }
        let bytes = B64
            .decode(b64)
            .map_err(|e| FormatError(format!("invalid public key: not base64: {e}")))?;
        let bytes: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
            FormatError(format!(
                "invalid public key: {} bytes instead of 32",
                bytes.len()
            ))
        })?;
        let key = ed25519_dalek::VerifyingKey::from_bytes(&bytes)
            .map_err(|_| FormatError("invalid public key: not a point on the curve".into()))?;
        if key.is_weak() {
            return Err(FormatError(
                "invalid public key: a weak (small-order) key".into(),
            ));
        }
        Ok(Self(key))
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PUBLIC_PREFIX}{}", B64.encode(self.0.as_bytes()))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for PublicKey {
    type Err = FormatError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Reads public keys from a file: one per line; blank lines and `#`
/// comments are skipped. An error names the file and the line.
pub fn read_public_keys(path: &Path) -> Result<Vec<PublicKey>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the trusted keys file {}: {e}", path.display()))?;
    let mut keys = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let key = PublicKey::parse(line)
            .map_err(|e| format!("{} line {}: {e}", path.display(), n + 1))?;
        keys.push(key);
    }
    Ok(keys)
}

/// An artifact's signature; its text form is base64.
#[derive(Clone, PartialEq, Eq)]
pub struct Signature(ed25519_dalek::Signature);

impl Signature {
    pub fn parse(s: &str) -> Result<Self, FormatError> {
        let s = s.trim();
        if s.len() != SIGNATURE_CHARS {
            return Err(FormatError(format!(
                "{} characters instead of the {SIGNATURE_CHARS} base64 characters of an ed25519 signature",
                s.len()
            )));
        }
        let bytes = B64
            .decode(s)
            .map_err(|e| FormatError(format!("not base64: {e}")))?;
        let sig = ed25519_dalek::Signature::from_slice(&bytes)
            .map_err(|_| FormatError(format!("{} bytes instead of 64", bytes.len())))?;
        Ok(Self(sig))
    }
}

impl Signature {
    /// The signature's 64 bytes, for text forms other than base64.
    pub fn to_bytes(&self) -> [u8; 64] {
        self.0.to_bytes()
    }

    /// A signature from its 64 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, FormatError> {
        ed25519_dalek::Signature::from_slice(bytes)
            .map(Self)
            .map_err(|_| FormatError(format!("{} bytes instead of 64", bytes.len())))
    }
}

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&B64.encode(self.0.to_bytes()))
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({self})")
    }
}

impl FromStr for Signature {
    type Err = FormatError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Why an artifact's signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the artifact is not signed")]
    Unsigned,
    #[error("malformed signature: {0}")]
    Malformed(String),
    #[error("the signature of {app} {version} does not verify with {}", trusted(*.keys))]
    Mismatch {
        app: AppName,
        version: Version,
        keys: usize,
    },
    #[error("no trusted keys are configured: nothing can be verified")]
    NoTrustedKeys,
}

fn trusted(n: usize) -> String {
    match n {
        1 => "the trusted key".to_string(),
        n => format!("any of the {n} trusted keys"),
    }
}

/// Checks that one of `keys` signed this artifact. `signature` is the text
/// from the wire, checked here rather than when the message was parsed, so
/// a bad one fails the install with a message instead of being dropped.
pub fn verify(
    keys: &[PublicKey],
    app: &AppName,
    version: &Version,
    sha256: &Sha256,
    signature: &str,
) -> Result<(), SignatureError> {
    verify_in(DOMAIN, keys, app, version, sha256, signature)
}

/// Checks that one of `keys` signed this release's file index, `sha256`
/// being the index file's.
pub fn verify_index(
    keys: &[PublicKey],
    app: &AppName,
    version: &Version,
    sha256: &Sha256,
    signature: &str,
) -> Result<(), SignatureError> {
    verify_in(INDEX_DOMAIN, keys, app, version, sha256, signature)
}

fn verify_in(
    domain: &[u8],
    keys: &[PublicKey],
    app: &AppName,
    version: &Version,
    sha256: &Sha256,
    signature: &str,
) -> Result<(), SignatureError> {
    if keys.is_empty() {
        return Err(SignatureError::NoTrustedKeys);
    }
    if signature.trim().is_empty() {
        return Err(SignatureError::Unsigned);
    }
    let sig = Signature::parse(signature).map_err(|e| SignatureError::Malformed(e.0))?;
    let msg = message_in(domain, app, version, sha256);
    // Strict verification: no malleable signatures, no small-order keys.
    if keys.iter().any(|k| k.0.verify_strict(&msg, &sig.0).is_ok()) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch {
            app: app.clone(),
            version: version.clone(),
            keys: keys.len(),
        })
    }
}

#[cfg(test)]
mod tests;
