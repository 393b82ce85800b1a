//! Wire types of the HTTP API under `/api/v1`: request and response bodies,
//! shared by AppTracker, the client, the CLI, the dashboard and the agents.
//!
//! Enums received from the other side carry an `Unknown` variant so an older
//! client keeps working when a newer server adds a state.
//!
//! One submodule per resource; every type is re-exported here (and at the
//! crate root), so `deploy::api::Deploy` and `deploy::Deploy` both name it.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

mod apps;
mod audit;
mod builds;
mod clusters;
mod config;
mod deploys;
mod events;
mod hosts;
mod logs;
mod notifications;
mod pages;
mod release_phase;
mod rollout;
mod sources;
mod tokens;
mod webhooks;

pub use apps::*;
pub use audit::*;
pub use builds::*;
pub use clusters::*;
pub use config::*;
pub use deploys::*;
pub use events::*;
pub use hosts::*;
pub use logs::*;
pub use notifications::*;
pub use pages::*;
pub use release_phase::*;
pub use rollout::*;
pub use sources::*;
pub use tokens::*;
pub use webhooks::*;

/// The JSON body of every API error: a stable machine code and a message for
/// people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// Stable, snake_case: `not_found`, `invalid_input`, `conflict`, ...
    pub code: String,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_states_do_not_break_old_clients() {
        let p: HostPhase = serde_json::from_str("\"teleporting\"").unwrap();
        assert_eq!(p, HostPhase::Unknown);
        let s: DeployStatus = serde_json::from_str("\"paused\"").unwrap();
        assert_eq!(s, DeployStatus::Unknown);
        let e: DeployEvent = serde_json::from_str(r#"{"kind":"new_thing"}"#).unwrap();
        assert_eq!(e, DeployEvent::Unknown);
    }

    #[test]
    fn phases_round_trip_by_name() {
        for p in [HostPhase::TimedOut, HostPhase::Checking, HostPhase::Done] {
            assert_eq!(HostPhase::from_name(p.as_str()), p);
        }
    }
}
