//! Drift alerts against SQLite and, when `SLIPWAY_TEST_POSTGRES` names a
//! server, PostgreSQL: two replicas claiming one alert at once claim it
//! once and queue its deliveries once; a cleared alert is claimed again.

use deploy::drift::DriftState;
use deploy::{Notification, NotifyEvent, NotifyFormat};

use super::*;
use crate::db::{AlertKey, DriftAlert};

fn alert(host: &str) -> DriftAlert {
    DriftAlert {
        key: (
            Cluster::parse("prod").unwrap(),
            HostName::parse(host).unwrap(),
            AppName::parse("hello").unwrap(),
        ),
        state: DriftState::Drifted,
        desired_deploy: DeployId(3),
    }
}

/// `a` and `b` are two replicas' handles on one database.
async fn claimed_once_until_cleared(a: &Db, b: &Db) {
    let n = Notification {
        id: 0,
        app: None,
        cluster: None,
        url: "https://hooks.example.com/…".into(),
        format: NotifyFormat::Json,
        events: vec![NotifyEvent::DriftFound],
        created_by: "ops".into(),
        created_at: Timestamp::now(),
    };
    let id = a
        .insert_notification(&n, "sealed-url", "sealed-secret")
        .await
        .unwrap();
    let web1 = alert("web-1");
    let deliveries = vec![(id, r#"{"event":"drift_found"}"#.to_string())];

    // Both at once: one claims, one delivery is queued.
    let (x, y) = tokio::join!(
        a.claim_drift_alert(&web1, &deliveries),
        b.claim_drift_alert(&web1, &deliveries)
    );
    assert_ne!(x.unwrap(), y.unwrap(), "exactly one replica claims");
    for db in [a, b] {
        assert!(!db.claim_drift_alert(&web1, &deliveries).await.unwrap());
    }
    let queued = a.deliveries(id, 10).await.unwrap();
    assert_eq!(queued.len(), 1, "{queued:#?}");
    assert_eq!(
        (queued[0].event, queued[0].deploy_id),
        (NotifyEvent::DriftFound, DeployId(3))
    );
    assert_eq!(b.drift_alerts().await.unwrap(), vec![web1.key.clone()]);

    // Another host's alert is its own.
    let web2 = alert("web-2");
    assert!(b.claim_drift_alert(&web2, &deliveries).await.unwrap());
    let mut keys: Vec<AlertKey> = a.drift_alerts().await.unwrap();
    keys.sort();
    assert_eq!(keys, vec![web1.key.clone(), web2.key.clone()]);

    // Cleared (once): the next drift there is claimed and queued again.
    assert!(a.clear_drift_alert(&web1.key).await.unwrap());
    assert!(!b.clear_drift_alert(&web1.key).await.unwrap());
    assert!(b.claim_drift_alert(&web1, &deliveries).await.unwrap());
    assert_eq!(a.deliveries(id, 10).await.unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drift_alert_is_claimed_once_across_replicas_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
    let a = Db::connect(&url).await.unwrap();
    let b = Db::connect(&url).await.unwrap();
    claimed_once_until_cleared(&a, &b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drift_alert_is_claimed_once_across_replicas_on_postgres() {
    let Some(pg) = postgres().await else {
        return;
    };
    let a = Db::connect(&pg.url).await.unwrap();
    let b = Db::connect(&pg.url).await.unwrap();
    claimed_once_until_cleared(&a, &b).await;
    a.pool().close().await;
    b.pool().close().await;
}
