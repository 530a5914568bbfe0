//! The query API of `docs/query-api.md`: `GET /v1/projects`, `GET /v1/projects/{p}/{view}`
//! (admin token) and `GET /public/v1/projects/{p}/{view}` (no token, public projects only,
//! k-anonymous), plus `/openapi.json`, `/healthz`, `/readyz` and `/metrics`.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::app::{AppState, blocking, require_admin};
use crate::error::ApiError;
use crate::now_ms;
use crate::query::{self, Audience, Granularity};
use crate::storage::Project;

/// The OpenAPI 3.1 description served at `/openapi.json`.
pub const OPENAPI_JSON: &str = include_str!("../openapi.json");

/// A project as `GET /v1/projects` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectView {
    /// Name.
    pub name: String,
    /// Whether the public view is on.
    pub public: bool,
    /// Creation time.
    pub created: optel_wire::Timestamp,
}

/// Answer of `GET /v1/projects`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectList {
    /// Projects by name.
    pub projects: Vec<ProjectView>,
}

/// `GET /v1/projects`.
pub async fn list_projects(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<ProjectList>, ApiError> {
    require_admin(&state, &headers)?;
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
    headers: HeaderMap,
    Path((name, view)): Path<(String, String)>,
    params: Result<Query<ViewParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    require_admin(&state, &headers)?;
    let params = params
        .map(|q| q.0)
        .map_err(|e| invalid_query("query", format!("query string is not understood: {e}")))?;
    run_view(&state, name, view, params, Audience::Admin).await
}

/// `GET /public/v1/projects/{p}/{view}` (no token; 404 unless the project is public).
pub async fn public_view(
    State(state): State<AppState>,
    Path((name, view)): Path<(String, String)>,
    params: Result<Query<ViewParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    if view == "stats" {
        return Err(not_found());
    }
    let params = params
        .map(|q| q.0)
        .map_err(|e| invalid_query("query", format!("query string is not understood: {e}")))?;
    let audience = Audience::Public {
        k: state.k_anonymity,
    };
    run_view(&state, name, view, params, audience).await
}

async fn run_view(
    state: &AppState,
    name: String,
    view: String,
    params: ViewParams,
    audience: Audience,
) -> Result<Response, ApiError> {
    const VIEWS: [&str; 8] = [
        "overview",
        "timeseries",
        "commands",
        "errors",
        "versions",
        "platforms",
        "features",
        "stats",
    ];
    if !VIEWS.contains(&view.as_str()) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no view {view:?}: use one of {}", VIEWS.join(", ")),
        ));
    }
    let now = now_ms();
    // `/stats` keeps its historical default of the last 24 hours.
    let default_since = if view == "stats" { "24h" } else { "7d" };
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
        let value = match view.as_str() {
            "overview" => to_json(query::overview(s, &project, range, audience)?),
            "timeseries" => to_json(query::timeseries(
                s,
                &project,
                range,
                granularity,
                audience,
            )?),
            "commands" => to_json(query::commands(s, &project, range, audience)?),
            "errors" => to_json(query::errors(s, &project, range, audience)?),
            "versions" => to_json(query::versions(s, &project, range, granularity, audience)?),
            "platforms" => to_json(query::platforms(s, &project, range, audience)?),
            "features" => to_json(query::features(s, &project, range, audience)?),
            _ => to_json(s.stats(&project, range)?),
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
