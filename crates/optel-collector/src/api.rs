//! The query API of `docs/query-api.md`: `GET /v1/projects`, `GET /v1/projects/{p}/{view}`
//! (admin token) and `GET /public/v1/projects/{p}/{view}` (no token, public projects only,
//! k-anonymous), plus `/openapi.json`, `/healthz`, `/readyz` and `/metrics`.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::app::{AppState, blocking};
use crate::error::ApiError;
use crate::extract::AdminToken;
use crate::now_ms;
use crate::query::{
    self, Audience, DpInfo, DpSettings, Granularity, Noise, Private, ProjectList, ProjectView,
    privatize,
};
use crate::rollup::{DAY_MS, DayRange};
use crate::storage::{DpAnswer, DpEntry, DpRecorded, Project, Store};

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
    /// `/release-health`: the version examined (default: the latest).
    version: Option<String>,
    /// `/release-health`: the version compared with (default: the one before `version`).
    previous: Option<String>,
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
    /// One version against the previous one; admin only.
    ReleaseHealth,
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
    const ALL: [Self; 14] = [
        Self::Overview,
        Self::Timeseries,
        Self::Commands,
        Self::Errors,
        Self::Versions,
        Self::Platforms,
        Self::Features,
        Self::Stats,
        Self::ReleaseHealth,
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
                | Self::ReleaseHealth
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
            Self::ReleaseHealth => "release-health",
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
    // `/stats` keeps its historical default of the last 24 hours; release health compares
    // versions over their whole recent life.
    let default_since = match view {
        View::Stats => "24h",
        View::ReleaseHealth => "30d",
        _ => "7d",
    };
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
    let seed = state.dp_noise_seed;
    for (name, value) in [("version", &params.version), ("previous", &params.previous)] {
        if value
            .as_ref()
            .is_some_and(|v| v.is_empty() || v.len() > optel_wire::limits::MAX_VERSION_BYTES)
        {
            return Err(invalid_query(
                name,
                format!(
                    "{name} must be a tool version of 1 to {} bytes",
                    optel_wire::limits::MAX_VERSION_BYTES
                ),
            ));
        }
    }
    let body = blocking(move || {
        let Some(project): Option<Project> = store.project_by_name(&name)? else {
            return Ok(Err(not_found()));
        };
        if matches!(audience, Audience::Public { .. }) && !project.public {
            return Ok(Err(not_found()));
        }
        let s = &*store;
        let dp = match audience {
            Audience::Public { .. } => s
                .public_dp(project.id)?
                .map(|settings| DpQuestion::new(settings, view, range, granularity, now, seed)),
            Audience::Admin => None,
        };
        let p = &project;
        let dp = dp.as_ref();
        match view {
            View::Overview => answer(s, p, dp, || query::overview(s, p, range, audience)),
            View::Timeseries => answer(s, p, dp, || {
                query::timeseries(s, p, range, granularity, audience)
            }),
            View::Commands => answer(s, p, dp, || query::commands(s, p, range, audience)),
            View::Errors => answer(s, p, dp, || query::errors(s, p, range, audience)),
            View::Versions => answer(s, p, dp, || {
                query::versions(s, p, range, granularity, audience)
            }),
            View::Platforms => answer(s, p, dp, || query::platforms(s, p, range, audience)),
            View::Features => answer(s, p, dp, || query::features(s, p, range, audience)),
            View::Stats => Ok(Ok(to_json(s.stats(p, range)?))),
            View::ReleaseHealth => Ok(Ok(to_json(query::release_health(
                s,
                p,
                range,
                params.version.as_deref(),
                params.previous.as_deref(),
            )?))),
            View::Breakdowns => Ok(Ok(to_json(query::breakdowns(s, p, range)?))),
            View::Phases => Ok(Ok(to_json(query::phases(s, p, range)?))),
            View::Measurements => Ok(Ok(to_json(query::measurements(s, p, range)?))),
            View::Adoption => Ok(Ok(to_json(query::adoption(s, p, range)?))),
            View::Catalog => Ok(Ok(to_json(query::catalog(s, p)?))),
        }
    })
    .await??;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// A question to a public view of a project in differential-privacy mode.
struct DpQuestion {
    settings: DpSettings,
    view: &'static str,
    /// The view, its days and (for views with buckets) the granularity: the ledger's key.
    key: String,
    days: DayRange,
    now_ms: i64,
    /// Fixed noise for tests ([`AppState::with_dp_noise_seed`]).
    seed: Option<[u8; 32]>,
}

impl DpQuestion {
    fn new(
        settings: DpSettings,
        view: View,
        range: query::TimeRange,
        granularity: Granularity,
        now_ms: i64,
        seed: Option<[u8; 32]>,
    ) -> Self {
        let days = DayRange::covering(range.since_ms, range.until_ms);
        let mut key = format!("{}|{}|{}", view.name(), days.first, days.last);
        if matches!(view, View::Timeseries | View::Versions) {
            key.push_str(if granularity == Granularity::Week {
                "|week"
            } else {
                "|day"
            });
        }
        Self {
            settings,
            view: view.name(),
            key,
            days,
            now_ms,
            seed,
        }
    }

    fn day(&self) -> i64 {
        self.now_ms.div_euclid(DAY_MS)
    }

    fn info<T: Private>(&self, spent: f64, cached: bool, first: i64, last: i64) -> DpInfo {
        DpInfo {
            mechanism: "two-sided geometric".to_owned(),
            unit: "event".to_owned(),
            epsilon: self.settings.epsilon,
            sensitivity: T::SENSITIVITY,
            daily_budget: self.settings.daily_budget,
            spent,
            remaining: (self.settings.daily_budget - spent).max(0.0),
            day: query::day_string(self.day()),
            cached,
            first_day: query::day_string(first),
            last_day: query::day_string(last),
        }
    }

    fn noise(&self) -> Result<Noise, ApiError> {
        match self.seed {
            Some(seed) => {
                let mut h = Sha256::new();
                h.update(seed);
                h.update(self.key.as_bytes());
                Ok(Noise::seeded(h.finalize().into()))
            }
            None => Noise::from_os().map_err(|e| {
                tracing::error!(error = %e, "no randomness for differential privacy");
                internal()
            }),
        }
    }

    /// The answer stored earlier today, with today's ledger in its `dp`.
    fn cached<T: Private + Serialize + DeserializeOwned>(
        &self,
        a: DpAnswer,
        spent: f64,
    ) -> Result<Vec<u8>, ApiError> {
        let mut t: T = serde_json::from_str(&a.body).map_err(|e| {
            tracing::error!(error = %e, "a stored noisy answer does not parse");
            internal()
        })?;
        t.set_dp(self.info::<T>(spent, true, a.first_day, a.last_day));
        Ok(to_json(t))
    }

    /// 429 `privacy_budget_spent` until the next UTC day.
    fn spent(&self) -> ApiError {
        let next_day_s = ((self.day() + 1) * DAY_MS - self.now_ms).div_euclid(1000) + 1;
        ApiError {
            retry_after_s: Some(u32::try_from(next_day_s).unwrap_or(86_400)),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "privacy_budget_spent",
                format!(
                    "the public view's privacy budget for today ({} ε) is spent and no answer \
                     of {:?} was given today: ask again tomorrow (UTC)",
                    self.settings.daily_budget, self.view
                ),
            )
        }
    }
}

/// A view's answer: as computed for the admin and public views without differential privacy;
/// in DP mode, the day's cached answer to the same question, else a fresh noisy answer that
/// spends ε, else (the budget spent) the day's latest answer of the view.
fn answer<T: Private + Serialize + DeserializeOwned>(
    store: &dyn Store,
    project: &Project,
    dp: Option<&DpQuestion>,
    compute: impl FnOnce() -> crate::storage::Result<T>,
) -> crate::storage::Result<Result<Vec<u8>, ApiError>> {
    let Some(q) = dp else {
        return Ok(Ok(to_json(compute()?)));
    };
    let day = q.day();
    let look = store.dp_lookup(project.id, day, q.view, &q.key)?;
    if let Some(a) = look.same {
        return Ok(q.cached::<T>(a, look.spent));
    }
    if look.spent + q.settings.epsilon > q.settings.daily_budget + 1e-9 {
        return Ok(match look.latest {
            Some(a) => q.cached::<T>(a, look.spent),
            None => Err(q.spent()),
        });
    }
    let mut t = compute()?;
    let mut noise = match q.noise() {
        Ok(n) => n,
        Err(e) => return Ok(Err(e)),
    };
    privatize(&mut t, q.settings, &mut noise);
    let body = serde_json::to_string(&t).unwrap_or_default();
    let entry = DpEntry {
        project_id: project.id,
        day,
        view: q.view,
        query: &q.key,
        first_day: q.days.first,
        last_day: q.days.last,
        epsilon: q.settings.epsilon,
        daily_budget: q.settings.daily_budget,
        body: &body,
        now_ms: q.now_ms,
    };
    Ok(match store.dp_record(&entry)? {
        DpRecorded::Stored { spent } => {
            t.set_dp(q.info::<T>(spent, false, q.days.first, q.days.last));
            Ok(to_json(t))
        }
        DpRecorded::Raced { spent, answer } => q.cached::<T>(answer, spent),
        DpRecorded::Spent { spent, latest } => match latest {
            Some(a) => q.cached::<T>(a, spent),
            None => Err(q.spent()),
        },
    })
}

fn internal() -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "internal error: retry later",
    )
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

/// Query parameters of `/v1/metrics/usage`.
#[derive(Debug, Default, Deserialize)]
pub struct UsageParams {
    /// Only this project (default: every project).
    project: Option<String>,
}

/// `GET /v1/metrics/usage` (admin token): every project's usage in the Prometheus text format
/// ([`query::usage_metrics`]); `?project=NAME` for one project (404 if there is none).
pub async fn usage_metrics(
    State(state): State<AppState>,
    _: AdminToken,
    params: Result<Query<UsageParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let params = params
        .map(|q| q.0)
        .map_err(|e| invalid_query("query", format!("query string is not understood: {e}")))?;
    let store = state.store.clone();
    let text = blocking(move || {
        let projects = match &params.project {
            Some(name) => match store.project_by_name(name)? {
                Some(p) => vec![p],
                None => return Ok(None),
            },
            None => store.list_projects()?,
        };
        query::usage_metrics(&*store, &projects, now_ms()).map(Some)
    })
    .await?
    .ok_or_else(not_found)?;
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(state.writer.depth()),
    )
        .into_response()
}
