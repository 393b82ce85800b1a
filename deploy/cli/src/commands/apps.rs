//! `deploy apps` (list, show, edit, remove) and `deploy register`.

use std::process::ExitCode;

use deploy::{App, AppName, AutoDeploy, RegisterApp};

use crate::Ctx;
use crate::output::{self, ago, print_table, table};

/// `deploy apps`: every registered app and its repository.
pub(crate) async fn list(client: &Ctx) -> anyhow::Result<ExitCode> {
    let apps = client.apps().await?;
    if client.out.json() {
        output::json(&apps)?;
        return Ok(ExitCode::SUCCESS);
    }
    if apps.is_empty() {
        println!("no apps registered: `deploy register APP GIT_URL`");
        return Ok(ExitCode::SUCCESS);
    }
    let mut t = table(&[
        "NAME",
        "REPOSITORY",
        "BRANCH",
        "AUTO-DEPLOY",
        "ROOT",
        "REGISTERED",
    ]);
    for a in &apps {
        t.add_row(vec![
            a.name.to_string(),
            a.git_url.clone(),
            a.branch.clone(),
            auto_deploy(a.auto_deploy.as_ref()),
            a.root.clone().unwrap_or_else(|| "-".into()),
            ago(a.created_at),
        ]);
    }
    print_table(&t);
    Ok(ExitCode::SUCCESS)
}

/// An auto-deploy rule in a word: `prod`, `prod (web-.*)`, `-`.
fn auto_deploy(rule: Option<&AutoDeploy>) -> String {
    match rule {
        Some(AutoDeploy {
            cluster,
            hosts: Some(h),
        }) => format!("{cluster} ({h})"),
        Some(AutoDeploy {
            cluster,
            hosts: None,
        }) => cluster.to_string(),
        None => "-".into(),
    }
}

/// One app, field by field.
fn show_app(a: &App) {
    println!("name:         {}", a.name);
    println!("repository:   {}", a.git_url);
    println!("branch:       {}", a.branch);
    println!("auto-deploy:  {}", auto_deploy(a.auto_deploy.as_ref()));
    println!("new hosts:    {}", a.new_hosts.as_str());
    println!(
        "root:         {}",
        a.root.as_deref().unwrap_or("(the whole repository)")
    );
    println!("registered:   {} ({})", a.created_at, ago(a.created_at));
}

/// `deploy apps show APP`.
pub(crate) async fn show(client: &Ctx, app: &AppName) -> anyhow::Result<ExitCode> {
    let a = client.app(app).await?;
    if client.out.json() {
        output::json(&a)?;
    } else {
        show_app(&a);
    }
    Ok(ExitCode::SUCCESS)
}

/// `deploy apps edit APP [--branch B] [--auto-deploy C [--auto-deploy-hosts R] |
/// --no-auto-deploy] [--new-hosts P]`.
pub(crate) async fn edit(
    client: &Ctx,
    app: &AppName,
    branch: Option<String>,
    auto_deploy: Option<Option<AutoDeploy>>,
    new_hosts: Option<deploy::NewHostPolicy>,
) -> anyhow::Result<ExitCode> {
    if branch.is_none() && auto_deploy.is_none() && new_hosts.is_none() {
        return Err(crate::exit::coded(
            crate::exit::USAGE,
            "nothing to change: give --branch, --auto-deploy CLUSTER, --no-auto-deploy or \
             --new-hosts",
        ));
    }
    let req = deploy::UpdateApp {
        branch,
        auto_deploy,
        new_hosts,
    };
    let a = client.update_app(app, &req).await?;
    if client.out.json() {
        output::json(&a)?;
    } else {
        show_app(&a);
    }
    Ok(ExitCode::SUCCESS)
}

/// `deploy apps remove APP [--yes]`: asks for the name typed back at a
/// terminal unless `--yes`; refused by AppTracker while hosts run it.
pub(crate) async fn remove(client: &Ctx, app: &AppName, yes: bool) -> anyhow::Result<ExitCode> {
    use std::io::{BufRead, IsTerminal, Write};
    if !yes {
        if !std::io::stdin().is_terminal() {
            return Err(crate::exit::coded(
                crate::exit::USAGE,
                format!("removing {app} needs --yes when no one is at the terminal to confirm"),
            ));
        }
        eprint!("this removes {app}, its builds and its settings; type its name to go on: ");
        std::io::stderr().flush()?;
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        if line.trim() != app.as_str() {
            return Err(crate::exit::coded(
                crate::exit::USAGE,
                format!("not removed: {:?} is not {app}", line.trim()),
            ));
        }
    }
    let gone = client.remove_app(app).await?;
    if client.out.json() {
        output::json(&gone)?;
    } else {
        println!(
            "removed {app}: {} build(s), {} deploy(s), {} config version(s); the audit log keeps \
             its history",
            gone.builds, gone.deploys, gone.config_versions
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `deploy register APP GIT_URL [--branch B] [--root DIR]`.
pub(crate) async fn register(
    client: &Ctx,
    app: AppName,
    git_url: String,
    branch: Option<String>,
    new_hosts: deploy::NewHostPolicy,
    root: Option<deploy::AppRoot>,
) -> anyhow::Result<ExitCode> {
    let req = RegisterApp {
        new_hosts,
        branch,
        root: root.map(String::from),
        ..RegisterApp::new(app, git_url)
    };
    let a = client.register_app(&req).await?;
    if client.out.json() {
        output::json(&a)?;
        return Ok(ExitCode::SUCCESS);
    }
    match &a.root {
        Some(root) => println!("registered {} ({}, root {root})", a.name, a.git_url),
        None => println!("registered {} ({})", a.name, a.git_url),
    }
    Ok(ExitCode::SUCCESS)
}
