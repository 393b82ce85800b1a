//! Which interpreter a build uses: the pins a project carries
//! (`slipway.toml`'s `[build] python`/`node`, `.python-version`,
//! `.nvmrc`, `.node-version`, `.tool-versions`, `mise.toml`, `runtime.txt`)
//! and the ranges it declares (`requires-python`, `engines.node`), matched
//! against the interpreters this build machine has. Packer installs no
//! interpreter: a pin nothing here matches fails the build, naming the pin,
//! its file and what the machine has.
//!
//! A pin decides the version hosts must run: Python's minor version (ABI)
//! and Node's major. A pin more precise than that (`3.11.7`) that matches
//! only on those parts is used with a warning, since hosts check no more.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::str::FromStr;

use deploy::{Runtime, RuntimeKind};

use crate::BuildError;
use crate::input::read_input;
use crate::log::Log;

/// An interpreter found on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Interpreter {
    pub kind: RuntimeKind,
    /// The real executable (not a pyenv shim), run by its full path.
    pub path: PathBuf,
    /// `3.11.7`, `20.20.2`.
    pub version: String,
    /// Its installation, to bind into the sandbox (outside `/usr` only).
    pub prefix: Option<PathBuf>,
}

impl Interpreter {
    /// What the manifest records and hosts check: `python 3.11`, `node 20`.
    pub(crate) fn runtime(&self) -> Runtime {
        let parts: Vec<&str> = self.version.split('.').collect();
        let version = match self.kind {
            RuntimeKind::Python => parts.iter().take(2).copied().collect::<Vec<_>>().join("."),
            RuntimeKind::Node => parts.first().copied().unwrap_or("").to_string(),
        };
        Runtime {
            kind: self.kind,
            version,
        }
    }
}

/// A version a project asks for, and where it said so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pin {
    pub spec: String,
    pub source: String,
}

fn kind_name(kind: RuntimeKind) -> &'static str {
    match kind {
        RuntimeKind::Python => "Python",
        RuntimeKind::Node => "Node.js",
    }
}

/// Chooses the interpreter for a build of `src`: the first pin found (in
/// the order of the module's doc) and the declared range (`range`, with
/// where it came from) must both match. Without either, the machine's
/// `python3`/`node`.
pub(crate) fn choose(
    kind: RuntimeKind,
    src: &Path,
    configured: Option<&str>,
    range: Option<Pin>,
    log: &mut Log,
) -> Result<Interpreter, BuildError> {
    let pin = match configured {
        Some(spec) => Some(Pin {
            spec: spec.to_string(),
            source: format!("slipway.toml [build] {}", key_of(kind)),
        }),
        None => find_pin(kind, src)?,
    };
    let have = installed(kind);
    if have.is_empty() {
        let program = key_of(kind);
        return Err(BuildError::Toolchain {
            build_type: match kind {
                RuntimeKind::Python => deploy::BuildType::Python,
                RuntimeKind::Node => deploy::BuildType::Node,
            },
            tool: program.into(),
            error: format!("no `{program}` on the builder's PATH"),
            log: String::new(),
        });
    }
    let mut warning = None;
    let chosen = have.iter().find(|i| {
        let by_pin = match &pin {
            None => Some(false),
            Some(p) => matches_pin(kind, &p.spec, &i.version),
        };
        let by_range = range
            .as_ref()
            .is_none_or(|r| matches_range(kind, &r.spec, &i.version) == Some(true));
        by_pin.is_some() && by_range
    });
    let Some(chosen) = chosen else {
        let wanted = match (&pin, &range) {
            (Some(p), Some(r)) => format!(
                "`{}` (from {}) within `{}` (from {})",
                p.spec, p.source, r.spec, r.source
            ),
            (Some(p), None) => format!("`{}` (from {})", p.spec, p.source),
            (None, Some(r)) => format!("`{}` (from {})", r.spec, r.source),
            (None, None) => "any version".into(),
        };
        // A spec that is not a version at all is named as such.
        for p in pin.iter().chain(range.iter()) {
            let parsed = if Some(p) == pin.as_ref() {
                pin_parses(kind, &p.spec)
            } else {
                matches_range(kind, &p.spec, "0.0.0").is_some()
            };
            if !parsed {
                return Err(BuildError::Interpreter {
                    kind: kind_name(kind).into(),
                    reason: format!(
                        "`{}` in {} is not a {} version or range",
                        p.spec,
                        p.source,
                        kind_name(kind)
                    ),
                    log: String::new(),
                });
            }
        }
        return Err(BuildError::Interpreter {
            kind: kind_name(kind).into(),
            reason: format!(
                "no {} on this build machine matches {wanted}; it has {}. Install a matching {} on the builder (it must be on packer's PATH), or change the pin",
                kind_name(kind),
                have.iter()
                    .map(|i| format!("{} ({})", i.version, i.path.display()))
                    .collect::<Vec<_>>()
                    .join(", "),
                kind_name(kind),
            ),
            log: String::new(),
        });
    };
    if let Some(p) = &pin
        && matches_pin(kind, &p.spec, &chosen.version) == Some(false)
    {
        warning = Some(format!(
            "warning: {} {} asks for {}, this builder has {}; using it, since hosts check only {}",
            p.source,
            p.spec,
            p.spec,
            chosen.version,
            match kind {
                RuntimeKind::Python => "the minor version",
                RuntimeKind::Node => "the major version",
            }
        ));
    }
    let why = match (&pin, &range) {
        (Some(p), _) => format!("for `{}` from {}", p.spec, p.source),
        (None, Some(r)) => format!("for `{}` from {}", r.spec, r.source),
        (None, None) => "no version pinned: the builder's default".into(),
    };
    log.line(format!(
        "{}: {} at {} ({why}; this builder has {})",
        key_of(kind),
        chosen.version,
        chosen.path.display(),
        have.iter()
            .map(|i| i.version.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    if let Some(w) = warning {
        log.line(w);
    }
    Ok(chosen.clone())
}

fn key_of(kind: RuntimeKind) -> &'static str {
    match kind {
        RuntimeKind::Python => "python",
        RuntimeKind::Node => "node",
    }
}

/// Whether a pin is a version, a range or a name this module knows.
fn pin_parses(kind: RuntimeKind, spec: &str) -> bool {
    let spec = normalized(spec);
    if matches!(
        spec,
        "system" | "node" | "stable" | "lts/*" | "latest" | "*"
    ) {
        return true;
    }
    if let Some(codename) = spec.strip_prefix("lts/") {
        return lts_major(codename).is_some();
    }
    if is_range(spec) {
        return matches_range(kind, spec, "0.0.0").is_some();
    }
    !spec.is_empty() && spec.split('.').all(|p| p.parse::<u64>().is_ok())
}

fn normalized(spec: &str) -> &str {
    let spec = spec.trim();
    spec.strip_prefix("python-")
        .or_else(|| spec.strip_prefix("python"))
        .or_else(|| spec.strip_prefix('v'))
        .unwrap_or(spec)
        .trim()
}

fn is_range(spec: &str) -> bool {
    spec.starts_with(['<', '>', '=', '!', '~', '^']) || spec.contains(['*', 'x', ' ', ','])
}

/// Whether `version` matches a pin: `Some(true)` exactly, `Some(false)` on
/// the parts hosts check only (a warning), `None` not at all.
pub(crate) fn matches_pin(kind: RuntimeKind, spec: &str, version: &str) -> Option<bool> {
    let spec = normalized(spec);
    if matches!(
        spec,
        "system" | "node" | "stable" | "lts/*" | "latest" | "*"
    ) {
        return Some(true);
    }
    if let Some(codename) = spec.strip_prefix("lts/") {
        let major = lts_major(codename)?;
        return version_parts(version)
            .first()
            .is_some_and(|m| *m == major)
            .then_some(true);
    }
    if is_range(spec) {
        return matches_range(kind, spec, version)?.then_some(true);
    }
    let want = version_parts(spec);
    if want.is_empty() || spec.split('.').any(|p| p.parse::<u64>().is_err()) {
        return None;
    }
    let have = version_parts(version);
    let checked = match kind {
        RuntimeKind::Python => 2,
        RuntimeKind::Node => 1,
    };
    let n = want.len().min(checked);
    if have.len() < n || want[..n] != have[..n] {
        return None;
    }
    Some(want.iter().zip(&have).all(|(w, h)| w == h) && have.len() >= want.len())
}

/// Whether `version` is within a range: PEP 440 specifiers for Python
/// (`>=3.10,<3.13`), npm ranges for Node (`>=18 <23`, `^20`, `20.x`).
/// `None` when the range does not parse.
pub(crate) fn matches_range(kind: RuntimeKind, spec: &str, version: &str) -> Option<bool> {
    match kind {
        RuntimeKind::Python => {
            let specs = pep440_rs::VersionSpecifiers::from_str(spec).ok()?;
            let v = pep440_rs::Version::from_str(version).ok()?;
            Some(specs.contains(&v))
        }
        RuntimeKind::Node => {
            let range = node_semver::Range::parse(spec).ok()?;
            let v = node_semver::Version::parse(version).ok()?;
            Some(range.satisfies(&v))
        }
    }
}

fn version_parts(v: &str) -> Vec<u64> {
    v.trim()
        .split('.')
        .map_while(|p| p.parse::<u64>().ok())
        .collect()
}

/// Node's LTS codenames (`lts/iron` in an `.nvmrc`).
fn lts_major(codename: &str) -> Option<u64> {
    const LTS: &[(&str, u64)] = &[
        ("argon", 4),
        ("boron", 6),
        ("carbon", 8),
        ("dubnium", 10),
        ("erbium", 12),
        ("fermium", 14),
        ("gallium", 16),
        ("hydrogen", 18),
        ("iron", 20),
        ("jod", 22),
        ("krypton", 24),
    ];
    let name = codename.trim().to_ascii_lowercase();
    LTS.iter().find(|(n, _)| *n == name).map(|(_, m)| *m)
}

/// Reads a file of the checkout; `None` when it is not there.
fn optional(src: &Path, name: &str) -> Result<Option<String>, BuildError> {
    match read_input(src, name) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(BuildError::io(format!("reading {name}"), e)),
    }
}

/// The first meaningful line of a version file.
fn first_line(text: &str) -> Option<String> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .find(|l| !l.is_empty())
        .map(str::to_string)
}

/// The pin a project's own files carry, by the module's order.
pub(crate) fn find_pin(kind: RuntimeKind, src: &Path) -> Result<Option<Pin>, BuildError> {
    let files: &[&str] = match kind {
        RuntimeKind::Python => &[".python-version"],
        RuntimeKind::Node => &[".nvmrc", ".node-version"],
    };
    for name in files {
        if let Some(text) = optional(src, name)?
            && let Some(spec) = first_line(&text)
        {
            return Ok(Some(Pin {
                spec,
                source: (*name).into(),
            }));
        }
    }
    if let Some(text) = optional(src, ".tool-versions")? {
        let names: &[&str] = match kind {
            RuntimeKind::Python => &["python"],
            RuntimeKind::Node => &["nodejs", "node"],
        };
        for line in text.lines() {
            let mut words = line.split('#').next().unwrap_or("").split_whitespace();
            if let (Some(tool), Some(spec)) = (words.next(), words.next())
                && names.contains(&tool)
            {
                return Ok(Some(Pin {
                    spec: spec.to_string(),
                    source: ".tool-versions".into(),
                }));
            }
        }
    }
    for name in ["mise.toml", ".mise.toml"] {
        let Some(text) = optional(src, name)? else {
            continue;
        };
        let parsed: toml::Table = toml::from_str(&text).map_err(|e| BuildError::BadEntry {
            path: name.into(),
            reason: format!("invalid TOML: {}", e.message()),
            log: String::new(),
        })?;
        let tool = parsed
            .get("tools")
            .and_then(|t| t.get(key_of(kind)))
            .and_then(|v| match v {
                toml::Value::String(s) => Some(s.clone()),
                toml::Value::Array(a) => a.first().and_then(|f| f.as_str()).map(String::from),
                toml::Value::Table(t) => {
                    t.get("version").and_then(|f| f.as_str()).map(String::from)
                }
                _ => None,
            });
        if let Some(spec) = tool {
            return Ok(Some(Pin {
                spec,
                source: name.into(),
            }));
        }
    }
    if kind == RuntimeKind::Python
        && let Some(text) = optional(src, "runtime.txt")?
        && let Some(spec) = first_line(&text)
    {
        return Ok(Some(Pin {
            spec,
            source: "runtime.txt".into(),
        }));
    }
    Ok(None)
}

/// The interpreters of one kind on packer's `PATH`: `python3` and every
/// `python3.N`, or `node`; one entry per real executable, the plain name's
/// first. Asked once per process (a pyenv shim takes a while to answer).
pub(crate) fn installed(kind: RuntimeKind) -> Vec<Interpreter> {
    static PYTHON: std::sync::OnceLock<Vec<Interpreter>> = std::sync::OnceLock::new();
    static NODE: std::sync::OnceLock<Vec<Interpreter>> = std::sync::OnceLock::new();
    match kind {
        RuntimeKind::Python => PYTHON.get_or_init(|| discover(kind)).clone(),
        RuntimeKind::Node => NODE.get_or_init(|| discover(kind)).clone(),
    }
}

fn discover(kind: RuntimeKind) -> Vec<Interpreter> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    let mut names: Vec<PathBuf> = Vec::new();
    let plain = key_of(kind).replace("python", "python3");
    for dir in std::env::split_paths(&path) {
        let p = dir.join(&plain);
        if p.is_file() {
            names.push(p);
            break;
        }
    }
    if kind == RuntimeKind::Python {
        for dir in std::env::split_paths(&path) {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            let mut found: Vec<PathBuf> = entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .and_then(|n| n.strip_prefix("python3."))
                        .is_some_and(|minor| {
                            !minor.is_empty() && minor.bytes().all(|b| b.is_ascii_digit())
                        })
                })
                .collect();
            found.sort();
            names.extend(found);
        }
    }
    let mut out: Vec<Interpreter> = Vec::new();
    for name in names {
        let Some(found) = probe(kind, &name) else {
            continue;
        };
        if !out.iter().any(|i| i.path == found.path) {
            out.push(found);
        }
    }
    out
}

fn probe(kind: RuntimeKind, program: &Path) -> Option<Interpreter> {
    let (flag, script) = match kind {
        RuntimeKind::Python => (
            "-c",
            "import os, sys; print('%d.%d.%d' % sys.version_info[:3]); print(os.path.realpath(sys.executable)); print(os.path.realpath(sys.base_prefix))",
        ),
        RuntimeKind::Node => (
            "-e",
            "const p = require('path'), fs = require('fs'); const e = fs.realpathSync(process.execPath); console.log(process.versions.node); console.log(e); console.log(p.dirname(p.dirname(e)))",
        ),
    };
    let out = Command::new(program)
        .args([flag, script])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .current_dir("/")
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines().map(str::trim);
    let version = lines.next()?.to_string();
    let path = PathBuf::from(lines.next()?);
    let prefix = PathBuf::from(lines.next()?);
    (!version.is_empty() && path.is_absolute()).then(|| Interpreter {
        kind,
        path,
        version,
        prefix: (prefix.is_absolute() && prefix != Path::new("/") && !prefix.starts_with("/usr"))
            .then_some(prefix),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_pins_match_on_the_minor_version_and_warn_below_it() {
        let py = RuntimeKind::Python;
        assert_eq!(matches_pin(py, "3.11", "3.11.7"), Some(true));
        assert_eq!(matches_pin(py, "3.11.7", "3.11.7"), Some(true));
        assert_eq!(matches_pin(py, "3.11.2", "3.11.7"), Some(false));
        assert_eq!(matches_pin(py, "3.12", "3.11.7"), None);
        assert_eq!(matches_pin(py, "python-3.11.7", "3.11.7"), Some(true));
        assert_eq!(matches_pin(py, ">=3.10", "3.11.7"), Some(true));
        assert_eq!(matches_pin(py, "system", "3.11.7"), Some(true));
        assert_eq!(matches_pin(py, "pypy3.9", "0.0.0"), None);
    }

    #[test]
    fn node_pins_match_on_the_major_version_and_ranges_as_npm_reads_them() {
        let node = RuntimeKind::Node;
        assert_eq!(matches_pin(node, "20", "20.20.2"), Some(true));
        assert_eq!(matches_pin(node, "v20.11.1", "20.20.2"), Some(false));
        assert_eq!(matches_pin(node, "22", "20.20.2"), None);
        assert_eq!(matches_pin(node, "lts/iron", "20.20.2"), Some(true));
        assert_eq!(matches_pin(node, "lts/jod", "20.20.2"), None);
        assert_eq!(matches_range(node, ">=18 <21", "20.20.2"), Some(true));
        assert_eq!(matches_range(node, "^22.1", "20.20.2"), Some(false));
        assert_eq!(matches_range(node, "18.x || 20.x", "20.20.2"), Some(true));
        assert_eq!(
            matches_range(RuntimeKind::Python, ">=3.10,<3.13", "3.11.7"),
            Some(true)
        );
        assert_eq!(
            matches_range(RuntimeKind::Python, ">=3.12", "3.11.7"),
            Some(false)
        );
        assert_eq!(
            matches_range(RuntimeKind::Python, "not a range", "3.11.7"),
            None
        );
    }

    #[test]
    fn pins_are_found_in_the_ecosystems_files_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let pin = |k| find_pin(k, dir.path()).unwrap();
        assert_eq!(pin(RuntimeKind::Python), None);
        std::fs::write(
            dir.path().join("mise.toml"),
            "[tools]\npython = \"3.10\"\nnode = { version = \"22\" }\n",
        )
        .unwrap();
        assert_eq!(pin(RuntimeKind::Python).unwrap().spec, "3.10");
        assert_eq!(pin(RuntimeKind::Node).unwrap().source, "mise.toml");
        std::fs::write(
            dir.path().join(".tool-versions"),
            "# tools\nnodejs 20.1.0\npython 3.11.7 3.10.2\n",
        )
        .unwrap();
        assert_eq!(
            pin(RuntimeKind::Python),
            Some(Pin {
                spec: "3.11.7".into(),
                source: ".tool-versions".into()
            })
        );
        assert_eq!(pin(RuntimeKind::Node).unwrap().spec, "20.1.0");
        std::fs::write(dir.path().join(".python-version"), "\n3.12\n").unwrap();
        std::fs::write(dir.path().join(".nvmrc"), "lts/iron\n").unwrap();
        assert_eq!(pin(RuntimeKind::Python).unwrap().source, ".python-version");
        assert_eq!(pin(RuntimeKind::Node).unwrap().spec, "lts/iron");
    }

    #[test]
    fn the_machines_own_interpreter_is_found_and_a_pin_it_lacks_is_named() {
        let have = installed(RuntimeKind::Python);
        assert!(!have.is_empty(), "this machine runs the tests with python3");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".python-version"), "3.99\n").unwrap();
        let e = choose(
            RuntimeKind::Python,
            dir.path(),
            None,
            None,
            &mut Log::default(),
        )
        .unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("`3.99` (from .python-version)") && msg.contains(&have[0].version),
            "{msg}"
        );
        let mut log = Log::default();
        let chosen = choose(
            RuntimeKind::Python,
            tempfile::tempdir().unwrap().path(),
            None,
            None,
            &mut log,
        )
        .unwrap();
        assert_eq!(chosen, have[0]);
        assert!(
            log.text().contains("the builder's default"),
            "{}",
            log.text()
        );
    }
}
