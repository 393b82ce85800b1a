//! Slipway's end-to-end tests, in one binary: each module used to be a
//! test binary of its own that linked the whole platform, so a change
//! relinked it once per file (matklad's "Delete Cargo Integration Tests").
//! Helpers shared by the modules live in the `slipway_tests` library.

mod audit;
mod auth;
mod builds;
mod check;
mod cli;
mod config;
mod crash;
mod dashboard;
mod delta;
mod drift;
mod drift_written;
mod faults;
mod githttp;
mod grabber_trust;
mod install;
mod logs;
mod monorepo;
mod notify;
mod openapi;
mod outages;
mod packaging;
mod pages;
mod pipeline;
mod processes;
mod projects;
mod redis;
mod release;
mod remotes;
mod replicas;
mod rollout;
mod s3;
mod sandbox;
mod skew;
mod stopping;
mod tls;
mod tokens;
mod webhooks;
mod workers;
