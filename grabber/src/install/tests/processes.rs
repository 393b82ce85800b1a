//! Tests of process types (`[processes]`): a web process and the copies of
//! other types of one app run together, each supervised and restarted on
//! its own crash, checked and baked together, stopped and rolled back
//! together, and reported one by one.

use deploy::{InstalledProcess, ProcessName, ProcessSpec};

use super::*;

/// Kills every copy the engine supervises when dropped, so a failing test
/// leaves no worker running (`Host` kills the web processes).
struct KillCopies<'a>(&'a Host);

impl Drop for KillCopies<'_> {
    fn drop(&mut self) {
        let slots: Vec<Arc<AppSlot>> = match self.0.engine.slots.lock() {
            Ok(s) => s.values().cloned().collect(),
            Err(p) => p.into_inner().values().cloned().collect(),
        };
        for slot in slots {
            for (_, p) in slot.copy_processes() {
                if p.pid > 1 {
                    let _ = nix::sys::signal::killpg(
                        nix::unistd::Pid::from_raw(p.pid as i32),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
        }
    }
}

fn worker() -> ProcessName {
    ProcessName::parse("worker").unwrap()
}

/// A release whose web process sleeps, with `count` workers running
/// `command`.
fn with_workers(version: &str, command: &str, count: u32) -> Manifest {
    let mut m = release(
        version,
        "echo web up; exec sleep 1000",
        HealthCheck::Running,
        None,
    );
    m.health.bake_ms = 300;
    m.processes.insert(
        worker(),
        ProcessSpec {
            command: command.into(),
            port: None,
            health: None,
            count,
        },
    );
    m
}

fn processes(host: &Host) -> Vec<InstalledProcess> {
    installed(host, &hello()).processes
}

fn row(host: &Host, label: &str) -> InstalledProcess {
    processes(host)
        .into_iter()
        .find(|p| p.label() == label)
        .unwrap_or_else(|| panic!("no process {label} in {:?}", processes(host)))
}

fn kill_group(pid: u32) {
    nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_web_and_a_worker_process_both_run_each_supervised_and_restarted_on_crash() {
    let server = ArtifactServer::start().await;
    let host = Host::new();
    let _kill = KillCopies(&host);
    let rec = Recorder::default();
    let token = CancellationToken::new();
    let app = hello();

    let m = with_workers(
        "1-aaaaaaa",
        "echo worker $SLIPWAY_APP port=${PORT:-none}; exec sleep 1000",
        2,
    );
    let r = server.publish(&m, FILES);
    let out = host.engine.install(&request(1, &m, r), &rec, &token).await;
    assert_eq!(out, Outcome::Done, "{:?}", rec.of(DeployId(1)));
    let done = rec.last(DeployId(1)).message.unwrap_or_default();
    assert!(
        done.contains(", worker.1 pid ") && done.contains(", worker.2 pid "),
        "{done}"
    );

    // Three processes, each its own group from the release, the web one
    // first and the app's row.
    let rows = processes(&host);
    let labels: Vec<String> = rows.iter().map(InstalledProcess::label).collect();
    assert_eq!(labels, ["web.1", "worker.1", "worker.2"]);
    let web = installed(&host, &app);
    assert_eq!(rows[0].pid, web.pid);
    let release_dir = host.layout().release_dir(&app, &m.version);
    let mut pids: Vec<u32> = rows.iter().map(|p| p.pid.expect("running")).collect();
    for (p, pid) in rows.iter().zip(&pids) {
        assert_eq!((p.status, p.restarts), (AppRunStatus::Running, 0), "{p:?}");
        assert!(runs_from(*pid, &release_dir), "{p:?}");
    }
    pids.dedup();
    assert_eq!(pids.len(), 3, "{rows:?}");
    // A worker without a health check that needs one gets no `PORT`, and
    // writes its own log.
    assert_eq!(rows[1].port, None);
    let worker_log = host.layout().log_dir(&app).join("hello.worker.2.log");
    until(10, "the worker writes its own log", || {
        std::fs::read_to_string(&worker_log)
            .unwrap_or_default()
            .contains("worker hello port=none")
    })
    .await;
    assert!(
        !std::fs::read_to_string(host.layout().log_file(&app))
            .unwrap()
            .contains("worker hello")
    );

    // A worker crashes: it alone is started again, the others untouched.
    let (web_pid, w1, w2) = (pids[0], pids[1], pids[2]);
    kill_group(w1);
    until(10, "the crashed worker runs again", || {
        let w = row(&host, "worker.1");
        w.restarts == 1 && w.pid.is_some_and(|p| p != w1 && pid_alive(p))
    })
    .await;
    assert_eq!(row(&host, "worker.1").status, AppRunStatus::Running);
    assert!(!pid_alive(w1));
    assert_eq!(row(&host, "worker.2").pid, Some(w2));
    assert_eq!(row(&host, "worker.2").restarts, 0);
    assert_eq!(installed(&host, &app).pid, Some(web_pid));
    assert_eq!(installed(&host, &app).restarts, 0);
    let w1_log = host.layout().log_dir(&app).join("hello.worker.1.log");
    let log = std::fs::read_to_string(&w1_log).unwrap();
    assert_eq!(log.matches(crate::process::START_MARK).count(), 2, "{log}");

    // The web process crashes: it is started again, the workers untouched.
    let w1 = row(&host, "worker.1").pid.unwrap();
    kill_group(web_pid);
    until(10, "the crashed web process runs again", || {
        let a = installed(&host, &app);
        a.restarts == 1 && a.pid.is_some_and(|p| p != web_pid && pid_alive(p))
    })
    .await;
    assert_eq!(row(&host, "web.1").restarts, 1);
    assert_eq!(row(&host, "worker.1").pid, Some(w1));
    assert_eq!(row(&host, "worker.2").pid, Some(w2));

    // The next release stops every process of the old one and starts its
    // own: one worker now.
    let m2 = with_workers("2-bbbbbbb", "exec sleep 1000", 1);
    let r2 = server.publish(&m2, FILES);
    let out = host
        .engine
        .install(&request(2, &m2, r2), &rec, &token)
        .await;
    assert_eq!(out, Outcome::Done, "{:?}", rec.of(DeployId(2)));
    assert!(!pid_alive(w1) && !pid_alive(w2));
    let labels: Vec<String> = processes(&host)
        .iter()
        .map(InstalledProcess::label)
        .collect();
    assert_eq!(labels, ["web.1", "worker.1"]);
    let new_worker = row(&host, "worker.1");
    assert_eq!(new_worker.restarts, 0);
    assert!(runs_from(
        new_worker.pid.unwrap(),
        &host.layout().release_dir(&app, &m2.version)
    ));

    host.engine.stop_all().await;
    assert!(!pid_alive(new_worker.pid.unwrap()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_dies_fails_the_host_and_the_whole_app_is_rolled_back() {
    let server = ArtifactServer::start().await;
    let host = Host::new();
    let _kill = KillCopies(&host);
    let rec = Recorder::default();
    let token = CancellationToken::new();
    let app = hello();

    let a = with_workers("1-aaaaaaa", "exec sleep 1000", 1);
    let a_ref = server.publish(&a, FILES);
    let out = host
        .engine
        .install(&request(1, &a, a_ref), &rec, &token)
        .await;
    assert_eq!(out, Outcome::Done, "{:?}", rec.of(DeployId(1)));
    let old_worker = row(&host, "worker.1").pid.unwrap();

    // B's web process is fine, its worker dies at once.
    let b = with_workers("2-bbbbbbb", "echo B worker broken >&2; exit 3", 1);
    let b_ref = server.publish(&b, FILES);
    let out = host
        .engine
        .install(&request(2, &b, b_ref), &rec, &token)
        .await;
    assert_eq!(
        out,
        Outcome::Failed {
            phase: HostPhase::Checking,
            rolled_back: true
        }
    );
    let last = rec.last(DeployId(2)).message.unwrap_or_default();
    assert!(
        last.contains("worker.1") && last.contains("hello.worker.1.log"),
        "{}",
        last
    );
    // The failure report carries the worker's output, not only the web
    // process's.
    let tail = rec.last(DeployId(2)).log_tail.unwrap_or_default();
    assert!(
        tail.contains("worker.1's output since it started") && tail.contains("B worker broken"),
        "{tail}"
    );
    assert!(!pid_alive(old_worker));
    // A runs again, web and worker, from A's release.
    assert_eq!(
        host.layout().read_current(&app).unwrap(),
        Some(a.version.clone())
    );
    let a_dir = host.layout().release_dir(&app, &a.version);
    for label in ["web.1", "worker.1"] {
        let p = row(&host, label);
        assert_eq!(p.status, AppRunStatus::Running, "{p:?}");
        assert!(runs_from(p.pid.unwrap(), &a_dir), "{p:?}");
    }

    // A worker that exits during the bake fails the host too.
    // (Up through the web process's check and its own grace, 300 ms each.)
    let mut c = with_workers("3-ccccccc", "sleep 2; exit 4", 1);
    c.health.bake_ms = 6_000;
    let c_ref = server.publish(&c, FILES);
    let out = host
        .engine
        .install(&request(3, &c, c_ref), &rec, &token)
        .await;
    assert_eq!(
        out,
        Outcome::Failed {
            phase: HostPhase::Checking,
            rolled_back: true
        },
        "{:?}",
        rec.of(DeployId(3))
    );
    let last = rec.last(DeployId(3)).message.unwrap_or_default();
    assert!(
        last.contains("worker.1 exited") && last.contains("bake"),
        "{}",
        last
    );
    host.engine.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_with_a_port_check_gets_its_own_port_and_must_answer_on_it() {
    let server = ArtifactServer::start().await;
    let host = Host::new();
    let _kill = KillCopies(&host);
    let rec = Recorder::default();
    let token = CancellationToken::new();

    let serve = "exec python3 -m http.server \"$PORT\" --bind 127.0.0.1";
    let mut m = release(
        "1-aaaaaaa",
        serve,
        HealthCheck::Http {
            path: "/hello.txt".into(),
            expect: Some("hello".into()),
        },
        None,
    );
    let tcp = HealthSpec {
        check: HealthCheck::Tcp,
        timeout_ms: 10_000,
        grace_ms: 100,
        interval_ms: 50,
        bake_ms: 0,
    };
    m.processes.insert(
        ProcessName::parse("api").unwrap(),
        ProcessSpec {
            command: serve.into(),
            port: None,
            health: Some(tcp.clone()),
            count: 2,
        },
    );
    let r = server.publish(&m, FILES);
    let out = host.engine.install(&request(1, &m, r), &rec, &token).await;
    assert_eq!(out, Outcome::Done, "{:?}", rec.of(DeployId(1)));
    let ports: Vec<u16> = processes(&host)
        .iter()
        .map(|p| p.port.expect("a port"))
        .collect();
    assert_eq!(ports.len(), 3);
    let mut distinct = ports.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), 3, "{ports:?}");
    for port in &ports {
        assert!(serves(*port).await, "port {port}");
    }

    // A copy that never listens on its port fails its check.
    let mut m2 = release("2-bbbbbbb", serve, m.health.check.clone(), None);
    m2.processes.insert(
        ProcessName::parse("api").unwrap(),
        ProcessSpec {
            command: "exec sleep 1000".into(),
            port: None,
            health: Some(HealthSpec {
                timeout_ms: 500,
                ..tcp
            }),
            count: 1,
        },
    );
    let r2 = server.publish(&m2, FILES);
    let out = host
        .engine
        .install(&request(2, &m2, r2), &rec, &token)
        .await;
    assert_eq!(
        out,
        Outcome::Failed {
            phase: HostPhase::Checking,
            rolled_back: true
        }
    );
    let last = rec.last(DeployId(2)).message.unwrap_or_default();
    assert!(
        last.contains("api.1") && last.contains("timed out"),
        "{}",
        last
    );
    host.engine.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_grabber_keeps_the_web_process_and_starts_the_workers_afresh() {
    let server = ArtifactServer::start().await;
    let host = Host::new();
    let _kill = KillCopies(&host);
    let rec = Recorder::default();
    let m = with_workers("1-aaaaaaa", "exec sleep 1000", 1);
    let r = server.publish(&m, FILES);
    let out = host
        .engine
        .install(&request(1, &m, r), &rec, &CancellationToken::new())
        .await;
    assert_eq!(out, Outcome::Done, "{:?}", rec.of(DeployId(1)));
    let web = installed(&host, &hello()).pid.unwrap();
    let old_worker = row(&host, "worker.1").pid.unwrap();

    let again = Engine::new(
        host.engine.cfg.clone(),
        deploy::tls::Trust::system().http_client().unwrap(),
    );
    again.recover().await;
    let app = again
        .installed()
        .into_iter()
        .find(|a| a.app == hello())
        .unwrap();
    assert_eq!(app.pid, Some(web), "the web process is adopted");
    let worker = app
        .processes
        .iter()
        .find(|p| p.label() == "worker.1")
        .and_then(|p| p.pid)
        .expect("a worker runs");
    assert_ne!(worker, old_worker);
    assert!(!pid_alive(old_worker), "at most one copy of each runs");
    assert!(pid_alive(worker));
    again.stop_all().await;
    assert!(!pid_alive(worker) && !pid_alive(web));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_of_one_process_reports_no_process_rows() {
    let server = ArtifactServer::start().await;
    let host = Host::new();
    let rec = Recorder::default();
    let m = release("1-aaaaaaa", "exec sleep 1000", HealthCheck::Running, None);
    let r = server.publish(&m, FILES);
    let out = host
        .engine
        .install(&request(1, &m, r), &rec, &CancellationToken::new())
        .await;
    assert_eq!(out, Outcome::Done);
    let a = installed(&host, &hello());
    assert!(a.processes.is_empty(), "{a:?}");
    assert!(!serde_json::to_string(&a).unwrap().contains("processes"));
    host.engine.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_worker_port_held_by_another_fails_in_starting_but_its_own_does_not() {
    let server = ArtifactServer::start().await;
    let host = Host::new();
    let _kill = KillCopies(&host);
    let rec = Recorder::default();
    let token = CancellationToken::new();
    let serve = "exec python3 -m http.server \"$PORT\" --bind 127.0.0.1";
    let pinned = |version: &str, port: u16| {
        let mut m = with_workers(version, serve, 1);
        let w = m.processes.get_mut(&worker()).unwrap();
        w.port = Some(port);
        w.health = Some(HealthSpec {
            check: HealthCheck::Tcp,
            timeout_ms: 10_000,
            grace_ms: 100,
            interval_ms: 50,
            bake_ms: 0,
        });
        m
    };

    // The worker's own port, held by its running copy, is no obstacle.
    let own = free_port();
    let a = pinned("1-aaaaaaa", own);
    let r = server.publish(&a, FILES);
    let out = host.engine.install(&request(1, &a, r), &rec, &token).await;
    assert_eq!(out, Outcome::Done, "{:?}", rec.of(DeployId(1)));
    assert_eq!(row(&host, "worker.1").port, Some(own));
    let b = pinned("2-bbbbbbb", own);
    let r = server.publish(&b, FILES);
    let out = host.engine.install(&request(2, &b, r), &rec, &token).await;
    assert_eq!(out, Outcome::Done, "{:?}", rec.of(DeployId(2)));
    assert!(serves(own).await);

    // Another process's port fails the host before anything changes.
    let foreign = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = foreign.local_addr().unwrap().port();
    let web = installed(&host, &hello()).pid.unwrap();
    let c = pinned("3-ccccccc", taken);
    let r = server.publish(&c, FILES);
    let out = host.engine.install(&request(3, &c, r), &rec, &token).await;
    assert_eq!(
        out,
        Outcome::Failed {
            phase: HostPhase::Starting,
            rolled_back: false
        },
        "{:?}",
        rec.of(DeployId(3))
    );
    let message = rec.last(DeployId(3)).message.unwrap_or_default();
    assert!(
        message.contains(&format!("worker.1: port {taken} is already in use")),
        "{message}"
    );
    assert_eq!(
        host.layout().read_current(&hello()).unwrap(),
        Some(b.version.clone())
    );
    assert_eq!(installed(&host, &hello()).pid, Some(web));
    assert!(serves(own).await, "the running worker stopped serving");
    drop(foreign);
    host.engine.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_app_stops_its_workers_too_and_they_stay_down() {
    let server = ArtifactServer::start().await;
    let host = Host::new();
    let _kill = KillCopies(&host);
    let rec = Recorder::default();
    let token = CancellationToken::new();
    let m = with_workers("1-aaaaaaa", "exec sleep 1000", 2);
    let r = server.publish(&m, FILES);
    let out = host
        .engine
        .install(&request(1, &m, r.clone()), &rec, &token)
        .await;
    assert_eq!(out, Outcome::Done, "{:?}", rec.of(DeployId(1)));
    let workers: Vec<u32> = processes(&host)[1..]
        .iter()
        .map(|p| p.pid.unwrap())
        .collect();

    let stop = Release {
        action: DeployAction::Stop,
        ..request(2, &m, r)
    };
    let out = host.engine.install(&stop, &rec, &token).await;
    assert_eq!(out, Outcome::Done, "{:?}", rec.of(DeployId(2)));
    for pid in &workers {
        assert!(!pid_alive(*pid), "worker {pid} still runs");
    }
    // Out of the slot, so their supervisor has nothing to restart.
    assert!(processes(&host).is_empty(), "{:?}", processes(&host));
    assert_eq!(slot_copies(&host), 0);
}

fn slot_copies(host: &Host) -> usize {
    host.engine.slot(&hello()).copy_processes().len()
}
