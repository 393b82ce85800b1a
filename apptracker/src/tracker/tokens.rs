//! Tokens: minting, revoking, and the random secrets and hashes they are
//! made of. Tokens are random, shown once, and stored as their sha256: a
//! request's token is hashed and looked up, so no stored secret is ever
//! compared byte by byte.

use sha2::Digest;

use super::*;
use crate::db::Db;
use crate::model::Role;

impl Tracker {
    /// Makes a token and returns its only plaintext copy.
    pub async fn create_token(
        &self,
        name: &str,
        role: &str,
        cluster: Option<&Cluster>,
    ) -> Result<String, Error> {
        mint(self.db(), name, role, cluster, None).await
    }

    /// Makes the token `req` asks for (a host-bound agent token too) and
    /// returns its only plaintext copy.
    pub async fn create_token_for(&self, req: &deploy::CreateToken) -> Result<String, Error> {
        mint(
            self.db(),
            &req.name,
            &req.role,
            req.cluster.as_ref(),
            req.host.as_ref(),
        )
        .await
    }

    /// Revokes a token; false when there is none of that name. Streams
    /// authenticated by it end.
    pub async fn revoke_token(&self, name: &str) -> Result<bool, Error> {
        let gone = self.db().delete_token(name).await?;
        if gone {
            self.inner.token_revoked.notify_waiters();
        }
        Ok(gone)
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
) -> Result<String, Error> {
    let name = name.trim();
    // No control characters: a name is shown in logs and tables, and
    // PostgreSQL's text cannot hold NUL.
    if name.is_empty() || name.len() > 100 || name.chars().any(char::is_control) {
        return Err(Error::Invalid(
            "token `name` must be 1 to 100 printable characters".into(),
        ));
    }
    let role = Role::parse(role).ok_or_else(|| {
        Error::Invalid(format!(
            "unknown role `{role}`: use viewer, deployer, admin, agent or builder"
        ))
    })?;
    match (role, cluster) {
        (Role::Agent, None) => {
            return Err(Error::Invalid("an agent token needs a `cluster`".into()));
        }
        (Role::Agent, Some(_)) | (_, None) => {}
        (_, Some(_)) => {
            return Err(Error::Invalid(format!(
                "only agent tokens have a `cluster`, not {role} tokens"
            )));
        }
    }
    if host.is_some() && role != Role::Agent {
        return Err(Error::Invalid(format!(
            "only agent tokens have a `host`, not {role} tokens"
        )));
    }
    let (token, hash) = generate()?;
    if !db.insert_token(name, role, cluster, host, &hash).await? {
        return Err(Error::Conflict(format!("a token named `{name}` exists")));
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
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
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
