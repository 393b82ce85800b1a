//! `deploy token create|list|revoke` (admins).

use std::process::ExitCode;

use deploy::{Client, Cluster, CreateToken, HostName};

/// `deploy token create NAME --role R [--cluster C [--host H]]`: prints the
/// token, the only time it is shown.
pub(crate) async fn create(
    client: &Client,
    name: String,
    role: String,
    cluster: Option<Cluster>,
    host: Option<HostName>,
) -> anyhow::Result<ExitCode> {
    let created = client
        .create_token(&CreateToken {
            name,
            role,
            cluster,
            host,
        })
        .await?;
    println!("{}", created.token);
    Ok(ExitCode::SUCCESS)
}

/// `deploy token list`: name, role, scope and last use of every token.
pub(crate) async fn list(client: &Client) -> anyhow::Result<ExitCode> {
    for t in client.tokens().await? {
        let scope = match (&t.cluster, &t.host) {
            (Some(c), Some(h)) => format!("{c}/{h}"),
            (Some(c), None) => c.to_string(),
            _ => "-".into(),
        };
        let used = t
            .last_used_at
            .map_or_else(|| "never used".to_string(), |at| format!("used {at}"));
        println!("{:<32} {:<9} {:<24} {used}", t.name, t.role, scope);
    }
    Ok(ExitCode::SUCCESS)
}

/// `deploy token revoke NAME`.
pub(crate) async fn revoke(client: &Client, name: &str) -> anyhow::Result<ExitCode> {
    client.revoke_token(name).await?;
    println!("revoked {name}");
    Ok(ExitCode::SUCCESS)
}
