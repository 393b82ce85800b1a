//! The audit log's rows.

use super::*;

impl Db {
    /// Appends one entry to the audit log.
    pub async fn insert_audit(&self, e: &AuditRecord) -> sqlx::Result<()> {
        sqlx::query(
            "INSERT INTO audit_log (at, actor, role, method, route, path, app, target, peer, status, error_code) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(e.at.0)
        .bind(&e.actor)
        .bind(e.role.clone())
        .bind(&e.method)
        .bind(e.route.clone())
        .bind(&e.path)
        .bind(e.app.as_ref().map(|a| a.as_str().to_string()))
        .bind(e.target.clone())
        .bind(e.peer.clone())
        .bind(i64::from(e.status))
        .bind(e.error_code.clone())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Keeps the newest `keep` entries of `actor`, deleting the older ones.
    pub async fn prune_audit_of(&self, actor: &str, keep: i64) -> sqlx::Result<u64> {
        let res = sqlx::query(
            "DELETE FROM audit_log WHERE actor = $1 AND id <= (SELECT id FROM audit_log \
             WHERE actor = $1 ORDER BY id DESC LIMIT 1 OFFSET $2)",
        )
        .bind(actor)
        .bind(keep)
        .execute(&self.pool)
        .await?;
        Ok(res.rows_affected())
    }

    /// Audit entries newest first: at most `limit`, with an id below
    /// `before`, of one actor and one app when given. Paging by id (not
    /// offset) keeps pages disjoint while new entries arrive.
    pub async fn audit(
        &self,
        limit: i64,
        before: Option<i64>,
        actor: Option<&str>,
        app: Option<&AppName>,
    ) -> sqlx::Result<Vec<deploy::AuditEntry>> {
        // Fixed fragments only; every value is bound.
        let mut sql = String::from(
            "SELECT id, at, actor, role, method, route, path, app, target, peer, status, error_code \
             FROM audit_log WHERE id < $1",
        );
        let mut n = 2;
        if actor.is_some() {
            sql.push_str(&format!(" AND actor = ${n}"));
            n += 1;
        }
        if app.is_some() {
            sql.push_str(&format!(" AND app = ${n}"));
            n += 1;
        }
        sql.push_str(&format!(" ORDER BY id DESC LIMIT ${n}"));
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(before.unwrap_or(i64::MAX));
        if let Some(actor) = actor {
            q = q.bind(actor.to_string());
        }
        if let Some(app) = app {
            q = q.bind(app.as_str().to_string());
        }
        let rows = q.bind(limit).fetch_all(&self.pool).await?;
        rows.iter().map(audit_from_row).collect()
    }
}

/// What an audit entry records; the database gives it its id.
#[derive(Debug, Clone)]
pub struct AuditRecord {
    pub at: Timestamp,
    pub actor: String,
    pub role: Option<String>,
    pub method: String,
    pub route: Option<String>,
    pub path: String,
    pub app: Option<AppName>,
    pub target: Option<String>,
    pub peer: Option<String>,
    pub status: u16,
    pub error_code: Option<String>,
}
