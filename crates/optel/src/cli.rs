//! The user's `telemetry` subcommand, ready for clap-based tools (feature `clap`).
//!
//! Mount it with one line in the tool's subcommand enum and dispatch it before
//! [`TelemetryBuilder::init`], so that `disable` and `purge` never start telemetry:
//!
//! ```no_run
//! # use clap::{Parser, Subcommand};
//! #[derive(Parser)]
//! struct Cli { #[command(subcommand)] command: Cmd }
//! #[derive(Subcommand)]
//! enum Cmd {
//!     Build,
//!     Telemetry(optel::cli::TelemetryArgs),
//! }
//! # fn main() -> std::process::ExitCode {
//! let cli = Cli::parse();
//! let telemetry = optel::Telemetry::builder("acme", env!("CARGO_PKG_VERSION"));
//! if let Cmd::Telemetry(args) = &cli.command {
//!     return args.run(&telemetry);
//! }
//! let _guard = telemetry.init();
//! # std::process::ExitCode::SUCCESS
//! # }
//! ```
//!
//! | command | effect |
//! |---|---|
//! | `status` | state, deciding layer and its file, endpoint, pseudonym epoch, the catalog's hash, queued and dropped counts (and what the catalog dropped as undeclared or held back as not yet seen), circuit breaker, last delivery error, requests today and the daily cap, and why telemetry cannot run if its directory is refused |
//! | `enable` / `local` / `disable` | writes the choice to the user config file; `disable` also deletes unsent events, and sends nothing, not even an opt-out event |
//! | `reset` | rotates the install secret: the next run uses a new, unlinkable pseudonym |
//! | `preview` | prints the tool's event catalog in plain words (what it records and why), then the JSON of the queued batches, exactly as they would be sent, without sending |
//! | `log` | prints the local ledger (one JSON batch per line) |
//! | `purge` | deletes all local telemetry data: queue, ledger, install secret, so nothing of this tool's telemetry stays on the machine |
//! | `flush` | sends the queue now, waiting at most `--timeout-ms` |
//! | `forget` | asks the collector to delete every event this install sent (`DELETE /v1/installs`, docs/adr/002) |

use std::fs;
use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::breaker::Breaker;
use crate::builder::TelemetryBuilder;
use crate::consent::{self, Consent, ConsentSource};
use crate::identity::{self, Epoch};
use crate::status::Status;
use crate::{delivery, queue};

/// `<tool> telemetry <command>`.
#[derive(Debug, Clone, clap::Args)]
#[command(about = "See and change what telemetry this tool records and sends")]
pub struct TelemetryArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: TelemetryCommand,
}

/// The `telemetry` subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
#[non_exhaustive]
pub enum TelemetryCommand {
    /// Show whether telemetry is on, which setting decided it, and what is queued.
    Status,
    /// Turn telemetry on: usage events are sent to the tool's authors.
    Enable,
    /// Turn telemetry off: nothing is recorded or sent (not even an opt-out event).
    Disable,
    /// Keep usage events on this machine only (see `telemetry log`); nothing is sent.
    Local,
    /// Start over with a new anonymous pseudonym that cannot be linked to the old one.
    Reset,
    /// Print the exact JSON that would be sent for the queued events, without sending it.
    Preview,
    /// Print the local ledger of recorded events.
    Log,
    /// Delete all local telemetry data (queue, ledger, install secret).
    Purge,
    /// Ask the collector to delete everything this install has sent (every pseudonym of the
    /// last 14 months, or 60 weeks), proven with the install secret.
    Forget {
        /// The longest to wait for the collector, in milliseconds (at most 60000).
        #[arg(long, default_value_t = 10_000)]
        timeout_ms: u64,
    },
    /// Send queued events now.
    Flush {
        /// The longest to wait, in milliseconds (at most 60000).
        #[arg(long, default_value_t = 5_000)]
        timeout_ms: u64,
    },
}

/// Why a `telemetry` command failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// No home directory, so no config or data directory.
    #[error("no home directory: set HOME so that telemetry settings can be kept")]
    NoHome,
    /// A file could not be read, written or deleted.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was attempted.
        action: &'static str,
        /// The file or directory.
        path: std::path::PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// Writing the output failed.
    #[error("cannot write the output: {0}")]
    Output(#[source] io::Error),
    /// `telemetry forget` could not get an answer from the collector, or was refused.
    #[error("the collector did not delete this install's data: {0}")]
    Forget(String),
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> CliError + 'a {
    move |source| CliError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

/// Longest `flush --timeout-ms`.
const MAX_FLUSH: Duration = Duration::from_secs(60);

impl TelemetryArgs {
    /// Runs the command for the tool configured by `builder` (not initialised), printing to
    /// stdout, errors to stderr. A broken pipe on stdout is success.
    pub fn run(&self, builder: &TelemetryBuilder) -> ExitCode {
        let env = |k: &str| std::env::var(k).ok();
        let mut out = io::stdout().lock();
        match self.execute(builder, &env, &mut out) {
            Ok(()) => ExitCode::SUCCESS,
            Err(CliError::Output(e)) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        }
    }

    /// Runs the command with an injectable environment, writing to `out`.
    ///
    /// # Errors
    /// [`CliError`] when a file cannot be written or the output fails.
    pub fn execute(
        &self,
        builder: &TelemetryBuilder,
        env: &dyn Fn(&str) -> Option<String>,
        out: &mut dyn Write,
    ) -> Result<(), CliError> {
        let tool = builder.tool.as_str();
        let w = |out: &mut dyn Write, text: &str| {
            out.write_all(text.as_bytes()).map_err(CliError::Output)
        };
        match &self.command {
            TelemetryCommand::Status => w(out, &status(builder, env).to_string()),
            TelemetryCommand::Enable => choose(builder, env, Consent::On, out),
            TelemetryCommand::Local => choose(builder, env, Consent::Local, out),
            TelemetryCommand::Disable => {
                choose(builder, env, Consent::Off, out)?;
                // Unsent events are deleted, never sent: disabling touches no network.
                let data = builder.resolved_data_dir().ok_or(CliError::NoHome)?;
                let q = data.join("queue");
                let n = queued(&data).map_or(0, |b| b.iter().map(|b| b.events.len()).sum());
                if q.exists() {
                    fs::remove_dir_all(&q).map_err(io_err("delete", &q))?;
                }
                if n > 0 {
                    w(out, &format!("deleted {n} unsent events\n"))?;
                }
                Ok(())
            }
            TelemetryCommand::Reset => {
                let data = builder.resolved_data_dir().ok_or(CliError::NoHome)?;
                let existed = identity::rotate_secret(&data).map_err(io_err("delete", &data))?;
                w(
                    out,
                    if existed {
                        "the install secret was deleted: the next run uses a new pseudonym that cannot be linked to the old one\n"
                    } else {
                        "there was no install secret: the next run with telemetry on creates one\n"
                    },
                )
            }
            TelemetryCommand::Preview => {
                let data = builder.resolved_data_dir().ok_or(CliError::NoHome)?;
                if let Some(catalog) = builder.catalog.map(|f| f()) {
                    w(
                        out,
                        &format!(
                            "{}\ncatalog hash: {}\n\n",
                            crate::catalog::describe(tool, &catalog),
                            catalog.hash()
                        ),
                    )?;
                }
                let batches = queued(&data).unwrap_or_default();
                if batches.is_empty() {
                    w(
                        out,
                        &format!(
                            "no events are queued. One run of {tool} would send, for example:\n{}\n",
                            consent::prompt::sample_payload(&builder.tool, &builder.version)
                        ),
                    )
                } else {
                    for batch in batches {
                        let json = serde_json::to_string_pretty(&batch).unwrap_or_default();
                        w(out, &format!("{json}\n"))?;
                    }
                    Ok(())
                }
            }
            TelemetryCommand::Log => {
                let data = builder.resolved_data_dir().ok_or(CliError::NoHome)?;
                let ledger = builder.ledger(&data);
                let lines = ledger.read_lines().unwrap_or_default();
                if lines.is_empty() {
                    return w(
                        out,
                        &format!("the ledger is empty ({})\n", ledger.dir().display()),
                    );
                }
                for line in lines {
                    w(out, &format!("{line}\n"))?;
                }
                Ok(())
            }
            TelemetryCommand::Purge => {
                let data = builder.resolved_data_dir().ok_or(CliError::NoHome)?;
                if data.exists() {
                    fs::remove_dir_all(&data).map_err(io_err("delete", &data))?;
                    w(
                        out,
                        &format!(
                            "deleted all local telemetry data of {tool} ({})\n",
                            data.display()
                        ),
                    )
                } else {
                    w(
                        out,
                        &format!("there is no local telemetry data of {tool}\n"),
                    )
                }
            }
            TelemetryCommand::Flush { timeout_ms } => flush(builder, env, *timeout_ms, out),
            TelemetryCommand::Forget { timeout_ms } => forget(builder, env, *timeout_ms, out),
        }
    }
}

/// The queued batches, without creating the queue directory.
fn queued(data: &Path) -> Option<Vec<optel_wire::Batch>> {
    let dir = data.join("queue");
    if !dir.is_dir() {
        return None;
    }
    queue::Queue::open(dir).and_then(|q| q.batches()).ok()
}

/// What telemetry would do on the next run, and what is queued. Asks nothing, writes nothing.
pub(crate) fn status(builder: &TelemetryBuilder, env: &dyn Fn(&str) -> Option<String>) -> Status {
    let r = builder.resolve(env);
    let mut s = Status::new(r.consent, r.source, builder.epoch, r.note);
    s.endpoint = builder.effective_endpoint(env);
    s.catalog_hash = builder.catalog.map(|f| f().hash());
    if r.consent != Consent::Off {
        s.pseudonym_epoch_label = Some(builder.epoch.label(std::time::SystemTime::now()));
    }
    if r.consent != Consent::Off
        && let Some(plan) = builder.data_dir_plan()
        && let Err(e) = plan.check_existing()
    {
        s.note = Some(format!("telemetry cannot run: {e}"));
    }
    if let Some(data) = builder.resolved_data_dir() {
        let batches = queued(&data).unwrap_or_default();
        s.queued_events = Some(batches.iter().map(|b| b.events.len()).sum());
        // The lifetime total kept in the queue's drop counter: the queued batches carry only
        // the drops not yet reported, and none once they are sent.
        if let Ok(q) = queue::queue_status(&data) {
            s.dropped_events = Some(q.dropped_events_total);
            s.breaker_open_until = q.breaker_open_until;
            s.delivery_failures = Some(q.consecutive_failures);
            s.last_error = q.last_error;
            s.requests_today = Some((q.requests_today, builder.daily_request_cap));
        }
        if data.exists() {
            let state = crate::catalog::CatalogState::load(&data);
            s.catalog_drops = crate::catalog::drops_summary(&state.drops);
            s.data_dir = Some(data);
        }
    }
    s
}

fn choose(
    builder: &TelemetryBuilder,
    env: &dyn Fn(&str) -> Option<String>,
    choice: Consent,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let path = builder.user_config_file().ok_or(CliError::NoHome)?;
    let notice_shown = consent::read_file(&path)
        .ok()
        .flatten()
        .is_some_and(|f| f.notice_shown);
    // Enabling is a choice made knowing what is sent: `preview` shows it, and this command
    // says where to look. What is declared now counts as seen (docs/adr/010).
    let seen = builder
        .catalog
        .filter(|_| choice == Consent::On)
        .map(|f| f().data_categories());
    builder
        .save_user_choice(Some(choice), notice_shown, seen.as_ref())
        .map_err(io_err("write", &path))?;
    let mut text = format!("telemetry is now {choice} (saved in {})\n", path.display());
    if seen.is_some() {
        text.push_str(&format!(
            "what is sent: `{} telemetry preview`\n",
            builder.tool
        ));
    }
    let r = builder.resolve(env);
    if r.consent != choice && !matches!(r.source, ConsentSource::UserConfig(_)) {
        text.push_str(&format!(
            "note: {} takes precedence, so telemetry stays {} for now\n",
            r.source, r.consent
        ));
    }
    out.write_all(text.as_bytes()).map_err(CliError::Output)
}

fn flush(
    builder: &TelemetryBuilder,
    env: &dyn Fn(&str) -> Option<String>,
    timeout_ms: u64,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let w = |out: &mut dyn Write, text: String| {
        out.write_all(text.as_bytes()).map_err(CliError::Output)
    };
    let r = builder.resolve(env);
    if r.consent != Consent::On {
        return w(
            out,
            format!(
                "telemetry is {} ({}): nothing is sent\n",
                r.consent, r.source
            ),
        );
    }
    let data = builder.resolved_data_dir().ok_or(CliError::NoHome)?;
    let before: usize = queued(&data)
        .unwrap_or_default()
        .iter()
        .map(|b| b.events.len())
        .sum();
    if before == 0 {
        return w(out, "no events are queued\n".to_owned());
    }
    let Some(exporter) = builder.delivery_exporter(env) else {
        return w(
            out,
            format!("{before} events are queued, but no endpoint is configured\n"),
        );
    };
    let q = queue::Queue::open(data.join("queue")).map_err(io_err("open", &data))?;
    let timeout = Duration::from_millis(timeout_ms).min(MAX_FLUSH);
    // The user asked for this flush: probe the endpoint even if the breaker is open.
    let breaker = Breaker::new(data.clone());
    breaker.allow_probe();
    let worker = delivery::Worker::start(q, breaker, builder.delivery_policy(env), exporter)
        .map_err(io_err("start delivery for", &data))?;
    // The command ends the process: the exporter is flushed and shut down too.
    let in_time = worker.finish(Instant::now() + timeout);
    let after: usize = queued(&data)
        .unwrap_or_default()
        .iter()
        .map(|b| b.events.len())
        .sum();
    let sent = before.saturating_sub(after);
    let mut text = format!("sent {sent} of {before} queued events\n");
    if !in_time {
        text.push_str(&format!(
            "stopped waiting after {} ms; the rest goes on a later run\n",
            timeout.as_millis()
        ));
    }
    w(out, text)
}

/// Most epochs `forget` asks about: 14 months, or 60 weeks (the collector accepts 64).
const FORGET_MONTHS: usize = 14;
const FORGET_WEEKS: usize = 60;

/// `telemetry forget`: sends the pseudonyms of the recent epochs, each with the proof of
/// docs/adr/002-deletion-by-pseudonym.md (`HMAC-SHA-256(key = pseudonym, "optel forget
/// v1|<tool>|<timestamp>")`), to `DELETE <endpoint>/v1/installs`. Only an install holding the
/// secret can list its pseudonyms; nothing else about the machine is sent. The proofs
/// ([`optel_wire::forget_proof`]) are bound to the tool's name, sent as `tool`, so the
/// collector's project may be named otherwise.
fn forget(
    builder: &TelemetryBuilder,
    env: &dyn Fn(&str) -> Option<String>,
    timeout_ms: u64,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let tool = builder.tool.as_str();
    let data = builder.resolved_data_dir().ok_or(CliError::NoHome)?;
    let secret = identity::existing_secret(&data).map_err(io_err("read", &data))?;
    let Some(secret) = secret else {
        return out
            .write_all(
                b"this install has no secret, so nothing it sent can be identified: nothing to forget\n",
            )
            .map_err(CliError::Output);
    };
    let Some(endpoint) = builder.effective_endpoint(env) else {
        return Err(CliError::Forget(
            "no endpoint is configured, so there is no collector to ask".into(),
        ));
    };
    let prefix = consent::env_prefix(tool);
    let key = env(&format!("{prefix}_TELEMETRY_KEY")).or(builder.ingest_key.clone());
    let max = match builder.epoch {
        Epoch::Weekly => FORGET_WEEKS,
        _ => FORGET_MONTHS,
    };
    let timestamp = optel_wire::Timestamp::now().to_string();
    let installs: Vec<serde_json::Value> =
        identity::recent_epoch_labels(builder.epoch, std::time::SystemTime::now(), max)
            .iter()
            .map(|label| {
                let pseudonym = identity::pseudonym(&secret, tool, label);
                let proof = optel_wire::forget_proof(&pseudonym, tool, &timestamp);
                serde_json::json!({ "pseudonym": pseudonym, "proof": proof })
            })
            .collect();
    // The proofs are bound to the tool's name; the collector's project may be named otherwise.
    let body = serde_json::json!({ "timestamp": timestamp, "tool": tool, "installs": installs })
        .to_string();
    let base = endpoint.trim_end_matches('/');
    let base = base.strip_suffix("/v1/events").unwrap_or(base);
    let url = format!("{base}/v1/installs");
    let timeout = Duration::from_millis(timeout_ms).min(MAX_FLUSH);
    // The same agent as delivery: proxy from the environment, and the private CA of
    // `tls_root_certificates`, `<TOOL>_TELEMETRY_CA_FILE` or `SSL_CERT_FILE`.
    let user_agent = format!("optel/{} ({tool})", env!("CARGO_PKG_VERSION"));
    let agent =
        crate::export::agent_with_roots(&user_agent, builder.root_certificates(env).as_ref())
            .map_err(CliError::Forget)?;
    let mut request = agent
        .delete(&url)
        .config()
        .timeout_global(Some(timeout))
        .build()
        .force_send_body()
        .header("Content-Type", "application/json");
    if let Some(key) = &key {
        request = request.header("Authorization", &format!("Bearer {key}"));
    }
    let mut response = request
        .send(body.as_bytes())
        .map_err(|e| CliError::Forget(format!("cannot reach {url}: {e}")))?;
    let status = response.status().as_u16();
    let text = response
        .body_mut()
        .with_config()
        .limit(64 * 1024)
        .read_to_string()
        .unwrap_or_default();
    if !(200..300).contains(&status) {
        return Err(CliError::Forget(format!(
            "{url} answered HTTP {status}: {text}"
        )));
    }
    let deleted = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v["deleted"].as_u64())
        .unwrap_or(0);
    out.write_all(
        format!(
            "the collector deleted {deleted} events of this install ({} pseudonyms asked)\n",
            installs.len()
        )
        .as_bytes(),
    )
    .map_err(CliError::Output)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::Telemetry;

    #[test]
    fn status_reports_the_lifetime_drop_count() {
        // Regression: `status` summed the queued batches' `dropped_events` and never read the
        // queue's persisted drop counter, so drops of a full queue did not show.
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let queue_dir = data.join("queue");
        let q = queue::Queue::open(queue_dir.clone()).unwrap();
        let quarter = queue::MAX_QUEUE_EVENTS / 4;
        for i in 0..4 {
            fs::write(
                queue_dir.join(format!("000000000000{i}-aa-{quarter}e-2b.json")),
                b"{}",
            )
            .unwrap();
        }
        q.append(&queue::tests::batch(7)).unwrap();
        let builder = Telemetry::builder("acme", "1.0.0")
            .data_dir(&data)
            .config_dir(dir.path().join("config"));
        let s = status(&builder, &|_: &str| None);
        assert_eq!(s.dropped_events, Some(quarter));
        assert!(
            s.to_string()
                .contains(&format!("dropped events: {quarter}"))
        );
    }

    #[test]
    fn status_shows_the_catalog_and_what_it_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        fs::create_dir(&data).unwrap();
        let mut drops = crate::catalog::Drops::default();
        drops
            .undeclared
            .insert("attribute command:build:typo".into(), 2);
        drops.withheld.insert("measurement files".into(), 1);
        crate::catalog::CatalogState::add_drops(&data, &drops).unwrap();
        fn catalog() -> optel_wire::Catalog {
            crate::CatalogBuilder::new()
                .command("build", "Builds.")
                .build()
        }
        let builder = Telemetry::builder("acme", "1.0.0")
            .data_dir(&data)
            .config_dir(dir.path().join("config"))
            .catalog(catalog);
        let text = status(&builder, &|_: &str| None).to_string();
        for want in [
            format!("event catalog: {}", catalog().hash()).as_str(),
            "dropped as undeclared in the catalog: 2 (attribute command:build:typo ×2)",
            "held back until you have seen them (new data categories): 1 (measurement files ×1)",
        ] {
            assert!(text.contains(want), "no {want:?} in:\n{text}");
        }
    }

    #[test]
    fn status_shows_the_breaker_the_last_error_and_the_daily_cap() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        fs::create_dir(&data).unwrap();
        let breaker = Breaker::new(data.clone());
        let until = optel_wire::Timestamp::now().unix_ms() + 60_000;
        let today = optel_wire::Timestamp::now()
            .unix_ms()
            .div_euclid(86_400_000);
        breaker
            .update(|s| {
                s.failures = 5;
                s.open_until_ms = until;
                s.day = today;
                s.requests = 3;
            })
            .unwrap();
        breaker.record_error("will retry: connection refused");
        let builder = Telemetry::builder("acme", "1.0.0")
            .data_dir(&data)
            .config_dir(dir.path().join("config"))
            .daily_request_cap(3);
        let text = status(&builder, &|_: &str| None).to_string();
        for want in [
            "delivery: paused, circuit breaker open until ",
            "(5 failed attempts in a row)",
            "requests today: 3 of 3: daily cap reached",
            "last error: will retry: connection refused (at ",
        ] {
            assert!(text.contains(want), "no {want:?} in:\n{text}");
        }
    }
}
