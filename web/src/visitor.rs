//! Who is looking at a page, and the anti-forgery value their forms carry.
//!
//! Every page asks AppTracker who the visitor's session acts for
//! (`GET /api/v1/whoami`), so it shows only the buttons the visitor may
//! use. Hiding a button is a courtesy: AppTracker checks every action
//! itself, and a viewer's forged POST is refused there.
//!
//! State-changing forms carry a CSRF value derived from the session:
//! HMAC-SHA256 keyed with the session id over a fixed label. It is the
//! same on every replica and for the session's whole life, needs no
//! storage, and cannot be computed without the session, which the browser
//! keeps in an HttpOnly, SameSite=Strict cookie no other site can read or
//! send.

use axum::http::HeaderMap;
use deploy::{Client, ClientError, Role, WhoAmI};
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;

use crate::AppState;
use crate::error::PageError;
use crate::signin::request_credential;

/// What a page knows of its visitor.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Visitor {
    pub(crate) name: String,
    pub(crate) role: &'static str,
    /// May build, deploy, roll back, sync (deployer or admin).
    pub(crate) can_deploy: bool,
    /// May change settings such as notifications (admin).
    pub(crate) is_admin: bool,
    /// The one cluster the visitor's token may act on, if bound to one.
    pub(crate) cluster: Option<String>,
    /// The anti-forgery value every state-changing form carries.
    pub(crate) csrf: String,
}

impl Visitor {
    fn new(who: WhoAmI, credential: &str) -> Self {
        Visitor {
            name: who.name,
            role: who.role.as_str(),
            can_deploy: matches!(who.role, Role::Deployer | Role::Admin),
            is_admin: who.role == Role::Admin,
            cluster: who.cluster.map(|c| c.to_string()),
            csrf: csrf_for(credential),
        }
    }
}

/// The CSRF value of a session (or token).
pub(crate) fn csrf_for(credential: &str) -> String {
    // HMAC takes keys of any length; this cannot fail.
    let mut mac = match Hmac::<Sha256>::new_from_slice(credential.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(b"slipway dashboard csrf v1");
    hex::encode(mac.finalize().into_bytes())
}

/// Whether `presented` is the CSRF value of the request's session, compared
/// in constant time.
pub(crate) fn csrf_ok(headers: &HeaderMap, presented: &str) -> bool {
    let Some(credential) = request_credential(headers) else {
        return false;
    };
    let expected = csrf_for(&credential);
    !expected.is_empty()
        && expected.len() == presented.len()
        && expected
            .bytes()
            .zip(presented.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

impl AppState {
    /// The API client acting for the visitor, and who the visitor is. No
    /// credential, or one AppTracker does not know, sends them to sign in.
    pub(crate) async fn visitor(
        &self,
        headers: &HeaderMap,
    ) -> Result<(Client, Visitor), PageError> {
        let Some(credential) = request_credential(headers) else {
            return Err(PageError::SignIn);
        };
        let api = self.api.clone().with_token(credential.clone());
        let who = api.whoami().await.map_err(|e| match e {
            ClientError::Api { status: 401, .. } => PageError::SignIn,
            e => PageError::upstream("asking who you are", e),
        })?;
        Ok((api, Visitor::new(who, &credential)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csrf_is_bound_to_the_session() {
        let a = csrf_for("sls_aaaa");
        assert_eq!(a, csrf_for("sls_aaaa"));
        assert_ne!(a, csrf_for("sls_aaab"));
        assert_eq!(a.len(), 64);
        assert!(!a.contains("aaaa"));
    }

    #[test]
    fn a_form_without_the_sessions_value_is_refused() {
        let mut headers = HeaderMap::new();
        headers.insert("cookie", "slipway_session=sls_x".parse().unwrap());
        assert!(csrf_ok(&headers, &csrf_for("sls_x")));
        assert!(!csrf_ok(&headers, &csrf_for("sls_y")));
        assert!(!csrf_ok(&headers, ""));
        assert!(!csrf_ok(&HeaderMap::new(), &csrf_for("sls_x")));
    }
}
