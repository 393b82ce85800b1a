//! Every state and its reason, from hand-made inputs.

use super::*;
use deploy::report::{AppDisk, ProcessReport};

const MIN: u64 = 60_000;
/// "Now" in these tests: far enough from zero that subtracting is safe.
const NOW: i64 = 1_000_000_000;

fn c() -> Cluster {
    Cluster::parse("prod").unwrap()
}
fn h(s: &str) -> HostName {
    HostName::parse(s).unwrap()
}
fn a(s: &str) -> AppName {
    AppName::parse(s).unwrap()
}
fn v(s: &str) -> Version {
    Version::parse(s).unwrap()
}
fn ago(ms: u64) -> Timestamp {
    Timestamp(NOW - ms as i64)
}

fn desired(host: &str, version: &str, deploy: i64) -> Desired {
    Desired {
        cluster: c(),
        host: h(host),
        app: a("web"),
        version: v(version),
        deploy: DeployId(deploy),
        config_version: 0,
        stopped: false,
    }
}

fn running(app: &str, version: &str) -> AppReport {
    AppReport {
        app: a(app),
        current: Some(v(version)),
        releases: vec![v(version)],
        process: Some(ProcessReport {
            pid: 4242,
            version: Some(v(version)),
            uptime_ms: 10_000,
            rss_bytes: 30 << 20,
            cpu_ms: 120,
            cpu_percent: Some(0.5),
        }),
        restarts: 0,
        disk: AppDisk {
            releases_bytes: 10 << 20,
            shared_bytes: 1 << 20,
            logs_bytes: 5 << 20,
        },
        config_version: 0,
        stopped: false,
        changed_on_disk: None,
        changed_path: None,
        error: None,
    }
}

fn report(host: &str, taken: Timestamp, apps: Vec<AppReport>) -> Reported {
    Reported {
        cluster: c(),
        host: h(host),
        observed_at: taken,
        interval_ms: MIN,
        disk: None,
        apps,
    }
}

fn registered(host: &str, at: Timestamp) -> Registered {
    Registered {
        cluster: c(),
        host: h(host),
        registered_at: at,
    }
}

fn inputs() -> Inputs {
    let mut i = Inputs::new(Timestamp(NOW), Duration::from_millis(MIN));
    i.known_apps.insert(a("web"));
    i
}

/// The one row of `app` on `host`.
fn row<'a>(fleet: &'a Fleet, host: &str, app: &str) -> &'a DriftHost {
    fleet
        .hosts
        .iter()
        .find(|r| r.host.as_str() == host && r.app.as_str() == app)
        .unwrap_or_else(|| panic!("no row for {app} on {host}: {fleet:#?}"))
}

fn verdict(i: &Inputs, host: &str) -> (DriftState, String) {
    let f = compute(i);
    let r = row(&f, host, "web");
    (r.state, r.reason.clone())
}

#[test]
fn in_sync_when_it_runs_what_it_should() {
    let mut i = inputs();
    i.desired.push(desired("web-1", "2-bbbbbbb", 7));
    i.reports.push(report(
        "web-1",
        ago(10_000),
        vec![running("web", "2-bbbbbbb")],
    ));
    let (s, why) = verdict(&i, "web-1");
    assert_eq!(s, DriftState::InSync, "{why}");
    assert!(why.contains("runs 2-bbbbbbb (deploy 7)"), "{why}");
}

#[test]
fn drifted_when_current_names_another_version() {
    let mut i = inputs();
    i.desired.push(desired("web-1", "2-bbbbbbb", 7));
    i.reports.push(report(
        "web-1",
        ago(10_000),
        vec![running("web", "1-aaaaaaa")],
    ));
    let (s, why) = verdict(&i, "web-1");
    assert_eq!(s, DriftState::Drifted);
    assert!(
        why.contains("`current` names 1-aaaaaaa")
            && why.contains("should run 2-bbbbbbb (deploy 7)"),
        "{why}"
    );
}

#[test]
fn drifted_when_the_files_of_the_right_release_were_changed_by_hand() {
    let mut i = inputs();
    i.desired.push(desired("web-1", "2-bbbbbbb", 7));
    let mut changed = running("web", "2-bbbbbbb");
    changed.changed_on_disk = Some(true);
    i.reports
        .push(report("web-1", ago(10_000), vec![changed.clone()]));
    let (s, why) = verdict(&i, "web-1");
    assert_eq!(s, DriftState::Drifted, "{why}");
    assert!(
        why.contains("the files of 2-bbbbbbb were changed on this host since it was installed;"),
        "{why}"
    );
    // The first changed path, when the versionchecker knows it.
    changed.changed_path = Some("app.py".into());
    i.reports = vec![report("web-1", ago(10_000), vec![changed])];
    let (s, why) = verdict(&i, "web-1");
    assert_eq!(s, DriftState::Drifted, "{why}");
    assert!(
        why.contains("were changed on this host since it was installed (first: `app.py`);"),
        "{why}"
    );
    // Verified unchanged, or not known: in sync.
    for known in [Some(false), None] {
        let mut i = inputs();
        i.desired.push(desired("web-1", "2-bbbbbbb", 7));
        let mut r = running("web", "2-bbbbbbb");
        r.changed_on_disk = known;
        i.reports.push(report("web-1", ago(10_000), vec![r]));
        assert_eq!(verdict(&i, "web-1").0, DriftState::InSync, "{known:?}");
    }
}

#[test]
fn drifted_when_the_process_still_runs_an_older_release() {
    let mut i = inputs();
    i.desired.push(desired("web-1", "2-bbbbbbb", 7));
    let mut r = running("web", "2-bbbbbbb");
    r.process.as_mut().unwrap().version = Some(v("1-aaaaaaa"));
    i.reports.push(report("web-1", ago(10_000), vec![r]));
    let (s, why) = verdict(&i, "web-1");
    assert_eq!(s, DriftState::Drifted);
    assert!(why.contains("still runs 1-aaaaaaa"), "{why}");
}

#[test]
fn not_running_when_installed_but_down() {
    let mut i = inputs();
    i.desired.push(desired("web-1", "2-bbbbbbb", 7));
    let mut r = running("web", "2-bbbbbbb");
    r.process = None;
    r.restarts = 3;
    i.reports.push(report("web-1", ago(10_000), vec![r]));
    let (s, why) = verdict(&i, "web-1");
    assert_eq!(s, DriftState::NotRunning);
    assert!(
        why.contains("2-bbbbbbb is installed but no process") && why.contains("3 restart(s)"),
        "{why}"
    );
}

#[test]
fn a_config_other_than_the_deploys_is_drift_and_a_stop_is_in_sync() {
    let mut i = inputs();
    let mut d = desired("web-1", "2-bbbbbbb", 7);
    d.config_version = 3;
    i.desired.push(d.clone());
    let mut r = running("web", "2-bbbbbbb");
    r.config_version = 2;
    i.reports
        .push(report("web-1", ago(10_000), vec![r.clone()]));
    let (s, why) = verdict(&i, "web-1");
    assert_eq!(s, DriftState::Drifted, "{why}");
    assert!(
        why.contains("with config 2") && why.contains("with config 3"),
        "{why}"
    );
    r.config_version = 3;
    i.reports[0] = report("web-1", ago(10_000), vec![r.clone()]);
    assert_eq!(verdict(&i, "web-1").0, DriftState::InSync);

    // Stopped by a deploy: down is in sync, up is drift.
    i.desired[0].stopped = true;
    let (s, why) = verdict(&i, "web-1");
    assert_eq!(s, DriftState::Drifted, "{why}");
    assert!(why.contains("though deploy 7 stopped it"), "{why}");
    r.process = None;
    i.reports[0] = report("web-1", ago(10_000), vec![r]);
    let (s, why) = verdict(&i, "web-1");
    assert_eq!(s, DriftState::InSync, "{why}");
    assert!(why.contains("stopped by deploy 7"), "{why}");
}

#[test]
fn missing_when_not_installed_or_without_current() {
    let mut i = inputs();
    i.desired.push(desired("web-1", "2-bbbbbbb", 7));
    i.desired.push(desired("web-2", "2-bbbbbbb", 7));
    i.reports.push(report("web-1", ago(10_000), vec![]));
    let mut broken = running("web", "2-bbbbbbb");
    broken.current = None;
    broken.process = None;
    broken.error = Some("`current` of web points at \"/etc\", which is not a release".into());
    i.reports.push(report("web-2", ago(10_000), vec![broken]));
    let f = compute(&i);
    let r1 = row(&f, "web-1", "web");
    assert_eq!(r1.state, DriftState::Missing);
    assert!(r1.reason.contains("web is not installed"), "{}", r1.reason);
    let r2 = row(&f, "web-2", "web");
    assert_eq!(r2.state, DriftState::Missing);
    assert!(
        r2.reason.contains("without a `current`") && r2.reason.contains("/etc"),
        "{}",
        r2.reason
    );
}

#[test]
fn stale_after_three_intervals_without_a_report() {
    let mut i = inputs();
    i.desired.push(desired("web-1", "2-bbbbbbb", 7));
    // Exactly three intervals old: not yet.
    i.reports.push(report(
        "web-1",
        ago(3 * MIN),
        vec![running("web", "1-aaaaaaa")],
    ));
    assert_eq!(verdict(&i, "web-1").0, DriftState::Drifted);
    i.reports[0].observed_at = ago(3 * MIN + 1);
    let (s, why) = verdict(&i, "web-1");
    assert_eq!(s, DriftState::Stale, "a stale report proves no drift");
    assert!(
        why.contains("no report for 3m") && why.contains("every 1m"),
        "{why}"
    );
    assert!(compute(&i).agents[0].stale);
}

#[test]
fn the_hosts_own_interval_decides_staleness() {
    let mut i = inputs();
    i.desired.push(desired("web-1", "2-bbbbbbb", 7));
    let mut r = report("web-1", ago(2_000), vec![running("web", "2-bbbbbbb")]);
    r.interval_ms = 500;
    i.reports.push(r);
    assert_eq!(verdict(&i, "web-1").0, DriftState::Stale);
    i.reports[0].observed_at = ago(1_000);
    assert_eq!(verdict(&i, "web-1").0, DriftState::InSync);
}

#[test]
fn a_host_that_never_reported_waits_three_intervals_then_is_stale() {
    let mut i = inputs();
    i.desired.push(desired("web-1", "2-bbbbbbb", 7));
    i.registered.push(registered("web-1", ago(MIN)));
    i.changes.push(Change {
        cluster: c(),
        host: h("web-1"),
        app: a("web"),
        deploy: DeployId(7),
        at: ago(MIN / 2),
    });
    let (s, why) = verdict(&i, "web-1");
    assert_eq!(s, DriftState::Deploying, "a new host is not drift: {why}");
    assert!(why.contains("waiting for the first report"), "{why}");
    assert!(!compute(&i).agents[0].stale);

    i.registered[0].registered_at = ago(10 * MIN);
    i.changes[0].at = ago(4 * MIN);
    let (s, why) = verdict(&i, "web-1");
    assert_eq!(s, DriftState::Stale);
    assert!(why.contains("never reported"), "{why}");
    assert!(compute(&i).agents[0].stale);
}

#[test]
fn no_false_drift_during_or_right_after_a_rollout() {
    let mut i = inputs();
    // The rollout of 3-ccccccc is under way: desired already says 3.
    i.desired.push(desired("web-1", "3-ccccccc", 8));
    i.reports.push(report(
        "web-1",
        ago(10_000),
        vec![running("web", "2-bbbbbbb")],
    ));
    i.in_flight.push(InFlight {
        cluster: c(),
        host: h("web-1"),
        app: a("web"),
        deploy: DeployId(8),
        phase: HostPhase::Checking,
    });
    let (s, why) = verdict(&i, "web-1");
    assert_eq!(s, DriftState::Deploying);
    assert!(
        why.contains("deploy 8 is under way here (checking)"),
        "{why}"
    );

    // Done 5 s ago; the last report is from before: still not drift.
    i.in_flight.clear();
    i.changes.push(Change {
        cluster: c(),
        host: h("web-1"),
        app: a("web"),
        deploy: DeployId(8),
        at: ago(5_000),
    });
    let (s, why) = verdict(&i, "web-1");
    assert_eq!(s, DriftState::Deploying);
    assert!(why.contains("after the last report"), "{why}");

    // The next report shows it.
    i.reports[0] = report("web-1", ago(1_000), vec![running("web", "3-ccccccc")]);
    assert_eq!(verdict(&i, "web-1").0, DriftState::InSync);
}

#[test]
fn unknown_app_when_nobody_deployed_it_here() {
    let mut i = inputs();
    let mut extra = running("cron", "5-eeeeeee");
    extra.process = None;
    i.reports.push(report(
        "web-1",
        ago(10_000),
        vec![running("web", "1-aaaaaaa"), extra],
    ));
    // A leftover with nothing current and nothing running is no one's concern.
    let mut leftover = running("old", "1-aaaaaaa");
    leftover.current = None;
    leftover.process = None;
    i.reports[0].apps.push(leftover);
    let f = compute(&i);
    assert_eq!(f.hosts.len(), 2, "{f:#?}");
    let web = row(&f, "web-1", "web");
    assert_eq!(web.state, DriftState::UnknownApp);
    assert!(
        web.reason.contains("never deployed to this host"),
        "{}",
        web.reason
    );
    let cron = row(&f, "web-1", "cron");
    assert_eq!(cron.state, DriftState::UnknownApp);
    assert!(
        cron.reason.contains("cron 5-eeeeeee") && cron.reason.contains("does not know"),
        "{}",
        cron.reason
    );
}

#[test]
fn limits_flag_hosts_and_summaries_count_states() {
    let mut i = inputs();
    for (n, host) in ["web-1", "web-2", "web-3"].into_iter().enumerate() {
        i.desired.push(desired(host, "2-bbbbbbb", 7));
        let version = if n == 2 { "1-aaaaaaa" } else { "2-bbbbbbb" };
        i.reports
            .push(report(host, ago(1_000), vec![running("web", version)]));
    }
    // web-1's logs fill the disk.
    i.reports[0].apps[0].disk.logs_bytes = 3 << 30;
    i.limits = ResourceLimits {
        default: Limit {
            disk: Some(ByteSize::parse("1GiB").unwrap()),
            memory: None,
        },
        apps: [(
            a("web"),
            Limit {
                disk: None,
                memory: Some(ByteSize::parse("20MiB").unwrap()),
            },
        )]
        .into_iter()
        .collect(),
    };
    let f = compute(&i);
    let r1 = row(&f, "web-1", "web");
    let resources: Vec<&str> = r1.over_limits.iter().map(|b| b.resource.as_str()).collect();
    assert_eq!(resources, ["disk", "memory"], "{r1:#?}");
    assert_eq!(r1.over_limits[0].limit_bytes, 1 << 30);
    assert_eq!(
        r1.state,
        DriftState::InSync,
        "limits do not change the state"
    );

    let s = summarize(&f.hosts);
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].counts.in_sync, 2);
    assert_eq!(s[0].counts.drifted, 1);
    assert_eq!(s[0].counts.over_limit, 3, "30 MiB resident everywhere");
    assert_eq!(s[0].desired, vec![v("2-bbbbbbb")]);
}

#[test]
fn sizes_parse_like_people_write_them() {
    assert_eq!(ByteSize::parse("512MiB"), Ok(ByteSize(512 << 20)));
    assert_eq!(ByteSize::parse("2 GB"), Ok(ByteSize(2 << 30)));
    assert_eq!(ByteSize::parse("4096"), Ok(ByteSize(4096)));
    assert!(ByteSize::parse("lots").is_err());
    assert!(
        ByteSize::parse("5 parsecs")
            .unwrap_err()
            .contains("parsecs")
    );
    let l: ResourceLimits =
        serde_json::from_str(r#"{"default":{"disk":"1GiB"},"apps":{"web":{"memory":1024}}}"#)
            .unwrap();
    assert_eq!(l.for_app(&a("web")).memory, Some(ByteSize(1024)));
    assert_eq!(l.for_app(&a("web")).disk, Some(ByteSize(1 << 30)));
    assert!(serde_json::from_str::<ResourceLimits>(r#"{"apps":{"Bad Name":{}}}"#).is_err());
}
