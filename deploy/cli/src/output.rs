//! How a command prints: `--output json` (the API's own types, one JSON
//! document on stdout, for scripts) or tables for people (aligned columns,
//! relative times), and whether a live view may redraw the terminal.

use std::io::IsTerminal;

use comfy_table::{ColumnConstraint, ContentArrangement, Table};
use deploy::Timestamp;
use serde::Serialize;

/// `--output`: what stdout holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub(crate) enum Format {
    /// Aligned tables and lines for people.
    #[default]
    Table,
    /// The API's JSON (see the OpenAPI document: `GET /api/v1/openapi.json`).
    Json,
}

/// What the global flags say about printing.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Output {
    pub(crate) format: Format,
    /// Live views (redrawn tables, spinners) may draw: stdout is a
    /// terminal, the output is a table and `--no-progress` is absent.
    pub(crate) live: bool,
}

impl Output {
    pub(crate) fn new(format: Format, no_progress: bool) -> Self {
        let live = format == Format::Table && !no_progress && std::io::stdout().is_terminal();
        Self { format, live }
    }

    pub(crate) fn json(self) -> bool {
        self.format == Format::Json
    }
}

/// Prints `value` as pretty JSON on stdout.
pub(crate) fn json<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Colours and styles off when `NO_COLOR` is set (to anything but the
/// empty string, per no-color.org) or stdout is not a terminal.
pub(crate) fn init_colours() {
    let off = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    if off {
        console::set_colors_enabled(false);
        console::set_colors_enabled_stderr(false);
    }
}

/// A table with the given column titles: no borders, columns three spaces
/// apart, nothing wrapped (a pipe gets whole lines).
pub(crate) fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(comfy_table::presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(header.to_vec());
    for c in t.column_iter_mut() {
        c.set_padding((0, 3));
        c.set_constraint(ColumnConstraint::ContentWidth);
    }
    t
}

/// Prints a table, each line without its trailing blanks.
pub(crate) fn print_table(t: &Table) {
    for line in t.lines() {
        println!("{}", line.trim_end());
    }
}

/// How long ago `at` was, as people say it: `just now`, `42s ago`,
/// `5m ago`, `3h ago`, `12d ago`.
pub(crate) fn ago(at: Timestamp) -> String {
    ago_from(Timestamp::now(), at)
}

/// [`ago`] from a given now.
pub(crate) fn ago_from(now: Timestamp, at: Timestamp) -> String {
    let secs = now.millis_since(at) / 1000;
    match secs {
        0..=4 => "just now".into(),
        5..=119 => format!("{secs}s ago"),
        120..=7199 => format!("{}m ago", secs / 60),
        7200..=172_799 => format!("{}h ago", secs / 3600),
        _ => format!("{}d ago", secs / 86_400),
    }
}

/// A duration in milliseconds as a short clock: `0.4s`, `12s`, `3m05s`.
pub(crate) fn took(ms: u64) -> String {
    match ms {
        0..=9_999 => format!("{:.1}s", ms as f64 / 1000.0),
        10_000..=119_999 => format!("{}s", ms / 1000),
        _ => format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_like_people_say_them() {
        let now = Timestamp(10_000_000_000);
        let before = |s: i64| Timestamp(now.0 - s * 1000);
        assert_eq!(ago_from(now, before(1)), "just now");
        assert_eq!(ago_from(now, before(42)), "42s ago");
        assert_eq!(ago_from(now, before(300)), "5m ago");
        assert_eq!(ago_from(now, before(3 * 3600)), "3h ago");
        assert_eq!(ago_from(now, before(12 * 86_400)), "12d ago");
        // A clock ahead of ours is not "in the future".
        assert_eq!(ago_from(now, Timestamp(now.0 + 5000)), "just now");
        assert_eq!(took(400), "0.4s");
        assert_eq!(took(12_300), "12s");
        assert_eq!(took(185_000), "3m05s");
    }

    #[test]
    fn tables_align_without_trailing_blanks() {
        let mut t = table(&["NAME", "ROLE"]);
        t.add_row(vec!["ci", "deployer"]);
        t.add_row(vec!["a-long-name", "admin"]);
        let lines: Vec<String> = t.lines().map(|l| l.trim_end().to_string()).collect();
        assert_eq!(
            lines,
            [
                "NAME          ROLE",
                "ci            deployer",
                "a-long-name   admin"
            ]
        );
    }
}
