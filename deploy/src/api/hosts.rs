//! Host bodies: heartbeats and what a host runs, a host as the API shows
//! it, and the desired state a grabber converges to.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{AppName, Cluster, HostName, ProcessName, Timestamp, Version};

/// What a host runs of one app, as its grabber reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct InstalledApp {
    pub app: AppName,
    /// The release `current` names.
    pub version: Option<Version>,
    /// The supervised process, when running.
    pub pid: Option<u32>,
    /// The port the app was given (`PORT`).
    pub port: Option<u16>,
    /// What the grabber's supervisor makes of the process.
    #[serde(default)]
    pub status: AppRunStatus,
    /// Restarts after crashes since the release was installed.
    #[serde(default)]
    pub restarts: u32,
    /// The app's config version it runs with (0: none).
    #[serde(default)]
    pub config_version: u64,
    /// Every process of an app whose release has more than its web
    /// process (`[processes]`), the web process first; empty otherwise and
    /// from older grabbers. `pid`, `port`, `status` and `restarts` above
    /// are the web process's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub processes: Vec<InstalledProcess>,
}

/// One supervised process of an app: copy `index` (from 1) of a process
/// type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct InstalledProcess {
    pub process: ProcessName,
    pub index: u32,
    /// When running.
    pub pid: Option<u32>,
    /// Its `PORT`, when it has one.
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub status: AppRunStatus,
    /// Restarts after crashes since the release was installed.
    #[serde(default)]
    pub restarts: u32,
}

impl InstalledProcess {
    /// `worker.2`: how people and log files name one copy.
    pub fn label(&self) -> String {
        format!("{}.{}", self.process, self.index)
    }
}

/// The supervisor's view of one app's process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AppRunStatus {
    /// Up (or not supervised yet: the default of older grabbers).
    #[default]
    Running,
    /// It exited on its own and waits for its next start.
    Restarting,
    /// It keeps crashing: restarted too often in a short time. Still
    /// retried, at the longest backoff.
    Failing,
    /// Nothing runs (no release, or the release could not start).
    Stopped,
}

impl AppRunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Restarting => "restarting",
            Self::Failing => "failing",
            Self::Stopped => "stopped",
        }
    }
}

impl std::fmt::Display for AppRunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `POST /api/v1/hosts/heartbeat`: a grabber registers and says it is alive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Heartbeat {
    pub cluster: Cluster,
    pub host: HostName,
    /// The grabber's root directory on that host.
    pub root: String,
    #[serde(default)]
    pub apps: Vec<InstalledApp>,
    /// The grabber's peer listener, when it serves its releases' files to
    /// the other hosts of its cluster; absent otherwise and from older
    /// grabbers (AppTracker then forgets the one it had).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<PeerEndpoint>,
}

/// Where a host's peer listener answers, and the certificate it shows:
/// self-made, so the fetching host pins it by this fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PeerEndpoint {
    /// `https://<ip or host name>:<port>`, nothing after it.
    pub url: String,
    /// The sha256 of the listener's certificate (DER), 64 lowercase hex
    /// digits.
    pub fingerprint: String,
}

impl PeerEndpoint {
    /// Checks the shape AppTracker accepts (an https URL with a host and
    /// a port and no path, query or credentials; a 64-hex-digit
    /// fingerprint); the reason, for people, when it is not.
    pub fn check(&self) -> Result<(), String> {
        let url = reqwest::Url::parse(&self.url)
            .map_err(|e| format!("peer url `{}` is not a URL: {e}", self.url))?;
        if url.scheme() != "https" {
            return Err(format!("peer url `{}` must be https", self.url));
        }
        // The port as written: the parsed URL drops a default one (443).
        let authority = self.url.get("https://".len()..).unwrap_or_default();
        let authority = authority.split(['/', '?', '#']).next().unwrap_or_default();
        let port_written = authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
        if url.host().is_none() || !port_written {
            return Err(format!(
                "peer url `{}` must name a host and a port: https://<addr>:<port>",
                self.url
            ));
        }
        if !url.username().is_empty()
            || url.password().is_some()
            || url.path() != "/"
            || url.query().is_some()
            || url.fragment().is_some()
        {
            return Err(format!(
                "peer url `{}` must be only https://<addr>:<port>",
                self.url
            ));
        }
        let fp = &self.fingerprint;
        if fp.len() != 64 || !fp.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(format!(
                "peer fingerprint `{fp}` must be 64 lowercase hex digits (the sha256 of the certificate)"
            ));
        }
        Ok(())
    }
}

/// A host as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Host {
    pub cluster: Cluster,
    pub name: HostName,
    pub root: String,
    pub registered_at: Timestamp,
    pub last_seen: Timestamp,
    pub apps: Vec<InstalledApp>,
    /// Whether AppTracker counts the host alive (heard from within its
    /// `host_alive`): deploys take only alive hosts. Absent where it is not
    /// worked out (a heartbeat's answer, an older server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alive: Option<bool>,
    /// In a heartbeat's answer only: the key (`ed25519:<base64>`) that
    /// signs peer tickets (`deploy::peer`), which the grabber's peer
    /// listener accepts. Absent elsewhere and from older servers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_ticket_key: Option<String>,
    /// In a heartbeat's answer only: a fingerprint of the host's desired
    /// state (what `GET /api/v1/hosts/{cluster}/{host}/desired` lists). A
    /// grabber that sees it change reads its desired state again, so a
    /// change it did not hear on the bus (a partition, a lost message, a
    /// failed deploy pointing it back) reaches it within a heartbeat.
    /// Absent elsewhere and from older servers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_fingerprint: Option<String>,
}

/// One app a host should run, with the deploy that asked for it: a
/// [`Release`](crate::Release), under the name the API has always used.
pub type DesiredApp = crate::Release;

/// `GET /api/v1/hosts/{cluster}/{host}/desired`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DesiredState {
    pub cluster: Cluster,
    pub host: HostName,
    pub apps: Vec<DesiredApp>,
    /// [`desired_fingerprint`] of `apps`: what a heartbeat's answer
    /// compares with. Absent from older servers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
}

/// A fingerprint of a desired state, from each app's (name, version,
/// deploy): any deploy, rollback or revert changes it. The same on the
/// server's two sides (a heartbeat's answer, `GET .../desired`), so a
/// grabber compares them.
pub fn desired_fingerprint<'a>(apps: impl IntoIterator<Item = (&'a str, &'a str, i64)>) -> String {
    use sha2::Digest;
    let mut apps: Vec<_> = apps.into_iter().collect();
    apps.sort();
    let mut hash = sha2::Sha256::new();
    for (app, version, deploy) in apps {
        hash.update(format!("{app}\0{version}\0{deploy}\n"));
    }
    hex::encode(&hash.finalize()[..12])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_endpoints_are_https_with_a_port_and_a_sha256() {
        let fp = "0f".repeat(32);
        let check = |url: &str, fingerprint: &str| {
            PeerEndpoint {
                url: url.into(),
                fingerprint: fingerprint.into(),
            }
            .check()
        };
        for url in [
            "https://10.0.0.1:7443",
            "https://10.0.0.1:443",
            "https://[fd00::1]:7443",
            "https://web-1.example:7443/",
        ] {
            assert_eq!(check(url, &fp), Ok(()), "{url}");
        }
        for url in [
            "http://10.0.0.1:7443",
            "https://10.0.0.1",
            "https://[fd00::1]",
            "https://u:p@10.0.0.1:7443",
            "https://10.0.0.1:7443/x",
            "https://10.0.0.1:7443?x=1",
            "10.0.0.1:7443",
        ] {
            assert!(check(url, &fp).is_err(), "{url}");
        }
        for bad in [
            "",
            "0F".repeat(32).as_str(),
            &"0f".repeat(31),
            &"zz".repeat(32),
        ] {
            assert!(check("https://10.0.0.1:7443", bad).is_err(), "{bad}");
        }
        // Older grabbers send none, and none is written.
        let hb: Heartbeat =
            serde_json::from_str(r#"{"cluster":"c","host":"h","root":"/srv"}"#).unwrap();
        assert_eq!(hb.peer, None);
        assert!(!serde_json::to_string(&hb).unwrap().contains("peer"));
    }

    #[test]
    fn an_app_without_processes_reads_and_writes_as_before() {
        let old = r#"{"app":"hello","version":"1-abcdef0","pid":7,"port":20001,"status":"running","restarts":0}"#;
        let a: InstalledApp = serde_json::from_str(old).unwrap();
        assert!(a.processes.is_empty());
        assert!(!serde_json::to_string(&a).unwrap().contains("processes"));
        let new = r#"{"app":"hello","version":null,"pid":null,"port":null,
            "processes":[{"process":"worker","index":2,"pid":9}]}"#;
        let a: InstalledApp = serde_json::from_str(new).unwrap();
        assert_eq!(a.processes[0].label(), "worker.2");
        assert_eq!(a.processes[0].status, AppRunStatus::Running);
        let bad = r#"{"app":"hello","version":null,"pid":null,"port":null,
            "processes":[{"process":"Worker","index":2,"pid":9}]}"#;
        assert!(serde_json::from_str::<InstalledApp>(bad).is_err());
    }
}

/// `DELETE /api/v1/hosts/{cluster}/{host}`: a retired host, forgotten. It
/// comes back, as a new host, if its agents report again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RemovedHost {
    pub cluster: Cluster,
    pub host: HostName,
    /// The apps its desired state named (what it should have run).
    pub apps: Vec<AppName>,
    /// Whether it was registered (a grabber's heartbeat) and had reported
    /// (a versionchecker), before.
    pub registered: bool,
    pub reported: bool,
}
