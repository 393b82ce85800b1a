//! What load costs (issue 22): a list of deploys carries no host logs,
//! anonymous requests are counted and few of them written, `/metrics`
//! reuses what it read, authenticating never waits on a write, and the
//! API cuts off slow requests and refuses those over its concurrency
//! limit. The write contention is real: a connection of the test's own
//! holds SQLite's write lock.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use deploy::{Deploy, HostEvent, HostPhase};

use super::*;

/// SQLite's write lock, held by a connection of the test's own until
/// [`release`] (the server's writes wait for it, up to their 10 s busy
/// timeout, then fail).
async fn lock_writes(api: &Api) -> sqlx::AnyConnection {
    use sqlx::Connection;
    let url = format!(
        "sqlite://{}?mode=rwc",
        api._dir.path().join("apptracker.db").display()
    );
    let mut conn = sqlx::AnyConnection::connect(&url).await.unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut conn)
        .await
        .unwrap();
    conn
}

async fn release(mut conn: sqlx::AnyConnection) {
    sqlx::query("ROLLBACK").execute(&mut conn).await.unwrap();
}

fn url(api: &Api, path: &str) -> String {
    format!("{}{path}", api.admin.base_url())
}

async fn metrics(api: &Api) -> String {
    let resp = reqwest::get(url(api, "/metrics")).await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.text().await.unwrap()
}

/// The value of the sample `line` starts (name and labels), if any.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
}

// ---------------------------------------------------------------- lists

async fn deploy_lists_leave_log_tails_out(api: &Api) {
    let hello = app("hello");
    api.register("hello").await;
    let hosts: Vec<HostName> = (1..=4).map(|i| host(&format!("h{i}"))).collect();
    // 3 deploys × 4 hosts × 256 KiB: 3 MiB of logs.
    let tail = format!("START{}", "x".repeat(256 << 10));
    let mut ids = Vec::new();
    for _ in 0..3 {
        let id = api
            .deploy(&hello, &hosts, DeployStatus::Running, DeployAction::Deploy)
            .await;
        for h in &hosts {
            let failed = HostEvent::failed(
                PROD.clone(),
                HostPhase::Starting,
                true,
                "the app exited",
                tail.clone(),
            );
            api.database()
                .record_host_event(id, h, &failed)
                .await
                .unwrap();
        }
        api.database()
            .transition_deploy(
                id,
                &[DeployStatus::Running],
                DeployStatus::Failed,
                None,
                None,
            )
            .await
            .unwrap();
        ids.push(id);
    }
    let resp = api
        .viewer
        .http()
        .get(url(api, "/api/v1/deploys?limit=10"))
        .bearer_auth(token_of(api, "viewer").await)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.bytes().await.unwrap();
    assert!(
        body.len() < 64 << 10,
        "the list weighs {} bytes",
        body.len()
    );
    let listed: Vec<Deploy> = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        listed.iter().map(|d| d.id).collect::<Vec<_>>(),
        ids.iter().rev().copied().collect::<Vec<_>>()
    );
    for d in &listed {
        assert_eq!(d.hosts.len(), hosts.len());
        for h in &d.hosts {
            assert_eq!(
                (h.phase, h.message.as_deref(), h.log_tail.as_deref()),
                (HostPhase::Failed, Some("the app exited"), None),
                "{}",
                h.host
            );
        }
    }
    // The client's pages and filters leave them out too; one deploy has them.
    let of_hello = api.viewer.deploys_of(&hello, None, 10).await.unwrap();
    assert!(
        of_hello
            .iter()
            .flat_map(|d| &d.hosts)
            .all(|h| h.log_tail.is_none())
    );
    let one = api.viewer.deploy(ids[0]).await.unwrap();
    assert!(one.hosts.iter().all(|h| {
        h.log_tail
            .as_deref()
            .is_some_and(|t| t.starts_with("START"))
    }));
}

on_both!(
    deploy_lists_on_sqlite,
    deploy_lists_on_postgres,
    deploy_lists_leave_log_tails_out
);

// ---------------------------------------------------------------- anonymous

async fn anonymous_requests_are_counted_and_few_written(api: &Api) {
    let http = reqwest::Client::new();
    let sent = 60;
    for i in 0..sent {
        let path = if i % 2 == 0 {
            format!("/api/v1/nope{i}")
        } else {
            "/api/v1/deploys".to_string()
        };
        let resp = http.post(url(api, &path)).send().await.unwrap();
        assert!(
            [401, 404].contains(&resp.status().as_u16()),
            "{path}: {}",
            resp.status()
        );
    }
    let written = api.count("audit_log", "actor", "anonymous").await;
    let burst = i64::from(crate::http::audit::ANONYMOUS_BURST);
    assert!(
        (1..=burst + 1).contains(&written),
        "{written} anonymous audit entries for {sent} requests"
    );
    let text = metrics(api).await;
    assert_eq!(
        sample(&text, "slipway_anonymous_requests_total"),
        Some(f64::from(sent))
    );
    assert_eq!(
        sample(&text, "slipway_anonymous_requests_unrecorded_total"),
        Some((i64::from(sent) - written) as f64)
    );
    // A token's requests are all written, refused ones included.
    let resp = api
        .viewer
        .http()
        .post(url(api, "/api/v1/deploys"))
        .bearer_auth(token_of(api, "viewer").await)
        .json(&serde_json::json!({"app": "hello", "version": "1-aaaaaaa", "cluster": "prod"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(
        api.count("audit_log", "role", "viewer").await,
        1,
        "the viewer's request"
    );
}

on_both!(
    anonymous_requests_on_sqlite,
    anonymous_requests_on_postgres,
    anonymous_requests_are_counted_and_few_written
);

// ---------------------------------------------------------------- metrics

#[tokio::test]
async fn metrics_reuse_what_they_read_within_metrics_cache() {
    let series = "slipway_deploys_total{app=\"hello\",cluster=\"prod\",outcome=\"succeeded\"}";
    for (cache, seen_at_once) in [(Duration::from_secs(3600), false), (Duration::ZERO, true)] {
        let api = Api::start_with(None, |c| c.drift.metrics_cache = cache).await;
        api.register("hello").await;
        let before = metrics(&api).await;
        assert_eq!(sample(&before, series), None);
        let id = api
            .deploy(
                &app("hello"),
                &[],
                DeployStatus::Running,
                DeployAction::Deploy,
            )
            .await;
        api.finish(id).await;
        let after = metrics(&api).await;
        assert_eq!(
            sample(&after, series).is_some(),
            seen_at_once,
            "metrics_cache {cache:?}:\n{after}"
        );
        // This process's own figures are fresh at every scrape.
        assert!(
            after.contains("slipway_anonymous_requests_total 0"),
            "{after}"
        );
    }
}

// ---------------------------------------------------------------- contention

#[tokio::test]
async fn authenticating_never_waits_on_a_write() {
    let api = Api::sqlite().await;
    let token = token_of(&api, "viewer").await;
    let lock = lock_writes(&api).await;
    let started = Instant::now();
    let resp = api
        .viewer
        .http()
        .get(url(&api, "/api/v1/whoami"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "it waited {:?} (the busy timeout is 10 s)",
        started.elapsed()
    );
    release(lock).await;
    // `last_used_at` is written once the lock is gone.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let tokens = api.admin.tokens().await.unwrap();
        let used = tokens
            .iter()
            .find(|t| t.name.starts_with("raw-viewer-"))
            .and_then(|t| t.last_used_at);
        if used.is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "last_used_at never written");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn slow_requests_are_cut_off_at_request_timeout() {
    let api = Api::start_with(None, |c| {
        c.http.request_timeout = Duration::from_secs(1);
    })
    .await;
    let admin = token_of(&api, "admin").await;
    let lock = lock_writes(&api).await;
    let started = Instant::now();
    let resp = api
        .admin
        .http()
        .post(url(&api, "/api/v1/tokens"))
        .bearer_auth(&admin)
        .json(&serde_json::json!({"name": "late", "role": "viewer"}))
        .send()
        .await
        .unwrap();
    let elapsed = started.elapsed();
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "1");
    let err: deploy::ErrorBody = resp.json().await.unwrap();
    assert!(err.message.contains("request_timeout"), "{}", err.message);
    assert!(
        elapsed < Duration::from_secs(8),
        "answered after {elapsed:?} (the busy timeout is 10 s)"
    );
    release(lock).await;
}

#[tokio::test]
async fn requests_over_the_limit_are_refused_at_once() {
    let api = Api::start_with(None, |c| c.http.max_concurrent_requests = 1).await;
    let admin = token_of(&api, "admin").await;
    let lock = lock_writes(&api).await;
    // One request waits on the write lock and holds the only permit.
    let slow = || {
        let (http, url, admin) = (
            api.admin.http().clone(),
            url(&api, "/api/v1/tokens"),
            admin.clone(),
        );
        tokio::spawn(async move {
            let resp = http
                .post(url)
                .bearer_auth(admin)
                .json(&serde_json::json!({"name": "slow", "role": "viewer"}))
                .send()
                .await
                .unwrap();
            (resp.status().as_u16(), resp.text().await.unwrap())
        })
    };
    let mut waiting = slow();
    let deadline = Instant::now() + Duration::from_secs(8);
    let refused = loop {
        assert!(Instant::now() < deadline, "no request was refused");
        if waiting.is_finished() {
            // It came before it held the permit, and was refused itself.
            let (status, body) = (&mut waiting).await.unwrap();
            assert_eq!(status, 503, "{body}");
            waiting = slow();
        }
        let started = Instant::now();
        let resp = reqwest::get(url(&api, "/healthz")).await.unwrap();
        if resp.status() == 503 {
            break (resp, started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let (resp, took) = refused;
    assert!(took < Duration::from_secs(2), "refused after {took:?}");
    assert_eq!(resp.headers()["retry-after"], "1");
    let err: deploy::ErrorBody = resp.json().await.unwrap();
    assert!(
        err.message.contains("max_concurrent_requests"),
        "{}",
        err.message
    );
    release(lock).await;
    let (status, body) = waiting.await.unwrap();
    assert_eq!(status, 201, "the waiting request went on: {body}");
}
