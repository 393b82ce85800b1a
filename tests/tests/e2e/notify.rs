//! Outgoing notifications: a receiver gets the start and the end of a
//! deploy as JSON signed with its secret; a receiver that never answers
//! holds up nothing.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use deploy::{DeployStatus, NotifyEvent, NotifyFormat};
use hmac::{Hmac, Mac};
use slipway_tests::{AppRepo, commit_hello, platform, poll};

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
