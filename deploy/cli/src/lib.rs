//! The `deploy` CLI for ops engineers, built on the typed API client of the
//! `deploy` library. It is a library so the end-to-end tests can build a
//! copy of the binary they run (`CARGO_BIN_EXE_slipway-deploy`).
//!
//! - `args`: the global flags, the commands and their flags (the `--help`).
//! - `commands`: runs one parsed command, a module per command group.
//! - `output`: `--output json` or tables, relative times, colours.
//! - `print`: how deploys, hosts, builds, drift and the audit log read.
//! - `follow` and `live`: following a deploy to its real end, through
//!   AppTracker restarts, as a live table or one line per event.
//! - `profile`: `deploy login`'s saved servers and tokens.
//! - `confirm`: the `--yes-i-mean-CLUSTER` flags and the typed-back name.
//! - `exit`: the exit codes (0 success, 1 failed, 2 usage, 3 auth, 4 not
//!   found, 5 refused, 6 unreachable, 130 interrupted) and how errors map
//!   to them.

use std::process::ExitCode;

use clap::Parser;
use deploy::Client;

mod args;
mod commands;
mod confirm;
mod exit;
mod follow;
mod hints;
mod live;
mod output;
mod print;
mod profile;

use args::Cli;

/// What every command runs with: the API client and how to print.
pub(crate) struct Ctx {
    pub(crate) client: Client,
    pub(crate) out: output::Output,
    /// The profile the server and token came from, if any.
    pub(crate) profile: Option<String>,
}

/// Commands call the API through the context as through the client.
impl std::ops::Deref for Ctx {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

/// The CLI's entry point (the `deploy` binary's, and the end-to-end tests'
/// copy's).
#[tokio::main(flavor = "current_thread")]
pub async fn main() -> ExitCode {
    deploy::binary::default_sigpipe();
    output::init_colours();
    let (args, confirmed) = match confirm::confirmations(std::env::args_os()) {
        Ok(split) => split,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(exit::USAGE);
        }
    };
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            // Help and --version print on stdout and exit 0; usage errors
            // on stderr with 2.
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(exit::USAGE));
        }
    };
    let subject = hints::Subject::of(&cli.command);
    let ctx = match connect(&cli) {
        Ok(ctx) => ctx,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(exit::code_for(&e));
        }
    };
    tokio::select! {
        result = commands::run(&ctx, cli, &confirmed) => match result {
            Ok(code) => code,
            Err(e) => {
                let message = hints::explain(&ctx, &subject, &e).await;
                eprintln!("error: {message}");
                ExitCode::from(exit::code_for(&e))
            }
        },
        _ = tokio::signal::ctrl_c() => {
            eprintln!("interrupted");
            ExitCode::from(exit::INTERRUPTED)
        }
    }
}

/// The API client the flags, the environment and the profile describe, in
/// that order of precedence: server, trusted CA, token.
fn connect(cli: &Cli) -> anyhow::Result<Ctx> {
    if cli.token.is_some() {
        return Err(exit::coded(
            exit::USAGE,
            "--token is refused: a token on the command line is visible to every user in `ps` \
             and stays in the shell's history; put it in a file readable only by you and pass \
             --token-file FILE, set SLIPWAY_TOKEN, or run `deploy login`",
        ));
    }
    let out = output::Output::new(cli.output, cli.no_progress);
    // `login` makes the profile; it reads none.
    let saved = if matches!(cli.command, args::Command::Login) {
        None
    } else {
        match profile::path() {
            Ok(path) => {
                let file = profile::load(&path)?;
                profile::select(file.as_ref(), cli.profile.as_deref(), &path)?
            }
            // No home directory (a bare CI job): no profiles, unless one
            // was asked for.
            Err(e) if cli.profile.is_some() => return Err(e),
            Err(_) => None,
        }
    };
    let server = cli
        .server
        .clone()
        .or_else(|| saved.as_ref().map(|(_, p)| p.server.clone()))
        .unwrap_or_else(|| deploy::DEFAULT_SERVER.to_string());
    let ca_file = cli
        .ca_file
        .clone()
        .or_else(|| saved.as_ref().and_then(|(_, p)| p.ca_file.clone()));
    let trust = deploy::tls::Trust::from_ca_file(ca_file.as_deref())?;
    let mut client = Client::with_trust(server.clone(), &trust)?;
    // A profile's token goes to its own server only, never to another one
    // named by --server or SLIPWAY_SERVER.
    let token = match deploy::binary::read_token(cli.token_file.as_deref(), false)? {
        Some(t) => Some(t),
        None => saved
            .as_ref()
            .filter(|(_, p)| same_server(&p.server, &server))
            .and_then(|(_, p)| p.token.clone()),
    };
    if let Some(token) = token {
        if let Some(warning) = deploy::tls::cleartext_warning(&server) {
            eprintln!("warning: {warning}");
        }
        client = client.with_token(token);
    }
    Ok(Ctx {
        client,
        out,
        profile: saved.map(|(name, _)| name),
    })
}

/// Whether two server URLs name the same server (a trailing `/` aside).
fn same_server(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}
