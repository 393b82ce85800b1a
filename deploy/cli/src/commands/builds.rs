//! `deploy builds`, `deploy build` (waiting for it, or following its log),
//! `deploy build-logs` and `deploy build-bad`.

use std::process::ExitCode;
use std::time::Duration;

use deploy::{AppName, Build, BuildId, BuildStatus, GitRef, RequestBuild};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::Ctx;
use crate::output::{self, ago, print_table, table};
use crate::print;

/// How often a followed build's log is read.
const LOG_POLL: Duration = Duration::from_millis(500);

/// `deploy builds APP`: its builds, newest first.
pub(crate) async fn list(client: &Ctx, app: &AppName) -> anyhow::Result<ExitCode> {
    let builds = client.builds(app).await?;
    if client.out.json() {
        output::json(&builds)?;
        return Ok(ExitCode::SUCCESS);
    }
    if builds.is_empty() {
        println!("no builds of {app} yet: `deploy build {app}`");
        return Ok(ExitCode::SUCCESS);
    }
    let mut t = table(&["ID", "VERSION", "STATUS", "COMMIT", "REF", "AGE", "MESSAGE"]);
    for b in &builds {
        let mut status = b.status.as_str().to_string();
        if b.bad.is_some() {
            status.push_str(" (bad)");
        }
        t.add_row(vec![
            b.id.to_string(),
            b.version.to_string(),
            status,
            b.commit.chars().take(12).collect(),
            b.git_ref.clone(),
            ago(b.created_at),
            print::message_start(b.message.as_deref()),
        ]);
    }
    print_table(&t);
    Ok(ExitCode::SUCCESS)
}

/// `deploy build-bad BUILD --reason R` (admins).
pub(crate) async fn mark_bad(
    client: &Ctx,
    build: BuildId,
    reason: &str,
) -> anyhow::Result<ExitCode> {
    let b = client.mark_build_bad(build, reason).await?;
    if client.out.json() {
        output::json(&b)?;
    } else {
        print::build_line(&b);
    }
    Ok(ExitCode::SUCCESS)
}

/// `deploy build APP [REF] [--wait | --follow]`: waiting, 1 unless the
/// build succeeded (its log is printed then); following, its log streams
/// as it is written.
pub(crate) async fn build(
    client: &Ctx,
    app: &AppName,
    git_ref: Option<GitRef>,
    wait: bool,
    follow: bool,
) -> anyhow::Result<ExitCode> {
    let b = client.request_build(app, &RequestBuild { git_ref }).await?;
    if !client.out.json() {
        print::build_line(&b);
    }
    if !wait && !follow {
        if client.out.json() {
            output::json(&b)?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let b = to_end(client, b.id, follow).await?;
    if client.out.json() {
        output::json(&b)?;
    } else {
        print::build_line(&b);
    }
    if b.status != BuildStatus::Succeeded {
        if !follow && !client.out.json() {
            print::build_failure(&b);
        } else if let Some(e) = &b.error {
            eprintln!("build failed: {e}");
        }
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// `deploy build-logs BUILD [--follow]`: its log so far, or streamed until
/// it ends (1 when it failed).
pub(crate) async fn logs(client: &Ctx, id: BuildId, follow: bool) -> anyhow::Result<ExitCode> {
    if !follow {
        let b = client.build(id).await?;
        print!("{}", b.log);
        return Ok(if b.status == BuildStatus::Failed {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        });
    }
    let b = to_end(client, id, true).await?;
    Ok(if b.status == BuildStatus::Succeeded {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Waits for a build to end; with `stream`, prints its log as it grows
/// (under a spinner on a terminal). Returns the ended build.
async fn to_end(client: &Ctx, id: BuildId, stream: bool) -> anyhow::Result<Build> {
    let stream = stream && !client.out.json();
    let spinner = (stream && client.out.live).then(|| {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stdout_with_hz(10));
        bar.set_style(
            ProgressStyle::with_template("{spinner:.cyan} build {msg} {elapsed:.dim}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_message(id.to_string());
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    });
    let mut from = 0u64;
    // Whole lines are printed (a spinner redraws under them); the rest
    // waits for its end.
    let mut partial = String::new();
    loop {
        let chunk = client.build_log_from(id, from).await?;
        if chunk.from != from && from != 0 && stream {
            partial.clear();
            eprintln!("note: the build's log started over (the build moved to another worker)");
        }
        if stream && !chunk.text.is_empty() {
            partial.push_str(&chunk.text);
            if let Some(end) = partial.rfind('\n') {
                let lines: String = partial.drain(..=end).collect();
                let lines = lines.strip_suffix('\n').unwrap_or(&lines);
                match &spinner {
                    Some(bar) => bar.suspend(|| println!("{lines}")),
                    None => println!("{lines}"),
                }
            }
        }
        from = chunk.next;
        if let Some(bar) = &spinner {
            bar.set_message(format!("{id}: {}", chunk.status.as_str()));
        }
        if chunk.done {
            break;
        }
        if chunk.text.is_empty() {
            tokio::time::sleep(LOG_POLL).await;
        }
    }
    if let Some(bar) = spinner {
        bar.finish_and_clear();
    }
    if !partial.is_empty() {
        println!("{partial}");
    }
    Ok(client.build(id).await?)
}
