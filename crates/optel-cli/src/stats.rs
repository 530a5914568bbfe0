//! `optel stats`: a project's usage, as tables or JSON.

use std::fmt::Write as _;
use std::io::Write;

use anyhow::{Context, Result, anyhow};
use optel_collector::now_ms;
use optel_collector::query::{Stats, TimeRange};
use optel_collector::storage::Store;

use crate::{Format, StatsArgs};

pub(crate) fn run(args: StatsArgs) -> Result<()> {
    let store = args.store.open()?;
    let stats = load(&*store, &args.project, args.since)?;
    let mut out = std::io::stdout().lock();
    match args.format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut out, &stats)?;
            writeln!(out)?;
        }
        Format::Table => out.write_all(render_table(&stats).as_bytes())?,
    }
    Ok(())
}

pub(crate) fn load(store: &dyn Store, project: &str, since: std::time::Duration) -> Result<Stats> {
    let p = store.project_by_name(project)?.ok_or_else(|| {
        anyhow!("no project named {project:?}: list them with `optel projects list`")
    })?;
    store
        .stats(&p, TimeRange::last(since, now_ms()))
        .context("cannot compute stats")
}

fn percent(part: u64, whole: u64) -> String {
    if whole == 0 {
        "-".into()
    } else {
        format!("{:.1}%", part as f64 * 100.0 / whole as f64)
    }
}

/// Renders left-aligned first column, right-aligned others, two spaces apart.
fn table(out: &mut String, header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    // Numbers align right, text aligns left, as in `ls -l`.
    let numeric: Vec<bool> = (0..widths.len())
        .map(|i| {
            rows.iter().all(|r| {
                r.get(i).is_some_and(|c| {
                    c.chars()
                        .all(|ch| ch.is_ascii_digit() || ".%-".contains(ch))
                })
            })
        })
        .collect();
    let line = |out: &mut String, cells: &[String]| {
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i > 0 {
                out.push_str("  ");
            }
            if !numeric[i] {
                let _ = write!(out, "{cell:<w$}");
            } else {
                let _ = write!(out, "{cell:>w$}");
            }
        }
        let trimmed = out.trim_end_matches(' ').len();
        out.truncate(trimmed);
        out.push('\n');
    };
    line(
        out,
        &header.iter().map(|h| (*h).to_owned()).collect::<Vec<_>>(),
    );
    for row in rows {
        line(out, row);
    }
}

pub(crate) fn render_table(s: &Stats) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} — {} to {} — {} events from {} active installs\n",
        s.project, s.since, s.until, s.events, s.active_installs
    );
    if s.events == 0 {
        out.push_str("no events in this range yet\n");
        return out;
    }
    let rows: Vec<Vec<String>> = s
        .commands
        .iter()
        .map(|c| {
            vec![
                c.name.clone(),
                c.count.to_string(),
                c.failures.to_string(),
                percent(c.failures, c.count),
                c.installs.to_string(),
            ]
        })
        .collect();
    table(
        &mut out,
        &["COMMAND", "RUNS", "FAILED", "FAIL%", "INSTALLS"],
        &rows,
    );
    if !s.error_codes.is_empty() {
        out.push('\n');
        let rows: Vec<Vec<String>> = s
            .error_codes
            .iter()
            .map(|e| vec![e.error_code.clone(), e.command.clone(), e.count.to_string()])
            .collect();
        table(&mut out, &["ERROR CODE", "COMMAND", "COUNT"], &rows);
    }
    out.push('\n');
    let rows: Vec<Vec<String>> = s
        .versions
        .iter()
        .map(|v| {
            vec![
                v.version.clone(),
                v.installs.to_string(),
                v.events.to_string(),
            ]
        })
        .collect();
    table(&mut out, &["VERSION", "INSTALLS", "EVENTS"], &rows);
    out.push('\n');
    let rows: Vec<Vec<String>> = s
        .platforms
        .iter()
        .map(|p| {
            vec![
                format!("{}/{}", p.os, p.arch),
                p.installs.to_string(),
                p.events.to_string(),
            ]
        })
        .collect();
    table(&mut out, &["OS/ARCH", "INSTALLS", "EVENTS"], &rows);
    for (title, list) in [("FEATURE", &s.features), ("METHOD", &s.methods)] {
        if !list.is_empty() {
            out.push('\n');
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|f| vec![f.name.clone(), f.count.to_string(), f.installs.to_string()])
                .collect();
            table(&mut out, &[title, "COUNT", "INSTALLS"], &rows);
        }
    }
    out
}
