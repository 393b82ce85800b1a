//! Apps: registration, listing, build triggers.

use super::*;

impl Db {
    /// Inserts an app; `Ok(None)` when the name is taken.
    pub async fn insert_app(&self, app: &App) -> sqlx::Result<Option<App>> {
        let res = sqlx::query(
            "INSERT INTO apps (name, git_url, branch, auto_deploy_cluster, auto_deploy_hosts, created_at, \
             new_hosts, root) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (name) DO NOTHING",
        )
        .bind(app.name.as_str())
        .bind(&app.git_url)
        .bind(&app.branch)
        .bind(app.auto_deploy.as_ref().map(|a| a.cluster.to_string()))
        .bind(
            app.auto_deploy
                .as_ref()
                .and_then(|a| a.hosts.as_ref())
                .map(|h| h.to_string()),
        )
        .bind(app.created_at.0)
        .bind(app.new_hosts.as_str())
        .bind(app.root.as_deref())
        .execute(&self.pool)
        .await?;
        if res.rows_affected() == 0 {
            return Ok(None);
        }
        Ok(Some(app.clone()))
    }

    pub async fn apps(&self) -> sqlx::Result<Vec<App>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            app_columns!(),
            " FROM apps ORDER BY name"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(app_from_row).collect()
    }

    /// A page of apps by name: up to `limit` named after `after`.
    pub async fn apps_page(&self, after: Option<&AppName>, limit: i64) -> sqlx::Result<Vec<App>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            app_columns!(),
            " FROM apps WHERE name > $1 ORDER BY name LIMIT $2"
        ))
        .bind(after.map(AppName::as_str).unwrap_or(""))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(app_from_row).collect()
    }

    pub async fn app(&self, name: &AppName) -> sqlx::Result<Option<App>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            app_columns!(),
            " FROM apps WHERE name = $1"
        ))
        .bind(name.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(app_from_row).transpose()
    }

    /// Stores the hash of an app's build-trigger secret (replacing any).
    pub async fn set_trigger_hash(&self, app: &AppName, hash: &str) -> sqlx::Result<bool> {
        let res = sqlx::query("UPDATE apps SET trigger_hash = $2 WHERE name = $1")
            .bind(app.as_str())
            .bind(hash)
            .execute(&self.pool)
            .await?;
        Ok(res.rows_affected() == 1)
    }

    /// The app whose build-trigger secret hashes to `hash`.
    pub async fn app_by_trigger_hash(&self, hash: &str) -> sqlx::Result<Option<App>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            app_columns!(),
            " FROM apps WHERE trigger_hash = $1"
        ))
        .bind(hash)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(app_from_row).transpose()
    }
}
