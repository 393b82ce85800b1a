//! What a deploy installs: a built version, or a git ref to build (or reuse
//! the build of). On the wire this stays two optional fields of
//! `CreateDeploy` (`version`, `git_ref`; exactly one); inside, it is this
//! one enum, decided once: by [`Source::from_arg`] where a person typed it,
//! by [`CreateDeploy::source`](crate::CreateDeploy::source) where a request
//! carries it.

use std::fmt;

use crate::{GitRef, ParseError, Version};

/// A built version, or a git ref.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `<build number>-<short sha>`, built already.
    Version(Version),
    /// A branch, tag or commit to resolve (and build when no build of its
    /// commit exists).
    Ref(GitRef),
}

impl Source {
    /// What a person typed (`deploy release APP 12-3f9c2ab` or
    /// `deploy release APP main`): a version when it looks built
    /// (`<number>-<hex, 7 or more>`), else a git ref.
    pub fn from_arg(s: &str) -> Result<Self, ParseError> {
        if Version::looks_built(s) {
            Ok(Source::Version(Version::parse(s)?))
        } else {
            Ok(Source::Ref(GitRef::parse(s)?))
        }
    }

    /// The two wire fields this source fills (exactly one is set).
    pub fn into_fields(self) -> (Option<Version>, Option<GitRef>) {
        match self {
            Source::Version(v) => (Some(v), None),
            Source::Ref(r) => (None, Some(r)),
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Version(v) => v.fmt(f),
            Source::Ref(r) => r.fmt(f),
        }
    }
}

/// A request that gave both `version` and `git_ref`, or neither.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("give exactly one of `version` and `git_ref`")]
pub struct NotOneSource;

impl crate::CreateDeploy {
    /// The one thing this request deploys.
    pub fn source(&self) -> Result<Source, NotOneSource> {
        match (&self.version, &self.git_ref) {
            (Some(v), None) => Ok(Source::Version(v.clone())),
            (None, Some(r)) => Ok(Source::Ref(r.clone())),
            _ => Err(NotOneSource),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_built_version_is_told_from_a_ref() {
        assert_eq!(
            Source::from_arg("12-3f9c2ab").ok(),
            Version::parse("12-3f9c2ab").ok().map(Source::Version)
        );
        for r in ["main", "v1.2", "3f9c2ab", "12-main", "12-3f9c"] {
            assert!(
                matches!(Source::from_arg(r), Ok(Source::Ref(_))),
                "{r} is a ref"
            );
        }
        assert!(Source::from_arg("").is_err());
    }

    #[test]
    fn a_request_deploys_exactly_one_source() {
        let v = Version::parse("1-abcdef0").ok();
        let r = GitRef::parse("main").ok();
        let req = |version: Option<Version>, git_ref: Option<GitRef>| {
            let mut req: crate::CreateDeploy = serde_json::from_value(serde_json::json!({
                "app": "hello", "cluster": "local"
            }))
            .expect("a minimal request parses");
            req.version = version;
            req.git_ref = git_ref;
            req
        };
        assert_eq!(
            req(v.clone(), None).source().map(|s| s.to_string()),
            Ok("1-abcdef0".to_string())
        );
        assert_eq!(
            req(None, r.clone()).source().map(|s| s.to_string()),
            Ok("main".to_string())
        );
        assert_eq!(req(v, r).source(), Err(NotOneSource));
        assert_eq!(req(None, None).source(), Err(NotOneSource));
    }
}
