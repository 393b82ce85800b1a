//! Commands about the CLI itself: `deploy login`, `logout` and `whoami`
//! (profiles and tokens), `completions` and `man`.

use std::io::{IsTerminal, Read};
use std::path::Path;
use std::process::ExitCode;

use clap::CommandFactory;

use crate::Ctx;
use crate::args::Cli;
use crate::exit::{USAGE, coded};
use crate::output;
use crate::profile::{self, Profile};

/// The profile `deploy login` writes when none is named.
const DEFAULT_PROFILE: &str = "default";

/// `deploy login [--server URL] [--ca-file PEM] [--profile NAME]`: reads a
/// token (hidden at a terminal, else the whole standard input), checks it
/// with AppTracker, and saves server, CA and token as the profile (the
/// default one when there was none).
pub(crate) async fn login(
    ctx: &Ctx,
    server: Option<&str>,
    ca_file: Option<&Path>,
    name: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let path = profile::path()?;
    let mut file = profile::load(&path)?.unwrap_or_default();
    let name = name
        .map(str::to_string)
        .or_else(|| file.default.clone())
        .unwrap_or_else(|| DEFAULT_PROFILE.to_string());
    let known = file.profiles.get(&name);
    let server = server
        .map(str::to_string)
        .or_else(|| known.map(|p| p.server.clone()))
        .unwrap_or_else(|| deploy::DEFAULT_SERVER.to_string());
    let ca_file = match ca_file {
        Some(f) => Some(std::path::absolute(f)?),
        None => known.and_then(|p| p.ca_file.clone()),
    };
    let token = read_token(&server)?;
    let trust = deploy::tls::Trust::from_ca_file(ca_file.as_deref())?;
    let client = deploy::Client::with_trust(server.clone(), &trust)?.with_token(token.clone());
    if let Some(warning) = deploy::tls::cleartext_warning(&server) {
        eprintln!("warning: {warning}");
    }
    let me = client.whoami().await?;
    file.profiles.insert(
        name.clone(),
        Profile {
            server: server.clone(),
            ca_file,
            token: Some(token),
        },
    );
    if file.default.is_none() {
        file.default = Some(name.clone());
    }
    profile::save(&path, &file)?;
    if ctx.out.json() {
        output::json(&me)?;
    } else {
        println!(
            "logged in to {server} as {} ({}); saved as profile {name} in {}",
            me.name,
            me.role,
            path.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The token to log in with: typed without echo at a terminal, else the
/// whole standard input (`deploy login < token.txt`, or from a secret
/// store in CI).
fn read_token(server: &str) -> anyhow::Result<String> {
    let token = if std::io::stdin().is_terminal() {
        eprint!("API token for {server} (input hidden): ");
        console::Term::stderr()
            .read_secure_line()
            .map_err(|e| coded(USAGE, format!("cannot read the token: {e}")))?
    } else {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).map_err(|e| {
            coded(
                USAGE,
                format!("cannot read the token from standard input: {e}"),
            )
        })?;
        text
    };
    let token = token.trim().to_string();
    if token.is_empty() {
        return Err(coded(
            USAGE,
            "no token given: paste it when asked, or pipe it in (`deploy login < token.txt`); \
             an admin makes one with `deploy token create NAME --role deployer`",
        ));
    }
    Ok(token)
}

/// `deploy logout [--profile NAME]`: forgets the profile.
pub(crate) fn logout(name: Option<&str>) -> anyhow::Result<ExitCode> {
    let path = profile::path()?;
    let Some(mut file) = profile::load(&path)? else {
        return Err(coded(
            USAGE,
            format!("not logged in: {} does not exist", path.display()),
        ));
    };
    let Some(name) = name.map(str::to_string).or_else(|| file.default.clone()) else {
        return Err(coded(
            USAGE,
            "no default profile: name one with --profile NAME",
        ));
    };
    let Some(gone) = file.profiles.remove(&name) else {
        return Err(coded(
            USAGE,
            format!("no profile {name:?} in {}", path.display()),
        ));
    };
    if file.default.as_deref() == Some(name.as_str()) {
        file.default = None;
    }
    profile::save(&path, &file)?;
    println!("logged out of {} (profile {name} removed)", gone.server);
    Ok(ExitCode::SUCCESS)
}

/// `deploy whoami`: the token's name, role and cluster, and where it was
/// sent.
pub(crate) async fn whoami(ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let me = ctx.whoami().await?;
    if ctx.out.json() {
        output::json(&me)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut line = format!("{} ({})", me.name, me.role);
    if let Some(c) = &me.cluster {
        line.push_str(&format!(", cluster {c}"));
    }
    line.push_str(&format!(" at {}", ctx.base_url()));
    if let Some(p) = &ctx.profile {
        line.push_str(&format!(" (profile {p})"));
    }
    println!("{line}");
    Ok(ExitCode::SUCCESS)
}

/// `deploy completions SHELL`: the completion script on stdout.
pub(crate) fn completions(shell: clap_complete::Shell) -> anyhow::Result<ExitCode> {
    clap_complete::generate(shell, &mut Cli::command(), "deploy", &mut std::io::stdout());
    Ok(ExitCode::SUCCESS)
}

/// `deploy man [--dir DIR]`: deploy(1) on stdout, or a page per command
/// (`deploy.1`, `deploy-release.1`, …) written into DIR.
pub(crate) fn man(dir: Option<&Path>) -> anyhow::Result<ExitCode> {
    let cmd = Cli::command();
    match dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            clap_mangen::generate_to(cmd, dir)?;
            println!("man pages written to {}", dir.display());
        }
        None => clap_mangen::Man::new(cmd).render(&mut std::io::stdout())?,
    }
    Ok(ExitCode::SUCCESS)
}
