//! The optel collector as a library: the HTTP routes ([`app`]), validation, storage
//! ([`storage::Store`], [`storage::SqliteStore`]) and the stats query ([`query::Stats`]).
//!
//! # Routes
//! | route | auth | what |
//! |---|---|---|
//! | `POST /v1/events` | ingest key (`Authorization: Bearer optel_ik_…`) | store an optel batch ([`optel_wire::Batch`]) |
//! | `POST /v1/traces`, `/v1/metrics`, `/v1/logs` | ingest key | OTLP/HTTP, protobuf or JSON ([`otlp`]) |
//! | `DELETE /v1/installs` | ingest key + proof | delete an install's events ([`ingest::delete_installs`]) |
//! | `GET /v1/projects`, `/v1/projects/{p}/{view}` | admin token | query API ([`api`], `docs/query-api.md`) |
//! | `GET /public/v1/projects/{p}/{view}` | none, public projects only | k-anonymous query API |
//! | `GET /openapi.json` | none | OpenAPI description of all routes |
//! | `GET /healthz`, `/readyz`, `/metrics` | none | liveness, database reachable, Prometheus |
//! | `GET /`, `/public/{p}`, `/assets/…` | none (the page reads the query API) | web dashboard ([`dashboard`]) |
//!
//! # Untrusted input
//! Every request may be hostile. Bodies are read up to [`optel_wire::limits::MAX_BODY_BYTES`]
//! before and after gzip decompression (413 past that), parsed, and validated field by field
//! against [`optel_wire::limits`] (400 naming the field) before anything is stored; rate limits
//! answer 429 and a full writer queue 503, both with `Retry-After`. Errors answer with a JSON
//! [`optel_wire::ErrorBody`]; the cause of a server-side failure goes to the log only. Client
//! addresses are held in memory by the rate limiter only, never stored.
//!
//! # Features
//! | feature | default | what |
//! |---|---|---|
//! | `tls` | off (on in the `optel` binary) | HTTPS: `serve_tls` and the `tls` module (rustls, `ring` provider) |
//!
//! # Durability
//! A 2xx answer to an ingest request means its events are committed: the group-commit
//! [`writer::Writer`] answers each request only after the transaction holding it commits.
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod api;
pub mod dashboard;
pub mod error;
pub mod ingest;
pub mod keys;
pub mod metrics;
pub mod otlp;
pub mod query;
pub mod ratelimit;
pub mod rollup;
pub mod storage;
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub mod tls;
pub mod writer;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{delete, get, post};

use crate::error::ApiError;
use crate::ingest::KeyCache;
use crate::metrics::Metrics;
use crate::ratelimit::{RateConfig, RateLimits};
use crate::storage::Store;
use crate::writer::Writer;

/// Default k of the public view's k-anonymity: cells with fewer distinct installs are hidden.
pub const DEFAULT_K_ANONYMITY: u64 = 5;

/// Shared state of the HTTP routes. Build it with [`AppState::new`].
#[derive(Clone)]
pub struct AppState {
    /// The storage backend.
    pub store: Arc<dyn Store>,
    /// The admin token that guards query routes; `None` disables them (403).
    pub admin_token: Option<Arc<str>>,
    /// The group-commit writer of `store`.
    pub writer: Writer,
    /// Counters served at `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Rate limits per ingest key and client address.
    pub limits: Arc<RateLimits>,
    /// k of the public view (default [`DEFAULT_K_ANONYMITY`]).
    pub k_anonymity: u64,
    key_cache: Arc<KeyCache>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("backend", &self.store.backend())
            .field("admin_token", &self.admin_token.as_ref().map(|_| "…"))
            .field("writer", &self.writer)
            .field("k_anonymity", &self.k_anonymity)
            .finish()
    }
}

impl AppState {
    /// State with default rate limits ([`RateConfig::default`]), writer queue
    /// ([`writer::DEFAULT_QUEUE`]) and k ([`DEFAULT_K_ANONYMITY`]); starts the writer thread.
    ///
    /// # Errors
    /// The writer thread cannot be spawned.
    pub fn new(store: Arc<dyn Store>, admin_token: Option<Arc<str>>) -> std::io::Result<Self> {
        Self::with_config(
            store,
            admin_token,
            RateConfig::default(),
            writer::DEFAULT_QUEUE,
        )
    }

    /// State with explicit rate limits and writer queue capacity (batches).
    ///
    /// # Errors
    /// The writer thread cannot be spawned.
    pub fn with_config(
        store: Arc<dyn Store>,
        admin_token: Option<Arc<str>>,
        rates: RateConfig,
        queue: usize,
    ) -> std::io::Result<Self> {
        let metrics = Arc::new(Metrics::default());
        let writer = Writer::spawn(store.clone(), queue, metrics.clone())?;
        Ok(Self {
            store,
            admin_token,
            writer,
            metrics,
            limits: Arc::new(RateLimits::new(rates)),
            k_anonymity: DEFAULT_K_ANONYMITY,
            key_cache: Arc::new(KeyCache::default()),
        })
    }
}

/// The collector's router.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/v1/events", post(ingest::post_events))
        .route("/v1/traces", post(otlp::post_traces))
        .route("/v1/metrics", post(otlp::post_metrics))
        .route("/v1/logs", post(otlp::post_logs))
        .route("/v1/installs", delete(ingest::delete_installs))
        .route("/v1/projects", get(api::list_projects))
        .route("/v1/projects/{name}/{view}", get(api::admin_view))
        .route("/public/v1/projects/{name}/{view}", get(api::public_view))
        .route("/openapi.json", get(api::openapi))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(api::readyz))
        .route("/metrics", get(api::metrics))
        .merge(dashboard::router())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        .with_state(state)
}

async fn count_requests(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let response = next.run(req).await;
    state.metrics.request(&route, response.status().as_u16());
    response
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    optel_wire::Timestamp::now().unix_ms()
}

/// Parses a look-back such as `24h`, `7d`, `30d` or `90m` (the `humantime` crate's units).
///
/// # Errors
/// A message quoting the value and showing the accepted form.
pub fn parse_lookback(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("time range {s:?} is not understood ({e}): use e.g. 24h, 7d, 30d"))
}

pub(crate) fn require_admin(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(expected) = &state.admin_token else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "queries_disabled",
            "query routes are disabled: start the collector with --admin-token or OPTEL_ADMIN_TOKEN",
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(keys::bearer)
        .ok_or_else(|| ApiError::unauthenticated("send `Authorization: Bearer <admin token>`"))?;
    if keys::token_matches(given, expected) {
        Ok(())
    } else {
        Err(ApiError::unauthenticated("admin token is not valid"))
    }
}

/// Runs a storage call on a blocking thread, mapping its failure to an HTTP error.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> storage::Result<T> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error: retry later",
            )
        })?
        .map_err(|e| ApiError::storage(&e))
}

/// Serves `app` on `listener` until `shutdown` completes, then finishes in-flight requests and
/// drains the writer: every batch already accepted into its queue is committed before this
/// returns. Client addresses reach the rate limiter through connect info.
///
/// # Errors
/// The listener fails.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_on(listener, state, shutdown).await
}

/// [`serve`] over HTTPS ([`tls`]): the same routes, graceful shutdown and writer drain, with
/// client addresses reaching the rate limiter as on plain HTTP. Plain HTTP on this port gets
/// `400 https_required`.
///
/// # Errors
/// The listener fails.
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    tls: &tls::TlsConfig,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt as _;
    // `tap_io` is a no-op here: it makes axum's connect info (`SocketAddr`, the `Addr` of the
    // listener) available for a custom listener.
    let listener = tls::TlsListener::new(listener, tls)?.tap_io(|_| {});
    serve_on(listener, state, shutdown).await
}

/// [`serve`] on any listener whose connections carry the client's `SocketAddr`.
async fn serve_on<L>(
    listener: L,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
    std::net::SocketAddr:
        for<'a> axum::extract::connect_info::Connected<axum::serve::IncomingStream<'a, L>>,
{
    let writer = state.writer.clone();
    let limits = state.limits.clone();
    let housekeeping = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            limits.forget_idle();
        }
    });
    let result = axum::serve(
        listener,
        app(state).into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await;
    housekeeping.abort();
    writer.shutdown(Duration::from_secs(30)).await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookbacks() {
        assert_eq!(parse_lookback("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_lookback("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert!(parse_lookback("soon").is_err());
        assert!(parse_lookback("99999999999999999999d").is_err());
    }
}
