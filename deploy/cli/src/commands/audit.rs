//! `deploy audit`: who changed what through the API, a page at a time.

use crate::Ctx;
use std::process::ExitCode;

use deploy::{AppName, AuditQuery};

use crate::print;

/// One page of the audit log, newest first, and how to ask for the next.
pub(crate) async fn page(
    client: &Ctx,
    limit: u32,
    before: Option<i64>,
    actor: Option<String>,
    app: Option<AppName>,
) -> anyhow::Result<ExitCode> {
    let page = client
        .audit_page(&AuditQuery {
            limit: Some(limit),
            before,
            cursor: None,
            actor,
            app,
        })
        .await?;
    if client.out.json() {
        crate::output::json(&page.items)?;
        return Ok(ExitCode::SUCCESS);
    }
    if page.items.is_empty() {
        println!("no audit entries");
    } else {
        print::audit(&page.items);
        // The cursor of the audit log is the last entry's id.
        if page.next.is_some()
            && let Some(last) = page.items.last()
        {
            println!("(older: --before {})", last.id);
        }
    }
    Ok(ExitCode::SUCCESS)
}
