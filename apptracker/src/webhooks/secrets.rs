//! Each app's webhook secrets (made, rotated with a grace period, listed,
//! deleted; sealed in the database) and its build-trigger URL.

use super::*;

/// Where `provider` sends `app`'s pushes.
pub fn webhook_url(t: &Tracker, app: &AppName, provider: Provider) -> String {
    format!("{}/api/v1/webhooks/{provider}/{app}", t.base_url())
}

/// A new random webhook secret: 32 bytes, in hex, behind a prefix secret
/// scanners can match.
fn new_secret() -> Result<String, Error> {
    let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
    getrandom::fill(bytes.as_mut())
        .map_err(|e| Error::Internal(anyhow::anyhow!("no randomness for a secret: {e}")))?;
    Ok(format!("slpwh_{}", hex::encode(bytes.as_ref())))
}

/// Makes `app`'s secret for `provider`, or rotates it; returns it (its
/// only plaintext copy) and what to tell the provider.
pub async fn set_secret(
    t: &Tracker,
    app: &AppName,
    provider: Provider,
    req: &SetWebhookSecret,
) -> Result<CreatedWebhookSecret, Error> {
    if t.db().app(app).await?.is_none() {
        return Err(Error::NotFound(format!("unknown app `{app}`")));
    }
    let grace = match &req.grace {
        None => t.config().webhook_secret_grace,
        Some(g) => {
            let d = humantime::parse_duration(g)
                .map_err(|e| Error::Invalid(format!("`grace` {g:?}: {e} (e.g. `24h`, `0s`)")))?;
            if d > MAX_GRACE {
                return Err(Error::Invalid(format!(
                    "`grace` {g:?} is longer than 30 days"
                )));
            }
            d
        }
    };
    let secret = new_secret()?;
    let context = seal_context(app, provider);
    let sealed = t.secrets().seal(secret.as_bytes(), &context)?;
    // A rotation compares the row with what it read, so two at once do
    // not both keep "their" previous secret; the loser reads again.
    for _ in 0..5 {
        let now = Timestamp::now();
        let previous_valid_until = match t.db().webhook_secret(app, provider).await? {
            None => {
                if !t
                    .db()
                    .insert_webhook_secret(app, provider, &sealed, now)
                    .await?
                {
                    continue;
                }
                None
            }
            Some(_) if !req.rotate => {
                return Err(Error::Conflict(format!(
                    "app `{app}` has a {provider} webhook secret already: rotate it (`--rotate`; \
                     the old one keeps working for the grace, {}) or delete it",
                    humantime::format_duration(grace)
                )));
            }
            Some(row) => {
                let until = Timestamp(now.0 + grace.as_millis() as i64);
                if !t
                    .db()
                    .rotate_webhook_secret(app, provider, &row.sealed, &sealed, until, now)
                    .await?
                {
                    continue;
                }
                Some(until)
            }
        };
        return Ok(CreatedWebhookSecret {
            app: app.clone(),
            provider,
            url: webhook_url(t, app, provider),
            secret,
            previous_valid_until,
        });
    }
    Err(Error::Conflict(format!(
        "the {provider} webhook secret of `{app}` kept changing under this request: try again"
    )))
}

/// The providers `app` takes pushes from, never the secrets.
pub async fn secrets_info(t: &Tracker, app: &AppName) -> Result<Vec<WebhookSecretInfo>, Error> {
    if t.db().app(app).await?.is_none() {
        return Err(Error::NotFound(format!("unknown app `{app}`")));
    }
    let now = Timestamp::now();
    Ok(t.db()
        .webhook_secrets(app)
        .await?
        .into_iter()
        .map(|r| WebhookSecretInfo {
            provider: r.provider,
            url: webhook_url(t, app, r.provider),
            created_at: r.created_at,
            rotated_at: r.rotated_at,
            previous_valid_until: r.previous_at(now).and(r.previous_until),
        })
        .collect())
}

/// Stops taking `app`'s pushes from `provider`.
pub async fn delete_secret(t: &Tracker, app: &AppName, provider: Provider) -> Result<(), Error> {
    if t.db().delete_webhook_secret(app, provider).await? {
        Ok(())
    } else {
        Err(Error::NotFound(format!(
            "app `{app}` has no {provider} webhook secret"
        )))
    }
}

/// Makes a new build-trigger URL for `app` (the old one stops working).
pub async fn new_trigger_url(t: &Tracker, app: &AppName) -> Result<String, Error> {
    let (secret, hash) = crate::tracker::tokens::generate()?;
    if !t.db().set_trigger_hash(app, &hash).await? {
        return Err(Error::NotFound(format!("unknown app `{app}`")));
    }
    Ok(format!("{}/api/v1/trigger/{secret}", t.base_url()))
}
