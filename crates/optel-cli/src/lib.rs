//! The `optel` command: `serve`, `projects`, `keys`, `stats`, `purge`, `forget`, `bench`, `demo`.
//!
//! Raw flags are parsed by clap ([`Cli`]), then each command turns them into validated settings
//! and runs. [`main_exit_code`] maps the result to an exit code: 0 on success, 1 on error (the
//! whole cause chain printed to stderr), 2 on a usage error.

mod bench;
mod demo;
pub mod loopback;
mod ops;
mod stats;
pub mod upload;

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use optel_collector::now_ms;
use optel_collector::storage::Store;

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
    Serve(ServeArgs),
    /// Create, list, delete projects (one per instrumented tool); switch their public view.
    #[command(subcommand)]
    Projects(ProjectsCommand),
    /// Create and revoke ingest keys.
    #[command(subcommand)]
    Keys(ops::KeysCommand),
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
        optel_collector::storage::open(self.database.as_deref(), &self.dir())
            .with_context(|| format!("cannot open the optel database {}", self.describe()))
    }
}

/// Flags of `optel serve`. Each may also come from the `--config` TOML file (same names, with
/// underscores); flags and env vars win over the file.
#[derive(Debug, Default, clap::Args)]
pub struct ServeArgs {
    /// TOML config file with any of: listen, data_dir, database, admin_token, k_anonymity,
    /// rate_per_key, rate_per_addr, queue, retention, tls_cert, tls_key.
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

fn parse_since(s: &str) -> Result<std::time::Duration, String> {
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
    /// Path of the `acme` binary; default: next to this binary, built with cargo if missing.
    #[arg(long, value_name = "PATH")]
    pub acme: Option<PathBuf>,
    /// Directory for the demo database; default: a new temporary directory.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Exit after printing the stats instead of serving until Ctrl-C.
    #[arg(long)]
    pub no_serve: bool,
}

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
        Command::Serve(args) => serve(args),
        Command::Projects(ProjectsCommand::Create { name, store }) => {
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
        Command::Projects(ProjectsCommand::List { store }) => {
            let store = store.open()?;
            let mut out = std::io::stdout().lock();
            for p in store.list_projects()? {
                writeln!(
                    out,
                    "{}\tcreated {}{}",
                    p.name,
                    optel_wire::Timestamp::from_unix_ms(p.created_ms),
                    if p.public { "\tpublic" } else { "" }
                )?;
            }
            Ok(())
        }
        Command::Projects(ProjectsCommand::Delete { name, store }) => {
            if !store.open()?.delete_project(&name)? {
                bail!("no project named {name:?}: list them with `optel projects list`");
            }
            writeln!(
                std::io::stdout(),
                "deleted project {name:?} and all its data"
            )?;
            Ok(())
        }
        Command::Projects(ProjectsCommand::Public { name, state, store }) => {
            store.open()?.set_public(&name, state == "on")?;
            writeln!(std::io::stdout(), "public view of {name:?} is {state}")?;
            Ok(())
        }
        Command::Keys(cmd) => ops::keys(cmd),
        Command::Purge(args) => ops::purge(args),
        Command::Forget(args) => ops::forget(args),
        Command::Bench(cmd) => bench::run(cmd),
        Command::Stats(args) => stats::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Upload(args) => upload::run(args),
    }
}

/// Creates a project with a new ingest key and returns the key.
///
/// # Errors
/// The name is invalid or taken, or the store fails.
pub fn create_project(store: &dyn Store, name: &str) -> Result<String> {
    if !optel_wire::is_valid_name(name) {
        bail!("project name {name:?} is not allowed: use [A-Za-z0-9_.:-], at most 64 bytes");
    }
    let key = optel_collector::generate_ingest_key().context("cannot generate an ingest key")?;
    store.create_project(name, &optel_collector::hash_key(&key), now_ms())?;
    Ok(key)
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("optel-collector")
        .build()
        .context("cannot start the async runtime")
}

pub(crate) fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("OPTEL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn serve(args: ServeArgs) -> Result<()> {
    init_logging();
    let config = ops::ServeConfig::resolve(args)?;
    // Certificate problems are reported before anything is opened or created.
    let tls = config.tls.as_ref().map(load_tls).transpose()?;
    let store = config.store.open()?;
    let described = config.store.describe();
    let mut state = optel_collector::AppState::with_config(
        store.clone(),
        config.admin_token.map(Into::into),
        config.rates,
        config.queue,
    )
    .context("cannot start the writer thread")?;
    state.k_anonymity = config.k_anonymity;
    let rt = runtime()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| {
                format!(
                    "cannot listen on {}: is another collector running?",
                    config.listen
                )
            })?;
        let addr = listener.local_addr()?;
        if let Some(retention) = config.retention {
            tokio::spawn(ops::retention_task(store, retention));
        }
        #[cfg(feature = "tls")]
        if let Some(tls) = &tls {
            watch_certificate(tls);
        }
        let scheme = if tls.is_some() { "https" } else { "http" };
        tracing::info!(%addr, db = %described, scheme, "optel collector listening");
        eprintln!("optel collector listening on {scheme}://{addr} (database {described})");
        serve_with(listener, tls, state).await?;
        tracing::info!("optel collector stopped");
        Ok(())
    })
}

#[cfg(feature = "tls")]
type Tls = optel_collector::tls::TlsConfig;
#[cfg(not(feature = "tls"))]
type Tls = std::convert::Infallible;

#[cfg(feature = "tls")]
fn load_tls(files: &ops::TlsFiles) -> Result<Tls> {
    Ok(optel_collector::tls::TlsConfig::from_pem_files(
        &files.cert,
        &files.key,
    )?)
}

/// Serves a renewed certificate without a restart: reloads it on `SIGHUP` (what
/// `systemctl reload` and certbot's deploy hooks send) and when its files change (checked every
/// [`optel_collector::tls::RELOAD_CHECK_EVERY`]).
#[cfg(feature = "tls")]
fn watch_certificate(tls: &Tls) {
    tokio::spawn(
        tls.clone()
            .reload_when_changed(optel_collector::tls::RELOAD_CHECK_EVERY),
    );
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::hangup()) {
            Ok(mut hangups) => {
                let tls = tls.clone();
                tokio::spawn(async move {
                    while hangups.recv().await.is_some() {
                        tls.reload_and_log("SIGHUP");
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP: reload by file change only")
            }
        }
    }
}

#[cfg(not(feature = "tls"))]
fn load_tls(files: &ops::TlsFiles) -> Result<Tls> {
    bail!(
        "cannot serve HTTPS with {} and {}: this optel binary was built without the `tls` \
         feature; rebuild it with its default features (cargo install --path crates/optel-cli) \
         or put a TLS-terminating proxy in front of the collector",
        files.cert.display(),
        files.key.display()
    )
}

async fn serve_with(
    listener: tokio::net::TcpListener,
    tls: Option<Tls>,
    state: optel_collector::AppState,
) -> std::io::Result<()> {
    match tls {
        #[cfg(feature = "tls")]
        Some(tls) => optel_collector::serve_tls(listener, &tls, state, shutdown_signal()).await,
        #[cfg(not(feature = "tls"))]
        Some(never) => match never {},
        None => optel_collector::serve(listener, state, shutdown_signal()).await,
    }
}

/// Completes on Ctrl-C or SIGTERM.
pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

/// A command for an instrumented tool `bin` run as a new user whose home is `home`, in a clean
/// environment: only `PATH` and `HOME`. Nothing of the caller's environment leaks in: no
/// telemetry switches (`DO_NOT_TRACK`, `<TOOL>_TELEMETRY*`), no proxy, no XDG directories, and no
/// CI variables, which would make every run share one CI pseudonym. Used by the demo, the
/// end-to-end tests and the exit-latency harness to simulate separate installs.
pub fn tool_command(bin: &Path, home: &Path) -> std::process::Command {
    let mut cmd = std::process::Command::new(bin);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home);
    cmd
}

/// Finds an example binary (such as `acme`) built in the same cargo target directory as this
/// process: beside the current executable, or one level up (test binaries live in `deps/`).
/// When this process was started by cargo (`CARGO` is set: `cargo test`, `cargo run`), first
/// runs `cargo build -p <name>` in the same profile, so that a test never runs a binary built
/// from older sources (`cargo test -p optel-cli` does not rebuild other packages' binaries);
/// when it is up to date this takes a fraction of a second.
///
/// # Errors
/// The binary is missing and cannot be built; the message says how to build it.
pub fn locate_example_binary(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find the current executable")?;
    let file = format!("{name}{}", std::env::consts::EXE_SUFFIX);
    let dirs: Vec<&Path> = exe.ancestors().skip(1).take(2).collect();
    let find = || dirs.iter().map(|d| d.join(&file)).find(|p| p.is_file());
    // Built at most once per process and name; concurrent callers wait for that build.
    static BUILT: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let mut built = BUILT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Ok(cargo) = std::env::var("CARGO")
        && !built.iter().any(|b| b == name)
    {
        let release = dirs
            .iter()
            .any(|d| d.file_name().is_some_and(|n| n == "release"));
        if find().is_none() {
            eprintln!("building the example tool `{name}` (cargo build -p {name})...");
        }
        let mut cmd = std::process::Command::new(cargo);
        cmd.args(["build", "--quiet", "-p", name]);
        if release {
            cmd.arg("--release");
        }
        let status = cmd.status().context("cannot run cargo")?;
        if !status.success() {
            bail!("`cargo build -p {name}` failed: see its output above");
        }
        built.push(name.to_owned());
    }
    drop(built);
    if let Some(found) = find() {
        return Ok(found);
    }
    bail!(
        "cannot find the example binary `{name}` next to {}: build it with `cargo build -p {name}` \
         or pass its path with --acme PATH",
        exe.display()
    )
}
