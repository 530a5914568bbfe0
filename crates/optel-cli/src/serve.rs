//! `optel serve`: the collector over HTTP or HTTPS until Ctrl-C or SIGTERM, with its
//! certificate, and the live settings of its `--config` file ([`ops::LiveSettings`]), reloaded
//! on SIGHUP and when their files change. The runtime, the log and the shutdown signal are
//! shared with `demo` and `bench`, which run a collector too.

#[cfg(not(feature = "tls"))]
use anyhow::bail;
use anyhow::{Context, Result};

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::args::ServeArgs;
use crate::ops;

/// Runs `optel serve` until Ctrl-C or SIGTERM.
///
/// # Errors
/// The settings are invalid, the certificate or the store cannot be opened, or the address
/// cannot be bound.
pub(crate) fn run(args: ServeArgs) -> Result<()> {
    init_logging();
    let config = ops::ServeConfig::resolve(args.clone())?;
    set_log_filter(&config.live.log_level);
    // Certificate problems are reported before anything is opened or created.
    let tls = config.tls.as_ref().map(load_tls).transpose()?;
    let store = config.store.open_with(config.durability)?;
    let described = config.store.describe();
    let mut state = optel_collector::AppState::with_config(
        store.clone(),
        config.admin_token.clone().map(Into::into),
        config.live.rates,
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
        let live = Arc::new(Mutex::new(config.live.clone()));
        let current = {
            let live = live.clone();
            move || {
                live.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .clone()
            }
        };
        tokio::spawn(ops::retention_task(store.clone(), {
            let current = current.clone();
            move || current().retention
        }));
        tokio::spawn(optel_collector::alerts::run(
            store,
            state.activity.clone(),
            move || current().alerts,
        ));
        if let Some(path) = args.config.clone() {
            tokio::spawn(watch_config(path, args, live, state.clone()));
        }
        #[cfg(feature = "tls")]
        if let Some(tls) = &tls {
            watch_certificate(tls);
        }
        let scheme = if tls.is_some() { "https" } else { "http" };
        let max_connections = config.server.connection_cap();
        let server_config = config.server.clone();
        let durability = optel_collector::storage::Durability::from(config.durability).as_str();
        tracing::info!(%addr, db = %described, scheme, max_connections, durability, "optel collector listening");
        eprintln!("optel collector listening on {scheme}://{addr} (database {described})");
        serve_with(listener, tls, state, server_config).await?;
        tracing::info!("optel collector stopped");
        Ok(())
    })
}

/// How often the `--config` file is checked for a change (its modification time and size).
pub(crate) const CONFIG_CHECK_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Reloads the live settings on SIGHUP and when the `--config` file changes: the file is
/// resolved again with the same flags and env vars (which still win over it); a file that
/// fails is logged and counted, and the previous settings stay. Settings that need a restart
/// are compared with those the collector started with, and a change of them is logged.
async fn watch_config(
    path: PathBuf,
    args: ServeArgs,
    live: Arc<Mutex<ops::LiveSettings>>,
    state: optel_collector::AppState,
) {
    let Ok(started) = ops::ServeConfig::resolve(args.clone()) else {
        return;
    };
    let stamp = |p: &PathBuf| {
        std::fs::metadata(p)
            .ok()
            .map(|m| (m.modified().ok(), m.len()))
    };
    let mut seen = stamp(&path);
    #[cfg(unix)]
    let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(|e| tracing::warn!(error = %e, "cannot listen for SIGHUP: config reload by file change only"))
        .ok();
    let mut tick = tokio::time::interval(CONFIG_CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        #[cfg(unix)]
        let hangup = async {
            match hangups.as_mut() {
                Some(h) => h.recv().await,
                None => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let hangup = std::future::pending::<Option<()>>();
        let why = tokio::select! {
            _ = hangup => "SIGHUP",
            _ = tick.tick() => {
                let now = stamp(&path);
                if now == seen {
                    continue;
                }
                "file changed"
            }
        };
        seen = stamp(&path);
        let next = match ops::ServeConfig::resolve(args.clone()) {
            Ok(next) => next,
            Err(e) => {
                tracing::error!(
                    why,
                    error = format!("{e:#}"),
                    "configuration not reloaded: the previous configuration stays"
                );
                state.metrics.config_reloaded(false);
                continue;
            }
        };
        let ignored = started.restart_only_changes(&next);
        if !ignored.is_empty() {
            tracing::warn!(
                keys = ignored.join(", "),
                "changed settings apply only after a restart"
            );
        }
        state.limits.reconfigure(next.live.rates);
        set_log_filter(&next.live.log_level);
        *live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = next.live.clone();
        state.metrics.config_reloaded(true);
        tracing::info!(
            why,
            rate_per_key = next.live.rates.per_key,
            rate_per_addr = next.live.rates.per_addr,
            rate_per_browser_key = next.live.rates.per_browser_key,
            retention = ?next.live.retention,
            log_level = %next.live.log_level,
            "configuration reloaded"
        );
    }
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
    server: optel_collector::ServerConfig,
) -> std::io::Result<()> {
    match tls {
        #[cfg(feature = "tls")]
        Some(tls) => {
            optel_collector::serve_tls_with_config(listener, &tls, state, server, shutdown_signal())
                .await
        }
        #[cfg(not(feature = "tls"))]
        Some(never) => match never {},
        None => {
            optel_collector::serve_with_config(listener, state, server, shutdown_signal()).await
        }
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
/// The multi-threaded runtime a collector runs on.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("optel-collector")
        .build()
        .context("cannot start the async runtime")
}

/// Replaces the log filter of [`init_logging`]'s subscriber.
type SetFilter = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

static LOG_FILTER: std::sync::OnceLock<SetFilter> = std::sync::OnceLock::new();

/// Logs to stderr at the level of `OPTEL_LOG` (default `info`); [`set_log_filter`] changes it.
pub(crate) fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("OPTEL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_filter_reloading();
    let handle = builder.reload_handle();
    if builder.try_init().is_ok() {
        let _ = LOG_FILTER.set(Box::new(move |f: &str| {
            let filter = tracing_subscriber::EnvFilter::try_new(f).map_err(|e| e.to_string())?;
            handle.reload(filter).map_err(|e| e.to_string())
        }));
    }
}

/// Sets the log filter (`info`, `debug`, `optel_collector=debug,info`); a bad one is logged.
pub(crate) fn set_log_filter(filter: &str) {
    if let Some(set) = LOG_FILTER.get()
        && let Err(error) = set(filter)
    {
        tracing::warn!(filter, %error, "log filter not changed");
    }
}
