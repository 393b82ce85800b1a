//! Config bodies: an app's configuration variables and secrets, per app and
//! per app and cluster (`deploy env`), the versions a change makes, and
//! the resolved variables a host fetches for the app it runs.
//!
//! A secret's value goes one way: in with `SetConfig`, out only to the
//! grabber of a host that runs the app (`HostConfig`, over TLS). Every
//! other answer masks it (`value: None`, `secret: true`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{AppName, Cluster, Deploy, Timestamp};

/// Longest key of a config variable.
pub const MAX_CONFIG_KEY: usize = 128;
/// Largest value of a config variable, in bytes.
pub const MAX_CONFIG_VALUE: usize = 32 * 1024;

/// Checks a variable's name: a shell-style identifier (letters, digits,
/// `_`, not starting with a digit), none of the names the grabber sets
/// itself (`PORT`, `SLIPWAY_*`).
pub fn check_config_key(key: &str) -> Result<(), String> {
    let mut bytes = key.bytes();
    let first_ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_');
    if !first_ok || !bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(format!(
            "config key {key:?}: write letters, digits and `_`, not starting with a digit (e.g. \
             DATABASE_URL)"
        ));
    }
    if key.len() > MAX_CONFIG_KEY {
        return Err(format!(
            "config key {:?}…: longer than {MAX_CONFIG_KEY} characters",
            &key[..16]
        ));
    }
    if key == "PORT" || key.starts_with("SLIPWAY_") {
        return Err(format!(
            "config key `{key}` is set by the grabber on each host (PORT and SLIPWAY_*); pick \
             another name"
        ));
    }
    Ok(())
}

/// Checks a value (never quoted back: it may be a secret).
pub fn check_config_value(key: &str, value: &str) -> Result<(), String> {
    if value.len() > MAX_CONFIG_VALUE {
        return Err(format!(
            "the value of `{key}` is {} bytes; at most {MAX_CONFIG_VALUE}",
            value.len()
        ));
    }
    if value.contains('\0') {
        return Err(format!(
            "the value of `{key}` holds a NUL byte, which no environment variable can"
        ));
    }
    Ok(())
}

/// `POST /api/v1/apps/{app}/config`: set variables (all plain, or all
/// secret) for the app, or for the app on one cluster (the cluster's value
/// wins over the app's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SetConfig {
    #[serde(default)]
    pub cluster: Option<Cluster>,
    /// `KEY: value`; at least one.
    pub vars: BTreeMap<String, String>,
    /// Store the values sealed and never show them again.
    #[serde(default)]
    pub secret: bool,
    /// Restart the app with the new config (a rolling, health-checked
    /// restart of the release it runs) on the cluster, or on every cluster
    /// it runs on for an app-wide change.
    #[serde(default)]
    pub apply: bool,
}

/// `POST /api/v1/apps/{app}/config/unset`: remove variables.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UnsetConfig {
    #[serde(default)]
    pub cluster: Option<Cluster>,
    /// At least one; each must be set.
    pub keys: Vec<String>,
    #[serde(default)]
    pub apply: bool,
}

/// One variable as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ConfigVar {
    pub key: String,
    /// The cluster it is set for; absent for the app-wide value.
    #[serde(default)]
    pub cluster: Option<Cluster>,
    /// The value; absent for a secret.
    #[serde(default)]
    pub value: Option<String>,
    #[serde(default)]
    pub secret: bool,
}

/// `GET /api/v1/apps/{app}/config[?cluster=C]`: the app's variables at its
/// newest config version (secrets masked); with a cluster, the app-wide
/// ones and that cluster's, which win.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AppConfig {
    pub app: AppName,
    /// 0 before the first change.
    pub version: u64,
    pub vars: Vec<ConfigVar>,
    #[serde(default)]
    pub updated_at: Option<Timestamp>,
    #[serde(default)]
    pub updated_by: Option<String>,
}

/// What a change made: the new config version and, with `apply`, the
/// restarts that roll it out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ConfigChange {
    pub version: u64,
    /// The keys changed (never their values).
    pub keys: Vec<String>,
    #[serde(default)]
    pub deploys: Vec<Deploy>,
}

/// `GET /api/v1/hosts/{host}/config/{app}/{version}` (the host's agent
/// only): the variables the app runs with on that host, secrets in the
/// clear. `Debug` shows the keys, never the values.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HostConfig {
    pub app: AppName,
    pub version: u64,
    pub vars: BTreeMap<String, String>,
}

impl std::fmt::Debug for HostConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostConfig")
            .field("app", &self.app)
            .field("version", &self.version)
            .field("keys", &self.vars.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// `GET /api/v1/apps/{app}/config?cluster=C`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConfigQuery {
    /// Only the app-wide variables and this cluster's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<Cluster>,
}

/// `POST /api/v1/apps/{app}/{restart,stop,start}`: operate the app on the
/// hosts of a cluster without a new release, as a deploy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OperateApp {
    pub cluster: Cluster,
    /// Hosts of the cluster to touch; every host running the app when
    /// absent.
    #[serde(default)]
    pub hosts: Option<crate::HostSelector>,
    /// Hosts at a time (rolling); all at once when absent.
    #[serde(default)]
    pub batch: Option<u32>,
    #[serde(default)]
    pub confirm: Option<Cluster>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_identifiers_and_not_the_grabbers() {
        assert!(check_config_key("DATABASE_URL").is_ok());
        assert!(check_config_key("_x1").is_ok());
        for bad in ["", "1X", "A-B", "A B", "ÄB", "A=B"] {
            assert!(check_config_key(bad).is_err(), "{bad:?}");
        }
        let e = check_config_key("SLIPWAY_APP").unwrap_err();
        assert!(e.contains("set by the grabber"), "{e}");
        assert!(check_config_key("PORT").is_err());
        assert!(check_config_key(&"K".repeat(MAX_CONFIG_KEY + 1)).is_err());
    }

    #[test]
    fn values_are_bounded_and_never_quoted_back() {
        assert!(check_config_value("K", "hunter2").is_ok());
        let e = check_config_value("K", "hun\0ter2").unwrap_err();
        assert!(!e.contains("hun"), "{e}");
        assert!(check_config_value("K", &"x".repeat(MAX_CONFIG_VALUE + 1)).is_err());
    }

    #[test]
    fn a_host_config_debug_shows_keys_only() {
        let c = HostConfig {
            app: AppName::parse("hello").unwrap(),
            version: 2,
            vars: [("TOKEN".to_string(), "s3cr3t-value".to_string())].into(),
        };
        let shown = format!("{c:?}");
        assert!(
            shown.contains("TOKEN") && !shown.contains("s3cr3t"),
            "{shown}"
        );
    }
}
