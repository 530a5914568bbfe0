//! The views of the query API, each computed from the rollups of a time range.

use std::collections::{BTreeMap, HashMap};

use optel_wire::Timestamp;

use super::public::Population;
use super::{
    Audience, CommandRow, Commands, ErrorRow, Errors, Features, Granularity, Listed, MAX_ROWS,
    NamedRow, Overview, PlatformRow, Platforms, SeriesBucket, Stats, TimeRange, Timeseries,
    VersionBucket, VersionRow, Versions, day_string,
};
use crate::rollup::{CountRow, DayRange, InstallSketch, SketchKind, SketchRow, percentile};
use crate::storage::{Project, Result as StoreResult, Store};

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

/// Installs per value of `kind` that `pop` may count.
fn installs_by_value(
    rows: &[SketchRow],
    kind: SketchKind,
    pop: &Population,
) -> HashMap<String, u64> {
    merge_by(rows, |r| (r.kind == kind).then(|| r.value.clone()))
        .into_iter()
        .map(|(k, s)| (k, pop.installs(&s)))
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
        dp: None,
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
    let pop = Population::of(store, project, days, audience)?;
    let counts = pop.counts(store, project, days)?;
    let last = days.last;
    let wide = DayRange {
        first: days.first.min(last - 29),
        last,
    };
    // The public population knows the range's days only (see `public`).
    let sketches = match pop {
        Population::Everything => store.installs(project.id, wide, &[SketchKind::All])?,
        Population::Public(_) => Vec::new(),
    };
    let distinct = |first: i64| pop.active(&sketches, |d| d >= first && d <= last);
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
        dp: None,
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
    let pop = Population::of(store, project, days, audience)?;
    let totals = match pop {
        Population::Everything => store.day_totals(project.id, days)?,
        Population::Public(_) => crate::rollup::day_totals(&pop.counts(store, project, days)?),
    };
    let mut sums: HashMap<i64, (i64, i64, i64)> = HashMap::new();
    for (day, e, i, f) in totals {
        let s = sums.entry(granularity.bucket_start(day)).or_default();
        s.0 += e;
        s.1 += i;
        s.2 += f;
    }
    let sketches = match pop {
        Population::Everything => store.installs(project.id, days, &[SketchKind::All])?,
        Population::Public(_) => Vec::new(),
    };
    let installs = merge_by(&sketches, |r| Some(granularity.bucket_start(r.day)));
    let buckets = granularity
        .buckets(days)
        .into_iter()
        .map(|start| {
            let (e, i, f) = sums.get(&start).copied().unwrap_or_default();
            let active = match pop {
                Population::Everything => installs.get(&start).map_or(0, InstallSketch::count),
                Population::Public(_) => pop.active(&[], |d| granularity.bucket_start(d) == start),
            };
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
        dp: None,
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
    let pop = Population::of(store, project, days, audience)?;
    let counts = pop.counts(store, project, days)?;
    let hist = store.durations(project.id, days)?;
    let installs = installs_by_value(
        &store.installs(project.id, days, &[SketchKind::Command])?,
        SketchKind::Command,
        &pop,
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
    for h in hist.iter().filter(|h| pop.keeps_duration(h)) {
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
    let suppressed = pop.hidden(&[SketchKind::Command]).or(suppressed);
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
    let pop = Population::of(store, project, days, audience)?;
    let counts = pop.counts(store, project, days)?;
    let installs = installs_by_value(
        &store.installs(project.id, days, &[SketchKind::Error])?,
        SketchKind::Error,
        &pop,
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
    let suppressed = pop.hidden(&[SketchKind::Error]).or(suppressed);
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
    let pop = Population::of(store, project, days, audience)?;
    let counts = pop.counts(store, project, days)?;
    let sketches = store.installs(project.id, days, &[SketchKind::Version])?;
    let installs = installs_by_value(&sketches, SketchKind::Version, &pop);
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
    let suppressed = pop.hidden(&[SketchKind::Version]).or(suppressed);
    rows.truncate(MAX_ROWS);
    let per_bucket = merge_by(&sketches, |r| {
        pop.keeps_day(r.day)
            .then(|| (granularity.bucket_start(r.day), r.value.clone()))
    });
    let mut buckets = Vec::new();
    for start in granularity.buckets(days) {
        for v in &rows {
            let n = per_bucket
                .get(&(start, v.version.clone()))
                .map_or(0, |s| pop.installs(s));
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
    let pop = Population::of(store, project, days, audience)?;
    let counts = pop.counts(store, project, days)?;
    let installs = installs_by_value(
        &store.installs(project.id, days, &[SketchKind::Platform])?,
        SketchKind::Platform,
        &pop,
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
    let suppressed = pop.hidden(&[SketchKind::Platform]).or(suppressed);
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
    let pop = Population::of(store, project, days, audience)?;
    let counts = pop.counts(store, project, days)?;
    let sketches = store.installs(project.id, days, &[SketchKind::Feature, SketchKind::Method])?;
    let named = |event_type: &str, kind: SketchKind| {
        let installs = installs_by_value(&sketches, kind, &pop);
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
                daily: Vec::new(),
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
    let suppressed = pop
        .hidden(&[SketchKind::Feature, SketchKind::Method])
        .or(suppressed);
    Ok(listed(Features { features, methods }, suppressed, audience))
}

/// The [`Stats`] object (`/stats`, `optel stats`), from the rollups.
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
    let mut feats = features(store, project, range, Audience::Admin)?.rows;
    let series = super::adoption(store, project, range)?.series;
    for (event_type, rows) in [
        ("feature", &mut feats.features),
        ("method", &mut feats.methods),
    ] {
        for row in rows.iter_mut() {
            if let Some(s) = series
                .iter()
                .find(|s| s.event_type == event_type && s.name == row.name)
            {
                row.daily = s.daily.clone();
            }
        }
    }
    Ok(Stats {
        project: project.name.clone(),
        since: ov.from,
        until: ov.to,
        events: ov.events.unwrap_or(0),
        active_installs: ov.active_installs.unwrap_or(0),
        commands: cmds,
        error_codes: errs.into_iter().take(50).collect(),
        versions: vers,
        platforms: plats,
        features: feats.features,
        methods: feats.methods,
        release_health: Some(super::health::release_health(
            store, project, range, None, None,
        )?),
        phases: super::phases(store, project, range)?.phases,
        breakdowns: super::breakdowns(store, project, range)?.breakdowns,
        measurements: super::measurements(store, project, range)?.measurements,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollup::DAY_MS;

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
}
