//! `optel alerts`: the webhooks a collector posts when a project's release health changes.
//! Like `optel keys`, it writes the collector's database directly; a running collector reads
//! the hooks at each evaluation round.

use std::io::Write;

use anyhow::{Context, Result, bail};
use optel_collector::alerts::{self, AlertKind, AlertPayload, AlertSettings};
use optel_collector::now_ms;

use crate::args::StoreArgs;

/// `optel alerts ...`
#[derive(Debug, clap::Subcommand)]
pub enum AlertsCommand {
    /// Add a webhook to a project and print its signing secret (shown once).
    Add {
        /// Project name.
        #[arg(long)]
        project: String,
        /// Where to POST the JSON payload: http:// or https:// (redirects are not followed).
        #[arg(long, value_name = "URL")]
        url: String,
        /// What to post for, comma-separated: new-error-code, failure-rate, p95-duration,
        /// ingest-stopped [default: all].
        #[arg(long, value_name = "KINDS")]
        on: Option<String>,
        /// Also write each alert to the collector's log (warn level).
        #[arg(long)]
        log: bool,
        #[command(flatten)]
        #[allow(missing_docs)]
        store: StoreArgs,
    },
    /// List webhooks (never their secrets).
    List {
        /// Only this project's.
        #[arg(long)]
        project: Option<String>,
        #[command(flatten)]
        #[allow(missing_docs)]
        store: StoreArgs,
    },
    /// Remove a webhook by id (as `list` shows it).
    Remove {
        /// Hook id.
        id: i64,
        #[command(flatten)]
        #[allow(missing_docs)]
        store: StoreArgs,
    },
    /// Post a signed test payload (`"test": true`) to a webhook now, with the usual retries.
    Test {
        /// Hook id.
        id: i64,
        #[command(flatten)]
        #[allow(missing_docs)]
        store: StoreArgs,
    },
}

pub(crate) fn run(cmd: AlertsCommand) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match cmd {
        AlertsCommand::Add {
            project,
            url,
            on,
            log,
            store,
        } => {
            alerts::check_url(&url).map_err(anyhow::Error::msg)?;
            let kinds = match on {
                Some(list) => AlertKind::parse_list(&list).map_err(anyhow::Error::msg)?,
                None => AlertKind::ALL.to_vec(),
            };
            let secret = alerts::generate_secret().context("cannot generate a hook secret")?;
            let hook =
                store
                    .open()?
                    .add_alert_hook(&project, &url, &secret, &kinds, log, now_ms())?;
            writeln!(
                out,
                "hook {} of project {project:?} posts to {url} on {}",
                hook.id,
                kinds_text(&hook.kinds)
            )?;
            writeln!(
                out,
                "signing secret (shown once, store it in the receiver; it verifies the \
                 {} header):",
                alerts::SIGNATURE_HEADER
            )?;
            writeln!(out, "{secret}")?;
        }
        AlertsCommand::List { project, store } => {
            let hooks = store.open()?.alert_hooks(project.as_deref())?;
            if hooks.is_empty() {
                writeln!(out, "no alert hooks")?;
            }
            for h in hooks {
                writeln!(
                    out,
                    "{}\t{}\t{}\t{}{}",
                    h.id,
                    h.project,
                    h.url,
                    kinds_text(&h.kinds),
                    if h.log { "\tlog" } else { "" }
                )?;
            }
        }
        AlertsCommand::Remove { id, store } => {
            if !store.open()?.remove_alert_hook(id)? {
                bail!("no alert hook {id}: list them with `optel alerts list`");
            }
            writeln!(out, "removed")?;
        }
        AlertsCommand::Test { id, store } => {
            let hook = store
                .open()?
                .alert_hooks(None)?
                .into_iter()
                .find(|h| h.id == id)
                .with_context(|| {
                    format!("no alert hook {id}: list them with `optel alerts list`")
                })?;
            let payload = AlertPayload {
                type_: "optel.alert".into(),
                kind: hook
                    .kinds
                    .first()
                    .copied()
                    .unwrap_or(AlertKind::NewErrorCode),
                project: hook.project.clone(),
                version: String::new(),
                previous: None,
                command: String::new(),
                error_code: None,
                message: format!("test alert of hook {id} of project {}", hook.project),
                fired_at: optel_wire::Timestamp::from_unix_ms(now_ms()),
                test: true,
            };
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            let done = rt.block_on(alerts::deliver(&hook, &payload, &AlertSettings::default()));
            match done.status {
                Some(status) if done.delivered => writeln!(
                    out,
                    "delivered: {status} after {} attempt(s)",
                    done.attempts
                )?,
                Some(status) => bail!(
                    "the receiver answered {status} after {} attempt(s): check its URL and \
                     that it accepts POST",
                    done.attempts
                ),
                None => bail!(
                    "the receiver at {} did not answer after {} attempt(s)",
                    hook.url,
                    done.attempts
                ),
            }
        }
    }
    Ok(())
}

fn kinds_text(kinds: &[AlertKind]) -> String {
    kinds
        .iter()
        .map(|k| k.as_str())
        .collect::<Vec<_>>()
        .join(",")
}
