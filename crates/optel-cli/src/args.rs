//! The command line as clap parses it: raw flags, before each command turns them into validated
//! settings. The flags of `keys`, `purge`, `forget`, `bench` and `upload` live beside their
//! commands.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use optel_collector::storage::Store;

use crate::{bench, ops, upload};

/// Privacy-first usage telemetry for CLI tools and libraries: run a collector and read what
/// your users' tools report.
#[derive(Debug, Parser)]
#[command(
    name = "optel",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the collector: ingest optel batches on POST /v1/events and answer stats queries.
    Serve(Box<ServeArgs>),
    /// Create, list, delete projects (one per instrumented tool); switch their public view.
    #[command(subcommand)]
    Projects(ProjectsCommand),
    /// Create and revoke ingest keys.
    #[command(subcommand)]
    Keys(ops::KeysCommand),
    /// Webhooks posted when a project's release health changes: add, list, remove, test.
    #[command(subcommand)]
    Alerts(crate::alerts::AlertsCommand),
    /// Delete events older than a retention period (and their daily rollups).
    Purge(ops::PurgeArgs),
    /// Delete every event of install pseudonyms (a user's deletion request).
    Forget(ops::ForgetArgs),
    /// Load generator and benchmarks of the collector.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Print usage statistics of a project: top commands, failures, installs, versions, OS.
    Stats(StatsArgs),
    /// Start a collector, drive the instrumented example tool `acme` as several simulated
    /// installs, print the stats, and keep serving until Ctrl-C.
    Demo(DemoArgs),
    /// Send JSONL ledger files (one optel batch per line) to a collector or an OTLP endpoint.
    Upload(upload::UploadArgs),
}

/// Where the collector keeps its data: `--database postgres://...` selects PostgreSQL,
/// otherwise the SQLite database in `--data-dir`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct StoreArgs {
    /// Directory of the embedded SQLite database (created if missing) [default: ./optel-data].
    #[arg(long, value_name = "DIR", env = "OPTEL_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// PostgreSQL URL (`postgres://USER@HOST:PORT/DB`); when set, --data-dir is not used.
    #[arg(
        long,
        value_name = "URL",
        env = "OPTEL_DATABASE_URL",
        hide_env_values = true
    )]
    pub database: Option<String>,
}

impl StoreArgs {
    /// The SQLite directory in effect.
    pub fn dir(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("./optel-data"))
    }

    /// A printable name of the store (a URL without its password).
    pub fn describe(&self) -> String {
        match &self.database {
            Some(url) => {
                let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
                let rest = match rest.split_once('@') {
                    Some((user, host)) => {
                        format!("{}@{host}", user.split(':').next().unwrap_or(""))
                    }
                    None => rest.to_owned(),
                };
                format!("{scheme}://{rest}")
            }
            None => self.dir().join("optel.db").display().to_string(),
        }
    }

    /// Opens the store.
    ///
    /// # Errors
    /// The database cannot be opened or migrated.
    pub fn open(&self) -> Result<Arc<dyn Store>> {
        self.open_with(Durability::default())
    }

    /// Opens the store with commits of `durability`.
    ///
    /// # Errors
    /// The database cannot be opened or migrated.
    pub fn open_with(&self, durability: Durability) -> Result<Arc<dyn Store>> {
        optel_collector::storage::open_with(
            self.database.as_deref(),
            &self.dir(),
            durability.into(),
        )
        .with_context(|| format!("cannot open the optel database {}", self.describe()))
    }
}

/// What a 2xx answer to an ingest request survives (docs/adr/006-durability.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Durability {
    /// Each commit is synced to disk before the answer: survives an OS crash or power cut
    /// (SQLite synchronous=FULL; PostgreSQL synchronous_commit=on).
    Fsync,
    /// Each commit survives a crash of the collector, not of the OS or a power cut (SQLite
    /// synchronous=NORMAL in WAL mode; PostgreSQL synchronous_commit=off).
    #[default]
    CrashSafe,
}

impl From<Durability> for optel_collector::storage::Durability {
    fn from(d: Durability) -> Self {
        match d {
            Durability::Fsync => Self::Fsync,
            Durability::CrashSafe => Self::CrashSafe,
        }
    }
}

/// Flags of `optel serve`. Each may also come from the `--config` TOML file (same names, with
/// underscores); flags and env vars win over the file.
#[derive(Debug, Default, Clone, clap::Args)]
pub struct ServeArgs {
    /// TOML config file with any of: listen, data_dir, database, admin_token, k_anonymity,
    /// rate_per_key, rate_per_addr, rate_per_browser_key, queue, retention, tls_cert, tls_key,
    /// header_timeout, body_timeout, body_memory_mib, tls_handshake_timeout, max_connections,
    /// shutdown_timeout, durability, log_level (a filter such as `info` or `debug`; OPTEL_LOG
    /// wins), alert_every [default: 60s], alert_ingest_stopped_after [default: 1h],
    /// otlp_grpc_listen.
    ///
    /// Live reload: on SIGHUP and when the file changes (checked every 5 s) the collector
    /// reads it again and applies rate_per_key, rate_per_addr, rate_per_browser_key,
    /// retention, log_level, alert_every and alert_ingest_stopped_after to the next request or
    /// round, without dropping a connection (a key also given as a flag or env var keeps that
    /// value); a file that does not parse is logged and the previous configuration stays. The other keys need a restart (a reload that changes them
    /// logs which). The TLS pair reloads on its own (see --tls-cert); browser-key origins and
    /// alert hooks are read from the database and apply without a reload.
    #[arg(long, value_name = "FILE", env = "OPTEL_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address and port to listen on (4318 is the OTLP/HTTP port) [default: 127.0.0.1:4318].
    #[arg(long, value_name = "ADDR", env = "OPTEL_LISTEN")]
    pub listen: Option<SocketAddr>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub store: StoreArgs,
    /// Token that guards the query routes (GET /v1/projects/...); without one they are off.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "OPTEL_ADMIN_TOKEN",
        hide_env_values = true
    )]
    pub admin_token: Option<String>,
    /// k of the public view: cells with fewer distinct installs are hidden [default: 5].
    #[arg(long, value_name = "K", env = "OPTEL_K_ANONYMITY")]
    pub k_anonymity: Option<u64>,
    /// Ingest requests per second per key, 0 = unlimited [default: 1000].
    #[arg(long, value_name = "N", env = "OPTEL_RATE_PER_KEY")]
    pub rate_per_key: Option<u32>,
    /// Ingest requests per second per client address, 0 = unlimited [default: 50].
    #[arg(long, value_name = "N", env = "OPTEL_RATE_PER_ADDR")]
    pub rate_per_addr: Option<u32>,
    /// Ingest requests per second per browser key, 0 = unlimited [default: 200].
    #[arg(long, value_name = "N", env = "OPTEL_RATE_PER_BROWSER_KEY")]
    pub rate_per_browser_key: Option<u32>,
    /// Batches the writer queue holds before answering 503 [default: 256].
    #[arg(long, value_name = "N", env = "OPTEL_QUEUE")]
    pub queue: Option<usize>,
    /// Events older than this are purged every hour, e.g. 400d; `off` keeps everything
    /// [default: 400d].
    #[arg(long, value_name = "AGE", env = "OPTEL_RETENTION")]
    pub retention: Option<String>,
    /// PEM certificate chain (server certificate first) to serve HTTPS on the same port;
    /// needs --tls-key. Without both, the collector speaks plain HTTP. Both files are read
    /// again on SIGHUP and when they change (checked every 60 s): no restart after a renewal.
    #[arg(long, value_name = "FILE", env = "OPTEL_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert (PKCS#8, PKCS#1 or SEC1, unencrypted).
    #[arg(long, value_name = "FILE", env = "OPTEL_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Longest wait for a request's headers, from the connection's start or the previous
    /// answer; also how long an idle keep-alive connection stays open [default: 10s].
    #[arg(long, value_name = "DURATION", env = "OPTEL_HEADER_TIMEOUT", value_parser = parse_duration)]
    pub header_timeout: Option<std::time::Duration>,
    /// Longest time to receive a request body once its headers arrived (408 past it)
    /// [default: 30s].
    #[arg(long, value_name = "DURATION", env = "OPTEL_BODY_TIMEOUT", value_parser = parse_duration)]
    pub body_timeout: Option<std::time::Duration>,
    /// Most MiB of request bodies held in memory at once, over all requests; past it a body is
    /// refused (503, Retry-After) before it is read [default: 256].
    #[arg(long, value_name = "MIB", env = "OPTEL_BODY_MEMORY_MIB", value_parser = clap::value_parser!(u64).range(8..=1_048_576))]
    pub body_memory_mib: Option<u64>,
    /// Longest TLS handshake [default: 10s].
    #[arg(long, value_name = "DURATION", env = "OPTEL_TLS_HANDSHAKE_TIMEOUT", value_parser = parse_duration)]
    pub tls_handshake_timeout: Option<std::time::Duration>,
    /// Most connections at once; past it a new connection replaces the oldest idle one, or is
    /// refused when all are busy. 0 = the open-file limit minus 64, at most 10000 [default: 0].
    #[arg(long, value_name = "N", env = "OPTEL_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// On SIGTERM or Ctrl-C, how long requests in progress may take to finish before they are
    /// cut off; the writer then gets as long again to commit what it holds [default: 10s].
    #[arg(long, value_name = "DURATION", env = "OPTEL_SHUTDOWN_TIMEOUT", value_parser = parse_duration)]
    pub shutdown_timeout: Option<std::time::Duration>,
    /// What a 2xx answer guarantees: `fsync` (on disk, survives a power cut) or `crash-safe`
    /// (survives a crash of the collector, not of the OS) [default: crash-safe].
    #[arg(long, value_enum, env = "OPTEL_DURABILITY")]
    pub durability: Option<Durability>,
    /// Also serve OTLP/gRPC ingest on this address (4317 is the OTLP/gRPC port), plain HTTP/2
    /// with the same ingest keys, limits and mapping; needs a binary built with the
    /// `otlp-grpc` feature [default: off].
    #[arg(long, value_name = "ADDR", env = "OPTEL_OTLP_GRPC_LISTEN")]
    pub otlp_grpc_listen: Option<SocketAddr>,
}

/// A duration such as `10s`, `500ms` or `2m`.
pub(crate) fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("{s:?} is not a duration ({e}): write e.g. 10s, 500ms or 2m"))
}

/// `optel projects ...`
#[derive(Debug, Subcommand)]
pub enum ProjectsCommand {
    /// Create a project and print its ingest key (the last line of the output).
    Create {
        /// Project name, usually the tool's name: [A-Za-z0-9_.:-], at most 64 bytes.
        name: String,
        #[command(flatten)]
        #[allow(missing_docs)]
        store: StoreArgs,
    },
    /// Delete a project with its keys, events and rollups.
    Delete {
        /// Project name.
        name: String,
        #[command(flatten)]
        #[allow(missing_docs)]
        store: StoreArgs,
    },
    /// Switch the k-anonymous public view (/public/v1/projects/NAME/...) on or off.
    Public {
        /// Project name.
        name: String,
        /// `on` or `off`.
        #[arg(value_parser = ["on", "off"])]
        state: String,
        #[command(flatten)]
        #[allow(missing_docs)]
        store: StoreArgs,
    },
    /// Switch the differential-privacy mode of the public view: noise on every public number,
    /// a privacy budget per UTC day (docs/adr/012-differential-privacy-public-views.md).
    Dp {
        /// Project name.
        name: String,
        /// `epsilon=E[,daily-budget=B]` (ε per fresh answer, 0.01 to 10; budget per UTC day,
        /// ε to 1000, default 20·ε), or `off`.
        settings: String,
        #[command(flatten)]
        #[allow(missing_docs)]
        store: StoreArgs,
    },
    /// List projects.
    List {
        #[command(flatten)]
        #[allow(missing_docs)]
        store: StoreArgs,
    },
}

/// Output formats of `optel stats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned tables for people.
    Table,
    /// One JSON object, for scripts.
    Json,
    /// One CSV table in long form (`kind,name,detail,count,...`), for spreadsheets.
    Csv,
}

/// Flags of `optel stats`.
#[derive(Debug, clap::Args)]
pub struct StatsArgs {
    /// Project name; may be left out when the collector has only one project.
    #[arg(long)]
    pub project: Option<String>,
    /// Read a running collector at this URL (e.g. http://127.0.0.1:4318) instead of a local
    /// data directory; its admin token is read from the OPTEL_ADMIN_TOKEN env var.
    #[arg(long, value_name = "URL", env = "OPTEL_SERVER")]
    pub server: Option<String>,
    /// Colour the tables: auto (on a terminal, unless NO_COLOR is set), always, never.
    #[arg(long, value_name = "WHEN", default_value = "auto")]
    pub color: clap::ColorChoice,
    /// How far back to look: e.g. 24h, 7d, 30d.
    #[arg(long, default_value = "24h", value_parser = parse_since)]
    pub since: std::time::Duration,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub store: StoreArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

pub(crate) fn parse_since(s: &str) -> Result<std::time::Duration, String> {
    optel_collector::parse_lookback(s)
}

/// Flags of `optel demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Address for the demo collector; if the port is taken, a free one is used.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:4318")]
    pub listen: SocketAddr,
    /// Number of simulated installs (each with its own HOME).
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub installs: u32,
    /// Path of the `acme` binary; default: next to this binary (`cargo build -p acme` puts it
    /// there when both are built in the same target directory and profile).
    #[arg(long, value_name = "PATH")]
    pub acme: Option<PathBuf>,
    /// Directory for the demo database; default: a new temporary directory.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Exit after printing the stats instead of serving until Ctrl-C.
    #[arg(long)]
    pub no_serve: bool,
}
