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
//! Only events that were newly stored feed the rollups, so a retried batch never double counts.

use std::collections::BTreeSet;

// foldhash (randomly seeded per map) rather than SipHash: merging deltas was 9 % of the
// writer's CPU, and a delta holds at most one group commit's keys (writer::MAX_GROUP_EVENTS),
// which bounds what colliding client-chosen names could cost.
use foldhash::{HashMap, HashSet};

use optel_wire::{Batch, Event, EventType};
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

/// The `q`-quantile (0..=1) of a histogram given as `(bucket, count)` pairs, in ms; 0 if empty.
pub fn percentile(hist: &[(i64, i64)], q: f64) -> u64 {
    let mut sorted: Vec<(i64, i64)> = hist.iter().copied().filter(|&(_, c)| c > 0).collect();
    sorted.sort_unstable();
    let total: i64 = sorted.iter().map(|&(_, c)| c).sum();
    if total <= 0 {
        return 0;
    }
    let rank = ((q * total as f64).ceil() as i64).clamp(1, total);
    let mut seen = 0;
    for (bucket, count) in sorted {
        seen += count;
        if seen >= rank {
            return bucket_value(bucket);
        }
    }
    0
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
        EventType::Custom | EventType::Measurement => [None, None],
    }
}

/// The stored value of a sketch: a two-part value is joined by a space.
fn sketch_value(a: &str, b: Option<&str>) -> String {
    match b {
        Some(b) => format!("{a} {b}"),
        None => a.to_owned(),
    }
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
}

impl<'a> EventFacts<'a> {
    /// The facts of an event of a batch.
    pub fn of(project_id: i64, batch: &'a Batch, e: &'a Event, install: u64) -> Self {
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
        events: impl IntoIterator<Item = &'a Event>,
    ) {
        type CountAt<'b> = (i64, EventType, &'b str, i64, &'b str);
        let mut counts: HashMap<CountAt<'a>, (i64, i64)> = HashMap::default();
        let mut durations: HashMap<(i64, &'a str, i64), i64> = HashMap::default();
        // (day, kind, value, second part of the value: see `sketch_value`).
        let mut sketches: HashSet<(i64, SketchKind, &'a str, Option<&'a str>)> = HashSet::default();
        let mut days: HashSet<i64> = HashSet::default();
        for e in events {
            let day = day_of(e.timestamp.unix_ms());
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
    }

    /// Whether nothing changes.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
            && self.durations.is_empty()
            && self.version_durations.is_empty()
            && self.installs.is_empty()
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
            }
            batch.events.push(e);
        }
        let install = install_hash(&batch.pseudonym);
        let mut one_by_one = Delta::default();
        for e in &batch.events {
            one_by_one.add(&EventFacts::of(7, &batch, e, install), 1);
        }
        let mut together = Delta::default();
        together.add_batch(7, &batch, install, &batch.events);
        assert_eq!(together.counts, one_by_one.counts);
        assert_eq!(together.durations, one_by_one.durations);
        assert_eq!(together.version_durations, one_by_one.version_durations);
        assert!(!together.version_durations.is_empty());
        assert_eq!(together.installs, one_by_one.installs);
        assert!(together.installs.len() > 10);

        // Merging the deltas of two halves gives the delta of the whole.
        let (a, b) = batch.events.split_at(25);
        let mut merged = Delta::default();
        for half in [a, b] {
            let mut d = Delta::default();
            d.add_batch(7, &batch, install, half);
            merged.merge_from(&d);
        }
        assert_eq!(merged.counts, one_by_one.counts);
        assert_eq!(merged.durations, one_by_one.durations);
        assert_eq!(merged.version_durations, one_by_one.version_durations);
        assert_eq!(merged.installs, one_by_one.installs);
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
