//! Which pushes build an app in a monorepo: one whose changed paths (the
//! per-commit `added`, `modified` and `removed` lists of the push payload)
//! touch the app's root or its `[build] watch` patterns (those of its
//! newest successful build). When the payload cannot say for sure (a new
//! branch, a force push, no or a possibly cut commit list, a commit
//! without file lists) or the app's watch patterns are unknown, the push
//! builds: a push is never skipped on a guess.

use std::collections::BTreeSet;

use deploy::{AppRoot, WatchPattern};
use serde_json::Value;

/// The most commits a provider is known to list in a push (GitLab's
/// cap; GitHub's timeline events too): a push listing this many may have
/// more.
const LISTED_COMMITS_MAX: usize = 20;

/// The paths a push changed, as its payload tells them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Changes {
    /// Every path the pushed commits added, modified or removed.
    Known(BTreeSet<String>),
    /// The payload cannot tell; why.
    Unknown(String),
}

/// Reads the changed paths of a push payload (GitHub, GitLab and
/// Gitea/Forgejo share the shape: `commits[]` with `added`, `modified`,
/// `removed`; counts in `total_commits_count` or `total_commits`).
pub(super) fn changed_paths(v: &Value) -> Changes {
    let unknown = |why: &str| Changes::Unknown(why.to_string());
    let before = v.get("before").and_then(Value::as_str).unwrap_or("");
    if before.is_empty() || before.chars().all(|c| c == '0') {
        return unknown("a new branch: no earlier commit to compare with");
    }
    if v.get("forced").and_then(Value::as_bool) == Some(true) {
        return unknown("a force push: the commits it replaced are not listed");
    }
    let Some(commits) = v.get("commits").and_then(Value::as_array) else {
        return unknown("the payload lists no commits");
    };
    if commits.is_empty() {
        return unknown("the payload lists no commits");
    }
    let total = ["total_commits_count", "total_commits"]
        .iter()
        .find_map(|k| v.get(*k).and_then(Value::as_u64));
    if let Some(total) = total
        && total > commits.len() as u64
    {
        return Changes::Unknown(format!(
            "the payload lists {} of the push's {total} commits",
            commits.len()
        ));
    }
    if commits.len() >= LISTED_COMMITS_MAX && total.is_none() {
        return Changes::Unknown(format!(
            "the payload lists {} commits, and may have left some out",
            commits.len()
        ));
    }
    let mut paths = BTreeSet::new();
    for commit in commits {
        for list in ["added", "modified", "removed"] {
            let Some(items) = commit.get(list).and_then(Value::as_array) else {
                return Changes::Unknown(format!("a commit of the push has no `{list}` list"));
            };
            for item in items {
                let Some(path) = item.as_str() else {
                    return Changes::Unknown(format!(
                        "a commit's `{list}` list holds something other than paths"
                    ));
                };
                paths.insert(path.trim_start_matches('/').to_string());
            }
        }
    }
    Changes::Known(paths)
}

/// The message of the push's head commit (`after`): `head_commit`, else
/// the listed commit with that id.
pub(super) fn head_message<'a>(v: &'a Value, after: &str) -> Option<&'a str> {
    let message = |c: &'a Value| c.get("message").and_then(Value::as_str);
    if let Some(head) = v.get("head_commit").filter(|h| !h.is_null())
        && head
            .get("id")
            .and_then(Value::as_str)
            .is_none_or(|id| id == after)
        && let Some(m) = message(head)
    {
        return Some(m);
    }
    v.get("commits")?
        .as_array()?
        .iter()
        .find(|c| c.get("id").and_then(Value::as_str) == Some(after))
        .and_then(message)
}

/// Whether a push builds an app, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Decision {
    Build(String),
    Skip(String),
}

/// The rule: an app without a root builds on every push; one with a root
/// builds when a changed path is under the root or matches one of its
/// watch patterns, and also whenever the changes or the patterns are
/// unknown (`watch` is `None`: no successful build said what they are).
pub(super) fn decide(
    root: Option<&AppRoot>,
    watch: Option<&[WatchPattern]>,
    changes: &Changes,
) -> Decision {
    let Some(root) = root else {
        return Decision::Build("the app is the whole repository".into());
    };
    let paths = match changes {
        Changes::Unknown(why) => {
            return Decision::Build(format!("cannot tell which paths changed: {why}"));
        }
        Changes::Known(paths) => paths,
    };
    if let Some(path) = paths.iter().find(|p| root.contains(p)) {
        return Decision::Build(format!("`{path}` is under the app's root `{root}`"));
    }
    let Some(watch) = watch else {
        return Decision::Build(format!(
            "no change under the app's root `{root}`, but its `[build] watch` paths are not \
             known yet (no successful build recorded them)"
        ));
    };
    for path in paths {
        if let Some(pattern) = watch.iter().find(|w| w.matches(path)) {
            return Decision::Build(format!("`{path}` matches `[build] watch` `{pattern}`"));
        }
    }
    let watched = if watch.is_empty() {
        "it has no `[build] watch` paths".to_string()
    } else {
        format!(
            "nor its `[build] watch` paths ({})",
            watch
                .iter()
                .map(WatchPattern::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    Decision::Skip(format!(
        "the push changed {} (e.g. `{}`), none under the app's root `{root}`; {watched}",
        match paths.len() {
            1 => "1 path".to_string(),
            n => format!("{n} paths"),
        },
        paths.iter().next().map(String::as_str).unwrap_or("nothing"),
    ))
}

/// The watch patterns stored with a build (a JSON array): `None` when
/// absent or unreadable, which counts as unknown.
pub(super) fn stored_watch(stored: Option<&str>) -> Option<Vec<WatchPattern>> {
    let list: Vec<String> = serde_json::from_str(stored?).ok()?;
    list.iter().map(|p| WatchPattern::parse(p).ok()).collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const SHA_A: &str = "1111111111111111111111111111111111111111";
    const SHA_B: &str = "2222222222222222222222222222222222222222";

    fn push(commits: Value) -> Value {
        json!({"before": SHA_A, "after": SHA_B, "commits": commits})
    }

    fn commit(id: &str, added: &[&str], modified: &[&str], removed: &[&str]) -> Value {
        json!({"id": id, "message": "m", "added": added, "modified": modified, "removed": removed})
    }

    fn known(paths: &[&str]) -> Changes {
        Changes::Known(paths.iter().map(|p| p.to_string()).collect())
    }

    #[test]
    fn changed_paths_are_the_union_of_every_commits_lists() {
        let v = push(json!([
            commit(SHA_A, &["services/a/new.py"], &["README.md"], &[]),
            commit(SHA_B, &[], &["services/a/app.py"], &["old/gone.txt"]),
        ]));
        assert_eq!(
            changed_paths(&v),
            known(&[
                "README.md",
                "old/gone.txt",
                "services/a/app.py",
                "services/a/new.py"
            ])
        );
    }

    #[test]
    fn what_the_payload_cannot_tell_is_unknown() {
        let unknown = |v: &Value, says: &str| match changed_paths(v) {
            Changes::Unknown(why) => assert!(why.contains(says), "{why}"),
            other => panic!("{other:?} for {v}"),
        };
        let one = || json!([commit(SHA_B, &[], &["a"], &[])]);
        let mut new_branch = push(one());
        new_branch["before"] = json!("0000000000000000000000000000000000000000");
        unknown(&new_branch, "new branch");
        let mut forced = push(one());
        forced["forced"] = json!(true);
        unknown(&forced, "force push");
        unknown(&push(json!([])), "no commits");
        unknown(&json!({"before": SHA_A, "after": SHA_B}), "no commits");
        // GitLab and Gitea count the commits they left out.
        let mut gitlab = push(one());
        gitlab["total_commits_count"] = json!(25);
        unknown(&gitlab, "1 of the push's 25");
        let mut gitea = push(one());
        gitea["total_commits"] = json!(2);
        unknown(&gitea, "1 of the push's 2");
        // Twenty listed, no count: maybe cut (GitHub).
        let twenty: Vec<Value> = (0..20).map(|_| commit(SHA_B, &[], &["a"], &[])).collect();
        unknown(&push(json!(twenty)), "may have left some out");
        // A commit without its lists.
        unknown(
            &push(json!([{"id": SHA_B, "added": [], "modified": ["a"]}])),
            "no `removed` list",
        );
        unknown(
            &push(json!([{"id": SHA_B, "added": [1], "modified": [], "removed": []}])),
            "other than paths",
        );
        // Counted and complete: known.
        let mut complete = push(one());
        complete["total_commits_count"] = json!(1);
        assert_eq!(changed_paths(&complete), known(&["a"]));
    }

    #[test]
    fn the_head_message_is_the_pushed_commits() {
        let mut v = push(json!([
            {"id": SHA_A, "message": "older [skip deploy]"},
            {"id": SHA_B, "message": "the head"},
        ]));
        assert_eq!(head_message(&v, SHA_B), Some("the head"), "GitLab: by id");
        v["head_commit"] = json!({"id": SHA_B, "message": "from head_commit"});
        assert_eq!(head_message(&v, SHA_B), Some("from head_commit"));
        v["head_commit"] = json!(null);
        assert_eq!(head_message(&v, SHA_B), Some("the head"));
        assert_eq!(head_message(&v, "3333"), None);
    }

    #[test]
    fn a_push_builds_an_app_when_it_touches_its_root_or_watch_paths_or_cannot_tell() {
        let root = AppRoot::parse("services/a").unwrap();
        let watch = vec![
            WatchPattern::parse("libs/shared").unwrap(),
            WatchPattern::parse("proto/*.proto").unwrap(),
        ];
        let w = Some(watch.as_slice());
        let builds = |d: Decision, says: &str| match d {
            Decision::Build(why) => assert!(why.contains(says), "{why}"),
            Decision::Skip(why) => panic!("skipped: {why}"),
        };
        let skips = |d: Decision| match d {
            Decision::Skip(why) => why,
            Decision::Build(why) => panic!("built: {why}"),
        };
        builds(
            decide(Some(&root), w, &known(&["README.md", "services/a/app.py"])),
            "`services/a/app.py` is under",
        );
        builds(
            decide(Some(&root), w, &known(&["libs/shared/x.py"])),
            "matches `[build] watch` `libs/shared`",
        );
        builds(
            decide(Some(&root), w, &known(&["proto/api.proto"])),
            "`proto/*.proto`",
        );
        let why = skips(decide(
            Some(&root),
            w,
            &known(&["services/b/app.py", "services/ab/x", "proto/v1/api.proto"]),
        ));
        assert!(
            why.contains("3 paths") && why.contains("`services/a`") && why.contains("libs/shared"),
            "{why}"
        );
        let why = skips(decide(Some(&root), Some(&[]), &known(&["services/b/x"])));
        assert!(why.contains("no `[build] watch`"), "{why}");
        // An empty but known change set touches nothing.
        skips(decide(Some(&root), w, &known(&[])));
        // Unknown changes, or unknown watch paths when the root is not
        // touched: build.
        builds(
            decide(Some(&root), w, &Changes::Unknown("a new branch".into())),
            "cannot tell which paths changed: a new branch",
        );
        builds(
            decide(Some(&root), None, &known(&["libs/shared/x.py"])),
            "not known yet",
        );
        // No root: the whole repository is the app.
        builds(decide(None, w, &known(&["anything"])), "whole repository");
        builds(decide(None, None, &known(&[])), "whole repository");
    }

    #[test]
    fn stored_watch_paths_are_read_or_unknown() {
        assert_eq!(
            stored_watch(Some(r#"["libs/shared"]"#)),
            Some(vec![WatchPattern::parse("libs/shared").unwrap()])
        );
        assert_eq!(stored_watch(Some("[]")), Some(vec![]));
        assert_eq!(stored_watch(None), None);
        assert_eq!(stored_watch(Some("not json")), None);
        assert_eq!(stored_watch(Some(r#"["../x"]"#)), None);
    }
}
