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
        match &a.root {
            Some(root) => println!("{:<24} {} (root {root})", a.name, a.git_url),
            None => println!("{:<24} {}", a.name, a.git_url),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `deploy register APP GIT_URL [--root DIR]`.
pub(crate) async fn register(
    client: &Client,
    app: AppName,
    git_url: String,
    new_hosts: deploy::NewHostPolicy,
    root: Option<deploy::AppRoot>,
) -> anyhow::Result<ExitCode> {
    let req = RegisterApp {
        new_hosts,
        root: root.map(String::from),
        ..RegisterApp::new(app, git_url)
    };
    let a = client.register_app(&req).await?;
    match &a.root {
        Some(root) => println!("registered {} ({}, root {root})", a.name, a.git_url),
        None => println!("registered {} ({})", a.name, a.git_url),
    }
    Ok(ExitCode::SUCCESS)
}
