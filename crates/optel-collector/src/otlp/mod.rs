//! OTLP/HTTP ingest: `POST /v1/traces`, `/v1/metrics` and `/v1/logs`, protobuf
//! (`application/x-protobuf`) and JSON (`application/json`) on the same port, per the OTLP
//! specification (<https://opentelemetry.io/docs/specs/otlp/#otlphttp>): gzip bodies; the
//! answer in the request's content type; partial success (`rejected_spans` & co. with a
//! message) for items that cannot be stored; errors as a `google.rpc.Status`; only 429 and 503
//! are retryable (with `Retry-After`).
//!
//! # Mapping into optel events
//! Each resource becomes one optel batch: `service.name` and `service.version` name the tool,
//! `os.type` and `host.arch` the platform, and the resource attribute `optel.install.pseudonym` (as
//! sent by optel's own OTLP exporter) the install — without it the install is
//! `otlp:anonymous`. Every other resource attribute, `service.instance.id`, `host.name` and
//! anything address-like included, is dropped at ingest and never stored.
//! - a span → a `command` event named after the span: duration = end − start, failed when the
//!   span status is `ERROR`, error code from the `error.type` (or `optel.error_code`)
//!   attribute; trace and span ids must be 16 and 8 bytes and not all zero;
//! - the `command_invocation` metric (a monotonic Sum, delta or cumulative; attributes `command`
//!   and `outcome` `success`|`failure`, or a boolean `success`) → one `command` event per
//!   successful invocation counted. A delta point counts the invocations since the previous
//!   one; a cumulative point (the official SDKs' default) the invocations since its start time,
//!   and the i-th invocation of a series always gets the same event id, so re-exported totals
//!   never double count. Failure points are accepted but not stored: optel's exporter sends
//!   every failed command also as an `ERROR` span (seed 000: "error span only"), which carries
//!   the error code and duration, so storing both would count each failure twice;
//! - a log record → an event named by its `event_name` (or `event.name` attribute), with type
//!   from the `optel.event_type` attribute (`command`, `feature`, `method`, default `custom`).
//!
//! Event ids are derived from the item (trace and span id; metric point; log record), so a
//! retried export never double counts.

mod codec;
mod logs;
mod map;
mod metrics;
mod privacy;
#[cfg(test)]
mod tests;
mod traces;

use logs::map_logs;
use metrics::map_metrics;
use traces::map_traces;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
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

use crate::error::ApiError;
use crate::ingest::{ClientAddr, admit, counted, media_type, read_body, store};
use crate::{AppState, now_ms};

use codec::{Encoding, decode, error_response, ok_response};
use map::Mapped;
/// Name of the metric whose delta Sum points count command invocations.
pub const COMMAND_METRIC: &str = "command_invocation";
/// Resource attribute carrying the optel install pseudonym.
pub const PSEUDONYM_ATTRIBUTE: &str = "optel.install.pseudonym";
/// Install pseudonym of OTLP data without [`PSEUDONYM_ATTRIBUTE`].
pub const ANONYMOUS: &str = "otlp:anonymous";
/// Most events one metric data point may stand for.
pub const MAX_POINT_INVOCATIONS: i64 = 1_000;
/// Most events one OTLP request maps to: as many as one group commit holds
/// ([`crate::writer::MAX_GROUP_EVENTS`]). A metric point stands for up to
/// [`MAX_POINT_INVOCATIONS`] events, so without this bound a 4 MiB export could ask for about
/// 100 million; items past it are refused in the partial success.
pub const MAX_REQUEST_EVENTS: usize = crate::writer::MAX_GROUP_EVENTS;

const PROTOBUF: &str = "application/x-protobuf";
const JSON: &str = "application/json";

/// Handler of `POST /v1/traces`.
pub async fn post_traces(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    body: Body,
) -> Response {
    handle::<ExportTraceServiceRequest, _, _>(&state, addr, &headers, body, map_traces, |m| {
        ExportTraceServiceResponse {
            partial_success: (m.rejected > 0).then_some(ExportTracePartialSuccess {
                rejected_spans: m.rejected,
                error_message: m.message,
            }),
        }
    })
    .await
}

/// Handler of `POST /v1/metrics`.
pub async fn post_metrics(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    body: Body,
) -> Response {
    handle::<ExportMetricsServiceRequest, _, _>(&state, addr, &headers, body, map_metrics, |m| {
        ExportMetricsServiceResponse {
            partial_success: (m.rejected > 0).then_some(ExportMetricsPartialSuccess {
                rejected_data_points: m.rejected,
                error_message: m.message,
            }),
        }
    })
    .await
}

/// Handler of `POST /v1/logs`.
pub async fn post_logs(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    body: Body,
) -> Response {
    handle::<ExportLogsServiceRequest, _, _>(&state, addr, &headers, body, map_logs, |m| {
        ExportLogsServiceResponse {
            partial_success: (m.rejected > 0).then_some(ExportLogsPartialSuccess {
                rejected_log_records: m.rejected,
                error_message: m.message,
            }),
        }
    })
    .await
}

async fn handle<Req, Resp, F>(
    state: &AppState,
    addr: Option<std::net::IpAddr>,
    headers: &HeaderMap,
    body: Body,
    map: fn(Req, &str, i64) -> Mapped,
    respond: F,
) -> Response
where
    Req: Message + Default + DeserializeOwned,
    Resp: Message + Serialize,
    F: FnOnce(Mapped) -> Resp,
{
    let enc = Encoding::of(headers);
    let result = async {
        let project = admit(state, addr, headers).await?;
        let enc = enc.ok_or_else(|| {
            ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!(
                    "content type {:?} is not supported: send {PROTOBUF} or {JSON}",
                    media_type(headers)
                ),
            )
        })?;
        let bytes = read_body(headers, body).await?;
        let req: Req = decode(&bytes, enc)?;
        let received = now_ms();
        let Mapped {
            batches,
            rejected,
            message,
            ..
        } = map(req, &project.name, received);
        for batch in batches {
            store(state, &project, batch, received).await?;
        }
        Ok(respond(Mapped {
            rejected,
            message,
            ..Mapped::default()
        }))
    }
    .await;
    let enc = enc.unwrap_or(Encoding::Json);
    match result {
        Ok(resp) => ok_response(&resp, enc),
        Err(e) => error_response(counted(state, e), enc),
    }
}
