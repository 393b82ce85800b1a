//! The version checker. On each host, [`agent`] reads the host layout and
//! `/proc` (never the grabber) every interval and reports what is installed
//! and running to AppTracker. [`drift`] is the computation AppTracker serves
//! (what each host should run against what it reports); [`check`] is the
//! Nagios/Icinga plugin over it.

pub mod agent;
pub mod check;
pub mod cli;
pub mod drift;
pub mod scan;

pub use agent::AgentConfig;
pub use scan::Scanner;
