//! The `deploy` CLI for ops engineers, as a library so the end-to-end tests
//! can build a copy of the binary they run.

#[path = "cli.rs"]
mod cli;

pub use cli::main;
