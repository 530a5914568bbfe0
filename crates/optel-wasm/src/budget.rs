//! Per-plugin budgets: a token bucket that a plugin's events (and log lines) draw from.

use std::time::Instant;

/// How many calls a plugin may make: a token bucket of `burst` tokens, refilled at
/// `per_second` tokens a second (`0`: never, so `burst` is a budget for the whole run).
///
/// # Examples
/// ```
/// use optel_wasm::RateLimit;
/// assert_eq!(RateLimit::per_run(100).burst(), 100);
/// assert_eq!(RateLimit::per_run(10).refill_per_second(2.0).per_second(), 2.0);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    burst: u32,
    per_second: f64,
}

impl RateLimit {
    /// At most `n` calls in the whole run (no refill).
    pub const fn per_run(n: u32) -> Self {
        Self {
            burst: n,
            per_second: 0.0,
        }
    }

    /// Refills the bucket at `per_second` tokens a second, up to the burst. Negative,
    /// non-finite or zero: no refill.
    #[must_use]
    pub fn refill_per_second(mut self, per_second: f64) -> Self {
        self.per_second = if per_second.is_finite() && per_second > 0.0 {
            per_second
        } else {
            0.0
        };
        self
    }

    /// The bucket's size: how many calls may come at once.
    pub const fn burst(&self) -> u32 {
        self.burst
    }

    /// Tokens added a second (`0`: none).
    pub const fn per_second(&self) -> f64 {
        self.per_second
    }
}

/// The bucket itself.
#[derive(Debug)]
pub(crate) struct TokenBucket {
    limit: RateLimit,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub(crate) fn new(limit: RateLimit) -> Self {
        Self {
            limit,
            tokens: f64::from(limit.burst),
            last: Instant::now(),
        }
    }

    /// Takes one token if there is one.
    pub(crate) fn try_take(&mut self, now: Instant) -> bool {
        if self.limit.per_second > 0.0 {
            let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
            self.tokens =
                (self.tokens + elapsed * self.limit.per_second).min(f64::from(self.limit.burst));
            self.last = now;
        }
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_run_budget_is_spent_once() {
        let mut bucket = TokenBucket::new(RateLimit::per_run(3));
        let now = Instant::now();
        let taken = (0..10).filter(|_| bucket.try_take(now)).count();
        assert_eq!(taken, 3);
        assert!(!bucket.try_take(now + Duration::from_secs(3600)));
    }

    #[test]
    fn a_refilled_bucket_recovers_up_to_its_burst() {
        let mut bucket = TokenBucket::new(RateLimit::per_run(2).refill_per_second(10.0));
        let now = Instant::now();
        assert!(bucket.try_take(now) && bucket.try_take(now) && !bucket.try_take(now));
        let later = now + Duration::from_millis(150); // 1.5 tokens
        assert!(bucket.try_take(later));
        assert!(!bucket.try_take(later));
        let much_later = later + Duration::from_secs(60);
        let taken = (0..10).filter(|_| bucket.try_take(much_later)).count();
        assert_eq!(taken, 2, "never more than the burst");
    }

    #[test]
    fn nonsense_refill_rates_mean_none() {
        for r in [f64::NAN, -1.0, f64::INFINITY, 0.0] {
            assert_eq!(RateLimit::per_run(1).refill_per_second(r).per_second(), 0.0);
        }
    }
}
