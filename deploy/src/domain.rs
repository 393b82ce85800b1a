//! Domain newtypes: names and ids parsed once at the edge, so the rest of the
//! code passes values that cannot be invalid.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

mod git_ref;

pub use git_ref::RevStep;

/// Why a name, id or selector was refused. The message says what was wrong
/// with which value, so it can be shown to a person as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} {value:?}: {reason}")]
pub struct ParseError {
    /// What was being parsed ("app name", "cluster", ...).
    pub kind: &'static str,
    /// The refused input, cut to a readable length.
    pub value: String,
    /// What rule it broke.
    pub reason: String,
}

impl ParseError {
    pub(crate) fn new(kind: &'static str, value: &str, reason: impl Into<String>) -> Self {
        let mut value = value.to_string();
        if value.len() > 80 {
            let mut cut = 77;
            while !value.is_char_boundary(cut) {
                cut -= 1;
            }
            value.truncate(cut);
            value.push_str("...");
        }
        Self {
            kind,
            value,
            reason: reason.into(),
        }
    }
}

/// Checks a name against the shared rule: 1..=max chars from `extra` plus
/// ASCII letters and digits, starting with a letter or digit.
fn check_name(
    kind: &'static str,
    s: &str,
    max: usize,
    lowercase_only: bool,
    extra: &[char],
) -> Result<(), ParseError> {
    if s.is_empty() {
        return Err(ParseError::new(kind, s, "must not be empty"));
    }
    if s.len() > max {
        return Err(ParseError::new(
            kind,
            s,
            format!("must be at most {max} characters"),
        ));
    }
    let first = s.chars().next().unwrap_or('-');
    if !first.is_ascii_alphanumeric() {
        return Err(ParseError::new(
            kind,
            s,
            "must start with a letter or a digit",
        ));
    }
    if let Some(bad) = s.chars().find(|c| {
        let allowed = if lowercase_only {
            c.is_ascii_lowercase() || c.is_ascii_digit()
        } else {
            c.is_ascii_alphanumeric()
        };
        !(allowed || extra.contains(c))
    }) {
        let allowed = if lowercase_only {
            "lowercase letters, digits"
        } else {
            "letters, digits"
        };
        let extra: String = extra.iter().map(|c| format!(" '{c}'")).collect();
        return Err(ParseError::new(
            kind,
            s,
            format!("character {bad:?} is not allowed (use {allowed} and{extra})"),
        ));
    }
    Ok(())
}

/// Defines a string newtype with a validating `parse`, `FromStr`, `Display`,
/// `AsRef<str>` and serde through `TryFrom<String>`.
macro_rules! string_newtype {
    ($(#[$doc:meta])* $name:ident, $kind:literal, |$s:ident| $check:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Parses and validates.
            pub fn parse(s: impl Into<String>) -> Result<Self, ParseError> {
                let $s: String = s.into();
                let check: Result<(), ParseError> = $check;
                check?;
                Ok(Self($s))
            }

            /// The validated string.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = ParseError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = ParseError;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                Self::parse(s)
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

string_newtype!(
    /// An app's name: lowercase letters, digits and '-', at most 63 characters
    /// (it becomes a directory name on every host).
    AppName,
    "app name",
    |s| check_name("app name", &s, 63, true, &['-'])
);

string_newtype!(
    /// A cluster's name: lowercase letters, digits and '-', at most 63
    /// characters (it becomes a bus channel name).
    Cluster,
    "cluster",
    |s| check_name("cluster", &s, 63, true, &['-'])
);

string_newtype!(
    /// A host's name, as in DNS: letters, digits, '-' and '.', at most 253
    /// characters.
    HostName,
    "host name",
    |s| check_name("host name", &s, 253, false, &['-', '.'])
);

string_newtype!(
    /// A release version, `<build number>-<short sha>` for built releases. Any
    /// name of letters, digits, '.', '_', '+' and '-' up to 128 characters is
    /// accepted, but never `.` or `..` (it becomes a directory name).
    Version,
    "version",
    |s| check_name("version", &s, 128, false, &['.', '_', '+', '-'])
);

string_newtype!(
    /// A SHA-256 digest as 64 lowercase hex digits.
    Sha256,
    "sha256",
    |s| {
        if s.len() != 64 {
            Err(ParseError::new("sha256", &s, "must be 64 hex digits"))
        } else if !s.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)) {
            Err(ParseError::new("sha256", &s, "must be lowercase hex digits"))
        } else {
            Ok(())
        }
    }
);

string_newtype!(
    /// A git ref as a person gives it, naming one commit: a branch, a tag,
    /// a full ref name, a full or short sha, or `HEAD` (the tip of the
    /// app's branch), with `~N`, `^` and `^N` steps back from it
    /// (`main~2`, `v1.4^`, `3f9c2ab~1`, `HEAD~1`). Ranges, paths, reflog
    /// entries and patterns are refused, saying what to write instead (see
    /// `git_ref.rs`). Kept as written: it is the build's label.
    GitRef,
    "git ref",
    |s| git_ref::check(&s)
);

impl Version {
    /// The version of a build: `<build number>-<first 7 hex digits of sha>`.
    pub fn for_build(number: i64, commit: &str) -> Result<Self, ParseError> {
        let short: String = commit.chars().take(7).collect();
        Self::parse(format!("{number}-{short}"))
    }

    /// Whether this looks like a built version (`<number>-<hex>`), which is
    /// how the CLI tells a version from a git ref.
    pub fn looks_built(s: &str) -> bool {
        match s.split_once('-') {
            Some((n, sha)) => {
                !n.is_empty()
                    && n.chars().all(|c| c.is_ascii_digit())
                    && sha.len() >= 7
                    && sha.chars().all(|c| c.is_ascii_hexdigit())
            }
            None => false,
        }
    }
}

/// Defines an integer id newtype.
macro_rules! id_newtype {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub i64);

        impl FromStr for $name {
            type Err = ParseError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                s.trim_start_matches('#')
                    .parse::<i64>()
                    .ok()
                    .filter(|n| *n > 0)
                    .map(Self)
                    .ok_or_else(|| ParseError::new($kind, s, "must be a positive number"))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }
    };
}

id_newtype!(
    /// A deploy's id, as the database numbers them.
    DeployId,
    "deploy id"
);
id_newtype!(
    /// A build's id, as the database numbers them.
    BuildId,
    "build id"
);

/// Which hosts of a cluster a deploy targets: a regular expression that must
/// match the whole host name. Size-limited so a request cannot make the
/// server compile a huge automaton.
///
/// The pattern is parsed on its own, and the anchors are added around its
/// syntax tree, never pasted around its text: whatever the pattern holds
/// (`a)|(b`, inline flags, comments in `(?x)` mode), it can only ever match
/// a host name from its first character to its last.
#[derive(Clone, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct HostSelector {
    source: String,
    regex: regex_automata::meta::Regex,
}

/// Compiled selectors by source: deploy lists parse one per row, and a
/// grabber one per bus message, mostly the same few patterns.
static COMPILED: std::sync::LazyLock<
    std::sync::Mutex<std::collections::HashMap<String, regex_automata::meta::Regex>>,
> = std::sync::LazyLock::new(Default::default);

/// How many compiled selectors [`COMPILED`] keeps; it starts afresh when
/// full, which bounds its memory whatever patterns arrive.
const COMPILED_CAP: usize = 256;

/// The largest automaton a selector may compile to, in bytes.
const SELECTOR_SIZE_LIMIT: usize = 1 << 20;

impl HostSelector {
    /// The longest pattern accepted.
    pub const MAX_LEN: usize = 1024;

    /// Parses a pattern; it must match the whole host name.
    pub fn parse(s: impl Into<String>) -> Result<Self, ParseError> {
        let source: String = s.into();
        if source.is_empty() {
            return Err(ParseError::new("host regex", &source, "must not be empty"));
        }
        if source.len() > Self::MAX_LEN {
            return Err(ParseError::new(
                "host regex",
                &source,
                format!("must be at most {} characters", Self::MAX_LEN),
            ));
        }
        let cached = COMPILED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&source)
            .cloned();
        let regex = match cached {
            Some(r) => r,
            None => {
                let r = Self::compile(&source)?;
                let mut cache = COMPILED
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if cache.len() >= COMPILED_CAP {
                    cache.clear();
                }
                cache.insert(source.clone(), r.clone());
                r
            }
        };
        Ok(Self { source, regex })
    }

    /// Compiles `^(?:source)$`, built from the parsed pattern.
    fn compile(source: &str) -> Result<regex_automata::meta::Regex, ParseError> {
        use regex_syntax::hir::{Hir, Look};
        // The regex crates' messages span several lines with a caret under
        // the culprit; keep the last line, which says what.
        let refused = |msg: String| {
            let reason = msg
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("not a valid regular expression")
                .trim()
                .trim_start_matches("error: ")
                .to_string();
            ParseError::new("host regex", source, reason)
        };
        let parsed = regex_syntax::Parser::new()
            .parse(source)
            .map_err(|e| refused(e.to_string()))?;
        let whole = Hir::concat(vec![Hir::look(Look::Start), parsed, Hir::look(Look::End)]);
        let config = regex_automata::meta::Config::new()
            .nfa_size_limit(Some(SELECTOR_SIZE_LIMIT))
            .onepass_size_limit(Some(SELECTOR_SIZE_LIMIT))
            .dfa_size_limit(Some(SELECTOR_SIZE_LIMIT))
            .hybrid_cache_capacity(SELECTOR_SIZE_LIMIT);
        regex_automata::meta::Regex::builder()
            .configure(config)
            .build_from_hir(&whole)
            .map_err(|e| refused(e.to_string()))
    }

    /// The selector that matches every host.
    pub fn all() -> Self {
        Self::parse(".*").unwrap_or_else(|_| unreachable!("`.*` is a valid selector"))
    }

    /// Whether the host is selected: the pattern matches its whole name.
    pub fn matches(&self, host: &HostName) -> bool {
        self.regex.is_match(host.as_str())
    }

    /// The pattern as given.
    pub fn as_str(&self) -> &str {
        &self.source
    }
}

impl Default for HostSelector {
    fn default() -> Self {
        Self::all()
    }
}

impl fmt::Debug for HostSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HostSelector({:?})", self.source)
    }
}

impl fmt::Display for HostSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl PartialEq for HostSelector {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}
impl Eq for HostSelector {}

impl FromStr for HostSelector {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for HostSelector {
    type Error = ParseError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(s)
    }
}

impl From<HostSelector> for String {
    fn from(v: HostSelector) -> String {
        v.source
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_names() {
        assert!(AppName::parse("hello-python").is_ok());
        assert!(AppName::parse("a").is_ok());
        let e = AppName::parse("Hello").unwrap_err();
        assert!(e.to_string().contains("'H'"), "{e}");
        assert!(AppName::parse("").is_err());
        assert!(AppName::parse("-x").is_err());
        assert!(AppName::parse("a/b").is_err());
        assert!(AppName::parse("x".repeat(64)).is_err());
    }

    #[test]
    fn versions_cannot_escape_a_directory() {
        assert!(Version::parse("17-3f9c2ab").is_ok());
        assert!(Version::parse("1.2.3+meta").is_ok());
        assert!(Version::parse("..").is_err());
        assert!(Version::parse(".").is_err());
        assert!(Version::parse("a/../b").is_err());
        assert_eq!(
            Version::for_build(17, "3f9c2ab0123").unwrap().as_str(),
            "17-3f9c2ab"
        );
        assert!(Version::looks_built("17-3f9c2ab"));
        assert!(!Version::looks_built("main"));
        assert!(!Version::looks_built("release-2024"));
    }

    #[test]
    fn host_names() {
        assert!(HostName::parse("web-1.prod.example").is_ok());
        assert!(HostName::parse("local-1").is_ok());
        assert!(HostName::parse("a b").is_err());
    }

    #[test]
    fn sha256() {
        assert!(Sha256::parse("a".repeat(64)).is_ok());
        assert!(Sha256::parse("A".repeat(64)).is_err());
        assert!(Sha256::parse("a".repeat(63)).is_err());
    }

    #[test]
    fn selectors_match_whole_names() {
        let s = HostSelector::parse("local-[12]").unwrap();
        assert!(s.matches(&HostName::parse("local-1").unwrap()));
        assert!(s.matches(&HostName::parse("local-2").unwrap()));
        assert!(!s.matches(&HostName::parse("local-3").unwrap()));
        assert!(!s.matches(&HostName::parse("local-12").unwrap()));
        assert!(HostSelector::all().matches(&HostName::parse("x").unwrap()));
    }

    /// Patterns that try to escape "the whole host name" (the anchors
    /// used to be pasted around the text: `local)|(x` became
    /// `^(?:local)|(x)$`, every host starting with `local`), and the hosts
    /// each must and must not select.
    #[test]
    fn tricky_selectors_match_whole_names_only() {
        // (pattern, selected, not selected); `None` for a refused pattern.
        type Case = (
            &'static str,
            Option<(&'static [&'static str], &'static [&'static str])>,
        );
        let cases: &[Case] = &[
            ("a)|(b", None),
            ("local)|(x", None),
            ("local-1)|(.*", None),
            ("(?:x)|.*", Some((&["x", "local-1", "web.prod"], &[]))),
            (
                "(?:local)|x",
                Some((&["local", "x"], &["local-1", "xx", "ax"])),
            ),
            (
                "local|web",
                Some((&["local", "web"], &["local-1", "web-2", "localweb"])),
            ),
            ("a|ab", Some((&["a", "ab"], &["abc", "b"]))),
            (
                "(?i)LOCAL-1",
                Some((
                    &["local-1", "LOCAL-1", "Local-1"],
                    &["local-12", "xlocal-1"],
                )),
            ),
            ("(?i)local", Some((&["LOCAL"], &["local-1"]))),
            // An inline flag alone is the empty pattern: no host name is empty.
            ("(?s)", Some((&[], &["local-1", "a"]))),
            ("(?s).", Some((&["a"], &["ab", "local-1"]))),
            ("(?m)local$", Some((&["local"], &["local-1"]))),
            ("(?m)^local", Some((&["local"], &["local-1"]))),
            (
                "(?x) local \\- 1 # a comment",
                Some((&["local-1"], &["local-12"])),
            ),
            (".*", Some((&["local-1", "x"], &[]))),
            (
                "local",
                Some((&["local"], &["local-1", "xlocal", "local."])),
            ),
            ("local-", Some((&["local-"], &["local-1"]))),
            ("^local-1$", Some((&["local-1"], &["local-12", "xlocal-1"]))),
            ("^local", Some((&["local"], &["local-1"]))),
            ("local$", Some((&["local"], &["xlocal"]))),
            (
                "^(local|web)-1$|db",
                Some((&["local-1", "web-1", "db"], &["db-1", "local-12"])),
            ),
            (
                "local-[12]",
                Some((&["local-1", "local-2"], &["local-3", "local-12"])),
            ),
            (
                "local-\\d+",
                Some((&["local-1", "local-12"], &["local-", "local-1a"])),
            ),
            ("()", Some((&[], &["local-1"]))),
            ("(?:)|local", Some((&["local"], &["local-1"]))),
            ("(", None),
            (")", None),
            // In `(?x)` mode `#` starts a comment: this is `local`, and the
            // comment cannot reach past the pattern.
            ("(?x)local#)|(.*", Some((&["local"], &["local-1", "x"]))),
        ];
        for (pattern, expected) in cases {
            let parsed = HostSelector::parse(*pattern);
            let Some((yes, no)) = expected else {
                assert!(parsed.is_err(), "{pattern:?} must be refused");
                continue;
            };
            let s = parsed.unwrap_or_else(|e| panic!("{pattern:?}: {e}"));
            for host in *yes {
                let h = HostName::parse(*host).unwrap();
                assert!(s.matches(&h), "{pattern:?} must select {host:?}");
            }
            for host in *no {
                let h = HostName::parse(*host).unwrap();
                assert!(!s.matches(&h), "{pattern:?} must not select {host:?}");
            }
        }
        // The empty pattern is refused, as before.
        assert!(HostSelector::parse("").is_err());
    }

    #[test]
    fn compiled_selectors_are_shared_and_stay_correct() {
        let a = HostSelector::parse("web-[0-9]+").unwrap();
        let b = HostSelector::parse("web-[0-9]+").unwrap();
        let h = HostName::parse("web-7").unwrap();
        assert!(a.matches(&h) && b.matches(&h));
        assert_eq!(a, b);
        // Past the cap the cache starts afresh; selectors keep working.
        for i in 0..(COMPILED_CAP + 10) {
            let s = HostSelector::parse(format!("host-{i}")).unwrap();
            assert!(s.matches(&HostName::parse(format!("host-{i}")).unwrap()));
            assert!(!s.matches(&HostName::parse(format!("host-{i}0")).unwrap()));
        }
        assert!(a.matches(&h));
    }

    #[test]
    fn huge_selectors_are_refused() {
        // Small to type, too big to compile.
        let e = HostSelector::parse("\\w{1000}\\w{1000}").unwrap_err();
        assert_eq!(e.kind, "host regex");
    }

    #[test]
    fn bad_selectors_say_why() {
        let e = HostSelector::parse("local-[12").unwrap_err();
        assert_eq!(e.kind, "host regex");
        assert!(e.to_string().contains("local-[12"), "{e}");
        assert!(HostSelector::parse("a".repeat(2000)).is_err());
        assert!(HostSelector::parse("").is_err());
    }

    #[test]
    fn serde_validates() {
        let ok: AppName = serde_json::from_str("\"hello\"").unwrap();
        assert_eq!(ok.as_str(), "hello");
        let bad = serde_json::from_str::<AppName>("\"../x\"").unwrap_err();
        assert!(bad.to_string().contains("invalid app name"), "{bad}");
    }
}
