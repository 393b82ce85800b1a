//! Where a host fetches the files of a deploy's release it lacks (issue
//! 21): one signed download URL per blob it names (`<app>/blobs/<sha256>`,
//! stored when the artifact was received). The sha256s are not checked
//! against the release's index: the URLs only ever name blobs of the
//! deploy's app, and a host checks every byte against the signed index.

use std::collections::HashSet;

use deploy::{BlobSource, DeployId, HostName, Sources, SourcesRequest};

use super::{Error, Tracker};
use crate::store::blob_key;

/// The most blobs one request may name.
pub const MAX_SOURCES_BLOBS: usize = 100_000;

impl Tracker {
    /// The sources of the blobs `req` names for `host`, one of deploy
    /// `id`'s hosts (its agent was checked by the caller). A deploy whose
    /// build presents no index has none (`NotFound`).
    pub async fn sources(
        &self,
        id: DeployId,
        host: &HostName,
        req: &SourcesRequest,
    ) -> Result<Sources, Error> {
        if req.blobs.len() > MAX_SOURCES_BLOBS {
            return Err(Error::Invalid(format!(
                "{} blobs asked for; at most {MAX_SOURCES_BLOBS} per request",
                req.blobs.len()
            )));
        }
        let deploy = self
            .db()
            .deploy_row(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no deploy {id}")))?;
        if deploy.cluster != req.cluster {
            return Err(Error::Invalid(format!(
                "deploy {id} targets cluster `{}`, not `{}`",
                deploy.cluster, req.cluster
            )));
        }
        if !self.db().deploy_has_host(id, host).await? {
            return Err(Error::NotFound(format!(
                "host `{host}` is not part of deploy {id}"
            )));
        }
        let no_index = || {
            Error::NotFound(format!(
                "deploy {id}'s build has no file index: download the whole artifact"
            ))
        };
        let version = deploy.version.as_ref().ok_or_else(no_index)?;
        let build = self
            .db()
            .build_by_version(&deploy.app, version)
            .await?
            .ok_or_else(no_index)?;
        if build
            .artifact
            .as_ref()
            .and_then(|a| a.index.as_ref())
            .is_none()
        {
            return Err(no_index());
        }
        let mut seen = HashSet::with_capacity(req.blobs.len());
        let mut blobs = Vec::with_capacity(req.blobs.len());
        for sha256 in &req.blobs {
            if !seen.insert(sha256) {
                continue;
            }
            blobs.push(BlobSource {
                url: self
                    .store()
                    .download_url(&blob_key(&deploy.app, sha256))
                    .await?,
                sha256: sha256.clone(),
            });
        }
        let (peers, ticket) = self.peers_for(id, host).await?;
        tracing::debug!(deploy_id = %id, %host, blobs = blobs.len(), peers = peers.len(), "sources handed out");
        Ok(Sources {
            blobs,
            peers,
            ticket,
        })
    }
}
