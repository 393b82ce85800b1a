//! Slipway's per-host agent.
pub mod extract;
