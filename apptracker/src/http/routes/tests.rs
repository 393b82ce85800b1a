//! The API's handlers end to end: a real AppTracker (SQLite, and PostgreSQL
//! when `SLIPWAY_TEST_POSTGRES` names a server) served on a loopback port and
//! driven with the typed client at each role: editing and removing apps,
//! forgetting retired hosts, following build logs, listing deploys by
//! status. What an endpoint leaves behind is read back from the database.

use std::sync::LazyLock;

use deploy::{
    App, AppName, AutoDeploy, Client, ClientError, Cluster, DeployAction, DeployId, DeployStatus,
    DeployStatuses, HostName, HostSelector, NewHostPolicy, Portion, RegisterApp, Strategy,
    UpdateApp, Version,
};

use crate::Tracker;
use crate::db::NewDeploy;
use crate::db::tests::{Pg, postgres};
use crate::model::Holder;

/// An AppTracker's API on a loopback port, and a client per role.
struct Api {
    tracker: Tracker,
    admin: Client,
    deployer: Client,
    viewer: Client,
    server: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
    _pg: Option<Pg>,
}

impl Drop for Api {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Api {
    async fn start(pg: Option<Pg>) -> Api {
        Api::start_with(pg, |_| {}).await
    }

    /// An API whose config `tweak` changed first.
    async fn start_with(pg: Option<Pg>, tweak: impl FnOnce(&mut crate::Config)) -> Api {
        let dir = tempfile::tempdir().expect("tempdir");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("listen");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let mut config = crate::Config {
            listen: "127.0.0.1:0".parse().expect("addr"),
            // Download URLs name the server these tests talk to.
            public_url: Some(base.clone()),
            data_dir: dir.path().to_path_buf(),
            builder: crate::config::BuilderConfig::disabled(),
            database_url: pg.as_ref().map(|p| p.url.clone()),
            ..crate::Config::default()
        };
        tweak(&mut config);
        let app = crate::Application::build(config).await.expect("app");
        let tracker = app.tracker().clone();
        drop(app);
        let router = crate::http::api(tracker.clone())
            .into_make_service_with_connect_info::<std::net::SocketAddr>();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        let mut clients = Vec::new();
        for role in ["admin", "deployer", "viewer"] {
            let token = tracker
                .create_token(&format!("test-{role}"), role, None)
                .await
                .expect("token");
            clients.push(Client::new(base.clone()).with_token(token));
        }
        let [admin, deployer, viewer] = <[Client; 3]>::try_from(clients).expect("three clients");
        Api {
            tracker,
            admin,
            deployer,
            viewer,
            server,
            _dir: dir,
            _pg: pg,
        }
    }

    async fn sqlite() -> Api {
        Api::start(None).await
    }

    /// `None` (said loudly) when no PostgreSQL server is configured.
    async fn postgres() -> Option<Api> {
        Some(Api::start(Some(postgres().await?)).await)
    }

    async fn register(&self, name: &str) -> App {
        self.admin
            .register_app(&RegisterApp::new(app(name), "/nowhere"))
            .await
            .expect("register")
    }

    /// A deploy row of `app` to `cluster`'s `hosts`, as the tracker would
    /// have written it.
    async fn deploy(
        &self,
        app: &AppName,
        hosts: &[HostName],
        status: DeployStatus,
        action: DeployAction,
    ) -> DeployId {
        self.tracker
            .db()
            .insert_deploy(&NewDeploy {
                app,
                version: Some(&VERSION),
                git_ref: None,
                build_id: None,
                cluster: &PROD,
                selector: &ALL,
                status,
                hosts,
                strategy: Strategy::AllAtOnce,
                max_failures: Portion::default(),
                retry_of: None,
                rollback_on_failure: false,
                rollback_of: None,
                requested_by: Some("test"),
                action,
                config_version: 0,
            })
            .await
            .expect("deploy")
    }

    /// A queued build of `app` at `commit`.
    async fn queue_build(&self, app: &AppName, commit: &str) -> deploy::Build {
        let build = self
            .tracker
            .db()
            .insert_build(app, "main", commit)
            .await
            .expect("build");
        build.into_parts().0
    }

    /// A running deploy of `build` to `hosts` of `PROD`, whose desired
    /// state it wrote.
    async fn deploy_build(&self, build: &deploy::Build, hosts: &[HostName]) -> DeployId {
        let id = self
            .tracker
            .db()
            .insert_deploy(&NewDeploy {
                app: &build.app,
                version: Some(&build.version),
                git_ref: None,
                build_id: Some(build.id),
                cluster: &PROD,
                selector: &ALL,
                status: DeployStatus::Running,
                hosts,
                strategy: Strategy::AllAtOnce,
                max_failures: Portion::default(),
                retry_of: None,
                rollback_on_failure: false,
                rollback_of: None,
                requested_by: Some("test"),
                action: DeployAction::Deploy,
                config_version: 0,
            })
            .await
            .expect("deploy");
        self.tracker
            .db()
            .set_desired(&PROD, hosts, &build.app, &build.version, id)
            .await
            .expect("desired");
        id
    }

    async fn finish(&self, id: DeployId) {
        let moved = self
            .tracker
            .db()
            .transition_deploy(
                id,
                &[DeployStatus::Running, DeployStatus::Building],
                DeployStatus::Succeeded,
                None,
                None,
            )
            .await
            .expect("transition");
        assert!(moved, "deploy {id} was not under way");
    }

    async fn report(&self, host: &str, app: &str, process: bool) {
        let process = process.then(
            || serde_json::json!({"pid": 42, "uptime_ms": 1000, "rss_bytes": 1, "cpu_ms": 1}),
        );
        let report = serde_json::json!({
            "cluster": "prod", "host": host, "interval_ms": 60000, "agent": "test",
            "apps": [{"app": app, "current": VERSION.as_str(), "process": process}],
        });
        self.tracker
            .store_report(&serde_json::from_value(report).expect("report"))
            .await
            .expect("store report");
    }

    async fn heartbeat(&self, host: &str) {
        let hb = serde_json::json!({"cluster": "prod", "host": host, "root": "/srv", "apps": []});
        self.tracker
            .heartbeat(&serde_json::from_value(hb).expect("heartbeat"))
            .await
            .expect("heartbeat");
    }

    /// The database, for the submodules' fixtures (the check that the HTTP
    /// layer never reaches it reads every file here but this one).
    fn database(&self) -> &crate::db::Db {
        self.tracker.db()
    }

    /// Rows of `table` whose `column` is `value`.
    async fn count(&self, table: &str, column: &str, value: &str) -> i64 {
        let sql = format!("SELECT COUNT(*) FROM {table} WHERE {column} = $1");
        sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql))
            .bind(value.to_string())
            .fetch_one(self.tracker.db().pool())
            .await
            .expect("count")
    }

    /// Host rows of deploy `id`.
    async fn deploy_hosts(&self, id: DeployId) -> i64 {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM deploy_hosts WHERE deploy_id = $1")
            .bind(id.0)
            .fetch_one(self.tracker.db().pool())
            .await
            .expect("count")
    }
}

static PROD: LazyLock<Cluster> = LazyLock::new(|| Cluster::parse("prod").expect("cluster"));
static ALL: LazyLock<HostSelector> = LazyLock::new(HostSelector::all);
static VERSION: LazyLock<Version> = LazyLock::new(|| Version::parse("1-aaaaaaa").expect("v"));

fn app(name: &str) -> AppName {
    AppName::parse(name).expect("app name")
}

fn host(name: &str) -> HostName {
    HostName::parse(name).expect("host name")
}

/// The status and code of a refusal.
fn refused<T: std::fmt::Debug>(r: Result<T, ClientError>) -> (u16, String, String) {
    match r {
        Err(ClientError::Api {
            status,
            code,
            message,
        }) => (status, code, message),
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// Runs `scenario` on SQLite, then on PostgreSQL when there is one.
macro_rules! on_both {
    ($sqlite:ident, $postgres:ident, $scenario:ident) => {
        #[tokio::test]
        async fn $sqlite() {
            $scenario(&Api::sqlite().await).await;
        }

        #[tokio::test]
        async fn $postgres() {
            if let Some(api) = Api::postgres().await {
                $scenario(&api).await;
            }
        }
    };
}

// ---------------------------------------------------------------- edit an app

async fn apps_are_edited_field_by_field(api: &Api) {
    let hello = app("hello");
    let registered = api.register("hello").await;
    assert_eq!(registered.branch, "main");

    // Only admins change apps.
    let change = UpdateApp {
        branch: Some("release".into()),
        ..UpdateApp::default()
    };
    for client in [&api.viewer, &api.deployer] {
        let (status, code, _) = refused(client.update_app(&hello, &change).await);
        assert_eq!((status, code.as_str()), (403, "forbidden"));
    }
    assert_eq!(api.admin.app(&hello).await.unwrap().branch, "main");

    let changed = api.admin.update_app(&hello, &change).await.unwrap();
    assert_eq!(changed.branch, "release");
    assert_eq!(
        (changed.auto_deploy, changed.new_hosts),
        (None, NewHostPolicy::Auto)
    );

    // A rule set, then the policy alone: the rule and the branch stay.
    let rule = AutoDeploy {
        cluster: PROD.clone(),
        hosts: Some(HostSelector::parse("web-.*").unwrap()),
    };
    let changed = api
        .admin
        .update_app(
            &hello,
            &UpdateApp {
                auto_deploy: Some(Some(rule.clone())),
                ..UpdateApp::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(changed.auto_deploy.as_ref(), Some(&rule));
    let changed = api
        .admin
        .update_app(
            &hello,
            &UpdateApp {
                new_hosts: Some(NewHostPolicy::Manual),
                ..UpdateApp::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (
            changed.branch.as_str(),
            changed.auto_deploy.as_ref(),
            changed.new_hosts
        ),
        ("release", Some(&rule), NewHostPolicy::Manual)
    );
    // `null` removes the rule; nothing asked changes nothing.
    let changed = api
        .admin
        .update_app(
            &hello,
            &UpdateApp {
                auto_deploy: Some(None),
                ..UpdateApp::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(changed.auto_deploy, None);
    let same = api
        .admin
        .update_app(&hello, &UpdateApp::default())
        .await
        .unwrap();
    assert_eq!(same, changed);
    assert_eq!(api.admin.app(&hello).await.unwrap(), changed);

    // Checked as registration checks it; a bad change changes nothing.
    for branch in ["", "a..b", "-x"] {
        let bad = UpdateApp {
            branch: Some(branch.into()),
            ..UpdateApp::default()
        };
        let (status, code, _) = refused(api.admin.update_app(&hello, &bad).await);
        assert_eq!(
            (status, code.as_str()),
            (400, "invalid_input"),
            "{branch:?}"
        );
    }
    assert_eq!(api.admin.app(&hello).await.unwrap().branch, "release");
    let (status, _, _) = refused(api.admin.update_app(&app("nobody"), &change).await);
    assert_eq!(status, 404);
    // Fields it cannot change are refused, not ignored.
    let http = api.admin.http();
    let resp = http
        .patch(format!("{}/api/v1/apps/{hello}", api.admin.base_url()))
        .bearer_auth(token_of(api, "admin").await)
        .json(&serde_json::json!({"root": "services/api"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);

    // A build asked for without a ref builds the new branch (its ref fails
    // to resolve in no repository: the error names it).
    let (_, code, message) = refused(
        api.deployer
            .request_build(&hello, &deploy::RequestBuild::default())
            .await,
    );
    assert_eq!(code, "bad_ref");
    assert!(message.contains("`release`"), "{message}");

    // The audit log says who changed what.
    let audit = api
        .tracker
        .queries()
        .audit(50, None, None, Some(&hello))
        .await
        .unwrap();
    assert!(
        audit.iter().any(|e| e.method == "PATCH"
            && e.status == 200
            && e.target.as_deref() == Some("change app hello: branch release")),
        "{audit:#?}"
    );
    assert!(audit.iter().any(|e| e.method == "PATCH" && e.status == 403));
}

on_both!(
    apps_are_edited_on_sqlite,
    apps_are_edited_on_postgres,
    apps_are_edited_field_by_field
);

/// A fresh token of `role`'s, for requests the typed client cannot make.
async fn token_of(api: &Api, role: &str) -> String {
    let mut tag = [0u8; 4];
    getrandom::fill(&mut tag).expect("randomness");
    api.tracker
        .create_token(&format!("raw-{role}-{}", hex::encode(tag)), role, None)
        .await
        .expect("token")
}

// ---------------------------------------------------------------- remove an app

async fn apps_are_removed_only_when_nothing_runs_them(api: &Api) {
    let hello = app("hello");
    api.register("hello").await;
    api.register("other").await;
    let (web1, web2) = (host("web-1"), host("web-2"));
    let db = api.tracker.db();

    // What only hello owns, and one thing of another app's.
    db.insert_build(&hello, "main", &"a".repeat(40))
        .await
        .unwrap();
    db.insert_build(&app("other"), "main", &"b".repeat(40))
        .await
        .unwrap();
    api.admin
        .set_config(
            &hello,
            &deploy::SetConfig {
                cluster: None,
                vars: [("GREETING".to_string(), "hi".to_string())].into(),
                secret: false,
                apply: false,
            },
        )
        .await
        .unwrap();
    api.admin
        .set_webhook_secret(
            &hello,
            deploy::WebhookProvider::GitHub,
            &serde_json::from_value(serde_json::json!({})).unwrap(),
        )
        .await
        .unwrap();

    // Only admins remove apps.
    for client in [&api.viewer, &api.deployer] {
        let (status, code, _) = refused(client.remove_app(&hello).await);
        assert_eq!((status, code.as_str()), (403, "forbidden"));
    }

    // A deploy under way: refused, naming it and how to cancel it.
    let first = api
        .deploy(
            &hello,
            &[web1.clone(), web2.clone()],
            DeployStatus::Running,
            DeployAction::Deploy,
        )
        .await;
    let (status, code, message) = refused(api.admin.remove_app(&hello).await);
    assert_eq!(
        (status, code.as_str()),
        (409, "deploy_in_progress"),
        "{message}"
    );
    assert!(
        message.contains(&format!("`deploy cancel {first}`")),
        "{message}"
    );

    // Landed on two hosts: refused, naming them and the stop to run.
    db.set_desired(
        &PROD,
        &[web1.clone(), web2.clone()],
        &hello,
        &VERSION,
        first,
    )
    .await
    .unwrap();
    api.finish(first).await;
    let (status, code, message) = refused(api.admin.remove_app(&hello).await);
    assert_eq!((status, code.as_str()), (409, "app_running"), "{message}");
    assert!(
        message.contains("2 hosts of `prod` (web-1, web-2)")
            && message.contains("`deploy stop hello --cluster prod`"),
        "{message}"
    );

    // Stopped everywhere, but web-2's last report still shows a process.
    let stop = api
        .deploy(
            &hello,
            &[web1.clone(), web2.clone()],
            DeployStatus::Running,
            DeployAction::Stop,
        )
        .await;
    db.set_desired(&PROD, &[web1.clone(), web2.clone()], &hello, &VERSION, stop)
        .await
        .unwrap();
    api.finish(stop).await;
    api.report("web-2", "hello", true).await;
    let (status, code, message) = refused(api.admin.remove_app(&hello).await);
    assert_eq!((status, code.as_str()), (409, "app_running"));
    assert!(
        message.contains("1 host of `prod` (web-2 (its last report"),
        "{message}"
    );
    assert_eq!(
        api.admin.app(&hello).await.unwrap().name,
        hello,
        "refusals change nothing"
    );

    // Its next report shows it stopped: removed, with what it owned.
    api.report("web-2", "hello", false).await;
    let removed = api.admin.remove_app(&hello).await.unwrap();
    assert_eq!(
        removed,
        deploy::RemovedApp {
            app: hello.clone(),
            builds: 1,
            deploys: 2,
            desired_hosts: 2,
            pins: 0,
            config_versions: 1,
            webhook_secrets: 1,
            notifications: 0,
        }
    );
    let (status, _, _) = refused(api.viewer.app(&hello).await);
    assert_eq!(status, 404);
    for (table, column) in [
        ("builds", "app"),
        ("deploys", "app"),
        ("desired", "app"),
        ("config_versions", "app"),
        ("webhook_secrets", "app"),
    ] {
        assert_eq!(api.count(table, column, "hello").await, 0, "{table}");
    }
    for id in [first, stop] {
        assert_eq!(api.deploy_hosts(id).await, 0);
    }
    assert_eq!(
        api.count("builds", "app", "other").await,
        1,
        "another app's stay"
    );
    // What the hosts report stays: it is theirs.
    assert_eq!(api.count("app_reports", "app", "hello").await, 1);
    // The audit log keeps every entry, the removal and its refusals too.
    let audit = api
        .tracker
        .queries()
        .audit(100, None, None, Some(&hello))
        .await
        .unwrap();
    let removals: Vec<(u16, Option<&str>)> = audit
        .iter()
        .filter(|e| e.method == "DELETE")
        .map(|e| (e.status, e.error_code.as_deref()))
        .collect();
    assert_eq!(
        removals,
        [
            (200, None),
            (409, Some("app_running")),
            (409, Some("app_running")),
            (409, Some("deploy_in_progress")),
            (403, Some("forbidden")),
            (403, Some("forbidden")),
        ]
    );
    assert!(
        audit
            .iter()
            .any(|e| e.route.as_deref() == Some("/api/v1/apps"))
    );

    // Gone is gone; the name is free again.
    let (status, _, _) = refused(api.admin.remove_app(&hello).await);
    assert_eq!(status, 404);
    api.register("hello").await;
}

on_both!(
    apps_are_removed_on_sqlite,
    apps_are_removed_on_postgres,
    apps_are_removed_only_when_nothing_runs_them
);

// ---------------------------------------------------------------- remove a host

async fn removed_hosts_leave_the_drift_table(api: &Api) {
    let hello = app("hello");
    api.register("hello").await;
    let (web1, web9) = (host("web-1"), host("web-9"));
    for h in ["web-1", "web-9"] {
        api.heartbeat(h).await;
        api.report(h, "hello", true).await;
    }
    let id = api
        .deploy(
            &hello,
            &[web1.clone(), web9.clone()],
            DeployStatus::Running,
            DeployAction::Deploy,
        )
        .await;
    api.tracker
        .db()
        .set_desired(&PROD, &[web1.clone(), web9.clone()], &hello, &VERSION, id)
        .await
        .unwrap();
    let on_web9 = |fleet: &crate::drift::Fleet| {
        fleet.hosts.iter().filter(|h| h.host == web9).count()
            + fleet.agents.iter().filter(|a| a.host == web9).count()
    };
    assert_eq!(on_web9(&api.tracker.fleet().await.unwrap()), 2);

    // Only admins; and not while a deploy has it in a phase not over.
    for client in [&api.viewer, &api.deployer] {
        let (status, code, _) = refused(client.remove_host(&PROD, &web9).await);
        assert_eq!((status, code.as_str()), (403, "forbidden"));
    }
    let (status, code, message) = refused(api.admin.remove_host(&PROD, &web9).await);
    assert_eq!(
        (status, code.as_str()),
        (409, "deploy_in_progress"),
        "{message}"
    );
    assert!(
        message.contains(&format!("deploy {id} of `hello`")),
        "{message}"
    );
    assert_eq!(
        on_web9(&api.tracker.fleet().await.unwrap()),
        2,
        "refused: nothing changed"
    );

    api.finish(id).await;
    let removed = api.admin.remove_host(&PROD, &web9).await.unwrap();
    assert_eq!(
        removed,
        deploy::RemovedHost {
            cluster: PROD.clone(),
            host: web9.clone(),
            apps: vec![hello.clone()],
            registered: true,
            reported: true,
        }
    );
    let fleet = api.tracker.fleet().await.unwrap();
    assert_eq!(on_web9(&fleet), 0, "{fleet:#?}");
    assert_eq!(fleet.agents.len(), 1, "web-1 stays");
    let hosts = api.viewer.hosts().await.unwrap();
    assert_eq!(
        hosts.iter().map(|h| h.name.as_str()).collect::<Vec<_>>(),
        ["web-1"]
    );
    // The deploy's history keeps it.
    let d = api.viewer.deploy(id).await.unwrap();
    assert_eq!(d.hosts.len(), 2);
    let (status, _, _) = refused(api.admin.remove_host(&PROD, &web9).await);
    assert_eq!(status, 404);

    // A host that reports again is back, as a new host.
    api.heartbeat("web-9").await;
    assert_eq!(api.viewer.hosts().await.unwrap().len(), 2);
}

on_both!(
    hosts_are_removed_on_sqlite,
    hosts_are_removed_on_postgres,
    removed_hosts_leave_the_drift_table
);

// ---------------------------------------------------------------- build logs

async fn build_logs_are_followed_by_offset(api: &Api) {
    let hello = app("hello");
    api.register("hello").await;
    let db = api.tracker.db();
    let lease = deploy::Timestamp(deploy::Timestamp::now().0 + 600_000);
    let w1 = Holder::in_process("w1");
    let build = db
        .insert_build(&hello, "main", &"a".repeat(40))
        .await
        .unwrap();
    let id = build.id;
    let append = |holder: &Holder, text: &str| {
        let (holder, text) = (holder.clone(), text.to_string());
        async move {
            assert!(
                db.append_build_log(id, &holder, &text, 4 << 20)
                    .await
                    .unwrap()
            );
        }
    };

    // Queued: nothing yet, not done.
    let log = api.viewer.build_log_from(id, 0).await.unwrap();
    assert_eq!(
        (log.from, log.text.as_str(), log.next, log.status, log.done),
        (0, "", 0, deploy::BuildStatus::Queued, false)
    );

    db.claim_build(&w1, lease, true).await.unwrap().unwrap();
    append(&w1, "step 1\n").await;
    let log = api.viewer.build_log_from(id, 0).await.unwrap();
    assert_eq!(
        (log.text.as_str(), log.next, log.done),
        ("step 1\n", 7, false)
    );
    // Exactly the new bytes, multi-byte characters included.
    append(&w1, "héllo €\n").await;
    let log = api.viewer.build_log_from(id, 7).await.unwrap();
    assert_eq!(
        (log.from, log.text.as_str(), log.next),
        (7, "héllo €\n", 18)
    );
    let log = api.viewer.build_log_from(id, 18).await.unwrap();
    assert_eq!(
        (log.from, log.text.as_str(), log.next, log.done),
        (18, "", 18, false)
    );
    // Inside `é` (bytes 8 and 9): from the next character.
    let log = api.viewer.build_log_from(id, 9).await.unwrap();
    assert_eq!((log.from, log.text.as_str()), (10, "llo €\n"));

    // Past the end, or not a number: invalid.
    let (status, code, _) = refused(api.viewer.build_log_from(id, 19).await);
    assert_eq!((status, code.as_str()), (400, "invalid_input"));
    let (status, _, _) = refused(api.viewer.build_log_from(deploy::BuildId(999_999), 0).await);
    assert_eq!(status, 404);
    for odd in ["from=-1", "from=abc", "from=99999999999999999999999"] {
        let resp = api
            .viewer
            .http()
            .get(format!(
                "{}/api/v1/builds/{id}/log?{odd}",
                api.viewer.base_url()
            ))
            .bearer_auth(token_of(api, "viewer").await)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{odd}");
    }

    // A long log comes in pieces of at most the cap, whole characters.
    let line = format!("{}é\n", "x".repeat(97));
    let long = line.repeat(3000);
    append(&w1, &long).await;
    let (mut at, mut read, mut pieces) = (18u64, String::new(), 0);
    loop {
        let log = api.viewer.build_log_from(id, at).await.unwrap();
        assert_eq!(log.from, at);
        assert!(log.text.len() <= deploy::BUILD_LOG_PIECE_MAX);
        assert_eq!(log.next, at + log.text.len() as u64);
        read.push_str(&log.text);
        pieces += 1;
        if log.next == at {
            break;
        }
        at = log.next;
    }
    assert_eq!(read, long);
    assert!(pieces >= 3, "{pieces}");

    // The result's log continues the streamed one: only its tail is new,
    // and the end says done.
    let streamed = format!("step 1\nhéllo €\n{long}");
    let whole = format!("{streamed}build failed\n");
    assert!(
        db.finish_build_failed(id, &w1, "boom", &whole)
            .await
            .unwrap()
    );
    let log = api.viewer.build_log_from(id, at).await.unwrap();
    assert_eq!(
        (log.from, log.text.as_str(), log.status, log.done),
        (at, "build failed\n", deploy::BuildStatus::Failed, true)
    );
    let end = log.next;
    assert_eq!(end, whole.len() as u64);
    let log = api.viewer.build_log_from(id, end).await.unwrap();
    assert_eq!((log.text.as_str(), log.done), ("", true));
    assert_eq!(api.viewer.build(id).await.unwrap().log, whole);

    // A log that starts over: another worker claims the build after the
    // first handed it back; then its result replaces what it streamed.
    let again = db
        .insert_build(&hello, "main", &"c".repeat(40))
        .await
        .unwrap();
    let id = again.id;
    db.claim_build(&w1, lease, true).await.unwrap().unwrap();
    let append = |holder: &Holder, text: &str| {
        let (holder, text) = (holder.clone(), text.to_string());
        async move {
            assert!(
                db.append_build_log(id, &holder, &text, 4 << 20)
                    .await
                    .unwrap()
            )
        }
    };
    append(&w1, "first try\n").await;
    assert!(db.requeue_build(id, &w1).await.unwrap());
    let w2 = Holder::in_process("w2");
    db.claim_build(&w2, lease, true).await.unwrap().unwrap();
    append(&w2, "second\n").await;
    let log = api.viewer.build_log_from(id, 10).await.unwrap();
    assert_eq!(
        (log.from, log.text.as_str()),
        (11, "second\n"),
        "past the old log"
    );
    let (at, old_end) = (log.next, log.next);
    let replaced = "the whole log, as the worker kept it\n";
    let artifact = crate::model::StoredArtifact {
        key: crate::model::ArtifactKey::new("hello/hello-2-ccccccc.tar.gz"),
        sha256: deploy::Sha256::parse("d".repeat(64)).unwrap(),
        size: 1,
        signature: String::new(),
        index: None,
    };
    let done = crate::db::FinishedBuild {
        build_type: deploy::BuildType::Generic,
        artifact: &artifact,
        release_timeout_ms: None,
        author: None,
        message: None,
        watch: None,
        log: replaced,
    };
    assert!(db.finish_build_ok(id, &w2, &done).await.unwrap());
    let log = api.viewer.build_log_from(id, at).await.unwrap();
    assert_eq!(
        (log.from, log.text.as_str(), log.status, log.done),
        (old_end + 1, replaced, deploy::BuildStatus::Succeeded, true),
        "a new start, said by `from`"
    );
}

on_both!(
    build_logs_are_followed_on_sqlite,
    build_logs_are_followed_on_postgres,
    build_logs_are_followed_by_offset
);

// ---------------------------------------------------------------- deploys by status

async fn deploys_are_listed_by_status(api: &Api) {
    let (hello, other) = (app("hello"), app("other"));
    api.register("hello").await;
    api.register("other").await;
    let mut ids = Vec::new();
    for (a, status) in [
        (&hello, DeployStatus::Succeeded),
        (&hello, DeployStatus::Failed),
        (&other, DeployStatus::Failed),
        (&hello, DeployStatus::Partial),
        (&other, DeployStatus::Running),
        (&hello, DeployStatus::Queued),
    ] {
        // One active deploy per app and cluster: queued ones are not active.
        ids.push(api.deploy(a, &[], status, DeployAction::Deploy).await);
    }
    let list = |app: Option<&'static str>, status: &'static str, limit: u32| {
        let client = api.viewer.clone();
        async move {
            let app = app.map(self::app);
            let status = DeployStatuses::parse(status).unwrap();
            client
                .deploys_filtered(app.as_ref(), None, Some(&status), limit)
                .await
                .unwrap()
                .iter()
                .map(|d| d.id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(list(None, "failed", 10).await, [ids[2], ids[1]]);
    assert_eq!(
        list(None, "failed,partial", 10).await,
        [ids[3], ids[2], ids[1]]
    );
    assert_eq!(
        list(Some("hello"), "failed,partial", 10).await,
        [ids[3], ids[1]]
    );
    assert_eq!(
        list(None, "queued,building,running", 10).await,
        [ids[5], ids[4]]
    );
    assert_eq!(list(None, "cancelled", 10).await, []);
    // `limit` holds with a filter, and the pages go on from there.
    assert_eq!(list(None, "failed,partial", 2).await, [ids[3], ids[2]]);
    let page: deploy::Page<deploy::Deploy> = api
        .viewer
        .page(
            "/api/v1/deploys",
            &deploy::DeployQuery {
                limit: Some(1),
                status: DeployStatuses::new([DeployStatus::Failed]),
                ..deploy::DeployQuery::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        page.items.iter().map(|d| d.id).collect::<Vec<_>>(),
        [ids[2]]
    );
    let rest: deploy::Page<deploy::Deploy> = api
        .viewer
        .page(
            "/api/v1/deploys",
            &deploy::DeployQuery {
                limit: Some(5),
                cursor: page.next.clone(),
                status: DeployStatuses::new([DeployStatus::Failed]),
                ..deploy::DeployQuery::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        rest.items.iter().map(|d| d.id).collect::<Vec<_>>(),
        [ids[1]]
    );
    assert_eq!(rest.next, None);
    let all = api
        .viewer
        .deploys_filtered(None, Some(&PROD), None, 1000)
        .await
        .unwrap();
    assert_eq!(all.len(), ids.len());

    // Names that are not statuses are refused.
    for bad in ["paused", "running,", "", "unknown", "limit=0&status=failed"] {
        let query = if bad.contains('=') {
            bad.to_string()
        } else {
            format!("status={bad}")
        };
        let resp = api
            .viewer
            .http()
            .get(format!("{}/api/v1/deploys?{query}", api.viewer.base_url()))
            .bearer_auth(token_of(api, "viewer").await)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{query}");
        let err: deploy::ErrorBody = resp.json().await.unwrap();
        assert_eq!(err.code, "invalid_input", "{query}");
    }
}

on_both!(
    deploys_by_status_on_sqlite,
    deploys_by_status_on_postgres,
    deploys_are_listed_by_status
);
mod index;
mod load;
mod peers;
mod restart;
mod transfer;
