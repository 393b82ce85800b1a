//! Tokens: minting and revoking API tokens.

use super::*;

impl Tracker {
    /// Makes a token and returns its only plaintext copy.
    pub async fn create_token(
        &self,
        name: &str,
        role: &str,
        cluster: Option<&Cluster>,
    ) -> Result<String, ApiError> {
        crate::auth::mint(self.db(), name, role, cluster, None).await
    }

    /// Makes the token `req` asks for (a host-bound agent token too) and
    /// returns its only plaintext copy.
    pub async fn create_token_for(&self, req: &deploy::CreateToken) -> Result<String, ApiError> {
        crate::auth::mint(
            self.db(),
            &req.name,
            &req.role,
            req.cluster.as_ref(),
            req.host.as_ref(),
        )
        .await
    }
}
