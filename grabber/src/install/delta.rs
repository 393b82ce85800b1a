//! Delta installs: a release whose build has a signed file index, on a host
//! that keeps an earlier release of the app, is made from the files the
//! host has (linked from the app's content store, each hashed against the
//! index first) and the files it lacks (fetched one by one from peers or
//! the artifact store, checked against the index before they enter the
//! store). The full `tar.gz` is downloaded instead when the host has
//! nothing of the app, when the artifact is small (one request is quicker
//! than three), when the index cannot be had or checked, or when more than
//! half of the release's bytes are new.
//!
//! The release is assembled in `tmp/` and goes the way of an extracted one
//! (`Engine::finish_release`): inventory, digest, rename into `releases/`;
//! `current` never names a release that is not whole.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use deploy::index::{EntryKind, ReleaseIndex};
use deploy::tree::Inventory;
use deploy::{HostPhase, IndexRef, Release, Sha256, SourcesRequest, Transfer};
use tokio_util::sync::CancellationToken;

use super::error::{InstallError, InstallErrorKind};
use super::report::Reports;
use super::verify::read_release_manifest;
use super::{Engine, Prepared};
use crate::content::{ContentStore, Linked};
use crate::extract::{MODE_MASK, check_links_resolved};
use crate::fault;

/// The scheme of the `Authorization` header a peer is asked with.
pub(crate) const PEER_AUTH_SCHEME: &str = "Slipway-Peer";

/// An artifact smaller than this is downloaded whole: one request beats
/// the index, the sources and the files (three at least).
const DELTA_MIN_ARTIFACT_BYTES: u64 = 256 * 1024;

/// Files fetched at once.
const FETCH_CONCURRENCY: usize = 8;

/// A file the host lacks: its content, and the modes the release holds it
/// with.
#[derive(Debug, Clone)]
pub(super) struct Missing {
    pub sha256: Sha256,
    pub size: u64,
    pub modes: Vec<u32>,
}

/// What a delta install would fetch and reuse.
#[derive(Debug)]
struct Plan {
    missing: Vec<Missing>,
    missing_bytes: u64,
    total_bytes: u64,
}

/// What assembling found.
enum Assembled {
    Whole(Inventory),
    /// Files the store lacked or held wrong (now removed from it).
    Lacking(Vec<Missing>),
}

/// The mode a file of the index gets on this host (as extraction gives it).
fn host_mode(mode: u32) -> u32 {
    mode & 0o7777 & !MODE_MASK
}

fn plan(index: &ReleaseIndex, store: &ContentStore) -> Plan {
    let mut missing: BTreeMap<&str, Missing> = BTreeMap::new();
    let mut total_bytes = 0;
    for (_, mode, size, sha256) in index.files() {
        total_bytes += size;
        let mode = host_mode(mode);
        if store.has(sha256.as_str(), mode) {
            continue;
        }
        let m = missing.entry(sha256.as_str()).or_insert_with(|| Missing {
            sha256: sha256.clone(),
            size,
            modes: Vec::new(),
        });
        if !m.modes.contains(&mode) {
            m.modes.push(mode);
        }
    }
    let missing: Vec<Missing> = missing.into_values().collect();
    Plan {
        missing_bytes: missing.iter().map(|m| m.size).sum(),
        missing,
        total_bytes,
    }
}

/// Links the release described by `index` into the empty directory `dest`
/// from `store`. Blocking.
fn assemble(
    index: &ReleaseIndex,
    store: &ContentStore,
    dest: &Path,
) -> Result<Assembled, InstallErrorKind> {
    use std::os::unix::fs::PermissionsExt;
    let host = |what: &str, path: &Path, e: std::io::Error| {
        InstallErrorKind::Host(format!("cannot {what} {}: {e}", path.display()))
    };
    let mut hashes: HashMap<PathBuf, [u8; 32]> = HashMap::new();
    let mut lacking: BTreeMap<String, Missing> = BTreeMap::new();
    for entry in &index.entries {
        let at = dest.join(&entry.path);
        match &entry.kind {
            EntryKind::Dir { mode } => {
                std::fs::create_dir(&at).map_err(|e| host("create", &at, e))?;
                std::fs::set_permissions(&at, std::fs::Permissions::from_mode(host_mode(*mode)))
                    .map_err(|e| host("set the mode of", &at, e))?;
            }
            EntryKind::File { mode, size, sha256 } => {
                let mode = host_mode(*mode);
                match store
                    .link_checked(sha256.as_str(), mode, *size, &at)
                    .map_err(|e| host("link", &at, e))?
                {
                    Linked::Yes => {
                        let mut raw = [0u8; 32];
                        if hex::decode_to_slice(sha256.as_str(), &mut raw).is_ok() {
                            hashes.insert(PathBuf::from(&entry.path), raw);
                        }
                    }
                    Linked::Missing | Linked::Corrupt => {
                        let m = lacking
                            .entry(sha256.to_string())
                            .or_insert_with(|| Missing {
                                sha256: sha256.clone(),
                                size: *size,
                                modes: Vec::new(),
                            });
                        if !m.modes.contains(&mode) {
                            m.modes.push(mode);
                        }
                    }
                }
            }
            EntryKind::Symlink { target } => {
                std::os::unix::fs::symlink(target, &at).map_err(|e| host("create", &at, e))?;
            }
        }
    }
    if !lacking.is_empty() {
        return Ok(Assembled::Lacking(lacking.into_values().collect()));
    }
    std::fs::set_permissions(dest, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| host("set the mode of", dest, e))?;
    let tree = deploy::tree::walk(dest, Some(MODE_MASK))
        .map_err(|(entry, e)| InstallErrorKind::Host(format!("cannot read {entry}: {e}")))?;
    check_links_resolved(dest, &tree)?;
    let inventory = Inventory::of(dest, &tree, &hashes)
        .map_err(|(entry, e)| InstallErrorKind::Host(format!("cannot read {entry}: {e}")))?;
    Ok(Assembled::Whole(inventory))
}

/// Bytes fetched by one round, and the peers that served wrong bytes.
#[derive(Debug, Default, Clone)]
struct Fetched {
    bytes: u64,
    from_peers: u64,
    bad_peers: Vec<String>,
}

/// What the fetches of one round share.
struct Round<'a> {
    req: &'a Release,
    store: &'a ContentStore,
    /// The origin's URL of each file.
    urls: HashMap<&'a Sha256, &'a str>,
    peers: &'a [deploy::Peer],
    ticket: &'a str,
    slots: tokio::sync::Semaphore,
    first: std::sync::atomic::AtomicBool,
    /// Peers caught serving wrong bytes, and what they served.
    bad_peers: std::sync::Mutex<BTreeMap<String, String>>,
}

/// Why a peer did not give a file.
enum PeerFailure {
    /// It could not (down, busy, does not have it): try the next source.
    Unavailable(String),
    /// It served bytes the index does not sign: skipped for the round, and
    /// reported.
    Lied(String),
}

impl Engine {
    fn store(&self, req: &Release) -> ContentStore {
        ContentStore::new(self.cfg.layout.content_dir(&req.app))
    }

    /// Installs `req` from its index and the content store, when that is
    /// worth it; `None` when the full artifact should be downloaded.
    pub(super) async fn prepare_delta(
        &self,
        req: &Release,
        ix: &IndexRef,
        rep: &Reports<'_>,
        shutdown: &CancellationToken,
    ) -> Result<Option<Prepared>, InstallError> {
        if req.artifact.size < DELTA_MIN_ARTIFACT_BYTES {
            return Ok(None);
        }
        let store = self.store(req);
        let empty = {
            let store = store.clone();
            tokio::task::spawn_blocking(move || store.is_empty())
                .await
                .unwrap_or(true)
        };
        if empty {
            return Ok(None);
        }
        let index = match self.fetch_index(req, ix).await {
            Ok(index) => index,
            Err(e) => {
                tracing::warn!(error = %e, "the release's index cannot be used: downloading the whole artifact");
                rep.attach(
                    &format!(
                        "the release's index cannot be used ({e}): downloading the whole artifact"
                    ),
                    "",
                );
                return Ok(None);
            }
        };
        if index.content_bytes() > self.cfg.max_artifact_bytes {
            return Err(InstallErrorKind::TooLarge(format!(
                "the release holds {} bytes of files, over the {} bytes this host accepts",
                index.content_bytes(),
                self.cfg.max_artifact_bytes
            ))
            .in_phase(HostPhase::Downloading));
        }
        let index = std::sync::Arc::new(index);
        let plan = {
            let (index, store) = (index.clone(), store.clone());
            tokio::task::spawn_blocking(move || plan(&index, &store))
                .await
                .map_err(|e| {
                    InstallErrorKind::Host(format!("planning task failed: {e}"))
                        .in_phase(HostPhase::Downloading)
                })?
        };
        if plan.missing_bytes * 2 > plan.total_bytes {
            tracing::info!(
                new = plan.missing_bytes,
                total = plan.total_bytes,
                "most of the release is new: downloading the whole artifact"
            );
            return Ok(None);
        }
        rep.phase(
            HostPhase::Downloading,
            format!(
                "fetching {} of the release's files ({} of {} bytes); the rest is on this host",
                plan.missing.len(),
                plan.missing_bytes,
                plan.total_bytes
            ),
        )
        .await;
        let mut fetched = Fetched::default();
        let mut got: HashSet<Sha256> = HashSet::new();
        let mut want = plan.missing;
        let scratch = loop {
            if !want.is_empty() {
                let round = tokio::select! {
                    r = self.fetch_files(req, &store, &want, rep) => r,
                    _ = shutdown.cancelled() => return Ok(Some(Prepared::Interrupted)),
                };
                let round = round.map_err(|e| e.in_phase(HostPhase::Downloading))?;
                fetched.bytes += round.bytes;
                fetched.from_peers += round.from_peers;
                fetched.bad_peers.extend(round.bad_peers);
                got.extend(want.iter().map(|m| m.sha256.clone()));
                fault::point("fetched").await;
                rep.phase(
                    HostPhase::Verifying,
                    format!(
                        "{} files fetched ({} bytes), each checked against the signed index",
                        want.len(),
                        round.bytes
                    ),
                )
                .await;
            }
            let scratch = self
                .scratch(req)
                .map_err(|e| e.in_phase(HostPhase::Extracting))?;
            let (index2, store2, dest) = (index.clone(), store.clone(), scratch.path().to_owned());
            let assembled = tokio::task::spawn_blocking(move || assemble(&index2, &store2, &dest))
                .await
                .map_err(|e| {
                    InstallErrorKind::Host(format!("linking task failed: {e}"))
                        .in_phase(HostPhase::Extracting)
                })?
                .map_err(|e| e.in_phase(HostPhase::Extracting))?;
            match assembled {
                Assembled::Whole(inventory) => break (scratch, inventory),
                Assembled::Lacking(lacking) => {
                    // Files fetched this round are in the store, checked:
                    // lacking one now means something took it away.
                    if lacking.iter().any(|m| got.contains(&m.sha256)) {
                        return Err(InstallErrorKind::Host(format!(
                            "{} files fetched for this release left the content store before they \
                             were linked",
                            lacking.len()
                        ))
                        .in_phase(HostPhase::Extracting));
                    }
                    tracing::warn!(
                        files = lacking.len(),
                        "files of the content store were missing or changed: fetching them again"
                    );
                    rep.attach(
                        &format!(
                            "{} files on this host did not match the signed index: fetched again",
                            lacking.len()
                        ),
                        "",
                    );
                    want = lacking;
                }
            }
        };
        let (scratch, inventory) = scratch;
        let reused: u64 = index
            .files()
            .filter(|(_, _, _, sha)| !got.contains(*sha))
            .map(|(_, _, size, _)| size)
            .sum();
        let transfer = Transfer {
            bytes_downloaded: ix.size + fetched.bytes,
            bytes_from_peers: fetched.from_peers,
            bytes_reused: reused,
        };
        let skipped = match fetched.bad_peers.as_slice() {
            [] => String::new(),
            bad => format!(
                "; skipped peers that served files not matching the signed index: {}",
                bad.join(", ")
            ),
        };
        rep.phase_with(
            HostPhase::Extracting,
            format!(
                "release linked in {}: {} bytes reused from this host, {} downloaded ({} from \
                 peers){skipped}",
                scratch.path().display(),
                transfer.bytes_reused,
                transfer.bytes_downloaded,
                transfer.bytes_from_peers
            ),
            Some(transfer),
        )
        .await;
        let manifest =
            read_release_manifest(scratch.path()).map_err(|e| e.in_phase(HostPhase::Extracting))?;
        let release_dir = self.cfg.layout.release_dir(&req.app, &req.version);
        self.finish_release(req, scratch, manifest, inventory, &release_dir)
            .await
            .map_err(|e| e.in_phase(HostPhase::Extracting))?;
        Ok(Some(Prepared::Ready))
    }

    /// The index, its size, digest and signature checked, then its shape.
    async fn fetch_index(
        &self,
        req: &Release,
        ix: &IndexRef,
    ) -> Result<ReleaseIndex, InstallErrorKind> {
        let part = self.part_file("index")?;
        let limit = ix.size.min(deploy::index::MAX_INDEX_BYTES);
        let (sha, size) = self.fetch(&ix.url, limit, "index", part.path()).await?;
        if size != ix.size || sha != ix.sha256 {
            return Err(InstallErrorKind::Mismatch {
                size,
                sha256: sha,
                want_size: ix.size,
                want_sha256: ix.sha256.clone(),
            });
        }
        deploy::signing::verify_index(
            &self.cfg.trusted_keys,
            &req.app,
            &req.version,
            &ix.sha256,
            &ix.signature,
        )?;
        let bytes = tokio::fs::read(part.path())
            .await
            .map_err(|e| InstallErrorKind::Host(format!("cannot read the index: {e}")))?;
        ReleaseIndex::parse(&bytes, &req.app, &req.version)
            .map_err(|e| InstallErrorKind::Manifest(format!("the release's index: {e}")))
    }

    /// A temporary file under `tmp/`, removed when dropped.
    pub(super) fn part_file(
        &self,
        what: &str,
    ) -> Result<tempfile::NamedTempFile, InstallErrorKind> {
        tempfile::Builder::new()
            .prefix(&format!("{what}-"))
            .suffix(".part")
            .tempfile_in(self.cfg.layout.tmp_dir())
            .map_err(|e| InstallErrorKind::Host(format!("cannot create a temporary file: {e}")))
    }

    /// Fetches `want` into the store: from the peers AppTracker names,
    /// else from the origin, each file checked (size, sha256) before it
    /// goes in.
    async fn fetch_files(
        &self,
        req: &Release,
        store: &ContentStore,
        want: &[Missing],
        rep: &Reports<'_>,
    ) -> Result<Fetched, InstallErrorKind> {
        let sources = rep
            .sources(&SourcesRequest {
                cluster: self.cfg.cluster.clone(),
                blobs: want.iter().map(|m| m.sha256.clone()).collect(),
            })
            .await
            .map_err(InstallErrorKind::Fetch)?;
        let round = Round {
            req,
            store,
            urls: sources
                .blobs
                .iter()
                .map(|b| (&b.sha256, b.url.as_str()))
                .collect(),
            peers: match &sources.ticket {
                Some(_) => &sources.peers,
                None => &[],
            },
            ticket: sources.ticket.as_deref().unwrap_or_default(),
            slots: tokio::sync::Semaphore::new(FETCH_CONCURRENCY),
            first: std::sync::atomic::AtomicBool::new(true),
            bad_peers: std::sync::Mutex::new(BTreeMap::new()),
        };
        let mut fetches = Vec::with_capacity(want.len());
        for (i, m) in want.iter().enumerate() {
            fetches.push(self.fetch_one(&round, i, m));
        }
        let results = futures::future::join_all(fetches).await;
        let bad = round
            .bad_peers
            .lock()
            .map(|b| b.clone())
            .unwrap_or_default();
        for (peer, why) in &bad {
            tracing::warn!(%peer, reason = %why, "a peer served a file that does not match the signed index: skipped");
            rep.attach(
                &format!("peer {peer} skipped: {why}; the file came from another source"),
                "",
            );
        }
        let mut total = Fetched {
            bad_peers: bad.into_keys().collect(),
            ..Fetched::default()
        };
        for r in results {
            let f = r?;
            total.bytes += f.bytes;
            total.from_peers += f.from_peers;
        }
        Ok(total)
    }

    /// One file, when a slot is free: from each peer in turn (a different
    /// one first for each file, to spread the load), then the origin. The
    /// first file to arrive is the `fetching` pause point.
    async fn fetch_one(
        &self,
        round: &Round<'_>,
        nth: usize,
        m: &Missing,
    ) -> Result<Fetched, InstallErrorKind> {
        let _slot = round
            .slots
            .acquire()
            .await
            .map_err(|e| InstallErrorKind::Host(format!("fetch slots closed: {e}")))?;
        let peers = round.peers.len();
        let mut got = None;
        for k in 0..peers {
            let peer = &round.peers[(nth + k) % peers];
            if round
                .bad_peers
                .lock()
                .is_ok_and(|b| b.contains_key(peer.host.as_str()))
            {
                continue;
            }
            match self.fetch_from_peer(round, peer, m).await {
                Ok(part) => {
                    got = Some((part, true));
                    break;
                }
                Err(PeerFailure::Lied(why)) => {
                    if let Ok(mut b) = round.bad_peers.lock() {
                        b.insert(peer.host.to_string(), why);
                    }
                }
                Err(PeerFailure::Unavailable(why)) => {
                    tracing::debug!(peer = %peer.host, reason = %why, "peer could not serve a file");
                }
            }
        }
        let (part, from_peer) = match got {
            Some(g) => g,
            None => {
                let url = round.urls.get(&m.sha256).copied().ok_or_else(|| {
                    InstallErrorKind::Fetch(format!(
                        "AppTracker named no source for the file {}",
                        m.sha256
                    ))
                })?;
                let part = self.part_file("file")?;
                let (sha, size) = self.fetch(url, m.size, "file", part.path()).await?;
                if size != m.size || sha != m.sha256 {
                    return Err(InstallErrorKind::Mismatch {
                        size,
                        sha256: sha,
                        want_size: m.size,
                        want_sha256: m.sha256.clone(),
                    });
                }
                (part, false)
            }
        };
        self.keep_fetched(round.store, m, part).await?;
        if round
            .first
            .swap(false, std::sync::atomic::Ordering::Relaxed)
        {
            fault::point("fetching").await;
        }
        Ok(Fetched {
            bytes: m.size,
            from_peers: if from_peer { m.size } else { 0 },
            bad_peers: Vec::new(),
        })
    }

    /// One file from one peer, checked against the index.
    async fn fetch_from_peer(
        &self,
        round: &Round<'_>,
        peer: &deploy::Peer,
        m: &Missing,
    ) -> Result<tempfile::NamedTempFile, PeerFailure> {
        let unavailable = |e: InstallErrorKind| PeerFailure::Unavailable(e.to_string());
        let http = self.peer_client(&peer.fingerprint).map_err(unavailable)?;
        let url = format!(
            "{}/v1/content/{}/{}",
            peer.url.trim_end_matches('/'),
            round.req.app,
            m.sha256
        );
        let auth = format!("{PEER_AUTH_SCHEME} {}", round.ticket);
        let part = self.part_file("file").map_err(unavailable)?;
        let (sha, size) = self
            .fetch_with(&http, &url, Some(&auth), m.size, "file", part.path())
            .await
            .map_err(|e| match e {
                // More bytes than the index says is a lie, not a hiccup.
                InstallErrorKind::TooLarge(why) => PeerFailure::Lied(why),
                e => unavailable(e),
            })?;
        if size != m.size || sha != m.sha256 {
            return Err(PeerFailure::Lied(format!(
                "it served {size} bytes with sha256 {sha} for the file {} ({} bytes) of the signed index",
                m.sha256, m.size
            )));
        }
        Ok(part)
    }

    /// A client that trusts exactly the certificate `fingerprint` names.
    fn peer_client(&self, fingerprint: &str) -> Result<reqwest::Client, InstallErrorKind> {
        let mut clients = self
            .peer_clients
            .lock()
            .map_err(|_| InstallErrorKind::Host("peer clients poisoned".into()))?;
        if let Some(c) = clients.get(fingerprint) {
            return Ok(c.clone());
        }
        let c = deploy::tls::pinned_http_client(fingerprint)
            .map_err(|e| InstallErrorKind::Fetch(format!("cannot reach a peer: {e}")))?;
        if clients.len() > 1024 {
            clients.clear();
        }
        clients.insert(fingerprint.to_string(), c.clone());
        Ok(c)
    }

    /// Moves a checked file into the store under each of its modes.
    async fn keep_fetched(
        &self,
        store: &ContentStore,
        m: &Missing,
        part: tempfile::NamedTempFile,
    ) -> Result<(), InstallErrorKind> {
        let (store, m, tmp) = (store.clone(), m.clone(), self.cfg.layout.tmp_dir());
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            let (last, others) = m.modes.split_last().unwrap_or((&0o644, &[]));
            for mode in others {
                let copy = tempfile::NamedTempFile::new_in(&tmp)?;
                std::fs::copy(part.path(), copy.path())?;
                let (_, path) = copy.keep().map_err(|e| e.error)?;
                store.insert(&path, m.sha256.as_str(), *mode)?;
            }
            let (_, path) = part.keep().map_err(|e| e.error)?;
            store.insert(&path, m.sha256.as_str(), *last)
        })
        .await
        .map_err(|e| InstallErrorKind::Host(format!("store task failed: {e}")))?
        .map_err(|e| InstallErrorKind::Host(format!("cannot keep a fetched file: {e}")))
    }
}
