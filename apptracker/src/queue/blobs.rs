//! A received artifact split into its files (issue 21): every regular
//! file's content goes to the store once per app, at
//! `<app>/blobs/<sha256>` (`store::blob_key`), so a host that has most of a
//! release fetches only the files it lacks, by the sha256 its signed index
//! gives them (`Tracker::sources`). The tar is read in a blocking task,
//! which hands each file (in a temporary file) to up to
//! [`BLOB_CONCURRENCY`] stores at once; a blob already stored is not
//! stored again.

use std::collections::HashSet;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use deploy::{AppName, BuildId, Sha256};
use futures::TryStreamExt;
use sha2::Digest;

use crate::model::Holder;
use crate::store::blob_key;
use crate::tracker::{Error, Tracker};

/// Blobs stored at once (and files read ahead of the stores).
const BLOB_CONCURRENCY: usize = 8;
/// An artifact may expand to this many times `max_artifact_size` at most:
/// a compressed bomb is not split (and its build presents no index).
const MAX_EXPANSION: u64 = 16;

/// What splitting an artifact did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct BlobsStored {
    /// Regular files in the artifact.
    pub files: u64,
    /// Distinct contents among them.
    pub distinct: u64,
    /// Of those, the ones the store did not hold yet.
    pub stored: u64,
}

impl Tracker {
    /// Stores every regular file of the artifact at `artifact` (a tar.gz)
    /// as a blob of `app`.
    pub(crate) async fn store_blobs(
        &self,
        app: &AppName,
        artifact: &Path,
    ) -> anyhow::Result<BlobsStored> {
        let tmp_dir = self.config().data_dir.join("tmp");
        tokio::fs::create_dir_all(&tmp_dir)
            .await
            .with_context(|| format!("cannot create {}", tmp_dir.display()))?;
        let (tx, rx) =
            tokio::sync::mpsc::channel::<(Sha256, tempfile::NamedTempFile)>(BLOB_CONCURRENCY);
        let path = artifact.to_path_buf();
        let span = tracing::Span::current();
        let max_total = self
            .config()
            .max_artifact_size
            .0
            .saturating_mul(MAX_EXPANSION);
        let reader = tokio::task::spawn_blocking(move || {
            let _enter = span.enter();
            read_blobs(&path, &tmp_dir, &tx, max_total)
        });
        let files = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv()
                .await
                .map(|blob| (Ok::<_, anyhow::Error>(blob), rx))
        });
        // On an error the stream (the receiver) is dropped here, which
        // stops the reader at its next file.
        let stored = files
            .map_ok(|(sha, file)| async move {
                let key = blob_key(app, &sha);
                if self.store().exists(&key).await? {
                    return Ok(0u64);
                }
                self.store()
                    .put(&key, file.path())
                    .await
                    .with_context(|| format!("cannot store blob {key}"))?;
                Ok(1)
            })
            .try_buffer_unordered(BLOB_CONCURRENCY)
            .try_fold(0u64, |n, stored| async move { Ok(n + stored) })
            .await;
        let read = reader.await.context("the artifact reader failed")?;
        let stored = stored?;
        let (files, distinct) = read?;
        Ok(BlobsStored {
            files,
            distinct,
            stored,
        })
    }

    /// Splits a running build's artifact into blobs; when that fails the
    /// build's index is forgotten (it would name files no host could
    /// fetch) and the build goes on without one.
    pub(crate) async fn split_artifact(
        &self,
        id: BuildId,
        holder: &Holder,
        app: &AppName,
        artifact: &Path,
    ) -> Result<(), Error> {
        match self.store_blobs(app, artifact).await {
            Ok(n) => {
                tracing::info!(build_id = %id, files = n.files, distinct = n.distinct,
                    stored = n.stored, "artifact split into blobs");
                Ok(())
            }
            Err(e) => {
                tracing::warn!(build_id = %id, error = format!("{e:#}"),
                    "cannot store the artifact's files as blobs; the build presents no file index");
                if self.db().clear_index(id, holder).await? {
                    Ok(())
                } else {
                    Err(super::lost(id, holder))
                }
            }
        }
    }
}

/// Reads the tar.gz at `path`, writing each regular file not seen before
/// into a temporary file in `tmp_dir` and sending it with its sha256.
/// Returns (files, distinct contents).
fn read_blobs(
    path: &PathBuf,
    tmp_dir: &Path,
    tx: &tokio::sync::mpsc::Sender<(Sha256, tempfile::NamedTempFile)>,
    max_total: u64,
) -> anyhow::Result<(u64, u64)> {
    let mut total = 0u64;
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(BufReader::new(file)));
    let mut seen: HashSet<Sha256> = HashSet::new();
    let mut files = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    for entry in archive.entries().context("cannot read the artifact")? {
        let mut entry = entry.context("cannot read the artifact")?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let mut tmp = tempfile::Builder::new()
            .prefix("blob-")
            .tempfile_in(tmp_dir)
            .context("cannot make a temp file")?;
        let mut hasher = sha2::Sha256::new();
        {
            let mut out = std::io::BufWriter::new(tmp.as_file_mut());
            loop {
                let n = entry.read(&mut buf).context("cannot read the artifact")?;
                if n == 0 {
                    break;
                }
                total += n as u64;
                anyhow::ensure!(
                    total <= max_total,
                    "the artifact expands to more than {max_total} bytes ({MAX_EXPANSION} times \
                     max_artifact_size)"
                );
                hasher.update(&buf[..n]);
                out.write_all(&buf[..n]).context("cannot write a blob")?;
            }
            out.flush().context("cannot write a blob")?;
        }
        files += 1;
        let sha = Sha256::parse(hex::encode(hasher.finalize()))
            .context("a sha256 digest is 64 hex digits")?;
        if !seen.insert(sha.clone()) {
            continue;
        }
        if tx.blocking_send((sha, tmp)).is_err() {
            // The stores stopped (one failed): their error is the one told.
            break;
        }
    }
    Ok((files, seen.len() as u64))
}
