//! The command line parses as documented, and every command's help has
//! examples.

use clap::CommandFactory;

use super::*;

#[test]
fn webhook_secret_flags_parse() {
    let cli = Cli::try_parse_from([
        "deploy",
        "webhook-secret",
        "hello",
        "--provider",
        "forgejo",
        "--rotate",
        "--grace",
        "1h",
    ])
    .unwrap();
    let Command::WebhookSecret {
        provider,
        rotate,
        grace,
        delete,
        ..
    } = cli.command
    else {
        panic!("not webhook-secret");
    };
    assert_eq!(provider, WebhookProvider::Gitea);
    assert!(rotate && !delete);
    assert_eq!(grace.as_deref(), Some("1h"));
    for bad in [
        &["deploy", "webhook-secret", "hello"][..],
        &["deploy", "webhook-secret", "hello", "--provider", "svn"],
        &[
            "deploy",
            "webhook-secret",
            "hello",
            "--provider",
            "github",
            "--grace",
            "1h",
        ],
        &[
            "deploy",
            "webhook-secret",
            "hello",
            "--provider",
            "github",
            "--rotate",
            "--delete",
        ],
    ] {
        assert!(Cli::try_parse_from(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn the_definition_is_consistent() {
    Cli::command().debug_assert();
}

/// Every command, at any depth, ends its help with examples of itself.
#[test]
fn every_command_has_an_example() {
    fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
        for sub in cmd.get_subcommands() {
            let name = format!("{path} {}", sub.get_name());
            if sub.has_subcommands() && sub.get_after_help().is_none() {
                // A pure group (`token`, `env`): its commands carry examples.
                walk(sub, &name, missing);
                continue;
            }
            let help = sub
                .get_after_help()
                .map(|h| h.to_string())
                .unwrap_or_default();
            if !help.contains("Examples:\n") || !help.contains(&format!("$ {name}")) {
                missing.push(name.clone());
            }
            walk(sub, &name, missing);
        }
    }
    let mut missing = Vec::new();
    walk(&Cli::command(), "deploy", &mut missing);
    assert!(
        missing.is_empty(),
        "commands without an example of themselves: {missing:?}"
    );
}

#[test]
fn deploys_filters_parse_and_refuse_what_is_not_a_status() {
    let cli = Cli::try_parse_from([
        "deploy",
        "deploys",
        "--status",
        "failed,partial",
        "--limit",
        "5",
        "-o",
        "json",
    ])
    .unwrap();
    assert_eq!(cli.output, crate::output::Format::Json);
    let Command::Deploys(args) = cli.command else {
        panic!("not deploys");
    };
    assert_eq!(
        args.status.as_ref().map(|s| s.as_slice()),
        Some(&[deploy::DeployStatus::Failed, deploy::DeployStatus::Partial][..])
    );
    assert_eq!(args.limit, 5);
    let e = Cli::try_parse_from(["deploy", "deploys", "--status", "done"])
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("write one or several of queued, building"),
        "{e}"
    );
    assert!(Cli::try_parse_from(["deploy", "deploys", "--limit", "0"]).is_err());
}
