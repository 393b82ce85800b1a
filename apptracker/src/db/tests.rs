//! The storage layer's tests, most against a fresh SQLite database.

use super::*;

#[test]
fn passwords_never_reach_messages() {
    assert_eq!(
        redact("postgres://u:secret@127.0.0.1/db"),
        "postgres://u:***@127.0.0.1/db"
    );
    assert_eq!(redact("sqlite://x.db"), "sqlite://x.db");
}

/// A fresh SQLite database (in a directory kept as long as the guard)
/// with app `hello` registered.
async fn db_with_app() -> (tempfile::TempDir, Db, AppName) {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::connect(&format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("t.db").display()
    ))
    .await
    .unwrap();
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
    (dir, db, app)
}

#[tokio::test]
async fn uploads_follow_the_claim_and_unsigned_or_bad_builds_are_not_reused() {
    let (_dir, db, app) = db_with_app().await;
    let commit = "a".repeat(40);
    let lease = Timestamp(Timestamp::now().0 + 60_000);
    let sha = Sha256::parse("b".repeat(64)).unwrap();
    let sig = deploy::signing::SigningKey::from_seed([1; 32]).sign(
        &app,
        &Version::parse("1-aaaaaaa").unwrap(),
        &sha,
    );
    let upload = Upload {
        signature: sig.clone(),
        sha256: sha.clone(),
        size: 1,
    };
    let w1 = Holder::in_process("w1");
    let w2 = Holder::in_process("w2");

    // An upload recorded by one holder is gone when another claims.
    let build = db.insert_build(&app, "main", &commit).await.unwrap();
    assert_eq!(
        db.latest_watch(&app).await.unwrap(),
        None,
        "nothing built yet"
    );
    let (claimed, _, _) = db.claim_build(&w1, lease, true).await.unwrap().unwrap();
    assert_eq!(claimed.id, build.id);
    let placed = || async { Ok(()) };
    let record = |h| {
        db.commit_upload(
            build.id,
            h,
            crate::db::Uploaded::Artifact(&upload),
            placed(),
        )
    };
    assert!(record(&w1).await.unwrap());
    // Another holder's is refused, and what it would store is never placed.
    let refused = db
        .commit_upload(
            build.id,
            &w2,
            crate::db::Uploaded::Artifact(&upload),
            async { panic!("placed for a holder without the lease") },
        )
        .await;
    assert!(!refused.unwrap());
    assert_eq!(
        db.build_upload(build.id).await.unwrap(),
        Some((sig.to_string(), Some(sha.clone()), Some(1)))
    );
    assert!(db.requeue_build(build.id, &w1).await.unwrap());
    db.claim_build(&w2, lease, true).await.unwrap().unwrap();
    assert_eq!(db.build_upload(build.id).await.unwrap(), None);

    // Succeeded and signed: reused, and the artifact carries it.
    assert!(record(&w2).await.unwrap());
    let artifact = StoredArtifact {
        key: ArtifactKey::new("hello/hello-1-aaaaaaa.tar.gz"),
        sha256: sha.clone(),
        size: 1,
        signature: sig.to_string(),
        index: None,
    };
    assert!(
        db.finish_build_ok(
            build.id,
            &w2,
            &crate::db::FinishedBuild {
                build_type: BuildType::Generic,
                artifact: &artifact,
                release_timeout_ms: None,
                author: Some("Ada <ada@example.com>"),
                message: Some("first"),
                watch: Some(&["libs/shared".to_string()]),
                log: "",
            }
        )
        .await
        .unwrap()
    );
    assert_eq!(
        db.latest_watch(&app).await.unwrap(),
        Some(Some("[\"libs/shared\"]".to_string()))
    );
    let reused = db.reusable_build(&app, &commit).await.unwrap().unwrap();
    assert_eq!(reused.artifact, Some(artifact));
    assert_eq!(reused.author.as_deref(), Some("Ada <ada@example.com>"));
    assert_eq!(reused.message.as_deref(), Some("first"));

    // A build from before signing (no signature) is not reused, and
    // its artifact shows as unsigned.
    sqlx::query("UPDATE builds SET signature = NULL WHERE id = $1")
        .bind(build.id.0)
        .execute(db.pool())
        .await
        .unwrap();
    assert!(db.reusable_build(&app, &commit).await.unwrap().is_none());
    let old = db.build(build.id).await.unwrap().unwrap();
    assert_eq!(old.artifact.unwrap().signature, "");

    // Signed again, then marked bad: not reused either, and the mark
    // shows.
    sqlx::query("UPDATE builds SET signature = $2 WHERE id = $1")
        .bind(build.id.0)
        .bind(sig.to_string())
        .execute(db.pool())
        .await
        .unwrap();
    assert!(db.reusable_build(&app, &commit).await.unwrap().is_some());
    assert!(db.mark_build_bad(build.id, "ops", "broken").await.unwrap());
    assert!(!db.mark_build_bad(build.id, "ops", "again").await.unwrap());
    assert!(db.reusable_build(&app, &commit).await.unwrap().is_none());
    let bad = db
        .build(build.id)
        .await
        .unwrap()
        .unwrap()
        .bad
        .clone()
        .unwrap();
    assert_eq!((bad.by.as_str(), bad.reason.as_str()), ("ops", "broken"));
}

#[tokio::test]
async fn expired_leases_requeue_then_fail() {
    let (_dir, db, app) = db_with_app().await;
    let build = db
        .insert_build(&app, "main", &"c".repeat(40))
        .await
        .unwrap();
    let w = Holder::in_process("w");
    let past = Timestamp(Timestamp::now().0 - 1);
    // Two requeues allowed: the third expiry fails the build.
    for round in 0..3 {
        db.claim_build(&w, past, true).await.unwrap().unwrap();
        let (n, failed) = db
            .requeue_expired_leases(Timestamp::now(), 2, "gave up")
            .await
            .unwrap();
        let b = db.build(build.id).await.unwrap().unwrap();
        if round < 2 {
            assert_eq!((n, failed.len()), (1, 0), "round {round}");
            assert_eq!(b.status, BuildStatus::Queued);
        } else {
            assert_eq!((n, failed), (0, vec![build.id]));
            assert_eq!(b.status, BuildStatus::Failed);
            assert_eq!(b.error.as_deref(), Some("gave up"));
        }
    }
    // A handed-back build is no requeue: it never counts.
    let other = db
        .insert_build(&app, "main", &"d".repeat(40))
        .await
        .unwrap();
    let lease = Timestamp(Timestamp::now().0 + 60_000);
    for _ in 0..5 {
        db.claim_build(&w, lease, true).await.unwrap().unwrap();
        assert!(db.requeue_build(other.id, &w).await.unwrap());
    }
    db.claim_build(&w, past, true).await.unwrap().unwrap();
    let (n, failed) = db
        .requeue_expired_leases(Timestamp::now(), 0, "gave up")
        .await
        .unwrap();
    assert_eq!(
        (n, failed),
        (0, vec![other.id]),
        "max 0: the first expiry fails"
    );
}

/// A status column holding a name this build does not know is an error
/// naming it, never a silent `unknown`.
#[tokio::test]
async fn unknown_stored_statuses_are_decode_errors() {
    let (_dir, db, app) = db_with_app().await;
    let build = db
        .insert_build(&app, "main", &"d".repeat(40))
        .await
        .unwrap();
    let id = db
        .insert_deploy(&NewDeploy {
            app: &app,
            version: None,
            git_ref: Some("main"),
            build_id: Some(build.id),
            cluster: &Cluster::parse("prod").unwrap(),
            selector: &HostSelector::all(),
            status: DeployStatus::Building,
            hosts: &[HostName::parse("h1").unwrap()],
            strategy: Strategy::AllAtOnce,
            max_failures: Portion::default(),
            retry_of: None,
            rollback_on_failure: false,
            rollback_of: None,
            requested_by: None,
            action: deploy::DeployAction::Deploy,
            config_version: 0,
        })
        .await
        .unwrap();
    assert!(db.deploy(id).await.unwrap().is_some());
    for sql in [
        "UPDATE builds SET status = 'exploded' WHERE id = $1",
        "UPDATE builds SET status = 'queued', build_type = 'cobol' WHERE id = $1",
    ] {
        sqlx::query(sql)
            .bind(build.id.0)
            .execute(db.pool())
            .await
            .unwrap();
        let e = db.build(build.id).await.unwrap_err().to_string();
        assert!(e.contains("exploded") || e.contains("cobol"), "{e}");
    }
    for sql in [
        "UPDATE deploys SET status = 'exploded' WHERE id = $1",
        "UPDATE deploys SET status = 'building' WHERE id = $1; \
         UPDATE deploy_hosts SET phase = 'melting' WHERE deploy_id = $1",
    ] {
        for one in sql.split("; ") {
            sqlx::query(sqlx::AssertSqlSafe(one.to_string()))
                .bind(id.0)
                .execute(db.pool())
                .await
                .unwrap();
        }
        let e = format!("{:#}", db.deploy(id).await.unwrap_err());
        assert!(e.contains("exploded") || e.contains("melting"), "{e}");
    }
}

/// A deploy of `app` to `cluster`, as the filters see it.
fn new_deploy<'a>(app: &'a AppName, cluster: &'a Cluster) -> NewDeploy<'a> {
    NewDeploy {
        app,
        version: None,
        git_ref: Some("main"),
        build_id: None,
        cluster,
        selector: &ALL_HOSTS,
        status: DeployStatus::Succeeded,
        hosts: &[],
        strategy: Strategy::AllAtOnce,
        max_failures: Portion::default(),
        retry_of: None,
        rollback_on_failure: false,
        rollback_of: None,
        requested_by: None,
        action: deploy::DeployAction::Deploy,
        config_version: 0,
    }
}

static ALL_HOSTS: std::sync::LazyLock<HostSelector> = std::sync::LazyLock::new(HostSelector::all);

/// Two apps on two clusters: the lists of deploys and builds keep to the
/// app and cluster asked for, newest first, paged by id.
async fn lists_filter_by_app_and_cluster(db: &Db) {
    let (hello, other) = (
        AppName::parse("hello").unwrap(),
        AppName::parse("other").unwrap(),
    );
    for app in [&hello, &other] {
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
    }
    let (prod, local) = (
        Cluster::parse("prod").unwrap(),
        Cluster::parse("local").unwrap(),
    );
    let mut ids = Vec::new();
    for (app, cluster) in [
        (&hello, &prod),
        (&other, &prod),
        (&hello, &local),
        (&hello, &prod),
    ] {
        ids.push(db.insert_deploy(&new_deploy(app, cluster)).await.unwrap());
        db.insert_build(app, "main", &format!("{:0>40}", ids.len()))
            .await
            .unwrap();
    }
    let listed = |ds: Vec<Deploy>| ds.iter().map(|d| d.id).collect::<Vec<_>>();
    let all = db.deploys(None, 10, None, None).await.unwrap();
    assert_eq!(listed(all), [ids[3], ids[2], ids[1], ids[0]]);
    let of_hello = db.deploys(None, 10, Some(&hello), None).await.unwrap();
    assert_eq!(listed(of_hello), [ids[3], ids[2], ids[0]]);
    let hello_prod = db
        .deploys(None, 10, Some(&hello), Some(&prod))
        .await
        .unwrap();
    assert_eq!(listed(hello_prod), [ids[3], ids[0]]);
    let older = db
        .deploys(Some(ids[3].0), 1, Some(&hello), Some(&prod))
        .await
        .unwrap();
    assert_eq!(listed(older), [ids[0]]);
    let on_prod = db.deploys(None, 10, None, Some(&prod)).await.unwrap();
    assert_eq!(listed(on_prod), [ids[3], ids[1], ids[0]]);
    let unknown = AppName::parse("nobody").unwrap();
    assert!(
        db.deploys(None, 10, Some(&unknown), None)
            .await
            .unwrap()
            .is_empty()
    );

    let apps_of = |bs: Vec<StoredBuild>| bs.iter().map(|b| b.app.to_string()).collect::<Vec<_>>();
    let all = db.builds(None, None, 10).await.unwrap();
    assert_eq!(apps_of(all), ["hello", "hello", "other", "hello"]);
    let of_other = db.builds(Some(&other), None, 10).await.unwrap();
    assert_eq!(apps_of(of_other), ["other"]);
    let newest = db.builds(None, None, 1).await.unwrap();
    let before_newest = db.builds(None, Some(newest[0].id.0), 10).await.unwrap();
    assert_eq!(apps_of(before_newest), ["hello", "other", "hello"]);
}

#[tokio::test]
async fn lists_filter_by_app_and_cluster_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
    lists_filter_by_app_and_cluster(&Db::connect(&url).await.unwrap()).await;
}

/// The same on PostgreSQL, in a database of its own, when
/// `SLIPWAY_TEST_POSTGRES` names a server (the `tests` crate runs every
/// query there too; this keeps the filters' SQL checked on both here).
#[tokio::test]
async fn lists_filter_by_app_and_cluster_on_postgres() {
    let Some(pg) = postgres().await else {
        return;
    };
    let db = Db::connect(&pg.url).await.unwrap();
    lists_filter_by_app_and_cluster(&db).await;
    db.pool().close().await;
}

/// An app's root is stored and read back; its builds go only to workers
/// that build roots (an older worker would build the whole repository),
/// and the claim hands the root over.
async fn roots_are_kept_and_claimed_only_by_workers_that_build_them(db: &Db) {
    let (mono, plain) = (
        AppName::parse("mono").unwrap(),
        AppName::parse("plain").unwrap(),
    );
    for (app, root) in [(&mono, Some("services/api")), (&plain, None)] {
        db.insert_app(&App {
            name: app.clone(),
            git_url: "/nowhere".into(),
            branch: "main".into(),
            auto_deploy: None,
            new_hosts: deploy::NewHostPolicy::Auto,
            root: root.map(str::to_string),
            created_at: Timestamp::now(),
        })
        .await
        .unwrap();
    }
    assert_eq!(
        db.app(&mono).await.unwrap().unwrap().root.as_deref(),
        Some("services/api")
    );
    assert_eq!(db.app(&plain).await.unwrap().unwrap().root, None);
    let first = db
        .insert_build(&mono, "main", &"a".repeat(40))
        .await
        .unwrap();
    let second = db
        .insert_build(&plain, "main", &"b".repeat(40))
        .await
        .unwrap();
    let lease = Timestamp(Timestamp::now().0 + 60_000);
    let old = Holder::in_process("old-worker");
    let (b, _, root) = db.claim_build(&old, lease, false).await.unwrap().unwrap();
    assert_eq!(
        (b.id, root),
        (second.id, None),
        "the older worker skips mono"
    );
    assert!(db.claim_build(&old, lease, false).await.unwrap().is_none());
    let new = Holder::in_process("new-worker");
    let (b, url, root) = db.claim_build(&new, lease, true).await.unwrap().unwrap();
    assert_eq!(
        (b.id, url.as_str(), root.as_deref()),
        (first.id, "/nowhere", Some("services/api"))
    );
}

#[tokio::test]
async fn roots_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
    roots_are_kept_and_claimed_only_by_workers_that_build_them(&Db::connect(&url).await.unwrap())
        .await;
}

#[tokio::test]
async fn roots_on_postgres() {
    let Some(pg) = postgres().await else {
        return;
    };
    let db = Db::connect(&pg.url).await.unwrap();
    roots_are_kept_and_claimed_only_by_workers_that_build_them(&db).await;
    db.pool().close().await;
}

/// A fresh PostgreSQL database, dropped with this guard.
pub(crate) struct Pg {
    admin_url: String,
    name: String,
    pub(crate) url: String,
}

/// Makes one when `SLIPWAY_TEST_POSTGRES` is set (`scripts/test` sets it);
/// says loudly that it skips when not.
pub(crate) async fn postgres() -> Option<Pg> {
    let Ok(admin_url) = std::env::var("SLIPWAY_TEST_POSTGRES") else {
        eprintln!("\n!!! SKIPPING the PostgreSQL half: SLIPWAY_TEST_POSTGRES is not set\n");
        return None;
    };
    sqlx::any::install_default_drivers();
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&admin_url)
        .await
        .expect("SLIPWAY_TEST_POSTGRES is set but PostgreSQL does not answer");
    let mut tag = [0u8; 6];
    getrandom::fill(&mut tag).expect("randomness");
    let name = format!("slipway_unit_{}", hex::encode(tag));
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("create a test database");
    let (base, _) = admin_url
        .rsplit_once('/')
        .expect("SLIPWAY_TEST_POSTGRES ends with a database name");
    let url = format!("{base}/{name}");
    Some(Pg {
        admin_url,
        name,
        url,
    })
}

impl Drop for Pg {
    fn drop(&mut self) {
        // Outside the test's runtime, which may be gone.
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async move {
                let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&admin_url)
                    .await
                    .ok()?;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut conn)
                .await
                .ok()
            })
        })
        .join();
    }
}

mod phases {
    use deploy::HostPhase;

    #[test]
    fn the_sql_terminal_phases_are_the_terminal_phases() {
        use HostPhase::*;
        let sql: &str = terminal_phases!();
        for p in [
            Pending,
            Downloading,
            Verifying,
            Extracting,
            Switching,
            Starting,
            Checking,
            Done,
            Skipped,
            Failed,
            TimedOut,
            Unreachable,
            NotStarted,
        ] {
            assert_eq!(
                sql.contains(&format!("'{}'", p.as_str())),
                p.is_terminal(),
                "{p}"
            );
        }
    }
}

mod drift_alerts;
mod history;
