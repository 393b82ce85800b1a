//! `[release]` and `[hooks]` of `slipway.toml`: the command run once per
//! deploy before any host switches, and the commands run on each host
//! around the switch. Parsed here, written into the manifest as
//! `deploy::ReleaseSpec` and `deploy::Hooks`.

use std::time::Duration;

use deploy::{Hooks, ReleaseSpec};
use serde::Deserialize;
use toml::Spanned;

use super::{ConfigError, HumanDuration, NonEmpty, line_of, millis};

/// How long a `[release] command` may run unless `timeout` says.
pub(super) const DEFAULT_RELEASE_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// The longest `[release] timeout`: a deploy waits this long at most.
const MAX_RELEASE_TIMEOUT: Duration = Duration::from_secs(60 * 60);
/// How long a hook may run unless `[hooks] timeout` says.
pub(super) const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest `[hooks] timeout`: a host's install waits this long at most
/// per hook.
const MAX_HOOK_TIMEOUT: Duration = Duration::from_secs(10 * 60);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRelease {
    command: NonEmpty,
    timeout: Option<Spanned<HumanDuration>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHooks {
    pre_stop: Option<NonEmpty>,
    post_start: Option<NonEmpty>,
    timeout: Option<Spanned<HumanDuration>>,
}

/// Checks a timeout is more than zero and at most `max`.
fn timeout(
    key: &str,
    text: &str,
    given: Option<Spanned<HumanDuration>>,
    default: Duration,
    max: Duration,
) -> Result<u64, ConfigError> {
    let Some(given) = given else {
        return Ok(millis(default));
    };
    let line = line_of(text, given.span().start);
    let d = given.into_inner().0;
    if d.is_zero() || d > max {
        return Err(ConfigError::invalid(
            Some(key),
            Some(line),
            format!(
                "must be more than zero and at most {}, got {}",
                humantime::format_duration(max),
                humantime::format_duration(d)
            ),
        ));
    }
    Ok(millis(d))
}

/// `[release]` as the manifest carries it.
pub(super) fn release(
    raw: Option<RawRelease>,
    text: &str,
) -> Result<Option<ReleaseSpec>, ConfigError> {
    let Some(raw) = raw else { return Ok(None) };
    Ok(Some(ReleaseSpec {
        command: raw.command.0,
        timeout_ms: timeout(
            "release.timeout",
            text,
            raw.timeout,
            DEFAULT_RELEASE_TIMEOUT,
            MAX_RELEASE_TIMEOUT,
        )?,
    }))
}

/// `[hooks]` as the manifest carries it; a table without a hook is
/// refused (a misspelt hook name is caught as an unknown key already).
pub(super) fn hooks(raw: Option<RawHooks>, text: &str) -> Result<Hooks, ConfigError> {
    let Some(raw) = raw else {
        return Ok(Hooks {
            pre_stop: None,
            post_start: None,
            timeout_ms: millis(DEFAULT_HOOK_TIMEOUT),
        });
    };
    let hooks = Hooks {
        pre_stop: raw.pre_stop.map(|c| c.0),
        post_start: raw.post_start.map(|c| c.0),
        timeout_ms: timeout(
            "hooks.timeout",
            text,
            raw.timeout,
            DEFAULT_HOOK_TIMEOUT,
            MAX_HOOK_TIMEOUT,
        )?,
    };
    if hooks.is_empty() {
        let line = text
            .lines()
            .position(|l| l.trim() == "[hooks]")
            .map(|i| i + 1);
        return Err(ConfigError::invalid(
            Some("hooks"),
            line,
            "the table has no hook: set `pre_stop` or `post_start`, or leave `[hooks]` out",
        ));
    }
    Ok(hooks)
}

#[cfg(test)]
mod tests {
    use crate::config::SlipwayToml;

    fn err(text: &str) -> crate::config::ConfigError {
        SlipwayToml::parse(text).expect_err("the file should be refused")
    }

    #[test]
    fn release_and_hooks_reach_the_manifest_types() {
        let c = SlipwayToml::parse(
            "[run]\ncommand = \"x\"\n[release]\ncommand = \"./migrate\"\ntimeout = \"2m\"\n\
             [hooks]\npre_stop = \"./lb remove\"\npost_start = \"./lb add\"\ntimeout = \"5s\"\n",
        )
        .unwrap();
        let r = c.release.expect("a release phase");
        assert_eq!((r.command.as_str(), r.timeout_ms), ("./migrate", 120_000));
        assert_eq!(c.hooks.pre_stop.as_deref(), Some("./lb remove"));
        assert_eq!(c.hooks.post_start.as_deref(), Some("./lb add"));
        assert_eq!(c.hooks.timeout_ms, 5_000);
    }

    #[test]
    fn without_the_tables_there_is_nothing_to_run() {
        let c = SlipwayToml::parse("[run]\ncommand = \"x\"\n").unwrap();
        assert_eq!(c.release, None);
        assert!(c.hooks.is_empty());
        let c = SlipwayToml::parse("[run]\ncommand = \"x\"\n[release]\ncommand = \"m\"\n").unwrap();
        assert_eq!(c.release.map(|r| r.timeout_ms), Some(300_000));
    }

    #[test]
    fn mistakes_name_the_key_and_the_line() {
        let e = err("[run]\ncommand = \"x\"\n[release]\ncommand = \"  \"\n");
        assert_eq!(e.key(), Some("release.command"), "{e}");
        assert_eq!(e.line(), Some(4), "{e}");
        let e = err("[run]\ncommand = \"x\"\n[release]\ntimeout = \"1m\"\n");
        assert_eq!(e.key(), Some("release.command"), "{e}");
        assert!(e.to_string().contains("missing key"), "{e}");
        let e = err("[run]\ncommand = \"x\"\n[release]\ncommand = \"m\"\ntimeout = \"0s\"\n");
        assert_eq!(
            (e.key(), e.line()),
            (Some("release.timeout"), Some(5)),
            "{e}"
        );
        assert!(e.to_string().contains("more than zero"), "{e}");
        let e = err("[run]\ncommand = \"x\"\n[release]\ncommand = \"m\"\ntimeout = \"2h\"\n");
        assert!(e.to_string().contains("at most 1h"), "{e}");
        let e = err("[run]\ncommand = \"x\"\n[hooks]\npre_start = \"y\"\n");
        assert_eq!(e.key(), Some("hooks.pre_start"), "{e}");
        assert!(e.to_string().contains("unknown key"), "{e}");
        let e = err("[run]\ncommand = \"x\"\n[hooks]\ntimeout = \"5s\"\n");
        assert_eq!((e.key(), e.line()), (Some("hooks"), Some(3)), "{e}");
        assert!(e.to_string().contains("has no hook"), "{e}");
        let e = err("[run]\ncommand = \"x\"\n[hooks]\npost_start = \"y\"\ntimeout = \"soon\"\n");
        assert_eq!((e.key(), e.line()), (Some("hooks.timeout"), Some(5)), "{e}");
    }
}
