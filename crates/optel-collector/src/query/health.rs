//! Release health (`/release-health`): each command of one tool version against the version
//! before it, from the rollups only (`docs/adr/013-release-health-and-alerts.md`).
//!
//! - **Version order**: by semantic version when every version of the range parses as one
//!   (a leading `v` allowed), else by the UTC day each was first seen in the range, then by
//!   name. One rule for the whole list, so the order is total.
//! - **Failure rate**: a two-sided two-proportion z-test with the pooled rate; a change is
//!   outside the noise when `|z| >= 2.576` (99 %) and each version has at least
//!   [`MIN_INVOCATIONS`] invocations of the command.
//! - **p95 duration**: a distribution-free 99 % confidence interval of each version's p95 from
//!   its histogram (order-statistic ranks `n·q ± z·√(n·q·(1−q))`); a change is outside the
//!   noise when the two intervals do not overlap, the p95 moved by at least
//!   [`P95_MIN_RATIO`] (one histogram bucket is up to 22 % wide) and each version has at least
//!   [`MIN_DURATIONS`] timed invocations. A bootstrap would need the raw durations, which the
//!   rollups do not keep.
//! - **New error codes**: a (command, error code) with failures in the version and none in the
//!   previous version.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use optel_wire::Timestamp;
use serde::{Deserialize, Serialize};

use super::TimeRange;
use crate::rollup::{CountRow, DayRange, bucket_value, percentile};
use crate::storage::{Project, Result as StoreResult, Store};

/// z of the two-sided 99 % level used for both tests.
pub const Z_99: f64 = 2.576;
/// Least invocations of a command in each version before its failure rate is compared.
pub const MIN_INVOCATIONS: u64 = 30;
/// Least timed invocations of a command in each version before its p95 is compared.
pub const MIN_DURATIONS: u64 = 50;
/// Least ratio between two p95s (higher over lower) that counts as a change.
pub const P95_MIN_RATIO: f64 = 1.2;

/// Release health of one version of a project (`GET /v1/projects/{p}/release-health`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReleaseHealth {
    /// Project name.
    pub project: String,
    /// Start of the range read (inclusive).
    pub from: Timestamp,
    /// End of the range (exclusive).
    pub to: Timestamp,
    /// Versions seen in the range, oldest first (see [`ReleaseHealth::order`]).
    pub versions: Vec<String>,
    /// How the versions are ordered: `semver` or `first_seen`.
    pub order: String,
    /// The version examined; `None` when the range has no events.
    pub version: Option<String>,
    /// The version it is compared with; `None` when it is the first.
    pub previous: Option<String>,
    /// The noise rule applied.
    pub noise: NoiseRule,
    /// Each command of `version` (and of `previous`), most invoked first (at most 100).
    pub commands: Vec<CommandHealth>,
    /// Error codes with failures in `version` and none in `previous`, most frequent first.
    /// Empty when there is no previous version.
    pub new_error_codes: Vec<NewErrorCode>,
}

/// The thresholds of the noise decision, stated in every answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NoiseRule {
    /// z threshold of both tests (2.576: two-sided 99 %).
    pub z: f64,
    /// Least invocations per version to compare failure rates.
    pub min_invocations: u64,
    /// Least timed invocations per version to compare p95 durations.
    pub min_durations: u64,
    /// Least ratio of two p95 durations that counts as a change.
    pub p95_min_ratio: f64,
}

impl Default for NoiseRule {
    fn default() -> Self {
        Self {
            z: Z_99,
            min_invocations: MIN_INVOCATIONS,
            min_durations: MIN_DURATIONS,
            p95_min_ratio: P95_MIN_RATIO,
        }
    }
}

/// Whether a difference between two versions is outside the noise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// Up beyond the noise.
    Up,
    /// Down beyond the noise.
    Down,
    /// Within the noise.
    Unchanged,
    /// Too few invocations in one of the versions to tell.
    TooFew,
    /// The command has no data in the previous version (or there is none).
    NoPrevious,
}

/// One command in one version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandSide {
    /// Invocations.
    pub invocations: u64,
    /// Failed invocations.
    pub failures: u64,
    /// `failures / invocations`, in `[0, 1]`.
    pub failure_rate: f64,
    /// Invocations with a duration.
    pub timed: u64,
    /// 95th percentile duration, ms (histogram: within 12.5 %); `None` when none was timed.
    pub p95_ms: Option<u64>,
}

/// A command of the examined version against the previous version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandHealth {
    /// Command name.
    pub name: String,
    /// In the examined version (zero counts when only the previous version ran it).
    pub current: CommandSide,
    /// In the previous version; `None` when it never ran the command.
    pub previous: Option<CommandSide>,
    /// `current.failure_rate - previous.failure_rate`.
    pub failure_rate_delta: Option<f64>,
    /// The z statistic of the failure rates (positive: more failures now).
    pub failure_rate_z: Option<f64>,
    /// Failure rate change.
    pub failure_rate_change: Change,
    /// `current.p95_ms - previous.p95_ms`, ms.
    pub p95_ms_delta: Option<i64>,
    /// p95 duration change.
    pub p95_change: Change,
}

/// An error code new in the examined version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewErrorCode {
    /// Command name.
    pub command: String,
    /// Error code.
    pub error_code: String,
    /// Failures with it in the examined version.
    pub count: u64,
}

/// Versions of `counts` in release order, and the rule used (`semver` or `first_seen`).
pub fn order_versions(counts: &[CountRow]) -> (Vec<String>, &'static str) {
    let mut first_seen: HashMap<&str, i64> = HashMap::new();
    for r in counts.iter().filter(|r| r.count > 0) {
        let d = first_seen.entry(&r.key.version).or_insert(r.key.day);
        *d = (*d).min(r.key.day);
    }
    let parsed: Option<Vec<(semver::Version, &str)>> = first_seen
        .keys()
        .map(|&v| {
            semver::Version::parse(v.strip_prefix('v').unwrap_or(v))
                .ok()
                .map(|s| (s, v))
        })
        .collect();
    match parsed {
        Some(mut vs) if !vs.is_empty() => {
            vs.sort();
            (
                vs.into_iter().map(|(_, v)| v.to_owned()).collect(),
                "semver",
            )
        }
        _ => {
            let mut vs: Vec<(i64, &str)> = first_seen.into_iter().map(|(v, d)| (d, v)).collect();
            vs.sort_unstable();
            (
                vs.into_iter().map(|(_, v)| v.to_owned()).collect(),
                "first_seen",
            )
        }
    }
}

/// Two-proportion z statistic (pooled), positive when `b`'s rate is higher; `None` when the
/// pooled rate is 0 or 1 (no variance: equal rates).
pub fn two_proportion_z(fail_a: u64, n_a: u64, fail_b: u64, n_b: u64) -> Option<f64> {
    if n_a == 0 || n_b == 0 {
        return None;
    }
    let (fa, na, fb, nb) = (fail_a as f64, n_a as f64, fail_b as f64, n_b as f64);
    let pooled = (fa + fb) / (na + nb);
    let se = (pooled * (1.0 - pooled) * (1.0 / na + 1.0 / nb)).sqrt();
    if se <= 0.0 {
        return Some(0.0);
    }
    Some((fb / nb - fa / na) / se)
}

/// The `(low, high)` bounds in ms of a distribution-free confidence interval of the
/// `q`-quantile of a histogram of `(bucket, count)` pairs, at the level of `z`.
pub fn quantile_interval(hist: &[(i64, i64)], q: f64, z: f64) -> Option<(u64, u64)> {
    let mut sorted: Vec<(i64, i64)> = hist.iter().copied().filter(|&(_, c)| c > 0).collect();
    sorted.sort_unstable();
    let n: i64 = sorted.iter().map(|&(_, c)| c).sum();
    if n <= 0 {
        return None;
    }
    let nf = n as f64;
    let half = z * (nf * q * (1.0 - q)).sqrt();
    let lo_rank = ((nf * q - half).floor() as i64).clamp(1, n);
    let hi_rank = ((nf * q + half).ceil() as i64 + 1).clamp(1, n);
    let at = |rank: i64| {
        let mut seen = 0;
        for &(b, c) in &sorted {
            seen += c;
            if seen >= rank {
                return bucket_value(b);
            }
        }
        0
    };
    Some((at(lo_rank), at(hi_rank)))
}

#[derive(Default)]
struct Tally {
    invocations: u64,
    failures: u64,
    hist: BTreeMap<i64, i64>,
}

impl Tally {
    fn side(&self) -> CommandSide {
        let h: Vec<(i64, i64)> = self.hist.iter().map(|(&b, &c)| (b, c)).collect();
        let timed = h.iter().map(|&(_, c)| c.max(0) as u64).sum();
        CommandSide {
            invocations: self.invocations,
            failures: self.failures,
            failure_rate: if self.invocations > 0 {
                self.failures as f64 / self.invocations as f64
            } else {
                0.0
            },
            timed,
            p95_ms: (timed > 0).then(|| percentile(&h, 0.95)),
        }
    }

    fn hist(&self) -> Vec<(i64, i64)> {
        self.hist.iter().map(|(&b, &c)| (b, c)).collect()
    }
}

fn compare(name: &str, cur: &Tally, prev: Option<&Tally>, rule: &NoiseRule) -> CommandHealth {
    let current = cur.side();
    let Some(prev) = prev.filter(|p| p.invocations > 0) else {
        return CommandHealth {
            name: name.to_owned(),
            current,
            previous: None,
            failure_rate_delta: None,
            failure_rate_z: None,
            failure_rate_change: Change::NoPrevious,
            p95_ms_delta: None,
            p95_change: Change::NoPrevious,
        };
    };
    let previous = prev.side();
    let z = two_proportion_z(
        previous.failures,
        previous.invocations,
        current.failures,
        current.invocations,
    );
    let failure_rate_change = if current.invocations < rule.min_invocations
        || previous.invocations < rule.min_invocations
    {
        Change::TooFew
    } else {
        match z {
            Some(z) if z >= rule.z => Change::Up,
            Some(z) if z <= -rule.z => Change::Down,
            _ => Change::Unchanged,
        }
    };
    let p95_change = match (current.p95_ms, previous.p95_ms) {
        (None, _) | (_, None) => Change::TooFew,
        _ if current.timed < rule.min_durations || previous.timed < rule.min_durations => {
            Change::TooFew
        }
        (Some(c), Some(p)) => {
            let ci_c = quantile_interval(&cur.hist(), 0.95, rule.z);
            let ci_p = quantile_interval(&prev.hist(), 0.95, rule.z);
            let ratio = c.max(p) as f64 / c.min(p).max(1) as f64;
            match (ci_c, ci_p) {
                (Some((c_lo, _)), Some((_, p_hi))) if c > p && c_lo > p_hi => {
                    if ratio >= rule.p95_min_ratio {
                        Change::Up
                    } else {
                        Change::Unchanged
                    }
                }
                (Some((_, c_hi)), Some((p_lo, _))) if c < p && c_hi < p_lo => {
                    if ratio >= rule.p95_min_ratio {
                        Change::Down
                    } else {
                        Change::Unchanged
                    }
                }
                _ => Change::Unchanged,
            }
        }
    };
    CommandHealth {
        name: name.to_owned(),
        failure_rate_delta: Some(current.failure_rate - previous.failure_rate),
        failure_rate_z: z,
        failure_rate_change,
        p95_ms_delta: match (current.p95_ms, previous.p95_ms) {
            (Some(c), Some(p)) => Some(c as i64 - p as i64),
            _ => None,
        },
        p95_change,
        current,
        previous: Some(previous),
    }
}

/// Release health of `version` (default: the latest) of a project against `previous`
/// (default: the version before it in [`order_versions`]) over a time range. Reads the count
/// rollups of the range once and the duration histograms of the two versions.
///
/// # Errors
/// Database errors.
pub fn release_health<S: Store + ?Sized>(
    store: &S,
    project: &Project,
    range: TimeRange,
    version: Option<&str>,
    previous: Option<&str>,
) -> StoreResult<ReleaseHealth> {
    let days = DayRange::covering(range.since_ms, range.until_ms);
    let counts: Vec<CountRow> = store
        .counts(project.id, days)?
        .into_iter()
        .filter(|r| r.key.event_type == "command")
        .collect();
    let (versions, order) = order_versions(&counts);
    let version = version
        .map(str::to_owned)
        .or_else(|| versions.last().cloned());
    let previous = match (previous, &version) {
        (Some(p), _) => Some(p.to_owned()),
        (None, Some(v)) => versions
            .iter()
            .position(|x| x == v)
            .and_then(|i| i.checked_sub(1))
            .and_then(|i| versions.get(i).cloned()),
        (None, None) => None,
    };
    let rule = NoiseRule::default();
    let mut answer = ReleaseHealth {
        project: project.name.clone(),
        from: Timestamp::from_unix_ms(range.since_ms),
        to: Timestamp::from_unix_ms(range.until_ms),
        order: order.to_owned(),
        versions,
        version: version.clone(),
        previous: previous.clone(),
        noise: rule.clone(),
        commands: Vec::new(),
        new_error_codes: Vec::new(),
    };
    let Some(version) = version else {
        return Ok(answer);
    };
    // (is the examined version, command) → tally; errors per side.
    let mut tallies: [BTreeMap<&str, Tally>; 2] = Default::default();
    let mut errors: [BTreeMap<(&str, &str), u64>; 2] = Default::default();
    for r in &counts {
        let side = if r.key.version == version {
            0
        } else if previous.as_deref() == Some(r.key.version.as_str()) {
            1
        } else {
            continue;
        };
        let n = r.count.max(0) as u64;
        let t = tallies[side].entry(&r.key.name).or_default();
        t.invocations += n;
        if r.key.outcome == 0 {
            t.failures += n;
            if !r.key.error_code.is_empty() {
                *errors[side]
                    .entry((&r.key.name, &r.key.error_code))
                    .or_default() += n;
            }
        }
    }
    let wanted: Vec<&str> = std::iter::once(version.as_str())
        .chain(previous.as_deref())
        .collect();
    let hist = store.version_durations(project.id, days, &wanted)?;
    for h in &hist {
        let side = if h.version == version { 0 } else { 1 };
        if let Some(t) = tallies[side].get_mut(h.name.as_str()) {
            *t.hist.entry(h.bucket).or_default() += h.count;
        }
    }
    let names: BTreeSet<&str> = tallies[0]
        .keys()
        .chain(tallies[1].keys())
        .copied()
        .collect();
    let empty = Tally::default();
    let mut commands: Vec<CommandHealth> = names
        .into_iter()
        .map(|name| {
            let cur = tallies[0].get(name).unwrap_or(&empty);
            let prev = previous.as_ref().and_then(|_| tallies[1].get(name));
            compare(name, cur, prev, &rule)
        })
        .collect();
    commands.sort_by(|a, b| {
        b.current
            .invocations
            .cmp(&a.current.invocations)
            .then_with(|| a.name.cmp(&b.name))
    });
    commands.truncate(super::MAX_ROWS);
    answer.commands = commands;
    if previous.is_some() {
        let mut new: Vec<NewErrorCode> = errors[0]
            .iter()
            .filter(|(k, _)| !errors[1].contains_key(*k))
            .map(|(&(command, code), &count)| NewErrorCode {
                command: command.to_owned(),
                error_code: code.to_owned(),
                count,
            })
            .collect();
        new.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then_with(|| a.command.cmp(&b.command))
        });
        new.truncate(super::MAX_ROWS);
        answer.new_error_codes = new;
    }
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollup::{CountKey, duration_bucket};

    fn row(day: i64, version: &str) -> CountRow {
        CountRow {
            key: CountKey {
                day,
                event_type: "command".into(),
                name: "build".into(),
                version: version.into(),
                os: "linux".into(),
                arch: "x86_64".into(),
                outcome: 1,
                error_code: String::new(),
            },
            count: 1,
            duration_sum: 0,
        }
    }

    #[test]
    fn versions_order_by_semver_else_by_first_seen() {
        let rows = [row(5, "1.10.0"), row(1, "1.9.0"), row(9, "v1.2.0")];
        assert_eq!(
            order_versions(&rows),
            (
                vec!["v1.2.0".into(), "1.9.0".into(), "1.10.0".into()],
                "semver"
            )
        );
        let rows = [row(5, "nightly-b"), row(1, "1.9.0"), row(3, "nightly-a")];
        assert_eq!(
            order_versions(&rows),
            (
                vec!["1.9.0".into(), "nightly-a".into(), "nightly-b".into()],
                "first_seen"
            )
        );
    }

    #[test]
    fn failure_rate_z_test() {
        // 2 % → 10 % over 500 invocations each: far outside the noise.
        let z = two_proportion_z(10, 500, 50, 500).unwrap();
        assert!(z > Z_99, "z {z}");
        // 2 % → 3 % over 100 each: within it.
        let z = two_proportion_z(2, 100, 3, 100).unwrap();
        assert!(z.abs() < Z_99, "z {z}");
        assert_eq!(two_proportion_z(0, 100, 0, 100), Some(0.0));
        assert_eq!(two_proportion_z(0, 0, 1, 10), None);
    }

    #[test]
    fn p95_interval_separates_a_slowdown_and_not_noise() {
        let hist = |scale: u64| -> Vec<(i64, i64)> {
            let mut m: BTreeMap<i64, i64> = BTreeMap::new();
            for i in 1..=200u64 {
                *m.entry(duration_bucket(i * scale)).or_default() += 1;
            }
            m.into_iter().collect()
        };
        let base = {
            let mut t = Tally {
                invocations: 200,
                ..Default::default()
            };
            t.hist = hist(10).into_iter().collect();
            t
        };
        let slow = {
            let mut t = Tally {
                invocations: 200,
                ..Default::default()
            };
            t.hist = hist(20).into_iter().collect();
            t
        };
        let rule = NoiseRule::default();
        assert_eq!(
            compare("build", &slow, Some(&base), &rule).p95_change,
            Change::Up
        );
        assert_eq!(
            compare("build", &base, Some(&slow), &rule).p95_change,
            Change::Down
        );
        assert_eq!(
            compare("build", &base, Some(&base), &rule).p95_change,
            Change::Unchanged
        );
        let few = Tally {
            invocations: 5,
            ..Default::default()
        };
        let c = compare("build", &few, Some(&base), &rule);
        assert_eq!(c.failure_rate_change, Change::TooFew);
        assert_eq!(c.p95_change, Change::TooFew);
        assert_eq!(
            compare("build", &base, None, &rule).p95_change,
            Change::NoPrevious
        );
    }
}
