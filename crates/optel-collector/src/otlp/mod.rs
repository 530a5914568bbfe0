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
//!   every failed command also as an `ERROR` span (an error is recorded once, as a span), which carries
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

use axum::extract::State;
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

use crate::ingest::store;
use crate::{AppState, now_ms};

use crate::extract::OtlpExport;
use codec::ok_response;
pub(crate) use codec::{Encoding, OtlpRejection, decode, error_response};
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
pub(crate) async fn post_traces(
    State(state): State<AppState>,
    export: OtlpExport<ExportTraceServiceRequest>,
) -> Result<Response, OtlpRejection> {
    handle(&state, export, map_traces, |m| ExportTraceServiceResponse {
        partial_success: (m.rejected > 0).then_some(ExportTracePartialSuccess {
            rejected_spans: m.rejected,
            error_message: m.message,
        }),
    })
    .await
}

/// Handler of `POST /v1/metrics`.
pub(crate) async fn post_metrics(
    State(state): State<AppState>,
    export: OtlpExport<ExportMetricsServiceRequest>,
) -> Result<Response, OtlpRejection> {
    handle(&state, export, map_metrics, |m| {
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
pub(crate) async fn post_logs(
    State(state): State<AppState>,
    export: OtlpExport<ExportLogsServiceRequest>,
) -> Result<Response, OtlpRejection> {
    handle(&state, export, map_logs, |m| ExportLogsServiceResponse {
        partial_success: (m.rejected > 0).then_some(ExportLogsPartialSuccess {
            rejected_log_records: m.rejected,
            error_message: m.message,
        }),
    })
    .await
}

/// What the three signals share once their request is decoded: map it to batches, store
/// them, and answer with the partial success `respond` makes of what was refused.
async fn handle<Req, Resp: Message + Serialize>(
    state: &AppState,
    export: OtlpExport<Req>,
    map: fn(Req, &str, i64) -> Mapped,
    respond: impl FnOnce(Mapped) -> Resp,
) -> Result<Response, OtlpRejection> {
    let OtlpExport {
        project,
        encoding,
        request,
    } = export;
    let received = now_ms();
    let Mapped {
        batches,
        rejected,
        message,
        ..
    } = map(request, &project.name, received);
    for batch in batches {
        store(state, &project, batch, received)
            .await
            .map_err(|error| OtlpRejection { error, encoding })?;
    }
    let answer = respond(Mapped {
        rejected,
        message,
        ..Mapped::default()
    });
    Ok(ok_response(&answer, encoding))
}
