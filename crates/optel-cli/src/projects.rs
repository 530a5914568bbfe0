//! `optel projects`: create, list, delete projects and switch their public view and its
//! differential-privacy mode, directly on the store.

use std::io::Write;

use anyhow::{Context, Result, bail};
use optel_collector::query::DpSettings;
use optel_collector::storage::Store;
use optel_collector::{generate_ingest_key, hash_key, now_ms};

use crate::args::ProjectsCommand;

/// Runs `optel projects ...`.
///
/// # Errors
/// The store cannot be opened or fails, the project name is invalid or unknown, or stdout is
/// closed.
pub(crate) fn run(cmd: ProjectsCommand) -> Result<()> {
    match cmd {
        ProjectsCommand::Create { name, store } => {
            let store = store.open()?;
            let key = create_project(&*store, &name)?;
            let mut out = std::io::stdout().lock();
            writeln!(
                out,
                "created project {name:?}; its ingest key (shown once, store it now):"
            )?;
            writeln!(out, "{key}")?;
            Ok(())
        }
        ProjectsCommand::List { store } => {
            let store = store.open()?;
            let mut out = std::io::stdout().lock();
            for p in store.list_projects()? {
                let dp = store
                    .public_dp(p.id)?
                    .map(|d| format!("\tdp epsilon={},daily-budget={}", d.epsilon, d.daily_budget))
                    .unwrap_or_default();
                writeln!(
                    out,
                    "{}\tcreated {}{}{dp}",
                    p.name,
                    optel_wire::Timestamp::from_unix_ms(p.created_ms),
                    if p.public { "\tpublic" } else { "" }
                )?;
            }
            Ok(())
        }
        ProjectsCommand::Delete { name, store } => {
            if !store.open()?.delete_project(&name)? {
                bail!("no project named {name:?}: list them with `optel projects list`");
            }
            writeln!(
                std::io::stdout(),
                "deleted project {name:?} and all its data"
            )?;
            Ok(())
        }
        ProjectsCommand::Public { name, state, store } => {
            store.open()?.set_public(&name, state == "on")?;
            writeln!(std::io::stdout(), "public view of {name:?} is {state}")?;
            Ok(())
        }
        ProjectsCommand::Dp {
            name,
            settings,
            store,
        } => {
            let dp = if settings == "off" {
                None
            } else {
                Some(DpSettings::parse(&settings).map_err(anyhow::Error::msg)?)
            };
            store.open()?.set_public_dp(&name, dp)?;
            let mut out = std::io::stdout().lock();
            match dp {
                Some(d) => writeln!(
                    out,
                    "differential privacy of {name:?}'s public view: epsilon {} per answer, \
                     daily budget {}",
                    d.epsilon, d.daily_budget
                )?,
                None => writeln!(out, "differential privacy of {name:?}'s public view is off")?,
            }
            Ok(())
        }
    }
}

/// Creates a project with a new ingest key and returns the key.
///
/// # Errors
/// The name is invalid or taken, or the store fails.
pub(crate) fn create_project(store: &dyn Store, name: &str) -> Result<String> {
    if !optel_wire::is_valid_name(name) {
        bail!("project name {name:?} is not allowed: use [A-Za-z0-9_.:-], at most 64 bytes");
    }
    let key = generate_ingest_key().context("cannot generate an ingest key")?;
    store.create_project(name, &hash_key(&key), now_ms())?;
    Ok(key)
}
