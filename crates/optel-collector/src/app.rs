//! The router and its shared state: which route runs which handler, and the admin check and
//! blocking-call helper the handlers share.

use std::sync::Arc;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{delete, get, post};

use crate::error::ApiError;
use crate::extract::count_rejections;
use crate::ingest::KeyCache;
use crate::metrics::Metrics;
use crate::ratelimit::{RateConfig, RateLimits};
use crate::storage::{self, Store};
use crate::writer::{self, Writer};
use crate::{api, dashboard, ingest, otlp};

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
    /// When each project last had events stored ([`crate::alerts::run`] reads it).
    pub activity: Arc<crate::alerts::IngestActivity>,
    pub(crate) key_cache: Arc<KeyCache>,
    /// Fixed differential-privacy noise, for tests ([`AppState::with_dp_noise_seed`]).
    pub(crate) dp_noise_seed: Option<[u8; 32]>,
    pub(crate) catalog_cache: Arc<ingest::CatalogCache>,
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
            activity: Arc::default(),
            key_cache: Arc::new(KeyCache::default()),
            dp_noise_seed: None,
            catalog_cache: Arc::new(ingest::CatalogCache::default()),
        })
    }
}

impl AppState {
    /// Draws the differential-privacy noise of public views from a generator seeded with
    /// `seed` and the question, instead of the OS: the same question gets the same noise.
    /// For tests only: with a known seed, the noise can be subtracted.
    #[doc(hidden)]
    pub fn with_dp_noise_seed(mut self, seed: [u8; 32]) -> Self {
        self.dp_noise_seed = Some(seed);
        self
    }

    /// Forgets the ingest keys validated recently, so that the next request of each is checked
    /// against the store again. Call it after deleting a project or revoking a key through
    /// [`AppState::store`] in this process; other processes sharing the database are seen
    /// within [`crate::KEY_CACHE_TTL`].
    pub fn forget_cached_keys(&self) {
        self.key_cache.clear();
        self.catalog_cache.clear();
    }
}

/// The collector's router.
pub fn app(state: AppState) -> Router {
    Router::new()
        .merge(ingest_routes(state.clone()))
        .route("/v1/projects", get(api::list_projects))
        .route("/v1/projects/{name}/{view}", get(api::admin_view))
        .route("/public/v1/projects/{name}/{view}", get(api::public_view))
        .route("/openapi.json", get(api::openapi))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(api::readyz))
        .route("/metrics", get(api::metrics))
        .route("/v1/metrics/usage", get(api::usage_metrics))
        .merge(dashboard::router())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        .with_state(state)
}

/// The routes that take an ingest key, behind the one layer that counts their refusals.
fn ingest_routes(state: AppState) -> Router<AppState> {
    Router::new()
        .route(
            "/v1/events",
            post(ingest::post_events)
                .options(ingest::preflight)
                .layer(axum::middleware::from_fn(crate::extract::cors)),
        )
        .route("/v1/traces", post(otlp::post_traces))
        .route("/v1/metrics", post(otlp::post_metrics))
        .route("/v1/logs", post(otlp::post_logs))
        .route("/v1/installs", delete(ingest::delete_installs))
        .layer(axum::middleware::from_fn_with_state(
            state,
            count_rejections,
        ))
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
