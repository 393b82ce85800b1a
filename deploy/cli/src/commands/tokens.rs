//! `deploy token create|list|revoke` (admins).

use crate::Ctx;
use std::process::ExitCode;

use deploy::{Cluster, CreateToken, HostName};

/// `deploy token create NAME --role R [--cluster C [--host H]]`: prints the
/// token, the only time it is shown.
pub(crate) async fn create(
    client: &Ctx,
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
    if client.out.json() {
        crate::output::json(&created)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!("{}", created.token);
    Ok(ExitCode::SUCCESS)
}

/// `deploy token list`: name, role, scope and last use of every token.
pub(crate) async fn list(client: &Ctx) -> anyhow::Result<ExitCode> {
    let tokens = client.tokens().await?;
    if client.out.json() {
        crate::output::json(&tokens)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = crate::output::table(&["NAME", "ROLE", "SCOPE", "CREATED", "LAST USED"]);
    for t in tokens {
        let scope = match (&t.cluster, &t.host) {
            (Some(c), Some(h)) => format!("{c}/{h}"),
            (Some(c), None) => c.to_string(),
            _ => "-".into(),
        };
        let used = t
            .last_used_at
            .map_or_else(|| "never".to_string(), crate::output::ago);
        table.add_row(vec![
            t.name.clone(),
            t.role.to_string(),
            scope,
            crate::output::ago(t.created_at),
            used,
        ]);
    }
    crate::output::print_table(&table);
    Ok(ExitCode::SUCCESS)
}

/// `deploy token revoke NAME`.
pub(crate) async fn revoke(client: &Ctx, name: &str) -> anyhow::Result<ExitCode> {
    client.revoke_token(name).await?;
    println!("revoked {name}");
    Ok(ExitCode::SUCCESS)
}
