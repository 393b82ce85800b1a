//! `deploy apps` and `deploy register`.

use std::process::ExitCode;

use deploy::{AppName, Client, RegisterApp};

/// `deploy apps`: every registered app and its repository.
pub(crate) async fn list(client: &Client) -> anyhow::Result<ExitCode> {
    let apps = client.apps().await?;
    if apps.is_empty() {
        println!("no apps registered: `deploy register APP GIT_URL`");
    }
    for a in apps {
        println!("{:<24} {}", a.name, a.git_url);
    }
    Ok(ExitCode::SUCCESS)
}

/// `deploy register APP GIT_URL`.
pub(crate) async fn register(
    client: &Client,
    app: AppName,
    git_url: String,
    new_hosts: deploy::NewHostPolicy,
) -> anyhow::Result<ExitCode> {
    let req = RegisterApp {
        new_hosts,
        ..RegisterApp::new(app, git_url)
    };
    let a = client.register_app(&req).await?;
    println!("registered {} ({})", a.name, a.git_url);
    Ok(ExitCode::SUCCESS)
}
