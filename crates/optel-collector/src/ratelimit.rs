//! Rate limits per ingest key and per client address (GCRA, the `governor` crate). Addresses
//! live only in this in-memory table, are never written anywhere, and are forgotten by
//! [`RateLimits::forget_idle`].

use std::net::IpAddr;
use std::num::NonZeroU32;

use axum::http::StatusCode;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::error::ApiError;

type Keyed<K> = DefaultKeyedRateLimiter<K>;

/// Limits of requests per second; `0` turns a limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateConfig {
    /// Requests per second per ingest key (burst: twice that). Default 1,000.
    pub per_key: u32,
    /// Requests per second per client address (burst: twice that). Default 50.
    pub per_addr: u32,
    /// Requests per second per browser ingest key (burst: twice that): one request a page
    /// view, from every visitor of a site. Default 200.
    pub per_browser_key: u32,
}

impl Default for RateConfig {
    fn default() -> Self {
        Self {
            per_key: 1_000,
            per_addr: 50,
            per_browser_key: 200,
        }
    }
}

/// The limiters.
pub struct RateLimits {
    per_key: Option<Keyed<String>>,
    per_browser_key: Option<Keyed<String>>,
    per_addr: Option<Keyed<IpAddr>>,
    clock: DefaultClock,
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimits")
            .field("per_key", &self.per_key.is_some())
            .field("per_addr", &self.per_addr.is_some())
            .finish()
    }
}

fn limiter<K: std::hash::Hash + Eq + Clone>(rps: u32) -> Option<Keyed<K>> {
    let rate = NonZeroU32::new(rps)?;
    let burst = NonZeroU32::new(rps.saturating_mul(2)).unwrap_or(rate);
    Some(RateLimiter::keyed(
        Quota::per_second(rate).allow_burst(burst),
    ))
}

impl RateLimits {
    /// Limiters for `config`.
    pub fn new(config: RateConfig) -> Self {
        Self {
            per_key: limiter(config.per_key),
            per_browser_key: limiter(config.per_browser_key),
            per_addr: limiter(config.per_addr),
            clock: DefaultClock::default(),
        }
    }

    fn refuse(&self, wait: std::time::Duration, what: &str) -> ApiError {
        let secs = wait.as_secs_f64().ceil().max(1.0) as u32;
        ApiError {
            retry_after_s: Some(secs),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("too many requests from this {what}: retry in {secs} s"),
            )
        }
    }

    /// Takes one request of a client address.
    ///
    /// # Errors
    /// 429 `rate_limited` with `Retry-After`.
    pub fn check_addr(&self, addr: Option<IpAddr>) -> Result<(), ApiError> {
        if let (Some(l), Some(a)) = (&self.per_addr, addr) {
            l.check_key(&a)
                .map_err(|n| self.refuse(n.wait_time_from(self.clock.now()), "address"))?;
        }
        Ok(())
    }

    /// Takes one request of an ingest key (given as its hash).
    ///
    /// # Errors
    /// 429 `rate_limited` with `Retry-After`.
    pub fn check_key(&self, key_hash: &str) -> Result<(), ApiError> {
        if let Some(l) = &self.per_key {
            l.check_key(&key_hash.to_owned())
                .map_err(|n| self.refuse(n.wait_time_from(self.clock.now()), "ingest key"))?;
        }
        Ok(())
    }

    /// Takes one request of a browser ingest key (given as its hash).
    ///
    /// # Errors
    /// 429 `rate_limited` with `Retry-After`.
    pub fn check_browser_key(&self, key_hash: &str) -> Result<(), ApiError> {
        if let Some(l) = &self.per_browser_key {
            l.check_key(&key_hash.to_owned())
                .map_err(|n| self.refuse(n.wait_time_from(self.clock.now()), "browser key"))?;
        }
        Ok(())
    }

    /// Drops the state of keys and addresses that are back to a full allowance.
    pub fn forget_idle(&self) {
        for l in [&self.per_key, &self.per_browser_key].into_iter().flatten() {
            l.retain_recent();
        }
        if let Some(l) = &self.per_addr {
            l.retain_recent();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_refuses_with_retry_after() {
        let limits = RateLimits::new(RateConfig {
            per_key: 2,
            per_addr: 0,
            per_browser_key: 0,
        });
        for _ in 0..4 {
            limits.check_key("k").unwrap();
        }
        let e = limits.check_key("k").unwrap_err();
        assert_eq!(e.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(e.retry_after_s, Some(1));
        limits.check_key("other").unwrap();
        limits.check_addr(Some([127, 0, 0, 1].into())).unwrap();
    }
}
