//! Operator commands: `optel keys`, `optel purge`, `optel forget`, and the settings of
//! `optel serve` merged from flags, env vars and the TOML config file.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use optel_collector::RateConfig;
use optel_collector::now_ms;
use optel_collector::storage::Store;
use serde::Deserialize;

use crate::args::{ServeArgs, StoreArgs};

/// `optel keys ...`
#[derive(Debug, clap::Subcommand)]
pub enum KeysCommand {
    /// Create another ingest key for a project and print it (shown once). With --browser, a
    /// browser key for web pages: it can only send optel batches, only from the --origin
    /// pages given, and is public by design (it sits in the page).
    Create {
        /// Project name.
        project: String,
        /// Create a browser key (`optel_bk_…`), sent by pages as `POST /v1/events?key=…`.
        #[arg(long, requires = "origin")]
        browser: bool,
        /// An origin the browser key may be used from, as the browser sends it
        /// (`https://app.example`, `http://localhost:5173`); repeat for several.
        #[arg(long, value_name = "ORIGIN", requires = "browser")]
        origin: Vec<String>,
        #[command(flatten)]
        #[allow(missing_docs)]
        store: StoreArgs,
    },
    /// Revoke an ingest key: running collectors refuse it within a second.
    Revoke {
        /// The key (`optel_ik_...`).
        key: String,
        #[command(flatten)]
        #[allow(missing_docs)]
        store: StoreArgs,
    },
}

/// Flags of `optel purge`.
#[derive(Debug, clap::Args)]
pub struct PurgeArgs {
    /// Delete events older than this, e.g. 400d, 90d.
    #[arg(long, value_name = "AGE", value_parser = crate::args::parse_since)]
    pub older_than: Duration,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub store: StoreArgs,
}

/// Flags of `optel forget`.
#[derive(Debug, clap::Args)]
pub struct ForgetArgs {
    /// Install pseudonyms to delete (as shown in `telemetry preview`).
    #[arg(required = true)]
    pub pseudonyms: Vec<String>,
    /// Only in this project (default: every project).
    #[arg(long)]
    pub project: Option<String>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub store: StoreArgs,
}

pub(crate) fn keys(cmd: KeysCommand) -> Result<()> {
    match cmd {
        KeysCommand::Create {
            project,
            browser,
            origin,
            store,
        } => {
            for o in &origin {
                optel_collector::check_origin(o).map_err(anyhow::Error::msg)?;
            }
            let key = if browser {
                optel_collector::generate_browser_key()
            } else {
                optel_collector::generate_ingest_key()
            }
            .context("cannot generate an ingest key")?;
            store.open()?.add_key_with_origins(
                &project,
                &optel_collector::hash_key(&key),
                &origin,
                now_ms(),
            )?;
            let mut out = std::io::stdout().lock();
            let what = if browser {
                format!("browser key for {}", origin.join(", "))
            } else {
                "ingest key".to_owned()
            };
            writeln!(
                out,
                "new {what} of project {project:?} (shown once, store it now):"
            )?;
            writeln!(out, "{key}")?;
        }
        KeysCommand::Revoke { key, store } => {
            if !store
                .open()?
                .revoke_key(&optel_collector::hash_key(&key), now_ms())?
            {
                bail!("no active ingest key matches: check the key, it may be revoked already");
            }
            writeln!(std::io::stdout(), "revoked")?;
        }
    }
    Ok(())
}

pub(crate) fn purge(args: PurgeArgs) -> Result<()> {
    let store = args.store.open()?;
    let cutoff = now_ms() - i64::try_from(args.older_than.as_millis()).unwrap_or(i64::MAX);
    let done = store.purge_before(cutoff)?;
    writeln!(
        std::io::stdout(),
        "deleted {} events and {} rollup rows older than {}",
        done.events,
        done.rollup_rows,
        optel_wire::Timestamp::from_unix_ms(cutoff)
    )?;
    Ok(())
}

pub(crate) fn forget(args: ForgetArgs) -> Result<()> {
    let store = args.store.open()?;
    let project = match &args.project {
        Some(name) => Some(
            store
                .project_by_name(name)?
                .with_context(|| format!("no project named {name:?}"))?
                .id,
        ),
        None => None,
    };
    let n = store.forget(project, &args.pseudonyms)?;
    writeln!(std::io::stdout(), "deleted {n} events")?;
    Ok(())
}

/// The `--config` file: every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    database: Option<String>,
    admin_token: Option<String>,
    k_anonymity: Option<u64>,
    rate_per_key: Option<u32>,
    rate_per_addr: Option<u32>,
    rate_per_browser_key: Option<u32>,
    queue: Option<usize>,
    retention: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    header_timeout: Option<String>,
    body_timeout: Option<String>,
    tls_handshake_timeout: Option<String>,
    max_connections: Option<usize>,
    body_memory_mib: Option<u64>,
    shutdown_timeout: Option<String>,
    durability: Option<crate::args::Durability>,
    log_level: Option<String>,
    alert_every: Option<String>,
    alert_ingest_stopped_after: Option<String>,
}

/// The certificate chain and key files of `optel serve --tls-cert --tls-key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Settings of `optel serve` after merging flags/env over the config file over defaults.
#[derive(Debug)]
pub(crate) struct ServeConfig {
    pub listen: SocketAddr,
    pub store: StoreArgs,
    pub admin_token: Option<String>,
    pub k_anonymity: u64,
    pub queue: usize,
    pub tls: Option<TlsFiles>,
    pub server: optel_collector::ServerConfig,
    pub durability: crate::args::Durability,
    pub live: LiveSettings,
}

/// The settings of `optel serve` that a reload (SIGHUP, a change of the `--config` file)
/// applies without a restart.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LiveSettings {
    /// Ingest rate limits.
    pub rates: RateConfig,
    /// Retention of the hourly purge; `None` keeps everything.
    pub retention: Option<Duration>,
    /// Log filter (`OPTEL_LOG` wins over the file's `log_level`), default `info`.
    pub log_level: String,
    /// Alert evaluation.
    pub alerts: optel_collector::alerts::AlertSettings,
}

impl ServeConfig {
    /// The settings a reload to `next` would change but cannot (they need a restart).
    pub(crate) fn restart_only_changes(&self, next: &Self) -> Vec<&'static str> {
        let mut out = Vec::new();
        let mut check = |changed: bool, key| {
            if changed {
                out.push(key);
            }
        };
        check(self.listen != next.listen, "listen");
        check(
            self.store.data_dir != next.store.data_dir
                || self.store.database != next.store.database,
            "data_dir/database",
        );
        check(self.admin_token != next.admin_token, "admin_token");
        check(self.k_anonymity != next.k_anonymity, "k_anonymity");
        check(self.queue != next.queue, "queue");
        check(self.tls != next.tls, "tls_cert/tls_key");
        check(
            self.server != next.server,
            "timeouts/body_memory_mib/max_connections",
        );
        check(self.durability != next.durability, "durability");
        out
    }
}

impl ServeConfig {
    /// Merges flags and env vars over the `--config` file over defaults.
    ///
    /// # Errors
    /// The file cannot be read or parsed, or a value is invalid.
    pub(crate) fn resolve(args: ServeArgs) -> Result<Self> {
        let file = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read config file {}", path.display()))?;
                toml::from_str::<FileConfig>(&text)
                    .with_context(|| format!("config file {} is not valid", path.display()))?
            }
            None => FileConfig::default(),
        };
        let defaults = RateConfig::default();
        let retention = args
            .retention
            .or(file.retention)
            .unwrap_or_else(|| "400d".into());
        let retention = if retention == "off" {
            None
        } else {
            Some(crate::args::parse_since(&retention).map_err(anyhow::Error::msg)?)
        };
        let tls = match (
            args.tls_cert.or(file.tls_cert),
            args.tls_key.or(file.tls_key),
        ) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
            (None, None) => None,
            (Some(_), None) => bail!(
                "a TLS certificate is set but no key: pass its private key with --tls-key, \
                 OPTEL_TLS_KEY or `tls_key` in the config file"
            ),
            (None, Some(_)) => bail!(
                "a TLS key is set but no certificate: pass the certificate chain with \
                 --tls-cert, OPTEL_TLS_CERT or `tls_cert` in the config file"
            ),
        };
        let mut alerts = optel_collector::alerts::AlertSettings::default();
        for (key, text, slot) in [
            ("alert_every", file.alert_every, &mut alerts.every),
            (
                "alert_ingest_stopped_after",
                file.alert_ingest_stopped_after,
                &mut alerts.ingest_stopped_after,
            ),
        ] {
            if let Some(text) = text {
                *slot = crate::args::parse_duration(&text)
                    .map_err(|e| anyhow::anyhow!("config file key `{key}`: {e}"))?;
            }
        }
        let log_level = std::env::var("OPTEL_LOG")
            .ok()
            .or(file.log_level)
            .unwrap_or_else(|| "info".into());
        tracing_subscriber::EnvFilter::try_new(&log_level)
            .with_context(|| format!("log level {log_level:?} is not a valid filter: use e.g. info, debug, or optel_collector=debug,info"))?;
        let mut server = optel_collector::ServerConfig::default();
        let duration =
            |flag: Option<Duration>, file: Option<String>, key: &str, default| match (flag, file) {
                (Some(d), _) => Ok(d),
                (None, Some(text)) => crate::args::parse_duration(&text)
                    .map_err(|e| anyhow::anyhow!("config file key `{key}`: {e}")),
                (None, None) => Ok(default),
            };
        server.header_timeout = duration(
            args.header_timeout,
            file.header_timeout,
            "header_timeout",
            server.header_timeout,
        )?;
        server.body_timeout = duration(
            args.body_timeout,
            file.body_timeout,
            "body_timeout",
            server.body_timeout,
        )?;
        server.tls_handshake_timeout = duration(
            args.tls_handshake_timeout,
            file.tls_handshake_timeout,
            "tls_handshake_timeout",
            server.tls_handshake_timeout,
        )?;
        server.shutdown_timeout = duration(
            args.shutdown_timeout,
            file.shutdown_timeout,
            "shutdown_timeout",
            server.shutdown_timeout,
        )?;
        if let Some(mib) = args.body_memory_mib.or(file.body_memory_mib) {
            server.body_memory = usize::try_from(mib.max(8) << 20).unwrap_or(usize::MAX);
        }
        server.max_connections = args
            .max_connections
            .or(file.max_connections)
            .unwrap_or(server.max_connections);
        let rates = RateConfig {
            per_key: args
                .rate_per_key
                .or(file.rate_per_key)
                .unwrap_or(defaults.per_key),
            per_addr: args
                .rate_per_addr
                .or(file.rate_per_addr)
                .unwrap_or(defaults.per_addr),
            per_browser_key: args
                .rate_per_browser_key
                .or(file.rate_per_browser_key)
                .unwrap_or(defaults.per_browser_key),
        };
        Ok(Self {
            live: LiveSettings {
                rates,
                retention,
                log_level,
                alerts,
            },
            server,
            durability: args.durability.or(file.durability).unwrap_or_default(),
            listen: args
                .listen
                .or(file.listen)
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 4318))),
            store: StoreArgs {
                data_dir: args.store.data_dir.or(file.data_dir),
                database: args.store.database.or(file.database),
            },
            admin_token: args.admin_token.or(file.admin_token),
            k_anonymity: args
                .k_anonymity
                .or(file.k_anonymity)
                .unwrap_or(optel_collector::DEFAULT_K_ANONYMITY)
                .max(1),
            queue: args
                .queue
                .or(file.queue)
                .unwrap_or(optel_collector::DEFAULT_QUEUE),
            tls,
        })
    }
}

/// Purges events older than the retention `retention()` returns at each round (`None`: keep
/// everything), now and then every hour.
pub(crate) async fn retention_task(
    store: Arc<dyn Store>,
    retention: impl Fn() -> Option<Duration> + Send + 'static,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(3_600));
    loop {
        tick.tick().await;
        let Some(retention) = retention() else {
            continue;
        };
        let store = store.clone();
        let cutoff = now_ms() - i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
        match tokio::task::spawn_blocking(move || store.purge_before(cutoff)).await {
            Ok(Ok(done)) => tracing::info!(
                events = done.events,
                rollup_rows = done.rollup_rows,
                "retention purge"
            ),
            Ok(Err(e)) => tracing::warn!(error = %e, "retention purge failed"),
            Err(e) => tracing::warn!(error = %e, "retention purge task failed"),
        }
    }
}
