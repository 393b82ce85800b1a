//! AppTracker, Slipway's control plane: the HTTP API, state in SQL, deploy
//! orchestration, the in-process bus and builder, and artifact serving.

mod builder;
mod bus;
pub mod cli;
pub mod config;
mod db;
pub mod drift;
mod http;
pub mod init;
mod model;
mod queue;
mod secrets;
mod startup;
pub mod store;
pub mod tls;
mod tracker;
mod webhooks;

pub use bus::{Bus, Outgoing};
pub use config::Config;
pub use startup::{Application, bootstrap_token};
pub use tracker::Tracker;
#[doc(hidden)]
pub use webhooks::fuzzing;
