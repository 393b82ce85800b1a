//! The client's calls about API tokens, dashboard sessions and the audit log.

use std::time::Duration;

use super::{Client, ClientError};
use crate::api::{AuditEntry, AuditQuery, CreateToken, CreatedToken, Page, TokenInfo};

impl Client {
    /// Makes a token (admin only); the answer holds the only copy of it.
    pub async fn create_token(&self, req: &CreateToken) -> Result<CreatedToken, ClientError> {
        self.post("/api/v1/tokens", req).await
    }

    /// Opens a dashboard session for this client's token (people's roles
    /// only): the session id acts for the token until it expires, the token
    /// is revoked or the session is closed.
    pub async fn create_session(&self) -> Result<crate::CreatedSession, ClientError> {
        self.post("/api/v1/sessions", &serde_json::json!({})).await
    }

    /// Ends the session this client authenticates with (its token is a
    /// session id).
    pub async fn delete_session(&self) -> Result<(), ClientError> {
        self.fetch(
            self.http.delete(self.url("/api/v1/sessions/current")),
            Duration::from_secs(60),
        )
        .await?;
        Ok(())
    }

    /// Who this client's credential acts for.
    pub async fn whoami(&self) -> Result<crate::WhoAmI, ClientError> {
        self.get("/api/v1/whoami").await
    }

    pub async fn tokens(&self) -> Result<Vec<TokenInfo>, ClientError> {
        self.collect("/api/v1/tokens", None).await
    }

    /// Revokes a token (admin); its streams end within AppTracker's
    /// `token_recheck`.
    pub async fn revoke_token(&self, name: &str) -> Result<(), ClientError> {
        let mut url =
            reqwest::Url::parse(&self.url("/api/v1/tokens")).map_err(|e| ClientError::Decode {
                url: self.url("/api/v1/tokens"),
                reason: e.to_string(),
            })?;
        if let Ok(mut segments) = url.path_segments_mut() {
            // Percent-encodes whatever the name holds.
            segments.push(name);
        }
        self.fetch(self.http.delete(url), Duration::from_secs(60))
            .await?;
        Ok(())
    }

    /// One page of state-changing requests, newest first (deployers and
    /// admins): pass the last entry's id as `before` for the next page.
    pub async fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, ClientError> {
        Ok(self.audit_page(query).await?.items)
    }

    /// One page of the audit log, with the cursor of the next (older) page.
    pub async fn audit_page(&self, query: &AuditQuery) -> Result<Page<AuditEntry>, ClientError> {
        self.page("/api/v1/audit", query).await
    }
}
