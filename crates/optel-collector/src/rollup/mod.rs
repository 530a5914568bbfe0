//! Daily rollups: what every analytics query reads instead of raw events.
//!
//! Each committed batch updates, in the same transaction as the raw insert, four tables per
//! UTC day and project (see `migrations/*/0002_rollups.sql`):
//! - `rollup_counts`: events and summed command durations per event type, name, version, OS,
//!   architecture, outcome and error code ([`CountRow`]);
//! - `rollup_durations`: a log-linear histogram of command durations per command name
//!   ([`HistRow`], [`duration_bucket`]), from which p50/p95 are read;
//! - `rollup_version_durations`: the same histogram per command name and tool version
//!   ([`VersionHistRow`]), from which release health reads each version's p95;
//! - `rollup_installs`: the distinct install pseudonyms per day and dimension (all events, each
//!   command, error, version, platform, feature, method) as an [`InstallSketch`], mergeable
//!   across days.
//!
//! Schema version 2 batches add four more (`migrations/*/0007_analytics.sql`, postgres `0005`;
//! `docs/adr/011-analytics-rollups.md`):
//! - `rollup_breakdowns`: events and failures per event and value of each attribute its
//!   catalog declares as a dimension (enum, bool, bucketed int), with at most
//!   [`MAX_DIMENSION_VALUES`] values per attribute and catalog, the rest folded into
//!   [`OTHER_VALUE`] ([`Extras::of`]);
//! - `rollup_phases`: a histogram of phase durations per command, phase, parent phase and
//!   version, one row per key with its buckets as a [`BucketCounts`] (merged by the upsert),
//!   and the sum of the phases' start offsets, from which the waterfall reads mean starts
//!   (SQLite migration `0010`, PostgreSQL `0008`);
//! - `rollup_measurements`: a histogram (with per-bucket sums) of measurement values per name
//!   and version;
//! - installs per attribute value and per custom event, as [`SketchKind::Attribute`] and
//!   [`SketchKind::Custom`] sketches of `rollup_installs`.
//!
//! Both histograms use [`value_bucket`]: logarithmic buckets whose representative value is
//! within [`RELATIVE_ACCURACY`] (1.9 %) of every value in the bucket, the bucket scheme of
//! DDSketch. Counts per bucket only add up, so deletion by pseudonym subtracts exactly.
//!
//! Only events that were newly stored feed the rollups, so a retried batch never double counts.

use foldhash::HashMap;

mod delta;
mod facts;
mod histogram;
mod sketch;

pub use delta::{Delta, EventFacts};
pub use facts::{Extras, MAX_DIMENSION_VALUES, OTHER_VALUE, PhaseFact};
pub use histogram::{
    BucketCounts, DURATION_BUCKETS, MAX_VALUE_BUCKET, MIN_MAGNITUDE, RELATIVE_ACCURACY,
    bucket_estimate, bucket_value, duration_bucket, percentile, value_bucket, value_quantile,
};
pub use sketch::{InstallSketch, SPARSE_MAX, SketchKind, attribute_sketch_value, install_hash};

/// Milliseconds in a UTC day.
pub const DAY_MS: i64 = 86_400_000;

/// The UTC day (days since 1970-01-01) containing `ms` (milliseconds since the Unix epoch).
pub fn day_of(ms: i64) -> i64 {
    ms.div_euclid(DAY_MS)
}

/// An inclusive range of UTC days.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayRange {
    /// First day, inclusive.
    pub first: i64,
    /// Last day, inclusive.
    pub last: i64,
}

impl DayRange {
    /// The days touched by the half-open millisecond range `[since_ms, until_ms)`.
    pub fn covering(since_ms: i64, until_ms: i64) -> Self {
        Self {
            first: day_of(since_ms),
            last: day_of(until_ms.saturating_sub(1)).max(day_of(since_ms)),
        }
    }
}

/// `(day, events, invocations, failures)` per day of per-day count rows, as
/// `Store::day_totals` answers.
pub fn day_totals(counts: &[CountRow]) -> Vec<(i64, i64, i64, i64)> {
    let mut by_day: std::collections::BTreeMap<i64, (i64, i64, i64)> =
        std::collections::BTreeMap::new();
    for r in counts {
        let s = by_day.entry(r.key.day).or_default();
        s.0 += r.count;
        if r.key.event_type == "command" {
            s.1 += r.count;
            if r.key.outcome == 0 {
                s.2 += r.count;
            }
        }
    }
    by_day
        .into_iter()
        .map(|(d, (e, i, f))| (d, e, i, f))
        .collect()
}

/// Outcome of a command as stored in rollups: `-1` none (not a command or not reported),
/// `0` failed, `1` succeeded.
pub fn outcome_code(success: Option<bool>) -> i64 {
    match success {
        None => -1,
        Some(false) => 0,
        Some(true) => 1,
    }
}

/// One row of `rollup_counts`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CountKey {
    /// UTC day.
    pub day: i64,
    /// Event type wire name (`command`, `feature`, `method`, `custom`).
    pub event_type: String,
    /// Event name.
    pub name: String,
    /// Tool version.
    pub version: String,
    /// Operating system.
    pub os: String,
    /// CPU architecture.
    pub arch: String,
    /// [`outcome_code`].
    pub outcome: i64,
    /// Error code, empty when none.
    pub error_code: String,
}

/// A `rollup_counts` row: key plus aggregates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountRow {
    /// The dimensions.
    pub key: CountKey,
    /// Events.
    pub count: i64,
    /// Sum of `duration_ms` of these events, milliseconds.
    pub duration_sum: i64,
}

/// A `rollup_durations` row: command `name` on `day` had `count` invocations in `bucket`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistRow {
    /// UTC day.
    pub day: i64,
    /// Command name.
    pub name: String,
    /// [`duration_bucket`] index.
    pub bucket: i64,
    /// Invocations.
    pub count: i64,
}

/// A `rollup_version_durations` row summed over a day range: command `name` of tool `version`
/// had `count` invocations in `bucket` ([`duration_bucket`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionHistRow {
    /// Command name.
    pub name: String,
    /// Tool version.
    pub version: String,
    /// [`duration_bucket`] index.
    pub bucket: i64,
    /// Invocations.
    pub count: i64,
}

/// A `rollup_installs` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SketchRow {
    /// UTC day.
    pub day: i64,
    /// Dimension.
    pub kind: SketchKind,
    /// Dimension value (see [`SketchKind`]).
    pub value: String,
    /// The distinct installs.
    pub sketch: InstallSketch,
}

/// Sums `rollup_phases` rows (one per key and day) over days: one [`PhaseHist`] per
/// `(command, phase, parent, version)`, in no particular order.
pub fn sum_phase_rows(rows: impl IntoIterator<Item = PhaseHist>) -> Vec<PhaseHist> {
    let mut sums: HashMap<(String, String, String, String), (BucketCounts, i64)> =
        HashMap::default();
    for r in rows {
        let slot = sums
            .entry((r.command, r.phase, r.parent, r.version))
            .or_default();
        slot.0.merge(&r.hist);
        slot.1 = r.start_ms_sum.saturating_add(slot.1);
    }
    sums.into_iter()
        .map(
            |((command, phase, parent, version), (hist, start_ms_sum))| PhaseHist {
                command,
                phase,
                parent,
                version,
                hist,
                start_ms_sum,
            },
        )
        .collect()
}

/// `(day, event_type, name, attribute, value)` of a `rollup_breakdowns` row.
pub type BreakdownKey = (i64, String, String, String, String);
/// `(day, command, phase, parent, version)` of a `rollup_phases` row: `parent` is the name of
/// the enclosing phase, empty for a phase at the top level of its command.
pub type PhaseKey = (i64, String, String, String, String);

/// What a `rollup_phases` row sums: the histogram of the phases' durations (ms, as
/// [`value_bucket`]s) and the sum of their start offsets from the command's start, in whole
/// ms (each rounded to the nearest), from which the mean start is read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PhaseSum {
    /// Durations.
    pub hist: BucketCounts,
    /// Sum of start offsets, ms.
    pub start_ms_sum: i64,
}
/// `(day, name, version, bucket)` of a `rollup_measurements` row.
pub type MeasureKey = (i64, String, String, i64);

/// A `rollup_breakdowns` row summed over a day range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakdownCount {
    /// Event type wire name.
    pub event_type: String,
    /// Event name.
    pub name: String,
    /// Declared attribute.
    pub attribute: String,
    /// Folded value.
    pub value: String,
    /// Events.
    pub count: i64,
    /// Failed commands (0 for other event types).
    pub failures: i64,
}

/// The `rollup_phases` rows of one key summed over a day range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhaseHist {
    /// Command name.
    pub command: String,
    /// Phase name.
    pub phase: String,
    /// Name of the enclosing phase; empty at the top level (and for phases stored before
    /// schema version 10 on SQLite, 8 on PostgreSQL, which kept no parent).
    pub parent: String,
    /// Tool version.
    pub version: String,
    /// Durations, ms, as [`value_bucket`] counts.
    pub hist: BucketCounts,
    /// Sum of the phases' start offsets from their command's start, ms (0 for phases stored
    /// before the schema versions above).
    pub start_ms_sum: i64,
}

/// A `rollup_measurements` row summed over a day range.
#[derive(Debug, Clone, PartialEq)]
pub struct MeasureHist {
    /// Measurement name.
    pub name: String,
    /// Tool version.
    pub version: String,
    /// [`value_bucket`] of the value.
    pub bucket: i64,
    /// Values.
    pub count: i64,
    /// Their sum, in the measurement's unit.
    pub sum: f64,
}
