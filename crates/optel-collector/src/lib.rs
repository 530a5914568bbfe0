//! The optel collector as a library: the HTTP routes ([`app`]), validation, storage
//! ([`storage::Store`], [`storage::SqliteStore`]) and the stats query ([`query::Stats`]).
//!
//! # Routes
//! | route | auth | what |
//! |---|---|---|
//! | `POST /v1/events` | ingest key (`Authorization: Bearer optel_ik_…`) | store an optel batch ([`optel_wire::Batch`]) |
//! | `GET /v1/projects` | admin token | list projects |
//! | `GET /v1/projects/{name}/stats?since=24h` | admin token | [`query::Stats`] of a project |
//! | `GET /healthz` | none | `ok` while the process serves |
//!
//! # Untrusted input
//! Every request may be hostile. Bodies are read up to [`optel_wire::limits::MAX_BODY_BYTES`]
//! (413 past that), parsed, and validated field by field against [`optel_wire::limits`] (400
//! naming the field) before anything is stored. Errors answer with a JSON
//! [`optel_wire::ErrorBody`]; the cause of a server-side failure goes to the log only. Client
//! addresses are never stored.
#![deny(missing_docs)]

pub mod dashboard;
pub mod error;
pub mod ingest;
pub mod keys;
pub mod query;
pub mod storage;

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::{get, post};
use serde::Deserialize;

use crate::error::ApiError;
use crate::query::{Stats, TimeRange};
use crate::storage::{Project, Store};

/// Shared state of the HTTP routes.
#[derive(Clone)]
pub struct AppState {
    /// The storage backend.
    pub store: Arc<dyn Store>,
    /// The admin token that guards query routes; `None` disables them (403).
    pub admin_token: Option<Arc<str>>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("admin_token", &self.admin_token.as_ref().map(|_| "…"))
            .finish()
    }
}

/// The collector's router.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/v1/events", post(ingest::post_events))
        .route("/v1/projects", get(list_projects))
        .route("/v1/projects/{name}/stats", get(project_stats))
        .route("/healthz", get(|| async { "ok" }))
        .merge(dashboard::router())
        .with_state(state)
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

fn require_admin(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
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

async fn blocking<T: Send + 'static>(
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

async fn list_projects(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Vec<Project>>, ApiError> {
    require_admin(&state, &headers)?;
    let store = state.store.clone();
    Ok(Json(blocking(move || store.list_projects()).await?))
}

#[derive(Debug, Deserialize)]
struct StatsParams {
    since: Option<String>,
}

async fn project_stats(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(params): Query<StatsParams>,
) -> Result<Json<Stats>, ApiError> {
    require_admin(&state, &headers)?;
    let lookback = parse_lookback(params.since.as_deref().unwrap_or("24h"))
        .map_err(|m| ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", m))?;
    let store = state.store.clone();
    let stats = blocking(move || {
        let Some(project) = store.project_by_name(&name)? else {
            return Ok(None);
        };
        store
            .stats(&project, TimeRange::last(lookback, now_ms()))
            .map(Some)
    })
    .await?;
    stats
        .map(Json)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such project"))
}

/// Serves `app` on `listener` until `shutdown` completes, then finishes in-flight requests.
///
/// # Errors
/// The listener fails.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown)
        .await
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
