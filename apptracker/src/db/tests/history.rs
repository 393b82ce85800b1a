//! A deploy's host history stays bounded whatever an agent sends: at most
//! `MAX_HOST_EVENTS` progress events per host, log tails only on an end,
//! nothing after the end. On SQLite and, when `SLIPWAY_TEST_POSTGRES`
//! names a server, PostgreSQL.

use deploy::HostEvent;

use super::*;
use crate::db::deploys::MAX_HOST_EVENTS;

fn event(phase: HostPhase, log: &str) -> HostEvent {
    HostEvent {
        cluster: Cluster::parse("prod").unwrap(),
        phase,
        failed_phase: None,
        rolled_back: false,
        message: Some(format!("{phase}")),
        log_tail: Some(log.to_string()),
        transfer: None,
    }
}

async fn the_history_is_bounded(db: &Db) {
    let app = AppName::parse("hello").unwrap();
    db.insert_app(&App {
        name: app.clone(),
        git_url: "/nowhere".into(),
        branch: "main".into(),
        auto_deploy: None,
        new_hosts: deploy::NewHostPolicy::Auto,
        root: None,
        created_at: Timestamp::now(),
    })
    .await
    .unwrap();
    let cluster = Cluster::parse("prod").unwrap();
    let host = HostName::parse("web-1").unwrap();
    let hosts = [host.clone()];
    let id = db
        .insert_deploy(&NewDeploy {
            status: DeployStatus::Running,
            hosts: &hosts,
            ..new_deploy(&app, &cluster)
        })
        .await
        .unwrap();
    let big = "x".repeat(64 << 10);

    // A flood of progress: the row follows, the history stops growing.
    for _ in 0..(MAX_HOST_EVENTS + 40) {
        let (row, changed) = db
            .record_host_event(id, &host, &event(HostPhase::Downloading, &big))
            .await
            .unwrap()
            .unwrap();
        assert!(changed);
        assert_eq!(row.phase, HostPhase::Downloading);
        assert_eq!(
            row.log_tail, None,
            "a progress event's log tail is not kept"
        );
    }
    // Its end is kept past the bound, with its log.
    let (row, changed) = db
        .record_host_event(id, &host, &event(HostPhase::Failed, "the end"))
        .await
        .unwrap()
        .unwrap();
    assert!(changed);
    assert_eq!(row.log_tail.as_deref(), Some("the end"));
    // After the end, nothing changes and nothing is kept (a reconcile's
    // `skipped`, or anything else an agent sends).
    for phase in [HostPhase::Skipped, HostPhase::Downloading] {
        let (row, changed) = db
            .record_host_event(id, &host, &event(phase, &big))
            .await
            .unwrap()
            .unwrap();
        assert!(!changed);
        assert_eq!(row.phase, HostPhase::Failed);
    }
    let history = db.host_events(id, None, 10_000).await.unwrap();
    assert_eq!(history.len() as i64, MAX_HOST_EVENTS + 1);
    assert_eq!(
        history.last().map(|(_, e)| e.phase),
        Some(HostPhase::Failed)
    );
    let tails: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM host_events WHERE deploy_id = $1 AND log_tail IS NOT NULL",
    )
    .bind(id.0)
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert_eq!(tails, 1, "only the end keeps its log tail");
}

#[tokio::test]
async fn the_history_is_bounded_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
    the_history_is_bounded(&Db::connect(&url).await.unwrap()).await;
}

#[tokio::test]
async fn the_history_is_bounded_on_postgres() {
    let Some(pg) = postgres().await else {
        return;
    };
    let db = Db::connect(&pg.url).await.unwrap();
    the_history_is_bounded(&db).await;
    db.pool().close().await;
}
