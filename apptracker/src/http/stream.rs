//! Helpers of the server-sent event streams (a deploy's events, a
//! cluster's bus): one JSON value per event, and the end of every stream
//! when the server stops.

use std::convert::Infallible;

use axum::response::sse::Event;

use crate::tracker::Tracker;

pub(crate) fn sse_event<T: serde::Serialize>(value: &T) -> Result<Event, Infallible> {
    Ok(Event::default().data(serde_json::to_string(value).unwrap_or_default()))
}

/// Resolves when the server stops, to end long-lived streams.
pub(crate) fn t_stop(t: &Tracker) -> tokio_util::sync::WaitForCancellationFutureOwned {
    t.stopping().clone().cancelled_owned()
}
