//! The `deploy` CLI for ops engineers, built on the typed API client of the
//! `deploy` library. It is a library so the end-to-end tests can build a
//! copy of the binary they run (`CARGO_BIN_EXE_slipway-deploy`).
//!
//! - `args`: the global flags, the commands and their flags (the `--help`).
//! - `commands`: runs one parsed command, a module per command group.
//! - `print`: how deploys, hosts, builds, drift and the audit log read.
//! - `follow`: following a deploy's event stream to its end.
//! - `confirm`: the `--yes-i-mean-CLUSTER` flags and the typed-back name.
//!
//! Exit codes: 0 when the command did what it was asked; 1 when what it
//! reports went wrong (a followed deploy or build that did not succeed, a
//! deploy shown that ended without succeeding, drift found); 2 when the
//! command could not run (flags clap or this CLI refuses, no token file, an
//! unreachable server, any API error: the message and its code are printed).

use std::process::ExitCode;

use clap::Parser;
use deploy::Client;

mod args;
mod commands;
mod confirm;
mod follow;
mod print;

use args::Cli;

/// The CLI's entry point (the `deploy` binary's, and the end-to-end tests'
/// copy's).
#[tokio::main(flavor = "current_thread")]
pub async fn main() -> ExitCode {
    let (args, confirmed) = match confirm::confirmations(std::env::args_os()) {
        Ok(split) => split,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let cli = Cli::parse_from(args);
    let client = match connect(&cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    match commands::run(&client, cli.command, &confirmed).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// The API client the flags describe: server, trusted CA, token.
fn connect(cli: &Cli) -> anyhow::Result<Client> {
    if cli.token.is_some() {
        anyhow::bail!(
            "--token is refused: a token on the command line is visible to every user in `ps` \
             and stays in the shell's history; put it in a file readable only by you and pass \
             --token-file FILE, or set SLIPWAY_TOKEN"
        );
    }
    let trust = deploy::tls::Trust::from_ca_file(cli.ca_file.as_deref())?;
    let mut client = Client::with_trust(cli.server.clone(), &trust)?;
    if let Some(token) = deploy::binary::read_token(cli.token_file.as_deref(), false)? {
        if let Some(warning) = deploy::tls::cleartext_warning(&cli.server) {
            eprintln!("warning: {warning}");
        }
        client = client.with_token(token);
    }
    Ok(client)
}
