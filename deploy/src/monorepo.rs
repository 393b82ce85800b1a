//! Apps in a monorepo: an app's root (the subdirectory of its repository
//! it is built from) and its `[build] watch` patterns (the other paths of
//! the repository whose changes rebuild it), with the one rule for which
//! changed paths concern an app. AppTracker validates roots at registration
//! and matches pushes; packer validates watch patterns in `slipway.toml`
//! and builds from the root.

use std::fmt;

use crate::ParseError;

/// The longest root or watch pattern accepted.
const MAX_LEN: usize = 512;

/// The longest part (between two `/`) of a root or pattern.
const MAX_PART: usize = 255;

/// A repository-relative directory an app is built from
/// (`services/api`): `/`-separated parts of ASCII letters, digits and
/// `._-+@`, none empty, `.` or `..`, none `.git`, not absolute. One trailing
/// `/` is dropped.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AppRoot(String);

impl AppRoot {
    /// Parses and validates a root.
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        const KIND: &str = "app root";
        let trimmed = s.strip_suffix('/').unwrap_or(s);
        check_parts(KIND, s, trimmed, |part| {
            part.chars()
                .find(|c| !(c.is_ascii_alphanumeric() || "._-+@".contains(*c)))
                .map(|bad| {
                    format!(
                        "character {bad:?} is not allowed (a root is a plain directory path: \
                         letters, digits and ._-+@, parts joined by '/')"
                    )
                })
        })?;
        Ok(Self(trimmed.to_string()))
    }

    /// The root, without a trailing `/`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `path` (repository-relative, `/`-separated) is the root or
    /// inside it.
    pub fn contains(&self, path: &str) -> bool {
        path == self.0
            || path
                .strip_prefix(self.0.as_str())
                .is_some_and(|rest| rest.starts_with('/'))
    }
}

impl fmt::Display for AppRoot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for AppRoot {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl From<AppRoot> for String {
    fn from(r: AppRoot) -> String {
        r.0
    }
}

impl std::str::FromStr for AppRoot {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        Self::parse(s)
    }
}

/// A `[build] watch` pattern: a repository-relative path prefix, with `*`
/// (any characters but `/`), `?` (one character but `/`) and `**` (a whole
/// part: any number of parts) allowed. It matches a changed path when it
/// matches the path or one of the directories above it, so `libs/shared`
/// covers everything under it and `proto/*.proto` the files it names.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WatchPattern(String);

impl WatchPattern {
    /// Parses and validates a pattern.
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        const KIND: &str = "watch path";
        let trimmed = s.strip_suffix('/').unwrap_or(s);
        check_parts(KIND, s, trimmed, |part| {
            if part.contains("**") && part != "**" {
                return Some("`**` must be a whole part (`libs/**/*.py`)".to_string());
            }
            part.chars()
                .find(|c| c.is_control() || "\\[]{}!".contains(*c))
                .map(|bad| format!("character {bad:?} is not allowed"))
        })?;
        Ok(Self(trimmed.to_string()))
    }

    /// The pattern, without a trailing `/`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether a change to `path` (repository-relative, `/`-separated)
    /// concerns this pattern.
    pub fn matches(&self, path: &str) -> bool {
        let pattern: Vec<&str> = self.0.split('/').collect();
        let path: Vec<&str> = path.split('/').collect();
        prefix_match(&pattern, &path)
    }
}

impl fmt::Display for WatchPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether `pattern` matches `path` or one of its leading directories.
fn prefix_match(pattern: &[&str], path: &[&str]) -> bool {
    match pattern.split_first() {
        // The pattern is used up: what is left of the path is inside it.
        None => true,
        Some((&"**", rest)) => (0..=path.len()).any(|skip| prefix_match(rest, &path[skip..])),
        Some((first, rest)) => match path.split_first() {
            None => false,
            Some((part, path_rest)) => {
                part_match(first.as_bytes(), part.as_bytes()) && prefix_match(rest, path_rest)
            }
        },
    }
}

/// `*` and `?` within one part.
fn part_match(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => (0..=text.len()).any(|skip| part_match(rest, &text[skip..])),
        Some((b'?', rest)) => !text.is_empty() && part_match(rest, &text[1..]),
        Some((c, rest)) => text.first() == Some(c) && part_match(rest, &text[1..]),
    }
}

/// The rules roots and patterns share: not empty, not absolute, no empty,
/// `.`, `..` or `.git` part, bounded; `part` checks each part's characters.
fn check_parts(
    kind: &'static str,
    raw: &str,
    trimmed: &str,
    part: impl Fn(&str) -> Option<String>,
) -> Result<(), ParseError> {
    let err = |reason: String| Err(ParseError::new(kind, raw, reason));
    if trimmed.is_empty() {
        return err(
            "must not be empty (leave it out for the whole repository; a subdirectory is \
             written like `services/api`)"
                .into(),
        );
    }
    if raw.len() > MAX_LEN {
        return err(format!("must be at most {MAX_LEN} characters"));
    }
    if trimmed.starts_with('/') {
        return err("must be relative to the repository's top, without a leading '/'".into());
    }
    for p in trimmed.split('/') {
        match p {
            "" => return err("must not have empty parts (`a//b`)".into()),
            "." | ".." => return err(format!("must not have a `{p}` part")),
            ".git" => return err("must not name `.git`".into()),
            _ if p.len() > MAX_PART => {
                return err(format!("each part must be at most {MAX_PART} characters"));
            }
            _ => {}
        }
        if let Some(reason) = part(p) {
            return err(reason);
        }
    }
    Ok(())
}

/// Whether a commit message asks for no deploy: it holds `[skip deploy]`
/// or `[deploy skip]` (any case), the way `[skip ci]` and `[ci skip]` skip
/// CI. Returns the marker as written in the message.
pub fn skip_marker(message: &str) -> Option<&str> {
    const MARKERS: [&str; 2] = ["[skip deploy]", "[deploy skip]"];
    let lower = message.to_ascii_lowercase();
    MARKERS.iter().find_map(|m| {
        let at = lower.find(m)?;
        message.get(at..at + m.len())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roots_are_relative_plain_directories() {
        for ok in [
            "services/api",
            "api",
            "services/api/",
            "a.b/c-d/e_f/g+h/@scope",
            ".config/app",
        ] {
            assert!(AppRoot::parse(ok).is_ok(), "{ok}");
        }
        assert_eq!(
            AppRoot::parse("services/api/").unwrap().as_str(),
            "services/api"
        );
        for (bad, why) in [
            ("", "empty"),
            ("/", "empty"),
            ("/srv/app", "relative"),
            ("services//api", "empty parts"),
            ("services/../etc", "`..`"),
            ("..", "`..`"),
            ("./api", "`.`"),
            ("services/./api", "`.`"),
            ("api//", "empty parts"),
            (".git/hooks", "`.git`"),
            ("services/a pi", "' '"),
            ("services\\api", "'\\\\'"),
            ("services/*", "'*'"),
            ("services/api\n", "'\\n'"),
            ("services/åpi", "'å'"),
        ] {
            let e = AppRoot::parse(bad).expect_err(bad).to_string();
            assert!(e.contains("app root") && e.contains(why), "{bad:?}: {e}");
        }
        assert!(AppRoot::parse(&"a/".repeat(300)).is_err(), "too long");
        assert!(AppRoot::parse(&"a".repeat(256)).is_err(), "a part too long");
    }

    #[test]
    fn a_root_contains_itself_and_what_is_under_it_only() {
        let root = AppRoot::parse("services/api").unwrap();
        assert!(root.contains("services/api"));
        assert!(root.contains("services/api/app.py"));
        assert!(root.contains("services/api/deep/er/x"));
        assert!(
            !root.contains("services/api2/app.py"),
            "a sibling with the same start"
        );
        assert!(!root.contains("services/apx"));
        assert!(!root.contains("services"));
        assert!(!root.contains("other/services/api/app.py"));
    }

    #[test]
    fn watch_patterns_are_relative() {
        for ok in [
            "libs/shared",
            "libs/shared/",
            "proto/*.proto",
            "**/*.lock",
            "a/**/b",
        ] {
            assert!(WatchPattern::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "/libs",
            "../libs",
            "libs/../x",
            "a//b",
            "a/**b",
            "[ab]",
            "a\\b",
        ] {
            assert!(WatchPattern::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn watch_patterns_match_prefixes_and_globs() {
        let m = |p: &str, path: &str| WatchPattern::parse(p).unwrap().matches(path);
        // A directory covers what is under it, and only that.
        assert!(m("libs/shared", "libs/shared/util.py"));
        assert!(m("libs/shared", "libs/shared"));
        assert!(m("libs/shared/", "libs/shared/a/b.py"));
        assert!(!m("libs/shared", "libs/shared2/util.py"));
        assert!(!m("libs/shared", "libs/other.py"));
        assert!(
            !m("libs/shared", "x/libs/shared/util.py"),
            "anchored at the top"
        );
        // A file.
        assert!(m("go.work", "go.work"));
        assert!(!m("go.work", "go.work.sum"));
        // `*` and `?` stay within a part.
        assert!(m("proto/*.proto", "proto/api.proto"));
        assert!(!m("proto/*.proto", "proto/v1/api.proto"));
        assert!(!m("proto/*.proto", "proto/api.txt"));
        assert!(m("libs/*/py", "libs/a/py/x.py"));
        assert!(m("v?/x", "v1/x"));
        assert!(!m("v?/x", "v10/x"));
        // `**` spans any number of parts, none included.
        assert!(m("**/*.lock", "Cargo.lock"));
        assert!(m("**/*.lock", "a/b/c/yarn.lock"));
        assert!(!m("**/*.lock", "a/b/lockfile"));
        assert!(m("libs/**/schema.sql", "libs/schema.sql"));
        assert!(m("libs/**/schema.sql", "libs/a/b/schema.sql"));
        assert!(!m("libs/**/schema.sql", "other/a/schema.sql"));
        assert!(m("**", "anything/at/all"));
    }

    #[test]
    fn skip_markers_are_found_in_any_case_and_nothing_else() {
        assert_eq!(
            skip_marker("docs: typo [skip deploy]"),
            Some("[skip deploy]")
        );
        assert_eq!(
            skip_marker("[Deploy Skip] wip\n\nbody"),
            Some("[Deploy Skip]")
        );
        assert_eq!(
            skip_marker("subject\n\nlonger text [SKIP DEPLOY]"),
            Some("[SKIP DEPLOY]")
        );
        for no in [
            "skip deploy",
            "[skip ci]",
            "[ci skip]",
            "[skip-deploy]",
            "[skip  deploy]",
            "(skip deploy)",
            "",
        ] {
            assert_eq!(skip_marker(no), None, "{no:?}");
        }
        // Not confused by characters whose lowercase is longer.
        assert_eq!(skip_marker("İİ [skip deploy]"), Some("[skip deploy]"));
    }
}
