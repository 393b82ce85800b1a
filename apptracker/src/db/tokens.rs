//! API tokens: stored as their sha256, looked up by hash.

use super::*;

impl Db {
    /// Stores a token's hash; `Ok(false)` when the name is taken.
    pub async fn insert_token(
        &self,
        name: &str,
        role: Role,
        cluster: Option<&Cluster>,
        host: Option<&HostName>,
        hash: &str,
    ) -> sqlx::Result<bool> {
        let res = sqlx::query(
            "INSERT INTO tokens (name, role, cluster, host, hash, created_at) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(role.as_str())
        .bind(cluster.map(|c| c.as_str().to_string()))
        .bind(host.map(|h| h.as_str().to_string()))
        .bind(hash)
        .bind(Timestamp::now().0)
        .execute(&self.pool)
        .await?;
        Ok(res.rows_affected() == 1)
    }

    /// Removes a token; false when there was none of that name.
    pub async fn delete_token(&self, name: &str) -> sqlx::Result<bool> {
        let res = sqlx::query("DELETE FROM tokens WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(res.rows_affected() == 1)
    }

    /// Whether the token with this id still exists (it was not revoked):
    /// long-lived streams ask again now and then.
    pub async fn token_exists(&self, id: i64) -> sqlx::Result<bool> {
        let row = sqlx::query("SELECT 1 FROM tokens WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    /// A page of tokens by name, as the API lists them (never the hash):
    /// up to `limit` named after `after`.
    pub async fn tokens(
        &self,
        after: Option<&str>,
        limit: i64,
    ) -> anyhow::Result<Vec<deploy::TokenInfo>> {
        let rows = sqlx::query(
            "SELECT name, role, cluster, host, created_at, last_used_at FROM tokens \
             WHERE name > $1 ORDER BY name LIMIT $2",
        )
        .bind(after.unwrap_or(""))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(deploy::TokenInfo {
                    name: r.try_get("name")?,
                    role: r.try_get("role")?,
                    cluster: r
                        .try_get::<Option<String>, _>("cluster")?
                        .map(Cluster::parse)
                        .transpose()?,
                    host: r
                        .try_get::<Option<String>, _>("host")?
                        .map(HostName::parse)
                        .transpose()?,
                    created_at: Timestamp(r.try_get("created_at")?),
                    last_used_at: r.try_get::<Option<i64>, _>("last_used_at")?.map(Timestamp),
                })
            })
            .collect()
    }

    /// Who holds the token with this hash. Records when it was last used,
    /// at most once a minute so reads stay reads.
    pub async fn principal_by_hash(&self, hash: &str) -> sqlx::Result<Option<Principal>> {
        let row = sqlx::query(
            "SELECT id, name, role, cluster, host, last_used_at FROM tokens WHERE hash = $1",
        )
        .bind(hash)
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else { return Ok(None) };
        let role: String = r.try_get("role")?;
        let Some(role) = Role::parse(&role) else {
            return Ok(None);
        };
        let now = Timestamp::now();
        let last: Option<i64> = r.try_get("last_used_at")?;
        if last.is_none_or(|t| now.0 - t > 60_000) {
            sqlx::query("UPDATE tokens SET last_used_at = $1 WHERE hash = $2")
                .bind(now.0)
                .bind(hash)
                .execute(&self.pool)
                .await?;
        }
        Ok(Some(Principal {
            id: r.try_get("id")?,
            name: r.try_get("name")?,
            role,
            cluster: r
                .try_get::<Option<String>, _>("cluster")?
                .map(Cluster::parse)
                .transpose()
                .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
            host: r
                .try_get::<Option<String>, _>("host")?
                .map(HostName::parse)
                .transpose()
                .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
        }))
    }
}
