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

use std::collections::BTreeSet;

// foldhash (randomly seeded per map) rather than SipHash: merging deltas was 9 % of the
// writer's CPU, and a delta holds at most one group commit's keys (writer::MAX_GROUP_EVENTS),
// which bounds what colliding client-chosen names could cost.
use foldhash::{HashMap, HashSet};

use optel_wire::catalog::{AttributeKind, Catalog, bucket_label};
use optel_wire::{AttributeValue, Batch, Event, EventType};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

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

/// Dimension of a `rollup_installs` sketch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SketchKind {
    /// Every event of the project (value empty): DAU/WAU/MAU and active installs.
    All = 0,
    /// One command (value: its name).
    Command = 1,
    /// One failed command and error code (value: `command error_code`).
    Error = 2,
    /// One tool version (value: the version).
    Version = 3,
    /// One platform (value: `os arch`).
    Platform = 4,
    /// One feature (value: its name).
    Feature = 5,
    /// One method (value: its name).
    Method = 6,
    /// One custom event (value: its name).
    Custom = 7,
    /// One value of one declared attribute of one event (value: `event_type name attribute
    /// value`, see [`attribute_sketch_value`]).
    Attribute = 8,
}

impl SketchKind {
    /// The stored code.
    pub fn code(self) -> i64 {
        self as i64
    }

    /// The kind of a stored code.
    pub fn from_code(code: i64) -> Option<Self> {
        Some(match code {
            0 => Self::All,
            1 => Self::Command,
            2 => Self::Error,
            3 => Self::Version,
            4 => Self::Platform,
            5 => Self::Feature,
            6 => Self::Method,
            7 => Self::Custom,
            8 => Self::Attribute,
            _ => return None,
        })
    }
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

/// Number of histogram buckets: durations up to 7 days fit.
pub const DURATION_BUCKETS: i64 = 8 + 4 * 27;

/// The histogram bucket of a duration in ms: exact below 8 ms, then four buckets per power of
/// two (relative error of a bucket's midpoint at most 12.5 %).
pub fn duration_bucket(ms: u64) -> i64 {
    if ms < 8 {
        return ms as i64;
    }
    let e = 63 - i64::from(ms.leading_zeros()); // e >= 3
    let sub = ((ms >> (e - 2)) & 3) as i64;
    (8 + (e - 3) * 4 + sub).min(DURATION_BUCKETS - 1)
}

/// The representative duration (ms) of a bucket: its midpoint, rounded down.
pub fn bucket_value(bucket: i64) -> u64 {
    if bucket < 8 {
        return bucket.max(0) as u64;
    }
    let e = (bucket - 8) / 4 + 3;
    let sub = ((bucket - 8) % 4) as u64;
    let width = 1u64 << (e - 2);
    let lower = (4 + sub) * width;
    lower + width / 2
}

/// The bucket holding the `q`-quantile (0..=1) of a histogram given as `(bucket, count)`
/// pairs, whose bucket order is value order; `None` if empty.
fn quantile_bucket(hist: &[(i64, i64)], q: f64) -> Option<i64> {
    let mut sorted: Vec<(i64, i64)> = hist.iter().copied().filter(|&(_, c)| c > 0).collect();
    sorted.sort_unstable();
    let total: i64 = sorted.iter().map(|&(_, c)| c).sum();
    if total <= 0 {
        return None;
    }
    let rank = ((q * total as f64).ceil() as i64).clamp(1, total);
    let mut seen = 0;
    for (bucket, count) in sorted {
        seen += count;
        if seen >= rank {
            return Some(bucket);
        }
    }
    None
}

/// The `q`-quantile (0..=1) of a histogram given as `(bucket, count)` pairs, in ms; 0 if empty.
pub fn percentile(hist: &[(i64, i64)], q: f64) -> u64 {
    quantile_bucket(hist, q).map_or(0, bucket_value)
}

/// The 64-bit hash of a pseudonym that sketches hold (first 8 bytes of its SHA-256).
pub fn install_hash(pseudonym: &str) -> u64 {
    let d = Sha256::digest(pseudonym.as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    u64::from_be_bytes(b)
}

/// Sparse sketches hold up to this many exact hashes before turning into a HyperLogLog.
pub const SPARSE_MAX: usize = 256;
/// HyperLogLog precision: 2^10 registers, about 3 % standard error.
const HLL_P: u32 = 10;
const HLL_M: usize = 1 << HLL_P;

/// The distinct installs of one rollup cell: an exact set of install hashes while small (so
/// that counts below [`SPARSE_MAX`], and thus every k-anonymity decision, are exact), then a
/// HyperLogLog of 1,024 registers (about 3 % error). Sketches of several days merge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstallSketch {
    /// Exact hashes.
    Sparse(BTreeSet<u64>),
    /// HyperLogLog registers.
    Dense(Box<[u8]>),
}

impl Default for InstallSketch {
    fn default() -> Self {
        Self::Sparse(BTreeSet::new())
    }
}

fn hll_slot(hash: u64) -> (usize, u8) {
    let idx = (hash >> (64 - HLL_P)) as usize;
    let w = (hash << HLL_P) | (1 << (HLL_P - 1));
    (idx, (w.leading_zeros() + 1) as u8)
}

impl InstallSketch {
    /// Adds one install hash. Returns whether the sketch changed (false when the install was
    /// already in an exact sketch, or its register already held as much).
    pub fn insert(&mut self, hash: u64) -> bool {
        match self {
            Self::Sparse(set) => {
                if !set.insert(hash) {
                    return false;
                }
                if set.len() > SPARSE_MAX {
                    self.densify();
                }
                true
            }
            Self::Dense(regs) => {
                let (i, r) = hll_slot(hash);
                match regs.get_mut(i) {
                    Some(slot) if *slot < r => {
                        *slot = r;
                        true
                    }
                    _ => false,
                }
            }
        }
    }

    /// Removes an install hash if the sketch is still exact (deletion by pseudonym); a dense
    /// sketch keeps only register maxima that cannot be traced back to one install.
    pub fn remove(&mut self, hash: u64) {
        if let Self::Sparse(set) = self {
            set.remove(&hash);
        }
    }

    fn densify(&mut self) {
        if let Self::Sparse(set) = self {
            let mut regs = vec![0u8; HLL_M].into_boxed_slice();
            for &h in set.iter() {
                let (i, r) = hll_slot(h);
                if let Some(slot) = regs.get_mut(i) {
                    *slot = (*slot).max(r);
                }
            }
            *self = Self::Dense(regs);
        }
    }

    /// Adds every install of `other`.
    pub fn merge(&mut self, other: &Self) {
        match other {
            Self::Sparse(set) => {
                for &h in set {
                    let _ = self.insert(h);
                }
            }
            Self::Dense(theirs) => {
                self.densify();
                if let Self::Dense(ours) = self {
                    for (a, b) in ours.iter_mut().zip(theirs.iter()) {
                        *a = (*a).max(*b);
                    }
                }
            }
        }
    }

    /// Estimated distinct installs (exact while sparse).
    pub fn count(&self) -> u64 {
        match self {
            Self::Sparse(set) => set.len() as u64,
            Self::Dense(regs) => {
                let m = HLL_M as f64;
                let sum: f64 = regs.iter().map(|&r| 2f64.powi(-i32::from(r))).sum();
                let zeros = regs.iter().filter(|&&r| r == 0).count();
                let alpha = 0.7213 / (1.0 + 1.079 / m);
                let raw = alpha * m * m / sum;
                let est = if raw <= 2.5 * m && zeros > 0 {
                    m * (m / zeros as f64).ln()
                } else {
                    raw
                };
                est.round() as u64
            }
        }
    }

    /// The stored form: `0` then big-endian hashes, or `1` then the registers.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Self::Sparse(set) => {
                let mut out = Vec::with_capacity(1 + set.len() * 8);
                out.push(0);
                for h in set {
                    out.extend_from_slice(&h.to_be_bytes());
                }
                out
            }
            Self::Dense(regs) => {
                let mut out = Vec::with_capacity(1 + regs.len());
                out.push(1);
                out.extend_from_slice(regs);
                out
            }
        }
    }

    /// Reads the stored form; anything malformed reads as empty (a sketch is an estimate, and a
    /// damaged one must not fail a dashboard query).
    pub fn decode(bytes: &[u8]) -> Self {
        match bytes.split_first() {
            Some((1, regs)) if regs.len() == HLL_M => Self::Dense(regs.into()),
            Some((0, hashes)) if hashes.len() % 8 == 0 => {
                let mut set = BTreeSet::new();
                for chunk in hashes.chunks_exact(8) {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(chunk);
                    set.insert(u64::from_be_bytes(b));
                }
                Self::Sparse(set)
            }
            _ => Self::default(),
        }
    }
}

/// An install sketch an event counts in: its kind, its value, and the second part of a
/// two-part value (platform: OS and architecture; error: command and code).
type SketchAt<'a> = (SketchKind, &'a str, Option<&'a str>);

/// The sketches every event of an install counts in on its day: all installs, its version, its
/// platform.
fn install_sketches<'a>(version: &'a str, os: &'a str, arch: &'a str) -> [SketchAt<'a>; 3] {
    [
        (SketchKind::All, "", None),
        (SketchKind::Version, version, None),
        (SketchKind::Platform, os, Some(arch)),
    ]
}

/// The sketches of one event's own, by type: a command (and, when it failed, its error code),
/// a feature or a method; a custom event has none.
fn event_sketches<'a>(
    event_type: EventType,
    name: &'a str,
    success: Option<bool>,
    error_code: &'a str,
) -> [Option<SketchAt<'a>>; 2] {
    match event_type {
        EventType::Command => [
            Some((SketchKind::Command, name, None)),
            (success == Some(false)).then_some((SketchKind::Error, name, Some(error_code))),
        ],
        EventType::Feature => [Some((SketchKind::Feature, name, None)), None],
        EventType::Method => [Some((SketchKind::Method, name, None)), None],
        EventType::Custom => [Some((SketchKind::Custom, name, None)), None],
        EventType::Measurement => [None, None],
    }
}

/// The stored value of a sketch: a two-part value is joined by a space.
fn sketch_value(a: &str, b: Option<&str>) -> String {
    match b {
        Some(b) => format!("{a} {b}"),
        None => a.to_owned(),
    }
}

/// Most distinct values one attribute of one event keeps as its own breakdown rows per catalog
/// version; the others are counted under [`OTHER_VALUE`]. Queries fold again across catalog
/// versions, so an answer never lists more than this many values plus `other`.
pub const MAX_DIMENSION_VALUES: usize = 64;

/// The breakdown value that counts everything beyond [`MAX_DIMENSION_VALUES`] and every value
/// its catalog does not declare.
pub const OTHER_VALUE: &str = "other";

/// Relative accuracy of [`value_bucket`]: a bucket's representative value
/// ([`bucket_estimate`]) is within 1.9 % of every value in the bucket.
pub const RELATIVE_ACCURACY: f64 = 0.019;

/// Magnitudes below this (1e-6) count as zero in [`value_bucket`].
pub const MIN_MAGNITUDE: f64 = 1e-6;

/// `ln` of the bucket ratio γ = (1 + α) / (1 − α), α = [`RELATIVE_ACCURACY`].
fn ln_gamma() -> f64 {
    ((1.0 + RELATIVE_ACCURACY) / (1.0 - RELATIVE_ACCURACY)).ln()
}

/// The bucket index of the smallest magnitude: buckets of positive values start at 1.
fn bucket_offset() -> i64 {
    (MIN_MAGNITUDE.ln() / ln_gamma()).ceil() as i64 - 1
}

/// The histogram bucket of a phase duration (ms) or a measurement value: 0 for zero (and
/// magnitudes below [`MIN_MAGNITUDE`]), `i > 0` for positive values in
/// `(γ^(i+o-1), γ^(i+o)]`, `-i` for the negative value of the same magnitude, where γ is the
/// bucket ratio of [`RELATIVE_ACCURACY`] and `o` a fixed offset. Bucket order is value order.
/// Not-a-number and infinities, which validation refuses, land in bucket 0.
pub fn value_bucket(v: f64) -> i64 {
    let m = v.abs();
    if !m.is_finite() || m < MIN_MAGNITUDE {
        return 0;
    }
    let i = ((m.ln() / ln_gamma()).ceil() as i64 - bucket_offset()).max(1);
    if v < 0.0 { -i } else { i }
}

/// The representative value of a [`value_bucket`]: `2γ^k / (γ + 1)` for its upper bound γ^k,
/// within [`RELATIVE_ACCURACY`] of every value in the bucket.
pub fn bucket_estimate(bucket: i64) -> f64 {
    if bucket == 0 {
        return 0.0;
    }
    let k = (bucket.abs() + bucket_offset()) as f64;
    let gamma = ln_gamma().exp();
    let v = 2.0 * (k * ln_gamma()).exp() / (gamma + 1.0);
    if bucket < 0 { -v } else { v }
}

/// The `q`-quantile (0..=1) of a [`value_bucket`] histogram given as `(bucket, count)` pairs;
/// 0 if empty.
pub fn value_quantile(hist: &[(i64, i64)], q: f64) -> f64 {
    quantile_bucket(hist, q).map_or(0.0, bucket_estimate)
}

/// Largest bucket magnitude a [`BucketCounts`] holds: every finite value's [`value_bucket`]
/// lies within `±MAX_VALUE_BUCKET` (the largest, of `f64::MAX`, is about 19,000), so a stored
/// histogram claiming a bucket beyond it is malformed.
pub const MAX_VALUE_BUCKET: i64 = 1 << 15;

/// Tag of the stored form of [`BucketCounts::encode`] (its first byte).
const HIST_FORMAT: u8 = 1;

/// A histogram of [`value_bucket`] counts, dense from its lowest non-zero bucket to its highest
/// one (zeros in between are kept, none at either end). Counts may be negative: a rollup delta
/// of deleted events subtracts, and buckets that fall to zero are dropped from the ends.
///
/// It is what `rollup_phases` stores per key, in place of a JSON object of ~150 buckets
/// (~2.6 KB) that every `/phases` query parsed (BENCHMARKS.md, "Phase histograms in binary"):
/// SQLite keeps [`BucketCounts::encode`] (a BLOB of ~200 bytes) and PostgreSQL
/// [`BucketCounts::to_array`] (an `int8[]`), each merged in the upsert by the database
/// function `optel_hist_add`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BucketCounts {
    /// Bucket of `counts[0]` (0 when empty).
    first: i64,
    /// Counts of buckets `first`, `first + 1`, …; empty, or non-zero at both ends.
    counts: Vec<i64>,
}

impl BucketCounts {
    /// An empty histogram.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether every count is zero.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// Adds `count` (negative to subtract) to `bucket`. A bucket beyond [`MAX_VALUE_BUCKET`]
    /// (which [`value_bucket`] never returns) is ignored.
    pub fn add(&mut self, bucket: i64, count: i64) {
        if count == 0 || bucket.unsigned_abs() > MAX_VALUE_BUCKET as u64 {
            return;
        }
        if self.counts.is_empty() {
            self.first = bucket;
            self.counts.push(count);
            return;
        }
        self.cover(bucket, bucket);
        if let Some(slot) = self.counts.get_mut((bucket - self.first) as usize) {
            *slot = slot.saturating_add(count);
        }
        self.trim();
    }

    /// Adds every count of `other`.
    pub fn merge(&mut self, other: &Self) {
        if other.counts.is_empty() {
            return;
        }
        if self.counts.is_empty() {
            self.clone_from(other);
            return;
        }
        let last = other.first + other.counts.len() as i64 - 1;
        self.cover(other.first, last);
        let offset = (other.first - self.first) as usize;
        for (slot, &c) in self.counts.iter_mut().skip(offset).zip(&other.counts) {
            // Saturating: a damaged row must not panic a query.
            *slot = slot.saturating_add(c);
        }
        self.trim();
    }

    /// Widens the (non-empty) dense range to hold buckets `lo..=hi`.
    fn cover(&mut self, lo: i64, hi: i64) {
        if lo < self.first {
            let grow = (self.first - lo) as usize;
            self.counts.splice(0..0, std::iter::repeat_n(0, grow));
            self.first = lo;
        }
        let end = self.first + self.counts.len() as i64;
        if hi >= end {
            self.counts
                .resize(self.counts.len() + (hi - end + 1) as usize, 0);
        }
    }

    /// Drops zero counts from both ends.
    fn trim(&mut self) {
        let Some(start) = self.counts.iter().position(|&c| c != 0) else {
            self.counts.clear();
            self.first = 0;
            return;
        };
        let end = self
            .counts
            .iter()
            .rposition(|&c| c != 0)
            .map_or(0, |e| e + 1);
        self.counts.truncate(end);
        self.counts.drain(..start);
        self.first += start as i64;
    }

    /// The non-zero `(bucket, count)` pairs, in bucket (and so value) order.
    pub fn iter(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        self.counts
            .iter()
            .enumerate()
            .filter(|&(_, &c)| c != 0)
            .map(|(i, &c)| (self.first + i as i64, c))
    }

    /// The sum of the counts (negative only for a delta of deleted events).
    pub fn total(&self) -> i64 {
        self.counts.iter().fold(0, |a, &c| a.saturating_add(c))
    }

    /// The `q`-quantile (0..=1) of the positive counts ([`bucket_estimate`] of its bucket); 0
    /// if there are none. The same as [`value_quantile`] of [`BucketCounts::iter`], without
    /// sorting.
    pub fn quantile(&self, q: f64) -> f64 {
        let total = self
            .counts
            .iter()
            .filter(|&&c| c > 0)
            .fold(0i64, |a, &c| a.saturating_add(c));
        if total <= 0 {
            return 0.0;
        }
        let rank = ((q * total as f64).ceil() as i64).clamp(1, total);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            if c > 0 {
                seen = c.saturating_add(seen);
                if seen >= rank {
                    return bucket_estimate(self.first + i as i64);
                }
            }
        }
        0.0
    }

    /// The stored form in SQLite: the byte `1`, then the first bucket and each count as
    /// zigzag LEB128 varints (1 byte for counts within ±63). An empty histogram is the byte
    /// `1` alone.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(3 + self.counts.len() * 2);
        out.push(HIST_FORMAT);
        if self.counts.is_empty() {
            return out;
        }
        put_varint(&mut out, self.first);
        for &c in &self.counts {
            put_varint(&mut out, c);
        }
        out
    }

    /// Reads [`BucketCounts::encode`]. Anything malformed (another first byte, a truncated or
    /// overlong varint, a bucket beyond [`MAX_VALUE_BUCKET`]) reads as empty: a histogram is
    /// an aggregate, and a damaged one must not fail a dashboard query or an upsert.
    pub fn decode(bytes: &[u8]) -> Self {
        Self::try_decode(bytes).unwrap_or_default()
    }

    fn try_decode(bytes: &[u8]) -> Option<Self> {
        let (&tag, mut rest) = bytes.split_first()?;
        if tag != HIST_FORMAT {
            return None;
        }
        if rest.is_empty() {
            return Some(Self::default());
        }
        let first = take_varint(&mut rest)?;
        let mut counts = Vec::with_capacity(rest.len());
        while !rest.is_empty() {
            counts.push(take_varint(&mut rest)?);
        }
        Self::from_dense(first, counts)
    }

    /// The stored form in PostgreSQL (`int8[]`): the first bucket, then each count; empty
    /// when the histogram is.
    pub fn to_array(&self) -> Vec<i64> {
        if self.counts.is_empty() {
            return Vec::new();
        }
        let mut out = Vec::with_capacity(1 + self.counts.len());
        out.push(self.first);
        out.extend_from_slice(&self.counts);
        out
    }

    /// Reads [`BucketCounts::to_array`]; anything malformed reads as empty.
    pub fn from_array(array: &[i64]) -> Self {
        match array.split_first() {
            Some((&first, counts)) => Self::from_dense(first, counts.to_vec()).unwrap_or_default(),
            None => Self::default(),
        }
    }

    /// Reads the JSON object `{"bucket": count}` that `rollup_phases` stored before schema
    /// version 10 (SQLite) and 8 (PostgreSQL); anything malformed reads as empty.
    pub fn from_json(json: &str) -> Self {
        let mut out = Self::default();
        if let Ok(map) = serde_json::from_str::<std::collections::BTreeMap<String, i64>>(json) {
            for (bucket, count) in map {
                if let Ok(b) = bucket.parse() {
                    out.add(b, count);
                }
            }
        }
        out
    }

    /// A histogram of `counts` from bucket `first`, if every bucket is within
    /// [`MAX_VALUE_BUCKET`].
    fn from_dense(first: i64, counts: Vec<i64>) -> Option<Self> {
        let last = first.checked_add(counts.len() as i64)?.checked_sub(1)?;
        if first.unsigned_abs() > MAX_VALUE_BUCKET as u64 || last > MAX_VALUE_BUCKET {
            return None;
        }
        let mut h = Self { first, counts };
        h.trim();
        Some(h)
    }
}

/// Appends `v` as a zigzag LEB128 varint (at most 10 bytes).
fn put_varint(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

/// Takes one zigzag LEB128 varint off the front of `bytes`; `None` if it is truncated or
/// longer than 10 bytes.
fn take_varint(bytes: &mut &[u8]) -> Option<i64> {
    let mut z: u64 = 0;
    for i in 0..10 {
        let (&b, rest) = bytes.split_first()?;
        *bytes = rest;
        z |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some(((z >> 1) as i64) ^ -((z & 1) as i64));
        }
    }
    None
}

/// The stored value of an [`SketchKind::Attribute`] sketch. Names are wire names (no spaces),
/// so the value, last, may hold anything.
pub fn attribute_sketch_value(
    event_type: &str,
    name: &str,
    attribute: &str,
    value: &str,
) -> String {
    format!("{event_type} {name} {attribute} {value}")
}

/// What the schema version 2 rollups count of one event beyond the columns of `events`: its
/// breakdown values, phases and measurement value. Stored with the event (column `facts`) as
/// compact JSON, so that deletion by pseudonym subtracts exactly what ingest added, whatever
/// catalog versions the collector still holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Extras {
    /// `(attribute, value)` of each declared dimension the event carries, values already
    /// folded ([`OTHER_VALUE`]).
    #[serde(default, rename = "d", skip_serializing_if = "Vec::is_empty")]
    pub dims: Vec<(String, String)>,
    /// Each phase of a command.
    #[serde(default, rename = "p", skip_serializing_if = "Vec::is_empty")]
    pub phases: Vec<PhaseFact>,
    /// The value of a measurement event.
    #[serde(default, rename = "v", skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
}

/// What the rollups count of one phase of a command. Stored in [`Extras`] as the JSON array
/// `[name, duration_us, parent, start_us]`; facts stored before the phase waterfall (schema
/// version 10 on SQLite, 8 on PostgreSQL) are `[name, duration_us]` and read with an empty
/// parent and a start of 0, as the migrated rollup rows hold them, so that deleting those
/// events still subtracts exactly what they added.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PhaseFact {
    /// Phase name.
    pub name: String,
    /// Duration, µs.
    pub duration_us: u64,
    /// Name of the enclosing phase, empty at the top level.
    pub parent: String,
    /// Start, µs after the command started.
    pub start_us: u64,
}

impl Serialize for PhaseFact {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (&self.name, self.duration_us, &self.parent, self.start_us).serialize(s)
    }
}

impl<'de> Deserialize<'de> for PhaseFact {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        /// The two stored forms.
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Stored {
            Full(String, u64, String, u64),
            Short(String, u64),
        }
        Ok(match Stored::deserialize(d)? {
            Stored::Full(name, duration_us, parent, start_us) => Self {
                name,
                duration_us,
                parent,
                start_us,
            },
            Stored::Short(name, duration_us) => Self {
                name,
                duration_us,
                ..Self::default()
            },
        })
    }
}

/// The breakdown value of `value` for a declared attribute `kind`, folded: a value the
/// catalog declares (and, for enums, among its first [`MAX_DIMENSION_VALUES`]) stays itself,
/// anything else is [`OTHER_VALUE`]. `None` for text attributes, which are never dimensions.
fn dimension_value(kind: &AttributeKind, value: &AttributeValue) -> Option<String> {
    let other = || Some(OTHER_VALUE.to_owned());
    match (kind, value) {
        (AttributeKind::Text, _) => None,
        (AttributeKind::Enum { values }, AttributeValue::String(s)) => {
            if values.iter().take(MAX_DIMENSION_VALUES).any(|v| v == s) {
                Some(s.clone())
            } else {
                other()
            }
        }
        (AttributeKind::Bool, AttributeValue::Bool(b)) => Some(b.to_string()),
        (AttributeKind::Bool, AttributeValue::String(s)) if s == "true" || s == "false" => {
            Some(s.clone())
        }
        (AttributeKind::Int { buckets }, AttributeValue::Int(i)) => Some(bucket_label(buckets, *i)),
        (AttributeKind::Int { buckets }, AttributeValue::String(s)) => {
            // The SDK sends the bucket's label: keep it only if it is one of this catalog's.
            let labels = std::iter::once(i64::MIN)
                .chain(buckets.iter().copied())
                .map(|b| bucket_label(buckets, b));
            if labels.take(MAX_DIMENSION_VALUES).any(|l| &l == s) {
                Some(s.clone())
            } else {
                other()
            }
        }
        _ => other(),
    }
}

impl Extras {
    /// What the rollups count of `e` beyond its columns, given the catalog its batch names
    /// (`None` when the batch names none or the collector does not know it: then no breakdown
    /// values, as no attribute is known to be a dimension). Phases and measurement values are
    /// counted with or without a catalog.
    pub fn of(e: &Event, catalog: Option<&Catalog>) -> Self {
        let mut dims = Vec::new();
        if let Some(entry) = catalog.and_then(|c| c.entry(e.event_type, &e.name)) {
            for a in &entry.attributes {
                if let Some(v) = e.metadata.get(&a.name)
                    && let Some(folded) = dimension_value(&a.kind, v)
                {
                    dims.push((a.name.clone(), folded));
                }
            }
        }
        let phases = if e.event_type == EventType::Command {
            e.phases
                .iter()
                .map(|p| PhaseFact {
                    name: p.name.clone(),
                    duration_us: p.duration_us,
                    // Validation makes `parent` an earlier phase's index; anything else
                    // counts at the top level.
                    parent: p
                        .parent
                        .and_then(|i| e.phases.get(usize::try_from(i).ok()?))
                        .map(|q| q.name.clone())
                        .unwrap_or_default(),
                    start_us: p.start_us,
                })
                .collect()
        } else {
            Vec::new()
        };
        let value = if e.event_type == EventType::Measurement {
            e.value.filter(|v| v.is_finite())
        } else {
            None
        };
        Self {
            dims,
            phases,
            value,
        }
    }

    /// Whether there is nothing beyond the columns.
    pub fn is_empty(&self) -> bool {
        self.dims.is_empty() && self.phases.is_empty() && self.value.is_none()
    }

    /// The stored form (`events.facts`): compact JSON, `None` when empty.
    pub fn encode(&self) -> Option<String> {
        if self.is_empty() {
            return None;
        }
        serde_json::to_string(self).ok()
    }

    /// Reads the stored form; `NULL` or anything malformed reads as empty.
    pub fn decode(stored: Option<&str>) -> Self {
        stored
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or_default()
    }
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

/// The rollup changes of a set of newly stored (or, with a negative sign, deleted) events,
/// aggregated in memory so each rollup row is written once per transaction.
#[derive(Debug, Default)]
pub struct Delta {
    /// `(project_id, key)` → `(count, duration_sum)`.
    pub counts: HashMap<(i64, CountKey), (i64, i64)>,
    /// `(project_id, day, name, bucket)` → count.
    pub durations: HashMap<(i64, i64, String, i64), i64>,
    /// `(project_id, day, kind, value)` → install hashes.
    pub installs: HashMap<(i64, i64, SketchKind, String), BTreeSet<u64>>,
    /// `(project_id, day, name, version, bucket)` → count: the duration histogram per tool
    /// version that release health reads ([`VersionHistRow`]).
    pub version_durations: HashMap<(i64, i64, String, String, i64), i64>,
    /// `(project_id, key)` → `(count, failures)`.
    pub breakdowns: HashMap<(i64, BreakdownKey), (i64, i64)>,
    /// `(project_id, key)` → durations and summed start offsets.
    pub phases: HashMap<(i64, PhaseKey), PhaseSum>,
    /// `(project_id, key)` → `(count, sum)`.
    pub measures: HashMap<(i64, MeasureKey), (i64, f64)>,
}

/// The facts of one stored event that rollups need (from a batch or from a stored row).
#[derive(Debug, Clone)]
pub struct EventFacts<'a> {
    /// Project id.
    pub project_id: i64,
    /// Event timestamp, ms since the epoch.
    pub ts_ms: i64,
    /// Event type.
    pub event_type: EventType,
    /// Event name.
    pub name: &'a str,
    /// Tool version.
    pub version: &'a str,
    /// OS.
    pub os: &'a str,
    /// Architecture.
    pub arch: &'a str,
    /// Command duration, ms.
    pub duration_ms: Option<u64>,
    /// Command outcome.
    pub success: Option<bool>,
    /// Error code.
    pub error_code: Option<&'a str>,
    /// [`install_hash`] of the pseudonym.
    pub install: u64,
    /// What schema version 2 rollups count beyond the above.
    pub extras: &'a Extras,
}

impl<'a> EventFacts<'a> {
    /// The facts of an event of a batch, with its [`Extras`].
    pub fn of(
        project_id: i64,
        batch: &'a Batch,
        e: &'a Event,
        install: u64,
        extras: &'a Extras,
    ) -> Self {
        Self {
            project_id,
            ts_ms: e.timestamp.unix_ms(),
            event_type: e.event_type,
            name: &e.name,
            version: &batch.service_version,
            os: &batch.os,
            arch: &batch.arch,
            duration_ms: e.duration_ms,
            success: e.success,
            error_code: e.error_code.as_deref(),
            install,
            extras,
        }
    }
}

impl Delta {
    /// Adds (`sign` = 1) or subtracts (`sign` = -1) one event. Subtraction leaves the install
    /// sketches alone: [`Delta::installs`] then lists the hashes to remove.
    pub fn add(&mut self, f: &EventFacts<'_>, sign: i64) {
        let day = day_of(f.ts_ms);
        let key = CountKey {
            day,
            event_type: f.event_type.as_str().to_owned(),
            name: f.name.to_owned(),
            version: f.version.to_owned(),
            os: f.os.to_owned(),
            arch: f.arch.to_owned(),
            outcome: outcome_code(f.success),
            error_code: f.error_code.unwrap_or_default().to_owned(),
        };
        let dur = f.duration_ms.map_or(0, |d| d as i64);
        let slot = self.counts.entry((f.project_id, key)).or_default();
        slot.0 += sign;
        slot.1 += sign * dur;
        if f.event_type == EventType::Command
            && let Some(d) = f.duration_ms
        {
            let bucket = duration_bucket(d);
            *self
                .durations
                .entry((f.project_id, day, f.name.to_owned(), bucket))
                .or_default() += sign;
            *self
                .version_durations
                .entry((
                    f.project_id,
                    day,
                    f.name.to_owned(),
                    f.version.to_owned(),
                    bucket,
                ))
                .or_default() += sign;
        }
        let error = f.error_code.unwrap_or_default();
        let own = event_sketches(f.event_type, f.name, f.success, error);
        for (kind, a, b) in install_sketches(f.version, f.os, f.arch)
            .into_iter()
            .chain(own.into_iter().flatten())
        {
            self.installs
                .entry((f.project_id, day, kind, sketch_value(a, b)))
                .or_default()
                .insert(f.install);
        }
        self.add_extras(
            f.project_id,
            day,
            (f.event_type, f.name, f.version, f.success),
            f.extras,
            sign,
            f.install,
        );
    }

    /// Adds (or subtracts) the schema version 2 rollups of one event of `day`: `event` is its
    /// type, name, tool version and outcome.
    fn add_extras(
        &mut self,
        project_id: i64,
        day: i64,
        event: (EventType, &str, &str, Option<bool>),
        extras: &Extras,
        sign: i64,
        install: u64,
    ) {
        let (event_type, name, version, success) = event;
        let failed = i64::from(event_type == EventType::Command && success == Some(false));
        for (attribute, value) in &extras.dims {
            let key = (
                day,
                event_type.as_str().to_owned(),
                name.to_owned(),
                attribute.clone(),
                value.clone(),
            );
            let slot = self.breakdowns.entry((project_id, key)).or_default();
            slot.0 += sign;
            slot.1 += sign * failed;
            self.installs
                .entry((
                    project_id,
                    day,
                    SketchKind::Attribute,
                    attribute_sketch_value(event_type.as_str(), name, attribute, value),
                ))
                .or_default()
                .insert(install);
        }
        for ph in &extras.phases {
            let key = (
                day,
                name.to_owned(),
                ph.name.clone(),
                ph.parent.clone(),
                version.to_owned(),
            );
            let slot = self.phases.entry((project_id, key)).or_default();
            slot.hist
                .add(value_bucket(ph.duration_us as f64 / 1000.0), sign);
            slot.start_ms_sum += sign * (ph.start_us.saturating_add(500) / 1000) as i64;
        }
        if let Some(v) = extras.value {
            let key = (day, name.to_owned(), version.to_owned(), value_bucket(v));
            let slot = self.measures.entry((project_id, key)).or_default();
            slot.0 += sign;
            slot.1 += sign as f64 * v;
        }
    }

    /// Adds `events` of one `batch` (one install, whose [`install_hash`] is `install`): the same
    /// result as [`Delta::add`] for each event with `sign` 1, but aggregated within the batch
    /// first, so keys are allocated once per distinct value instead of about ten times per
    /// event (it was 9 % of the writer's CPU in `optel bench fill`).
    pub fn add_batch<'a>(
        &mut self,
        project_id: i64,
        batch: &'a Batch,
        install: u64,
        events: impl IntoIterator<Item = (&'a Event, &'a Extras)>,
    ) {
        type CountAt<'b> = (i64, EventType, &'b str, i64, &'b str);
        let mut counts: HashMap<CountAt<'a>, (i64, i64)> = HashMap::default();
        let mut durations: HashMap<(i64, &'a str, i64), i64> = HashMap::default();
        // (day, kind, value, second part of the value: see `sketch_value`).
        let mut sketches: HashSet<(i64, SketchKind, &'a str, Option<&'a str>)> = HashSet::default();
        let mut days: HashSet<i64> = HashSet::default();
        for (e, extras) in events {
            let day = day_of(e.timestamp.unix_ms());
            if !extras.is_empty() {
                self.add_extras(
                    project_id,
                    day,
                    (e.event_type, &e.name, &batch.service_version, e.success),
                    extras,
                    1,
                    install,
                );
            }
            let error = e.error_code.as_deref().unwrap_or_default();
            let slot = counts
                .entry((day, e.event_type, &e.name, outcome_code(e.success), error))
                .or_default();
            slot.0 += 1;
            slot.1 += e.duration_ms.map_or(0, |d| d as i64);
            if e.event_type == EventType::Command
                && let Some(d) = e.duration_ms
            {
                *durations
                    .entry((day, &e.name, duration_bucket(d)))
                    .or_default() += 1;
            }
            days.insert(day);
            for (kind, a, b) in event_sketches(e.event_type, &e.name, e.success, error)
                .into_iter()
                .flatten()
            {
                sketches.insert((day, kind, a, b));
            }
        }
        for day in days {
            for (kind, a, b) in install_sketches(&batch.service_version, &batch.os, &batch.arch) {
                sketches.insert((day, kind, a, b));
            }
        }
        for ((day, event_type, name, outcome, error), (count, dur)) in counts {
            let key = CountKey {
                day,
                event_type: event_type.as_str().to_owned(),
                name: name.to_owned(),
                version: batch.service_version.clone(),
                os: batch.os.clone(),
                arch: batch.arch.clone(),
                outcome,
                error_code: error.to_owned(),
            };
            let slot = self.counts.entry((project_id, key)).or_default();
            slot.0 += count;
            slot.1 += dur;
        }
        for ((day, name, bucket), count) in durations {
            *self
                .durations
                .entry((project_id, day, name.to_owned(), bucket))
                .or_default() += count;
            // One batch is one install of one version: its histogram per version is the same.
            *self
                .version_durations
                .entry((
                    project_id,
                    day,
                    name.to_owned(),
                    batch.service_version.clone(),
                    bucket,
                ))
                .or_default() += count;
        }
        for (day, kind, a, b) in sketches {
            self.installs
                .entry((project_id, day, kind, sketch_value(a, b)))
                .or_default()
                .insert(install);
        }
    }

    /// Adds everything of `other` (keys are cloned only where `self` lacks them).
    pub fn merge_from(&mut self, other: &Delta) {
        for (k, &(count, dur)) in &other.counts {
            match self.counts.get_mut(k) {
                Some(slot) => {
                    slot.0 += count;
                    slot.1 += dur;
                }
                None => {
                    self.counts.insert(k.clone(), (count, dur));
                }
            }
        }
        for (k, &count) in &other.durations {
            match self.durations.get_mut(k) {
                Some(slot) => *slot += count,
                None => {
                    self.durations.insert(k.clone(), count);
                }
            }
        }
        for (k, &count) in &other.version_durations {
            match self.version_durations.get_mut(k) {
                Some(slot) => *slot += count,
                None => {
                    self.version_durations.insert(k.clone(), count);
                }
            }
        }
        for (k, hashes) in &other.installs {
            match self.installs.get_mut(k) {
                Some(set) => set.extend(hashes),
                None => {
                    self.installs.insert(k.clone(), hashes.clone());
                }
            }
        }
        for (k, &(count, failures)) in &other.breakdowns {
            let slot = self.breakdowns.entry(k.clone()).or_default();
            slot.0 += count;
            slot.1 += failures;
        }
        for (k, sum) in &other.phases {
            let slot = self.phases.entry(k.clone()).or_default();
            slot.hist.merge(&sum.hist);
            slot.start_ms_sum += sum.start_ms_sum;
        }
        for (k, &(count, sum)) in &other.measures {
            let slot = self.measures.entry(k.clone()).or_default();
            slot.0 += count;
            slot.1 += sum;
        }
    }

    /// Whether nothing changes.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
            && self.durations.is_empty()
            && self.version_durations.is_empty()
            && self.installs.is_empty()
            && self.breakdowns.is_empty()
            && self.phases.is_empty()
            && self.measures.is_empty()
    }

    /// Breakdown rows `(project_id, key, count, failures)`, sorted by key.
    pub fn sorted_breakdowns(&self) -> Vec<(i64, &BreakdownKey, i64, i64)> {
        let mut v: Vec<_> = self
            .breakdowns
            .iter()
            .map(|((p, k), &(c, f))| (*p, k, c, f))
            .collect();
        v.sort_unstable_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        v
    }

    /// Phase rows `(project_id, key, durations and start offsets)`, sorted by key.
    pub fn sorted_phases(&self) -> Vec<(i64, &PhaseKey, &PhaseSum)> {
        let mut v: Vec<_> = self.phases.iter().map(|((p, k), s)| (*p, k, s)).collect();
        v.sort_unstable_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        v
    }

    /// Measurement rows `(project_id, key, count, sum)`, sorted by key.
    pub fn sorted_measures(&self) -> Vec<(i64, &MeasureKey, i64, f64)> {
        let mut v: Vec<_> = self
            .measures
            .iter()
            .map(|((p, k), &(c, s))| (*p, k, c, s))
            .collect();
        v.sort_unstable_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        v
    }

    /// Count rows, sorted by key (so concurrent writers lock rows in the same order).
    pub fn sorted_counts(&self) -> Vec<(i64, &CountKey, i64, i64)> {
        let mut v: Vec<_> = self
            .counts
            .iter()
            .map(|((p, k), &(c, d))| (*p, k, c, d))
            .collect();
        v.sort_unstable_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        v
    }

    /// Duration rows, sorted by key.
    pub fn sorted_durations(&self) -> Vec<(i64, i64, &str, i64, i64)> {
        let mut v: Vec<_> = self
            .durations
            .iter()
            .map(|((p, d, n, b), &c)| (*p, *d, n.as_str(), *b, c))
            .collect();
        v.sort_unstable();
        v
    }

    /// Duration rows per version, sorted by key.
    pub fn sorted_version_durations(&self) -> Vec<(i64, i64, &str, &str, i64, i64)> {
        let mut v: Vec<_> = self
            .version_durations
            .iter()
            .map(|((p, d, n, ver, b), &c)| (*p, *d, n.as_str(), ver.as_str(), *b, c))
            .collect();
        v.sort_unstable();
        v
    }

    /// Sketch additions, sorted by key.
    pub fn sorted_installs(&self) -> Vec<(i64, i64, SketchKind, &str, &BTreeSet<u64>)> {
        let mut v: Vec<_> = self
            .installs
            .iter()
            .map(|((p, d, k, val), set)| (*p, *d, *k, val.as_str(), set))
            .collect();
        v.sort_unstable_by(|a, b| (a.0, a.1, a.2, a.3).cmp(&(b.0, b.1, b.2, b.3)));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_delta_equals_the_sum_of_event_deltas() {
        use optel_wire::Timestamp;
        let mut batch = Batch::new("tool", "1.2.3", "p".repeat(32), "linux", "x86_64");
        let base = 1_750_000_000_000;
        for i in 0..60u64 {
            let (kind, name) = match i % 5 {
                0 | 1 => (
                    EventType::Command,
                    ["build", "test", "init"][(i % 3) as usize],
                ),
                2 => (EventType::Feature, "cache"),
                3 => (EventType::Method, "Client::get"),
                _ => (EventType::Custom, "custom"),
            };
            // Three UTC days, so sketches of several days come out of one batch.
            let ts = Timestamp::from_unix_ms(base + (i as i64 % 3) * DAY_MS);
            let mut e = Event::new(
                optel_wire::format_uuid_v4([i as u8; 16]),
                kind,
                name,
                ts,
                "s",
            );
            if kind == EventType::Command {
                e.duration_ms = Some(i * 37);
                e.success = Some(i % 4 != 0);
                e.error_code = (i % 8 == 0).then(|| "E_IO".to_owned());
                e.metadata.insert(
                    "profile".into(),
                    AttributeValue::String(["debug", "release", "odd"][(i % 3) as usize].into()),
                );
                e.phases.push(optel_wire::Phase {
                    name: "resolve".into(),
                    parent: None,
                    start_us: 0,
                    duration_us: i * 1_234,
                    success: true,
                });
                e.phases.push(optel_wire::Phase {
                    name: "fetch".into(),
                    parent: Some(0),
                    start_us: i * 100,
                    duration_us: i * 321,
                    success: true,
                });
            }
            batch.events.push(e);
        }
        let mut m = Event::new(
            optel_wire::format_uuid_v4([99; 16]),
            EventType::Measurement,
            "files",
            Timestamp::from_unix_ms(base),
            "s",
        );
        m.value = Some(0.5);
        batch.events.push(m);
        let mut catalog = Catalog::default();
        for name in ["build", "test", "init"] {
            let mut spec = optel_wire::catalog::EventSpec::new(name, "A command.");
            spec.attributes
                .push(optel_wire::catalog::AttributeSpec::new(
                    "profile",
                    "Build profile.",
                    AttributeKind::Enum {
                        values: vec!["debug".into(), "release".into()],
                    },
                ));
            catalog.commands.push(spec);
        }
        let extras: Vec<Extras> = batch
            .events
            .iter()
            .map(|e| Extras::of(e, Some(&catalog)))
            .collect();
        assert!(
            extras
                .iter()
                .any(|x| x.dims.iter().any(|(_, v)| v == OTHER_VALUE))
        );
        let install = install_hash(&batch.pseudonym);
        let mut one_by_one = Delta::default();
        for (e, x) in batch.events.iter().zip(&extras) {
            one_by_one.add(&EventFacts::of(7, &batch, e, install, x), 1);
        }
        let mut together = Delta::default();
        together.add_batch(7, &batch, install, batch.events.iter().zip(&extras));
        assert_eq!(together.counts, one_by_one.counts);
        assert_eq!(together.durations, one_by_one.durations);
        assert_eq!(together.version_durations, one_by_one.version_durations);
        assert!(!together.version_durations.is_empty());
        assert_eq!(together.installs, one_by_one.installs);
        assert_eq!(together.breakdowns, one_by_one.breakdowns);
        assert_eq!(together.phases, one_by_one.phases);
        assert_eq!(together.measures, one_by_one.measures);
        assert!(together.installs.len() > 10);
        assert!(!together.breakdowns.is_empty() && !together.phases.is_empty());

        // Merging the deltas of two halves gives the delta of the whole.
        let pairs: Vec<(&Event, &Extras)> = batch.events.iter().zip(&extras).collect();
        let (a, b) = pairs.split_at(25);
        let mut merged = Delta::default();
        for half in [a, b] {
            let mut d = Delta::default();
            d.add_batch(7, &batch, install, half.iter().copied());
            merged.merge_from(&d);
        }
        assert_eq!(merged.breakdowns, one_by_one.breakdowns);
        assert_eq!(merged.phases, one_by_one.phases);
        assert_eq!(merged.counts, one_by_one.counts);
        assert_eq!(merged.durations, one_by_one.durations);
        assert_eq!(merged.version_durations, one_by_one.version_durations);
        assert_eq!(merged.installs, one_by_one.installs);
    }

    #[test]
    fn bucket_counts_round_trip_and_merge() {
        let pairs = [(400, 3), (-5, 1), (402, 1), (0, 2), (400, 1), (7_000, 1)];
        let mut h = BucketCounts::new();
        for (b, c) in pairs {
            h.add(b, c);
        }
        let expected = vec![(-5, 1), (0, 2), (400, 4), (402, 1), (7_000, 1)];
        assert_eq!(h.iter().collect::<Vec<_>>(), expected);
        assert_eq!(h.total(), 9);
        assert_eq!(BucketCounts::decode(&h.encode()), h);
        assert_eq!(BucketCounts::from_array(&h.to_array()), h);
        assert_eq!(
            BucketCounts::from_json(r#"{"-5":1,"0":2,"400":4,"402":1,"7000":1}"#),
            h
        );

        // Merging adds per bucket, whatever the ranges.
        let mut other = BucketCounts::new();
        other.add(-10, 2);
        other.add(401, 5);
        let mut merged = h.clone();
        merged.merge(&other);
        assert_eq!(
            merged.iter().collect::<Vec<_>>(),
            vec![
                (-10, 2),
                (-5, 1),
                (0, 2),
                (400, 4),
                (401, 5),
                (402, 1),
                (7_000, 1)
            ]
        );
        let mut other_first = other.clone();
        other_first.merge(&h);
        assert_eq!(other_first, merged);

        // Negative deltas subtract exactly; counts at zero leave the ends, and all of them
        // leave an empty histogram.
        let mut minus = BucketCounts::new();
        for (b, c) in h.iter() {
            minus.add(b, -c);
        }
        let mut back = merged.clone();
        back.merge(&minus);
        assert_eq!(back, other);
        back.merge(&{
            let mut m = BucketCounts::new();
            m.add(-10, -2);
            m.add(401, -5);
            m
        });
        assert!(back.is_empty());
        assert_eq!(back, BucketCounts::new());
        assert_eq!(back.encode(), vec![1]);
        assert!(back.to_array().is_empty());
        assert_eq!(BucketCounts::decode(&[1]), BucketCounts::new());

        // Counts of any size survive the varints.
        let mut big = BucketCounts::new();
        big.add(-MAX_VALUE_BUCKET, i64::MAX);
        big.add(MAX_VALUE_BUCKET, i64::MIN);
        big.add(3, -64);
        assert_eq!(BucketCounts::decode(&big.encode()), big);
        // Beyond the bucket bound: ignored.
        big.add(MAX_VALUE_BUCKET + 1, 1);
        big.add(i64::MIN, 1);
        assert_eq!(big.iter().count(), 3);
    }

    #[test]
    fn malformed_histograms_read_as_empty() {
        let empty = BucketCounts::new();
        let mut overlong = vec![1u8];
        overlong.extend([0xff; 11]);
        let mut beyond = vec![1u8];
        put_varint(&mut beyond, MAX_VALUE_BUCKET);
        beyond.extend([2, 2]); // two buckets: the second past the bound
        let mut too_low = vec![1u8];
        put_varint(&mut too_low, -MAX_VALUE_BUCKET - 1);
        too_low.push(2);
        for bytes in [
            &[][..],
            &[0],
            &[2, 0, 2],
            &[1, 0x80],
            &[1, 4, 0x81],
            &overlong,
            &beyond,
            &too_low,
            b"{\"400\": 1}",
        ] {
            assert_eq!(BucketCounts::decode(bytes), empty, "{bytes:?}");
        }
        for array in [
            &[i64::MAX, 1][..],
            &[i64::MIN, 1],
            &[MAX_VALUE_BUCKET, 1, 1],
            &[],
        ] {
            assert_eq!(BucketCounts::from_array(array), empty, "{array:?}");
        }
        for json in ["", "[1]", "{\"x\": 1}", "{\"1\": \"a\"}"] {
            assert_eq!(BucketCounts::from_json(json), empty, "{json}");
        }
    }

    #[test]
    fn bucket_counts_quantiles_match_value_quantile() {
        let mut h = BucketCounts::new();
        let mut pairs = Vec::new();
        for ms in 1..=300 {
            let b = value_bucket(f64::from(ms) * 1.7);
            h.add(b, 1);
            pairs.push((b, 1));
        }
        h.add(5, -3); // a stray negative count is left out, as value_quantile does
        pairs.push((5, -3));
        for q in [0.0, 0.01, 0.5, 0.95, 0.99, 1.0] {
            assert_eq!(h.quantile(q), value_quantile(&pairs, q), "q {q}");
        }
        assert_eq!(BucketCounts::new().quantile(0.5), 0.0);
    }

    #[test]
    fn phase_facts_keep_parent_and_start_and_read_the_old_form() {
        let mut e = Event::new(
            optel_wire::format_uuid_v4([1; 16]),
            EventType::Command,
            "build",
            optel_wire::Timestamp::from_unix_ms(0),
            "s",
        );
        for (name, parent, start_us) in [("compile", None, 1_000), ("codegen", Some(0), 2_600)] {
            e.phases.push(optel_wire::Phase {
                name: name.into(),
                parent,
                start_us,
                duration_us: 5_000,
                success: true,
            });
        }
        let x = Extras::of(&e, None);
        assert_eq!(x.phases[1].parent, "compile");
        assert_eq!(x.phases[0].parent, "");
        let stored = x.encode().unwrap();
        assert_eq!(
            stored,
            r#"{"p":[["compile",5000,"",1000],["codegen",5000,"compile",2600]]}"#
        );
        assert_eq!(Extras::decode(Some(&stored)), x);

        // Facts stored before the waterfall: at the top level, starting at 0, which is how
        // migration 0010 (PostgreSQL 0008) keeps their rollup rows.
        let old = Extras::decode(Some(r#"{"p":[["resolve",20000]],"v":1.5}"#));
        assert_eq!(
            old.phases,
            vec![PhaseFact {
                name: "resolve".into(),
                duration_us: 20_000,
                parent: String::new(),
                start_us: 0,
            }]
        );
        assert_eq!(old.value, Some(1.5));

        // Adding then subtracting an event leaves every phase row at zero; starts are summed
        // in whole ms, rounded.
        let facts = |extras| EventFacts {
            project_id: 1,
            ts_ms: 0,
            event_type: EventType::Command,
            name: "build",
            version: "1.0.0",
            os: "linux",
            arch: "x86_64",
            duration_ms: Some(9),
            success: Some(true),
            error_code: None,
            install: 7,
            extras,
        };
        let mut d = Delta::default();
        d.add(&facts(&x), 1);
        let key = |phase: &str, parent: &str| {
            (
                1_i64,
                (
                    0_i64,
                    "build".to_owned(),
                    phase.to_owned(),
                    parent.to_owned(),
                    "1.0.0".to_owned(),
                ),
            )
        };
        assert_eq!(d.phases[&key("codegen", "compile")].start_ms_sum, 3);
        assert_eq!(d.phases[&key("compile", "")].start_ms_sum, 1);
        d.add(&facts(&x), -1);
        assert!(
            d.phases
                .values()
                .all(|s| s.hist.is_empty() && s.start_ms_sum == 0)
        );
        assert_eq!(d.sorted_phases().len(), 2);
    }

    #[test]
    fn value_buckets_are_ordered_and_within_the_documented_error() {
        let mut last = i64::MIN;
        let mut v = -5_000.0f64;
        while v < 5_000.0 {
            let b = value_bucket(v);
            assert!(b >= last, "bucket of {v} went down");
            last = b;
            let est = bucket_estimate(b);
            if v.abs() >= MIN_MAGNITUDE {
                let err = (est - v).abs() / v.abs();
                assert!(err <= RELATIVE_ACCURACY + 1e-12, "{v} -> {est} ({err})");
            }
            v += 0.37;
        }
        for v in [1e-3, 0.5, 1.0, 7.0, 1e6, 6.048e8, 1e12] {
            let est = bucket_estimate(value_bucket(v));
            assert!(
                (est - v).abs() / v <= RELATIVE_ACCURACY + 1e-12,
                "{v} -> {est}"
            );
        }
        assert_eq!(value_bucket(0.0), 0);
        assert_eq!(value_bucket(1e-9), 0);
        assert_eq!(bucket_estimate(0), 0.0);
        assert_eq!(value_bucket(f64::NAN), 0);
        let hist: Vec<(i64, i64)> = (1..=100).map(|ms| (value_bucket(ms as f64), 1)).collect();
        let p50 = value_quantile(&hist, 0.5);
        assert!((p50 - 50.0).abs() <= 50.0 * RELATIVE_ACCURACY, "p50 {p50}");
        assert_eq!(value_quantile(&[], 0.5), 0.0);
    }

    #[test]
    fn extras_fold_undeclared_values_and_skip_text() {
        use optel_wire::catalog::{AttributeSpec, EventSpec};
        let mut catalog = Catalog::default();
        let mut build = EventSpec::new("build", "Builds.");
        let many: Vec<String> = (0..100).map(|i| format!("v{i}")).collect();
        for (name, kind) in [
            ("many", AttributeKind::Enum { values: many }),
            ("fix", AttributeKind::Bool),
            (
                "jobs",
                AttributeKind::Int {
                    buckets: vec![2, 8],
                },
            ),
            ("note", AttributeKind::Text),
        ] {
            build
                .attributes
                .push(AttributeSpec::new(name, "Something.", kind));
        }
        catalog.commands.push(build);
        let mut e = Event::new(
            optel_wire::format_uuid_v4([1; 16]),
            EventType::Command,
            "build",
            optel_wire::Timestamp::from_unix_ms(0),
            "s",
        );
        for (k, v) in [
            ("many", AttributeValue::String("v70".into())),
            ("fix", AttributeValue::Bool(true)),
            ("jobs", AttributeValue::String("2..8".into())),
            ("note", AttributeValue::String("free text".into())),
        ] {
            e.metadata.insert(k.into(), v);
        }
        let x = Extras::of(&e, Some(&catalog));
        let dims: Vec<(&str, &str)> = x
            .dims
            .iter()
            .map(|(a, v)| (a.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            dims,
            vec![("many", "other"), ("fix", "true"), ("jobs", "2..8")]
        );
        e.metadata
            .insert("jobs".into(), AttributeValue::String("9..99".into()));
        e.metadata
            .insert("many".into(), AttributeValue::String("v3".into()));
        let x = Extras::of(&e, Some(&catalog));
        assert_eq!(x.dims[0].1, "v3");
        assert_eq!(x.dims[2].1, OTHER_VALUE);
        // Unknown catalog: no dimension at all.
        assert!(Extras::of(&e, None).dims.is_empty());
        assert_eq!(Extras::decode(x.encode().as_deref()), x);
        assert_eq!(Extras::decode(Some("junk")), Extras::default());
    }

    #[test]
    fn buckets_are_monotonic_and_close() {
        let mut last = -1;
        for ms in 0..100_000u64 {
            let b = duration_bucket(ms);
            assert!(b >= last, "bucket of {ms} went down");
            last = b;
            let v = bucket_value(b) as f64;
            assert!(
                (v - ms as f64).abs() <= (ms as f64) * 0.125 + 0.5,
                "{ms} -> {v}"
            );
        }
        assert_eq!(duration_bucket(u64::MAX), DURATION_BUCKETS - 1);
        assert!(duration_bucket(optel_wire::limits::MAX_DURATION_MS) < DURATION_BUCKETS);
    }

    #[test]
    fn percentiles_of_a_histogram() {
        let hist: Vec<(i64, i64)> = (1..=100u64)
            .map(|ms| (duration_bucket(ms * 10), 1))
            .collect();
        let p50 = percentile(&hist, 0.5);
        let p95 = percentile(&hist, 0.95);
        assert!((440..=560).contains(&p50), "p50 {p50}");
        assert!((830..=1070).contains(&p95), "p95 {p95}");
        assert_eq!(percentile(&[], 0.5), 0);
    }

    #[test]
    fn sketch_is_exact_while_small_and_close_when_large() {
        let mut s = InstallSketch::default();
        for i in 0..200 {
            s.insert(install_hash(&format!("p{i}")));
            s.insert(install_hash(&format!("p{i}")));
        }
        assert_eq!(s.count(), 200);
        let round = InstallSketch::decode(&s.encode());
        assert_eq!(round, s);
        s.remove(install_hash("p0"));
        assert_eq!(s.count(), 199);

        let mut a = InstallSketch::default();
        let mut b = InstallSketch::default();
        for i in 0..30_000 {
            a.insert(install_hash(&format!("a{i}")));
            b.insert(install_hash(&format!("a{}", i + 10_000)));
        }
        a.merge(&b);
        let n = a.count() as f64;
        assert!((n - 40_000.0).abs() < 40_000.0 * 0.1, "estimate {n}");
        assert_eq!(InstallSketch::decode(&a.encode()), a);
        assert_eq!(InstallSketch::decode(b"\x07junk").count(), 0);
    }
}
