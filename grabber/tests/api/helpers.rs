//! A fake AppTracker (heartbeats, desired state, the bus as server-sent
//! events, host events, release phases) and artifact builder for driving
//! a real grabber.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, Sse};
use deploy::{
    AppName, ArtifactRef, BuildType, Cluster, DeployHost, DeployId, DesiredApp, DesiredState,
    HealthSpec, Heartbeat, Host, HostEvent, HostName, MANIFEST_PATH, Manifest, ReleasePhase,
    ReleasePhaseResult, ReleasePhaseStatus, RunSpec, Sha256, Timestamp, Version,
};
use futures::Stream;
use sha2::Digest;
use tokio::sync::mpsc;

#[derive(Default)]
pub struct Recorded {
    pub heartbeats: Vec<Heartbeat>,
    pub events: Vec<(DeployId, HostName, HostEvent)>,
    pub desired: Vec<DesiredApp>,
    /// How many times the desired state was read.
    pub desired_reads: usize,
    /// Answer heartbeats and desired-state reads with the desired state's
    /// fingerprint, as AppTracker does (off: an older server).
    pub fingerprints: bool,
    pub artifacts: HashMap<String, Vec<u8>>,
    /// Senders of the open bus connections; raw lines to send as `data:`.
    pub subscribers: Vec<mpsc::UnboundedSender<String>>,
    /// The release phases asked, by deploy id: what `GET
    /// …/release-phase/{host}` answers (a 409 for any other id).
    pub release_phases: HashMap<i64, DesiredApp>,
    /// The deploy ids whose release phase a grabber asked about.
    pub release_phase_reads: Vec<i64>,
    /// The release phase results reported, by deploy id.
    pub release_phase_results: Vec<(i64, ReleasePhaseResult)>,
}

#[derive(Clone)]
pub struct FakeTracker {
    pub base: String,
    pub rec: Arc<Mutex<Recorded>>,
}

type Shared = Arc<Mutex<Recorded>>;

/// The fingerprint AppTracker would give `rec`'s desired state, when it
/// gives them.
fn fingerprint(rec: &Recorded) -> Option<String> {
    rec.fingerprints.then(|| {
        deploy::desired_fingerprint(
            rec.desired
                .iter()
                .map(|r| (r.app.as_str(), r.version.as_str(), r.deploy_id.0)),
        )
    })
}

async fn heartbeat(State(s): State<Shared>, Json(hb): Json<Heartbeat>) -> Json<Host> {
    let desired_fingerprint = fingerprint(&s.lock().unwrap());
    let host = Host {
        cluster: hb.cluster.clone(),
        name: hb.host.clone(),
        root: hb.root.clone(),
        registered_at: Timestamp::now(),
        last_seen: Timestamp::now(),
        apps: hb.apps.clone(),
        alive: None,
        peer_ticket_key: None,
        desired_fingerprint,
    };
    s.lock().unwrap().heartbeats.push(hb);
    Json(host)
}

async fn desired(
    State(s): State<Shared>,
    Path((cluster, host)): Path<(Cluster, HostName)>,
) -> Json<DesiredState> {
    let (apps, fingerprint) = {
        let mut rec = s.lock().unwrap();
        rec.desired_reads += 1;
        (rec.desired.clone(), fingerprint(&rec))
    };
    Json(DesiredState {
        cluster,
        host,
        apps,
        fingerprint,
    })
}

async fn event(
    State(s): State<Shared>,
    Path((id, host)): Path<(i64, HostName)>,
    Json(ev): Json<HostEvent>,
) -> Json<DeployHost> {
    let dh = DeployHost {
        host: host.clone(),
        phase: ev.phase,
        failed_phase: ev.failed_phase,
        rolled_back: ev.rolled_back,
        message: ev.message.clone(),
        log_tail: ev.log_tail.clone(),
        updated_at: Timestamp::now(),
        batch: 0,
        transfer: ev.transfer,
    };
    s.lock().unwrap().events.push((DeployId(id), host, ev));
    Json(dh)
}

async fn release_phase_asked(
    State(s): State<Shared>,
    Path((id, _host)): Path<(i64, HostName)>,
) -> Result<Json<DesiredApp>, (StatusCode, Json<deploy::ErrorBody>)> {
    let mut rec = s.lock().unwrap();
    rec.release_phase_reads.push(id);
    rec.release_phases
        .get(&id)
        .cloned()
        .map(Json)
        .ok_or_else(|| {
            (
                StatusCode::CONFLICT,
                Json(deploy::ErrorBody {
                    code: "conflict".into(),
                    message: format!("deploy {id} has no release phase waiting on this host"),
                }),
            )
        })
}

async fn release_phase_result(
    State(s): State<Shared>,
    Path((id, host)): Path<(i64, HostName)>,
    Json(result): Json<ReleasePhaseResult>,
) -> Json<ReleasePhase> {
    s.lock()
        .unwrap()
        .release_phase_results
        .push((id, result.clone()));
    Json(ReleasePhase {
        host,
        status: match result.outcome {
            deploy::ReleaseOutcome::Succeeded => ReleasePhaseStatus::Succeeded,
            _ => ReleasePhaseStatus::Failed,
        },
        message: Some(result.message),
        log: result.log,
        started_at: Timestamp::now(),
        finished_at: Some(Timestamp::now()),
    })
}

async fn bus(State(s): State<Shared>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let (tx, rx) = mpsc::unbounded_channel();
    let _ = tx.send(r#"{"kind":"sync"}"#.to_string());
    s.lock().unwrap().subscribers.push(tx);
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|m| (Ok(Event::default().data(m)), rx))
    });
    Sse::new(stream)
}

async fn artifact(State(s): State<Shared>, Path(name): Path<String>) -> (StatusCode, Vec<u8>) {
    match s.lock().unwrap().artifacts.get(&name) {
        Some(b) => (StatusCode::OK, b.clone()),
        None => (StatusCode::NOT_FOUND, Vec::new()),
    }
}

impl FakeTracker {
    pub async fn start() -> Self {
        let rec: Shared = Default::default();
        let app = axum::Router::new()
            .route("/api/v1/hosts/heartbeat", axum::routing::post(heartbeat))
            .route(
                "/api/v1/hosts/{cluster}/{host}/desired",
                axum::routing::get(desired),
            )
            .route(
                "/api/v1/deploys/{id}/hosts/{host}/events",
                axum::routing::post(event),
            )
            .route(
                "/api/v1/deploys/{id}/release-phase/{host}",
                axum::routing::get(release_phase_asked).post(release_phase_result),
            )
            .route("/api/v1/bus/{cluster}", axum::routing::get(bus))
            .route("/artifacts/{name}", axum::routing::get(artifact))
            .with_state(rec.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { base, rec }
    }

    /// Publishes a release whose app runs `command`, signed by
    /// `packer_key()`; returns its reference.
    pub fn publish(&self, app: &str, version: &str, command: &str) -> ArtifactRef {
        self.publish_with(app, version, command, None)
    }

    /// [`publish`](Self::publish) with a `[release] command`.
    pub fn publish_with(
        &self,
        app: &str,
        version: &str,
        command: &str,
        release: Option<&str>,
    ) -> ArtifactRef {
        let bytes = release_tarball(app, version, command, release);
        let name = format!("{app}-{version}.tar.gz");
        let sha256 = Sha256::parse(hex::encode(sha2::Sha256::digest(&bytes))).unwrap();
        let signature = packer_key().sign(
            &AppName::parse(app).unwrap(),
            &Version::parse(version).unwrap(),
            &sha256,
        );
        let r = ArtifactRef {
            url: format!("{}/artifacts/{name}", self.base),
            sha256,
            size: bytes.len() as u64,
            signature: signature.to_string(),
            index: None,
        };
        self.rec.lock().unwrap().artifacts.insert(name, bytes);
        r
    }

    /// Sends a raw bus message to every open connection.
    pub fn send(&self, raw: &str) {
        let mut rec = self.rec.lock().unwrap();
        rec.subscribers.retain(|s| s.send(raw.to_string()).is_ok());
    }

    /// Makes `release` the one desired release of its app.
    pub fn desire(&self, release: DesiredApp) {
        let mut rec = self.rec.lock().unwrap();
        rec.desired.retain(|r| r.app != release.app);
        rec.desired.push(release);
    }

    /// Makes `release` what its deploy's release phase runs on the host
    /// that asks.
    pub fn ask_release_phase(&self, release: DesiredApp) {
        let mut rec = self.rec.lock().unwrap();
        rec.release_phases.insert(release.deploy_id.0, release);
    }

    pub fn desired_reads(&self) -> usize {
        self.rec.lock().unwrap().desired_reads
    }

    pub fn phases(&self, id: i64) -> Vec<String> {
        let rec = self.rec.lock().unwrap();
        rec.events
            .iter()
            .filter(|(d, _, _)| d.0 == id)
            .map(|(_, _, e)| e.phase.to_string())
            .collect()
    }

    pub fn last_heartbeat(&self) -> Option<Heartbeat> {
        self.rec.lock().unwrap().heartbeats.last().cloned()
    }

    /// Waits until `f` holds, failing the test after 20 seconds.
    pub async fn wait_for(&self, what: &str, f: impl Fn(&Self) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while !f(self) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A `deploy` bus message for `release`, to the hosts `hosts` matches.
pub fn deploy_message(release: &DesiredApp, hosts: &str) -> String {
    serde_json::json!({
        "kind": "deploy", "deploy_id": release.deploy_id, "app": release.app,
        "version": release.version, "artifact": release.artifact,
        "target": {"cluster": "local", "hosts": hosts}, "issued_at": 0
    })
    .to_string()
}

/// A `release_phase` bus message for `release`, to host `host` only.
pub fn release_phase_message(release: &DesiredApp, host: &str) -> String {
    serde_json::json!({
        "kind": "release_phase", "deploy_id": release.deploy_id, "app": release.app,
        "version": release.version, "artifact": release.artifact,
        "target": {"cluster": "local", "hosts": host, "only": [host]}, "issued_at": 0
    })
    .to_string()
}

/// A release to deploy (`action` deploy, no config).
pub fn release(id: i64, app: &str, version: &str, artifact: ArtifactRef) -> DesiredApp {
    DesiredApp {
        app: AppName::parse(app).unwrap(),
        version: Version::parse(version).unwrap(),
        deploy_id: DeployId(id),
        artifact,
        config_version: 0,
        action: deploy::DeployAction::Deploy,
    }
}

/// The key the fake packer signs with; grabbers under test trust it.
pub fn packer_key() -> deploy::signing::SigningKey {
    deploy::signing::SigningKey::from_seed([42; 32])
}

/// A good release: a manifest and one file, gzip'd; with a `[release]
/// command` (10 s timeout) when `release` is given.
pub fn release_tarball(app: &str, version: &str, command: &str, release: Option<&str>) -> Vec<u8> {
    let content = b"hello";
    let m = Manifest {
        app: AppName::parse(app).unwrap(),
        version: Version::parse(version).unwrap(),
        commit: "0".repeat(40),
        build_type: BuildType::Generic,
        built_at: Timestamp(0),
        run: RunSpec {
            command: command.into(),
            port: None,
            env: Default::default(),
            stop_timeout_ms: 2_000,
            paths: Default::default(),
            shared: Vec::new(),
            user: None,
        },
        health: HealthSpec {
            grace_ms: 200,
            ..HealthSpec::default()
        },
        processes: Default::default(),
        runtime: None,
        files: 1,
        content_bytes: content.len() as u64,
        release: release.map(|command| deploy::ReleaseSpec {
            command: command.into(),
            timeout_ms: 10_000,
        }),
        hooks: Default::default(),
    };
    let json = serde_json::to_vec(&m).unwrap();
    let mut b = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    let mut h = tar::Header::new_gnu();
    h.set_size(json.len() as u64);
    h.set_mode(0o644);
    b.append_data(&mut h, MANIFEST_PATH, &json[..]).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_size(content.len() as u64);
    h.set_mode(0o644);
    b.append_data(&mut h, "hello.txt", &content[..]).unwrap();
    b.into_inner().unwrap().finish().unwrap()
}

/// Kills the app processes a host layout's state files name when dropped,
/// so a failing test leaves nothing running.
pub struct KillApps(pub std::path::PathBuf);

impl Drop for KillApps {
    fn drop(&mut self) {
        let layout = deploy::layout::HostLayout::new(&self.0);
        for app in layout.list_apps().unwrap_or_default() {
            if let Some(pid) = layout.read_state(&app).ok().flatten().and_then(|s| s.pid)
                && pid > 1
            {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}
