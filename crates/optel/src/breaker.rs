//! The circuit breaker and the daily request cap, shared by every process of the tool through
//! a small state file in the data directory ([`STATE_FILE`]).
//!
//! After [`BREAKER_FAILURES`] consecutive failures the breaker opens for [`BREAKER_OPEN`],
//! during which no process sends anything; then one process sends one probe (half-open) and the
//! others wait for its outcome. An attempt is counted as a failure *before* it is sent and
//! cleared on success, so a process killed mid-request (a blackholed endpoint at exit) still
//! counts: a dead endpoint costs each new process nothing once the breaker is open. The same
//! file counts requests per UTC day, so a firewall or a broken collector can never cause a retry
//! storm. Delivery asks it before every request; `queue_status` and `telemetry status` read it.

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::time::Duration;

use optel_wire::Timestamp;

/// Consecutive failures that open the circuit breaker: 5, enough to ride out a blip, few
/// enough that a dead endpoint is given up on within one run.
pub(crate) const BREAKER_FAILURES: u32 = 5;
/// How long the breaker stays open before a probe: 30 s, short enough that a collector that
/// comes back is used again within half a minute, long enough that a burst of runs against a
/// dead one sends nothing.
pub(crate) const BREAKER_OPEN: Duration = Duration::from_secs(30);
/// The breaker state file, in the data directory.
pub(crate) const STATE_FILE: &str = "delivery_state";
/// The last delivery error (`<unix ms> <text>`), in the data directory; removed on success.
pub(crate) const LAST_ERROR_FILE: &str = "last_error";
/// Longest last-error text kept.
const MAX_ERROR_BYTES: usize = 400;

/// The circuit breaker and the daily request counter, persisted in [`STATE_FILE`] and shared
/// by every process of the tool.
#[derive(Debug, Clone)]
pub(crate) struct Breaker {
    path: PathBuf,
    last_error: PathBuf,
}

/// The persisted breaker state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct BreakerState {
    /// Attempts since the last success that did not succeed (including ones in flight).
    pub(crate) failures: u32,
    /// Unix ms until which nobody sends; 0 when closed.
    pub(crate) open_until_ms: i64,
    /// UTC day (days since the Unix epoch) that `requests` counts.
    pub(crate) day: i64,
    /// Requests sent on `day`.
    pub(crate) requests: u32,
}

impl Breaker {
    /// The breaker of the data directory `dir`.
    pub(crate) fn new(dir: PathBuf) -> Self {
        Self {
            path: dir.join(STATE_FILE),
            last_error: dir.join(LAST_ERROR_FILE),
        }
    }

    /// The current state (all zero if the file is missing or unreadable).
    pub(crate) fn state(&self) -> BreakerState {
        let Ok(file) = crate::fsutil::open_read(&self.path) else {
            return BreakerState::default();
        };
        let mut text = String::new();
        let _ = file.take(256).read_to_string(&mut text);
        parse_state(&text)
    }

    /// Whether the breaker lets requests through now (without claiming anything).
    pub(crate) fn may_send(&self) -> bool {
        self.state().open_until_ms <= Timestamp::now().unix_ms()
    }

    /// Claims one request: false when the breaker is open or today's cap is reached. The
    /// attempt counts as a failure until [`success`](Self::success) clears it; the attempt
    /// that reaches the threshold opens the breaker for everybody else, which makes it the
    /// half-open probe.
    pub(crate) fn acquire(&self, daily_cap: u32) -> bool {
        let now = Timestamp::now().unix_ms();
        let mut granted = false;
        let _ = self.update(|s| {
            let today = now.div_euclid(86_400_000);
            if s.day != today {
                s.day = today;
                s.requests = 0;
            }
            if s.open_until_ms > now || s.requests >= daily_cap {
                return;
            }
            granted = true;
            s.requests += 1;
            s.failures = s.failures.saturating_add(1);
            if s.failures >= BREAKER_FAILURES {
                s.open_until_ms = now + duration_ms(BREAKER_OPEN);
            }
        });
        granted
    }

    /// Lets the next request through now even if the breaker is open, as a half-open probe:
    /// for a flush the user asked for (`telemetry flush`). The failure count is kept, so a
    /// failed probe opens the breaker again at once.
    #[cfg_attr(not(feature = "clap"), allow(dead_code))]
    pub(crate) fn allow_probe(&self) {
        let _ = self.update(|s| s.open_until_ms = 0);
    }

    /// The endpoint answered (2xx or a final rejection): close the breaker.
    pub(crate) fn success(&self) {
        let _ = self.update(|s| {
            s.failures = 0;
            s.open_until_ms = 0;
        });
        let _ = std::fs::remove_file(&self.last_error);
    }

    /// Keeps `error` as the last delivery error, for `telemetry status`.
    pub(crate) fn record_error(&self, error: &str) {
        let mut text = error.replace(['\n', '\r'], " ");
        if text.len() > MAX_ERROR_BYTES {
            let mut end = MAX_ERROR_BYTES;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
        }
        let record = format!("{} {text}\n", Timestamp::now().unix_ms());
        let _ = crate::fsutil::write_private_atomic(&self.last_error, record.as_bytes());
    }

    /// The last delivery error since the last success: when, and what.
    pub(crate) fn last_error(&self) -> Option<(std::time::SystemTime, String)> {
        let bytes = crate::fsutil::read_private(&self.last_error, 1024).ok()?;
        let text = String::from_utf8_lossy(&bytes);
        let (ms, error) = text.trim_end().split_once(' ')?;
        let at = Timestamp::from_unix_ms(ms.parse().ok()?).to_system_time();
        Some((at, error.to_owned()))
    }

    /// The attempt failed (it was already counted); honour `Retry-After` for everybody.
    pub(crate) fn failure(&self, retry_after: Option<Duration>) {
        let Some(wait) = retry_after else { return };
        let until = Timestamp::now().unix_ms() + duration_ms(wait);
        let _ = self.update(|s| s.open_until_ms = s.open_until_ms.max(until));
    }

    /// Read-modify-write under an exclusive lock of the state file; the record is rewritten
    /// in place with one fixed-width `write`, so a killed process leaves the old or new state.
    pub(crate) fn update(&self, change: impl FnOnce(&mut BreakerState)) -> io::Result<()> {
        let mut file = crate::fsutil::open_state(&self.path)?;
        file.lock()?;
        let mut text = String::new();
        (&mut file).take(256).read_to_string(&mut text)?;
        let mut state = parse_state(&text);
        change(&mut state);
        let record = format!(
            "{:010} {:020} {:010} {:010}\n",
            state.failures, state.open_until_ms, state.day, state.requests
        );
        file.seek(SeekFrom::Start(0))?;
        file.write_all(record.as_bytes())?;
        file.set_len(record.len() as u64)?;
        Ok(())
    }
}

fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn parse_state(text: &str) -> BreakerState {
    let fields: Vec<i64> = text
        .split_whitespace()
        .filter_map(|n| n.parse().ok())
        .collect();
    match fields[..] {
        [failures, open_until_ms, day, requests] => BreakerState {
            failures: u32::try_from(failures).unwrap_or(0),
            open_until_ms,
            day,
            requests: u32::try_from(requests).unwrap_or(0),
        },
        _ => BreakerState::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breaker_opens_after_five_failures_and_probe_closes_it() {
        let dir = tempfile::tempdir().unwrap();
        let breaker = Breaker::new(dir.path().to_owned());
        for _ in 0..BREAKER_FAILURES - 1 {
            assert!(breaker.acquire(1_000));
        }
        assert!(breaker.may_send());
        // The fifth attempt is granted and opens the breaker for everybody else.
        assert!(breaker.acquire(1_000));
        assert!(!breaker.may_send());
        assert!(!breaker.acquire(1_000));
        // A second process reading the same file sees it open.
        assert!(!Breaker::new(dir.path().to_owned()).may_send());
        breaker.success();
        assert!(breaker.may_send());
        assert_eq!(breaker.state().failures, 0);
    }

    #[test]
    fn half_open_probe_is_granted_once_the_wait_is_over() {
        let dir = tempfile::tempdir().unwrap();
        let breaker = Breaker::new(dir.path().to_owned());
        let now = Timestamp::now().unix_ms();
        breaker
            .update(|s| {
                s.failures = BREAKER_FAILURES;
                s.open_until_ms = now - 1;
            })
            .unwrap();
        assert!(breaker.acquire(1_000), "the probe");
        assert!(!breaker.acquire(1_000), "others wait for the probe");
    }

    #[test]
    fn daily_cap_stops_requests() {
        let dir = tempfile::tempdir().unwrap();
        let breaker = Breaker::new(dir.path().to_owned());
        for _ in 0..3 {
            assert!(breaker.acquire(3));
            breaker.success();
        }
        assert!(!breaker.acquire(3));
        assert_eq!(breaker.state().requests, 3);
    }

    #[test]
    fn retry_after_holds_everybody() {
        let dir = tempfile::tempdir().unwrap();
        let breaker = Breaker::new(dir.path().to_owned());
        assert!(breaker.acquire(10));
        breaker.failure(Some(Duration::from_secs(60)));
        assert!(!breaker.may_send());
        assert!(breaker.state().open_until_ms >= Timestamp::now().unix_ms() + 59_000);
    }

    #[test]
    fn unreadable_state_is_closed() {
        assert_eq!(parse_state("garbage"), BreakerState::default());
        assert_eq!(
            parse_state("1 2 3 4\n"),
            BreakerState {
                failures: 1,
                open_until_ms: 2,
                day: 3,
                requests: 4
            }
        );
    }
}
