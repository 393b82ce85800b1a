//! The queries of webhooks: each app's sealed secret per provider (with the
//! previous one during a rotation), the delivery ids seen lately, and the
//! commits already built for a branch. Same SQL on SQLite and PostgreSQL.

use deploy::{AppName, Cluster, Timestamp, WebhookProvider};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::Db;

/// The columns `secret_from_row` reads.
macro_rules! secret_columns {
    () => {
        "provider, secret, previous, previous_until, created_at, rotated_at"
    };
}

/// An app's webhook secret for one provider, as stored: sealed values
/// (see `secrets.rs`), never the secrets.
#[derive(Debug, Clone)]
pub struct WebhookSecretRow {
    pub provider: WebhookProvider,
    pub sealed: String,
    /// The secret before the last rotation, accepted until
    /// `previous_until`.
    pub previous: Option<String>,
    pub previous_until: Option<Timestamp>,
    pub created_at: Timestamp,
    pub rotated_at: Option<Timestamp>,
}

impl WebhookSecretRow {
    /// The previous secret, if it is still accepted at `now`.
    pub fn previous_at(&self, now: Timestamp) -> Option<&str> {
        match (&self.previous, self.previous_until) {
            (Some(p), Some(until)) if now.0 < until.0 => Some(p),
            _ => None,
        }
    }
}

fn secret_from_row(r: &AnyRow) -> sqlx::Result<WebhookSecretRow> {
    let provider: String = r.try_get("provider")?;
    Ok(WebhookSecretRow {
        provider: provider
            .parse()
            .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
        sealed: r.try_get("secret")?,
        previous: r.try_get("previous")?,
        previous_until: r
            .try_get::<Option<i64>, _>("previous_until")?
            .map(Timestamp),
        created_at: Timestamp(r.try_get("created_at")?),
        rotated_at: r.try_get::<Option<i64>, _>("rotated_at")?.map(Timestamp),
    })
}

impl Db {
    /// The app's secret for `provider`.
    pub async fn webhook_secret(
        &self,
        app: &AppName,
        provider: WebhookProvider,
    ) -> sqlx::Result<Option<WebhookSecretRow>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            secret_columns!(),
            " FROM webhook_secrets WHERE app = $1 AND provider = $2"
        ))
        .bind(app.as_str())
        .bind(provider.as_str())
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(secret_from_row).transpose()
    }

    /// Every provider's secret of the app, by provider.
    pub async fn webhook_secrets(&self, app: &AppName) -> sqlx::Result<Vec<WebhookSecretRow>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            secret_columns!(),
            " FROM webhook_secrets WHERE app = $1 ORDER BY provider"
        ))
        .bind(app.as_str())
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(secret_from_row).collect()
    }

    /// Stores the app's first secret for `provider`; `false` when it has
    /// one already.
    pub async fn insert_webhook_secret(
        &self,
        app: &AppName,
        provider: WebhookProvider,
        sealed: &str,
        now: Timestamp,
    ) -> sqlx::Result<bool> {
        let res = sqlx::query(
            "INSERT INTO webhook_secrets (app, provider, secret, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (app, provider) DO NOTHING",
        )
        .bind(app.as_str())
        .bind(provider.as_str())
        .bind(sealed)
        .bind(now.0)
        .execute(self.pool())
        .await?;
        Ok(res.rows_affected() == 1)
    }

    /// Replaces the secret `current` (as read) with `sealed`, keeping
    /// `current` accepted until `previous_until`; `false` when the row
    /// changed since it was read (a concurrent rotation: the caller
    /// reads again).
    pub async fn rotate_webhook_secret(
        &self,
        app: &AppName,
        provider: WebhookProvider,
        current: &str,
        sealed: &str,
        previous_until: Timestamp,
        now: Timestamp,
    ) -> sqlx::Result<bool> {
        let res = sqlx::query(
            "UPDATE webhook_secrets SET secret = $4, previous = $3, previous_until = $5, rotated_at = $6 \
             WHERE app = $1 AND provider = $2 AND secret = $3",
        )
        .bind(app.as_str())
        .bind(provider.as_str())
        .bind(current)
        .bind(sealed)
        .bind(previous_until.0)
        .bind(now.0)
        .execute(self.pool())
        .await?;
        Ok(res.rows_affected() == 1)
    }

    /// Drops the app's secrets for `provider`.
    pub async fn delete_webhook_secret(
        &self,
        app: &AppName,
        provider: WebhookProvider,
    ) -> sqlx::Result<bool> {
        let res = sqlx::query("DELETE FROM webhook_secrets WHERE app = $1 AND provider = $2")
            .bind(app.as_str())
            .bind(provider.as_str())
            .execute(self.pool())
            .await?;
        Ok(res.rows_affected() == 1)
    }

    /// Records a delivery of the app's webhook; `false` when its id was
    /// seen since `forget_before` (a duplicate). Older ids are pruned
    /// first, so the table holds one retention window.
    pub async fn record_delivery(
        &self,
        app: &AppName,
        provider: WebhookProvider,
        delivery_id: &str,
        now: Timestamp,
        forget_before: Timestamp,
    ) -> sqlx::Result<bool> {
        sqlx::query("DELETE FROM webhook_deliveries WHERE received_at < $1")
            .bind(forget_before.0)
            .execute(self.pool())
            .await?;
        let res = sqlx::query(
            "INSERT INTO webhook_deliveries (app, provider, delivery_id, received_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (app, provider, delivery_id) DO NOTHING",
        )
        .bind(app.as_str())
        .bind(provider.as_str())
        .bind(delivery_id)
        .bind(now.0)
        .execute(self.pool())
        .await?;
        Ok(res.rows_affected() == 1)
    }

    /// Forgets a delivery whose handling failed, so the provider's retry
    /// is handled rather than taken for a duplicate.
    pub async fn forget_delivery(
        &self,
        app: &AppName,
        provider: WebhookProvider,
        delivery_id: &str,
    ) -> sqlx::Result<()> {
        sqlx::query(
            "DELETE FROM webhook_deliveries WHERE app = $1 AND provider = $2 AND delivery_id = $3",
        )
        .bind(app.as_str())
        .bind(provider.as_str())
        .bind(delivery_id)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The commits of the app's newest builds of `branch` (requested by
    /// that name: pushes, trigger URLs, `deploy build --ref BRANCH`) that
    /// did not fail, newest first, each once, at most `limit`.
    pub async fn built_commits(
        &self,
        app: &AppName,
        branch: &str,
        limit: i64,
    ) -> sqlx::Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT commit_sha FROM builds WHERE app = $1 AND git_ref = $2 AND status <> 'failed' \
             ORDER BY number DESC LIMIT $3",
        )
        .bind(app.as_str())
        .bind(branch)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        let mut out: Vec<String> = Vec::new();
        for r in &rows {
            let c: String = r.try_get(0)?;
            if !out.contains(&c) {
                out.push(c);
            }
        }
        Ok(out)
    }

    /// The commits of the app's deploys to `cluster` that are queued or
    /// under way, each once.
    pub async fn pending_deploy_commits(
        &self,
        app: &AppName,
        cluster: &Cluster,
    ) -> sqlx::Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT b.commit_sha FROM deploys d JOIN builds b ON b.id = d.build_id \
             WHERE d.app = $1 AND d.cluster = $2 AND d.status IN ('queued', 'building', 'running') \
             ORDER BY d.id DESC",
        )
        .bind(app.as_str())
        .bind(cluster.as_str())
        .fetch_all(self.pool())
        .await?;
        let mut out: Vec<String> = Vec::new();
        for r in &rows {
            let c: String = r.try_get(0)?;
            if !out.contains(&c) {
                out.push(c);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_previous_secret_is_accepted_until_its_grace_ends() {
        let row = WebhookSecretRow {
            provider: WebhookProvider::GitHub,
            sealed: "new".into(),
            previous: Some("old".into()),
            previous_until: Some(Timestamp(1_000)),
            created_at: Timestamp(0),
            rotated_at: Some(Timestamp(500)),
        };
        assert_eq!(row.previous_at(Timestamp(500)), Some("old"));
        assert_eq!(row.previous_at(Timestamp(999)), Some("old"));
        assert_eq!(row.previous_at(Timestamp(1_000)), None, "the grace is over");
        assert_eq!(row.previous_at(Timestamp(5_000)), None);
        let first = WebhookSecretRow {
            previous: None,
            previous_until: None,
            ..row
        };
        assert_eq!(first.previous_at(Timestamp(0)), None);
    }
}
