//! Webhook deliveries (GitHub, GitLab, Gitea/Forgejo push payloads), through
//! every step AppTracker takes before it touches its database
//! (`apptracker::fuzzing::delivery`: the signature, the event, the delivery
//! id, the payload, the branch and repository, `[skip deploy]`, the
//! monorepo filter): never a panic; a delivery signed with the app's secret
//! is accepted and the same signature over another body is not.
//!
//! The input: one byte of settings, then the body.
//!   bits 0-1  the provider: GitHub, GitLab, Gitea, unknown
//!   bit 2     signed with the app's secret (else unsigned)
//!   bit 3     the app has a root (`services/a`: a monorepo app)
//!   bit 4     its newest build recorded `[build] watch` paths
//!   bit 5     the app builds branch `dev` (else `main`)
#![no_main]

use apptracker::fuzzing::delivery;
use deploy::{App, AppName, NewHostPolicy, Timestamp, WebhookProvider};
use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use sha2::Sha256;

const SECRET: &[u8] = b"fuzz-webhook-secret";

fn hmac_hex(body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET).expect("any key length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

fuzz_target!(|data: &[u8]| {
    let Some((&settings, body)) = data.split_first() else {
        return;
    };
    let provider = [
        WebhookProvider::GitHub,
        WebhookProvider::GitLab,
        WebhookProvider::Gitea,
        WebhookProvider::Unknown,
    ][usize::from(settings & 3)];
    let signed = settings & 4 != 0;
    let app = App {
        name: AppName::parse("fuzz-app").expect("app name"),
        git_url: "https://github.com/org/repo.git".into(),
        branch: if settings & 32 != 0 { "dev" } else { "main" }.into(),
        auto_deploy: None,
        new_hosts: NewHostPolicy::default(),
        root: (settings & 8 != 0).then(|| "services/a".into()),
        created_at: Timestamp(0),
    };
    let watch = (settings & 16 != 0).then_some(r#"["libs/shared", "proto/*.proto"]"#);

    let headers_for = |body: &[u8]| -> Vec<(&'static str, String)> {
        let mut h = vec![
            ("x-github-event", "push".to_string()),
            ("x-gitlab-event", "Push Hook".to_string()),
            ("x-gitea-event", "push".to_string()),
            ("x-github-delivery", "0b7c5f3e-1d6c-11f0-8a4a-2f1b5c6d7e8f".to_string()),
        ];
        if signed {
            let sig = hmac_hex(body);
            h.push(("x-hub-signature-256", format!("sha256={sig}")));
            h.push(("x-gitea-signature", sig));
            h.push((
                "x-gitlab-token",
                String::from_utf8_lossy(SECRET).into_owned(),
            ));
        }
        h
    };
    let owned = headers_for(body);
    let headers: Vec<(&str, &str)> = owned.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let handled = delivery(provider, &headers, body, SECRET, &app, watch);

    let known = provider != WebhookProvider::Unknown;
    assert_eq!(handled.verified, signed && known, "{handled:?}");
    assert_eq!(handled.event, "push");
    if let Ok(outcome) = &handled.push {
        assert!(
            outcome.starts_with("ignored: ")
                || outcome.starts_with("skipped: ")
                || outcome.starts_with("build "),
            "{outcome}"
        );
        if outcome.starts_with("build ") || outcome.starts_with("skipped: ") {
            // Only the app's own branch of its own repository gets this far.
            let v: serde_json::Value = serde_json::from_slice(body).expect("parsed before");
            assert_eq!(v["ref"].as_str(), Some(format!("refs/heads/{}", app.branch).as_str()));
        }
    }

    // The signature of this body does not sign another (GitLab's token is
    // not a signature, so it does).
    if signed && matches!(provider, WebhookProvider::GitHub | WebhookProvider::Gitea) {
        let mut other = body.to_vec();
        match other.first_mut() {
            Some(b) => *b ^= 1,
            None => other.push(b'{'),
        }
        let forged = delivery(provider, &headers, &other, SECRET, &app, watch);
        assert!(!forged.verified, "a signature accepted for another body");
    }
});
