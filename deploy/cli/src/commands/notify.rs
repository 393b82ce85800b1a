//! `deploy notify add|list|rm|deliveries`: deploy and drift events sent out.

use crate::Ctx;
use std::process::ExitCode;

use deploy::{AppName, Cluster, CreateNotification, NotifyEvent, NotifyFormat};

/// `deploy notify add URL [--app A] [--cluster C] [--slack] [--events E,…]`.
pub(crate) async fn add(
    client: &Ctx,
    url: String,
    app: Option<AppName>,
    cluster: Option<Cluster>,
    slack: bool,
    events: Vec<NotifyEvent>,
) -> anyhow::Result<ExitCode> {
    let req = CreateNotification {
        app,
        cluster,
        url,
        format: if slack {
            NotifyFormat::Slack
        } else {
            NotifyFormat::Json
        },
        events,
    };
    let made = client.create_notification(&req).await?;
    println!(
        "notification {} sends to {}",
        made.notification.id, made.notification.url
    );
    println!(
        "secret (shown once; check x-slipway-signature with it): {}",
        made.secret
    );
    Ok(ExitCode::SUCCESS)
}

/// `deploy notify list`.
pub(crate) async fn list(client: &Ctx) -> anyhow::Result<ExitCode> {
    let all = client.notifications().await?;
    if client.out.json() {
        crate::output::json(&all)?;
        return Ok(ExitCode::SUCCESS);
    }
    if all.is_empty() {
        println!("no notifications: `deploy notify add URL`");
    }
    for n in all {
        let events = if n.events.is_empty() {
            "all events".to_string()
        } else {
            n.events
                .iter()
                .map(|e| e.as_str())
                .collect::<Vec<_>>()
                .join(",")
        };
        println!(
            "{:<4} {:<6} app {:<16} cluster {:<12} {events}  {}",
            n.id,
            n.format.as_str(),
            n.app.as_ref().map_or("*".into(), |a| a.to_string()),
            n.cluster.as_ref().map_or("*".into(), |c| c.to_string()),
            n.url
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `deploy notify rm ID`.
pub(crate) async fn rm(client: &Ctx, id: i64) -> anyhow::Result<ExitCode> {
    client.delete_notification(id).await?;
    println!("notification {id} removed");
    Ok(ExitCode::SUCCESS)
}

/// `deploy notify deliveries ID`.
pub(crate) async fn deliveries(client: &Ctx, id: i64) -> anyhow::Result<ExitCode> {
    let list = client.notification_deliveries(id).await?;
    if client.out.json() {
        crate::output::json(&list)?;
        return Ok(ExitCode::SUCCESS);
    }
    for d in list {
        println!(
            "{:<6} deploy {:<6} {:<20} {:<9} tries {}{}",
            d.id,
            d.deploy_id,
            d.event.as_str(),
            d.status.as_str(),
            d.attempts,
            d.last_error
                .as_deref()
                .map(|e| format!("  last error: {e}"))
                .unwrap_or_default()
        );
    }
    Ok(ExitCode::SUCCESS)
}
