//! The queries of dashboard sessions: opaque ids stored as their sha256,
//! each acting for one token until it expires. Same SQL on SQLite and
//! PostgreSQL.

use deploy::Timestamp;
use sqlx::Row;

use super::Db;

impl Db {
    /// Stores a session (by the hash of its id) for the token with
    /// `token_hash`, and drops the sessions that have expired.
    pub async fn insert_session(
        &self,
        hash: &str,
        token_hash: &str,
        now: Timestamp,
        expires_at: Timestamp,
    ) -> sqlx::Result<()> {
        sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
            .bind(now.0)
            .execute(&self.pool)
            .await?;
        sqlx::query(
            "INSERT INTO sessions (hash, token_hash, created_at, expires_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(hash)
        .bind(token_hash)
        .bind(now.0)
        .bind(expires_at.0)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The hash of the token a session acts for, while it has not expired.
    pub async fn session_token(&self, hash: &str, now: Timestamp) -> sqlx::Result<Option<String>> {
        let row =
            sqlx::query("SELECT token_hash FROM sessions WHERE hash = $1 AND expires_at > $2")
                .bind(hash)
                .bind(now.0)
                .fetch_optional(&self.pool)
                .await?;
        row.map(|r| r.try_get("token_hash")).transpose()
    }

    /// Ends a session; whether there was one.
    pub async fn delete_session(&self, hash: &str) -> sqlx::Result<bool> {
        let res = sqlx::query("DELETE FROM sessions WHERE hash = $1")
            .bind(hash)
            .execute(&self.pool)
            .await?;
        Ok(res.rows_affected() == 1)
    }
}
