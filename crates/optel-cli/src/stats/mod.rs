//! `optel stats`: a project's usage for the terminal (colored tables that fit its width, with
//! sparklines for the daily trends) or for scripts (`--format json|csv`).
//!
//! The numbers come from the collector's query API (`docs/query-api.md`), read either from a
//! remote collector (`--server URL`, admin token from `OPTEL_ADMIN_TOKEN`) or from a local data
//! directory, in which case the same routes are answered in-process by
//! [`optel_collector::app`] over the local database. One code path serves both, so the local and
//! the remote answer cannot drift apart.
//!
//! `--format json` prints the `/v1/projects/{p}/stats` object
//! ([`optel_collector::query::Stats`]: at least
//! `{"commands":[{"name","count","failures",..}],"active_installs":N}`) with, when the collector
//! has the routes, `p50_ms`/`p95_ms` per command, `dau`/`wau`/`mau` and `daily` buckets added.

mod report;
mod source;
mod terminal;
mod text;

use std::io::Write;

use anyhow::Result;

use crate::args::{Format, StatsArgs};

pub(crate) use self::report::Report;
pub(crate) use self::source::Source;

/// Runs `optel stats`.
///
/// # Errors
/// The store or the collector cannot be read, the project is unknown, or stdout is closed.
pub(crate) fn run(args: StatsArgs) -> Result<()> {
    let source = match &args.server {
        Some(url) => Source::remote(url)?,
        None => Source::local(&args.store)?,
    };
    let project = match &args.project {
        Some(p) => p.clone(),
        None => source.only_project()?,
    };
    let report = Report::fetch(&source, &project, args.since)?;
    let mut out = std::io::stdout().lock();
    match args.format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut out, &report.to_json())?;
            writeln!(out)?;
        }
        Format::Csv => out.write_all(report.to_csv().as_bytes())?,
        Format::Table => {
            out.write_all(report.render_for_stdout(args.color).as_bytes())?;
        }
    }
    Ok(())
}
