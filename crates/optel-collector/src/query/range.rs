//! Time ranges of queries: `since=7d` look-backs and `from`/`to` dates, bounded to 400 days.

use std::time::Duration;

use optel_wire::Timestamp;

use crate::rollup::DAY_MS;

/// Longest time range a query may span: 400 days.
pub const MAX_RANGE_MS: i64 = 400 * DAY_MS;

/// A half-open time range `[since_ms, until_ms)` in milliseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    /// Start, inclusive.
    pub since_ms: i64,
    /// End, exclusive.
    pub until_ms: i64,
}

impl TimeRange {
    /// The range from `lookback` before `now_ms` to just after `now_ms`.
    pub fn last(lookback: std::time::Duration, now_ms: i64) -> Self {
        let back = i64::try_from(lookback.as_millis()).unwrap_or(i64::MAX);
        Self {
            since_ms: now_ms.saturating_sub(back),
            until_ms: now_ms.saturating_add(1),
        }
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    optel_wire::Timestamp::now().unix_ms()
}

/// Parses a look-back such as `24h`, `7d`, `30d` or `90m` (the `humantime` crate's units).
///
/// # Errors
/// A message quoting the value and showing the accepted form.
pub fn parse_lookback(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("time range {s:?} is not understood ({e}): use e.g. 24h, 7d, 30d"))
}
/// Range of a query from its `since`, `from` and `to` parameters (docs/query-api.md).
///
/// # Errors
/// `(parameter, message)` for a bad or inconsistent value.
pub fn parse_range(
    since: Option<&str>,
    from: Option<&str>,
    to: Option<&str>,
    now_ms: i64,
) -> std::result::Result<TimeRange, (&'static str, String)> {
    match (from, to) {
        (None, None) => {
            let s = since.unwrap_or("7d");
            let d = parse_lookback(s).map_err(|m| ("since", m))?;
            if d.as_millis() > MAX_RANGE_MS as u128 {
                return Err(("since", format!("since {s:?} is longer than 400 days")));
            }
            Ok(TimeRange::last(d, now_ms))
        }
        (Some(f), Some(t)) => {
            let since_ms = Timestamp::parse(f).map_err(|m| ("from", m))?.unix_ms();
            let until_ms = Timestamp::parse(t).map_err(|m| ("to", m))?.unix_ms();
            if until_ms <= since_ms {
                return Err(("to", format!("to {t:?} is not after from {f:?}")));
            }
            if until_ms - since_ms > MAX_RANGE_MS {
                return Err((
                    "to",
                    format!("from {f:?} to {t:?} spans more than 400 days: ask for less"),
                ));
            }
            Ok(TimeRange { since_ms, until_ms })
        }
        (Some(_), None) => Err(("to", "from needs to as well".into())),
        (None, Some(_)) => Err(("from", "to needs from as well".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollup::{DAY_MS, DayRange, day_of};

    #[test]
    fn ranges() {
        let now = 1_000 * DAY_MS;
        assert_eq!(
            parse_range(None, None, None, now).unwrap().since_ms,
            now - 7 * DAY_MS
        );
        assert_eq!(
            parse_range(Some("soon"), None, None, now).unwrap_err().0,
            "since"
        );
        assert_eq!(
            parse_range(Some("500d"), None, None, now).unwrap_err().0,
            "since"
        );
        assert_eq!(
            parse_range(None, Some("2026-01-01T00:00:00Z"), None, now)
                .unwrap_err()
                .0,
            "to"
        );
        assert_eq!(
            parse_range(
                None,
                Some("2026-01-02T00:00:00Z"),
                Some("2026-01-01T00:00:00Z"),
                now
            )
            .unwrap_err()
            .0,
            "to"
        );
        let r = parse_range(
            None,
            Some("2026-01-01T00:00:00Z"),
            Some("2026-01-08T00:00:00Z"),
            now,
        )
        .unwrap();
        assert_eq!(r.until_ms - r.since_ms, 7 * DAY_MS);
        assert_eq!(
            day_of(r.since_ms),
            DayRange::covering(r.since_ms, r.until_ms).first
        );
        assert_eq!(
            DayRange::covering(r.since_ms, r.until_ms).last
                - DayRange::covering(r.since_ms, r.until_ms).first,
            6
        );
    }

    #[test]
    fn lookbacks() {
        assert_eq!(parse_lookback("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_lookback("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert!(parse_lookback("soon").is_err());
        assert!(parse_lookback("99999999999999999999d").is_err());
    }
}
