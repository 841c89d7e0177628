//! Whether one part of the worker (a database's queue, its notifications)
//! reaches its database: logged when that changes, not at every failed
//! attempt, with a growing pause between attempts while it does not.

use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

use super::calls::CallError;
use super::metrics;

/// First pause after a failure.
const MIN_DELAY: Duration = Duration::from_millis(250);
/// Longest pause: a database that comes back is used again within this.
const MAX_DELAY: Duration = Duration::from_secs(10);

/// One part's view of its database.
pub struct Reach {
    database: Arc<str>,
    part: &'static str,
    down_since: Option<Instant>,
    delays: ExponentialBackoff,
}

impl Reach {
    /// `part` names what is reaching the database (`queue`, `notifications`).
    pub fn new(database: Arc<str>, part: &'static str) -> Self {
        Self {
            database,
            part,
            down_since: None,
            delays: backoff(),
        }
    }

    /// The last attempt worked.
    pub fn up(&mut self) {
        if let Some(since) = self.down_since.take() {
            tracing::info!(
                database = %self.database,
                part = self.part,
                down_for = ?since.elapsed(),
                "worker reaches the database again"
            );
            self.delays = backoff();
        }
    }

    /// The last attempt failed with `error`; returns how long to wait before
    /// the next one.
    pub fn down(&mut self, error: &CallError) -> Duration {
        metrics::failure(&self.database, self.part);
        if self.down_since.is_none() {
            self.down_since = Some(Instant::now());
            tracing::warn!(
                database = %self.database,
                part = self.part,
                %error,
                "worker cannot reach the database; retrying until it can"
            );
        } else {
            tracing::debug!(database = %self.database, part = self.part, %error, "still unreachable");
        }
        self.delays.next().unwrap_or(MAX_DELAY)
    }
}

fn backoff() -> ExponentialBackoff {
    ExponentialBuilder::default()
        .with_min_delay(MIN_DELAY)
        .with_max_delay(MAX_DELAY)
        .with_jitter()
        .without_max_times()
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error() -> CallError {
        CallError::Unexpected("test".into())
    }

    #[test]
    fn pauses_grow_to_the_cap_and_start_over_once_up() {
        let mut reach = Reach::new("db".into(), "queue");
        let first = reach.down(&error());
        assert!(first >= MIN_DELAY && first <= MIN_DELAY * 2, "{first:?}");
        let mut last = first;
        for _ in 0..20 {
            last = reach.down(&error());
            assert!(last <= MAX_DELAY * 2, "{last:?}");
        }
        assert!(last >= MAX_DELAY, "{last:?}");
        reach.up();
        let again = reach.down(&error());
        assert!(again <= MIN_DELAY * 2, "{again:?}");
    }
}
