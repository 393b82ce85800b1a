//! `deploy env set|unset|list` (an app's config and secrets) and `deploy
//! restart|stop|start` (operating the release a cluster runs, as deploys).

use crate::Ctx;
use std::io::BufRead;
use std::process::ExitCode;

use anyhow::Context;
use deploy::{AppName, Cluster, ConfigChange, DeployAction, OperateApp, SetConfig, UnsetConfig};

use crate::args::OperateArgs;
use crate::confirm::{ask_confirmation, confirmation_for};
use crate::{follow, print};

/// `KEY=VALUE` arguments, and `KEY` alone read from `input`, one line per
/// key in order (a trailing newline is not part of the value).
fn parse_vars(
    args: &[String],
    input: &mut dyn BufRead,
) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    let mut vars = std::collections::BTreeMap::new();
    for arg in args {
        let (key, value) = match arg.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => {
                let mut line = String::new();
                let n = input.read_line(&mut line).with_context(|| {
                    format!("cannot read the value of `{arg}` from standard input")
                })?;
                if n == 0 {
                    anyhow::bail!(
                        "`{arg}` has no `=VALUE` and standard input has no line left for it"
                    );
                }
                let value = line.strip_suffix('\n').unwrap_or(&line);
                let value = value.strip_suffix('\r').unwrap_or(value);
                (arg.clone(), value.to_string())
            }
        };
        deploy::check_config_key(&key).map_err(anyhow::Error::msg)?;
        if vars.insert(key.clone(), value).is_some() {
            anyhow::bail!("`{key}` is given twice");
        }
    }
    Ok(vars)
}

/// `deploy env set APP [--cluster C] [--secret] [--apply [--wait]] KEY=VALUE|KEY…`
pub(crate) async fn set(
    client: &Ctx,
    app: &AppName,
    args: &[String],
    cluster: Option<Cluster>,
    secret: bool,
    apply: bool,
    wait: bool,
) -> anyhow::Result<ExitCode> {
    if secret && args.iter().any(|a| a.contains('=')) {
        eprintln!(
            "warning: a secret given as KEY=VALUE is visible in `ps` and your shell history; \
             give KEY alone to read its value from standard input"
        );
    }
    let vars = parse_vars(args, &mut std::io::stdin().lock())?;
    let req = SetConfig {
        cluster,
        vars,
        secret,
        apply,
    };
    let change = client.set_config(app, &req).await?;
    changed(client, app, "set", &change, wait).await
}

/// `deploy env unset APP [--cluster C] [--apply [--wait]] KEY…`
pub(crate) async fn unset(
    client: &Ctx,
    app: &AppName,
    keys: Vec<String>,
    cluster: Option<Cluster>,
    apply: bool,
    wait: bool,
) -> anyhow::Result<ExitCode> {
    let req = UnsetConfig {
        cluster,
        keys,
        apply,
    };
    let change = client.unset_config(app, &req).await?;
    changed(client, app, "unset", &change, wait).await
}

async fn changed(
    client: &Ctx,
    app: &AppName,
    what: &str,
    change: &ConfigChange,
    wait: bool,
) -> anyhow::Result<ExitCode> {
    println!(
        "{what} {} of {app}: config version {}",
        change.keys.join(", "),
        change.version
    );
    if change.deploys.is_empty() {
        println!("not applied yet: `deploy restart {app} --cluster C` (or --apply) runs it");
    }
    let mut code = ExitCode::SUCCESS;
    for d in &change.deploys {
        println!(
            "deploy {} restarts {} with config {} on {} host(s) of {}",
            d.id,
            app,
            change.version,
            d.hosts.len(),
            d.cluster
        );
        if wait {
            let c = follow::to_end(client, d.id).await?;
            if c != ExitCode::SUCCESS {
                code = c;
            }
        }
    }
    Ok(code)
}

/// `deploy env list APP [--cluster C]`: one line per variable, secrets
/// masked.
pub(crate) async fn list(
    client: &Ctx,
    app: &AppName,
    cluster: Option<&Cluster>,
) -> anyhow::Result<ExitCode> {
    let c = client.app_config(app, cluster).await?;
    if client.out.json() {
        crate::output::json(&c)?;
        return Ok(ExitCode::SUCCESS);
    }
    if c.version == 0 {
        println!("{app} has no config (`deploy env set {app} KEY=VALUE`)");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{app}: config version {}{}",
        c.version,
        c.updated_by
            .as_deref()
            .map(|by| format!(", by {by}"))
            .unwrap_or_default()
    );
    for v in &c.vars {
        let scope = v
            .cluster
            .as_ref()
            .map_or("*".to_string(), |c| c.to_string());
        let value = match (&v.value, v.secret) {
            (Some(value), false) => value.clone(),
            _ => "•••••• (secret)".into(),
        };
        println!("  {:<12} {}={value}", scope, v.key);
    }
    Ok(ExitCode::SUCCESS)
}

/// `deploy restart|stop|start APP --cluster C [--hosts R] [--batch N] [--wait]`.
pub(crate) async fn operate(
    client: &Ctx,
    action: DeployAction,
    args: OperateArgs,
    confirmed: &[Cluster],
) -> anyhow::Result<ExitCode> {
    let mut req = OperateApp {
        cluster: args.cluster.clone(),
        hosts: args.hosts,
        batch: args.batch,
        confirm: confirmation_for(&args.cluster, confirmed),
    };
    let d = match client.operate(&args.app, action, &req).await {
        Ok(d) => d,
        Err(e) => match ask_confirmation(&e, &args.cluster) {
            Some(typed) => {
                req.confirm = Some(typed);
                client.operate(&args.app, action, &req).await?
            }
            None => return Err(e.into()),
        },
    };
    println!(
        "deploy {}: {action} {} {}{} on {} host(s) of {}{}",
        d.id,
        d.app,
        d.version.as_ref().map_or("?".into(), |v| v.to_string()),
        print::config(d.config_version),
        d.hosts.len(),
        d.cluster,
        args.batch
            .map(|b| format!(", {b} at a time"))
            .unwrap_or_default()
    );
    if args.wait {
        return follow::to_end(client, d.id).await;
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_come_from_arguments_or_one_line_each_of_stdin() {
        let args = [
            "A=1".to_string(),
            "TOKEN".to_string(),
            "B=x=y".to_string(),
            "PEM".to_string(),
        ];
        let mut input = std::io::Cursor::new(b"s3cret\r\nline two\n".to_vec());
        let vars = parse_vars(&args, &mut input).unwrap();
        assert_eq!(vars["A"], "1");
        assert_eq!(vars["TOKEN"], "s3cret");
        assert_eq!(vars["B"], "x=y");
        assert_eq!(vars["PEM"], "line two");
        let mut empty = std::io::Cursor::new(Vec::new());
        let e = parse_vars(&["TOKEN".to_string()], &mut empty).unwrap_err();
        assert!(e.to_string().contains("no line left"), "{e}");
        let e = parse_vars(&["A=1".into(), "A=2".into()], &mut empty).unwrap_err();
        assert!(e.to_string().contains("twice"), "{e}");
        assert!(parse_vars(&["SLIPWAY_APP=x".into()], &mut empty).is_err());
    }
}
