//! What following a deploy shows: on a terminal, a table redrawn in place
//! (a header, then one row per host with its phase and elapsed time;
//! failures printed above it with their log tail), drawn by indicatif; one
//! line per change otherwise (or with `--no-progress`); nothing but the
//! final record with `--output json`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use console::style;
use deploy::{Deploy, DeployHost, DeployId, DeployStatus, HostPhase, Version};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::output::{self, Output};
use crate::print;

/// How a followed deploy is shown.
pub(crate) enum View {
    Lines(Lines),
    Live(Box<Live>),
    /// `--output json`: only the final record.
    Json,
}

impl View {
    pub(crate) fn new(out: Output, id: DeployId) -> Self {
        if out.json() {
            View::Json
        } else if out.live {
            View::Live(Box::new(Live::new(id)))
        } else {
            View::Lines(Lines::new(id))
        }
    }

    /// A host changed (or the stream's snapshot named it again).
    pub(crate) fn host(&mut self, h: &DeployHost) {
        match self {
            View::Lines(v) => v.host(h),
            View::Live(v) => v.host(h),
            View::Json => {}
        }
    }

    /// The deploy changed status.
    pub(crate) fn status(
        &mut self,
        s: DeployStatus,
        version: Option<&Version>,
        error: Option<&str>,
    ) {
        match self {
            View::Lines(v) => v.status(s, version, error),
            View::Live(v) => v.status(s, version, error),
            View::Json => {}
        }
    }

    /// The deploy as read between streams.
    pub(crate) fn record(&mut self, d: &Deploy) {
        for h in &d.hosts {
            self.host(h);
        }
        self.status(d.status, d.version.as_ref(), d.error.as_deref());
    }

    /// Something about the following itself (a reconnect), on stderr.
    pub(crate) fn note(&mut self, text: &str) {
        match self {
            View::Live(v) => v.multi.suspend(|| eprintln!("note: {text}")),
            _ => eprintln!("note: {text}"),
        }
    }

    /// The deploy ended: its final record.
    pub(crate) fn finish(mut self, d: &Deploy) -> anyhow::Result<()> {
        if let View::Json = self {
            return output::json(d);
        }
        self.record(d);
        if let View::Live(v) = self {
            v.finish(d);
        }
        Ok(())
    }
}

/// One line per change: a host's phase (and a failed host's log tail), the
/// deploy's status.
pub(crate) struct Lines {
    id: DeployId,
    /// What was printed last for each host, to print changes only (a
    /// reconnect's snapshot repeats every host).
    hosts: BTreeMap<String, (HostPhase, Option<String>)>,
    status: Option<DeployStatus>,
}

impl Lines {
    fn new(id: DeployId) -> Self {
        Self {
            id,
            hosts: BTreeMap::new(),
            status: None,
        }
    }

    fn host(&mut self, h: &DeployHost) {
        let now = (h.phase, h.message.clone());
        if self.hosts.get(h.host.as_str()) != Some(&now) {
            self.hosts.insert(h.host.to_string(), now);
            // How the bytes came is news once, when the host has them.
            let width = if h.phase == HostPhase::Extracting {
                print::transfer_width(std::slice::from_ref(h))
            } else {
                0
            };
            print::host_row(h, width);
        }
    }

    fn status(&mut self, s: DeployStatus, version: Option<&Version>, error: Option<&str>) {
        if self.status == Some(s) {
            return;
        }
        self.status = Some(s);
        let v = version.map(|v| format!(" {v}")).unwrap_or_default();
        println!("deploy {}{v}: {s}", self.id);
        if let Some(e) = error {
            println!("  error: {e}");
        }
    }
}

/// The table redrawn in place.
pub(crate) struct Live {
    id: DeployId,
    multi: MultiProgress,
    header: ProgressBar,
    started: Instant,
    rows: BTreeMap<String, Row>,
    version: Option<Version>,
    status: DeployStatus,
}

/// One host's row.
struct Row {
    bar: ProgressBar,
    phase: HostPhase,
    message: Option<String>,
    /// When it left `pending`.
    since: Option<Instant>,
}

/// The header's and an active row's spinner.
fn spinning(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
        .tick_strings(&["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏", "·"])
}

/// A row that no longer changes.
fn still() -> ProgressStyle {
    ProgressStyle::with_template("{msg}").unwrap_or_else(|_| ProgressStyle::default_spinner())
}

const TICK: Duration = Duration::from_millis(120);

impl Live {
    fn new(id: DeployId) -> Self {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stdout_with_hz(10));
        let header = multi.add(ProgressBar::new_spinner());
        header.set_style(spinning("{spinner} {msg} {elapsed:.dim}"));
        header.set_message(format!("deploy {id}"));
        header.enable_steady_tick(TICK);
        Self {
            id,
            multi,
            header,
            started: Instant::now(),
            rows: BTreeMap::new(),
            version: None,
            status: DeployStatus::Unknown,
        }
    }

    fn host(&mut self, h: &DeployHost) {
        let name = h.host.to_string();
        let multi = &self.multi;
        let row = self.rows.entry(name.clone()).or_insert_with(|| {
            let bar = multi.add(ProgressBar::new_spinner());
            bar.set_prefix(name.clone());
            Row {
                bar,
                phase: HostPhase::Unknown,
                message: None,
                since: None,
            }
        });
        if row.phase == h.phase && row.message == h.message {
            return;
        }
        let was = row.phase;
        row.phase = h.phase;
        row.message = h.message.clone();
        if h.phase != HostPhase::Pending && row.since.is_none() {
            row.since = Some(Instant::now());
            row.bar.reset_elapsed();
        }
        let message = h.message.as_deref().unwrap_or("");
        if h.phase.is_terminal() {
            let took = row
                .since
                .map(|s| output::took(s.elapsed().as_millis() as u64))
                .unwrap_or_default();
            let (mark, phase) = match h.phase {
                HostPhase::Done | HostPhase::Skipped => {
                    (style("✓").green(), style(h.phase.as_str()).green())
                }
                HostPhase::NotStarted => (style("-").dim(), style(h.phase.as_str()).dim()),
                _ => (style("✗").red(), style(h.phase.as_str()).red()),
            };
            let mut failed_in = String::new();
            if let Some(p) = h.failed_phase {
                failed_in = format!(" in {p}");
            }
            row.bar.set_style(still());
            row.bar.finish_with_message(format!(
                "  {mark} {:<24} {:<12} {:>6}  {}",
                name,
                phase,
                took,
                format!("{failed_in} {message}").trim()
            ));
            if h.phase == HostPhase::Failed && was != HostPhase::Failed {
                let mut text = format!(
                    "{name} failed{failed_in}{}: {message}",
                    if h.rolled_back {
                        ", rolled back"
                    } else {
                        ", not rolled back"
                    }
                );
                if let Some(t) = &h.log_tail {
                    for l in print::tail(t, 20).lines() {
                        text.push_str(&format!("\n    | {l}"));
                    }
                }
                let _ = self.multi.println(text);
            }
        } else if h.phase == HostPhase::Pending {
            row.bar.set_style(still());
            row.bar
                .set_message(format!("    {:<24} {}", name, style("pending").dim()));
        } else {
            row.bar.set_style(spinning(
                "  {spinner:.cyan} {prefix:<24} {msg:<12} {elapsed:>6}",
            ));
            row.bar.set_message(h.phase.as_str().to_string());
            row.bar.enable_steady_tick(TICK);
        }
    }

    fn status(&mut self, s: DeployStatus, version: Option<&Version>, error: Option<&str>) {
        if let Some(v) = version {
            self.version = Some(v.clone());
        }
        self.status = s;
        let v = self
            .version
            .as_ref()
            .map(|v| format!(" {v}"))
            .unwrap_or_default();
        let done = self.rows.values().filter(|r| r.phase.is_terminal()).count();
        self.header.set_message(format!(
            "deploy {}{v}: {s} ({done}/{} hosts)",
            self.id,
            self.rows.len()
        ));
        if let Some(e) = error {
            let _ = self.multi.println(format!("error: {e}"));
        }
    }

    fn finish(self, d: &Deploy) {
        let v = d
            .version
            .as_ref()
            .map(|v| format!(" {v}"))
            .unwrap_or_default();
        let mark = match d.status {
            DeployStatus::Succeeded => style("✓").green(),
            _ => style("✗").red(),
        };
        self.header.set_style(still());
        self.header.finish_with_message(format!(
            "{mark} deploy {}{v} of {} to {}: {} after {}",
            d.id,
            d.app,
            d.cluster,
            d.status,
            output::took(self.started.elapsed().as_millis() as u64)
        ));
        for r in self.rows.values() {
            if !r.bar.is_finished() {
                r.bar.finish();
            }
        }
        // Every bar is finished: the table stays drawn as it ended, and
        // what follows prints below it.
        drop(self.multi);
        if let Some(e) = &d.error {
            println!("error: {e}");
        }
    }
}
