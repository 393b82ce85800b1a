//! A seam for crash tests: with `SLIPWAY_GRABBER_PAUSE_AT=<point>` in its
//! environment, the grabber stops for good at that point of an install
//! (after logging `paused at <point>`), so a test can SIGKILL it there and
//! check what a restarted grabber makes of the host. Unset, a pause point
//! costs one comparison.
//!
//! The points, in install order: `downloading` (half-way through the
//! download), `verified` (the archive checked and kept), or, in a delta
//! install, `fetching` (the first missing file fetched into the content
//! store) and `fetched` (all of them); then `extracted` (the release
//! unpacked or linked in `tmp/`, not yet renamed), `switched` (`current`
//! moved, the old process still running), `started` (the new process
//! started, its pid not yet recorded), `checking` (the health check under
//! way).

use std::sync::OnceLock;

fn pause_at() -> Option<&'static str> {
    static AT: OnceLock<Option<String>> = OnceLock::new();
    AT.get_or_init(|| {
        std::env::var("SLIPWAY_GRABBER_PAUSE_AT")
            .ok()
            .filter(|s| !s.is_empty())
    })
    .as_deref()
}

/// Never returns when the grabber was told to pause at `point`.
pub(crate) async fn point(point: &str) {
    if pause_at() == Some(point) {
        tracing::warn!(point, "paused at {point} (SLIPWAY_GRABBER_PAUSE_AT)");
        std::future::pending::<()>().await;
    }
}
