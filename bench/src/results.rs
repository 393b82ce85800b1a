//! Where figures go: one JSON object a line, appended to the results file
//! `scripts/bench` reads back to take medians and print tables.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;

/// The results file (none: figures are only printed).
#[derive(Debug, Clone, Default)]
pub struct Results {
    path: Option<PathBuf>,
}

impl Results {
    pub fn new(path: Option<PathBuf>) -> Self {
        Self { path }
    }

    /// Appends one record (it should name its `bench` and case), or
    /// prints it on stdout when there is no results file.
    pub fn record(&self, value: &serde_json::Value) -> anyhow::Result<()> {
        let line = serde_json::to_string(value)?;
        if self.path.is_none() {
            println!("{line}");
        }
        if let Some(path) = &self.path {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("cannot open {}", path.display()))?;
            writeln!(f, "{line}").with_context(|| format!("cannot write {}", path.display()))?;
        }
        Ok(())
    }
}
