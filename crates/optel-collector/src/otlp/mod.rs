//! OTLP/HTTP ingest: `POST /v1/traces`, `/v1/metrics` and `/v1/logs`, protobuf
//! (`application/x-protobuf`) and JSON (`application/json`) on the same port, per the OTLP
//! specification (<https://opentelemetry.io/docs/specs/otlp/#otlphttp>): gzip bodies; the
//! answer in the request's content type; partial success (`rejected_spans` & co. with a
//! message) for items that cannot be stored; errors as a `google.rpc.Status`; only 429 and 503
//! are retryable (with `Retry-After`).
//!
//! # Mapping into optel events
//! The full table (what each signal, attribute and resource key becomes, and what is dropped)
//! is `docs/otlp.md`. In short: each resource becomes one optel batch (`service.name`,
//! `service.version`, `os.type` and `host.arch` normalised by [`optel_wire::platform`], the
//! install from `optel.install.pseudonym`, else `otlp:anonymous`); a root span of kind
//! INTERNAL is a command ([`traces`]); `command_invocation` sum points are command
//! invocations, successes and failures, delta or cumulative ([`metrics`]); a log record with
//! an event name is an event of the type its `optel.event_type` says ([`logs`]). Attributes go
//! through the collector's one privacy filter ([`crate::privacy`]).
//!
//! Event ids are derived from the install and the item (trace and span id; metric point or
//! cumulative series and ordinal; log record), so a retried export never double counts and two
//! installs sending the same item are two items.
//!
//! # Cost of a request
//! Decoding and mapping run on blocking threads, at most [`decode_permits`] at once, so a
//! burst of large exports cannot stall the async workers; before decoding, [`limit`] counts the
//! messages the body would allocate and refuses it past its bounds.

mod codec;
#[cfg(feature = "otlp-grpc")]
pub(crate) mod grpc;
mod limit;
mod logs;
mod map;
mod metrics;
mod privacy;
#[cfg(test)]
mod tests;
mod traces;

use std::sync::LazyLock;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::Semaphore;

use crate::error::ApiError;
use crate::extract::OtlpExport;
use crate::ingest::store as store_batch;
use crate::storage::Project;
use crate::{AppState, now_ms};

pub(crate) use codec::{Encoding, OtlpRejection, error_response};
use codec::{decode, ok_response};
use logs::map_logs;
use map::Mapped;
use metrics::map_metrics;
use traces::map_traces;

/// Name of the metric whose Sum points (delta or cumulative) count command invocations.
pub const COMMAND_METRIC: &str = "command_invocation";
/// Resource attribute carrying the optel install pseudonym.
pub const PSEUDONYM_ATTRIBUTE: &str = "optel.install.pseudonym";
/// Install pseudonym of OTLP data without [`PSEUDONYM_ATTRIBUTE`].
pub const ANONYMOUS: &str = "otlp:anonymous";
/// Most events one metric data point may stand for (per export, for a cumulative series).
pub const MAX_POINT_INVOCATIONS: i64 = 1_000;
/// Most events one OTLP request maps to: as many as one group commit holds
/// ([`crate::writer::MAX_GROUP_EVENTS`]). A metric point stands for up to
/// [`MAX_POINT_INVOCATIONS`] events, so without this bound a 4 MiB export could ask for about
/// 100 million; items past it are refused in the partial success.
pub const MAX_REQUEST_EVENTS: usize = crate::writer::MAX_GROUP_EVENTS;

const PROTOBUF: &str = "application/x-protobuf";
const JSON: &str = "application/json";

/// An OTLP export request type: where the protobuf scan starts and how many items it holds.
pub(crate) trait Signal: Message + Default + DeserializeOwned + Send + 'static {
    /// The message type of the request, for [`limit::check`].
    const ROOT: limit::Ty;
    /// Spans, metrics, data points or log records in the request.
    fn items(&self) -> usize;
}

impl Signal for ExportTraceServiceRequest {
    const ROOT: limit::Ty = limit::Ty::TraceRequest;
    fn items(&self) -> usize {
        self.resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum()
    }
}

impl Signal for ExportMetricsServiceRequest {
    const ROOT: limit::Ty = limit::Ty::MetricsRequest;
    fn items(&self) -> usize {
        use opentelemetry_proto::tonic::metrics::v1::metric::Data;
        self.resource_metrics
            .iter()
            .flat_map(|r| &r.scope_metrics)
            .flat_map(|s| &s.metrics)
            .map(|m| {
                1 + match &m.data {
                    Some(Data::Gauge(g)) => g.data_points.len(),
                    Some(Data::Sum(s)) => s.data_points.len(),
                    Some(Data::Histogram(h)) => h.data_points.len(),
                    Some(Data::ExponentialHistogram(h)) => h.data_points.len(),
                    Some(Data::Summary(s)) => s.data_points.len(),
                    None => 0,
                }
            })
            .sum()
    }
}

impl Signal for ExportLogsServiceRequest {
    const ROOT: limit::Ty = limit::Ty::LogsRequest;
    fn items(&self) -> usize {
        self.resource_logs
            .iter()
            .flat_map(|r| &r.scope_logs)
            .map(|s| s.log_records.len())
            .sum()
    }
}

/// How many OTLP requests are decoded or mapped at once: the machine's parallelism (at least
/// 2). Waiting requests hold only their body.
pub fn decode_permits() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().max(2))
}

static PERMITS: LazyLock<Semaphore> = LazyLock::new(|| Semaphore::new(decode_permits()));

fn internal() -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "internal error: retry later",
    )
}

/// Runs `f` on a blocking thread under one of the [`decode_permits`].
async fn bounded<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let permit = PERMITS.acquire().await.map_err(|_| internal())?;
    let out = tokio::task::spawn_blocking(f).await.map_err(|_| internal());
    drop(permit);
    out?
}

/// Decodes an OTLP request off the async workers, after [`limit::check`] found it within
/// bounds.
///
/// # Errors
/// 413 `too_many_items`, 400 `invalid_protobuf` / `invalid_json`.
pub(crate) async fn decode_bounded<T: Signal>(
    bytes: Bytes,
    encoding: Encoding,
) -> Result<T, ApiError> {
    bounded(move || {
        limit::check(&bytes, encoding, T::ROOT)?;
        let request: T = decode(&bytes, encoding)?;
        limit::check_items(request.items())?;
        Ok(request)
    })
    .await
}

/// Handler of `POST /v1/traces`.
pub(crate) async fn post_traces(
    State(state): State<AppState>,
    export: OtlpExport<ExportTraceServiceRequest>,
) -> Result<Response, OtlpRejection> {
    let answer = export_traces(&state, export.project, export.request).await;
    respond(answer, export.encoding)
}

/// Handler of `POST /v1/metrics`.
pub(crate) async fn post_metrics(
    State(state): State<AppState>,
    export: OtlpExport<ExportMetricsServiceRequest>,
) -> Result<Response, OtlpRejection> {
    let answer = export_metrics(&state, export.project, export.request).await;
    respond(answer, export.encoding)
}

/// Handler of `POST /v1/logs`.
pub(crate) async fn post_logs(
    State(state): State<AppState>,
    export: OtlpExport<ExportLogsServiceRequest>,
) -> Result<Response, OtlpRejection> {
    let answer = export_logs(&state, export.project, export.request).await;
    respond(answer, export.encoding)
}

/// An OTLP/HTTP answer in the request's `encoding`.
fn respond<T: Message + Serialize>(
    answer: Result<T, ApiError>,
    encoding: Encoding,
) -> Result<Response, OtlpRejection> {
    answer
        .map(|a| ok_response(&a, encoding))
        .map_err(|error| OtlpRejection { error, encoding })
}

/// Maps and stores a decoded trace export of `project` (OTLP/HTTP and OTLP/gRPC alike).
pub(crate) async fn export_traces(
    state: &AppState,
    project: Project,
    request: ExportTraceServiceRequest,
) -> Result<ExportTraceServiceResponse, ApiError> {
    handle(
        state,
        project,
        request,
        |r, p, _, t| Ok(map_traces(r, &p.name, t)),
        |m| ExportTraceServiceResponse {
            partial_success: (m.rejected > 0 || !m.message.is_empty()).then_some(
                ExportTracePartialSuccess {
                    rejected_spans: m.rejected,
                    error_message: m.message,
                },
            ),
        },
    )
    .await
}

/// Maps and stores a decoded metrics export of `project` (OTLP/HTTP and OTLP/gRPC alike).
pub(crate) async fn export_metrics(
    state: &AppState,
    project: Project,
    request: ExportMetricsServiceRequest,
) -> Result<ExportMetricsServiceResponse, ApiError> {
    handle(state, project, request, map_cumulative, |m| {
        ExportMetricsServiceResponse {
            partial_success: (m.rejected > 0 || !m.message.is_empty()).then_some(
                ExportMetricsPartialSuccess {
                    rejected_data_points: m.rejected,
                    error_message: m.message,
                },
            ),
        }
    })
    .await
}

/// Maps and stores a decoded logs export of `project` (OTLP/HTTP and OTLP/gRPC alike).
pub(crate) async fn export_logs(
    state: &AppState,
    project: Project,
    request: ExportLogsServiceRequest,
) -> Result<ExportLogsServiceResponse, ApiError> {
    handle(
        state,
        project,
        request,
        |r, p, _, t| Ok(map_logs(r, &p.name, t)),
        |m| ExportLogsServiceResponse {
            partial_success: (m.rejected > 0 || !m.message.is_empty()).then_some(
                ExportLogsPartialSuccess {
                    rejected_log_records: m.rejected,
                    error_message: m.message,
                },
            ),
        },
    )
    .await
}

/// [`map_metrics`] with the high-water marks of the request's cumulative series read from
/// the store first.
fn map_cumulative(
    req: ExportMetricsServiceRequest,
    project: &Project,
    store: &dyn crate::storage::Store,
    received: i64,
) -> Result<Mapped, ApiError> {
    let keys = metrics::cumulative_keys(&req, &project.name);
    let marks = if keys.is_empty() {
        metrics::Marks::new()
    } else {
        store
            .cumulative_marks(project.id, &keys)
            .map_err(|e| ApiError::storage(&e))?
            .into_iter()
            .collect()
    };
    Ok(map_metrics(req, &project.name, received, &marks))
}

/// What the three signals share once their request is decoded: map it to batches (off the
/// async workers), store them, move the marks of cumulative series, and answer with the
/// partial success `respond` makes of what was refused.
async fn handle<Req: Send + 'static, Resp>(
    state: &AppState,
    project: Project,
    request: Req,
    map: fn(Req, &Project, &dyn crate::storage::Store, i64) -> Result<Mapped, ApiError>,
    respond: impl FnOnce(Mapped) -> Resp,
) -> Result<Resp, ApiError> {
    let received = now_ms();
    let store = state.store.clone();
    let for_map = project.clone();
    let Mapped {
        batches,
        rejected,
        message,
        dropped,
        advances,
        ..
    } = bounded(move || map(request, &for_map, &*store, received)).await?;
    dropped.record(&state.metrics);
    for batch in batches {
        store_batch(state, &project, batch, received).await?;
    }
    if !advances.is_empty() {
        // After the commit: a mark never runs ahead of what is stored. Should this fail, the
        // next export regenerates the same invocation ids, which the store skips.
        let store = state.store.clone();
        let project_id = project.id;
        let result =
            crate::app::blocking(move || store.advance_cumulative(project_id, &advances, received))
                .await;
        if let Err(e) = result {
            tracing::warn!(error = ?e, "cumulative marks not updated");
        }
    }
    Ok(respond(Mapped {
        rejected,
        message,
        ..Mapped::default()
    }))
}
