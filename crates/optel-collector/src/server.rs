//! Serving the router: connection discipline (timeouts and a connection cap), plain HTTP or
//! TLS, graceful shutdown with a deadline, and the writer's drain.
//!
//! Every connection is served by hyper's HTTP/1 connection builder with a timer, so that a
//! client that connects and sends nothing, or sends its head slowly, is closed after
//! [`ServerConfig::header_timeout`]; hyper starts that timer again while it waits for the next
//! request on a kept-alive connection, so it is the idle keep-alive timeout too. A request body
//! must arrive within [`ServerConfig::body_timeout`] (408), a TLS handshake within
//! [`ServerConfig::tls_handshake_timeout`].
//!
//! Connections are capped ([`ServerConfig::max_connections`], by default the open-file limit
//! minus [`FD_HEADROOM`]). At the cap a new connection takes the place of the oldest one that has
//! no request in progress (an idle or slow client, a pending TLS handshake), else of the one
//! whose request body has been arriving longest (for [`SLOW_BODY_GRACE`] at least; that request
//! is cut off), so neither idle connections nor slow bodies can keep `/healthz`, `/readyz` or
//! ingest from answering; only when every connection is serving a request that is past its
//! body is the new one refused, with a canned `503` and a close.
//! The headroom keeps file descriptors free for the database, the listener and that refusal.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tower::Service as _;

use crate::app::{AppState, app};
use crate::metrics::Metrics;
#[cfg(feature = "tls")]
use crate::tls;

/// Default [`ServerConfig::header_timeout`]: 10 s.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Default [`ServerConfig::body_timeout`]: 30 s, enough for the largest body
/// ([`optel_wire::limits::MAX_BODY_BYTES`], 4 MiB) at 140 KB/s.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// Default [`ServerConfig::body_memory`]: 256 MiB, 64 bodies of the largest size at once.
pub const DEFAULT_BODY_MEMORY: usize = 256 << 20;
/// Default [`ServerConfig::tls_handshake_timeout`]: 10 s.
pub const DEFAULT_TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default [`ServerConfig::shutdown_timeout`]: 10 s.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
/// Most connections by default, whatever the open-file limit: 10,000.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// File descriptors kept out of the connection cap: the listener, standard streams, the SQLite
/// files (database, WAL, shared memory, for two connections) or the PostgreSQL pool (10), the
/// TLS files when reloaded, and the socket of a connection being refused.
pub const FD_HEADROOM: usize = 64;

/// How the collector treats connections. Build it with [`ServerConfig::default`] and set the
/// fields to change.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerConfig {
    /// Longest wait for a complete request head, from the connection's start or the end of the
    /// previous response: also the idle keep-alive timeout. Default [`DEFAULT_HEADER_TIMEOUT`].
    pub header_timeout: Duration,
    /// Longest time to receive a request body once its head arrived (408 past it). Default
    /// [`DEFAULT_BODY_TIMEOUT`].
    pub body_timeout: Duration,
    /// Most bytes of request bodies held in memory at once, over all requests; a body that
    /// would pass it is refused (503 `saturated`, `Retry-After: 1`) before it is read. Each
    /// body reserves its `Content-Length` (the largest body size when chunked), twice with
    /// `Content-Encoding: gzip` (it is decompressed in memory). Default [`DEFAULT_BODY_MEMORY`].
    pub body_memory: usize,
    /// Longest TLS handshake, from the connection's start. Default
    /// [`DEFAULT_TLS_HANDSHAKE_TIMEOUT`].
    pub tls_handshake_timeout: Duration,
    /// Most connections at once; `0` means the open-file limit minus [`FD_HEADROOM`], at most
    /// [`DEFAULT_MAX_CONNECTIONS`]. A larger value is lowered to that limit too.
    pub max_connections: usize,
    /// After the shutdown signal, how long requests in progress may take to finish before
    /// their connections are dropped; then the writer gets as long again to commit what it
    /// holds. Default [`DEFAULT_SHUTDOWN_TIMEOUT`].
    pub shutdown_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            body_memory: DEFAULT_BODY_MEMORY,
            tls_handshake_timeout: DEFAULT_TLS_HANDSHAKE_TIMEOUT,
            max_connections: 0,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
        }
    }
}

impl ServerConfig {
    /// The connection cap in effect: [`ServerConfig::max_connections`] bounded by the process's
    /// open-file limit minus [`FD_HEADROOM`] (at least 1).
    pub fn connection_cap(&self) -> usize {
        let by_fds = open_file_limit()
            .map_or(DEFAULT_MAX_CONNECTIONS, |n| n.saturating_sub(FD_HEADROOM))
            .max(1);
        match self.max_connections {
            0 => by_fds.min(DEFAULT_MAX_CONNECTIONS),
            n => n.min(by_fds),
        }
    }
}

/// The soft limit on open files (`RLIMIT_NOFILE`), after raising it to the hard limit as far
/// as allowed: a collector holds one descriptor per connection.
#[cfg(unix)]
fn open_file_limit() -> Option<usize> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        let raised = rustix::process::Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        if setrlimit(Resource::Nofile, raised).is_ok() {
            limit = raised;
        }
    }
    limit
        .current
        .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
}

#[cfg(not(unix))]
fn open_file_limit() -> Option<usize> {
    None
}

/// What the body readers need of the server, handed to them as a request extension: the
/// body-read deadline, and the memory budget all bodies being read share.
#[derive(Debug, Clone)]
pub(crate) struct BodyLimits {
    pub timeout: Duration,
    /// Permits of 1 KiB each: [`ServerConfig::body_memory`].
    pub memory: Arc<Semaphore>,
}

impl BodyLimits {
    fn new(config: &ServerConfig) -> Self {
        Self {
            timeout: config.body_timeout,
            memory: Arc::new(Semaphore::new(
                (config.body_memory / 1024).clamp(1, Semaphore::MAX_PERMITS),
            )),
        }
    }
}

/// Serves `app` on `listener` with [`ServerConfig::default`]; see [`serve_with_config`].
///
/// # Errors
/// The listener has no local address.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with_config(listener, state, ServerConfig::default(), shutdown).await
}

/// Serves `app` on `listener` until `shutdown` completes: then stops accepting, lets requests
/// in progress finish for up to [`ServerConfig::shutdown_timeout`] (idle connections are
/// closed at once, the others after their current request), drops what is left, and drains
/// the writer: every batch already accepted into its queue is committed before this returns.
/// Client addresses reach the rate limiter through connect info.
///
/// # Errors
/// The listener has no local address.
pub async fn serve_with_config(
    listener: TcpListener,
    state: AppState,
    config: ServerConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_on(listener, Transport::Plain, state, config, shutdown).await
}

/// [`serve`] over HTTPS ([`tls`]) with [`ServerConfig::default`].
///
/// # Errors
/// The listener has no local address.
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub async fn serve_tls(
    listener: TcpListener,
    tls: &tls::TlsConfig,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_tls_with_config(listener, tls, state, ServerConfig::default(), shutdown).await
}

/// [`serve_with_config`] over HTTPS ([`tls`]): the same routes, limits, shutdown and writer
/// drain; each handshake must finish within [`ServerConfig::tls_handshake_timeout`] and holds
/// a connection slot meanwhile. Plain HTTP on this port gets `400 https_required`.
///
/// # Errors
/// The listener has no local address.
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub async fn serve_tls_with_config(
    listener: TcpListener,
    tls: &tls::TlsConfig,
    state: AppState,
    config: ServerConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let transport = Transport::Tls(tls.acceptor());
    serve_on(listener, transport, state, config, shutdown).await
}

/// What runs over an accepted TCP connection.
#[derive(Clone)]
enum Transport {
    Plain,
    #[cfg(feature = "tls")]
    Tls(tokio_rustls::TlsAcceptor),
}

async fn serve_on(
    listener: TcpListener,
    transport: Transport,
    state: AppState,
    config: ServerConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // The listener's address is checked once: an error here is the only one `serve` returns.
    listener.local_addr()?;
    let writer = state.writer.clone();
    let limits = state.limits.clone();
    let housekeeping = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            limits.forget_idle();
        }
    });
    let metrics = state.metrics.clone();
    let router = app(state).layer(axum::Extension(BodyLimits::new(&config)));
    let cap = config.connection_cap();
    tracing::debug!(max_connections = cap, "serving");
    let conns = Arc::new(Connections::new(cap, metrics.clone()));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        while tasks.try_join_next().is_some() {}
        let (tcp, addr) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like pass: back off briefly, as axum does.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Some(slot) = conns.admit().await else {
            metrics.connection_refused();
            refuse(&tcp, &transport);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let (router, transport, config) = (router.clone(), transport.clone(), config.clone());
        let stop = stop_rx.clone();
        tasks.spawn(async move {
            match transport {
                Transport::Plain => serve_connection(tcp, addr, router, &config, slot, stop).await,
                #[cfg(feature = "tls")]
                Transport::Tls(acceptor) => {
                    let handshake = tls::handshake(tcp, &acceptor);
                    // A pending handshake is evictable like an idle connection.
                    let done = tokio::select! {
                        r = tokio::time::timeout(config.tls_handshake_timeout, handshake) => r,
                        () = slot.state.evict.notified() => return,
                    };
                    match done {
                        Ok(Ok(Some(io))) => {
                            serve_connection(io, addr, router, &config, slot, stop).await;
                        }
                        Ok(Ok(None)) => {}
                        Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!("TLS handshake timed out"),
                    }
                }
            }
        });
    }
    // Stop accepting: the port closes now, while requests in progress finish.
    drop(listener);
    let started = Instant::now();
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(config.shutdown_timeout, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            connections = tasks.len(),
            timeout = ?config.shutdown_timeout,
            "requests still in progress at the shutdown deadline: their connections are dropped"
        );
        tasks.shutdown().await;
    }
    housekeeping.abort();
    writer.shutdown(config.shutdown_timeout).await;
    tracing::debug!(took = ?started.elapsed(), "stopped");
    Ok(())
}

/// Refuses a connection past the cap as cheaply as possible: a canned 503 if the socket takes
/// it at once (plain HTTP only; a TLS client would not understand it), then a close.
fn refuse(tcp: &TcpStream, transport: &Transport) {
    static REFUSAL: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    if matches!(transport, Transport::Plain) {
        let refusal = REFUSAL.get_or_init(|| {
            let body = r#"{"error":{"code":"too_many_connections","message":"the collector is at its connection cap and every connection is busy: retry in a second"}}"#;
            format!(
                "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
                 retry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes()
        });
        let _ = tcp.try_write(refusal);
    }
    tracing::debug!("connection refused: at the connection cap, every connection busy");
}

/// Serves HTTP/1 on one connection until it closes, it is evicted while idle, or the shutdown
/// deadline drops it.
async fn serve_connection<I>(
    io: I,
    addr: SocketAddr,
    router: Router,
    config: &ServerConfig,
    slot: Slot,
    mut stop: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let state = slot.state.clone();
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(addr));
        req.extensions_mut().insert(ConnWatch(state.clone()));
        let busy = Busy::enter(&state);
        let mut router = router.clone();
        async move {
            let response = router.call(req).await;
            drop(busy);
            response
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_timeout);
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let mut draining = false;
    let mut stopping = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended");
                }
                return;
            }
            () = slot.state.evict.notified(), if !draining => {}
            changed = stop.changed(), if !stopping => {
                stopping = changed.is_err() || *stop.borrow();
                if !stopping {
                    continue;
                }
            }
        }
        // Evicted, or shutting down: an idle connection closes now; one serving a request
        // finishes it (within the shutdown deadline), then closes. An evicted connection that
        // is still receiving its body was chosen for that (a slow body): it closes now.
        if slot.state.is_idle() || (!stopping && slot.state.reading_body_for().is_some()) {
            return;
        }
        if !draining {
            draining = true;
            conn.as_mut().graceful_shutdown();
        }
    }
}

/// The connections being served, oldest first, and the slots they hold.
struct Connections {
    slots: Arc<Semaphore>,
    open: Mutex<BTreeMap<u64, Arc<ConnState>>>,
    next_id: AtomicU64,
    metrics: Arc<Metrics>,
}

/// What the accept loop knows of one connection.
#[derive(Default)]
pub(crate) struct ConnState {
    /// Requests being served (hyper serves one at a time on HTTP/1).
    in_flight: AtomicUsize,
    /// Since when (ms after [`epoch`], 0 = not) its request's body is being read.
    body_since_ms: AtomicU64,
    /// Asks the connection to close while idle or reading a body.
    evict: Notify,
}

impl ConnState {
    fn is_idle(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0
    }

    /// How long its request's body has been read, if one is.
    fn reading_body_for(&self) -> Option<Duration> {
        match self.body_since_ms.load(Ordering::Acquire) {
            0 => None,
            since => Some(Duration::from_millis(
                millis_since_epoch().saturating_sub(since),
            )),
        }
    }
}

/// At the cap with no idle connection, a connection whose request body has been arriving for
/// this long gives way to a new connection (its request is cut off): slow bodies cannot hold
/// every place for the whole body timeout.
pub const SLOW_BODY_GRACE: Duration = Duration::from_secs(1);

fn epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn millis_since_epoch() -> u64 {
    // At least 1: 0 means "no body".
    u64::try_from(epoch().elapsed().as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

/// The connection a request came on, as a request extension, so that the body reader can mark
/// it as reading a body ([`ReadingBody`]).
#[derive(Clone)]
pub(crate) struct ConnWatch(Arc<ConnState>);

/// Marks its connection as reading a request body until dropped.
pub(crate) struct ReadingBody(Option<Arc<ConnState>>);

impl ReadingBody {
    pub(crate) fn start(watch: Option<&ConnWatch>) -> Self {
        let state = watch.map(|w| w.0.clone());
        if let Some(s) = &state {
            s.body_since_ms
                .store(millis_since_epoch(), Ordering::Release);
        }
        Self(state)
    }
}

impl Drop for ReadingBody {
    fn drop(&mut self) {
        if let Some(s) = &self.0 {
            s.body_since_ms.store(0, Ordering::Release);
        }
    }
}

/// Marks its connection busy while a request is served.
struct Busy(Arc<ConnState>);

impl Busy {
    fn enter(state: &Arc<ConnState>) -> Self {
        state.in_flight.fetch_add(1, Ordering::AcqRel);
        Self(state.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A connection's place under the cap; dropping it frees the place.
struct Slot {
    state: Arc<ConnState>,
    id: u64,
    conns: Arc<Connections>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.conns.metrics.connection(false);
        self.conns
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.id);
    }
}

impl Connections {
    fn new(cap: usize, metrics: Arc<Metrics>) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(cap)),
            open: Mutex::new(BTreeMap::new()),
            next_id: AtomicU64::new(0),
            metrics,
        }
    }

    /// A slot for a new connection: a free one, or the one of the oldest idle connection,
    /// which is asked to close. `None` when every connection is serving a request.
    async fn admit(self: &Arc<Self>) -> Option<Slot> {
        let permit = match self.slots.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                if !self.evict_oldest_idle() {
                    return None;
                }
                // The evicted connection's task frees its slot when it next runs.
                tokio::time::timeout(
                    Duration::from_millis(200),
                    self.slots.clone().acquire_owned(),
                )
                .await
                .ok()?
                .ok()?
            }
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let state = Arc::new(ConnState::default());
        self.open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(id, state.clone());
        self.metrics.connection(true);
        Some(Slot {
            state,
            id,
            conns: self.clone(),
            _permit: permit,
        })
    }

    /// Asks a connection to give way: the oldest without a request in progress, else the one
    /// whose request body has been arriving longest, if for [`SLOW_BODY_GRACE`] at least;
    /// false if none.
    fn evict_oldest_idle(&self) -> bool {
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let idle = open.iter().find(|(_, c)| c.is_idle()).map(|(id, _)| *id);
        let chosen = idle.or_else(|| {
            open.iter()
                .filter_map(|(id, c)| c.reading_body_for().map(|t| (t, *id)))
                .filter(|(t, _)| *t >= SLOW_BODY_GRACE)
                .max()
                .map(|(_, id)| id)
        });
        let Some(id) = chosen else {
            return false;
        };
        // Out of the list at once, so the next eviction picks another connection.
        if let Some(c) = open.remove(&id) {
            c.evict.notify_one();
        }
        self.metrics.connection_replaced();
        true
    }
}
