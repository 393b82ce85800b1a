//! The version checker. On each host, [`agent`] reads the host layout and
//! `/proc` (never the grabber) every interval and reports what is installed
//! and running to AppTracker, which judges drift from the reports
//! (`apptracker/src/drift/compute.rs`); [`check`] is the Nagios/Icinga
//! plugin over the drift table it serves.

pub mod agent;
pub mod check;
pub mod cli;
pub mod scan;

pub use agent::AgentConfig;
pub use scan::Scanner;
