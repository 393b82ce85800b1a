//! A build's file index (`deploy::index`), uploaded by its holder before
//! the artifact: measured, checked against the announced sha256, parsed
//! for the build's app and version, stored beside the artifact
//! (`store::index_key`) and recorded with its signature, under the
//! build's lease like the artifact (`Tracker::commit_upload`).

use anyhow::Context;
use deploy::index::{MAX_INDEX_BYTES, ReleaseIndex};
use deploy::signing::Signature;
use deploy::{BuildId, Sha256};
use sha2::Digest;

use crate::db::Uploaded;
use crate::model::{Holder, IndexUpload, StoredBuild};
use crate::store::index_key;
use crate::tracker::{Error, Tracker};

impl Tracker {
    /// Receives a build's file index: at most `MAX_INDEX_BYTES`, its
    /// sha256 the announced one, a valid index of the build's app and
    /// version (`400` saying what is wrong otherwise). It must come before
    /// the artifact, whose receipt splits the files the index names into
    /// blobs; a claim forgets it.
    pub async fn receive_index<E: std::fmt::Display>(
        &self,
        id: BuildId,
        holder: &Holder,
        announced: &Sha256,
        signature: &Signature,
        declared_len: Option<u64>,
        mut body: impl futures::Stream<Item = Result<bytes::Bytes, E>> + Unpin,
    ) -> Result<IndexUpload, Error> {
        use futures::StreamExt;
        let build = self.held_build(id, holder).await?;
        if let Some((_, Some(_), _)) = self.db().build_upload(id).await? {
            return Err(Error::Invalid(format!(
                "build {id}'s artifact is uploaded already: upload the file index before the artifact"
            )));
        }
        let too_large = |got: u64| {
            Error::TooLarge(format!(
                "the file index of build {id} is over {MAX_INDEX_BYTES} bytes ({got} bytes); nothing was kept"
            ))
        };
        if let Some(len) = declared_len
            && len > MAX_INDEX_BYTES
        {
            return Err(too_large(len));
        }
        let idle = self.config().upload_idle_timeout;
        let mut bytes = Vec::new();
        loop {
            let next = tokio::time::timeout(idle, body.next()).await.map_err(|_| {
                Error::Timeout(format!(
                    "the upload of build {id}'s file index sent nothing for {} \
                     (upload_idle_timeout); nothing was kept",
                    humantime::format_duration(idle)
                ))
            })?;
            let Some(chunk) = next else { break };
            let chunk = chunk.map_err(|e| Error::Invalid(format!("the upload broke off: {e}")))?;
            if (bytes.len() + chunk.len()) as u64 > MAX_INDEX_BYTES {
                return Err(too_large((bytes.len() + chunk.len()) as u64));
            }
            bytes.extend_from_slice(&chunk);
        }
        let sha = Sha256::parse(hex::encode(sha2::Sha256::digest(&bytes)))
            .context("a sha256 digest is 64 hex digits")?;
        if &sha != announced {
            return Err(Error::Invalid(format!(
                "the uploaded file index's sha256 is {sha}, not the announced {announced}; nothing was kept"
            )));
        }
        let index = IndexUpload {
            signature: signature.clone(),
            sha256: sha,
            size: bytes.len() as u64,
        };
        self.store_index(&build, holder, &bytes, &index).await?;
        Ok(index)
    }

    /// Checks an index's bytes, stores them and records them for `holder`'s
    /// running build (the in-process builder calls this directly).
    pub(crate) async fn store_index(
        &self,
        build: &StoredBuild,
        holder: &Holder,
        bytes: &[u8],
        index: &IndexUpload,
    ) -> Result<(), Error> {
        let id = build.id;
        let parsed = ReleaseIndex::parse(bytes, &build.app, &build.version).map_err(|e| {
            Error::Invalid(format!(
                "build {id}'s file index is refused: {e}; nothing was kept"
            ))
        })?;
        let tmp_dir = self.config().data_dir.join("tmp");
        tokio::fs::create_dir_all(&tmp_dir)
            .await
            .with_context(|| format!("cannot create {}", tmp_dir.display()))?;
        let tmp = tempfile::Builder::new()
            .prefix("index-")
            .tempfile_in(&tmp_dir)
            .context("cannot make a temp file")?;
        tokio::fs::write(tmp.path(), bytes)
            .await
            .context("cannot write the index")?;
        // The lease may have run out while the bytes came; it is checked
        // again, atomically, when they are moved under the index's key.
        self.renew_build_lease(id, holder).await?;
        let key = index_key(&build.app, &build.version);
        self.commit_upload(id, holder, &key, tmp.path(), Uploaded::Index(index))
            .await?;
        tracing::info!(build_id = %id, %key, sha256 = %index.sha256, size = index.size,
            entries = parsed.entries.len(), "file index stored");
        Ok(())
    }
}
