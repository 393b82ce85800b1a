//! The whole Slipway platform in one process: AppTracker (with its
//! in-process packer), a grabber per host and, when asked, each host's
//! versionchecker, wired as in production with the embedded defaults.
//!
//! One [`Builder`] assembles it for `slipway dev` (the `slipway` binary),
//! the end-to-end tests (`slipway-tests`) and the benchmarks
//! (`slipway-bench`); each changes AppTracker's and the grabbers' settings
//! through closures over their own `Config`s rather than restating them.
//! The control plane's binary (`apptracker`) stays free of the grabber.

mod builder;
pub mod cli;
pub mod dev;
mod platform;
pub mod repos;

pub use builder::Builder;
pub use platform::{APP_PORT, Host, Platform};
