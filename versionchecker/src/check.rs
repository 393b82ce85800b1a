//! `versionchecker check`: a Nagios/Icinga plugin over `GET /api/v1/drift`.
//! One status line, `SLIPWAY DRIFT <STATUS> - <text> | <perfdata>`, and the
//! plugin exit codes: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN. Thresholds use
//! the monitoring-plugins range syntax (`N`, `N:`, `~:N`, `N:M`, `@N:M`).

use std::fmt;

use deploy::drift::{DriftCounts, DriftReport, DriftState};

/// The plugin's verdict, its exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    Ok = 0,
    Warning = 1,
    Critical = 2,
    Unknown = 3,
}

impl Status {
    pub fn code(self) -> u8 {
        self as u8
    }

    fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Warning => "WARNING",
            Status::Critical => "CRITICAL",
            Status::Unknown => "UNKNOWN",
        }
    }
}

/// The service name at the start of every status line.
pub const SERVICE: &str = "SLIPWAY DRIFT";

/// A threshold range. A value outside `start..=end` alerts (inside, with a
/// leading `@`). `10` means alert above 10 (or below 0); `10:` below 10;
/// `~:10` above 10; `10:20` outside 10–20; `@10:20` inside.
#[derive(Debug, Clone, PartialEq)]
pub struct Range {
    text: String,
    start: Option<f64>,
    end: Option<f64>,
    inside: bool,
}

impl Range {
    pub fn parse(s: &str) -> Result<Range, String> {
        let text = s.trim().to_string();
        let bad = || format!("`{text}` is not a threshold range (like 0, 5, 2:, ~:5, 1:3 or @1:3)");
        let (inside, body) = match text.strip_prefix('@') {
            Some(rest) => (true, rest),
            None => (false, text.as_str()),
        };
        let num = |s: &str| s.trim().parse::<f64>().map_err(|_| bad());
        let (start, end) = match body.split_once(':') {
            None => (Some(0.0), Some(num(body)?)),
            Some((a, b)) => {
                let start = match a.trim() {
                    "~" => None,
                    "" => Some(0.0),
                    a => Some(num(a)?),
                };
                let end = match b.trim() {
                    "" => None,
                    b => Some(num(b)?),
                };
                (start, end)
            }
        };
        if let (Some(a), Some(b)) = (start, end)
            && a > b
        {
            return Err(format!("`{text}`: the start is above the end"));
        }
        Ok(Range {
            text,
            start,
            end,
            inside,
        })
    }

    /// Whether `v` should raise the alert this range guards.
    pub fn alerts(&self, v: f64) -> bool {
        let within = self.start.is_none_or(|s| v >= s) && self.end.is_none_or(|e| v <= e);
        if self.inside { within } else { !within }
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The thresholds of one check, applied to the count of drifted hosts
/// (drifted, not running or missing) and to the count of stale ones.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Thresholds {
    pub warning: Option<Range>,
    pub critical: Option<Range>,
}

impl Thresholds {
    fn status(&self, v: usize) -> Status {
        let v = v as f64;
        if self.critical.as_ref().is_some_and(|r| r.alerts(v)) {
            Status::Critical
        } else if self.warning.as_ref().is_some_and(|r| r.alerts(v)) {
            Status::Warning
        } else {
            Status::Ok
        }
    }
}

/// What the plugin prints and exits with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub status: Status,
    pub line: String,
}

impl Outcome {
    /// A check that could not be made: no server, a refused token, bad flags.
    pub fn unknown(why: impl fmt::Display) -> Outcome {
        // One line: Nagios reads only the first.
        let why = why.to_string().replace(['\n', '|'], " ");
        Outcome {
            status: Status::Unknown,
            line: format!("{SERVICE} UNKNOWN - {why}"),
        }
    }
}

/// A perfdata label, quoted (a quote inside doubled).
fn label(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Judges a drift report (already narrowed to the app and cluster asked
/// for, `what` naming them for the text).
pub fn evaluate(report: &DriftReport, what: &str, t: &Thresholds) -> Outcome {
    let mut counts = DriftCounts::default();
    for s in &report.summary {
        for state in DriftState::ALL {
            for _ in 0..s.counts.get(state) {
                counts.add(state);
            }
        }
    }
    let total = counts.total();
    if total == 0 {
        return Outcome::unknown(format!(
            "no host runs or should run {what}: check --app and --cluster"
        ));
    }
    let drifted = counts.out_of_sync();
    let stale = counts.stale;
    let status = t.status(drifted).max(t.status(stale));

    let mut text = if drifted == 0 && stale == 0 {
        format!("{} of {total} hosts of {what} in sync", counts.in_sync)
    } else {
        let mut parts = vec![format!("{drifted} of {total} hosts of {what} drifted")];
        let mut examples: Vec<String> = report
            .hosts
            .iter()
            .filter(|h| h.state.needs_sync())
            .take(3)
            .map(|h| format!("{} {}: {}", h.host, h.app, h.reason))
            .collect();
        if drifted > examples.len() && !examples.is_empty() {
            examples.push("…".into());
        }
        if !examples.is_empty() {
            parts[0].push_str(&format!(" ({})", examples.join("; ")));
        }
        let stale_hosts: Vec<String> = report
            .hosts
            .iter()
            .filter(|h| h.state == DriftState::Stale)
            .map(|h| h.host.to_string())
            .collect();
        parts.push(if stale_hosts.is_empty() {
            "0 stale".to_string()
        } else {
            format!("{stale} stale ({})", stale_hosts.join(", "))
        });
        parts.join(", ")
    };
    if counts.deploying > 0 {
        text.push_str(&format!(", {} deploying", counts.deploying));
    }
    text = text.replace(['\n', '|'], " ");

    let range = |r: &Option<Range>| r.as_ref().map(|r| r.to_string()).unwrap_or_default();
    let (w, c) = (range(&t.warning), range(&t.critical));
    let mut perf = vec![
        format!("{}={drifted};{w};{c};0;{total}", label("drifted")),
        format!("{}={stale};{w};{c};0;{total}", label("stale")),
    ];
    for state in [
        DriftState::InSync,
        DriftState::NotRunning,
        DriftState::Missing,
        DriftState::Deploying,
        DriftState::UnknownApp,
    ] {
        perf.push(format!(
            "{}={};;;0;{total}",
            label(&state.as_str().replace('-', "_")),
            counts.get(state)
        ));
    }
    Outcome {
        status,
        line: format!(
            "{SERVICE} {} - {text} | {}",
            status.as_str(),
            perf.join(" ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deploy::drift::{DriftHost, DriftSummary};
    use deploy::{AppName, Cluster, HostName, Timestamp};

    fn r(s: &str) -> Range {
        Range::parse(s).unwrap()
    }

    #[test]
    fn ranges_follow_the_plugin_guidelines() {
        // (range, value, alerts)
        let cases = [
            ("10", 11.0, true),
            ("10", 10.0, false),
            ("10", -1.0, true),
            ("0", 0.0, false),
            ("0", 1.0, true),
            ("10:", 9.0, true),
            ("10:", 100.0, false),
            ("~:10", -100.0, false),
            ("~:10", 11.0, true),
            ("10:20", 15.0, false),
            ("10:20", 21.0, true),
            ("@10:20", 15.0, true),
            ("@10:20", 9.0, false),
        ];
        for (range, v, alerts) in cases {
            assert_eq!(r(range).alerts(v), alerts, "{range} at {v}");
        }
        assert!(Range::parse("lots").is_err());
        assert!(Range::parse("5:1").unwrap_err().contains("above"));
    }

    fn report(states: &[DriftState]) -> DriftReport {
        let mut counts = DriftCounts::default();
        let hosts: Vec<DriftHost> = states
            .iter()
            .enumerate()
            .map(|(i, s)| {
                counts.add(*s);
                DriftHost {
                    cluster: Cluster::parse("prod").unwrap(),
                    host: HostName::parse(format!("web-{}", i + 1)).unwrap(),
                    app: AppName::parse("web").unwrap(),
                    state: *s,
                    reason: format!("reason {i} | with a pipe"),
                    desired: None,
                    desired_deploy: None,
                    current: None,
                    process: None,
                    restarts: 0,
                    disk: None,
                    reported_at: None,
                    over_limits: vec![],
                }
            })
            .collect();
        DriftReport {
            generated_at: Timestamp(0),
            summary: vec![DriftSummary {
                app: AppName::parse("web").unwrap(),
                cluster: Cluster::parse("prod").unwrap(),
                counts,
                desired: vec![],
            }],
            hosts,
            agents: vec![],
        }
    }

    #[test]
    fn status_follows_the_thresholds_on_drifted_and_stale_hosts() {
        use DriftState::*;
        let t = Thresholds {
            warning: Some(r("0")),
            critical: Some(r("1")),
        };
        let ok = evaluate(&report(&[InSync, InSync, Deploying]), "web", &t);
        assert_eq!(ok.status, Status::Ok, "{}", ok.line);
        assert!(
            ok.line
                .starts_with("SLIPWAY DRIFT OK - 2 of 3 hosts of web in sync"),
            "{}",
            ok.line
        );
        let w = evaluate(&report(&[InSync, Drifted, InSync]), "web", &t);
        assert_eq!(w.status, Status::Warning, "{}", w.line);
        assert!(w.line.contains("'drifted'=1;0;1;0;3"), "{}", w.line);
        let c = evaluate(&report(&[NotRunning, Drifted, InSync]), "web", &t);
        assert_eq!(c.status, Status::Critical, "{}", c.line);
        let s = evaluate(&report(&[Stale, InSync, InSync]), "web", &t);
        assert_eq!(
            s.status,
            Status::Warning,
            "stale hosts alert too: {}",
            s.line
        );
        assert!(s.line.contains("1 stale (web-1)"), "{}", s.line);
        // No thresholds: never an alert.
        let quiet = evaluate(&report(&[Drifted, Drifted]), "web", &Thresholds::default());
        assert_eq!(quiet.status, Status::Ok);
        // One line, and the only `|` separates the perfdata.
        assert_eq!(c.line.lines().count(), 1);
        assert_eq!(c.line.matches('|').count(), 1, "{}", c.line);
        let none = evaluate(&report(&[]), "web on prod", &t);
        assert_eq!(none.status, Status::Unknown);
        assert_eq!(label("it's"), "'it''s'");
    }
}
