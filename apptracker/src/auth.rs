//! API tokens and roles. People hold `viewer`, `deployer` or `admin` tokens;
//! grabbers and versioncheckers hold an `agent` token bound to one cluster
//! (and, optionally, to one host of it); packer workers hold a `builder`
//! token, which does nothing but the build-worker protocol. Tokens are
//! random, shown once, and stored as their sha256: a request's token is
//! hashed and looked up, so no stored secret is ever compared byte by byte.
//!
//! The dashboard never holds a token: signing in exchanges one for a
//! session (`sls_…`, see `http/routes/sessions.rs`), which acts for the token until it
//! expires, is closed, or the token is revoked.

use std::fmt;

use deploy::{Cluster, HostName};
use sha2::{Digest, Sha256};

use crate::db::Db;
use crate::error::ApiError;

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

/// Whether a credential is a dashboard session id rather than a token.
pub(crate) fn is_session(credential: &str) -> bool {
    credential.starts_with(SESSION_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

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
