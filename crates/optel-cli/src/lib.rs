//! The `optel` command: `serve`, `projects`, `keys`, `alerts`, `stats`, `purge`, `forget`,
//! `upload`, `bench`, `demo`.
//!
//! Raw flags are parsed by clap ([`Cli`]), then each command turns them into validated settings
//! and runs. [`main_exit_code`] maps the result to an exit code: 0 on success, 1 on error (the
//! whole cause chain printed to stderr), 2 on a usage error.

mod alerts;
mod args;
mod bench;
mod demo;
mod ops;
mod projects;
mod serve;
mod stats;
mod upload;

use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;

pub use self::alerts::AlertsCommand;
pub use self::args::{
    Cli, Command, DemoArgs, Format, ProjectsCommand, ServeArgs, StatsArgs, StoreArgs,
};
pub use self::bench::{BenchCommand, FillArgs, IdScheme, IngestArgs, QueryArgs};
pub use self::ops::{ForgetArgs, KeysCommand, PurgeArgs};
pub use self::upload::UploadArgs;

/// Runs the command line of this process and maps the outcome to an exit code.
pub fn main_exit_code() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A closed stdout (`optel stats | head`) is not an error.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Runs one parsed command line.
///
/// # Errors
/// Whatever the command failed on, with context.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve(args) => serve::run(*args),
        Command::Projects(cmd) => projects::run(cmd),
        Command::Keys(cmd) => ops::keys(cmd),
        Command::Alerts(cmd) => alerts::run(cmd),
        Command::Purge(args) => ops::purge(args),
        Command::Forget(args) => ops::forget(args),
        Command::Bench(cmd) => bench::run(cmd),
        Command::Stats(args) => stats::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Upload(args) => upload::run(args),
    }
}
