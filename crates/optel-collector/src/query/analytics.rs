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
    DayRange, InstallSketch, MAX_DIMENSION_VALUES, OTHER_VALUE, SketchKind, attribute_sketch_value,
    value_quantile,
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

/// `/phases`: duration percentiles per command and phase, over every version and per version.
///
/// # Errors
/// Database errors.
pub fn phases<S: Store + ?Sized>(
    store: &S,
    project: &Project,
    range: TimeRange,
) -> StoreResult<Phases> {
    let days = DayRange::covering(range.since_ms, range.until_ms);
    type Hist = Vec<(i64, i64)>;
    let mut grouped: BTreeMap<(String, String), BTreeMap<String, Hist>> = BTreeMap::new();
    for h in store.phases(project.id, days)? {
        grouped
            .entry((h.command, h.phase))
            .or_default()
            .entry(h.version)
            .or_default()
            .push((h.bucket, h.count));
    }
    let mut out = Vec::with_capacity(grouped.len());
    for ((command, phase), by_version) in grouped {
        let all: Hist = by_version.values().flatten().copied().collect();
        let (count, p50_ms, p95_ms, p99_ms) = summary(&all);
        if count == 0 {
            continue;
        }
        let versions = by_version
            .into_iter()
            .rev()
            .map(|(version, hist)| {
                let (count, p50_ms, p95_ms, p99_ms) = summary(&hist);
                PhaseVersionRow {
                    version,
                    count,
                    p50_ms,
                    p95_ms,
                    p99_ms,
                }
            })
            .filter(|v| v.count > 0)
            .collect();
        out.push(PhaseRow {
            command,
            phase,
            count,
            p50_ms,
            p95_ms,
            p99_ms,
            versions,
        });
    }
    Ok(Phases { phases: out })
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
