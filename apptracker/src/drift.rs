//! Drift: what each host should run against what its versionchecker
//! reported, judged here because only AppTracker has both sides. The
//! computation is pure ([`compute`], [`summarize`]): the tracker reads its
//! inputs from the database (`tracker/sync.rs`), and the HTTP layer serves
//! the table (`GET /api/v1/drift`), syncs (`POST /api/v1/drift/sync`) and
//! `/metrics` from it.

mod compute;

pub use compute::{
    ByteSize, Change, Desired, Fleet, InFlight, Inputs, Limit, Registered, Reported,
    ResourceLimits, STALE_AFTER_INTERVALS, compute, summarize,
};
