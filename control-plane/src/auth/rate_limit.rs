//! Per-token request rate limit (GCRA from the `governor` crate): a token
//! that sends more than its sustained rate plus burst answers 429 with
//! `Retry-After` until it slows down. One token cannot starve the others or
//! the databases behind them.
//!
//! The limit is per process: with N replicas behind a load balancer a token
//! gets up to N times the rate, which is the point of adding replicas.

use std::fmt;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::http::StatusCode;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use uuid::Uuid;

use super::CODE_RATE_LIMITED;
use crate::error::{ApiError, ApiResult};

/// Checks between two sweeps of the keys that are back to a full burst.
const SWEEP_EVERY: u64 = 4096;

/// Whose requests are counted together.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RateKey {
    Admin(Uuid),
    Subject {
        subject_type: String,
        subject_id: String,
    },
}

/// The limiter; `None` inside when the limit is off.
pub struct RateLimiter {
    limiter: Option<DefaultKeyedRateLimiter<RateKey>>,
    checks: AtomicU64,
}

impl fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter")
            .field("enabled", &self.limiter.is_some())
            .finish()
    }
}

impl RateLimiter {
    /// `per_second` sustained requests with bursts of `burst` (at least 1);
    /// `per_second == 0` turns the limit off.
    pub fn new(per_second: u32, burst: u32) -> Self {
        let limiter = NonZeroU32::new(per_second).map(|rate| {
            let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
            governor::RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst))
        });
        Self {
            limiter,
            checks: AtomicU64::new(0),
        }
    }

    /// Count one request of `key`: 429 with `Retry-After` when over the limit.
    pub fn check(&self, key: &RateKey) -> ApiResult<()> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            // Keys back at a full burst carry no information: drop them so
            // that memory follows the active tokens, not every token ever seen.
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        limiter.check_key(key).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                CODE_RATE_LIMITED,
                "too many requests for this token",
            )
            .with_hint("wait for the time Retry-After gives, then send fewer requests")
            .with_retry_after(wait)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::header::RETRY_AFTER;

    #[test]
    fn a_token_over_its_burst_waits_and_others_do_not() {
        let limiter = RateLimiter::new(1, 3);
        let a = RateKey::Admin(Uuid::new_v4());
        let b = RateKey::Subject {
            subject_type: "user".into(),
            subject_id: "42".into(),
        };
        for _ in 0..3 {
            limiter.check(&a).unwrap();
        }
        let err = limiter.check(&a).unwrap_err();
        assert_eq!(err.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(err.header(&RETRY_AFTER).unwrap(), "1");
        limiter.check(&b).unwrap();
    }

    #[test]
    fn zero_turns_the_limit_off() {
        let limiter = RateLimiter::new(0, 0);
        let a = RateKey::Admin(Uuid::nil());
        for _ in 0..10_000 {
            limiter.check(&a).unwrap();
        }
    }
}
