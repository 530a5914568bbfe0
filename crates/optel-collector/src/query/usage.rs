//! Usage metrics of every project in the Prometheus text format (`GET /v1/metrics/usage`, admin
//! token): command invocations and failures per command and version, command duration
//! summaries, and phase duration summaries per command and phase, read from the daily rollups
//! (never per-event state), so that a Prometheus server can scrape the collector and Grafana
//! can chart usage live.
//!
//! The values are totals over the rollups the collector keeps (up to [`USAGE_WINDOW_DAYS`]
//! days): they only grow while events arrive, and drop when retention deletes a day or an
//! install is forgotten, which Prometheus's `rate()` and `increase()` treat as a counter reset.
//!
//! Cardinality is bounded per project by its event catalog: once the project has stored a
//! catalog (schema version 2 batches), only the commands and the phases its catalogs declare
//! get series of their own, at most [`MAX_USAGE_COMMANDS`] commands (the most invoked); without a
//! catalog, the [`MAX_USAGE_COMMANDS`] most invoked commands and the [`MAX_USAGE_COMMANDS`] most
//! recorded (command, phase) pairs. Versions: the [`MAX_USAGE_VERSIONS`] with the most
//! invocations. Everything else is summed into the label value `other`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;

use crate::rollup::{DAY_MS, DayRange, bucket_estimate, percentile, value_quantile};
use crate::storage::{Project, Result as StoreResult, Store};

/// Most commands with series of their own, per project.
pub const MAX_USAGE_COMMANDS: usize = 50;
/// Most versions with series of their own, per project.
pub const MAX_USAGE_VERSIONS: usize = 10;
/// Days of rollups summed, ending today.
pub const USAGE_WINDOW_DAYS: i64 = 400;
/// The label value of the commands and versions beyond the bounds.
pub const OTHER: &str = "other";
/// Quantiles of the duration summaries.
const QUANTILES: [f64; 3] = [0.5, 0.95, 0.99];

/// Escapes a label value for the text format (backslash, double quote, newline).
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The `limit` keys with the largest values; ties by name.
fn top(totals: &HashMap<&str, i64>, limit: usize) -> HashSet<String> {
    let mut v: Vec<(&str, i64)> = totals.iter().map(|(k, n)| (*k, *n)).collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    v.into_iter()
        .take(limit)
        .map(|(k, _)| k.to_owned())
        .collect()
}

/// Per (command, version): invocations and failures.
type Calls = BTreeMap<(String, String), (i64, i64)>;
/// Per command: duration histogram (bucket → invocations) and the duration sum (ms).
type Durations = BTreeMap<String, (BTreeMap<i64, i64>, i64)>;
/// Per (command, phase): duration histogram ([`crate::rollup::value_bucket`] → phases).
type PhaseDurations = BTreeMap<(String, String), BTreeMap<i64, i64>>;

/// The usage metrics of `projects` at `now_ms`, in the Prometheus text format 0.0.4.
///
/// # Errors
/// Database errors.
pub fn usage_metrics<S: Store + ?Sized>(
    store: &S,
    projects: &[Project],
    now_ms: i64,
) -> StoreResult<String> {
    let today = now_ms.div_euclid(DAY_MS);
    let days = DayRange {
        first: today - USAGE_WINDOW_DAYS + 1,
        last: today,
    };
    let mut calls: Vec<(&str, Calls)> = Vec::new();
    let mut durations: Vec<(&str, Durations)> = Vec::new();
    let mut phases: Vec<(&str, PhaseDurations)> = Vec::new();
    for p in projects {
        let catalogs = store.catalogs(p.id)?;
        let declared: Option<HashSet<(String, Option<String>)>> =
            (!catalogs.is_empty()).then(|| {
                let mut d = HashSet::new();
                for c in &catalogs {
                    for e in &c.catalog.commands {
                        d.insert((e.name.clone(), None));
                        for ph in &e.phases {
                            d.insert((e.name.clone(), Some(ph.name.clone())));
                        }
                    }
                }
                d
            });
        let is_declared = |command: &str, phase: Option<&str>| {
            declared
                .as_ref()
                .is_none_or(|d| d.contains(&(command.to_owned(), phase.map(str::to_owned))))
        };
        let counts = store.counts_total(p.id, days)?;
        let commands: Vec<_> = counts
            .iter()
            .filter(|r| r.key.event_type == "command")
            .collect();
        let mut by_command: HashMap<&str, i64> = HashMap::new();
        let mut by_version: HashMap<&str, i64> = HashMap::new();
        for r in commands.iter().filter(|r| is_declared(&r.key.name, None)) {
            *by_command.entry(&r.key.name).or_default() += r.count;
        }
        for r in &commands {
            *by_version.entry(&r.key.version).or_default() += r.count;
        }
        let shown_commands = top(&by_command, MAX_USAGE_COMMANDS);
        let shown_versions = top(&by_version, MAX_USAGE_VERSIONS);
        let bound = |v: &str, shown: &HashSet<String>| {
            if shown.contains(v) {
                v.to_owned()
            } else {
                OTHER.to_owned()
            }
        };
        let mut c = Calls::new();
        let mut d = Durations::new();
        for r in &commands {
            let command = bound(&r.key.name, &shown_commands);
            let e = c
                .entry((command.clone(), bound(&r.key.version, &shown_versions)))
                .or_default();
            e.0 += r.count;
            if r.key.outcome == 0 {
                e.1 += r.count;
            }
            d.entry(command).or_default().1 += r.duration_sum;
        }
        for h in store.durations(p.id, days)? {
            let command = bound(&h.name, &shown_commands);
            *d.entry(command).or_default().0.entry(h.bucket).or_default() += h.count;
        }
        let hists = store.phases(p.id, days)?;
        let mut by_phase: HashMap<(&str, &str), i64> = HashMap::new();
        for h in &hists {
            if is_declared(&h.command, Some(&h.phase)) {
                *by_phase.entry((&h.command, &h.phase)).or_default() += h.hist.total();
            }
        }
        let mut ranked: Vec<((&str, &str), i64)> = by_phase.into_iter().collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let shown_phases: HashSet<(String, String)> = ranked
            .into_iter()
            .filter(|((c, _), _)| shown_commands.contains(*c))
            .take(MAX_USAGE_COMMANDS)
            .map(|((c, ph), _)| (c.to_owned(), ph.to_owned()))
            .collect();
        let mut ph = PhaseDurations::new();
        for h in hists {
            let command = bound(&h.command, &shown_commands);
            let key = (h.command, h.phase);
            let phase = if shown_phases.contains(&key) {
                key.1
            } else {
                OTHER.to_owned()
            };
            // Phases of every parent count together: the metric has no parent label.
            let slot = ph.entry((command, phase)).or_default();
            for (bucket, count) in h.hist.iter() {
                *slot.entry(bucket).or_default() += count;
            }
        }
        calls.push((&p.name, c));
        durations.push((&p.name, d));
        phases.push((&p.name, ph));
    }
    let mut out = render(&calls, &durations);
    render_phases(&mut out, &phases);
    Ok(out)
}

fn render_phases(out: &mut String, phases: &[(&str, PhaseDurations)]) {
    let metric = "optel_usage_phase_duration_seconds";
    let _ = writeln!(
        out,
        "# HELP {metric} Phase durations, per command and phase (quantiles and sum from the \
         rollup histogram, within 1.9 %)."
    );
    let _ = writeln!(out, "# TYPE {metric} summary");
    for (project, ph) in phases {
        for ((command, phase), hist) in ph {
            let h: Vec<(i64, i64)> = hist.iter().map(|(&b, &n)| (b, n)).collect();
            let count: i64 = h.iter().map(|&(_, n)| n).sum();
            if count <= 0 {
                continue;
            }
            let labels = format!(
                "project=\"{}\",command=\"{}\",phase=\"{}\"",
                label(project),
                label(command),
                label(phase)
            );
            for q in QUANTILES {
                let _ = writeln!(
                    out,
                    "{metric}{{{labels},quantile=\"{q}\"}} {}",
                    value_quantile(&h, q) / 1000.0
                );
            }
            let sum_ms: f64 = h.iter().map(|&(b, n)| bucket_estimate(b) * n as f64).sum();
            let _ = writeln!(out, "{metric}_sum{{{labels}}} {}", sum_ms / 1000.0);
            let _ = writeln!(out, "{metric}_count{{{labels}}} {count}");
        }
    }
}

fn render(calls: &[(&str, Calls)], durations: &[(&str, Durations)]) -> String {
    let mut out = String::new();
    for (metric, help, failures) in [
        (
            "optel_usage_command_invocations_total",
            "Command invocations recorded by a project's installs, per command and tool version.",
            false,
        ),
        (
            "optel_usage_command_failures_total",
            "Failed command invocations, per command and tool version.",
            true,
        ),
    ] {
        let _ = writeln!(out, "# HELP {metric} {help}");
        let _ = writeln!(out, "# TYPE {metric} counter");
        for (project, c) in calls {
            for ((command, version), (n, f)) in c {
                let v = if failures { *f } else { *n };
                let _ = writeln!(
                    out,
                    "{metric}{{project=\"{}\",command=\"{}\",version=\"{}\"}} {}",
                    label(project),
                    label(command),
                    label(version),
                    v.max(0)
                );
            }
        }
    }
    let metric = "optel_usage_command_duration_seconds";
    let _ = writeln!(
        out,
        "# HELP {metric} Command durations, per command (quantiles from the rollup histogram, \
         within 12.5 %)."
    );
    let _ = writeln!(out, "# TYPE {metric} summary");
    for (project, d) in durations {
        for (command, (hist, sum_ms)) in d {
            let h: Vec<(i64, i64)> = hist.iter().map(|(&b, &n)| (b, n)).collect();
            let count: i64 = h.iter().map(|&(_, n)| n).sum();
            if count <= 0 {
                continue;
            }
            let labels = format!(
                "project=\"{}\",command=\"{}\"",
                label(project),
                label(command)
            );
            for q in QUANTILES {
                let _ = writeln!(
                    out,
                    "{metric}{{{labels},quantile=\"{q}\"}} {}",
                    seconds(percentile(&h, q))
                );
            }
            let _ = writeln!(
                out,
                "{metric}_sum{{{labels}}} {}",
                seconds((*sum_ms).max(0) as u64)
            );
            let _ = writeln!(out, "{metric}_count{{{labels}}} {count}");
        }
    }
    out
}

fn seconds(ms: u64) -> String {
    format!("{}", ms as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn top_keeps_the_largest_and_breaks_ties_by_name() {
        let m: HashMap<&str, i64> = [("a", 1), ("b", 5), ("c", 5)].into_iter().collect();
        let t = top(&m, 2);
        assert!(t.contains("b") && t.contains("c"), "{t:?}");
    }
}
