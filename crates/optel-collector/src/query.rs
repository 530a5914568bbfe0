//! The analytics a tool author reads: the shapes of `GET /v1/projects/{name}/stats` and of
//! `optel stats --format json`.

use optel_wire::Timestamp;
use serde::{Deserialize, Serialize};

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

/// Usage statistics of one project over a time range.
///
/// Active installs count distinct pseudonyms; pseudonyms rotate monthly, so over a range that
/// spans several months an install may count once per month.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Project name.
    pub project: String,
    /// Start of the range (inclusive).
    pub since: Timestamp,
    /// End of the range (exclusive).
    pub until: Timestamp,
    /// Events of any type in the range.
    pub events: u64,
    /// Distinct install pseudonyms seen in the range.
    pub active_installs: u64,
    /// Commands, most invoked first.
    pub commands: Vec<CommandStats>,
    /// Failed commands by error code, most frequent first (at most 50).
    pub error_codes: Vec<ErrorCodeStats>,
    /// Tool versions, most installs first.
    pub versions: Vec<VersionStats>,
    /// OS and architecture mix, most installs first.
    pub platforms: Vec<PlatformStats>,
    /// Features used, most used first (at most 100).
    pub features: Vec<NameStats>,
    /// Library methods called, most called first (at most 100).
    pub methods: Vec<NameStats>,
}

/// Invocations of one command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandStats {
    /// Command name.
    pub name: String,
    /// Invocations.
    pub count: u64,
    /// Invocations that failed.
    pub failures: u64,
    /// Distinct installs that invoked it.
    pub installs: u64,
}

/// Failures of one command with one error code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorCodeStats {
    /// Command name.
    pub command: String,
    /// Error code (empty when the SDK sent none).
    pub error_code: String,
    /// Failures.
    pub count: u64,
}

/// Use of one tool version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionStats {
    /// Version string.
    pub version: String,
    /// Events sent by this version.
    pub events: u64,
    /// Distinct installs on this version.
    pub installs: u64,
}

/// Use on one OS and architecture.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlatformStats {
    /// Operating system.
    pub os: String,
    /// CPU architecture.
    pub arch: String,
    /// Events.
    pub events: u64,
    /// Distinct installs.
    pub installs: u64,
}

/// Use of one named feature or method.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameStats {
    /// Feature or method name.
    pub name: String,
    /// Times recorded.
    pub count: u64,
    /// Distinct installs.
    pub installs: u64,
}

// ---------------------------------------------------------------------------------------------
// The query API of docs/query-api.md, computed from the daily rollups.

use std::collections::{BTreeMap, HashMap};

use crate::rollup::{CountRow, DAY_MS, DayRange, InstallSketch, SketchKind, SketchRow, percentile};
use crate::storage::{Project, Result as StoreResult, Store};

/// Most rows in a list answer (commands, errors, versions, platforms, features, methods).
pub const MAX_ROWS: usize = 100;
/// Longest time range a query may span: 400 days.
pub const MAX_RANGE_MS: i64 = 400 * DAY_MS;

/// Bucket width of a time series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Granularity {
    /// UTC days.
    Day,
    /// ISO weeks, starting on Monday.
    Week,
}

impl Granularity {
    /// Parses `day` or `week`.
    ///
    /// # Errors
    /// A message naming the accepted values.
    pub fn parse(s: &str) -> std::result::Result<Self, String> {
        match s {
            "day" => Ok(Self::Day),
            "week" => Ok(Self::Week),
            _ => Err(format!(
                "granularity {s:?} is not understood: use day or week"
            )),
        }
    }

    /// First day of the bucket containing `day`.
    pub fn bucket_start(self, day: i64) -> i64 {
        match self {
            Self::Day => day,
            // 1970-01-01 was a Thursday: Monday is 3 days before.
            Self::Week => day - (day + 3).rem_euclid(7),
        }
    }

    /// Bucket starts covering `days`, in order.
    pub fn buckets(self, days: DayRange) -> Vec<i64> {
        let step = if self == Self::Day { 1 } else { 7 };
        let mut out = Vec::new();
        let mut d = self.bucket_start(days.first);
        while d <= days.last {
            out.push(d);
            d += step;
        }
        out
    }
}

/// `YYYY-MM-DD` of a UTC day number.
pub fn day_string(day: i64) -> String {
    let s = Timestamp::from_unix_ms(day.saturating_mul(DAY_MS)).to_string();
    s.get(..10).unwrap_or(&s).to_owned()
}

/// Who reads: the admin (everything) or the public (cells with fewer than `k` installs hidden).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// Admin token holder.
    Admin,
    /// Public view with k-anonymity threshold `k`.
    Public {
        /// Least distinct installs a shown cell must have.
        k: u64,
    },
}

impl Audience {
    fn k(self) -> Option<u64> {
        match self {
            Self::Admin => None,
            Self::Public { k } => Some(k),
        }
    }

    fn hides(self, installs: u64) -> bool {
        self.k().is_some_and(|k| installs < k)
    }
}

/// Answer of `/overview`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Overview {
    /// Project name.
    pub project: String,
    /// Start of the range.
    pub from: Timestamp,
    /// End of the range (exclusive).
    pub to: Timestamp,
    /// Events of any type.
    pub events: Option<u64>,
    /// Command invocations.
    pub invocations: Option<u64>,
    /// Failed command invocations.
    pub failures: Option<u64>,
    /// Distinct installs over the range.
    pub active_installs: Option<u64>,
    /// Distinct installs on the last day of the range.
    pub dau: Option<u64>,
    /// Distinct installs in the 7 days ending at `to`.
    pub wau: Option<u64>,
    /// Distinct installs in the 30 days ending at `to`.
    pub mau: Option<u64>,
    /// Public view: counts hidden because fewer than `k` installs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suppressed: Option<bool>,
    /// Public view: the k-anonymity threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k: Option<u64>,
}

/// One bucket of `/timeseries`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesBucket {
    /// First day of the bucket, `YYYY-MM-DD`.
    pub start: String,
    /// Events.
    pub events: Option<u64>,
    /// Command invocations.
    pub invocations: Option<u64>,
    /// Failed invocations.
    pub failures: Option<u64>,
    /// Distinct installs.
    pub active_installs: Option<u64>,
    /// Public view: hidden because fewer than `k` installs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suppressed: Option<bool>,
}

/// Answer of `/timeseries`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timeseries {
    /// Bucket width.
    pub granularity: Granularity,
    /// Every bucket of the range, empty ones included.
    pub buckets: Vec<SeriesBucket>,
    /// Public view: the k-anonymity threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k: Option<u64>,
}

/// A row of `/commands`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandRow {
    /// Command name.
    pub name: String,
    /// Invocations.
    pub count: u64,
    /// Failed invocations.
    pub failures: u64,
    /// `failures / count`, in `[0, 1]`.
    pub failure_rate: f64,
    /// Distinct installs.
    pub installs: u64,
    /// Median duration, ms (from the rollup histogram, within 12.5 %).
    pub p50_ms: u64,
    /// 95th percentile duration, ms.
    pub p95_ms: u64,
}

/// A row of `/errors`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorRow {
    /// Command name.
    pub command: String,
    /// Error code (empty when none was sent).
    pub error_code: String,
    /// Failures.
    pub count: u64,
    /// Distinct installs.
    pub installs: u64,
}

/// A row of `/versions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionRow {
    /// Version.
    pub version: String,
    /// Distinct installs.
    pub installs: u64,
    /// Events.
    pub events: u64,
}

/// A bucket of `/versions`: adoption of one version over time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionBucket {
    /// First day of the bucket.
    pub start: String,
    /// Version.
    pub version: String,
    /// Distinct installs on that version in the bucket.
    pub installs: Option<u64>,
    /// Public view: hidden because fewer than `k` installs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suppressed: Option<bool>,
}

/// A row of `/platforms`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlatformRow {
    /// OS.
    pub os: String,
    /// Architecture.
    pub arch: String,
    /// Distinct installs.
    pub installs: u64,
    /// Events.
    pub events: u64,
}

/// A row of `/features` (features and methods).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamedRow {
    /// Name.
    pub name: String,
    /// Times recorded.
    pub count: u64,
    /// Distinct installs.
    pub installs: u64,
}

/// A list answer with the public view's suppression fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Listed<T> {
    /// The rows.
    #[serde(flatten)]
    pub rows: T,
    /// Public view: rows removed because fewer than `k` installs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suppressed_rows: Option<u64>,
    /// Public view: the k-anonymity threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k: Option<u64>,
}

/// Rows of `/commands`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Commands {
    /// Most invoked first.
    pub commands: Vec<CommandRow>,
}

/// Rows of `/errors`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Errors {
    /// Most frequent first.
    pub errors: Vec<ErrorRow>,
}

/// Rows of `/versions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Versions {
    /// Most installs first.
    pub versions: Vec<VersionRow>,
    /// Bucket width.
    pub granularity: Granularity,
    /// Per bucket and version.
    pub buckets: Vec<VersionBucket>,
}

/// Rows of `/platforms`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Platforms {
    /// Most installs first.
    pub platforms: Vec<PlatformRow>,
}

/// Rows of `/features`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Features {
    /// Features, most used first.
    pub features: Vec<NamedRow>,
    /// Methods, most called first.
    pub methods: Vec<NamedRow>,
}

/// Merges sketches grouped by a key derived from each row.
fn merge_by<K: std::hash::Hash + Eq>(
    rows: &[SketchRow],
    mut key: impl FnMut(&SketchRow) -> Option<K>,
) -> HashMap<K, InstallSketch> {
    let mut out: HashMap<K, InstallSketch> = HashMap::new();
    for r in rows {
        if let Some(k) = key(r) {
            out.entry(k).or_default().merge(&r.sketch);
        }
    }
    out
}

fn installs_by_value(rows: &[SketchRow], kind: SketchKind) -> HashMap<String, u64> {
    merge_by(rows, |r| (r.kind == kind).then(|| r.value.clone()))
        .into_iter()
        .map(|(k, s)| (k, s.count()))
        .collect()
}

fn suppress<T>(
    rows: Vec<T>,
    audience: Audience,
    installs: impl Fn(&T) -> u64,
) -> (Vec<T>, Option<u64>) {
    match audience {
        Audience::Admin => (rows, None),
        Audience::Public { k } => {
            let before = rows.len();
            let kept: Vec<T> = rows.into_iter().filter(|r| installs(r) >= k).collect();
            let removed = (before - kept.len()) as u64;
            (kept, Some(removed))
        }
    }
}

fn listed<T>(rows: T, suppressed_rows: Option<u64>, audience: Audience) -> Listed<T> {
    Listed {
        rows,
        suppressed_rows,
        k: audience.k(),
    }
}

fn commands_of(counts: &[CountRow]) -> impl Iterator<Item = &CountRow> {
    counts.iter().filter(|r| r.key.event_type == "command")
}

fn u(n: i64) -> u64 {
    n.max(0) as u64
}

/// `/overview` of a project over `[range.since_ms, range.until_ms)`.
///
/// # Errors
/// Database errors.
pub fn overview<S: Store + ?Sized>(
    store: &S,
    project: &Project,
    range: TimeRange,
    audience: Audience,
) -> StoreResult<Overview> {
    let days = DayRange::covering(range.since_ms, range.until_ms);
    let counts = store.counts_total(project.id, days)?;
    let last = days.last;
    let wide = DayRange {
        first: days.first.min(last - 29),
        last,
    };
    let sketches = store.installs(project.id, wide, &[SketchKind::All])?;
    let distinct = |first: i64| {
        let mut s = InstallSketch::default();
        for r in sketches.iter().filter(|r| r.day >= first && r.day <= last) {
            s.merge(&r.sketch);
        }
        s.count()
    };
    let active = distinct(days.first);
    let events: i64 = counts.iter().map(|r| r.count).sum();
    let invocations: i64 = commands_of(&counts).map(|r| r.count).sum();
    let failures: i64 = commands_of(&counts)
        .filter(|r| r.key.outcome == 0)
        .map(|r| r.count)
        .sum();
    let hide = audience.hides(active);
    let show = |n: u64| (!hide).then_some(n);
    Ok(Overview {
        project: project.name.clone(),
        from: Timestamp::from_unix_ms(range.since_ms),
        to: Timestamp::from_unix_ms(range.until_ms),
        events: show(u(events)),
        invocations: show(u(invocations)),
        failures: show(u(failures)),
        active_installs: show(active),
        dau: show(distinct(last)),
        wau: show(distinct(last - 6)),
        mau: show(distinct(last - 29)),
        suppressed: audience.k().map(|_| hide),
        k: audience.k(),
    })
}

/// `/timeseries`.
///
/// # Errors
/// Database errors.
pub fn timeseries<S: Store + ?Sized>(
    store: &S,
    project: &Project,
    range: TimeRange,
    granularity: Granularity,
    audience: Audience,
) -> StoreResult<Timeseries> {
    let days = DayRange::covering(range.since_ms, range.until_ms);
    let totals = store.day_totals(project.id, days)?;
    let sketches = store.installs(project.id, days, &[SketchKind::All])?;
    let mut sums: HashMap<i64, (i64, i64, i64)> = HashMap::new();
    for (day, e, i, f) in totals {
        let s = sums.entry(granularity.bucket_start(day)).or_default();
        s.0 += e;
        s.1 += i;
        s.2 += f;
    }
    let installs = merge_by(&sketches, |r| Some(granularity.bucket_start(r.day)));
    let buckets = granularity
        .buckets(days)
        .into_iter()
        .map(|start| {
            let (e, i, f) = sums.get(&start).copied().unwrap_or_default();
            let active = installs.get(&start).map_or(0, InstallSketch::count);
            let hide = audience.hides(active);
            let show = |n: u64| (!hide).then_some(n);
            SeriesBucket {
                start: day_string(start),
                events: show(u(e)),
                invocations: show(u(i)),
                failures: show(u(f)),
                active_installs: show(active),
                suppressed: hide.then_some(true),
            }
        })
        .collect();
    Ok(Timeseries {
        granularity,
        buckets,
        k: audience.k(),
    })
}

/// `/commands`: most invoked first, at most [`MAX_ROWS`].
///
/// # Errors
/// Database errors.
pub fn commands<S: Store + ?Sized>(
    store: &S,
    project: &Project,
    range: TimeRange,
    audience: Audience,
) -> StoreResult<Listed<Commands>> {
    let days = DayRange::covering(range.since_ms, range.until_ms);
    let counts = store.counts_total(project.id, days)?;
    let hist = store.durations(project.id, days)?;
    let installs = installs_by_value(
        &store.installs(project.id, days, &[SketchKind::Command])?,
        SketchKind::Command,
    );
    let mut by_name: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
    for r in commands_of(&counts) {
        let s = by_name.entry(&r.key.name).or_default();
        s.0 += r.count;
        if r.key.outcome == 0 {
            s.1 += r.count;
        }
    }
    let mut buckets: HashMap<&str, BTreeMap<i64, i64>> = HashMap::new();
    for h in &hist {
        *buckets
            .entry(&h.name)
            .or_default()
            .entry(h.bucket)
            .or_default() += h.count;
    }
    let mut rows: Vec<CommandRow> = by_name
        .into_iter()
        .filter(|&(_, (c, _))| c > 0)
        .map(|(name, (count, failures))| {
            let h: Vec<(i64, i64)> = buckets
                .get(name)
                .map(|b| b.iter().map(|(&k, &v)| (k, v)).collect())
                .unwrap_or_default();
            CommandRow {
                name: name.to_owned(),
                count: u(count),
                failures: u(failures),
                failure_rate: if count > 0 {
                    failures as f64 / count as f64
                } else {
                    0.0
                },
                installs: installs.get(name).copied().unwrap_or(0),
                p50_ms: percentile(&h, 0.5),
                p95_ms: percentile(&h, 0.95),
            }
        })
        .collect();
    rows.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.name.cmp(&b.name)));
    let (mut rows, suppressed) = suppress(rows, audience, |r| r.installs);
    rows.truncate(MAX_ROWS);
    Ok(listed(Commands { commands: rows }, suppressed, audience))
}

/// `/errors`: failures per command and error code, most frequent first.
///
/// # Errors
/// Database errors.
pub fn errors<S: Store + ?Sized>(
    store: &S,
    project: &Project,
    range: TimeRange,
    audience: Audience,
) -> StoreResult<Listed<Errors>> {
    let days = DayRange::covering(range.since_ms, range.until_ms);
    let counts = store.counts_total(project.id, days)?;
    let installs = installs_by_value(
        &store.installs(project.id, days, &[SketchKind::Error])?,
        SketchKind::Error,
    );
    let mut by_key: BTreeMap<(&str, &str), i64> = BTreeMap::new();
    for r in commands_of(&counts).filter(|r| r.key.outcome == 0) {
        *by_key.entry((&r.key.name, &r.key.error_code)).or_default() += r.count;
    }
    let mut rows: Vec<ErrorRow> = by_key
        .into_iter()
        .filter(|&(_, c)| c > 0)
        .map(|((command, code), count)| ErrorRow {
            command: command.to_owned(),
            error_code: code.to_owned(),
            count: u(count),
            installs: installs
                .get(&format!("{command} {code}"))
                .copied()
                .unwrap_or(0),
        })
        .collect();
    rows.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then_with(|| (&a.command, &a.error_code).cmp(&(&b.command, &b.error_code)))
    });
    let (mut rows, suppressed) = suppress(rows, audience, |r| r.installs);
    rows.truncate(MAX_ROWS);
    Ok(listed(Errors { errors: rows }, suppressed, audience))
}

/// `/versions`: versions by installs, and their adoption per bucket.
///
/// # Errors
/// Database errors.
pub fn versions<S: Store + ?Sized>(
    store: &S,
    project: &Project,
    range: TimeRange,
    granularity: Granularity,
    audience: Audience,
) -> StoreResult<Listed<Versions>> {
    let days = DayRange::covering(range.since_ms, range.until_ms);
    let counts = store.counts_total(project.id, days)?;
    let sketches = store.installs(project.id, days, &[SketchKind::Version])?;
    let installs = installs_by_value(&sketches, SketchKind::Version);
    let mut events: BTreeMap<&str, i64> = BTreeMap::new();
    for r in &counts {
        *events.entry(&r.key.version).or_default() += r.count;
    }
    let mut rows: Vec<VersionRow> = events
        .into_iter()
        .filter(|&(_, e)| e > 0)
        .map(|(v, e)| VersionRow {
            version: v.to_owned(),
            installs: installs.get(v).copied().unwrap_or(0),
            events: u(e),
        })
        .collect();
    rows.sort_by(|a, b| {
        b.installs
            .cmp(&a.installs)
            .then_with(|| b.version.cmp(&a.version))
    });
    let (mut rows, suppressed) = suppress(rows, audience, |r| r.installs);
    rows.truncate(MAX_ROWS);
    let per_bucket = merge_by(&sketches, |r| {
        Some((granularity.bucket_start(r.day), r.value.clone()))
    });
    let mut buckets = Vec::new();
    for start in granularity.buckets(days) {
        for v in &rows {
            let n = per_bucket
                .get(&(start, v.version.clone()))
                .map_or(0, InstallSketch::count);
            let hide = audience.hides(n);
            buckets.push(VersionBucket {
                start: day_string(start),
                version: v.version.clone(),
                installs: (!hide).then_some(n),
                suppressed: hide.then_some(true),
            });
        }
    }
    Ok(listed(
        Versions {
            versions: rows,
            granularity,
            buckets,
        },
        suppressed,
        audience,
    ))
}

/// `/platforms`: OS and architecture mix, most installs first.
///
/// # Errors
/// Database errors.
pub fn platforms<S: Store + ?Sized>(
    store: &S,
    project: &Project,
    range: TimeRange,
    audience: Audience,
) -> StoreResult<Listed<Platforms>> {
    let days = DayRange::covering(range.since_ms, range.until_ms);
    let counts = store.counts_total(project.id, days)?;
    let installs = installs_by_value(
        &store.installs(project.id, days, &[SketchKind::Platform])?,
        SketchKind::Platform,
    );
    let mut events: BTreeMap<(&str, &str), i64> = BTreeMap::new();
    for r in &counts {
        *events.entry((&r.key.os, &r.key.arch)).or_default() += r.count;
    }
    let mut rows: Vec<PlatformRow> = events
        .into_iter()
        .filter(|&(_, e)| e > 0)
        .map(|((os, arch), e)| PlatformRow {
            os: os.to_owned(),
            arch: arch.to_owned(),
            installs: installs.get(&format!("{os} {arch}")).copied().unwrap_or(0),
            events: u(e),
        })
        .collect();
    rows.sort_by(|a, b| {
        b.installs
            .cmp(&a.installs)
            .then_with(|| (&a.os, &a.arch).cmp(&(&b.os, &b.arch)))
    });
    let (mut rows, suppressed) = suppress(rows, audience, |r| r.installs);
    rows.truncate(MAX_ROWS);
    Ok(listed(Platforms { platforms: rows }, suppressed, audience))
}

/// `/features`: features and methods, most used first.
///
/// # Errors
/// Database errors.
pub fn features<S: Store + ?Sized>(
    store: &S,
    project: &Project,
    range: TimeRange,
    audience: Audience,
) -> StoreResult<Listed<Features>> {
    let days = DayRange::covering(range.since_ms, range.until_ms);
    let counts = store.counts_total(project.id, days)?;
    let sketches = store.installs(project.id, days, &[SketchKind::Feature, SketchKind::Method])?;
    let named = |event_type: &str, kind: SketchKind| {
        let installs = installs_by_value(&sketches, kind);
        let mut by_name: BTreeMap<&str, i64> = BTreeMap::new();
        for r in counts.iter().filter(|r| r.key.event_type == event_type) {
            *by_name.entry(&r.key.name).or_default() += r.count;
        }
        let mut rows: Vec<NamedRow> = by_name
            .into_iter()
            .filter(|&(_, c)| c > 0)
            .map(|(n, c)| NamedRow {
                name: n.to_owned(),
                count: u(c),
                installs: installs.get(n).copied().unwrap_or(0),
            })
            .collect();
        rows.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.name.cmp(&b.name)));
        rows
    };
    let (mut features, s1) = suppress(named("feature", SketchKind::Feature), audience, |r| {
        r.installs
    });
    let (mut methods, s2) = suppress(named("method", SketchKind::Method), audience, |r| {
        r.installs
    });
    features.truncate(MAX_ROWS);
    methods.truncate(MAX_ROWS);
    let suppressed = s1.zip(s2).map(|(a, b)| a + b);
    Ok(listed(Features { features, methods }, suppressed, audience))
}

/// The legacy [`Stats`] object (`/stats`, `optel stats`), from the rollups.
///
/// # Errors
/// Database errors.
pub fn stats<S: Store + ?Sized>(
    store: &S,
    project: &Project,
    range: TimeRange,
) -> StoreResult<Stats> {
    let ov = overview(store, project, range, Audience::Admin)?;
    let cmds = commands(store, project, range, Audience::Admin)?
        .rows
        .commands;
    let errs = errors(store, project, range, Audience::Admin)?.rows.errors;
    let vers = versions(store, project, range, Granularity::Week, Audience::Admin)?
        .rows
        .versions;
    let plats = platforms(store, project, range, Audience::Admin)?
        .rows
        .platforms;
    let feats = features(store, project, range, Audience::Admin)?.rows;
    let named = |rows: Vec<NamedRow>| {
        rows.into_iter()
            .map(|r| NameStats {
                name: r.name,
                count: r.count,
                installs: r.installs,
            })
            .collect()
    };
    Ok(Stats {
        project: project.name.clone(),
        since: ov.from,
        until: ov.to,
        events: ov.events.unwrap_or(0),
        active_installs: ov.active_installs.unwrap_or(0),
        commands: cmds
            .into_iter()
            .map(|c| CommandStats {
                name: c.name,
                count: c.count,
                failures: c.failures,
                installs: c.installs,
            })
            .collect(),
        error_codes: errs
            .into_iter()
            .take(50)
            .map(|e| ErrorCodeStats {
                command: e.command,
                error_code: e.error_code,
                count: e.count,
            })
            .collect(),
        versions: vers
            .into_iter()
            .map(|v| VersionStats {
                version: v.version,
                events: v.events,
                installs: v.installs,
            })
            .collect(),
        platforms: plats
            .into_iter()
            .map(|p| PlatformStats {
                os: p.os,
                arch: p.arch,
                events: p.events,
                installs: p.installs,
            })
            .collect(),
        features: named(feats.features),
        methods: named(feats.methods),
    })
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
            let d = crate::parse_lookback(s).map_err(|m| ("since", m))?;
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
    use crate::rollup::day_of;

    #[test]
    fn weeks_start_on_monday() {
        // 2026-11-23 is a Monday.
        let monday = Timestamp::parse("2026-11-23T00:00:00Z").unwrap().unix_ms() / DAY_MS;
        for d in monday..monday + 7 {
            assert_eq!(Granularity::Week.bucket_start(d), monday);
        }
        assert_eq!(Granularity::Week.bucket_start(monday - 1), monday - 7);
        assert_eq!(day_string(monday), "2026-11-23");
        let days = DayRange {
            first: monday - 1,
            last: monday + 7,
        };
        assert_eq!(
            Granularity::Week.buckets(days),
            vec![monday - 7, monday, monday + 7]
        );
        assert_eq!(Granularity::Day.buckets(days).len(), 9);
    }

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
}
