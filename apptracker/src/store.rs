//! The artifact store, behind one trait: a local directory served by
//! AppTracker (the embedded default) or an S3-compatible bucket. Builds keep
//! an artifact's key; hosts get short-lived signed download URLs minted from
//! it, so they hold no storage credentials.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use deploy::{AppName, Timestamp, Version};
use futures::future::BoxFuture;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Where artifacts live.
pub trait ArtifactStore: Send + Sync + 'static {
    /// Stores the file at `file` under `key`, replacing any object there.
    fn put<'a>(&'a self, key: &'a str, file: &'a Path) -> BoxFuture<'a, anyhow::Result<()>>;

    /// A URL a host can download `key` from without credentials, valid for
    /// a short while.
    fn download_url(&self, key: &str) -> anyhow::Result<String>;

    /// For logs: what and where.
    fn describe(&self) -> String;
}

/// The key of a release's artifact: `<app>/<app>-<version>.tar.gz`.
pub fn artifact_key(app: &AppName, version: &Version) -> String {
    format!("{app}/{app}-{version}.tar.gz")
}

/// The embedded default: a directory, served at `/artifacts/<key>` with
/// HMAC-signed, expiring query strings (the same contract as a presigned
/// S3 URL).
pub struct LocalStore {
    dir: PathBuf,
    /// Base of the URLs handed to hosts.
    public_url: String,
    signing_key: Vec<u8>,
    ttl: Duration,
}

type HmacSha256 = Hmac<Sha256>;

/// Why a download URL was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UrlError {
    #[error("the download URL has expired")]
    Expired,
    #[error("the download URL's signature is wrong")]
    BadSignature,
}

impl LocalStore {
    pub fn new(dir: PathBuf, public_url: String, signing_key: Vec<u8>, ttl: Duration) -> Self {
        Self {
            dir,
            public_url,
            signing_key,
            ttl,
        }
    }

    /// The file behind a key.
    pub fn path(&self, key: &str) -> PathBuf {
        self.dir.join(key)
    }

    fn mac(&self, key: &str, expires: i64) -> HmacSha256 {
        // HMAC accepts keys of any length; `new_from_slice` cannot fail.
        let mut mac = HmacSha256::new_from_slice(&self.signing_key)
            .unwrap_or_else(|_| unreachable!("hmac takes any key length"));
        mac.update(key.as_bytes());
        mac.update(b"\n");
        mac.update(expires.to_string().as_bytes());
        mac
    }

    /// The signed query string for `key`, valid until `expires` (unix s).
    pub fn sign(&self, key: &str, expires: i64) -> String {
        let sig = hex::encode(self.mac(key, expires).finalize().into_bytes());
        format!("expires={expires}&sig={sig}")
    }

    /// Checks a download URL's signature (in constant time) and expiry.
    pub fn verify(&self, key: &str, expires: i64, sig: &str) -> Result<(), UrlError> {
        let sig = hex::decode(sig).map_err(|_| UrlError::BadSignature)?;
        self.mac(key, expires)
            .verify_slice(&sig)
            .map_err(|_| UrlError::BadSignature)?;
        if Timestamp::now().0 / 1000 > expires {
            return Err(UrlError::Expired);
        }
        Ok(())
    }
}

impl ArtifactStore for LocalStore {
    fn put<'a>(&'a self, key: &'a str, file: &'a Path) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let dest = self.path(key);
            let parent = dest
                .parent()
                .with_context(|| format!("artifact key {key} has no directory"))?;
            tokio::fs::create_dir_all(parent)
                .await
                .with_context(|| format!("cannot create {}", parent.display()))?;
            // Copy to a temporary name then rename, so a reader never sees
            // half a file.
            let tmp = dest.with_extension("part");
            tokio::fs::copy(file, &tmp)
                .await
                .with_context(|| format!("cannot store artifact {}", dest.display()))?;
            tokio::fs::rename(&tmp, &dest)
                .await
                .with_context(|| format!("cannot store artifact {}", dest.display()))?;
            Ok(())
        })
    }

    fn download_url(&self, key: &str) -> anyhow::Result<String> {
        let expires = Timestamp::now().0 / 1000 + self.ttl.as_secs() as i64;
        Ok(format!(
            "{}/artifacts/{key}?{}",
            self.public_url,
            self.sign(key, expires)
        ))
    }

    fn describe(&self) -> String {
        format!("local directory {}", self.dir.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> LocalStore {
        LocalStore::new(
            PathBuf::from("/nonexistent"),
            "http://x".into(),
            b"k".to_vec(),
            Duration::from_secs(60),
        )
    }

    #[test]
    fn signed_urls_verify_and_tampering_fails() {
        let s = store();
        let expires = Timestamp::now().0 / 1000 + 60;
        let q = s.sign("a/a-1.tar.gz", expires);
        let sig = q.split("sig=").nth(1).unwrap();
        assert_eq!(s.verify("a/a-1.tar.gz", expires, sig), Ok(()));
        assert_eq!(
            s.verify("a/a-2.tar.gz", expires, sig),
            Err(UrlError::BadSignature)
        );
        assert_eq!(
            s.verify("a/a-1.tar.gz", expires + 1, sig),
            Err(UrlError::BadSignature)
        );
        assert_eq!(
            s.verify("a/a-1.tar.gz", expires, "zz"),
            Err(UrlError::BadSignature)
        );
    }

    #[test]
    fn expired_urls_fail() {
        let s = store();
        let past = Timestamp::now().0 / 1000 - 1;
        let q = s.sign("k", past);
        let sig = q.split("sig=").nth(1).unwrap();
        assert_eq!(s.verify("k", past, sig), Err(UrlError::Expired));
    }

    #[test]
    fn download_urls_carry_a_signature() {
        let url = store().download_url("a/a-1.tar.gz").unwrap();
        assert!(
            url.starts_with("http://x/artifacts/a/a-1.tar.gz?expires="),
            "{url}"
        );
        assert!(url.contains("&sig="));
    }
}
