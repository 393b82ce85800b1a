//! API tokens: stored as their sha256, looked up by hash.

use super::*;

/// `last_used_at` is written at most this often per token (ms).
const TOKEN_TOUCH_EVERY_MS: i64 = 60_000;

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

    /// Records, in a task of its own, that token `id` (last used at
    /// `last`) was used now, when `last` is over a minute old and no such
    /// write for it is under way already.
    fn touch_token(&self, id: i64, last: Option<i64>) {
        let now = Timestamp::now().0;
        if last.is_some_and(|t| now - t <= TOKEN_TOUCH_EVERY_MS) {
            return;
        }
        {
            let mut touching = self
                .touching
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if !touching.insert(id) {
                return;
            }
        }
        let db = self.clone();
        // Detached: a short write, bounded by the busy timeout; losing it
        // at shutdown loses one `last_used_at`.
        tokio::spawn(async move {
            let res = sqlx::query(
                "UPDATE tokens SET last_used_at = $1 WHERE id = $2 \
                 AND (last_used_at IS NULL OR last_used_at < $1)",
            )
            .bind(now)
            .bind(id)
            .execute(&db.pool)
            .await;
            db.touching
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(&id);
            if let Err(e) = res {
                tracing::warn!(token_id = id, error = %e,
                    "cannot record when the token was last used; it is tried again at its next use");
            }
        });
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
    /// at most once a minute per token and off the request's path: the
    /// write is a task of its own whose failure (SQLite busy with other
    /// writes) is only logged, so authenticating never waits on a write
    /// lock nor fails for one.
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
        let id: i64 = r.try_get("id")?;
        let last: Option<i64> = r.try_get("last_used_at")?;
        self.touch_token(id, last);
        Ok(Some(Principal {
            id,
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
