//! Secrets AppTracker must be able to read back (webhook secrets: an HMAC
//! is checked with the raw key), sealed at rest with a key that lives
//! beside AppTracker, not in the database.
//!
//! A copy of the database (a backup, a replica, a dump handed to someone)
//! then holds no usable secret; whoever has both the database and the key
//! file has them all, as AppTracker itself does. The cipher is
//! ChaCha20-Poly1305 from `ring` (already in the tree through rustls), with
//! a random 96-bit nonce per sealing and a context (app and provider) bound
//! in as associated data, so a sealed value copied to another row does not
//! open there.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use secrecy::SecretString;
use sha2::Digest;

/// The version tag of sealed values: `v1:<key id>:<hex of nonce, ciphertext
/// and tag>`.
const VERSION: &str = "v1";

/// The key secrets are sealed with. `Debug` shows its id, never the key.
pub struct SecretsKey {
    key: LessSafeKey,
    /// A short public fingerprint of the key, stored with each sealed
    /// value, so a value sealed under another key (a replica given another
    /// key file) is named as such instead of failing as "corrupt".
    id: String,
}

impl std::fmt::Debug for SecretsKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretsKey({})", self.id)
    }
}

/// Why a sealed value did not open.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(
        "it was sealed with secrets key {sealed_with}, and this AppTracker has key {ours}: every \
         replica must use the same `secrets_key_file`"
    )]
    OtherKey { sealed_with: String, ours: String },
    #[error("it is not a sealed value this version understands")]
    Malformed,
    #[error("it does not open with this key (altered, or moved from another row)")]
    Tampered,
}

impl SecretsKey {
    /// A key from its 32 bytes.
    pub fn from_bytes(bytes: &[u8; 32]) -> Self {
        let unbound = UnboundKey::new(&CHACHA20_POLY1305, bytes)
            .unwrap_or_else(|_| unreachable!("ChaCha20-Poly1305 takes any 32-byte key"));
        let mut h = sha2::Sha256::new();
        h.update(b"slipway-secrets-key-id\n");
        h.update(bytes);
        let id = hex::encode(&h.finalize()[..4]);
        Self {
            key: LessSafeKey::new(unbound),
            id,
        }
    }

    /// A fresh random key.
    pub fn generate() -> anyhow::Result<Self> {
        let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
        getrandom::fill(bytes.as_mut())
            .map_err(|e| anyhow::anyhow!("no randomness for the secrets key: {e}"))?;
        Ok(Self::from_bytes(&bytes))
    }

    /// The key's public fingerprint.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Reads the key file (64 hex digits), or creates it (mode 0600) when
    /// it does not exist yet; says whether it did.
    pub fn load_or_generate(path: &Path) -> anyhow::Result<(Self, bool)> {
        if path.exists() {
            return Ok((Self::load(path)?, false));
        }
        let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
        getrandom::fill(bytes.as_mut())
            .map_err(|e| anyhow::anyhow!("no randomness for the secrets key: {e}"))?;
        match write_new(path, &bytes) {
            Ok(()) => Ok((Self::from_bytes(&bytes), true)),
            // Another process (a replica sharing the directory) wrote it
            // first: use theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Ok((Self::load(path)?, false))
            }
            Err(e) => {
                Err(e).with_context(|| format!("cannot write the secrets key {}", path.display()))
            }
        }
    }

    fn load(path: &Path) -> anyhow::Result<Self> {
        let text = zeroize::Zeroizing::new(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the secrets key {}", path.display()))?,
        );
        let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(text.trim(), bytes.as_mut()).map_err(|_| {
            anyhow::anyhow!(
                "the secrets key {} must hold 64 hex digits (32 bytes)",
                path.display()
            )
        })?;
        Ok(Self::from_bytes(&bytes))
    }

    /// Seals `plain` for `context` (what it belongs to: it must be given
    /// again to open it).
    pub fn seal(&self, plain: &[u8], context: &str) -> anyhow::Result<String> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
        let mut buf = plain.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context.as_bytes()),
                &mut buf,
            )
            .map_err(|_| anyhow::anyhow!("cannot seal a secret"))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        Ok(format!("{VERSION}:{}:{}", self.id, hex::encode(out)))
    }

    /// Opens what [`SecretsKey::seal`] sealed for the same `context`.
    pub fn open(&self, sealed: &str, context: &str) -> Result<SecretString, OpenError> {
        let mut parts = sealed.splitn(3, ':');
        let (Some(VERSION), Some(id), Some(body)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(OpenError::Malformed);
        };
        if id != self.id {
            return Err(OpenError::OtherKey {
                sealed_with: id.to_string(),
                ours: self.id.clone(),
            });
        }
        let raw = hex::decode(body).map_err(|_| OpenError::Malformed)?;
        if raw.len() < NONCE_LEN {
            return Err(OpenError::Malformed);
        }
        let (nonce, sealed) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| OpenError::Malformed)?;
        let mut buf = zeroize::Zeroizing::new(sealed.to_vec());
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(context.as_bytes()), &mut buf)
            .map_err(|_| OpenError::Tampered)?;
        let text = std::str::from_utf8(plain).map_err(|_| OpenError::Malformed)?;
        Ok(SecretString::from(text.to_string()))
    }
}

/// The bytes of the key file at `path` (what is in it is the key), made
/// first (mode 0600, 64 random hex digits) when it does not exist yet;
/// says whether it was. For keys whose holder only needs them to match
/// across restarts and replicas: the key signing local download URLs.
pub(crate) fn load_or_generate_raw(
    path: &Path,
    what: &str,
) -> anyhow::Result<(zeroize::Zeroizing<Vec<u8>>, bool)> {
    let mut generated = false;
    if !path.exists() {
        let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
        getrandom::fill(bytes.as_mut())
            .map_err(|e| anyhow::anyhow!("no randomness for the {what}: {e}"))?;
        match write_new(path, &bytes) {
            Ok(()) => generated = true,
            // Another process (a replica sharing the directory) wrote it
            // first: use theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot write the {what} {}", path.display()));
            }
        }
    }
    let bytes = zeroize::Zeroizing::new(
        std::fs::read(path)
            .with_context(|| format!("cannot read the {what} {}", path.display()))?,
    );
    if bytes.is_empty() {
        anyhow::bail!("the {what} {} is empty", path.display());
    }
    Ok((bytes, generated))
}

/// Writes a new key file, readable by its owner only, without ever
/// replacing one (a hard link fails when the name exists).
fn write_new(path: &Path, bytes: &[u8; 32]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir)?;
    let mut tag = [0u8; 6];
    getrandom::fill(&mut tag).map_err(|e| std::io::Error::other(e.to_string()))?;
    let name = path
        .file_name()
        .map_or_else(|| "key".into(), |n| n.to_string_lossy());
    let tmp = dir.join(format!(
        ".{name}.tmp-{}-{}",
        std::process::id(),
        hex::encode(tag)
    ));
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        let text = zeroize::Zeroizing::new(format!("{}\n", hex::encode(bytes)));
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::hard_link(&tmp, path)
    })();
    let _ = std::fs::remove_file(&tmp);
    written?;
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn sealed_secrets_open_only_with_their_key_and_context() {
        let key = SecretsKey::generate().unwrap();
        let sealed = key.seal(b"hook-s3cret", "hello/github").unwrap();
        assert!(!sealed.contains("hook-s3cret"));
        assert!(sealed.starts_with(&format!("v1:{}:", key.id())));
        assert_eq!(
            key.open(&sealed, "hello/github").unwrap().expose_secret(),
            "hook-s3cret"
        );
        // Two sealings of one secret differ (fresh nonces).
        assert_ne!(sealed, key.seal(b"hook-s3cret", "hello/github").unwrap());
        // Moved to another app or provider: refused.
        assert!(matches!(
            key.open(&sealed, "other/github"),
            Err(OpenError::Tampered)
        ));
        assert!(matches!(
            key.open(&sealed, "hello/gitlab"),
            Err(OpenError::Tampered)
        ));
        // Altered: refused.
        let mut altered = sealed.clone().into_bytes();
        let last = altered.len() - 1;
        altered[last] = if altered[last] == b'0' { b'1' } else { b'0' };
        let altered = String::from_utf8(altered).unwrap();
        assert!(matches!(
            key.open(&altered, "hello/github"),
            Err(OpenError::Tampered)
        ));
        // Another key: named as such.
        let other = SecretsKey::generate().unwrap();
        let e = other.open(&sealed, "hello/github").unwrap_err();
        assert!(matches!(e, OpenError::OtherKey { .. }), "{e}");
        assert!(e.to_string().contains("secrets_key_file"), "{e}");
        assert!(matches!(
            key.open("plaintext", "hello/github"),
            Err(OpenError::Malformed)
        ));
    }

    #[test]
    fn the_key_file_is_made_once_and_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("secrets.key");
        let (a, made) = SecretsKey::load_or_generate(&path).unwrap();
        assert!(made);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let (b, made) = SecretsKey::load_or_generate(&path).unwrap();
        assert!(!made);
        assert_eq!(a.id(), b.id());
        let sealed = a.seal(b"x", "c").unwrap();
        assert_eq!(b.open(&sealed, "c").unwrap().expose_secret(), "x");
        std::fs::write(&path, "not hex").unwrap();
        let e = SecretsKey::load_or_generate(&path).unwrap_err();
        assert!(e.to_string().contains("64 hex digits"), "{e}");
    }
}
