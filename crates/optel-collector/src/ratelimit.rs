//! Rate limits per ingest key and per client address (GCRA, the `governor` crate). Addresses
//! live only in this in-memory table, are never written anywhere, and are forgotten by
//! [`RateLimits::forget_idle`].

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, RwLock};

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

/// The limiters, replaceable while requests run ([`RateLimits::reconfigure`]): each check
/// reads the current set under a read lock held for the check only.
pub struct RateLimits {
    current: RwLock<Arc<Limiters>>,
    clock: DefaultClock,
}

/// One set of limiters and the configuration they enforce.
struct Limiters {
    config: RateConfig,
    per_key: Option<Arc<Keyed<String>>>,
    per_browser_key: Option<Arc<Keyed<String>>>,
    per_addr: Option<Arc<Keyed<IpAddr>>>,
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimits")
            .field("config", &self.config())
            .finish()
    }
}

fn limiter<K: std::hash::Hash + Eq + Clone>(rps: u32) -> Option<Arc<Keyed<K>>> {
    let rate = NonZeroU32::new(rps)?;
    let burst = NonZeroU32::new(rps.saturating_mul(2)).unwrap_or(rate);
    Some(Arc::new(RateLimiter::keyed(
        Quota::per_second(rate).allow_burst(burst),
    )))
}

/// The limiter of a limit that may have changed: the old one (with its state) when unchanged.
fn keep_or_new<K: std::hash::Hash + Eq + Clone>(
    old: &Option<Arc<Keyed<K>>>,
    old_rps: u32,
    rps: u32,
) -> Option<Arc<Keyed<K>>> {
    if old_rps == rps {
        old.clone()
    } else {
        limiter(rps)
    }
}

impl RateLimits {
    /// Limiters for `config`.
    pub fn new(config: RateConfig) -> Self {
        Self {
            current: RwLock::new(Arc::new(Limiters {
                config,
                per_key: limiter(config.per_key),
                per_browser_key: limiter(config.per_browser_key),
                per_addr: limiter(config.per_addr),
            })),
            clock: DefaultClock::default(),
        }
    }

    fn limiters(&self) -> Arc<Limiters> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The limits in force.
    pub fn config(&self) -> RateConfig {
        self.limiters().config
    }

    /// Enforces `config` from the next request on (a configuration reload). A limit that
    /// changed starts afresh (every key and address with a full burst); the others keep their
    /// state. Returns whether anything changed.
    pub fn reconfigure(&self, config: RateConfig) -> bool {
        let mut current = self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let old = &current.config;
        if *old == config {
            return false;
        }
        let next = Limiters {
            config,
            per_key: keep_or_new(&current.per_key, old.per_key, config.per_key),
            per_browser_key: keep_or_new(
                &current.per_browser_key,
                old.per_browser_key,
                config.per_browser_key,
            ),
            per_addr: keep_or_new(&current.per_addr, old.per_addr, config.per_addr),
        };
        *current = Arc::new(next);
        true
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
        if let (Some(l), Some(a)) = (&self.limiters().per_addr, addr) {
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
        if let Some(l) = &self.limiters().per_key {
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
        if let Some(l) = &self.limiters().per_browser_key {
            l.check_key(&key_hash.to_owned())
                .map_err(|n| self.refuse(n.wait_time_from(self.clock.now()), "browser key"))?;
        }
        Ok(())
    }

    /// Drops the state of keys and addresses that are back to a full allowance.
    pub fn forget_idle(&self) {
        let current = self.limiters();
        for l in [&current.per_key, &current.per_browser_key]
            .into_iter()
            .flatten()
        {
            l.retain_recent();
        }
        if let Some(l) = &current.per_addr {
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

    #[test]
    fn reconfigure_applies_to_the_next_request() {
        let limits = RateLimits::new(RateConfig {
            per_key: 1,
            per_addr: 0,
            per_browser_key: 0,
        });
        for _ in 0..2 {
            limits.check_key("k").unwrap();
        }
        assert!(limits.check_key("k").is_err());
        let unlimited = RateConfig {
            per_key: 0,
            per_addr: 0,
            per_browser_key: 0,
        };
        assert!(limits.reconfigure(unlimited));
        assert!(
            !limits.reconfigure(unlimited),
            "same config: nothing changes"
        );
        for _ in 0..100 {
            limits.check_key("k").unwrap();
        }
        assert!(limits.reconfigure(RateConfig {
            per_key: 1,
            ..unlimited
        }));
        for _ in 0..2 {
            limits.check_key("k").unwrap();
        }
        assert!(limits.check_key("k").is_err());
        assert_eq!(limits.config().per_key, 1);
    }
}
