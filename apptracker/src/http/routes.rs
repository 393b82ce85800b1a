//! The API's handlers, one module per resource. Each handler carries its
//! `#[utoipa::path]` annotation and is registered in `http.rs`'s
//! `api_routes`, the one list of routes.

pub(crate) mod agents;
pub(crate) mod apps;
pub(crate) mod artifacts;
pub(crate) mod audit;
pub(crate) mod builds;
pub(crate) mod clusters;
pub(crate) mod config;
pub(crate) mod deploys;
pub(crate) mod drift;
pub(crate) mod events;
pub(crate) mod hosts;
pub(crate) mod metrics;
pub(crate) mod notifications;
pub(crate) mod pins;
pub(crate) mod sessions;
pub(crate) mod tokens;
pub(crate) mod webhooks;
pub(crate) mod workers;

#[cfg(test)]
mod tests;
