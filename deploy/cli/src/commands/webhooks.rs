//! `deploy webhook-secret` (make, rotate or delete an app's secret for a
//! provider) and `deploy webhook-secrets` (list them).

use crate::Ctx;
use std::process::ExitCode;

use deploy::{AppName, SetWebhookSecret, WebhookProvider};

/// `deploy webhook-secret APP --provider P --delete`.
pub(crate) async fn delete(
    client: &Ctx,
    app: &AppName,
    provider: WebhookProvider,
) -> anyhow::Result<ExitCode> {
    client.delete_webhook_secret(app, provider).await?;
    println!("{app} no longer takes {provider} webhooks");
    Ok(ExitCode::SUCCESS)
}

/// `deploy webhook-secret APP --provider P [--rotate [--grace D]]`: prints
/// the secret, shown this once.
pub(crate) async fn set(
    client: &Ctx,
    app: &AppName,
    provider: WebhookProvider,
    rotate: bool,
    grace: Option<String>,
) -> anyhow::Result<ExitCode> {
    let made = client
        .set_webhook_secret(app, provider, &SetWebhookSecret { rotate, grace })
        .await?;
    println!("{provider} webhook secret of {app} (shown once, keep it safe):");
    println!("  {}", made.secret);
    println!("payload URL:  {}", made.url);
    println!("content type: application/json; events: push");
    if let Some(until) = made.previous_valid_until {
        println!("the previous secret is accepted until {until}: update the provider before then");
    }
    Ok(ExitCode::SUCCESS)
}

/// `deploy webhook-secrets APP`: the providers and their URLs.
pub(crate) async fn list(client: &Ctx, app: &AppName) -> anyhow::Result<ExitCode> {
    let list = client.webhook_secrets(app).await?;
    if client.out.json() {
        crate::output::json(&list)?;
        return Ok(ExitCode::SUCCESS);
    }
    if list.is_empty() {
        println!("{app} takes no webhooks: `deploy webhook-secret {app} --provider github`");
    }
    for s in list {
        let grace = match s.previous_valid_until {
            Some(until) => format!(" (previous secret accepted until {until})"),
            None => String::new(),
        };
        println!("{:<8} {}{grace}", s.provider, s.url);
    }
    Ok(ExitCode::SUCCESS)
}
