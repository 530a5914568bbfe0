//! The query API of `docs/query-api.md`: `GET /v1/projects`, `GET /v1/projects/{p}/{view}`
//! (admin token) and `GET /public/v1/projects/{p}/{view}` (no token, public projects only,
//! k-anonymous), plus `/openapi.json`, `/healthz`, `/readyz` and `/metrics`.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::app::{AppState, blocking};
use crate::error::ApiError;
use crate::extract::AdminToken;
use crate::now_ms;
use crate::query::{self, Audience, Granularity, ProjectList, ProjectView};
use crate::storage::Project;

/// The OpenAPI 3.1 description served at `/openapi.json`.
pub const OPENAPI_JSON: &str = include_str!("../openapi.json");

/// `GET /v1/projects`.
pub async fn list_projects(
    State(state): State<AppState>,
    _: AdminToken,
) -> Result<Json<ProjectList>, ApiError> {
    let store = state.store.clone();
    let projects = blocking(move || store.list_projects()).await?;
    Ok(Json(ProjectList {
        projects: projects
            .into_iter()
            .map(|p| ProjectView {
                name: p.name,
                public: p.public,
                created: optel_wire::Timestamp::from_unix_ms(p.created_ms),
            })
            .collect(),
    }))
}

/// Query parameters of the views.
#[derive(Debug, Default, Deserialize)]
pub struct ViewParams {
    since: Option<String>,
    from: Option<String>,
    to: Option<String>,
    granularity: Option<String>,
}

fn invalid_query(param: &str, message: String) -> ApiError {
    ApiError {
        field: Some(param.to_owned()),
        ..ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", message)
    }
}

fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such project")
}

/// `GET /v1/projects/{p}/{view}` (admin token).
pub async fn admin_view(
    State(state): State<AppState>,
    _: AdminToken,
    Path((name, view)): Path<(String, String)>,
    params: Result<Query<ViewParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let params = params
        .map(|q| q.0)
        .map_err(|e| invalid_query("query", format!("query string is not understood: {e}")))?;
    run_view(&state, name, &view, params, Audience::Admin).await
}

/// `GET /public/v1/projects/{p}/{view}` (no token; 404 unless the project is public).
pub async fn public_view(
    State(state): State<AppState>,
    Path((name, view)): Path<(String, String)>,
    params: Result<Query<ViewParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    if View::parse(&view)?.admin_only() {
        return Err(not_found());
    }
    let params = params
        .map(|q| q.0)
        .map_err(|e| invalid_query("query", format!("query string is not understood: {e}")))?;
    let audience = Audience::Public {
        k: state.k_anonymity,
    };
    run_view(&state, name, &view, params, audience).await
}

/// A view of the query API, as its route names it (`/v1/projects/{p}/{view}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum View {
    Overview,
    Timeseries,
    Commands,
    Errors,
    Versions,
    Platforms,
    Features,
    /// Every list at once (`optel stats`); admin only.
    Stats,
    /// Breakdowns by declared attributes; admin only.
    Breakdowns,
    /// Phase durations; admin only.
    Phases,
    /// Measurements; admin only.
    Measurements,
    /// Daily adoption series; admin only.
    Adoption,
    /// Catalog versions; admin only.
    Catalog,
}

impl View {
    const ALL: [Self; 13] = [
        Self::Overview,
        Self::Timeseries,
        Self::Commands,
        Self::Errors,
        Self::Versions,
        Self::Platforms,
        Self::Features,
        Self::Stats,
        Self::Breakdowns,
        Self::Phases,
        Self::Measurements,
        Self::Adoption,
        Self::Catalog,
    ];

    /// Views without a public form: they do not go through the public population's
    /// suppression (`query::public`), so `/public/...` answers 404 for them.
    fn admin_only(self) -> bool {
        matches!(
            self,
            Self::Stats
                | Self::Breakdowns
                | Self::Phases
                | Self::Measurements
                | Self::Adoption
                | Self::Catalog
        )
    }

    fn name(self) -> &'static str {
        match self {
            Self::Overview => "overview",
            Self::Timeseries => "timeseries",
            Self::Commands => "commands",
            Self::Errors => "errors",
            Self::Versions => "versions",
            Self::Platforms => "platforms",
            Self::Features => "features",
            Self::Stats => "stats",
            Self::Breakdowns => "breakdowns",
            Self::Phases => "phases",
            Self::Measurements => "measurements",
            Self::Adoption => "adoption",
            Self::Catalog => "catalog",
        }
    }

    /// The view named `s`.
    ///
    /// # Errors
    /// 404 naming the views there are.
    fn parse(s: &str) -> Result<Self, ApiError> {
        Self::ALL
            .into_iter()
            .find(|v| v.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|v| v.name()).collect();
                ApiError::new(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    format!("no view {s:?}: use one of {}", names.join(", ")),
                )
            })
    }
}

async fn run_view(
    state: &AppState,
    name: String,
    view: &str,
    params: ViewParams,
    audience: Audience,
) -> Result<Response, ApiError> {
    let view = View::parse(view)?;
    let now = now_ms();
    // `/stats` keeps its historical default of the last 24 hours.
    let default_since = if view == View::Stats { "24h" } else { "7d" };
    let range = query::parse_range(
        Some(params.since.as_deref().unwrap_or(default_since)),
        params.from.as_deref(),
        params.to.as_deref(),
        now,
    )
    .map_err(|(p, m)| invalid_query(p, m))?;
    let granularity = Granularity::parse(params.granularity.as_deref().unwrap_or("day"))
        .map_err(|m| invalid_query("granularity", m))?;
    let store = state.store.clone();
    let body = blocking(move || {
        let Some(project): Option<Project> = store.project_by_name(&name)? else {
            return Ok(None);
        };
        if matches!(audience, Audience::Public { .. }) && !project.public {
            return Ok(None);
        }
        let s = &*store;
        let value = match view {
            View::Overview => to_json(query::overview(s, &project, range, audience)?),
            View::Timeseries => to_json(query::timeseries(
                s,
                &project,
                range,
                granularity,
                audience,
            )?),
            View::Commands => to_json(query::commands(s, &project, range, audience)?),
            View::Errors => to_json(query::errors(s, &project, range, audience)?),
            View::Versions => to_json(query::versions(s, &project, range, granularity, audience)?),
            View::Platforms => to_json(query::platforms(s, &project, range, audience)?),
            View::Features => to_json(query::features(s, &project, range, audience)?),
            View::Stats => to_json(s.stats(&project, range)?),
            View::Breakdowns => to_json(query::breakdowns(s, &project, range)?),
            View::Phases => to_json(query::phases(s, &project, range)?),
            View::Measurements => to_json(query::measurements(s, &project, range)?),
            View::Adoption => to_json(query::adoption(s, &project, range)?),
            View::Catalog => to_json(query::catalog(s, &project)?),
        };
        Ok(Some(value))
    })
    .await?;
    let body = body.ok_or_else(not_found)?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

fn to_json<T: Serialize>(v: T) -> Vec<u8> {
    serde_json::to_vec(&v).unwrap_or_default()
}

/// `GET /openapi.json`.
pub async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI_JSON).into_response()
}

/// `GET /readyz`: 200 when the database answers, 503 otherwise.
pub async fn readyz(State(state): State<AppState>) -> Result<&'static str, ApiError> {
    let store = state.store.clone();
    blocking(move || store.ping()).await?;
    Ok("ready")
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(state.writer.depth()),
    )
        .into_response()
}
