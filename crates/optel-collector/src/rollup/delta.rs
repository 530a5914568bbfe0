//! [`Delta`]: the rollup changes of a set of events, aggregated in memory, and the sketches
//! each event counts in.

use std::collections::BTreeSet;

// foldhash (randomly seeded per map) rather than SipHash: merging deltas was 9 % of the
// writer's CPU, and a delta holds at most one group commit's keys (writer::MAX_GROUP_EVENTS),
// which bounds what colliding client-chosen names could cost.
use foldhash::{HashMap, HashSet};

use optel_wire::{Batch, Event, EventType};

use super::{
    BreakdownKey, CountKey, Extras, MeasureKey, PhaseKey, PhaseSum, SketchKind,
    attribute_sketch_value, day_of, duration_bucket, outcome_code, value_bucket,
};

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
    /// version that release health reads ([`VersionHistRow`](super::VersionHistRow)).
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
    /// [`install_hash`](super::install_hash) of the pseudonym.
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
    ///
    /// [`install_hash`]: super::install_hash
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
    use crate::rollup::{DAY_MS, OTHER_VALUE, install_hash};
    use optel_wire::AttributeValue;
    use optel_wire::catalog::{AttributeKind, Catalog};

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
}
