//! What a public view may count, so that no number it shows can be subtracted from another to
//! reveal a group of fewer than k installs.
//!
//! Suppressing small rows alone is not enough: with 5 installs on version 1.0 and one on 9.9.9,
//! a total of 6 installs beside a version table that shows 5 (and one row hidden) gives the
//! hidden group away. A public view therefore counts only its **population**: the events and
//! installs that lie in shown groups of every dimension at once:
//! - its tool version and its platform are each used by at least k installs of the population;
//! - its UTC day has at least k installs of the population;
//! - its own cell is shown: a command (and, for a failure, its command and error code), feature
//!   or method used by at least k installs of the population. Custom events are never listed in
//!   public, so they are never counted there either.
//!
//! The population's installs are found as a fixed point (a version can fall under k once the
//! installs of a hidden platform or day are taken out, which can hide a day, …; the sets only
//! shrink, so this ends). Totals, series and every row then sum over the same events, so each
//! total equals the sum of the rows shown, and adding one install's events to a hidden group
//! changes no number on any public view (`tests/collector.rs`,
//! `public_views_resist_subtraction`).
//!
//! Install counts are exact while every sketch involved is (up to
//! [`crate::rollup::SPARSE_MAX`] installs a cell); past that the sketches are HyperLogLogs,
//! which cannot be intersected: counts then fall back to the whole sketch, whose ±3 % error is
//! larger than k at that size.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use crate::rollup::{CountRow, DayRange, HistRow, InstallSketch, SketchKind, SketchRow};
use crate::storage::{Project, Result as StoreResult, Store};

use super::Audience;

/// Every sketch kind a population is built from.
const KINDS: [SketchKind; 7] = [
    SketchKind::All,
    SketchKind::Version,
    SketchKind::Platform,
    SketchKind::Command,
    SketchKind::Error,
    SketchKind::Feature,
    SketchKind::Method,
];

/// What a view may count: everything for the admin, the population for the public.
#[derive(Debug)]
pub(super) enum Population {
    /// The admin sees every event and install.
    Everything,
    /// A public view's population (see the module docs).
    Public(Box<Public>),
}

/// The shown groups of a public view and its installs.
#[derive(Debug, Default)]
pub(super) struct Public {
    days: BTreeSet<i64>,
    shown: HashMap<SketchKind, HashSet<String>>,
    /// How many values of each kind the range holds.
    seen: HashMap<SketchKind, usize>,
    /// Per UTC day, its installs (every event).
    all_by_day: BTreeMap<i64, InstallSketch>,
    /// The population's install hashes, when every sketch is exact.
    installs: Option<BTreeSet<u64>>,
}

/// Merged sketches of each (kind, value) over the range.
type ByValue = HashMap<SketchKind, HashMap<String, InstallSketch>>;

fn exact(s: &InstallSketch) -> Option<&BTreeSet<u64>> {
    match s {
        InstallSketch::Sparse(set) => Some(set),
        InstallSketch::Dense(_) => None,
    }
}

impl Population {
    /// The population of `audience` over `days` of `project`.
    ///
    /// # Errors
    /// Database errors.
    pub(super) fn of<S: Store + ?Sized>(
        store: &S,
        project: &Project,
        days: DayRange,
        audience: Audience,
    ) -> StoreResult<Self> {
        let Audience::Public { k } = audience else {
            return Ok(Self::Everything);
        };
        let rows = store.installs(project.id, days, &KINDS)?;
        Ok(Self::Public(Box::new(Public::build(&rows, k))))
    }

    /// The count rows of `days` this view may count: every row (summed over the range) for the
    /// admin; for the public, the rows of its population, one per day.
    ///
    /// # Errors
    /// Database errors.
    pub(super) fn counts<S: Store + ?Sized>(
        &self,
        store: &S,
        project: &Project,
        days: DayRange,
    ) -> StoreResult<Vec<CountRow>> {
        match self {
            Self::Everything => store.counts_total(project.id, days),
            Self::Public(p) => Ok(store
                .counts(project.id, days)?
                .into_iter()
                .filter(|r| p.keeps(r))
                .collect()),
        }
    }

    /// Whether a duration histogram row may be counted.
    pub(super) fn keeps_duration(&self, h: &HistRow) -> bool {
        match self {
            Self::Everything => true,
            Self::Public(p) => p.days.contains(&h.day) && p.is_shown(SketchKind::Command, &h.name),
        }
    }

    /// How many values of `kind` a public view hides (`suppressed_rows`); `None` for the admin.
    /// The rows themselves never reach the view: their events are not in the population.
    pub(super) fn hidden(&self, kinds: &[SketchKind]) -> Option<u64> {
        match self {
            Self::Everything => None,
            Self::Public(p) => Some(
                kinds
                    .iter()
                    .map(|k| (p.seen.get(k).copied().unwrap_or(0) - p.shown_len(*k)) as u64)
                    .sum(),
            ),
        }
    }

    /// Whether this view may count what happened on UTC day `day`.
    pub(super) fn keeps_day(&self, day: i64) -> bool {
        match self {
            Self::Everything => true,
            Self::Public(p) => p.days.contains(&day),
        }
    }

    /// The installs of `sketch` that this view may count.
    pub(super) fn installs(&self, sketch: &InstallSketch) -> u64 {
        match self {
            Self::Everything => sketch.count(),
            Self::Public(p) => p.count(sketch),
        }
    }

    /// The installs active on the days of `days` that this view may count (all of them for
    /// the admin: `all` must then hold those days' sketches of every event).
    pub(super) fn active(&self, all: &[SketchRow], days: impl Fn(i64) -> bool) -> u64 {
        match self {
            Self::Everything => {
                let mut s = InstallSketch::default();
                for r in all.iter().filter(|r| days(r.day)) {
                    s.merge(&r.sketch);
                }
                s.count()
            }
            Self::Public(p) => {
                let mut s = InstallSketch::default();
                let mut any = false;
                for (_, day) in p
                    .all_by_day
                    .iter()
                    .filter(|&(&d, _)| days(d) && p.days.contains(&d))
                {
                    s.merge(day);
                    any = true;
                }
                if any { p.count(&s) } else { 0 }
            }
        }
    }
}

impl Public {
    fn build(rows: &[SketchRow], k: u64) -> Self {
        let mut by_value: ByValue = HashMap::new();
        let mut all_by_day: BTreeMap<i64, InstallSketch> = BTreeMap::new();
        for r in rows {
            if r.kind == SketchKind::All {
                all_by_day.entry(r.day).or_default().merge(&r.sketch);
            } else {
                by_value
                    .entry(r.kind)
                    .or_default()
                    .entry(r.value.clone())
                    .or_default()
                    .merge(&r.sketch);
            }
        }
        let all_exact = rows.iter().all(|r| exact(&r.sketch).is_some());
        let seen = by_value.iter().map(|(k, m)| (*k, m.len())).collect();
        let mut p = Self {
            seen,
            days: all_by_day.keys().copied().collect(),
            shown: HashMap::new(),
            all_by_day,
            installs: None,
        };
        let values = |kind: SketchKind| -> HashSet<String> {
            by_value
                .get(&kind)
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default()
        };
        p.shown
            .insert(SketchKind::Version, values(SketchKind::Version));
        p.shown
            .insert(SketchKind::Platform, values(SketchKind::Platform));
        // The fixed point over versions, platforms and days; without exact sketches, one pass
        // with whole-sketch counts.
        loop {
            if all_exact {
                p.installs = Some(p.population_set(&by_value));
            }
            let before = (
                p.days.len(),
                p.shown_len(SketchKind::Version),
                p.shown_len(SketchKind::Platform),
            );
            for kind in [SketchKind::Version, SketchKind::Platform] {
                let kept: HashSet<String> = p.shown[&kind]
                    .iter()
                    .filter(|v| {
                        by_value
                            .get(&kind)
                            .and_then(|m| m.get(*v))
                            .is_some_and(|s| p.count(s) >= k)
                    })
                    .cloned()
                    .collect();
                p.shown.insert(kind, kept);
            }
            let days: BTreeSet<i64> = p
                .days
                .iter()
                .copied()
                .filter(|d| p.all_by_day.get(d).is_some_and(|s| p.count(s) >= k))
                .collect();
            p.days = days;
            let after = (
                p.days.len(),
                p.shown_len(SketchKind::Version),
                p.shown_len(SketchKind::Platform),
            );
            if after == before || !all_exact {
                break;
            }
        }
        if all_exact {
            p.installs = Some(p.population_set(&by_value));
        }
        for kind in [
            SketchKind::Command,
            SketchKind::Error,
            SketchKind::Feature,
            SketchKind::Method,
        ] {
            let kept = by_value
                .get(&kind)
                .map(|m| {
                    m.iter()
                        .filter(|(_, s)| p.count(s) >= k)
                        .map(|(v, _)| v.clone())
                        .collect()
                })
                .unwrap_or_default();
            p.shown.insert(kind, kept);
        }
        p
    }

    fn shown_len(&self, kind: SketchKind) -> usize {
        self.shown.get(&kind).map_or(0, HashSet::len)
    }

    fn is_shown(&self, kind: SketchKind, value: &str) -> bool {
        self.shown.get(&kind).is_some_and(|s| s.contains(value))
    }

    /// The installs in a shown version, a shown platform and a shown day at once.
    fn population_set(&self, by_value: &ByValue) -> BTreeSet<u64> {
        let union = |kind: SketchKind| -> BTreeSet<u64> {
            let mut out = BTreeSet::new();
            if let Some(m) = by_value.get(&kind) {
                for (v, s) in m {
                    if self.is_shown(kind, v) {
                        out.extend(exact(s).into_iter().flatten().copied());
                    }
                }
            }
            out
        };
        let mut on_days = BTreeSet::new();
        for d in &self.days {
            if let Some(s) = self.all_by_day.get(d) {
                on_days.extend(exact(s).into_iter().flatten().copied());
            }
        }
        let versions = union(SketchKind::Version);
        let platforms = union(SketchKind::Platform);
        versions
            .intersection(&platforms)
            .filter(|h| on_days.contains(h))
            .copied()
            .collect()
    }

    /// The installs of `sketch` in the population (the whole sketch when it is not exact).
    fn count(&self, sketch: &InstallSketch) -> u64 {
        match (&self.installs, exact(sketch)) {
            (Some(pop), Some(set)) => set.intersection(pop).count() as u64,
            _ => sketch.count(),
        }
    }

    fn keeps(&self, r: &CountRow) -> bool {
        let key = &r.key;
        if !self.days.contains(&key.day)
            || !self.is_shown(SketchKind::Version, &key.version)
            || !self.is_shown(SketchKind::Platform, &format!("{} {}", key.os, key.arch))
        {
            return false;
        }
        match key.event_type.as_str() {
            "command" => {
                self.is_shown(SketchKind::Command, &key.name)
                    && (key.outcome != 0
                        || self.is_shown(
                            SketchKind::Error,
                            &format!("{} {}", key.name, key.error_code),
                        ))
            }
            "feature" => self.is_shown(SketchKind::Feature, &key.name),
            "method" => self.is_shown(SketchKind::Method, &key.name),
            _ => false,
        }
    }
}
