//! Confirming a protected cluster: the `--yes-i-mean-CLUSTER` flags (taken
//! out of the arguments before clap sees them), and asking a person at the
//! terminal to type the name back when the server wants it.

use anyhow::Context;
use deploy::Cluster;

/// Takes the `--yes-i-mean-CLUSTER` flags out of the arguments (clap cannot
/// declare a flag whose name holds a value) and returns the clusters they
/// name.
pub(crate) fn confirmations(
    args: impl Iterator<Item = std::ffi::OsString>,
) -> anyhow::Result<(Vec<std::ffi::OsString>, Vec<Cluster>)> {
    let (mut rest, mut confirmed) = (Vec::new(), Vec::new());
    for arg in args {
        match arg.to_str().and_then(|a| a.strip_prefix("--yes-i-mean-")) {
            Some(name) => confirmed.push(
                Cluster::parse(name)
                    .with_context(|| format!("`--yes-i-mean-{name}` does not name a cluster"))?,
            ),
            None => rest.push(arg),
        }
    }
    Ok((rest, confirmed))
}

/// The confirmation to send for `cluster`: the `--yes-i-mean-` flag naming
/// it, else any other one given (the server says it names another).
pub(crate) fn confirmation_for(cluster: &Cluster, confirmed: &[Cluster]) -> Option<Cluster> {
    confirmed
        .iter()
        .find(|c| *c == cluster)
        .or(confirmed.first())
        .cloned()
}

/// When the server wants a protected cluster's name typed back and a
/// person is at the terminal, asks for it; None when nobody can answer or
/// the answer is not the name.
pub(crate) fn ask_confirmation(e: &deploy::ClientError, cluster: &Cluster) -> Option<Cluster> {
    use std::io::{BufRead, IsTerminal, Write};
    if e.error_code() != Some(deploy::ErrorCode::ConfirmationRequired)
        || !std::io::stdin().is_terminal()
    {
        return None;
    }
    eprint!("cluster {cluster} is protected; type its name to go on: ");
    std::io::stderr().flush().ok()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).ok()?;
    (line.trim() == cluster.as_str()).then(|| cluster.clone())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::args::Cli;

    fn args(list: &[&str]) -> impl Iterator<Item = std::ffi::OsString> {
        list.iter()
            .map(std::ffi::OsString::from)
            .collect::<Vec<_>>()
            .into_iter()
    }

    #[test]
    fn yes_i_mean_flags_become_confirmations() {
        let (rest, confirmed) = confirmations(args(&[
            "deploy",
            "release",
            "web",
            "main",
            "--cluster",
            "prod",
            "--yes-i-mean-prod",
        ]))
        .unwrap();
        assert_eq!(
            rest,
            ["deploy", "release", "web", "main", "--cluster", "prod"]
        );
        let prod = Cluster::parse("prod").unwrap();
        assert_eq!(confirmed, std::slice::from_ref(&prod));
        assert_eq!(confirmation_for(&prod, &confirmed), Some(prod.clone()));
        // A flag naming another cluster is sent as it is: the server says
        // which cluster it names.
        let staging = Cluster::parse("staging").unwrap();
        assert_eq!(confirmation_for(&staging, &confirmed), Some(prod));
        assert_eq!(confirmation_for(&staging, &[]), None);
        // The rest still parses as a command.
        assert!(Cli::try_parse_from(rest).is_ok());
    }

    #[test]
    fn a_yes_i_mean_flag_without_a_valid_cluster_is_an_error() {
        let e = confirmations(args(&["deploy", "--yes-i-mean-"])).unwrap_err();
        assert!(e.to_string().contains("--yes-i-mean-"), "{e}");
        let e = confirmations(args(&["deploy", "--yes-i-mean-no/pe"])).unwrap_err();
        assert!(e.to_string().contains("no/pe"), "{e}");
    }
}
