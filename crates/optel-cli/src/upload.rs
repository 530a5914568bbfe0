//! `optel upload`: send JSONL ledger files to a collector or an OTLP endpoint, so that machines
//! that only record telemetry to a local ledger, and never send it themselves, can still have
//! it counted later.
//!
//! A ledger file is `*.jsonl`; each line is one [`optel_wire::Batch`] as JSON (the format the
//! SDK's JSONL ledger exporter writes). Files modified within `--since` are read line by line;
//! lines that are too long, not JSON or not a valid batch are skipped and counted. Batches of
//! the same install are merged into requests of at most [`MAX_REQUEST_EVENTS`] events, sent
//! gzip-compressed, with retries on retryable failures. Re-uploading the same files is
//! harmless with an optel collector: it ignores event ids it already has.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail};
use optel::export::{ExportError, Exporter, HttpExporter};
use optel_wire::{Batch, limits};

/// Most events in one upload request.
pub(crate) const MAX_REQUEST_EVENTS: usize = 500;
/// Attempts per request before giving up on a retryable failure.
const ATTEMPTS: u32 = 5;
/// Timeout of one request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Flags of `optel upload`.
#[derive(Debug, clap::Args)]
pub struct UploadArgs {
    /// Ledger files (`*.jsonl`) or directories holding them (not searched recursively).
    #[arg(value_name = "PATH", default_value = ".")]
    pub paths: Vec<PathBuf>,
    /// Only files modified this recently: e.g. 24h, 7d, 30d.
    #[arg(long, default_value = "7d", value_parser = crate::args::parse_since)]
    pub since: Duration,
    /// The collector's base URL (events go to `<URL>/v1/events`), or with `--otlp` the OTLP/HTTP
    /// base URL (signals go to `<URL>/v1/metrics`, `/v1/traces`, `/v1/logs`).
    #[arg(
        long,
        value_name = "URL",
        env = "OPTEL_UPLOAD_ENDPOINT",
        default_value = "http://127.0.0.1:4318"
    )]
    pub endpoint: String,
    /// The project's ingest key; with `--otlp` sent as `Authorization: Bearer KEY` when given
    /// (what optel's collector needs on its OTLP routes too).
    #[arg(
        long,
        value_name = "KEY",
        env = "OPTEL_INGEST_KEY",
        hide_env_values = true
    )]
    pub key: Option<String>,
    /// Send OTLP/HTTP instead of optel batches (commands as spans, other events as log
    /// records: docs/otlp.md).
    #[arg(long)]
    pub otlp: bool,
    /// OTLP encoding, with `--otlp`.
    #[arg(long, value_enum, default_value = "http/protobuf", requires = "otlp")]
    pub protocol: OtlpProtocolArg,
    /// OTLP body compression, with `--otlp`.
    #[arg(long, value_enum, default_value = "gzip", requires = "otlp")]
    pub compression: CompressionArg,
}

/// `--protocol` of `optel upload --otlp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OtlpProtocolArg {
    /// Binary protobuf (`application/x-protobuf`).
    #[value(name = "http/protobuf")]
    HttpProtobuf,
    /// The OTLP JSON mapping (`application/json`).
    #[value(name = "http/json")]
    HttpJson,
}

/// `--compression` of `optel upload --otlp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CompressionArg {
    /// gzip.
    Gzip,
    /// Uncompressed.
    None,
}

/// What an upload did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct UploadSummary {
    /// Ledger files read.
    pub files: usize,
    /// Events accepted by the endpoint.
    pub events: usize,
    /// Lines skipped: too long, not JSON, or not a valid batch.
    pub bad_lines: usize,
    /// Events the endpoint refused for good (4xx other than 429).
    pub rejected_events: usize,
    /// OTLP items (spans, log records, data points) an endpoint refused in a partial success.
    pub rejected_items: u64,
}

/// Runs `optel upload`, printing a progress bar on a terminal and a summary on stdout.
///
/// # Errors
/// No ledger file matched, a file cannot be read, the endpoint kept failing, or it refused
/// anything (events, or OTLP items in a partial success): the exit status is then non-zero.
pub(crate) fn run(args: UploadArgs) -> Result<()> {
    let summary = upload(&args, true)?;
    println!(
        "uploaded {} events from {} ledger files to {}{}{}",
        summary.events,
        summary.files,
        args.endpoint,
        if summary.bad_lines > 0 {
            format!("; skipped {} unreadable lines", summary.bad_lines)
        } else {
            String::new()
        },
        if summary.rejected_events > 0 {
            format!(
                "; {} events rejected by the endpoint",
                summary.rejected_events
            )
        } else {
            String::new()
        }
    );
    if summary.rejected_events > 0 || summary.rejected_items > 0 {
        bail!(
            "the endpoint refused {} events and {} OTLP items: its answers say why (run the \
             collector with OPTEL_LOG=debug); fix the ledger or the endpoint and upload again",
            summary.rejected_events,
            summary.rejected_items
        );
    }
    Ok(())
}

/// Uploads the ledger files `args` selects; `progress` shows a bar on stderr (hidden when
/// stderr is not a terminal).
///
/// # Errors
/// As [`run`].
pub(crate) fn upload(args: &UploadArgs, progress: bool) -> Result<UploadSummary> {
    let files = ledger_files(&args.paths, args.since)?;
    if files.is_empty() {
        bail!(
            "no ledger file (*.jsonl) modified in the last {} under {}: pass the ledger directory or a longer --since",
            humantime::format_duration(args.since),
            args.paths
                .iter()
                .map(|p| format!("{:?}", p.display().to_string()))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let otlp = args.otlp.then(|| {
        let mut e = optel::otlp::OtlpExporter::new(&args.endpoint)
            .protocol(match args.protocol {
                OtlpProtocolArg::HttpProtobuf => optel::otlp::OtlpProtocol::HttpProtobuf,
                OtlpProtocolArg::HttpJson => optel::otlp::OtlpProtocol::HttpJson,
            })
            .gzip(args.compression == CompressionArg::Gzip);
        if let Some(key) = &args.key {
            e = e.header("Authorization", &format!("Bearer {key}"));
        }
        e
    });
    let native;
    let exporter: &dyn Exporter = match &otlp {
        Some(e) => e,
        None => {
            let base = args.endpoint.trim_end_matches('/');
            native = HttpExporter::new(
                format!("{base}/v1/events"),
                args.key.clone(),
                concat!("optel-upload/", env!("CARGO_PKG_VERSION")),
            );
            &native
        }
    };
    let total: u64 = files.iter().map(|(_, len)| len).sum();
    let bar = if progress {
        indicatif::ProgressBar::new(total)
    } else {
        indicatif::ProgressBar::hidden()
    };
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {msg}")
    {
        bar.set_style(style);
    }
    let mut summary = UploadSummary {
        files: files.len(),
        ..UploadSummary::default()
    };
    let mut pending: Option<Batch> = None;
    for (path, _) in &files {
        bar.set_message(path.display().to_string());
        let file = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
        let mut reader = BufReader::new(file);
        let mut line = Vec::new();
        loop {
            line.clear();
            // Bounded read: a line longer than the collector's body limit cannot be sent.
            let n = (&mut reader)
                .take(limits::MAX_BODY_BYTES as u64 + 1)
                .read_until(b'\n', &mut line)
                .with_context(|| format!("cannot read {}", path.display()))?;
            if n == 0 {
                break;
            }
            bar.inc(n as u64);
            if line.len() > limits::MAX_BODY_BYTES {
                summary.bad_lines += 1;
                // Skip the rest of the over-long line.
                let mut rest = Vec::new();
                let skipped = reader.read_until(b'\n', &mut rest)?;
                bar.inc(skipped as u64);
                continue;
            }
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let batch = match serde_json::from_slice::<Batch>(&line) {
                Ok(b) if b.validate().is_ok() => b,
                _ => {
                    summary.bad_lines += 1;
                    continue;
                }
            };
            pending = merge(pending, batch, exporter, &mut summary)?;
        }
    }
    if let Some(batch) = pending {
        send(exporter, &batch, &mut summary)?;
    }
    bar.finish_and_clear();
    if let Some(e) = &otlp {
        summary.rejected_items = e.rejected_items();
    }
    Ok(summary)
}

/// Adds `batch` to the pending request, sending the pending one first when the envelope
/// differs or the request would grow past [`MAX_REQUEST_EVENTS`].
fn merge(
    pending: Option<Batch>,
    batch: Batch,
    exporter: &dyn Exporter,
    summary: &mut UploadSummary,
) -> Result<Option<Batch>> {
    let Some(mut current) = pending else {
        return Ok(Some(batch));
    };
    let same = current.service_name == batch.service_name
        && current.service_version == batch.service_version
        && current.pseudonym == batch.pseudonym
        && current.os == batch.os
        && current.arch == batch.arch;
    if same && current.events.len() + batch.events.len() <= MAX_REQUEST_EVENTS {
        current.events.extend(batch.events);
        current.dropped_events += batch.dropped_events;
        return Ok(Some(current));
    }
    send(exporter, &current, summary)?;
    Ok(Some(batch))
}

fn send(exporter: &dyn Exporter, batch: &Batch, summary: &mut UploadSummary) -> Result<()> {
    let mut delay = Duration::from_millis(200);
    for attempt in 1..=ATTEMPTS {
        match exporter.export(batch, REQUEST_TIMEOUT) {
            Ok(()) => {
                summary.events += batch.events.len();
                return Ok(());
            }
            Err(ExportError::Rejected(_)) => {
                summary.rejected_events += batch.events.len();
                return Ok(());
            }
            Err(ExportError::Retryable {
                reason,
                retry_after,
            }) => {
                if attempt == ATTEMPTS {
                    bail!(
                        "upload failed after {ATTEMPTS} attempts ({reason}): check --endpoint and --key, then run the same command again (already uploaded events are not counted twice)"
                    );
                }
                std::thread::sleep(retry_after.unwrap_or(delay).min(Duration::from_secs(30)));
                delay = delay.mul_f64(1.5);
            }
            Err(other) => bail!("upload failed: {other}"),
        }
    }
    Ok(())
}

/// `*.jsonl` files among `paths` (files, or directories read one level deep) modified within
/// `since`, oldest first, with their sizes.
fn ledger_files(paths: &[PathBuf], since: Duration) -> Result<Vec<(PathBuf, u64)>> {
    let cutoff = SystemTime::now()
        .checked_sub(since)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let mut found = Vec::new();
    let mut consider = |path: &Path| -> Result<()> {
        if path.extension().is_none_or(|e| e != "jsonl") {
            return Ok(());
        }
        let meta =
            std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
        let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        if meta.is_file() && modified >= cutoff {
            found.push((modified, path.to_owned(), meta.len()));
        }
        Ok(())
    };
    for path in paths {
        if path.is_dir() {
            let entries = std::fs::read_dir(path)
                .with_context(|| format!("cannot list {}", path.display()))?;
            for entry in entries {
                consider(&entry?.path())?;
            }
        } else {
            consider(path)?;
        }
    }
    found.sort();
    Ok(found.into_iter().map(|(_, p, len)| (p, len)).collect())
}
