//! How the CLI shows what the API answers: deploys and their host rows,
//! builds, the drift table, the audit log, sizes and log tails.

use deploy::{AuditEntry, Build, Deploy, DeployHost, DriftReport, DriftState, HostPhase, Transfer};

/// The drift summary, then one line per host (not in sync, or all).
pub(crate) fn drift(report: &DriftReport, all: bool) {
    if report.summary.is_empty() {
        println!("no host runs or should run anything here yet");
        return;
    }
    println!(
        "{:<20} {:<12} {:>7} {:>7} {:>11} {:>7} {:>5} {:>7} {:>9}  SHOULD RUN",
        "APP",
        "CLUSTER",
        "IN-SYNC",
        "DRIFTED",
        "NOT-RUNNING",
        "MISSING",
        "STALE",
        "UNKNOWN",
        "DEPLOYING"
    );
    for s in &report.summary {
        let c = &s.counts;
        let desired: Vec<String> = s.desired.iter().map(|v| v.to_string()).collect();
        println!(
            "{:<20} {:<12} {:>7} {:>7} {:>11} {:>7} {:>5} {:>7} {:>9}  {}",
            s.app.as_str(),
            s.cluster.as_str(),
            c.in_sync,
            c.drifted,
            c.not_running,
            c.missing,
            c.stale,
            c.unknown_app,
            c.deploying,
            desired.join(", ")
        );
    }
    let rows: Vec<_> = report
        .hosts
        .iter()
        .filter(|h| all || h.state != DriftState::InSync || !h.over_limits.is_empty())
        .collect();
    if rows.is_empty() {
        return;
    }
    println!();
    println!(
        "{:<12} {:<20} {:<20} {:<12} {:<14} {:<14} WHY",
        "CLUSTER", "HOST", "APP", "STATE", "SHOULD RUN", "CURRENT"
    );
    for h in rows {
        let v = |v: &Option<deploy::Version>| v.as_ref().map_or("-".into(), |v| v.to_string());
        let mut why = h.reason.clone();
        for b in &h.over_limits {
            why.push_str(&format!(
                "; {} {} over its {} limit",
                b.resource,
                bytes(b.used_bytes),
                bytes(b.limit_bytes)
            ));
        }
        println!(
            "{:<12} {:<20} {:<20} {:<12} {:<14} {:<14} {}",
            h.cluster.as_str(),
            h.host.as_str(),
            h.app.as_str(),
            h.state.as_str(),
            v(&h.desired),
            v(&h.current),
            why
        );
    }
}

/// A size for people: `512 B`, `3.2 KiB`, `1.5 GiB`.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// The audit entries as a table, one line each.
pub(crate) fn audit(entries: &[AuditEntry]) {
    println!(
        "{:<6} {:<20} {:<24} {:<40} {:<15} {:<20} TARGET",
        "ID", "WHEN", "WHO", "REQUEST", "FROM", "OUTCOME"
    );
    for e in entries {
        let who = match &e.role {
            Some(role) => format!("{} ({role})", e.actor),
            None => e.actor.clone(),
        };
        let outcome = match &e.error_code {
            Some(code) => format!("{} {code}", e.status),
            None => e.status.to_string(),
        };
        println!(
            "{:<6} {:<20} {:<24} {:<40} {:<15} {:<20} {}",
            e.id,
            e.at.to_string(),
            who,
            format!("{} {}", e.method, e.path),
            e.peer.as_deref().unwrap_or("-"),
            outcome,
            e.target.as_deref().unwrap_or("")
        );
    }
}

/// How many characters of a commit's message a build line shows.
const BUILD_MESSAGE_CHARS: usize = 60;

/// The start of a commit's message on one line, without control
/// characters (`…` when cut).
pub(crate) fn message_start(message: Option<&str>) -> String {
    let Some(m) = message else {
        return String::new();
    };
    let clean: String = m.chars().filter(|c| !c.is_control()).collect();
    let mut shown: String = clean.chars().take(BUILD_MESSAGE_CHARS).collect();
    if clean.chars().count() > BUILD_MESSAGE_CHARS {
        shown.push('…');
    }
    shown
}

/// One build on one line: id, version, status, commit, ref, the commit's
/// message (its start, without control characters) and its bad mark.
pub(crate) fn build_line(b: &Build) {
    let bad = match &b.bad {
        Some(bad) => format!(" BAD ({}, by {})", bad.reason, bad.by),
        None => String::new(),
    };
    let message = match b.message.as_deref() {
        Some(m) => format!(" — {}", message_start(Some(m))),
        None => String::new(),
    };
    println!(
        "build {:<5} {:<14} {:<10} {} ({}){message}{bad}",
        b.id.to_string(),
        b.version.as_str(),
        format!("{:?}", b.status).to_lowercase(),
        &b.commit.chars().take(12).collect::<String>(),
        b.git_ref
    );
}

/// Why a build failed and the end of its log, on stderr.
pub(crate) fn build_failure(b: &Build) {
    if let Some(e) = &b.error {
        eprintln!("build failed: {e}");
    }
    if !b.log.is_empty() {
        eprintln!("--- build log ---\n{}", tail(&b.log, 40));
    }
}

/// How a host got its release, for people: `5.7 MB`, `12.3 kB (4.0 kB
/// from peers), 21.9 MB reused`; empty when unknown.
pub(crate) fn transfer(t: Option<&Transfer>) -> String {
    let Some(t) = t else {
        return String::new();
    };
    let mut text = decimal_bytes(t.bytes_downloaded);
    if t.bytes_from_peers > 0 {
        text.push_str(&format!(
            " ({} from peers)",
            decimal_bytes(t.bytes_from_peers)
        ));
    }
    if t.bytes_reused > 0 {
        text.push_str(&format!(", {} reused", decimal_bytes(t.bytes_reused)));
    }
    text
}

/// A size in decimal units, as transfers are counted: `512 B`, `12.3 kB`,
/// `5.7 MB`.
fn decimal_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["kB", "MB", "GB", "TB", "PB"];
    if n < 1000 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1000.0;
    let mut unit = 0;
    // Rounds as printed, so 999,999 bytes read `1.0 MB`, not `1000.0 kB`.
    while v >= 999.95 && unit < UNITS.len() - 1 {
        v /= 1000.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// The width of the hosts' transfer column: 0 when no host reported one,
/// so their rows read as before.
pub(crate) fn transfer_width(hosts: &[DeployHost]) -> usize {
    hosts
        .iter()
        .map(|h| transfer(h.transfer.as_ref()).chars().count())
        .max()
        .unwrap_or(0)
}

/// One host of a deploy: its phase, how it got the release (a column
/// `width` wide, none when 0), what failed, and a failed host's log tail.
pub(crate) fn host_row(h: &DeployHost, width: usize) {
    let mut line = format!("  {:<20} {:<12}", h.host.as_str(), h.phase.as_str());
    if width > 0 {
        line.push_str(&format!(" {:<width$}", transfer(h.transfer.as_ref())));
    }
    if let Some(p) = h.failed_phase {
        line.push_str(&format!(" in {p}"));
    }
    if h.phase == HostPhase::Failed {
        line.push_str(if h.rolled_back {
            ", rolled back"
        } else {
            ", not rolled back"
        });
    }
    if let Some(m) = &h.message {
        line.push_str(&format!("  {m}"));
    }
    println!("{line}");
    if h.phase == HostPhase::Failed
        && let Some(t) = &h.log_tail
    {
        for l in tail(t, 20).lines() {
            println!("    | {l}");
        }
    }
}

/// A deploy's summary line, its error, its release phase, then one row per
/// host.
pub(crate) fn deploy_with_hosts(d: &Deploy) {
    let action = if d.action.is_deploy() {
        String::new()
    } else {
        format!("{} ", d.action)
    };
    println!(
        "deploy {}: {action}{} {}{} on {} (hosts ~ {}): {}",
        d.id,
        d.app,
        d.version
            .as_ref()
            .map(|v| v.to_string())
            .or_else(|| d.git_ref.clone())
            .unwrap_or_default(),
        config(d.config_version),
        d.cluster,
        d.hosts_selector,
        d.status
    );
    if let Some(e) = &d.error {
        println!("  error: {e}");
    }
    if let Some(r) = &d.release_phase {
        println!(
            "  release phase on {}: {}{}",
            r.host,
            r.status,
            r.message
                .as_deref()
                .map(|m| format!(": {m}"))
                .unwrap_or_default()
        );
    }
    let width = transfer_width(&d.hosts);
    for h in &d.hosts {
        host_row(h, width);
    }
}

/// ` (config N)` beside a release, or nothing when the app has no config.
pub(crate) fn config(version: u64) -> String {
    if version == 0 {
        String::new()
    } else {
        format!(" (config {version})")
    }
}

/// The last `n` lines of `s`.
pub(crate) fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_well() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(12_288), "12.0 KiB");
        assert_eq!(bytes(3 << 30), "3.0 GiB");
        assert_eq!(bytes(u64::MAX), "16777216.0 TiB");
    }

    #[test]
    fn transfers_read_in_decimal_units() {
        let t = |bytes_downloaded, bytes_from_peers, bytes_reused| {
            transfer(Some(&Transfer {
                bytes_downloaded,
                bytes_from_peers,
                bytes_reused,
            }))
        };
        assert_eq!(transfer(None), "");
        assert_eq!(t(5_700_000, 0, 0), "5.7 MB");
        assert_eq!(t(12_300, 0, 21_900_000), "12.3 kB, 21.9 MB reused");
        assert_eq!(
            t(12_300, 4_000, 21_900_000),
            "12.3 kB (4.0 kB from peers), 21.9 MB reused"
        );
        assert_eq!(t(0, 0, 999), "0 B, 999 B reused");
        assert_eq!(t(999_999, 0, 0), "1.0 MB");
        assert_eq!(t(3_000_000_000, 0, 0), "3.0 GB");
        assert_eq!(t(u64::MAX, 0, 0), "18446.7 PB");
    }

    #[test]
    fn the_transfer_column_is_as_wide_as_its_longest_entry() {
        let h = |transfer| DeployHost {
            host: deploy::HostName::parse("web-1").expect("host"),
            phase: HostPhase::Done,
            failed_phase: None,
            rolled_back: false,
            message: None,
            log_tail: None,
            updated_at: deploy::Timestamp(0),
            batch: 0,
            transfer,
        };
        assert_eq!(transfer_width(&[h(None)]), 0);
        let t = Transfer {
            bytes_downloaded: 12_300,
            bytes_from_peers: 0,
            bytes_reused: 21_900_000,
        };
        assert_eq!(transfer_width(&[h(None), h(Some(t))]), 23);
    }
}
