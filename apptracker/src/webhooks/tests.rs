//! The webhook checks: signatures, tokens, delivery ids, payloads and
//! repository URLs, from hand-made deliveries.

use super::*;

/// Headers as a delivery brings them (the last value of a name wins).
#[derive(Default)]
struct HeaderMap(Vec<(&'static str, String)>);

impl HeaderMap {
    fn new() -> Self {
        Self::default()
    }

    fn insert(&mut self, name: &'static str, value: String) {
        self.0.push((name, value));
    }
}

impl Headers for HeaderMap {
    fn header(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[test]
fn repository_urls_compare_across_forms() {
    let n = normalize_repo_url;
    assert_eq!(n("https://github.com/Org/Repo.git"), "github.com/org/repo");
    assert_eq!(n("git@github.com:org/repo.git"), "github.com/org/repo");
    assert_eq!(n("ssh://git@github.com/org/repo"), "github.com/org/repo");
    assert_eq!(n("https://github.com/org/repo/"), "github.com/org/repo");
    assert_eq!(n("file:///srv/git/app.git"), "/srv/git/app");
    assert_eq!(n("/srv/git/app"), "/srv/git/app");
    assert_eq!(n("http://127.0.0.1:8080/app.git"), "127.0.0.1:8080/app");
    assert_ne!(
        n("https://github.com/org/repo"),
        n("https://github.com/org/other")
    );
}

#[test]
fn github_signatures_are_checked() {
    let body = br#"{"ref":"refs/heads/main"}"#;
    let mut mac = Hmac::<Sha256>::new_from_slice(b"s3cret").unwrap();
    mac.update(body);
    let good = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    let mut h = HeaderMap::new();
    h.insert("x-hub-signature-256", good.parse().unwrap());
    assert!(verify(Provider::GitHub, &h, body, b"s3cret").is_ok());
    assert!(
        verify(Provider::GitHub, &h, b"{}", b"s3cret").is_err(),
        "another body"
    );
    assert!(
        verify(Provider::GitHub, &h, body, b"other").is_err(),
        "another secret"
    );
    assert!(verify(Provider::GitHub, &HeaderMap::new(), body, b"s3cret").is_err());
}

#[test]
fn delivery_ids_are_read_per_provider() {
    let mut h = HeaderMap::new();
    h.insert("x-github-delivery", "gh-1".parse().unwrap());
    h.insert("x-gitlab-event-uuid", "gl-1".parse().unwrap());
    h.insert("x-forgejo-delivery", "fj-1".parse().unwrap());
    assert_eq!(delivery_id(Provider::GitHub, &h), Some("gh-1"));
    assert_eq!(delivery_id(Provider::GitLab, &h), Some("gl-1"));
    assert_eq!(delivery_id(Provider::Gitea, &h), Some("fj-1"));
    h.insert("x-gitea-delivery", "gt-1".parse().unwrap());
    assert_eq!(delivery_id(Provider::Gitea, &h), Some("gt-1"));
    let mut blank = HeaderMap::new();
    blank.insert("x-github-delivery", " ".parse().unwrap());
    assert_eq!(delivery_id(Provider::GitHub, &blank), None);
    assert_eq!(delivery_id(Provider::GitHub, &HeaderMap::new()), None);
}

#[test]
fn any_accepted_secret_verifies_and_no_other() {
    let body = b"{}";
    let mut mac = Hmac::<Sha256>::new_from_slice(b"old").unwrap();
    mac.update(body);
    let by_old = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    let mut h = HeaderMap::new();
    h.insert("x-hub-signature-256", by_old.parse().unwrap());
    let both = [SecretString::from("new"), SecretString::from("old")];
    assert!(verify_any(Provider::GitHub, &h, body, &both).is_ok());
    let only_new = [SecretString::from("new")];
    assert!(verify_any(Provider::GitHub, &h, body, &only_new).is_err());
    assert!(verify_any(Provider::GitHub, &h, body, &[]).is_err());
}

#[test]
fn gitlab_tokens_are_checked() {
    let mut h = HeaderMap::new();
    h.insert("x-gitlab-token", "s3cret".parse().unwrap());
    assert!(verify(Provider::GitLab, &h, b"", b"s3cret").is_ok());
    assert!(verify(Provider::GitLab, &h, b"", b"s3cret2").is_err());
}

/// The fuzz targets' entry point takes a delivery through the same steps
/// as `handle` and `push`: what they ignore, skip and build.
#[test]
fn the_fuzzing_entry_point_routes_as_a_delivery_is_routed() {
    let app = |root: Option<&str>| App {
        name: AppName::parse("web").unwrap(),
        git_url: "git@github.com:org/repo.git".into(),
        branch: "main".into(),
        auto_deploy: None,
        new_hosts: Default::default(),
        root: root.map(str::to_string),
        created_at: Timestamp(0),
    };
    let a = "1".repeat(40);
    let b = "2".repeat(40);
    let body = |git_ref: &str, message: &str, changed: &str| {
        serde_json::json!({
            "ref": git_ref, "before": a, "after": b,
            "repository": {"clone_url": "https://github.com/Org/Repo"},
            "head_commit": {"id": b, "message": message},
            "commits": [{"id": b, "message": message, "added": [], "modified": [changed], "removed": []}],
        })
        .to_string()
    };
    let run = |body: &str, root: Option<&str>| {
        let mut mac = Hmac::<Sha256>::new_from_slice(b"s3cret").unwrap();
        mac.update(body.as_bytes());
        let sig = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        let headers = [
            ("x-github-event", "push"),
            ("x-github-delivery", "d-1"),
            ("x-hub-signature-256", sig.as_str()),
        ];
        fuzzing::delivery(
            Provider::GitHub,
            &headers,
            body.as_bytes(),
            b"s3cret",
            &app(root),
            Some(r#"["libs/shared"]"#),
        )
    };
    let built = run(&body("refs/heads/main", "fix", "x.py"), None);
    assert!(built.verified);
    assert_eq!(built.event, "push");
    assert_eq!(built.delivery.as_deref(), Some("d-1"));
    assert_eq!(built.push, Ok(format!("build main {b}")));
    let tag = run(&body("refs/tags/v1", "fix", "x.py"), None);
    assert_eq!(
        tag.push,
        Ok("ignored: `refs/tags/v1` is not a branch".into())
    );
    let other = run(&body("refs/heads/dev", "fix", "x.py"), None);
    assert!(
        other
            .push
            .unwrap()
            .starts_with("ignored: `web` builds branch `main`")
    );
    let marked = run(&body("refs/heads/main", "docs [skip deploy]", "x.py"), None);
    assert_eq!(
        marked.push,
        Ok("skipped: its head commit says `[skip deploy]`".into())
    );
    let elsewhere = run(
        &body("refs/heads/main", "fix", "services/b/x.py"),
        Some("services/a"),
    );
    assert!(
        elsewhere
            .push
            .unwrap()
            .starts_with("skipped: the push changed 1 path")
    );
    let watched = run(
        &body("refs/heads/main", "fix", "libs/shared/x.py"),
        Some("services/a"),
    );
    assert_eq!(watched.push, Ok(format!("build main {b}")));
    assert!(run("not json", None).push.is_err());
}
