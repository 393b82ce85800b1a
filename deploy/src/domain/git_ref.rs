//! Git refs as a person writes them for one commit: a name (a branch, a
//! tag, a full ref name, a full or short sha, or `HEAD` for the tip of the
//! app's branch) followed by `~N`, `^` and `^N` steps back through history.
//! The rest of git's revision syntax names many commits, a file, a reflog
//! entry or a pattern, and is refused saying what to write instead.

use std::fmt;

use super::{GitRef, ParseError};

const KIND: &str = "git ref";

/// The longest ref accepted.
const MAX_LEN: usize = 255;

/// One step back through history, as a ref's suffix writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevStep {
    /// `~N` (`~` alone is `~1`): N first parents back.
    Ancestor(u32),
    /// `^N` (`^` alone is `^1`): the Nth parent of a merge; `^0` is the
    /// commit itself.
    Parent(u32),
}

impl fmt::Display for RevStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RevStep::Ancestor(n) => write!(f, "~{n}"),
            RevStep::Parent(n) => write!(f, "^{n}"),
        }
    }
}

/// The name and the suffix of a ref: split at the first `~` or `^`, which
/// no ref name may contain.
fn split(s: &str) -> (&str, &str) {
    s.split_at(s.find(['~', '^']).unwrap_or(s.len()))
}

/// Checks a ref as `GitRef::parse` does.
pub(super) fn check(s: &str) -> Result<(), ParseError> {
    parse(s).map(|_| ())
}

/// Reads a ref into its name and its steps, or says what is wrong with it.
fn parse(s: &str) -> Result<(&str, Vec<RevStep>), ParseError> {
    let refuse = |reason: String| Err(ParseError::new(KIND, s, reason));
    if s.is_empty() || s.len() > MAX_LEN {
        return refuse(format!("must be 1 to {MAX_LEN} characters"));
    }
    if s.starts_with('-') {
        return refuse(
            "must not start with '-' (it would read as an option): name a branch, tag or commit"
                .into(),
        );
    }
    if let Some(c) = s.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return refuse(format!(
            "must not contain whitespace or control characters (it holds {c:?})"
        ));
    }
    if let Some((from, to)) = s.split_once("..") {
        let to = to.trim_start_matches('.');
        let one = if to.is_empty() { from } else { to };
        return refuse(range(if one.is_empty() { "HEAD" } else { one }));
    }
    if s.contains("@{") {
        return refuse(
            "`@{...}` reads a reflog, and AppTracker has no reflog (it fetches the repository \
             and keeps no record of where its refs pointed): name the commit by branch, tag or \
             sha, or count back from a tip (`main~1`)"
                .into(),
        );
    }
    if s.starts_with(":/") {
        return refuse(
            "`:/text` searches commit messages, which AppTracker does not do: name the commit by \
             its sha"
                .into(),
        );
    }
    if let Some((commit, _path)) = s.split_once(':') {
        let instead = if commit.is_empty() {
            "name a branch, tag or commit".to_string()
        } else {
            format!("write the commit alone (`{commit}`)")
        };
        return refuse(format!("names a file, not a commit: {instead}"));
    }
    if let Some(c) = s.chars().find(|c| "*?[\\".contains(*c)) {
        return refuse(format!(
            "{c:?} is not allowed: `*`, `?`, `[` and `\\` make patterns, and a ref names one commit"
        ));
    }
    let (name, suffix) = split(s);
    if name.is_empty() {
        return match suffix.strip_prefix('^') {
            Some(rest) => refuse(range(split(rest).0)),
            None => refuse(format!(
                "needs a name before `{suffix}` (`HEAD{suffix}`, `main{suffix}`)"
            )),
        };
    }
    Ok((name, steps(s, name, suffix)?))
}

/// The reason a range is refused, suggesting `one` instead.
fn range(one: &str) -> String {
    format!("a range names many commits; name one (`{one}`)")
}

/// Reads the steps of `suffix` (what follows `name` in `s`).
fn steps(s: &str, name: &str, suffix: &str) -> Result<Vec<RevStep>, ParseError> {
    let refuse = |reason: String| Err(ParseError::new(KIND, s, reason));
    let mut out = Vec::new();
    let mut rest = suffix;
    while let Some(op) = rest.chars().next() {
        // What the ref names so far, for suggestions.
        let so_far = &s[..s.len() - rest.len()];
        rest = &rest[op.len_utf8()..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (number, after) = rest.split_at(digits);
        let n = match number {
            "" => 1,
            _ => match number.parse::<u32>() {
                Ok(n) => n,
                Err(_) => return refuse(format!("`{op}{number}` is too large a number")),
            },
        };
        match op {
            '~' => out.push(RevStep::Ancestor(n)),
            '^' if !number.is_empty() => out.push(RevStep::Parent(n)),
            '^' => {
                if let Some(r) = after
                    .strip_prefix("{}")
                    .or_else(|| after.strip_prefix("{commit}"))
                {
                    // A peel to the commit, which resolving does anyway.
                    rest = r;
                    continue;
                }
                if after.starts_with("{/") {
                    return refuse(
                        "`^{/text}` searches commit messages, which AppTracker does not do: \
                         name the commit by its sha"
                            .into(),
                    );
                }
                if let Some(inner) = after.strip_prefix('{') {
                    return refuse(match inner.split_once('}') {
                        Some((what, _)) => format!(
                            "`^{{{what}}}` asks for a {what}, not a commit: write `{so_far}` (a \
                             tag is taken as its commit already)"
                        ),
                        None => format!("`^{{` is not closed: write `{so_far}`"),
                    });
                }
                if after.starts_with(['!', '-']) {
                    return refuse(range(so_far));
                }
                if after.starts_with('@') {
                    return refuse(format!(
                        "`^@` names every parent of a commit; name one (`{so_far}^1`)"
                    ));
                }
                out.push(RevStep::Parent(1));
            }
            _ => {
                return refuse(format!(
                    "`{op}` cannot follow `{so_far}`: after the name `{name}` come only steps \
                     such as `~2`, `^` or `^2`"
                ));
            }
        }
        rest = after;
    }
    Ok(out)
}

impl GitRef {
    /// The name the ref starts from: `main` in `main~2`, the whole ref
    /// when it has no steps.
    pub fn name(&self) -> &str {
        split(&self.0).0
    }

    /// The steps back from [`GitRef::name`], in order: `[Parent(2),
    /// Ancestor(3)]` for `main^2~3`; none for a plain name (`main^{}` is
    /// plain too: resolving takes a tag's commit anyway).
    pub fn steps(&self) -> Vec<RevStep> {
        // Checked when parsed: this cannot fail.
        parse(&self.0).map(|(_, steps)| steps).unwrap_or_default()
    }

    /// Whether the ref starts from `HEAD` (or git's short `@`), which
    /// AppTracker takes as the tip of the app's branch: it has no working
    /// tree whose checkout `HEAD` could name.
    pub fn is_head(&self) -> bool {
        matches!(self.name(), "HEAD" | "@")
    }

    /// A branch to register an app with: a ref that names a branch, so no
    /// steps and not `HEAD` (which stands for the app's branch).
    pub fn parse_branch(s: impl Into<String>) -> Result<Self, ParseError> {
        let r = Self::parse(s)?;
        if r.is_head() {
            return Err(ParseError::new(
                "branch",
                r.as_str(),
                "`HEAD` stands for the app's branch: name the branch itself (`main`)",
            ));
        }
        if r.name() != r.as_str() {
            return Err(ParseError::new(
                "branch",
                r.as_str(),
                format!(
                    "names a commit, not a branch: register the branch (`{}`)",
                    r.name()
                ),
            ));
        }
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(s: &str) -> String {
        match GitRef::parse(s) {
            Ok(r) => panic!("{s:?} must be refused, got {r:?}"),
            Err(e) => {
                assert_eq!(e.kind, "git ref");
                e.reason
            }
        }
    }

    #[test]
    fn names_and_steps_are_accepted() {
        use RevStep::{Ancestor, Parent};
        let cases: &[(&str, &str, &[RevStep])] = &[
            ("main", "main", &[]),
            ("feature/x-1.2", "feature/x-1.2", &[]),
            ("refs/tags/v1", "refs/tags/v1", &[]),
            ("3f9c2ab", "3f9c2ab", &[]),
            ("HEAD", "HEAD", &[]),
            ("HEAD~1", "HEAD", &[Ancestor(1)]),
            ("HEAD~", "HEAD", &[Ancestor(1)]),
            ("main~2", "main", &[Ancestor(2)]),
            ("v1.4^", "v1.4", &[Parent(1)]),
            ("v1.4^2", "v1.4", &[Parent(2)]),
            ("3f9c2ab~1", "3f9c2ab", &[Ancestor(1)]),
            ("main^^", "main", &[Parent(1), Parent(1)]),
            ("main^2~3", "main", &[Parent(2), Ancestor(3)]),
            ("main^0", "main", &[Parent(0)]),
            ("main~0", "main", &[Ancestor(0)]),
            ("v2^{}", "v2", &[]),
            ("v2^{commit}~1", "v2", &[Ancestor(1)]),
            ("@~1", "@", &[Ancestor(1)]),
        ];
        for (s, name, steps) in cases {
            let r = GitRef::parse(*s).unwrap_or_else(|e| panic!("{s:?}: {e}"));
            assert_eq!(r.as_str(), *s, "kept as written");
            assert_eq!(r.name(), *name, "{s}");
            assert_eq!(r.steps(), *steps, "{s}");
        }
        assert!(GitRef::parse("HEAD~1").unwrap().is_head());
        assert!(GitRef::parse("@").unwrap().is_head());
        assert!(!GitRef::parse("HEADS").unwrap().is_head());
        assert_eq!(RevStep::Ancestor(3).to_string(), "~3");
    }

    #[test]
    fn refusals_say_what_is_wrong_and_what_to_write() {
        let cases = [
            ("-rf", "must not start with '-'"),
            ("ma in", "whitespace"),
            ("main\n", "control characters"),
            ("a..b", "a range names many commits; name one (`b`)"),
            ("main...dev", "a range names many commits; name one (`dev`)"),
            ("main..", "a range names many commits; name one (`main`)"),
            ("^main", "a range names many commits; name one (`main`)"),
            ("v1^!", "a range names many commits; name one (`v1`)"),
            ("v1^-", "a range names many commits; name one (`v1`)"),
            ("v1^@", "name one (`v1^1`)"),
            (
                "main:app.py",
                "names a file, not a commit: write the commit alone (`main`)",
            ),
            (":app.py", "names a file, not a commit"),
            (":/fix", "searches commit messages"),
            ("main^{/fix}", "searches commit messages"),
            ("main@{1}", "AppTracker has no reflog"),
            ("@{-1}", "AppTracker has no reflog"),
            ("v1^{tree}", "asks for a tree, not a commit: write `v1`"),
            ("v1^{", "`^{` is not closed: write `v1`"),
            ("rel*", "'*' is not allowed"),
            ("rel?", "'?' is not allowed"),
            ("rel[1]", "'[' is not allowed"),
            ("a\\b", "'\\\\' is not allowed"),
            ("~1", "needs a name before `~1` (`HEAD~1`"),
            ("main~x", "`x` cannot follow `main~`"),
            ("main~99999999999", "too large"),
            ("", "1 to 255"),
        ];
        for (s, expected) in cases {
            let r = reason(s);
            assert!(r.contains(expected), "{s:?}: {r:?} lacks {expected:?}");
        }
        assert!(GitRef::parse("x".repeat(256)).is_err());
        let e = GitRef::parse("a..b").unwrap_err().to_string();
        assert_eq!(
            e,
            "invalid git ref \"a..b\": a range names many commits; name one (`b`)"
        );
    }

    #[test]
    fn branches_are_names() {
        assert_eq!(GitRef::parse_branch("dev").unwrap().as_str(), "dev");
        let e = GitRef::parse_branch("main~1").unwrap_err();
        assert_eq!(e.kind, "branch");
        assert!(e.reason.contains("register the branch (`main`)"), "{e}");
        let e = GitRef::parse_branch("HEAD").unwrap_err();
        assert!(
            e.reason.contains("`HEAD` stands for the app's branch"),
            "{e}"
        );
        assert!(GitRef::parse_branch("a..b").is_err());
    }
}
