//! `slipway.toml`: the app's own description of how to build, run and
//! health-check it, parsed strictly so a typo is an error naming the key and
//! the line rather than a setting silently ignored.

use std::collections::BTreeMap;
use std::fmt;
use std::num::NonZeroU16;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use deploy::{
    AppName, BuildType, HealthCheck, HealthSpec, Hooks, ProcessName, ProcessSpec, ReleaseSpec,
    RunSpec, RunUser,
};
use serde::{Deserialize, Deserializer};
use toml::Spanned;

/// The file's name, at the repository root.
pub const FILE_NAME: &str = "slipway.toml";

/// How long a build's commands may run, in all, unless `slipway.toml` says.
pub const BUILD_TIMEOUT: Duration = Duration::from_secs(10 * 60);

const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_HEALTH_GRACE: Duration = Duration::from_secs(2);
const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_millis(200);
/// How long an app must stay up after passing its health check: long
/// enough to catch one that serves once and then crashes.
const DEFAULT_HEALTH_BAKE: Duration = Duration::from_secs(2);

/// Why `slipway.toml` was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The repository has no `slipway.toml` at its root.
    #[error(
        "slipway.toml: not found at the top of the project (the repository root, or the app's registered root; every app needs one with at least `[run] command`)"
    )]
    Missing,
    /// The file exists but could not be read.
    #[error("slipway.toml: reading the file: {error}")]
    Read { error: std::io::Error },
    /// The file was read but is not valid.
    #[error("slipway.toml: {message}")]
    Invalid {
        /// The dotted key at fault (`run.port`), when one is.
        key: Option<String>,
        /// The 1-based line of the fault, when known.
        line: Option<usize>,
        /// What is wrong, naming the key and the line.
        message: String,
    },
}

impl ConfigError {
    pub(crate) fn invalid(
        key: Option<&str>,
        line: Option<usize>,
        problem: impl fmt::Display,
    ) -> Self {
        let mut message = String::new();
        if let Some(key) = key {
            message.push_str(&format!("key `{key}`"));
        }
        if let Some(line) = line {
            if !message.is_empty() {
                message.push(' ');
            }
            message.push_str(&format!("at line {line}"));
        }
        if !message.is_empty() {
            message.push_str(": ");
        }
        message.push_str(&problem.to_string());
        ConfigError::Invalid {
            key: key.map(str::to_string),
            line,
            message,
        }
    }

    /// The dotted key at fault, if the error is about one.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { key, .. } => key.as_deref(),
            _ => None,
        }
    }

    /// The 1-based line at fault, if known.
    pub fn line(&self) -> Option<usize> {
        match self {
            ConfigError::Invalid { line, .. } => *line,
            _ => None,
        }
    }
}

/// A parsed and validated `slipway.toml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlipwayToml {
    /// The name the file gives the app; the registered name wins, so this is
    /// informational.
    pub name: Option<AppName>,
    /// The build type as written; `None` means detect it from the tree.
    pub build_type: Option<BuildType>,
    /// `[build] command`: the whole build for `generic`, an extra step after
    /// dependencies for the others.
    pub build_command: Option<String>,
    /// `[build] timeout`: how long the build's commands may run in all
    /// (default [`BUILD_TIMEOUT`]).
    pub build_timeout: Duration,
    /// `[build] include`: the paths (files or directories, relative to the
    /// repository root) that make the release; the whole tree when unset.
    pub build_include: Option<Vec<PathBuf>>,
    /// `[build] python` and `[build] node`: the interpreter version the
    /// build uses (`"3.12"`, `"22"`, or a range), ahead of the project's
    /// own version files.
    pub build_python: Option<String>,
    pub build_node: Option<String>,
    /// `[build] watch`: repository-relative paths (prefixes, with `*`,
    /// `?` and `**`) outside the app's root whose changes rebuild it, for
    /// an app in a monorepo (shared libraries). AppTracker reads them
    /// from the build's result, never from the file.
    pub build_watch: Vec<String>,
    /// `[run]`, as the manifest carries it.
    pub run: RunSpec,
    /// `[health]`, as the manifest carries it.
    pub health: HealthSpec,
    /// `[release]` and `[hooks]` (`config/phases.rs`), as the manifest
    /// carries them.
    pub release: Option<ReleaseSpec>,
    pub hooks: Hooks,
    /// `[processes]` besides `web`, as the manifest carries them.
    pub processes: BTreeMap<ProcessName, ProcessSpec>,
}

impl SlipwayToml {
    /// Reads `slipway.toml` from the root of a checkout.
    pub fn load(dir: &Path) -> Result<Self, ConfigError> {
        let text = match crate::input::read_input(dir, FILE_NAME) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ConfigError::Missing);
            }
            Err(error) => return Err(ConfigError::Read { error }),
        };
        Self::parse(&text)
    }

    /// Parses and validates the text of a `slipway.toml`.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let raw: RawFile = toml::from_str(text).map_err(|e| from_toml_error(text, &e))?;
        raw.validate(text)
    }

    /// The build type: as written, or detected from the files at the root of
    /// the checkout (`requirements.txt`, `pyproject.toml` or `*.py` → python,
    /// `package.json` → node, else generic). A generic build needs
    /// `[build] command`.
    pub fn resolve_build_type(&self, dir: &Path) -> Result<BuildType, ConfigError> {
        if let Some(t) = self.build_type {
            return Ok(t);
        }
        let detected = detect_build_type(dir).map_err(|error| ConfigError::Read { error })?;
        if detected == BuildType::Generic && self.build_command.is_none() {
            return Err(ConfigError::invalid(
                Some("type"),
                None,
                "no build type given and none detected (no requirements.txt, pyproject.toml, \
                 *.py or package.json at the root): set `type` or add `[build] command`",
            ));
        }
        Ok(detected)
    }
}

/// Looks at the root of a checkout to guess the build type.
pub(crate) fn detect_build_type(dir: &Path) -> std::io::Result<BuildType> {
    if dir.join("requirements.txt").is_file() || dir.join("pyproject.toml").is_file() {
        return Ok(BuildType::Python);
    }
    let mut has_py = false;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_string_lossy().ends_with(".py") && entry.file_type()?.is_file() {
            has_py = true;
            break;
        }
    }
    if has_py {
        return Ok(BuildType::Python);
    }
    if dir.join("package.json").is_file() {
        return Ok(BuildType::Node);
    }
    Ok(BuildType::Generic)
}

// ---- The file as written -------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    name: Option<AppName>,
    #[serde(rename = "type")]
    build_type: Option<Spanned<BuildType>>,
    #[serde(default)]
    build: RawBuild,
    run: Option<RawRun>,
    health: Option<RawHealth>,
    #[serde(default)]
    processes: BTreeMap<String, Spanned<processes::RawProcess>>,
    release: Option<phases::RawRelease>,
    hooks: Option<phases::RawHooks>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawBuild {
    command: Option<NonEmpty>,
    timeout: Option<HumanDuration>,
    include: Option<Vec<Spanned<String>>>,
    python: Option<Spanned<String>>,
    node: Option<Spanned<String>>,
    #[serde(default)]
    watch: Vec<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRun {
    /// Required, unless `[processes] web` gives it instead.
    command: Option<Spanned<NonEmpty>>,
    port: Option<Port>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    stop_timeout: Option<HumanDuration>,
    /// Resolved on each host, which refuses a user it cannot switch to.
    user: Option<RunUser>,
    #[serde(default)]
    shared: Vec<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHealth {
    http: Option<Spanned<String>>,
    tcp: Option<Spanned<bool>>,
    command: Option<Spanned<NonEmpty>>,
    timeout: Option<HumanDuration>,
    grace: Option<HumanDuration>,
    interval: Option<Spanned<HumanDuration>>,
    /// `"0s"` turns it off.
    bake: Option<HumanDuration>,
    expect: Option<Spanned<String>>,
}

/// A string that must not be blank.
struct NonEmpty(String);

impl<'de> Deserialize<'de> for NonEmpty {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.trim().is_empty() {
            return Err(serde::de::Error::custom("must not be empty"));
        }
        Ok(NonEmpty(s))
    }
}

/// A TCP port, 1 to 65535.
struct Port(NonZeroU16);

impl<'de> Deserialize<'de> for Port {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = i64::deserialize(d)?;
        u16::try_from(n)
            .ok()
            .and_then(NonZeroU16::new)
            .map(Port)
            .ok_or_else(|| serde::de::Error::custom(format!("port must be 1 to 65535, got {n}")))
    }
}

/// A duration written for people: `"10s"`, `"1m 30s"`, `"500ms"`.
struct HumanDuration(Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s)
            .map(HumanDuration)
            .map_err(|e| {
                serde::de::Error::custom(format!(
                    "invalid duration {s:?}: {e} (write e.g. \"10s\", \"500ms\" or \"1m 30s\")"
                ))
            })
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl RawFile {
    fn validate(self, text: &str) -> Result<SlipwayToml, ConfigError> {
        let build_type = self.build_type.map(|t| (*t.get_ref(), t.span()));
        let build_command = self.build.command.map(|c| c.0);
        let build_timeout = self.build.timeout.map_or(BUILD_TIMEOUT, |d| d.0);
        let mut versions = [None, None];
        for (slot, (key, value)) in versions.iter_mut().zip([
            ("build.python", &self.build.python),
            ("build.node", &self.build.node),
        ]) {
            if let Some(v) = value {
                let given = v.get_ref().trim();
                let ok = !given.is_empty()
                    && given.len() <= 64
                    && given
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b" .*<>=!~^|,-_/".contains(&b));
                if !ok {
                    return Err(ConfigError::invalid(
                        Some(key),
                        Some(line_of(text, v.span().start)),
                        "give an interpreter version such as \"3.12\" or \"22\", or a range such as \">=3.11\"",
                    ));
                }
                *slot = Some(given.to_string());
            }
        }
        let [build_python, build_node] = versions;
        let build_include = match self.build.include {
            None => None,
            Some(list) => {
                let mut paths = Vec::with_capacity(list.len());
                for item in list {
                    let line = line_of(text, item.span().start);
                    let path = PathBuf::from(item.get_ref());
                    let inside = !item.get_ref().trim().is_empty()
                        && path
                            .components()
                            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
                    if !inside {
                        return Err(ConfigError::invalid(
                            Some("build.include"),
                            Some(line),
                            format!(
                                "{:?} must be a path inside the repository (relative, no `..`)",
                                item.get_ref()
                            ),
                        ));
                    }
                    paths.push(path);
                }
                if paths.is_empty() {
                    return Err(ConfigError::invalid(
                        Some("build.include"),
                        None,
                        "an empty list would make an empty release: list what to ship, or leave it out",
                    ));
                }
                Some(paths)
            }
        };
        let build_watch = watch_patterns(text, self.build.watch)?;
        if let Some((BuildType::Generic, span)) = &build_type
            && build_command.is_none()
        {
            return Err(ConfigError::invalid(
                Some("type"),
                Some(line_of(text, span.start)),
                "a generic build needs `[build] command`",
            ));
        }

        let has_run = self.run.is_some();
        let raw_run = self.run.unwrap_or_default();
        let (web, processes) = processes::validate(self.processes, text)?;
        let (command, port, health) = processes::web(
            web,
            has_run,
            raw_run.command,
            raw_run.port,
            self.health,
            text,
        )?;
        let shared = shared_paths(text, raw_run.shared)?;
        let run = RunSpec {
            shared,
            command,
            port,
            env: raw_run.env,
            stop_timeout_ms: millis(raw_run.stop_timeout.map_or(DEFAULT_STOP_TIMEOUT, |d| d.0)),
            paths: Default::default(),
            user: raw_run.user,
        };

        let release = phases::release(self.release, text)?;
        let hooks = phases::hooks(self.hooks, text)?;
        Ok(SlipwayToml {
            name: self.name,
            build_type: build_type.map(|(t, _)| t),
            build_command,
            build_timeout,
            build_include,
            build_python,
            build_node,
            build_watch,
            run,
            health,
            release,
            hooks,
            processes,
        })
    }
}

/// A `[health]` table (the web process's, or one under `[processes]`) as
/// the manifest carries it; errors name keys under `prefix`.
fn health_spec(h: RawHealth, prefix: &str, text: &str) -> Result<HealthSpec, ConfigError> {
    let key = |k: &str| format!("{prefix}.{k}");
    let mut kinds: Vec<(String, std::ops::Range<usize>, HealthCheck)> = Vec::new();
    if let Some(path) = h.http {
        let span = path.span();
        let path = path.into_inner();
        if !path.starts_with('/') {
            return Err(ConfigError::invalid(
                Some(&key("http")),
                Some(line_of(text, span.start)),
                format!("the path must start with '/', got {path:?}"),
            ));
        }
        let expect = h.expect.map(|e| e.into_inner());
        kinds.push((key("http"), span, HealthCheck::Http { path, expect }));
    } else if let Some(expect) = &h.expect {
        return Err(ConfigError::invalid(
            Some(&key("expect")),
            Some(line_of(text, expect.span().start)),
            "`expect` is the body an `http` check looks for; there is no `http` check",
        ));
    }
    if let Some(interval) = &h.interval
        && interval.get_ref().0.is_zero()
    {
        return Err(ConfigError::invalid(
            Some(&key("interval")),
            Some(line_of(text, interval.span().start)),
            "the interval between probes must be more than zero",
        ));
    }
    // `tcp = false` is the same as leaving it out.
    if let Some(tcp) = h.tcp
        && *tcp.get_ref()
    {
        kinds.push((key("tcp"), tcp.span(), HealthCheck::Tcp));
    }
    if let Some(command) = h.command {
        let span = command.span();
        kinds.push((
            key("command"),
            span,
            HealthCheck::Command {
                command: command.into_inner().0,
            },
        ));
    }
    if kinds.len() > 1 {
        let (key, span, _) = &kinds[1];
        let names: Vec<&str> = kinds.iter().map(|(k, _, _)| k.as_str()).collect();
        return Err(ConfigError::invalid(
            Some(key),
            Some(line_of(text, span.start)),
            format!(
                "choose one health check, not {} (`{}`)",
                kinds.len(),
                names.join("`, `")
            ),
        ));
    }
    let check = match kinds.pop() {
        // An http or tcp check without `[run] port` probes the port the
        // grabber gives the app from its range.
        Some((_, _, check)) => check,
        None => HealthCheck::Running,
    };
    Ok(HealthSpec {
        check,
        timeout_ms: millis(h.timeout.map_or(DEFAULT_HEALTH_TIMEOUT, |d| d.0)),
        grace_ms: millis(h.grace.map_or(DEFAULT_HEALTH_GRACE, |d| d.0)),
        interval_ms: millis(
            h.interval
                .map_or(DEFAULT_HEALTH_INTERVAL, |d| d.into_inner().0),
        ),
        bake_ms: millis(h.bake.map_or(DEFAULT_HEALTH_BAKE, |d| d.0)),
    })
}

// ---- Turning toml's errors into ones that name the key and the line -----

/// 1-based line number of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    let offset = offset.min(text.len());
    text.as_bytes()[..offset]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

fn from_toml_error(text: &str, e: &toml::de::Error) -> ConfigError {
    let line = e.span().map(|s| line_of(text, s.start));
    let message = e.message().trim().to_string();
    let path = key_path(e);

    // serde says "unknown field `x`, expected one of ..."; for a config file
    // "key" is the word people use.
    if let Some(rest) = message.strip_prefix("unknown field `")
        && let Some((field, expected)) = rest.split_once('`')
    {
        let key = match &path {
            Some(p) if !p.is_empty() && !p.ends_with(field) => format!("{p}.{field}"),
            Some(p) if !p.is_empty() => p.clone(),
            _ => field.to_string(),
        };
        let expected = expected.trim_start_matches(", ").trim();
        let mut msg = format!("unknown key `{key}`");
        if let Some(line) = line {
            msg.push_str(&format!(" at line {line}"));
        }
        if !expected.is_empty() {
            msg.push_str(&format!(" ({expected})"));
        }
        return ConfigError::Invalid {
            key: Some(key),
            line,
            message: msg,
        };
    }
    if let Some(rest) = message.strip_prefix("missing field `")
        && let Some((field, _)) = rest.split_once('`')
    {
        let key = match &path {
            Some(p) if !p.is_empty() => format!("{p}.{field}"),
            _ => field.to_string(),
        };
        let mut msg = if field == "run" {
            "missing the `[run]` table, which is required".to_string()
        } else {
            format!("missing key `{key}`, which is required")
        };
        if let Some(line) = line {
            msg.push_str(&format!(" (in the table at line {line})"));
        }
        return ConfigError::Invalid {
            key: Some(key),
            line,
            message: msg,
        };
    }
    let key = path.or_else(|| line.and_then(|l| key_on_line(text, l)));
    ConfigError::invalid(key.as_deref().filter(|k| !k.is_empty()), line, message)
}

/// The dotted path toml recorded for a failing value. toml only shows it in
/// `Display` when the error carries no input, so render a copy without it.
fn key_path(e: &toml::de::Error) -> Option<String> {
    let mut bare = e.clone();
    bare.set_input(None);
    let shown = bare.to_string();
    let last = shown.lines().rev().find(|l| !l.trim().is_empty())?;
    let path = last.strip_prefix("in `")?.strip_suffix('`')?;
    Some(path.to_string())
}

/// `[build] watch`: repository-relative patterns (`deploy::WatchPattern`),
/// each once.
fn watch_patterns(text: &str, list: Vec<Spanned<String>>) -> Result<Vec<String>, ConfigError> {
    let mut patterns: Vec<String> = Vec::with_capacity(list.len());
    for item in list {
        let line = line_of(text, item.span().start);
        let pattern = deploy::WatchPattern::parse(item.get_ref()).map_err(|e| {
            ConfigError::invalid(
                Some("build.watch"),
                Some(line),
                format!(
                    "{}: list paths from the repository's top (not the app's root), e.g. \
                     \"libs/shared\" or \"proto/*.proto\"",
                    e.reason
                ),
            )
        })?;
        if !patterns.iter().any(|p| p == pattern.as_str()) {
            patterns.push(pattern.as_str().to_string());
        }
    }
    Ok(patterns)
}

/// `[run] shared`: paths inside the release (relative, no `..`, not under
/// `.slipway/`), none inside another, each once.
fn shared_paths(text: &str, list: Vec<Spanned<String>>) -> Result<Vec<String>, ConfigError> {
    let mut paths: Vec<String> = Vec::with_capacity(list.len());
    for item in list {
        let line = line_of(text, item.span().start);
        let raw = item.get_ref().trim_end_matches('/');
        let path = Path::new(raw);
        let parts: Vec<Component<'_>> = path.components().collect();
        let inside = !raw.trim().is_empty()
            && parts.iter().all(|c| matches!(c, Component::Normal(_)))
            && !raw.starts_with(".slipway");
        if !inside {
            return Err(ConfigError::invalid(
                Some("run.shared"),
                Some(line),
                format!(
                    "{:?} must be a path inside the release (relative, no `.` or `..`, not \
                     under .slipway/), e.g. \"uploads\" or \"config/local.yml\"",
                    item.get_ref()
                ),
            ));
        }
        let clean = parts
            .iter()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/");
        if let Some(other) = paths.iter().find(|p| {
            **p == clean
                || clean.starts_with(&format!("{p}/"))
                || p.starts_with(&format!("{clean}/"))
        }) {
            return Err(ConfigError::invalid(
                Some("run.shared"),
                Some(line),
                format!(
                    "{clean:?} overlaps {other:?}: list each shared path once, none inside another"
                ),
            ));
        }
        paths.push(clean);
    }
    Ok(paths)
}

/// A best guess at the key on a line, `[table]` included, for errors where
/// toml gave a position but no path.
fn key_on_line(text: &str, line: usize) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let this = lines.get(line.checked_sub(1)?)?;
    let (key, _) = this.split_once('=')?;
    let key = key.trim().trim_matches('"');
    if key.is_empty() || key.starts_with('[') {
        return None;
    }
    let table = lines[..line - 1].iter().rev().find_map(|l| {
        let l = l.trim();
        l.strip_prefix('[')
            .and_then(|l| l.split_once(']'))
            .map(|(t, _)| t.trim().trim_matches('[').trim().to_string())
    });
    Some(match table {
        Some(t) => format!("{t}.{key}"),
        None => key.to_string(),
    })
}

mod phases;
mod processes;
#[cfg(test)]
mod tests;
