//! The whole Slipway platform in one process: AppTracker (with its
//! in-process packer), a grabber per host and each host's versionchecker.
//! `slipway dev` (the `slipway` binary) runs it on this machine; the
//! control plane's binary (`apptracker`) stays free of the grabber.

pub mod cli;
pub mod dev;
