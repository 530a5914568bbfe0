//! The views of schema version 2 analytics, admin only: breakdowns by declared attributes,
//! phase durations, measurements, adoption series and the catalog. Each reads rollups summed
//! over the range by the database, so its time depends on the distinct keys, not on events.
//! They are not public views: none of them goes through the public population
//! (`super::public`), so the public routes answer 404 for them.

use std::collections::{BTreeMap, HashMap};

use optel_wire::Timestamp;

use super::{
    Adoption, AdoptionRow, BreakdownRow, BreakdownValue, Breakdowns, CatalogAnswer, CatalogVersion,
    DailyRow, MAX_ROWS, MeasurementRow, MeasurementVersionRow, Measurements, PhaseRow,
    PhaseVersionRow, Phases, TimeRange, day_string,
};
use crate::rollup::{
    BucketCounts, DayRange, InstallSketch, MAX_DIMENSION_VALUES, OTHER_VALUE, SketchKind,
    attribute_sketch_value, value_quantile,
};
use crate::storage::{Project, Result as StoreResult, Store};

fn u(n: i64) -> u64 {
    n.max(0) as u64
}

/// Count, p50, p95 and p99 of a [`crate::rollup::value_bucket`] histogram.
fn summary(hist: &[(i64, i64)]) -> (u64, f64, f64, f64) {
    (
        u(hist.iter().map(|&(_, c)| c).sum()),
        value_quantile(hist, 0.5),
        value_quantile(hist, 0.95),
        value_quantile(hist, 0.99),
    )
}

/// Sort rank of an event type: commands, features, methods, custom events.
fn type_rank(event_type: &str) -> u8 {
    match event_type {
        "command" => 0,
        "feature" => 1,
        "method" => 2,
        _ => 3,
    }
}

/// `/breakdowns`: each event by each declared dimension attribute, values most frequent
/// first. Values beyond [`MAX_DIMENSION_VALUES`] (possible across catalog versions) are folded
/// into `other` here as at ingest.
///
/// # Errors
/// Database errors.
pub fn breakdowns<S: Store + ?Sized>(
    store: &S,
    project: &Project,
    range: TimeRange,
) -> StoreResult<Breakdowns> {
    let days = DayRange::covering(range.since_ms, range.until_ms);
    let rows = store.breakdowns(project.id, days)?;
    let mut sketches: HashMap<String, InstallSketch> = HashMap::new();
    for r in store.installs(project.id, days, &[SketchKind::Attribute])? {
        sketches.entry(r.value).or_default().merge(&r.sketch);
    }
    type Key = (u8, String, String, String);
    let mut grouped: BTreeMap<Key, Vec<(String, i64, i64)>> = BTreeMap::new();
    for r in rows.into_iter().filter(|r| r.count > 0) {
        grouped
            .entry((type_rank(&r.event_type), r.event_type, r.name, r.attribute))
            .or_default()
            .push((r.value, r.count, r.failures));
    }
    let mut out = Vec::with_capacity(grouped.len());
    for ((_, event_type, name, attribute), mut values) in grouped {
        values.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let sketch_of = |value: &str| {
            sketches.get(&attribute_sketch_value(
                &event_type,
                &name,
                &attribute,
                value,
            ))
        };
        let mut shown: Vec<BreakdownValue> = Vec::new();
        let mut other: Option<(i64, i64, InstallSketch)> = None;
        let named = values.iter().filter(|v| v.0 != OTHER_VALUE).count();
        let keep = if named > MAX_DIMENSION_VALUES {
            MAX_DIMENSION_VALUES
        } else {
            named
        };
        let mut kept = 0;
        for (value, count, failures) in values {
            if value != OTHER_VALUE && kept < keep {
                kept += 1;
                shown.push(BreakdownValue {
                    installs: sketch_of(&value).map_or(0, InstallSketch::count),
                    value,
                    count: u(count),
                    failures: u(failures),
                });
                continue;
            }
            let slot = other.get_or_insert_with(|| (0, 0, InstallSketch::default()));
            slot.0 += count;
            slot.1 += failures;
            if let Some(s) = sketch_of(&value) {
                slot.2.merge(s);
            }
        }
        if let Some((count, failures, sketch)) = other {
            shown.push(BreakdownValue {
                value: OTHER_VALUE.to_owned(),
                count: u(count),
                failures: u(failures),
                installs: sketch.count(),
            });
            shown.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.value.cmp(&b.value)));
        }
        out.push(BreakdownRow {
            command: (event_type == "command").then(|| name.clone()),
            event_type,
            name,
            attribute,
            values: shown,
        });
    }
    Ok(Breakdowns { breakdowns: out })
}

/// `/phases`: duration percentiles and mean start per command, phase and parent phase, over
/// every version and per version, in waterfall order ([`Phases`]).
///
/// # Errors
/// Database errors.
pub fn phases<S: Store + ?Sized>(
    store: &S,
    project: &Project,
    range: TimeRange,
) -> StoreResult<Phases> {
    let days = DayRange::covering(range.since_ms, range.until_ms);
    // (command, phase, parent) → version → (durations, summed starts in ms).
    type ByVersion = BTreeMap<String, (BucketCounts, i64)>;
    let mut grouped: BTreeMap<(String, String, String), ByVersion> = BTreeMap::new();
    for h in store.phases(project.id, days)? {
        let slot = grouped
            .entry((h.command, h.phase, h.parent))
            .or_default()
            .entry(h.version)
            .or_default();
        slot.0.merge(&h.hist);
        slot.1 = h.start_ms_sum.saturating_add(slot.1);
    }
    let mut by_command: BTreeMap<String, Vec<PhaseRow>> = BTreeMap::new();
    for ((command, phase, parent), by_version) in grouped {
        let mut all = BucketCounts::new();
        let mut start_sum: i64 = 0;
        for (hist, starts) in by_version.values() {
            all.merge(hist);
            start_sum = starts.saturating_add(start_sum);
        }
        let count = u(all.total());
        if count == 0 {
            continue;
        }
        let versions = by_version
            .into_iter()
            .rev()
            .filter_map(|(version, (hist, _))| {
                let count = u(hist.total());
                (count > 0).then(|| PhaseVersionRow {
                    version,
                    count,
                    p50_ms: hist.quantile(0.5),
                    p95_ms: hist.quantile(0.95),
                    p99_ms: hist.quantile(0.99),
                })
            })
            .collect();
        by_command
            .entry(command.clone())
            .or_default()
            .push(PhaseRow {
                command,
                phase,
                parent,
                depth: 0,
                mean_start_ms: (start_sum as f64 / count as f64).max(0.0),
                count,
                p50_ms: all.quantile(0.5),
                p95_ms: all.quantile(0.95),
                p99_ms: all.quantile(0.99),
                versions,
            });
    }
    Ok(Phases {
        phases: by_command.into_values().flat_map(waterfall).collect(),
    })
}

/// One command's phase rows in waterfall order, with their depths: depth first from the
/// top-level phases, children after their parent, siblings by mean start, then name, then
/// parent. Names are all a row knows of its parent, so the phases nested in `x` follow the
/// first row of `x` reached; a row whose parent has no row, or that only a cycle of names
/// (`a` in `b` in one event, `b` in `a` in another) reaches, starts a tree of its own.
fn waterfall(mut rows: Vec<PhaseRow>) -> Vec<PhaseRow> {
    rows.sort_by(|a, b| {
        a.mean_start_ms
            .total_cmp(&b.mean_start_ms)
            .then_with(|| a.phase.cmp(&b.phase))
            .then_with(|| a.parent.cmp(&b.parent))
    });
    let mut children: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, r) in rows.iter().enumerate() {
        children.entry(r.parent.as_str()).or_default().push(i);
    }
    let named: std::collections::HashSet<&str> = rows.iter().map(|r| r.phase.as_str()).collect();
    let roots = rows
        .iter()
        .enumerate()
        .filter(|(_, r)| r.parent.is_empty() || !named.contains(r.parent.as_str()))
        .map(|(i, _)| i)
        .chain(0..rows.len());
    let mut order: Vec<(usize, u32)> = Vec::with_capacity(rows.len());
    let mut placed = vec![false; rows.len()];
    let mut expanded: std::collections::HashSet<&str> = std::collections::HashSet::new();
    // An explicit stack: a chain of nested names may be as long as the rows.
    let mut stack: Vec<(usize, u32)> = Vec::new();
    for root in roots {
        stack.push((root, 0));
        while let Some((i, depth)) = stack.pop() {
            if placed[i] {
                continue;
            }
            placed[i] = true;
            order.push((i, depth));
            let name = rows[i].phase.as_str();
            if expanded.insert(name)
                && let Some(kids) = children.get(name)
            {
                stack.extend(kids.iter().rev().map(|&k| (k, depth + 1)));
            }
        }
    }
    let mut slots: Vec<Option<PhaseRow>> = rows.into_iter().map(Some).collect();
    order
        .into_iter()
        .filter_map(|(i, depth)| {
            let mut r = slots.get_mut(i)?.take()?;
            r.depth = depth;
            Some(r)
        })
        .collect()
}

/// `/measurements`: count, sum and percentiles per measurement, over every version and per
/// version, with the unit its latest catalog declares.
///
/// # Errors
/// Database errors.
pub fn measurements<S: Store + ?Sized>(
    store: &S,
    project: &Project,
    range: TimeRange,
) -> StoreResult<Measurements> {
    let days = DayRange::covering(range.since_ms, range.until_ms);
    type Hist = (Vec<(i64, i64)>, f64);
    let mut grouped: BTreeMap<String, BTreeMap<String, Hist>> = BTreeMap::new();
    for h in store.measurements(project.id, days)? {
        let slot = grouped
            .entry(h.name)
            .or_default()
            .entry(h.version)
            .or_default();
        slot.0.push((h.bucket, h.count));
        slot.1 += h.sum;
    }
    if grouped.is_empty() {
        return Ok(Measurements {
            measurements: Vec::new(),
        });
    }
    let catalogs = store.catalogs(project.id)?;
    let mut out = Vec::with_capacity(grouped.len());
    for (name, by_version) in grouped {
        let all: Vec<(i64, i64)> = by_version.values().flat_map(|h| h.0.clone()).collect();
        let (count, p50, p95, _) = summary(&all);
        if count == 0 {
            continue;
        }
        let versions: Vec<MeasurementVersionRow> = by_version
            .into_iter()
            .rev()
            .map(|(version, (hist, sum))| {
                let (count, p50, p95, _) = summary(&hist);
                MeasurementVersionRow {
                    version,
                    count,
                    sum,
                    p50,
                    p95,
                }
            })
            .filter(|v| v.count > 0)
            .collect();
        out.push(MeasurementRow {
            unit: catalogs
                .iter()
                .find_map(|c| c.catalog.measurement(&name).map(|m| m.unit)),
            name,
            count,
            sum: versions.iter().map(|v| v.sum).sum(),
            p50,
            p95,
            versions,
        });
    }
    Ok(Measurements { measurements: out })
}

/// `/adoption`: per feature, method and custom event, its events and installs on every UTC day
/// of the range (from the daily count rollups and the daily install sketches).
///
/// # Errors
/// Database errors.
pub fn adoption<S: Store + ?Sized>(
    store: &S,
    project: &Project,
    range: TimeRange,
) -> StoreResult<Adoption> {
    let days = DayRange::covering(range.since_ms, range.until_ms);
    let kinds = [
        ("feature", SketchKind::Feature),
        ("method", SketchKind::Method),
        ("custom", SketchKind::Custom),
    ];
    let mut counts: HashMap<(&str, String), BTreeMap<i64, i64>> = HashMap::new();
    for r in store.counts(project.id, days)? {
        let Some(&(t, _)) = kinds.iter().find(|(t, _)| *t == r.key.event_type) else {
            continue;
        };
        *counts
            .entry((t, r.key.name))
            .or_default()
            .entry(r.key.day)
            .or_default() += r.count;
    }
    let sketches = store.installs(project.id, days, &kinds.map(|(_, k)| k))?;
    let mut per_day: HashMap<(SketchKind, &str, i64), &InstallSketch> = HashMap::new();
    let mut whole: HashMap<(SketchKind, &str), InstallSketch> = HashMap::new();
    for r in &sketches {
        per_day.insert((r.kind, r.value.as_str(), r.day), &r.sketch);
        whole
            .entry((r.kind, r.value.as_str()))
            .or_default()
            .merge(&r.sketch);
    }
    let mut series = Vec::new();
    for (t, kind) in kinds {
        let mut rows: Vec<AdoptionRow> = counts
            .iter()
            .filter(|((ct, _), _)| *ct == t)
            .filter_map(|((_, name), by_day)| {
                let count: i64 = by_day.values().sum();
                (count > 0).then(|| AdoptionRow {
                    event_type: t.to_owned(),
                    name: name.clone(),
                    count: u(count),
                    installs: whole
                        .get(&(kind, name.as_str()))
                        .map_or(0, InstallSketch::count),
                    daily: (days.first..=days.last)
                        .map(|day| DailyRow {
                            day: day_string(day),
                            count: u(by_day.get(&day).copied().unwrap_or(0)),
                            installs: per_day
                                .get(&(kind, name.as_str(), day))
                                .map_or(0, |s| s.count()),
                        })
                        .collect(),
                })
            })
            .collect();
        rows.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.name.cmp(&b.name)));
        rows.truncate(MAX_ROWS);
        series.extend(rows);
    }
    Ok(Adoption { series })
}

/// `/catalog`: the catalog version seen last, and every stored version.
///
/// # Errors
/// Database errors.
pub fn catalog<S: Store + ?Sized>(store: &S, project: &Project) -> StoreResult<CatalogAnswer> {
    let stored = store.catalogs(project.id)?;
    Ok(CatalogAnswer {
        latest: stored.first().map(|c| c.catalog.clone()),
        versions: stored
            .into_iter()
            .map(|c| CatalogVersion {
                hash: c.hash,
                first_seen: Timestamp::from_unix_ms(c.first_seen_ms),
                last_seen: Timestamp::from_unix_ms(c.last_seen_ms),
            })
            .collect(),
    })
}
