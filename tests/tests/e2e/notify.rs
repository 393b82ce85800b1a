//! Outgoing notifications: a receiver gets the start and the end of a
//! deploy as JSON signed with its secret; a receiver that never answers
//! holds up nothing. Drift found: a `current` changed by hand is announced
//! once, however many watch rounds pass, and again only after the host was
//! back in sync.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use deploy::{DeployStatus, DriftQuery, DriftState, NotifyEvent, NotifyFormat};
use hmac::{Hmac, Mac};
use slipway_tests::{AppRepo, Platform, commit_hello, platform, poll};

use crate::drift::point_current;

/// What a receiver got: the signature header and the body of each request.
type Got = Arc<Mutex<Vec<(String, String)>>>;

/// A receiver on a free port that answers 200 and records every request.
async fn receiver() -> anyhow::Result<(String, Got)> {
    let got: Got = Default::default();
    let app = axum::Router::new()
        .route(
            "/hook",
            axum::routing::post(
                |axum::extract::State(got): axum::extract::State<Got>,
                 headers: axum::http::HeaderMap,
                 body: String| async move {
                    let sig = headers
                        .get(deploy::NOTIFICATION_SIGNATURE_HEADER)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_string();
                    got.lock().expect("lock").push((sig, body));
                    "ok"
                },
            ),
        )
        .with_state(got.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((url, got))
}

/// A receiver that accepts connections and never answers.
async fn black_hole() -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = listener.accept().await {
            held.push(conn);
        }
    });
    Ok(url)
}

/// Checks `t=…,v1=…` against `body` with `secret`.
fn signed(secret: &str, sig: &str, body: &str) -> bool {
    let Some((t, v1)) = sig
        .strip_prefix("t=")
        .and_then(|rest| rest.split_once(",v1="))
    else {
        return false;
    };
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("a key");
    mac.update(format!("{t}.{body}").as_bytes());
    hex::encode(mac.finalize().into_bytes()) == v1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_receiver_gets_signed_start_and_end_and_a_dead_one_slows_nothing() -> anyhow::Result<()> {
    let p = platform().hosts(&["local-1"]).start().await?;
    let repo = AppRepo::new(p.dir().join("repo"))?;
    commit_hello(&repo, "A", true)?;
    let app = p.register("hello", &repo.path).await?;

    let (url, got) = receiver().await?;
    let good = p
        .client
        .create_notification(&deploy::CreateNotification {
            app: Some(app.clone()),
            cluster: None,
            url,
            format: NotifyFormat::Json,
            events: vec![],
        })
        .await?;
    assert!(good.secret.starts_with("slpwn_"));
    let dead = p
        .client
        .create_notification(&deploy::CreateNotification {
            app: None,
            cluster: Some(p.cluster.clone()),
            url: black_hole().await?,
            format: NotifyFormat::Slack,
            events: vec![NotifyEvent::DeployStarted],
        })
        .await?;
    // Never shown again.
    let listed = serde_json::to_string(&p.client.notifications().await?)?;
    assert!(
        !listed.contains(&good.secret) && listed.contains("\"slack\""),
        "{listed}"
    );

    let d = p.release_and_wait(&app, "main", None).await?;
    assert_eq!(d.status, DeployStatus::Succeeded, "{d:#?}");
    // The deploy ended while the dead receiver still holds its only
    // delivery: nothing waited on it.
    let held = p
        .client
        .notification_deliveries(dead.notification.id)
        .await?;
    assert_eq!(held.len(), 1, "{held:#?}");
    assert_eq!(held[0].status, deploy::DeliveryStatus::Pending, "{held:#?}");

    poll(Duration::from_secs(20), || async {
        Ok(got.lock().map(|g| g.len() >= 2).unwrap_or(false))
    })
    .await?;
    let got = got.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.clone();
    let mut events = Vec::new();
    for (sig, body) in &got {
        assert!(
            signed(&good.secret, sig, body),
            "a bad signature {sig:?} on {body}"
        );
        assert!(!signed("slpwn_wrong", sig, body));
        let payload: deploy::NotificationPayload = serde_json::from_str(body)?;
        assert_eq!((payload.deploy_id, &payload.app), (d.id, &app));
        events.push(payload.event);
    }
    assert_eq!(
        events,
        [NotifyEvent::DeployStarted, NotifyEvent::DeploySucceeded]
    );
    let delivered = p
        .client
        .notification_deliveries(good.notification.id)
        .await?;
    assert!(
        delivered
            .iter()
            .all(|d| d.status == deploy::DeliveryStatus::Delivered && d.attempts == 1),
        "{delivered:#?}"
    );
    // Plain http is for this machine and private networks only.
    let refused = p
        .client
        .create_notification(&deploy::CreateNotification {
            app: None,
            cluster: None,
            url: "http://hooks.example.com/x".into(),
            format: NotifyFormat::Json,
            events: vec![],
        })
        .await
        .expect_err("a public http URL");
    assert!(refused.to_string().contains("https"), "{refused}");
    p.shutdown().await
}

/// How many requests `got` holds.
fn count(got: &Got) -> usize {
    got.lock().map(|g| g.len()).unwrap_or(0)
}

/// Waits until `got` holds `n` requests.
async fn until_got(got: &Got, n: usize, what: &str) -> anyhow::Result<()> {
    poll(Duration::from_secs(20), || async { Ok(count(got) >= n) })
        .await
        .map_err(|e| e.context(format!("waiting for {what}")))
}

/// The hosts the JSON payloads in `got` name, in the order they came.
fn announced(got: &Got) -> Vec<String> {
    got.lock()
        .map(|g| {
            g.iter()
                .map(|(_, body)| {
                    serde_json::from_str::<deploy::NotificationPayload>(body)
                        .ok()
                        .and_then(|p| p.host)
                        .map(|h| h.to_string())
                        .unwrap_or_default()
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until `host` was announced `n` times.
async fn until_announced(got: &Got, host: &str, n: usize) -> anyhow::Result<()> {
    poll(Duration::from_secs(20), || async {
        Ok(announced(got).iter().filter(|h| *h == host).count() >= n)
    })
    .await
    .map_err(|e| e.context(format!("waiting for {host}'s drift ({n})")))
}

/// `host`'s verdict on `app`, as the API has it now.
async fn state_of(p: &Platform, host: &str, app: &str) -> anyhow::Result<Option<DriftState>> {
    Ok(p.client
        .drift(&DriftQuery::default())
        .await?
        .hosts
        .iter()
        .find(|h| h.host.as_str() == host && h.app.as_str() == app)
        .map(|h| h.state))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn drift_is_announced_once_until_the_host_is_back_in_sync() -> anyhow::Result<()> {
    const HOSTS: [&str; 3] = ["dn-1", "dn-2", "dn-3"];
    let mut p = platform()
        .hosts(&HOSTS)
        // Several watch rounds per versionchecker report.
        .configure(|c| c.drift_watch_interval = Duration::from_millis(200))
        .start()
        .await?;
    let repo = AppRepo::new(p.dir().join("repo"))?;
    let app = p.register("hello", &repo.path).await?;
    commit_hello(&repo, "A", true)?;
    let a = p.release_and_wait(&app, "main", None).await?;
    commit_hello(&repo, "B", true)?;
    let b = p.release_and_wait(&app, "main", None).await?;
    assert_eq!(b.status, DeployStatus::Succeeded, "{b:#?}");
    let (va, vb) = (a.version.expect("a version"), b.version.expect("a version"));

    let (json_url, json) = receiver().await?;
    let watched = p
        .client
        .create_notification(&deploy::CreateNotification {
            app: Some(app.clone()),
            cluster: None,
            url: json_url,
            format: NotifyFormat::Json,
            events: vec![NotifyEvent::DriftFound],
        })
        .await?;
    let (slack_url, slack) = receiver().await?;
    p.client
        .create_notification(&deploy::CreateNotification {
            app: None,
            cluster: Some(p.cluster.clone()),
            url: slack_url,
            format: NotifyFormat::Slack,
            events: vec![NotifyEvent::DriftFound],
        })
        .await?;
    // Wants deploys only: never gets drift.
    let deploys_only = p
        .client
        .create_notification(&deploy::CreateNotification {
            app: None,
            cluster: None,
            url: black_hole().await?,
            format: NotifyFormat::Json,
            events: vec![NotifyEvent::DeployFailed],
        })
        .await?;

    for i in 0..HOSTS.len() {
        p.start_versionchecker(i, Duration::from_secs(1));
    }
    poll(Duration::from_secs(30), || async {
        let d = p.client.drift(&DriftQuery::default()).await?;
        Ok(d.hosts.len() == HOSTS.len() && d.hosts.iter().all(|h| h.state == DriftState::InSync))
    })
    .await
    .map_err(|e| e.context("the three hosts did not all turn in-sync"))?;
    assert_eq!(count(&json), 0, "in sync: nothing announced");

    // 1. dn-1 drifts: announced.
    point_current(&p, "dn-1", "hello", va.as_str())?;
    until_announced(&json, "dn-1", 1).await?;
    // 2. dn-2 drifts after that announcement was received: the round that
    // announces it comes later, with dn-1 still drifted, and queues
    // nothing more for dn-1 (clears and claims of a round are queued in
    // order, so a second dn-1 would be listed by then).
    point_current(&p, "dn-2", "hello", va.as_str())?;
    until_announced(&json, "dn-2", 1).await?;
    assert_eq!(
        announced(&json),
        ["dn-1", "dn-2"],
        "dn-1 was announced once"
    );
    let listed = p
        .client
        .notification_deliveries(watched.notification.id)
        .await?;
    assert_eq!(listed.len(), 2, "one each for dn-1 and dn-2: {listed:#?}");
    assert!(
        listed
            .iter()
            .all(|d| d.event == NotifyEvent::DriftFound && d.deploy_id == b.id),
        "{listed:#?}"
    );

    // 3. dn-1 back in sync, then dn-3 drifts: the round that announces
    // dn-3 saw dn-1 in sync and cleared it first; dn-1 drifting again is
    // announced again.
    point_current(&p, "dn-1", "hello", vb.as_str())?;
    poll(Duration::from_secs(10), || async {
        Ok(state_of(&p, "dn-1", "hello").await? == Some(DriftState::InSync))
    })
    .await
    .map_err(|e| e.context("dn-1 did not turn in-sync"))?;
    point_current(&p, "dn-3", "hello", va.as_str())?;
    until_announced(&json, "dn-3", 1).await?;
    point_current(&p, "dn-1", "hello", va.as_str())?;
    until_announced(&json, "dn-1", 2).await?;

    let got = json
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .clone();
    let mut hosts = Vec::new();
    for (sig, body) in &got {
        assert!(
            signed(&watched.secret, sig, body),
            "a bad signature {sig:?} on {body}"
        );
        let payload: deploy::NotificationPayload = serde_json::from_str(body)?;
        assert_eq!(payload.event, NotifyEvent::DriftFound, "{body}");
        assert_eq!(
            (payload.deploy_id, &payload.app, &payload.cluster),
            (b.id, &app, &p.cluster),
            "{body}"
        );
        assert_eq!(payload.version.as_ref(), Some(&vb), "{body}");
        assert_eq!(payload.status, DeployStatus::Succeeded, "{body}");
        assert!(payload.url.ends_with("/drift"), "{body}");
        let reason = payload.reason.as_deref().unwrap_or_default();
        assert!(
            reason.contains(&format!("`current` names {va}"))
                && reason.contains(&format!("should run {vb}")),
            "{body}"
        );
        hosts.push(payload.host.map(|h| h.to_string()).unwrap_or_default());
    }
    assert_eq!(hosts, ["dn-1", "dn-2", "dn-3", "dn-1"]);
    let listed = p
        .client
        .notification_deliveries(watched.notification.id)
        .await?;
    assert_eq!(listed.len(), 4, "{listed:#?}");

    // The Slack receiver heard the same four, as text.
    until_got(&slack, 4, "the Slack messages").await?;
    let texts: Vec<String> = slack
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .iter()
        .map(|(_, body)| {
            serde_json::from_str::<serde_json::Value>(body)
                .ok()
                .and_then(|v| v["text"].as_str().map(str::to_string))
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(texts.len(), 4, "{texts:#?}");
    assert!(
        texts[0].starts_with(&format!(
            "Drift: hello on dn-1 (cluster {}) — `current` names {va}",
            p.cluster
        )) && texts[0].ends_with("/drift|see drift>"),
        "{texts:#?}"
    );
    let none = p
        .client
        .notification_deliveries(deploys_only.notification.id)
        .await?;
    assert!(none.is_empty(), "{none:#?}");
    p.shutdown().await
}
