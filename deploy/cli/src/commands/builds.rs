//! `deploy builds`, `deploy build` (and waiting for it) and
//! `deploy build-bad`.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use deploy::{AppName, Build, BuildId, BuildStatus, Client, GitRef, RequestBuild};

use crate::print;

/// `deploy builds APP`: its builds, newest first.
pub(crate) async fn list(client: &Client, app: &AppName) -> anyhow::Result<ExitCode> {
    let builds = client.builds(app).await?;
    if builds.is_empty() {
        println!("no builds of {app} yet: `deploy build {app}`");
    }
    for b in builds {
        print::build_line(&b);
    }
    Ok(ExitCode::SUCCESS)
}

/// `deploy build-bad BUILD --reason R` (admins).
pub(crate) async fn mark_bad(
    client: &Client,
    build: BuildId,
    reason: &str,
) -> anyhow::Result<ExitCode> {
    let b = client.mark_build_bad(build, reason).await?;
    print::build_line(&b);
    Ok(ExitCode::SUCCESS)
}

/// `deploy build APP [--ref R] [--wait]`: with `wait`, 1 unless the build
/// succeeded (its log is printed then).
pub(crate) async fn build(
    client: &Client,
    app: &AppName,
    git_ref: Option<GitRef>,
    wait: bool,
) -> anyhow::Result<ExitCode> {
    let mut b = client.request_build(app, &RequestBuild { git_ref }).await?;
    print::build_line(&b);
    if wait {
        b = wait_for_build(client, b).await?;
        print::build_line(&b);
        if b.status != BuildStatus::Succeeded {
            print::build_failure(&b);
            return Ok(ExitCode::FAILURE);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Polls a build until it ends (builds have no event stream yet).
async fn wait_for_build(client: &Client, mut b: Build) -> anyhow::Result<Build> {
    while !b.status.is_terminal() {
        tokio::time::sleep(Duration::from_millis(500)).await;
        b = client.build(b.id).await?;
    }
    client
        .build(b.id)
        .await
        .context("cannot read the finished build")
}
