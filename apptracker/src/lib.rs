//! AppTracker, Slipway's control plane: the HTTP API, state in SQL, deploy
//! orchestration, the in-process bus and builder, and artifact serving.

mod audit;
pub mod auth;
mod builder;
mod bus;
pub mod cli;
pub mod config;
mod db;
pub mod drift;
mod error;
mod metrics;
mod openapi;
mod page;
mod queue;
mod routes;
mod secrets;
mod sessions;
mod startup;
pub mod store;
pub mod tls;
mod tracker;
mod webhooks;

pub use config::Config;
pub use startup::{Application, bootstrap_token};
pub use tracker::Tracker;
