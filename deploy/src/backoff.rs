//! Retrying with exponential backoff, and saying so once per outage: the
//! one shape of every reconnect and retry loop of the agents (the grabber's
//! bus, heartbeat, desired state and host events, packer's worker).
//!
//! Two things are tracked apart, because callers reset them at different
//! moments: the *wait* (doubles per try, back to the first on
//! [`Backoff::reset`]) and the *outage* (the first failure after a success
//! is logged loudly, the rest quietly, and the success that ends it says
//! so).

use std::time::Duration;

/// The next wait before a retry, and whether the present failure is news.
///
/// ```
/// # use std::time::Duration;
/// # use deploy::Backoff;
/// let mut b = Backoff::new(Duration::from_millis(200), Duration::from_secs(1));
/// assert!(b.failed(), "the first failure of an outage");
/// assert!(!b.failed(), "the outage goes on");
/// let waits: Vec<_> = (0..4).map(|_| b.next_wait().as_millis()).collect();
/// assert_eq!(waits, [200, 400, 800, 1000]);
/// assert!(b.recovered(), "the outage is over");
/// ```
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
    outage: bool,
}

impl Backoff {
    /// Waits start at `first` and double up to `max`.
    pub fn new(first: Duration, max: Duration) -> Self {
        Self {
            first,
            max,
            next: first.min(max),
            outage: false,
        }
    }

    /// The wait before the next try; the one after is twice as long, up to
    /// the maximum.
    pub fn next_wait(&mut self) -> Duration {
        let wait = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        wait
    }

    /// Whether the waits have grown to the maximum (a caller that gives up
    /// at some point gives up here).
    pub fn at_max(&self) -> bool {
        self.next >= self.max
    }

    /// Starts the waits over at the first one.
    pub fn reset(&mut self) {
        self.next = self.first.min(self.max);
    }

    /// Records a failure. `true` when it starts an outage: log it as a
    /// warning; later ones until [`Backoff::recovered`] are news to no one.
    pub fn failed(&mut self) -> bool {
        !std::mem::replace(&mut self.outage, true)
    }

    /// Records a success. `true` when it ends an outage (worth a line in
    /// the log).
    pub fn recovered(&mut self) -> bool {
        std::mem::replace(&mut self.outage, false)
    }

    /// Whether the last attempt failed.
    pub fn in_outage(&self) -> bool {
        self.outage
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_maximum_and_start_over() {
        let mut b = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
        let waits: Vec<u128> = (0..7).map(|_| b.next_wait().as_millis()).collect();
        assert_eq!(waits, [200, 400, 800, 1600, 3200, 5000, 5000]);
        assert!(b.at_max());
        b.reset();
        assert_eq!(b.next_wait(), Duration::from_millis(200));
        assert!(!b.at_max());
    }

    #[test]
    fn an_outage_is_news_once() {
        let mut b = Backoff::new(Duration::from_millis(1), Duration::from_millis(2));
        assert!(!b.recovered(), "no outage to end");
        assert!(b.failed());
        assert!(b.in_outage());
        assert!(!b.failed());
        assert!(b.recovered());
        assert!(!b.in_outage());
        assert!(b.failed(), "a new outage");
    }
}
