//! Who is asking, for the HTTP layer: the credential a request carries (a
//! bearer token, a dashboard session, or the session cookie on reads), the
//! [`Principal`] extractor that looks it up, and the checks handlers make
//! of it (`require`, `require_agent`, `require_host`, `require_builder`).
//! Principals and roles are plain data (`crate::model`); tokens are made
//! and hashed by the tracker (`tracker/tokens.rs`).

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method};
use deploy::{Cluster, HostName};

use crate::http::audit::Note;
use crate::http::error::ApiError;
use crate::model::{Principal, Role};
use crate::tracker::Tracker;
use crate::tracker::admin::is_session;

/// The cookie the dashboard keeps its session in (never a token).
pub const SESSION_COOKIE: &str = "slipway_session";

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

impl FromRequestParts<Tracker> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, t: &Tracker) -> Result<Self, Self::Rejection> {
        let Some(credential) = presented_credential(&parts.headers, &parts.method) else {
            return Err(ApiError::Unauthorized(
                "no API token: send `Authorization: Bearer <token>` (the CLI reads SLIPWAY_TOKEN)"
                    .into(),
            ));
        };
        match t.authenticate(&credential).await? {
            Some(p) => {
                // The audit log names who acted, including when the
                // handler then refuses.
                if let Some(note) = parts.extensions.get::<Note>() {
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
}
