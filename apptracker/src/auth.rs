//! API tokens and roles. People hold `viewer`, `deployer` or `admin` tokens;
//! grabbers, versioncheckers and packer workers hold an `agent` token bound
//! to one cluster. Tokens are random, shown once, and stored as their sha256:
//! a request's token is hashed and looked up, so no stored secret is ever
//! compared byte by byte.
//!
//! The dashboard never holds a token: signing in exchanges one for a
//! session (`sls_…`, see `sessions.rs`), which acts for the token until it
//! expires, is closed, or the token is revoked.

use std::fmt;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method};
use deploy::Cluster;
use sha2::{Digest, Sha256};

use crate::db::Db;
use crate::error::ApiError;
use crate::tracker::Tracker;

/// The cookie the dashboard keeps its session in (never a token).
pub const SESSION_COOKIE: &str = "slipway_session";

/// How a dashboard session id starts; API tokens start with `slp_`.
pub const SESSION_PREFIX: &str = "sls_";

/// What a token may do. People's roles are ordered: each includes the one
/// before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Reads everything.
    Viewer,
    /// Also builds and deploys.
    Deployer,
    /// Also registers apps and manages tokens; may act for any cluster.
    Admin,
    /// A host or build agent of one cluster.
    Agent,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Deployer => "deployer",
            Role::Admin => "admin",
            Role::Agent => "agent",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "viewer" => Some(Role::Viewer),
            "deployer" => Some(Role::Deployer),
            "admin" => Some(Role::Admin),
            "agent" => Some(Role::Agent),
            _ => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who is asking: the token's name, role and (for agents) cluster.
#[derive(Debug, Clone)]
pub struct Principal {
    pub name: String,
    pub role: Role,
    pub cluster: Option<Cluster>,
}

impl Principal {
    /// Requires a person's role at least `min` (agents never qualify).
    pub fn require(&self, min: Role) -> Result<(), ApiError> {
        if self.role != Role::Agent && self.role >= min {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "token `{}` ({}) may not do this: it needs the {min} role",
                self.name, self.role
            )))
        }
    }

    /// Requires an agent of `cluster` (or an admin).
    pub fn require_agent(&self, cluster: &Cluster) -> Result<(), ApiError> {
        match (&self.role, &self.cluster) {
            (Role::Admin, _) => Ok(()),
            (Role::Agent, Some(c)) if c == cluster => Ok(()),
            (Role::Agent, Some(c)) => Err(ApiError::Forbidden(format!(
                "agent token `{}` is for cluster `{c}`, not `{cluster}`",
                self.name
            ))),
            _ => Err(ApiError::Forbidden(format!(
                "token `{}` ({}) is not an agent token of cluster `{cluster}`",
                self.name, self.role
            ))),
        }
    }

    /// Requires any agent (build workers) or an admin.
    pub fn require_any_agent(&self) -> Result<(), ApiError> {
        match self.role {
            Role::Admin | Role::Agent => Ok(()),
            _ => Err(ApiError::Forbidden(format!(
                "token `{}` ({}) is not an agent token",
                self.name, self.role
            ))),
        }
    }
}

/// Validates and stores a new token; returns its only plaintext copy.
pub async fn mint(
    db: &Db,
    name: &str,
    role: &str,
    cluster: Option<&Cluster>,
) -> Result<String, ApiError> {
    let name = name.trim();
    // No control characters: a name is shown in logs and tables, and
    // PostgreSQL's text cannot hold NUL.
    if name.is_empty() || name.len() > 100 || name.chars().any(char::is_control) {
        return Err(ApiError::Invalid(
            "token `name` must be 1 to 100 printable characters".into(),
        ));
    }
    let role = Role::parse(role).ok_or_else(|| {
        ApiError::Invalid(format!(
            "unknown role `{role}`: use viewer, deployer, admin or agent"
        ))
    })?;
    match (role, cluster) {
        (Role::Agent, None) => {
            return Err(ApiError::Invalid("an agent token needs a `cluster`".into()));
        }
        (Role::Agent, Some(_)) | (_, None) => {}
        (_, Some(_)) => {
            return Err(ApiError::Invalid(format!(
                "only agent tokens have a `cluster`, not {role} tokens"
            )));
        }
    }
    let (token, hash) = generate()?;
    if !db.insert_token(name, role, cluster, &hash).await? {
        return Err(ApiError::Conflict(format!("a token named `{name}` exists")));
    }
    Ok(token)
}

/// A new random token (`slp_` + 40 hex digits) and the hash to store.
pub fn generate() -> anyhow::Result<(String, String)> {
    generate_with("slp_")
}

/// A new random secret (`prefix` + 40 hex digits: 160 bits) and the hash
/// to store.
pub fn generate_with(prefix: &str) -> anyhow::Result<(String, String)> {
    let mut bytes = [0u8; 20];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness for a token: {e}"))?;
    let token = format!("{prefix}{}", hex::encode(bytes));
    let hash = hash(&token);
    Ok((token, hash))
}

/// The stored form of a token.
pub fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The credential a request carries: `Authorization: Bearer` (a token, or
/// a session id the dashboard forwards), or for reads the dashboard's
/// session cookie (never for writes, so a cross-site form cannot act with
/// it).
pub(crate) fn presented_credential(headers: &HeaderMap, method: &Method) -> Option<String> {
    if let Some(value) = headers.get(axum::http::header::AUTHORIZATION) {
        let value = value.to_str().ok()?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))?;
        return Some(token.trim().to_string());
    }
    if method == Method::GET || method == Method::HEAD {
        for header in headers.get_all(axum::http::header::COOKIE) {
            let Ok(header) = header.to_str() else {
                continue;
            };
            for pair in header.split(';') {
                if let Some((k, v)) = pair.trim().split_once('=')
                    && k == SESSION_COOKIE
                {
                    return Some(v.to_string());
                }
            }
        }
    }
    None
}

/// Whether a credential is a dashboard session id rather than a token.
pub(crate) fn is_session(credential: &str) -> bool {
    credential.starts_with(SESSION_PREFIX)
}

impl FromRequestParts<Tracker> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, t: &Tracker) -> Result<Self, Self::Rejection> {
        let Some(credential) = presented_credential(&parts.headers, &parts.method) else {
            return Err(ApiError::Unauthorized(
                "no API token: send `Authorization: Bearer <token>` (the CLI reads SLIPWAY_TOKEN)"
                    .into(),
            ));
        };
        let principal = if is_session(&credential) {
            // A session acts for its token while both live: a revoked token
            // has no row, so its sessions find no principal.
            match t
                .db()
                .session_token(&hash(&credential), deploy::Timestamp::now())
                .await?
            {
                Some(token_hash) => t.db().principal_by_hash(&token_hash).await?,
                None => None,
            }
        } else {
            t.db().principal_by_hash(&hash(&credential)).await?
        };
        match principal {
            Some(p) => {
                // The audit log names who acted, including when the
                // handler then refuses.
                if let Some(note) = parts.extensions.get::<crate::audit::Note>() {
                    note.principal(&p);
                }
                Ok(p)
            }
            None if is_session(&credential) => Err(ApiError::Unauthorized(
                "the dashboard session expired or was closed: sign in again".into(),
            )),
            None => Err(ApiError::Unauthorized(
                "unknown or revoked API token".into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(role: Role, cluster: Option<&str>) -> Principal {
        Principal {
            name: "t".into(),
            role,
            cluster: cluster.map(|c| Cluster::parse(c).unwrap()),
        }
    }

    #[test]
    fn people_roles_are_ordered_and_agents_are_not_people() {
        assert!(p(Role::Admin, None).require(Role::Deployer).is_ok());
        assert!(p(Role::Deployer, None).require(Role::Deployer).is_ok());
        assert!(p(Role::Viewer, None).require(Role::Deployer).is_err());
        assert!(p(Role::Agent, Some("a")).require(Role::Viewer).is_err());
    }

    #[test]
    fn agents_act_for_their_cluster_only() {
        let a = Cluster::parse("a").unwrap();
        let b = Cluster::parse("b").unwrap();
        assert!(p(Role::Agent, Some("a")).require_agent(&a).is_ok());
        let e = p(Role::Agent, Some("a")).require_agent(&b).unwrap_err();
        assert!(e.to_string().contains("not `b`"), "{e}");
        assert!(p(Role::Deployer, None).require_agent(&a).is_err());
        assert!(p(Role::Admin, None).require_agent(&a).is_ok());
    }

    #[test]
    fn tokens_are_random_and_stored_hashed() {
        let (t1, h1) = generate().unwrap();
        let (t2, _) = generate().unwrap();
        assert_ne!(t1, t2);
        assert!(t1.starts_with("slp_") && t1.len() == 44);
        assert_eq!(h1, hash(&t1));
        assert!(!h1.contains(&t1[4..]));
    }
}
