//! `[processes]` in `slipway.toml`: process types besides the web process,
//! each with its command, optional port and health check, and a count per
//! host. `[processes] web` is another way to write `[run] command` (and
//! `port`, and `[health]`): the two together are refused, naming both.

use std::collections::BTreeMap;

use deploy::manifest::{MAX_PROCESS_COUNT, WEB_PROCESS};
use deploy::{HealthSpec, ProcessName, ProcessSpec};
use serde::Deserialize;
use toml::Spanned;

use super::{ConfigError, NonEmpty, Port, RawHealth, health_spec, line_of};

/// One process type as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProcess {
    command: Spanned<NonEmpty>,
    port: Option<Spanned<Port>>,
    count: Option<Spanned<i64>>,
    health: Option<RawHealth>,
}

/// `[processes] web`, kept for [`web`] to merge with `[run]`.
pub(super) struct RawWeb {
    process: RawProcess,
    /// The line of `[processes] web`.
    line: usize,
}

/// Checks every process type: the other types as the manifest carries
/// them, and `web` left for [`web`].
pub(super) fn validate(
    raw: BTreeMap<String, Spanned<RawProcess>>,
    text: &str,
) -> Result<(Option<RawWeb>, BTreeMap<ProcessName, ProcessSpec>), ConfigError> {
    let mut web = None;
    let mut processes = BTreeMap::new();
    for (name, spanned) in raw {
        let line = line_of(text, spanned.span().start);
        let key = format!("processes.{name}");
        let process = spanned.into_inner();
        let name = ProcessName::parse(name)
            .map_err(|e| ConfigError::invalid(Some(&key), Some(line), e))?;
        if name.is_web() {
            web = Some(RawWeb { process, line });
            continue;
        }
        let count = match &process.count {
            None => 1,
            Some(c) => u32::try_from(*c.get_ref())
                .ok()
                .filter(|n| (1..=MAX_PROCESS_COUNT).contains(n))
                .ok_or_else(|| {
                    ConfigError::invalid(
                        Some(&format!("{key}.count")),
                        Some(line_of(text, c.span().start)),
                        format!(
                            "the count must be 1 to {MAX_PROCESS_COUNT}, got {} (leave the \
                             process type out to run none)",
                            c.get_ref()
                        ),
                    )
                })?,
        };
        let port = process.port.map(|p| (p.get_ref().0.get(), p.span()));
        if let Some((port, span)) = &port
            && u32::from(*port) + count - 1 > u32::from(u16::MAX)
        {
            return Err(ConfigError::invalid(
                Some(&format!("{key}.port")),
                Some(line_of(text, span.start)),
                format!(
                    "{count} copies from port {port} need ports up to {}, past 65535",
                    u32::from(*port) + count - 1
                ),
            ));
        }
        let health = process
            .health
            .map(|h| process_health(h, &format!("{key}.health"), text))
            .transpose()?;
        processes.insert(
            name,
            ProcessSpec {
                command: process.command.into_inner().0,
                port: port.map(|(p, _)| p),
                health,
                count,
            },
        );
    }
    Ok((web, processes))
}

/// A health check under `[processes]`: like `[health]`, but the bake is the
/// whole app's (every process must stay up through it), set in `[health]`.
fn process_health(h: RawHealth, prefix: &str, text: &str) -> Result<HealthSpec, ConfigError> {
    if h.bake.is_some() {
        return Err(ConfigError::invalid(
            Some(&format!("{prefix}.bake")),
            None,
            "the bake is the whole app's: set it in `[health]` (every process must stay up \
             through it)",
        ));
    }
    health_spec(h, prefix, text)
}

/// The web process: `[run] command` and `port` with `[health]`, or
/// `[processes] web`, never both.
pub(super) fn web(
    web: Option<RawWeb>,
    has_run: bool,
    run_command: Option<Spanned<NonEmpty>>,
    run_port: Option<Port>,
    health: Option<RawHealth>,
    text: &str,
) -> Result<(String, Option<u16>, HealthSpec), ConfigError> {
    let Some(RawWeb { process, line }) = web else {
        let command = match run_command {
            Some(c) => c.into_inner().0,
            None if has_run => {
                return Err(ConfigError::invalid(
                    Some("run.command"),
                    None,
                    "missing key `run.command`, which is required (or give the web process as \
                     `[processes] web`)",
                ));
            }
            None => {
                return Err(ConfigError::invalid(
                    Some("run"),
                    None,
                    "missing the `[run]` table, which is required (at least `[run] command`, or \
                     `[processes] web`)",
                ));
            }
        };
        let health = health_spec(health.unwrap_or_default(), "health", text)?;
        return Ok((command, run_port.map(|p| p.0.get()), health));
    };
    let both = |what: &str, run_line: Option<usize>| {
        let at = run_line.map_or(String::new(), |l| format!(" at line {l}"));
        ConfigError::invalid(
            Some(&format!("processes.{WEB_PROCESS}")),
            Some(line),
            format!(
                "the web process is given twice, by `[processes] web` and by {what}{at}: \
                 keep one"
            ),
        )
    };
    if let Some(c) = &run_command {
        return Err(both("`[run] command`", Some(line_of(text, c.span().start))));
    }
    if run_port.is_some() {
        return Err(both("`[run] port`", None));
    }
    if let Some(c) = &process.count
        && *c.get_ref() != 1
    {
        return Err(ConfigError::invalid(
            Some("processes.web.count"),
            Some(line_of(text, c.span().start)),
            "the web process runs once per host (it owns the app's `PORT`): run more copies \
             of another process type",
        ));
    }
    let health = match (process.health, health) {
        (Some(_), Some(_)) => return Err(both("`[health]`", None)),
        (Some(h), None) => health_spec(h, "processes.web.health", text)?,
        (None, h) => health_spec(h.unwrap_or_default(), "health", text)?,
    };
    let port = process.port.map(|p| p.into_inner().0.get());
    Ok((process.command.into_inner().0, port, health))
}

#[cfg(test)]
mod tests {
    use deploy::HealthCheck;

    use crate::config::{ConfigError, SlipwayToml};

    fn err(text: &str) -> ConfigError {
        SlipwayToml::parse(text).expect_err("the file should be refused")
    }

    #[test]
    fn process_types_beside_run_carry_command_port_check_and_count() {
        let c = SlipwayToml::parse(
            r#"
[run]
command = "./server"
env = { MODE = "prod" }

[processes.worker]
command = "./worker"
count = 3

[processes]
metrics = { command = "./metrics", port = 9100, health = { tcp = true, timeout = "5s" } }
"#,
        )
        .unwrap();
        assert_eq!(c.run.command, "./server");
        let names: Vec<&str> = c.processes.keys().map(|n| n.as_str()).collect();
        assert_eq!(names, ["metrics", "worker"]);
        let w = &c.processes[&deploy::ProcessName::parse("worker").unwrap()];
        assert_eq!((w.command.as_str(), w.port, w.count), ("./worker", None, 3));
        assert_eq!(w.health, None);
        let m = &c.processes[&deploy::ProcessName::parse("metrics").unwrap()];
        assert_eq!((m.port, m.count), (Some(9100), 1));
        let h = m.health.as_ref().unwrap();
        assert_eq!((&h.check, h.timeout_ms), (&HealthCheck::Tcp, 5_000));
    }

    #[test]
    fn a_single_run_is_one_web_process_and_processes_web_can_replace_it() {
        let c = SlipwayToml::parse("[run]\ncommand = \"x\"\n").unwrap();
        assert!(c.processes.is_empty());
        let c = SlipwayToml::parse(
            "[run]\nenv = { A = \"1\" }\n[processes.web]\ncommand = \"./web\"\nport = 8080\n\
             health = { http = \"/up\" }\n",
        )
        .unwrap();
        assert_eq!((c.run.command.as_str(), c.run.port), ("./web", Some(8080)));
        assert_eq!(c.run.env["A"], "1");
        assert!(matches!(c.health.check, HealthCheck::Http { .. }));
        assert!(c.processes.is_empty(), "web is `run`, not a process row");
        // Without any `[run]` table at all.
        let c = SlipwayToml::parse("[processes]\nweb = { command = \"./web\" }\n").unwrap();
        assert_eq!(c.run.command, "./web");
    }

    #[test]
    fn the_web_process_given_twice_is_refused_naming_both() {
        let e = err("[run]\ncommand = \"a\"\n\n[processes.web]\ncommand = \"b\"\n");
        assert_eq!((e.key(), e.line()), (Some("processes.web"), Some(4)), "{e}");
        let text = e.to_string();
        assert!(
            text.contains("`[processes] web`") && text.contains("`[run] command` at line 2"),
            "{e}"
        );
        let e = err("[run]\nport = 1\n[processes]\nweb = { command = \"b\" }\n");
        assert!(e.to_string().contains("`[run] port`"), "{e}");
        let e = err(
            "[health]\ntcp = true\n[processes]\nweb = { command = \"b\", health = { tcp = true } }\n",
        );
        assert!(e.to_string().contains("`[health]`"), "{e}");
        let e = err("[processes]\nweb = { command = \"b\", count = 2 }\n");
        assert_eq!(e.key(), Some("processes.web.count"), "{e}");
    }

    #[test]
    fn bad_process_types_name_their_key_and_line() {
        let e = err("[run]\ncommand = \"x\"\n[processes.Worker]\ncommand = \"w\"\n");
        assert_eq!(
            (e.key(), e.line()),
            (Some("processes.Worker"), Some(3)),
            "{e}"
        );
        assert!(e.to_string().contains("invalid process type"), "{e}");
        let e = err("[run]\ncommand = \"x\"\n[processes.worker]\ncommand = \"w\"\ncount = 0\n");
        assert_eq!(
            (e.key(), e.line()),
            (Some("processes.worker.count"), Some(5)),
            "{e}"
        );
        let e = err("[run]\ncommand = \"x\"\n[processes.worker]\ncount = 2\n");
        assert_eq!(e.key(), Some("processes.worker.command"), "{e}");
        let e = err("[run]\ncommand = \"x\"\n[processes.worker]\ncommand = \"w\"\ncolour = 1\n");
        assert_eq!(e.key(), Some("processes.worker.colour"), "{e}");
        let e = err(
            "[run]\ncommand = \"x\"\n[processes.w]\ncommand = \"w\"\nport = 65535\ncount = 2\n",
        );
        assert_eq!(
            (e.key(), e.line()),
            (Some("processes.w.port"), Some(5)),
            "{e}"
        );
        let e = err(
            "[run]\ncommand = \"x\"\n[processes.w]\ncommand = \"w\"\nhealth = { http = \"up\" }\n",
        );
        assert_eq!(e.key(), Some("processes.w.health.http"), "{e}");
        let e = err(
            "[run]\ncommand = \"x\"\n[processes.w]\ncommand = \"w\"\nhealth = { bake = \"1s\" }\n",
        );
        assert_eq!(e.key(), Some("processes.w.health.bake"), "{e}");
    }
}
