//! The report: everything `optel stats` shows, fetched from a [`Source`], as tables, JSON or
//! CSV.

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::time::Duration;

use anyhow::{Result, bail};
use optel_collector::query::{Change, Overview, ReleaseHealth, SeriesBucket, Stats, Timeseries};
use serde::Serialize;

use super::source::Source;
use super::terminal::{Cell, Paint, Style, table, terminal_width, use_color};
use super::text::{csv_cell, fit, group, human_ms, percent, share, sparkline, wrap_parts};

/// Everything `optel stats` shows: the stats object plus what newer routes add.
#[derive(Debug, Clone)]
pub(crate) struct Report {
    stats: Stats,
    since: Duration,
    /// From `/overview`; `None` when the collector does not have the route.
    overview: Option<Overview>,
    /// The buckets of `/timeseries`, one a day (or a week over long ranges).
    daily: Vec<SeriesBucket>,
}

/// The object `optel stats --format json` prints. Its field names are what scripts read: those
/// of the `/stats` answer ([`Stats`], each command with its `failure_rate`, `p50_ms` and
/// `p95_ms`), the totals `invocations` and `failures`, `dau`/`wau`/`mau` when `/overview` gave
/// all three, and the `daily` buckets of `/timeseries`.
#[derive(Debug, Serialize)]
pub(super) struct JsonReport<'a> {
    #[serde(flatten)]
    stats: &'a Stats,
    invocations: u64,
    failures: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    dau: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    wau: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mau: Option<u64>,
    daily: &'a [SeriesBucket],
}

impl Report {
    pub(crate) fn fetch(source: &Source, project: &str, since: Duration) -> Result<Self> {
        let p = encode_segment(project);
        let q = format!("since={}s", since.as_secs().max(1));
        let path = format!("/v1/projects/{p}/stats?{q}");
        let answer = source.get(&path)?;
        if answer.status == 404 {
            bail!(
                "{} has no project named {project:?}: list them with `optel projects list`",
                source.describe()
            );
        }
        let stats: Stats = source.read(&path, answer)?;

        let overview = source.get_optional(&format!("/v1/projects/{p}/overview?{q}"))?;
        let granularity = if since > Duration::from_secs(120 * 86_400) {
            "week"
        } else {
            "day"
        };
        let daily = source
            .get_optional::<Timeseries>(&format!(
                "/v1/projects/{p}/timeseries?{q}&granularity={granularity}"
            ))?
            .map_or_else(Vec::new, |series| series.buckets);
        Ok(Self {
            stats,
            since,
            overview,
            daily,
        })
    }

    /// The p50 and p95 duration of `command` in ms, when the collector gave them.
    fn latency_of(&self, command: &str) -> (Option<u64>, Option<u64>) {
        self.stats
            .commands
            .iter()
            .find(|c| c.name == command)
            .map_or((None, None), |c| (Some(c.p50_ms), Some(c.p95_ms)))
    }

    /// Whether there is any latency to show (any command).
    fn has_latency(&self) -> bool {
        !self.stats.commands.is_empty()
    }

    /// `(dau, wau, mau)`, when `/overview` gave all three.
    fn active(&self) -> Option<(u64, u64, u64)> {
        let o = self.overview.as_ref()?;
        Some((o.dau?, o.wau?, o.mau?))
    }

    fn invocations(&self) -> u64 {
        self.stats.commands.iter().map(|c| c.count).sum()
    }

    fn failures(&self) -> u64 {
        self.stats.commands.iter().map(|c| c.failures).sum()
    }

    /// The object of `--format json`: the stats object, with what newer routes add.
    pub(super) fn to_json(&self) -> JsonReport<'_> {
        let active = self.active();
        JsonReport {
            stats: &self.stats,
            invocations: self.invocations(),
            failures: self.failures(),
            dau: active.map(|(dau, _, _)| dau),
            wau: active.map(|(_, wau, _)| wau),
            mau: active.map(|(_, _, mau)| mau),
            daily: &self.daily,
        }
    }

    /// The CSV of `--format csv`: one table in long form, one row per thing counted, so a script
    /// can filter on `kind` (`command`, `error`, `version`, `platform`, `feature`, `method`,
    /// `phase` (detail: the phase), `breakdown` (name: `event attribute`, detail: the value),
    /// `measurement` (detail: the unit; p50/p95 are values in it), `day`). Empty cells are
    /// values that do not apply.
    pub(super) fn to_csv(&self) -> String {
        let mut out =
            String::from("kind,name,detail,count,failures,installs,events,p50_ms,p95_ms\r\n");
        let o = |v: Option<u64>| v.map(|n| n.to_string()).unwrap_or_default();
        let mut row = |cells: [String; 9]| {
            let line: Vec<String> = cells.iter().map(|c| csv_cell(c)).collect();
            out.push_str(&line.join(","));
            out.push_str("\r\n");
        };
        let s = &self.stats;
        for c in &s.commands {
            let (p50, p95) = self.latency_of(&c.name);
            row([
                "command".into(),
                c.name.clone(),
                String::new(),
                c.count.to_string(),
                c.failures.to_string(),
                c.installs.to_string(),
                String::new(),
                o(p50),
                o(p95),
            ]);
        }
        for e in &s.error_codes {
            row([
                "error".into(),
                e.command.clone(),
                e.error_code.clone(),
                e.count.to_string(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
            ]);
        }
        for v in &s.versions {
            row([
                "version".into(),
                v.version.clone(),
                String::new(),
                String::new(),
                String::new(),
                v.installs.to_string(),
                v.events.to_string(),
                String::new(),
                String::new(),
            ]);
        }
        for p in &s.platforms {
            row([
                "platform".into(),
                p.os.clone(),
                p.arch.clone(),
                String::new(),
                String::new(),
                p.installs.to_string(),
                p.events.to_string(),
                String::new(),
                String::new(),
            ]);
        }
        for (kind, list) in [("feature", &s.features), ("method", &s.methods)] {
            for f in list {
                row([
                    kind.into(),
                    f.name.clone(),
                    String::new(),
                    f.count.to_string(),
                    String::new(),
                    f.installs.to_string(),
                    String::new(),
                    String::new(),
                    String::new(),
                ]);
            }
        }
        for p in &s.phases {
            row([
                "phase".into(),
                p.command.clone(),
                p.phase.clone(),
                p.count.to_string(),
                String::new(),
                String::new(),
                String::new(),
                format!("{:.1}", p.p50_ms),
                format!("{:.1}", p.p95_ms),
            ]);
        }
        for b in &s.breakdowns {
            for v in &b.values {
                row([
                    "breakdown".into(),
                    format!("{} {}", b.name, b.attribute),
                    v.value.clone(),
                    v.count.to_string(),
                    v.failures.to_string(),
                    v.installs.to_string(),
                    String::new(),
                    String::new(),
                    String::new(),
                ]);
            }
        }
        for m in &s.measurements {
            row([
                "measurement".into(),
                m.name.clone(),
                m.unit.map(|u| u.as_str().to_owned()).unwrap_or_default(),
                m.count.to_string(),
                String::new(),
                String::new(),
                String::new(),
                trim_number(m.p50),
                trim_number(m.p95),
            ]);
        }
        for b in &self.daily {
            row([
                "day".into(),
                b.start.clone(),
                String::new(),
                o(b.invocations),
                o(b.failures),
                o(b.active_installs),
                o(b.events),
                String::new(),
                String::new(),
            ]);
        }
        out
    }

    /// The tables as they should look on this process's stdout.
    pub(crate) fn render_for_stdout(&self, color: clap::ColorChoice) -> String {
        let tty = std::io::stdout().is_terminal();
        self.render(&Style::new(use_color(color, tty)), terminal_width(tty))
    }

    /// The tables of `--format table`, fitted to `width` columns.
    pub(super) fn render(&self, st: &Style, width: usize) -> String {
        let s = &self.stats;
        let mut out = String::new();
        let since = short_duration(self.since);
        let range = format!("{} → {}", short_ts(&s.since), short_ts(&s.until));
        let head = format!("{} · last {since}", s.project);
        if head.chars().count() + 3 + range.chars().count() <= width {
            let _ = writeln!(
                out,
                "{} {}",
                st.bold(&s.project),
                st.dim(&format!("· last {since} · {range}"))
            );
        } else {
            let _ = writeln!(out, "{}", st.bold(&fit(&head, width)));
            let _ = writeln!(out, "{}", st.dim(&fit(&range, width)));
        }
        let invocations = self.invocations();
        let failures = self.failures();
        let mut parts = vec![
            format!("{} events", group(s.events)),
            format!("{} invocations", group(invocations)),
            format!("{} failed", percent(failures, invocations)),
            format!("{} active installs", group(s.active_installs)),
        ];
        if let Some((dau, wau, mau)) = self.active() {
            parts.push(format!("DAU {}", group(dau)));
            parts.push(format!("WAU {}", group(wau)));
            parts.push(format!("MAU {}", group(mau)));
        }
        for line in wrap_parts(&parts, " · ", width) {
            let _ = writeln!(out, "{line}");
        }
        out.push('\n');
        if s.events == 0 {
            out.push_str("no events in this range yet\n");
            return out;
        }

        if self.daily.len() > 1 {
            // "  <label, 15> <sparkline>  last NNNNNN  max NNNNNN": the figures go first when
            // the terminal is narrow, then the sparkline shrinks.
            const LABEL_W: usize = 15;
            const FIGURES_W: usize = 25;
            let avail = width.saturating_sub(LABEL_W + 3);
            let with_figures = avail >= FIGURES_W + 8;
            let spark_w = if with_figures {
                avail - FIGURES_W
            } else {
                avail
            }
            .clamp(4, 60);
            let series: [(&str, Vec<Option<u64>>); 3] = [
                (
                    "invocations",
                    self.daily.iter().map(|b| b.invocations).collect(),
                ),
                ("failures", self.daily.iter().map(|b| b.failures).collect()),
                (
                    "active installs",
                    self.daily.iter().map(|b| b.active_installs).collect(),
                ),
            ];
            let per = if self.daily.first().is_some_and(|b| b.start.len() == 10)
                && self.since > Duration::from_secs(120 * 86_400)
            {
                "week"
            } else {
                "day"
            };
            let _ = writeln!(
                out,
                "{}",
                st.dim(&fit(
                    &format!(
                        "per {per}, {} → {}",
                        self.daily.first().map_or("", |b| b.start.as_str()),
                        self.daily.last().map_or("", |b| b.start.as_str())
                    ),
                    width
                ))
            );
            for (label, values) in series {
                let line = sparkline(&values, spark_w);
                let last = values.iter().rev().flatten().next().copied().unwrap_or(0);
                let max = values.iter().flatten().copied().max().unwrap_or(0);
                let _ = write!(out, "  {label:<LABEL_W$} {}", st.spark(&line));
                if with_figures {
                    let _ = write!(out, "  last {:>6}  max {:>6}", group(last), group(max));
                }
                out.push('\n');
            }
            out.push('\n');
        }

        let has_latency = self.has_latency();
        let mut rows: Vec<Vec<Cell>> = Vec::new();
        for c in &s.commands {
            let rate = if c.count == 0 {
                0.0
            } else {
                c.failures as f64 / c.count as f64
            };
            let mut row = vec![
                Cell::text(&c.name),
                Cell::num(group(c.count)),
                Cell::num(group(c.failures)),
                Cell::num(percent(c.failures, c.count)).paint(if rate >= 0.10 {
                    Paint::Bad
                } else if rate >= 0.02 {
                    Paint::Warn
                } else {
                    Paint::Plain
                }),
                Cell::num(group(c.installs)),
            ];
            if has_latency {
                let (p50, p95) = self.latency_of(&c.name);
                row.push(Cell::num(p50.map_or("-".into(), human_ms)));
                row.push(Cell::num(p95.map_or("-".into(), human_ms)));
            }
            rows.push(row);
        }
        let mut header = vec!["COMMAND", "RUNS", "FAILED", "FAIL%", "INSTALLS"];
        if has_latency {
            header.extend(["P50", "P95"]);
        }
        table(&mut out, st, width, &header, &rows);

        if !s.error_codes.is_empty() {
            out.push('\n');
            let rows: Vec<Vec<Cell>> = s
                .error_codes
                .iter()
                .map(|e| {
                    vec![
                        Cell::text(if e.error_code.is_empty() {
                            "(none)"
                        } else {
                            &e.error_code
                        })
                        .paint(Paint::Bad),
                        Cell::text(&e.command),
                        Cell::num(group(e.count)),
                    ]
                })
                .collect();
            table(
                &mut out,
                st,
                width,
                &["ERROR CODE", "COMMAND", "COUNT"],
                &rows,
            );
        }
        out.push('\n');
        let rows: Vec<Vec<Cell>> = s
            .versions
            .iter()
            .map(|v| {
                vec![
                    Cell::text(&v.version),
                    Cell::num(group(v.installs)),
                    Cell::num(share(v.installs, s.active_installs)),
                    Cell::num(group(v.events)),
                ]
            })
            .collect();
        table(
            &mut out,
            st,
            width,
            &["VERSION", "INSTALLS", "SHARE", "EVENTS"],
            &rows,
        );
        out.push('\n');
        let rows: Vec<Vec<Cell>> = s
            .platforms
            .iter()
            .map(|p| {
                vec![
                    Cell::text(&format!("{}/{}", p.os, p.arch)),
                    Cell::num(group(p.installs)),
                    Cell::num(share(p.installs, s.active_installs)),
                    Cell::num(group(p.events)),
                ]
            })
            .collect();
        table(
            &mut out,
            st,
            width,
            &["OS/ARCH", "INSTALLS", "SHARE", "EVENTS"],
            &rows,
        );
        if let Some(h) = &s.release_health {
            release_health(&mut out, st, width, h);
        }
        for (title, list) in [("FEATURE", &s.features), ("METHOD", &s.methods)] {
            if !list.is_empty() {
                out.push('\n');
                let rows: Vec<Vec<Cell>> = list
                    .iter()
                    .map(|f| {
                        vec![
                            Cell::text(&f.name),
                            Cell::num(group(f.count)),
                            Cell::num(group(f.installs)),
                        ]
                    })
                    .collect();
                table(&mut out, st, width, &[title, "COUNT", "INSTALLS"], &rows);
            }
        }
        self.render_analytics(&mut out, st, width);
        out
    }

    /// The tables of schema version 2 analytics: phases, breakdowns, measurements (each only
    /// when there is something to show).
    fn render_analytics(&self, out: &mut String, st: &Style, width: usize) {
        let s = &self.stats;
        if !s.phases.is_empty() {
            out.push('\n');
            let rows: Vec<Vec<Cell>> = s
                .phases
                .iter()
                .map(|p| {
                    vec![
                        // Nested phases indented under their parent (waterfall order).
                        Cell::text(&format!(
                            "{} {}{}",
                            p.command,
                            "  ".repeat(p.depth.min(8) as usize),
                            p.phase
                        )),
                        Cell::num(group(p.count)),
                        Cell::num(human_ms_f(p.p50_ms)),
                        Cell::num(human_ms_f(p.p95_ms)),
                        Cell::num(human_ms_f(p.p99_ms)),
                    ]
                })
                .collect();
            table(
                out,
                st,
                width,
                &["PHASE", "COUNT", "P50", "P95", "P99"],
                &rows,
            );
        }
        if !s.breakdowns.is_empty() {
            out.push('\n');
            let mut rows: Vec<Vec<Cell>> = Vec::new();
            for b in &s.breakdowns {
                let total: u64 = b.values.iter().map(|v| v.count).sum();
                for v in &b.values {
                    rows.push(vec![
                        Cell::text(&format!("{} {}={}", b.name, b.attribute, v.value)),
                        Cell::num(group(v.count)),
                        Cell::num(share(v.count, total)),
                        Cell::num(group(v.failures)),
                        Cell::num(group(v.installs)),
                    ]);
                }
            }
            table(
                out,
                st,
                width,
                &["BREAKDOWN", "COUNT", "SHARE", "FAILED", "INSTALLS"],
                &rows,
            );
        }
        if !s.measurements.is_empty() {
            out.push('\n');
            let rows: Vec<Vec<Cell>> = s
                .measurements
                .iter()
                .map(|m| {
                    let unit = m.unit.map_or(String::new(), |u| format!(" {}", u.as_str()));
                    vec![
                        Cell::text(&m.name),
                        Cell::num(group(m.count)),
                        Cell::num(format!("{}{unit}", trim_number(m.sum))),
                        Cell::num(format!("{}{unit}", trim_number(m.p50))),
                        Cell::num(format!("{}{unit}", trim_number(m.p95))),
                    ]
                })
                .collect();
            table(
                out,
                st,
                width,
                &["MEASUREMENT", "COUNT", "SUM", "P50", "P95"],
                &rows,
            );
        }
    }
}

/// A float for people: at most one decimal, none when whole (`12`, `0.5`, `1234.6`).
fn trim_number(v: f64) -> String {
    let s = format!("{v:.1}");
    s.strip_suffix(".0").map(str::to_owned).unwrap_or(s)
}

/// Fractional milliseconds for people: below 10 ms with one decimal (`2.5ms`), else as
/// [`human_ms`].
fn human_ms_f(ms: f64) -> String {
    if ms < 10.0 {
        format!("{}ms", trim_number(ms))
    } else {
        human_ms(ms.round() as u64)
    }
}

/// The release-health table: each command of the latest version against the previous one,
/// a change outside the noise marked `▲`/`▼`, then the error codes new in the version.
fn release_health(out: &mut String, st: &Style, width: usize, h: &ReleaseHealth) {
    let (Some(version), Some(previous)) = (&h.version, &h.previous) else {
        return;
    };
    if h.commands.is_empty() {
        return;
    }
    out.push('\n');
    let _ = writeln!(
        out,
        "{}",
        st.bold(&fit(
            &format!("RELEASE HEALTH {version} vs {previous}"),
            width
        ))
    );
    let mark = |c: Change| match c {
        Change::Up => ("▲", Paint::Bad),
        Change::Down => ("▼", Paint::Plain),
        Change::Unchanged => ("=", Paint::Plain),
        Change::TooFew => ("?", Paint::Plain),
        Change::NoPrevious => ("new", Paint::Plain),
    };
    let rows: Vec<Vec<Cell>> = h
        .commands
        .iter()
        .map(|c| {
            let (fm, fp) = mark(c.failure_rate_change);
            let (pm, pp) = mark(c.p95_change);
            let rate = |r: f64| format!("{:.1}%", r * 100.0);
            let p95 = |p: Option<u64>| p.map_or("-".into(), human_ms);
            vec![
                Cell::text(&c.name),
                Cell::num(group(c.current.invocations)),
                Cell::num(format!(
                    "{} ← {}",
                    rate(c.current.failure_rate),
                    c.previous
                        .as_ref()
                        .map_or("-".into(), |p| rate(p.failure_rate))
                )),
                Cell::text(fm).paint(fp),
                Cell::num(format!(
                    "{} ← {}",
                    p95(c.current.p95_ms),
                    c.previous.as_ref().map_or("-".into(), |p| p95(p.p95_ms))
                )),
                Cell::text(pm).paint(pp),
            ]
        })
        .collect();
    table(
        out,
        st,
        width,
        &[
            "COMMAND",
            "RUNS",
            "FAIL% NOW ← BEFORE",
            "",
            "P95 NOW ← BEFORE",
            "",
        ],
        &rows,
    );
    for e in &h.new_error_codes {
        let _ = writeln!(
            out,
            "{}",
            fit(
                &format!(
                    "new error code {} in {}: {} failures",
                    e.error_code,
                    e.command,
                    group(e.count)
                ),
                width
            )
        );
    }
    let _ = writeln!(
        out,
        "{}",
        st.dim(&fit(
            &format!(
                "▲/▼ outside the noise (99 %, at least {} runs; p95 at least {} timed runs and ×{})",
                h.noise.min_invocations, h.noise.min_durations, h.noise.p95_min_ratio
            ),
            width
        ))
    );
}

/// Percent-encodes a path segment (project names are `[A-Za-z0-9_.:-]`, but a typo may not be).
fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~:".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// `24h`, `7d`, `90m`: a look-back as the user would type it.
fn short_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => humantime::format_duration(d).to_string(),
        _ if s.is_multiple_of(86_400) && s > 86_400 => format!("{}d", s / 86_400),
        _ if s.is_multiple_of(3_600) => format!("{}h", s / 3_600),
        _ if s.is_multiple_of(60) => format!("{}m", s / 60),
        _ => format!("{s}s"),
    }
}

/// `2026-11-21T22:40:00.123Z` → `2026-11-21 22:40 UTC`.
fn short_ts(t: &optel_wire::Timestamp) -> String {
    let s = t.to_string();
    match (s.get(..10), s.get(11..16)) {
        (Some(d), Some(hm)) => format!("{d} {hm} UTC"),
        _ => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::text::BARS;

    fn report() -> Report {
        let stats: Stats = serde_json::from_value(serde_json::json!({
            "project": "acme",
            "since": "2026-11-14T00:00:00.000Z",
            "until": "2026-11-21T00:00:00.000Z",
            "events": 1234,
            "active_installs": 40,
            "commands": [
                {"name": "build", "count": 1000, "failures": 150, "installs": 38, "failure_rate": 0.15, "p50_ms": 840, "p95_ms": 4200},
                {"name": "a-command-with-a-rather-long-name", "count": 200, "failures": 2, "installs": 9}
            ],
            "error_codes": [{"command": "build", "error_code": "E_NO_MANIFEST", "count": 150}],
            "versions": [{"version": "0.2.0", "events": 1000, "installs": 30}],
            "platforms": [{"os": "linux", "arch": "x86_64", "events": 1234, "installs": 40}],
            "features": [{"name": "strict", "count": 5, "installs": 2,
                          "daily": [{"day": "2026-11-20", "count": 5, "installs": 2}]}],
            "methods": [],
            "phases": [{"command": "build", "phase": "resolve", "count": 3, "p50_ms": 20.2,
                        "p95_ms": 2.5, "p99_ms": 1999.0, "versions": []}],
            "breakdowns": [{"event_type": "command", "name": "build", "command": "build",
                            "attribute": "profile", "values": [
                {"value": "debug", "count": 2, "failures": 0, "installs": 2},
                {"value": "release", "count": 1, "failures": 1, "installs": 1}]}],
            "measurements": [{"name": "files", "count": 3, "sum": 24.0, "p50": 12.0,
                              "p95": 0.5, "unit": "count", "versions": []}]
        }))
        .unwrap();
        Report {
            stats,
            since: Duration::from_secs(7 * 86_400),
            overview: serde_json::from_value(serde_json::json!({
                "project": "acme",
                "from": "2026-11-14T00:00:00.000Z",
                "to": "2026-11-21T00:00:00.000Z",
                "events": 1234,
                "invocations": 1200,
                "failures": 152,
                "active_installs": 40,
                "dau": 12,
                "wau": 30,
                "mau": 40
            }))
            .unwrap(),
            daily: (0..7)
                .map(|i| SeriesBucket {
                    start: format!("2026-11-{:02}", 14 + i),
                    events: Some(100 + i),
                    invocations: Some(90 + 10 * i),
                    failures: Some(i),
                    active_installs: if i == 3 { None } else { Some(10 + i) },
                    suppressed: None,
                })
                .collect(),
        }
    }

    #[test]
    fn report_renders_trends_and_fits_every_width() {
        let r = report();
        let wide = r.render(&Style::new(false), 120);
        assert!(wide.contains("acme · last 7d"), "{wide}");
        assert!(wide.contains("DAU 12 · WAU 30 · MAU 40"), "{wide}");
        let spark = wide
            .lines()
            .find(|l| l.trim_start().starts_with("invocations"))
            .unwrap();
        assert!(spark.contains("▁") && spark.contains("█"), "{spark}");
        assert!(spark.contains("last    150"), "{spark}");
        // A suppressed day is a gap in the installs sparkline.
        let installs = wide
            .lines()
            .find(|l| l.trim_start().starts_with("active installs"))
            .unwrap();
        let bars: String = installs
            .chars()
            .filter(|c| BARS.contains(c) || *c == ' ')
            .collect();
        assert!(bars.trim().contains("▃ "), "{installs}");
        assert!(wide.contains("840ms") && wide.contains("4.2s"), "{wide}");
        assert!(wide.contains("15.0%"));
        // Schema version 2 analytics: phases, breakdowns and measurements get their tables.
        for needle in [
            "build resolve",
            "20ms",
            "2.5ms",
            "2.0s",
            "build profile=debug",
            "67%",
            "files",
            "24 count",
            "0.5 count",
        ] {
            assert!(wide.contains(needle), "{needle}: {wide}");
        }
        for width in [30, 44, 60, 80] {
            let out = r.render(&Style::new(false), width);
            for line in out.lines() {
                assert!(line.chars().count() <= width, "{width}: {line:?}");
            }
            assert!(out.contains("build"), "{out}");
        }
    }

    #[test]
    fn release_health_renders_changes_and_new_error_codes() {
        let mut r = report();
        r.stats.release_health = Some(
            serde_json::from_value(serde_json::json!({
                "project": "acme", "from": "2026-11-14T00:00:00.000Z",
                "to": "2026-11-21T00:00:00.000Z", "versions": ["0.1.0", "0.2.0"],
                "order": "semver", "version": "0.2.0", "previous": "0.1.0",
                "noise": {"z": 2.576, "min_invocations": 30, "min_durations": 50, "p95_min_ratio": 1.2},
                "commands": [{"name": "build",
                    "current": {"invocations": 1000, "failures": 150, "failure_rate": 0.15, "timed": 1000, "p95_ms": 4200},
                    "previous": {"invocations": 900, "failures": 20, "failure_rate": 0.022, "timed": 900, "p95_ms": 1000},
                    "failure_rate_delta": 0.128, "failure_rate_z": 9.8, "failure_rate_change": "up",
                    "p95_ms_delta": 3200, "p95_change": "up"}],
                "new_error_codes": [{"command": "build", "error_code": "E_NO_MANIFEST", "count": 150}]
            }))
            .unwrap(),
        );
        let out = r.render(&Style::new(false), 100);
        assert!(out.contains("RELEASE HEALTH 0.2.0 vs 0.1.0"), "{out}");
        assert!(out.contains("15.0% ← 2.2%"), "{out}");
        assert!(out.contains('▲'), "{out}");
        assert!(
            out.contains("new error code E_NO_MANIFEST in build: 150 failures"),
            "{out}"
        );
        let v = serde_json::to_value(r.to_json()).unwrap();
        assert_eq!(v["release_health"]["commands"][0]["p95_change"], "up");
    }

    #[test]
    fn report_json_keeps_the_stats_shape_and_adds_trends() {
        let v = serde_json::to_value(report().to_json()).unwrap();
        assert_eq!(v["active_installs"], 40);
        assert_eq!(v["commands"][0]["name"], "build");
        assert_eq!(v["commands"][0]["count"], 1000);
        assert_eq!(v["commands"][0]["failures"], 150);
        assert_eq!(v["commands"][0]["p95_ms"], 4200);
        assert_eq!(v["commands"][0]["failure_rate"], 0.15);
        // A row from a collector whose `/stats` rows had no durations reads as 0.
        assert_eq!(v["commands"][1]["p95_ms"], 0);
        assert_eq!(v["dau"], 12);
        assert_eq!(v["daily"].as_array().unwrap().len(), 7);
        assert_eq!(v["daily"][3]["active_installs"], serde_json::Value::Null);
        assert_eq!(v["features"][0]["daily"][0]["day"], "2026-11-20");
        assert_eq!(v["phases"][0]["p50_ms"], 20.2);
        assert_eq!(v["breakdowns"][0]["values"][1]["failures"], 1);
        assert_eq!(v["measurements"][0]["unit"], "count");
        // The field names scripts read, the same since the object was built from untyped JSON.
        let keys = |v: &serde_json::Value| -> Vec<String> {
            v.as_object().unwrap().keys().cloned().collect()
        };
        assert_eq!(
            keys(&v),
            [
                "active_installs",
                "breakdowns",
                "commands",
                "daily",
                "dau",
                "error_codes",
                "events",
                "failures",
                "features",
                "invocations",
                "mau",
                "measurements",
                "methods",
                "phases",
                "platforms",
                "project",
                "since",
                "until",
                "versions",
                "wau"
            ]
        );
        assert_eq!(
            keys(&v["daily"][0]),
            [
                "active_installs",
                "events",
                "failures",
                "invocations",
                "start"
            ]
        );
        let csv = report().to_csv();
        assert!(
            csv.contains("\r\ncommand,build,,1000,150,38,,840,4200\r\n"),
            "{csv}"
        );
        assert!(
            csv.contains("\r\nday,2026-11-17,,120,3,,103,,\r\n"),
            "{csv}"
        );
        assert!(
            csv.contains("\r\nphase,build,resolve,3,,,,20.2,2.5\r\n"),
            "{csv}"
        );
        assert!(
            csv.contains("\r\nbreakdown,build profile,release,1,1,1,,,\r\n"),
            "{csv}"
        );
        assert!(
            csv.contains("\r\nmeasurement,files,count,3,,,,12,0.5\r\n"),
            "{csv}"
        );
    }

    #[test]
    fn look_backs_and_path_segments() {
        assert_eq!(encode_segment("a b/c"), "a%20b%2Fc");
        assert_eq!(short_duration(Duration::from_secs(86_400)), "24h");
        assert_eq!(short_duration(Duration::from_secs(7 * 86_400)), "7d");
        assert_eq!(short_duration(Duration::from_secs(90 * 60)), "90m");
    }
}
