//! Where a host fetches the files of a release it lacks: the origin (the
//! artifact store, through URLs AppTracker signs) and other hosts of the
//! cluster that hold them (peers).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{Cluster, HostName, Sha256};

/// `POST /api/v1/deploys/{id}/hosts/{host}/sources`: the files (by the
/// sha256 the release's index gives them) a grabber lacks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SourcesRequest {
    pub cluster: Cluster,
    /// At most 100,000; may be empty (peers only).
    pub blobs: Vec<Sha256>,
}

/// Where to fetch them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Sources {
    /// One download URL per file asked for, in the artifact store.
    pub blobs: Vec<BlobSource>,
    /// Hosts of the cluster holding the release, to try before the origin
    /// (best first). Every byte is checked against the signed index
    /// whichever host served it.
    #[serde(default)]
    pub peers: Vec<Peer>,
    /// What the peers ask for (`Authorization: Slipway-Peer <ticket>`):
    /// AppTracker's signature that this host may read this app's files
    /// for a while.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket: Option<String>,
}

/// One file of a release in the artifact store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BlobSource {
    pub sha256: Sha256,
    /// Absolute, signed, short-lived.
    pub url: String,
}

/// A host that serves its releases' files to its cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Peer {
    pub host: HostName,
    /// `https://addr:port`, the host's peer listener.
    pub url: String,
    /// sha256 (hex) of the listener's certificate (DER), which the
    /// fetching host pins: peers have self-made certificates, vouched for
    /// by AppTracker.
    pub fingerprint: String,
}
