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

    /// Moves the object at `from` (a staging key, [`staging_key`]) to
    /// `key`, replacing any object there: readers see the old object or
    /// the new one, never a mix. What commits an upload under its
    /// build's lease (`queue.rs`).
    fn promote<'a>(&'a self, from: &'a str, key: &'a str) -> BoxFuture<'a, anyhow::Result<()>>;

    /// Removes the object at `key`, if there is one.
    fn remove<'a>(&'a self, key: &'a str) -> BoxFuture<'a, anyhow::Result<()>>;

    /// Whether an object is stored under `key` (a blob stored before is
    /// not stored again).
    fn exists<'a>(&'a self, key: &'a str) -> BoxFuture<'a, anyhow::Result<bool>>;

    /// A URL a host can download `key` from without credentials, valid for
    /// a short while.
    fn download_url<'a>(&'a self, key: &'a str) -> BoxFuture<'a, anyhow::Result<String>>;

    /// For logs: what and where.
    fn describe(&self) -> String;
}

/// The key of a release's artifact: `<app>/<app>-<version>.tar.gz`.
pub fn artifact_key(app: &AppName, version: &Version) -> String {
    format!("{app}/{app}-{version}.tar.gz")
}

/// A key of its own for one upload meant for `key`: `<key>.<random>.part`,
/// beside it (the local store renames it in the same directory). No two
/// uploads share one, and no download route serves one.
pub fn staging_key(key: &str) -> anyhow::Result<String> {
    let mut tag = [0u8; 8];
    getrandom::fill(&mut tag)
        .map_err(|e| anyhow::anyhow!("no randomness for a staging key: {e}"))?;
    Ok(format!("{key}.{}.part", hex::encode(tag)))
}

/// The key of a release's file index: its artifact's key with
/// `.index.json` after it (`<app>/<app>-<version>.tar.gz.index.json`).
pub fn index_key(app: &AppName, version: &Version) -> String {
    crate::model::index_key_of(&artifact_key(app, version))
}

/// The key of one file of an app's releases, by its content's sha256:
/// `<app>/blobs/<sha256>`. Every release of the app shares it.
pub fn blob_key(app: &AppName, sha256: &deploy::Sha256) -> String {
    format!("{app}/blobs/{sha256}")
}

/// The content type an object is stored and served with.
pub fn content_type(key: &str) -> &'static str {
    if key.ends_with(".tar.gz") {
        "application/gzip"
    } else if key.ends_with(".json") {
        "application/json"
    } else {
        "application/octet-stream"
    }
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
            // Copy to a temporary file of its own (concurrent uploads never
            // share one) then rename, so a reader never sees half a file.
            // The temporary file goes on every error, and when this future
            // is dropped: the copy writes through its handle, never its name.
            let tmp = tempfile::Builder::new()
                .prefix(".upload-")
                .suffix(".part")
                .tempfile_in(parent)
                .with_context(|| format!("cannot store artifact {}", dest.display()))?;
            let mut src = tokio::fs::File::open(file)
                .await
                .with_context(|| format!("cannot read {}", file.display()))?;
            let mut dst = tokio::fs::File::from_std(
                tmp.as_file()
                    .try_clone()
                    .with_context(|| format!("cannot store artifact {}", dest.display()))?,
            );
            tokio::io::copy(&mut src, &mut dst)
                .await
                .with_context(|| format!("cannot store artifact {}", dest.display()))?;
            tokio::io::AsyncWriteExt::flush(&mut dst)
                .await
                .with_context(|| format!("cannot store artifact {}", dest.display()))?;
            drop(dst);
            tmp.persist(&dest)
                .map_err(|e| e.error)
                .with_context(|| format!("cannot store artifact {}", dest.display()))?;
            Ok(())
        })
    }

    fn promote<'a>(&'a self, from: &'a str, key: &'a str) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let (from, dest) = (self.path(from), self.path(key));
            if let Some(parent) = dest.parent() {
                tokio::fs::create_dir_all(parent)
                    .await
                    .with_context(|| format!("cannot create {}", parent.display()))?;
            }
            tokio::fs::rename(&from, &dest)
                .await
                .with_context(|| format!("cannot store artifact {}", dest.display()))
        })
    }

    fn remove<'a>(&'a self, key: &'a str) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let path = self.path(key);
            match tokio::fs::remove_file(&path).await {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(e).with_context(|| format!("cannot remove {}", path.display()))
                }
                _ => Ok(()),
            }
        })
    }

    fn exists<'a>(&'a self, key: &'a str) -> BoxFuture<'a, anyhow::Result<bool>> {
        Box::pin(async move {
            let path = self.path(key);
            tokio::fs::try_exists(&path)
                .await
                .with_context(|| format!("cannot look for {}", path.display()))
        })
    }

    fn download_url<'a>(&'a self, key: &'a str) -> BoxFuture<'a, anyhow::Result<String>> {
        let expires = Timestamp::now().0 / 1000 + self.ttl.as_secs() as i64;
        let url = format!(
            "{}/artifacts/{key}?{}",
            self.public_url,
            self.sign(key, expires)
        );
        Box::pin(async move { Ok(url) })
    }

    fn describe(&self) -> String {
        format!("local directory {}", self.dir.display())
    }
}

/// Where an S3-compatible bucket is (`[s3]` in the config).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    pub bucket: String,
    /// For S3-compatible servers (MinIO, Garage, Ceph...); AWS when unset.
    pub endpoint_url: Option<String>,
    #[serde(default = "default_region")]
    pub region: String,
    /// Path-style URLs (`endpoint/bucket/key`), which most S3-compatible
    /// servers want.
    #[serde(default)]
    pub force_path_style: bool,
    /// Prepended to every key, to share a bucket.
    #[serde(default)]
    pub prefix: String,
    /// Create the bucket at start when it does not exist.
    #[serde(default)]
    pub create_bucket: bool,
    /// How long one request to the store may take, start to end (a PUT of
    /// up to 8 MiB, a copy, a HEAD; each retry counts anew): a store that
    /// stalls fails each operation within about three times this (the SDK
    /// tries three times), never hangs it; a build's upload, about five
    /// operations, fails within 15 times this. Connecting has 5 s of its
    /// own.
    #[serde(default = "default_timeout", deserialize_with = "timeout")]
    pub timeout: Duration,
}

fn default_region() -> String {
    "us-east-1".to_string()
}

fn default_timeout() -> Duration {
    Duration::from_secs(30)
}

fn timeout<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = <String as serde::Deserialize>::deserialize(d)?;
    humantime::parse_duration(&s).map_err(serde::de::Error::custom)
}

/// The SDK's timeouts for `cfg`: its defaults set none but for connecting,
/// so a store that accepted a connection and went quiet held the request
/// (a build's upload, a deploy's check) for ever.
fn timeouts(cfg: &S3Config) -> aws_config::timeout::TimeoutConfig {
    aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(5).min(cfg.timeout))
        .operation_attempt_timeout(cfg.timeout)
        .build()
}

/// Artifacts in an S3-compatible bucket. Credentials come from the usual
/// AWS chain (environment, profile files, container and instance roles);
/// hosts only ever see presigned GET URLs.
pub struct S3Store {
    client: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
    ttl: Duration,
}

/// Artifacts up to this size go in one PUT; larger ones in parts of it.
const PART_SIZE: u64 = 8 * 1024 * 1024;

impl S3Store {
    /// The store, trusting the system's CA roots.
    pub async fn connect(cfg: &S3Config, ttl: Duration) -> anyhow::Result<Self> {
        Self::connect_with(cfg, ttl, &deploy::tls::Trust::system()).await
    }

    /// The store, trusting `trust`'s extra CA too (an https endpoint with a
    /// private certificate).
    pub async fn connect_with(
        cfg: &S3Config,
        ttl: Duration,
        trust: &deploy::tls::Trust,
    ) -> anyhow::Result<Self> {
        use aws_smithy_http_client::tls;
        let mut roots = tls::TrustStore::default();
        if let Some(pem) = trust.extra_pem() {
            roots = roots.with_pem_certificate(pem);
        }
        let tls_context = tls::TlsContext::builder()
            .with_trust_store(roots)
            .build()
            .context("cannot set up TLS for the S3 store")?;
        // One rustls+ring HTTP client: no second HTTP stack, no C crypto build.
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(
                tls::rustls_provider::CryptoMode::Ring,
            ))
            .tls_context(tls_context)
            .build_https();
        let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .http_client(http)
            .region(aws_config::Region::new(cfg.region.clone()))
            .timeout_config(timeouts(cfg))
            .load()
            .await;
        let mut conf =
            aws_sdk_s3::config::Builder::from(&shared).force_path_style(cfg.force_path_style);
        if let Some(url) = &cfg.endpoint_url {
            conf = conf.endpoint_url(url);
        }
        let client = aws_sdk_s3::Client::from_conf(conf.build());
        let store = Self {
            client,
            bucket: cfg.bucket.clone(),
            prefix: cfg.prefix.clone(),
            ttl,
        };
        store.check_bucket(cfg.create_bucket).await?;
        Ok(store)
    }

    async fn check_bucket(&self, create: bool) -> anyhow::Result<()> {
        match self.client.head_bucket().bucket(&self.bucket).send().await {
            Ok(_) => Ok(()),
            Err(e) if create => {
                tracing::info!(bucket = %self.bucket, reason = %e, "creating the artifact bucket");
                match self
                    .client
                    .create_bucket()
                    .bucket(&self.bucket)
                    .send()
                    .await
                {
                    Ok(_) => Ok(()),
                    // Another replica made it first.
                    Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 409) => {
                        Ok(())
                    }
                    Err(e) => Err(anyhow::Error::new(e.into_service_error())
                        .context(format!("cannot create bucket {}", self.bucket))),
                }
            }
            Err(e) => Err(anyhow::anyhow!(
                "cannot reach bucket {}: {} (check s3.bucket, s3.endpoint_url and the AWS credentials)",
                self.bucket,
                aws_sdk_s3::error::DisplayErrorContext(e)
            )),
        }
    }

    fn object_key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    async fn put_multipart(&self, key: &str, file: &Path, size: u64) -> anyhow::Result<()> {
        use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
        use tokio::io::AsyncReadExt;
        let upload = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("{}", aws_sdk_s3::error::DisplayErrorContext(e)))?;
        let upload_id = upload
            .upload_id()
            .context("the store answered a multipart upload without an id")?
            .to_string();
        // Every failure after the upload began, completing it included,
        // aborts it: the store keeps no orphan parts and no object. So does
        // dropping this future (the request went away), through the guard.
        let mut guard = AbortOnDrop {
            client: self.client.clone(),
            bucket: self.bucket.clone(),
            key: key.to_string(),
            upload_id: Some(upload_id.clone()),
        };
        let result: anyhow::Result<()> = async {
            let mut f = tokio::fs::File::open(file).await?;
            let mut parts = Vec::new();
            let mut left = size;
            let mut number = 1;
            while left > 0 {
                let len = left.min(PART_SIZE) as usize;
                let mut buf = vec![0u8; len];
                f.read_exact(&mut buf).await?;
                let part = self
                    .client
                    .upload_part()
                    .bucket(&self.bucket)
                    .key(key)
                    .upload_id(&upload_id)
                    .part_number(number)
                    .body(buf.into())
                    .send()
                    .await
                    .map_err(|e| {
                        anyhow::anyhow!("{}", aws_sdk_s3::error::DisplayErrorContext(e))
                    })?;
                parts.push(
                    CompletedPart::builder()
                        .part_number(number)
                        .set_e_tag(part.e_tag().map(str::to_string))
                        .build(),
                );
                left -= len as u64;
                number += 1;
            }
            self.client
                .complete_multipart_upload()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(&upload_id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(parts))
                        .build(),
                )
                .send()
                .await
                .map_err(|e| anyhow::anyhow!("{}", aws_sdk_s3::error::DisplayErrorContext(e)))?;
            Ok(())
        }
        .await;
        guard.upload_id = None;
        match result {
            Ok(()) => Ok(()),
            Err(e) => {
                // Leave no orphan parts behind.
                let _ = self
                    .client
                    .abort_multipart_upload()
                    .bucket(&self.bucket)
                    .key(key)
                    .upload_id(&upload_id)
                    .send()
                    .await;
                Err(e)
            }
        }
    }
}

/// Aborts a multipart upload when dropped before it completed or was
/// aborted (`upload_id` taken).
struct AbortOnDrop {
    client: aws_sdk_s3::Client,
    bucket: String,
    key: String,
    upload_id: Option<String>,
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        let Some(upload_id) = self.upload_id.take() else {
            return;
        };
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (client, bucket, key) = (self.client.clone(), self.bucket.clone(), self.key.clone());
        rt.spawn(async move {
            if let Err(e) = client
                .abort_multipart_upload()
                .bucket(&bucket)
                .key(&key)
                .upload_id(upload_id)
                .send()
                .await
            {
                tracing::warn!(%bucket, %key, error = %aws_sdk_s3::error::DisplayErrorContext(e),
                    "cannot abort an interrupted multipart upload");
            }
        });
    }
}

impl ArtifactStore for S3Store {
    fn put<'a>(&'a self, key: &'a str, file: &'a Path) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let key = self.object_key(key);
            let size = tokio::fs::metadata(file)
                .await
                .with_context(|| format!("cannot read {}", file.display()))?
                .len();
            if size > PART_SIZE {
                return self
                    .put_multipart(&key, file, size)
                    .await
                    .with_context(|| format!("cannot upload s3://{}/{key}", self.bucket));
            }
            // Streams from the file, no copy in memory.
            let body = aws_sdk_s3::primitives::ByteStream::from_path(file)
                .await
                .with_context(|| format!("cannot read {}", file.display()))?;
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(&key)
                .content_type(content_type(&key))
                .body(body)
                .send()
                .await
                .map_err(|e| anyhow::anyhow!("{}", aws_sdk_s3::error::DisplayErrorContext(e)))
                .with_context(|| format!("cannot upload s3://{}/{key}", self.bucket))?;
            Ok(())
        })
    }

    fn promote<'a>(&'a self, from: &'a str, key: &'a str) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let (from, key) = (self.object_key(from), self.object_key(key));
            // A server-side copy (objects up to 5 GiB), then the staging
            // object goes.
            self.client
                .copy_object()
                .bucket(&self.bucket)
                .key(&key)
                .copy_source(copy_source(&self.bucket, &from))
                .content_type(content_type(&key))
                .metadata_directive(aws_sdk_s3::types::MetadataDirective::Replace)
                .send()
                .await
                .map_err(|e| anyhow::anyhow!("{}", aws_sdk_s3::error::DisplayErrorContext(e)))
                .with_context(|| format!("cannot copy s3://{}/{from} to {key}", self.bucket))?;
            if let Err(e) = self
                .client
                .delete_object()
                .bucket(&self.bucket)
                .key(&from)
                .send()
                .await
            {
                tracing::warn!(bucket = %self.bucket, key = %from,
                    error = %aws_sdk_s3::error::DisplayErrorContext(e),
                    "cannot remove a staged upload after storing it");
            }
            Ok(())
        })
    }

    fn remove<'a>(&'a self, key: &'a str) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let key = self.object_key(key);
            self.client
                .delete_object()
                .bucket(&self.bucket)
                .key(&key)
                .send()
                .await
                .map_err(|e| anyhow::anyhow!("{}", aws_sdk_s3::error::DisplayErrorContext(e)))
                .with_context(|| format!("cannot remove s3://{}/{key}", self.bucket))?;
            Ok(())
        })
    }

    fn exists<'a>(&'a self, key: &'a str) -> BoxFuture<'a, anyhow::Result<bool>> {
        Box::pin(async move {
            let key = self.object_key(key);
            match self
                .client
                .head_object()
                .bucket(&self.bucket)
                .key(&key)
                .send()
                .await
            {
                Ok(_) => Ok(true),
                Err(e) if e.as_service_error().is_some_and(|e| e.is_not_found()) => Ok(false),
                Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => Ok(false),
                Err(e) => Err(anyhow::anyhow!(
                    "{}",
                    aws_sdk_s3::error::DisplayErrorContext(e)
                ))
                .with_context(|| format!("cannot look for s3://{}/{key}", self.bucket)),
            }
        })
    }

    fn download_url<'a>(&'a self, key: &'a str) -> BoxFuture<'a, anyhow::Result<String>> {
        Box::pin(async move {
            let presign = aws_sdk_s3::presigning::PresigningConfig::expires_in(self.ttl)
                .context("invalid artifact_url_ttl")?;
            let req = self
                .client
                .get_object()
                .bucket(&self.bucket)
                .key(self.object_key(key))
                .presigned(presign)
                .await
                .map_err(|e| anyhow::anyhow!("{}", aws_sdk_s3::error::DisplayErrorContext(e)))
                .context("cannot presign a download URL")?;
            Ok(req.uri().to_string())
        })
    }

    fn describe(&self) -> String {
        format!("s3 bucket {}", self.bucket)
    }
}

/// `x-amz-copy-source`: `<bucket>/<key>`, percent-encoded but for `/`
/// and the characters URLs leave as they are.
fn copy_source(bucket: &str, key: &str) -> String {
    let mut out = String::with_capacity(bucket.len() + key.len() + 1);
    for b in format!("{bucket}/{key}").bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests;
