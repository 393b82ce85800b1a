//! API tokens and roles. People hold `viewer`, `deployer` or `admin` tokens;
//! grabbers and versioncheckers hold an `agent` token bound to one cluster
//! (and, optionally, to one host of it); packer workers hold a `builder`
//! token, which does nothing but the build-worker protocol. Tokens are
//! random, shown once, and stored as their sha256: a request's token is
//! hashed and looked up, so no stored secret is ever compared byte by byte.
//!
//! The dashboard never holds a token: signing in exchanges one for a
//! session (`sls_…`, see `sessions.rs`), which acts for the token until it
//! expires, is closed, or the token is revoked.

use std::fmt;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method};
use deploy::{Cluster, HostName};
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
    /// A host agent (grabber, versionchecker) of one cluster, or of one
    /// host when the token names it.
    Agent,
    /// A packer worker: claims builds, streams their logs, uploads their
    /// artifacts and reports them; nothing else.
    Builder,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Deployer => "deployer",
            Role::Admin => "admin",
            Role::Agent => "agent",
            Role::Builder => "builder",
        }
    }

    /// A person's role (viewer, deployer, admin), as opposed to a program's.
    pub fn is_person(self) -> bool {
        matches!(self, Role::Viewer | Role::Deployer | Role::Admin)
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "viewer" => Some(Role::Viewer),
            "deployer" => Some(Role::Deployer),
            "admin" => Some(Role::Admin),
            "agent" => Some(Role::Agent),
            "builder" => Some(Role::Builder),
            _ => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who is asking: the token's id, name, role and (for agents) cluster and
/// host.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The token's row id: what a build lease is bound to (a name can be
    /// revoked and made again; an id is never reused).
    pub id: i64,
    pub name: String,
    pub role: Role,
    pub cluster: Option<Cluster>,
    /// An agent token bound to one host reports only for that host.
    pub host: Option<HostName>,
}

impl Principal {
    /// Requires a person's role at least `min` (agents and builders never
    /// qualify).
    pub fn require(&self, min: Role) -> Result<(), ApiError> {
        if self.role.is_person() && self.role >= min {
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

    /// Requires an agent that may report for `host` of `cluster` (or an
    /// admin): a cluster-wide agent token, or one bound to that very host.
    pub fn require_host(&self, cluster: &Cluster, host: &HostName) -> Result<(), ApiError> {
        self.require_agent(cluster)?;
        match &self.host {
            Some(own) if self.role == Role::Agent && own != host => {
                Err(ApiError::Forbidden(format!(
                    "agent token `{}` is for host `{own}`, not `{host}`",
                    self.name
                )))
            }
            _ => Ok(()),
        }
    }

    /// Requires a builder (a packer worker) or an admin: the build-worker
    /// routes. Host agents are refused, saying what is needed.
    pub fn require_builder(&self) -> Result<(), ApiError> {
        match self.role {
            Role::Admin | Role::Builder => Ok(()),
            Role::Agent => Err(ApiError::Forbidden(format!(
                "token `{}` is an agent token (for grabbers and versioncheckers); the build-worker \
                 routes need a builder token (`apptracker token create --role builder`, or \
                 POST /api/v1/tokens with `\"role\": \"builder\"`)",
                self.name
            ))),
            _ => Err(ApiError::Forbidden(format!(
                "token `{}` ({}) may not do this: the build-worker routes need a builder token",
                self.name, self.role
            ))),
        }
    }
}

/// Validates and stores a new token; returns its only plaintext copy.
/// `cluster` is for agent tokens (required there, refused elsewhere);
/// `host` binds an agent token to one host of its cluster.
pub async fn mint(
    db: &Db,
    name: &str,
    role: &str,
    cluster: Option<&Cluster>,
    host: Option<&HostName>,
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
            "unknown role `{role}`: use viewer, deployer, admin, agent or builder"
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
    if host.is_some() && role != Role::Agent {
        return Err(ApiError::Invalid(format!(
            "only agent tokens have a `host`, not {role} tokens"
        )));
    }
    let (token, hash) = generate()?;
    if !db.insert_token(name, role, cluster, host, &hash).await? {
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
            id: 1,
            name: "t".into(),
            role,
            cluster: cluster.map(|c| Cluster::parse(c).unwrap()),
            host: None,
        }
    }

    #[test]
    fn people_roles_are_ordered_and_agents_are_not_people() {
        assert!(p(Role::Admin, None).require(Role::Deployer).is_ok());
        assert!(p(Role::Deployer, None).require(Role::Deployer).is_ok());
        assert!(p(Role::Viewer, None).require(Role::Deployer).is_err());
        assert!(p(Role::Agent, Some("a")).require(Role::Viewer).is_err());
        assert!(p(Role::Builder, None).require(Role::Viewer).is_err());
    }

    #[test]
    fn only_builders_and_admins_work_builds() {
        assert!(p(Role::Builder, None).require_builder().is_ok());
        assert!(p(Role::Admin, None).require_builder().is_ok());
        let e = p(Role::Agent, Some("a")).require_builder().unwrap_err();
        assert!(e.to_string().contains("builder token"), "{e}");
        assert!(p(Role::Deployer, None).require_builder().is_err());
        // Builders are no host agents.
        let a = Cluster::parse("a").unwrap();
        assert!(p(Role::Builder, None).require_agent(&a).is_err());
    }

    #[test]
    fn host_tokens_report_for_their_host_only() {
        let a = Cluster::parse("a").unwrap();
        let (h1, h2) = (
            HostName::parse("h1").unwrap(),
            HostName::parse("h2").unwrap(),
        );
        let mut host = p(Role::Agent, Some("a"));
        host.host = Some(h1.clone());
        assert!(host.require_host(&a, &h1).is_ok());
        let e = host.require_host(&a, &h2).unwrap_err();
        assert!(e.to_string().contains("`h1`, not `h2`"), "{e}");
        // A cluster token reports for any host of its cluster.
        assert!(p(Role::Agent, Some("a")).require_host(&a, &h2).is_ok());
        assert!(p(Role::Admin, None).require_host(&a, &h2).is_ok());
        let b = Cluster::parse("b").unwrap();
        assert!(host.require_host(&b, &h1).is_err());
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
