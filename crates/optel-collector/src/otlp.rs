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

use std::collections::BTreeMap;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, NumberDataPoint, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode as SpanStatus;
use optel_wire::{AttributeValue, Batch, Event, EventType, Timestamp, limits};
use prost::Message;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::ingest::{ClientAddr, admit, check_timestamps, counted, media_type, read_body, store};
use crate::{AppState, now_ms};

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

#[derive(Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    fn of(headers: &HeaderMap) -> Option<Self> {
        match media_type(headers).as_str() {
            PROTOBUF => Some(Self::Protobuf),
            JSON => Some(Self::Json),
            _ => None,
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Self::Protobuf => PROTOBUF,
            Self::Json => JSON,
        }
    }
}

/// gRPC status code of an HTTP error status (google.rpc.Code).
fn grpc_code(status: StatusCode) -> i32 {
    match status.as_u16() {
        400 | 413 | 415 => 3, // INVALID_ARGUMENT
        401 => 16,            // UNAUTHENTICATED
        403 => 7,             // PERMISSION_DENIED
        404 => 5,             // NOT_FOUND
        429 => 8,             // RESOURCE_EXHAUSTED
        503 => 14,            // UNAVAILABLE
        _ => 13,              // INTERNAL
    }
}

/// Writes a protobuf varint.
fn varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

/// `google.rpc.Status { code = 1; message = 2 }` in protobuf (no details).
pub fn status_protobuf(code: i32, message: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 8);
    if code != 0 {
        out.push(0x08);
        varint(&mut out, i64::from(code) as u64);
    }
    if !message.is_empty() {
        out.push(0x12);
        varint(&mut out, message.len() as u64);
        out.extend_from_slice(message.as_bytes());
    }
    out
}

/// An OTLP error answer: the status, `Retry-After` when retryable, a `google.rpc.Status` body.
fn error_response(e: ApiError, enc: Encoding) -> Response {
    let code = grpc_code(e.status);
    let message = match &e.field {
        Some(f) => format!("{} ({f}): {}", e.code, e.message),
        None => format!("{}: {}", e.code, e.message),
    };
    let body = match enc {
        Encoding::Protobuf => status_protobuf(code, &message),
        Encoding::Json => {
            serde_json::to_vec(&serde_json::json!({"code": code, "message": message}))
                .unwrap_or_default()
        }
    };
    let mut r = (e.status, [(header::CONTENT_TYPE, enc.content_type())], body).into_response();
    if let Some(s) = e.retry_after_s {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(s));
    }
    r
}

fn ok_response<T: Message + Serialize>(msg: &T, enc: Encoding) -> Response {
    let body = match enc {
        Encoding::Protobuf => msg.encode_to_vec(),
        Encoding::Json => serde_json::to_vec(msg).unwrap_or_default(),
    };
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, enc.content_type())],
        body,
    )
        .into_response()
}

fn decode<T: Message + Default + DeserializeOwned>(
    bytes: &[u8],
    enc: Encoding,
) -> Result<T, ApiError> {
    match enc {
        Encoding::Protobuf => T::decode(bytes).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_protobuf",
                format!("body is not an OTLP protobuf message ({e})"),
            )
        }),
        Encoding::Json => serde_json::from_slice(bytes).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_json",
                format!("body is not an OTLP JSON message ({e})"),
            )
        }),
    }
}

/// Items of one export, grouped into optel batches, and what was refused.
#[derive(Debug, Default)]
pub struct Mapped {
    /// Batches to store.
    pub batches: Vec<Batch>,
    /// Events in `batches` (at most [`MAX_REQUEST_EVENTS`]).
    pub events: usize,
    /// Items refused.
    pub rejected: i64,
    /// Why the first refused item was refused.
    pub message: String,
}

impl Mapped {
    fn reject(&mut self, n: i64, why: impl FnOnce() -> String) {
        if self.rejected == 0 {
            self.message = why();
        }
        self.rejected += n;
    }

    /// Whether [`MAX_REQUEST_EVENTS`] are mapped; if so, refuses `n` more items.
    fn full(&mut self, n: i64) -> bool {
        let full = self.events >= MAX_REQUEST_EVENTS;
        if full {
            self.reject(n, || {
                format!("more than {MAX_REQUEST_EVENTS} events in one export: send smaller exports")
            });
        }
        full
    }
}

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

fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

fn attr_str<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a str> {
    match attr(attrs, key) {
        Some(any_value::Value::StringValue(s)) => Some(s),
        _ => None,
    }
}

/// Whether a string looks like an IPv4 or IPv6 address (with or without a port).
pub fn looks_like_ip(s: &str) -> bool {
    let s = s.trim().trim_start_matches('[');
    let host = s.split(']').next().unwrap_or(s);
    host.parse::<std::net::IpAddr>().is_ok()
        || host
            .rsplit_once(':')
            .is_some_and(|(h, _)| h.parse::<std::net::Ipv4Addr>().is_ok())
}

/// Attribute keys never stored: they identify a machine or a person.
pub fn is_identifying_key(key: &str) -> bool {
    const KEYS: [&str; 8] = [
        "service.instance.id",
        "host.name",
        "host.id",
        "host.ip",
        "host.mac",
        "user.name",
        "enduser.id",
        "process.command_line",
    ];
    let k = key.to_ascii_lowercase();
    KEYS.contains(&k.as_str())
        || k.contains("address")
        || k.ends_with(".ip")
        || k.contains("peer")
        || k.starts_with("process.")
        || k.starts_with("user.")
}

/// The metadata kept of OTLP attributes: scalar values under valid names, never identifying
/// keys or address-like values, at most [`limits::MAX_ATTRIBUTES`].
fn metadata(attrs: &[KeyValue], skip: &[&str]) -> BTreeMap<String, AttributeValue> {
    let mut out = BTreeMap::new();
    for kv in attrs {
        if out.len() >= limits::MAX_ATTRIBUTES
            || skip.contains(&kv.key.as_str())
            || !optel_wire::is_valid_name(&kv.key)
            || is_identifying_key(&kv.key)
        {
            continue;
        }
        let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
            Some(any_value::Value::BoolValue(b)) => AttributeValue::Bool(*b),
            Some(any_value::Value::IntValue(i)) => AttributeValue::Int(*i),
            Some(any_value::Value::DoubleValue(f)) if f.is_finite() => AttributeValue::Float(*f),
            Some(any_value::Value::StringValue(s))
                if s.len() <= limits::MAX_STRING_VALUE_BYTES && !looks_like_ip(s) =>
            {
                AttributeValue::String(s.clone())
            }
            _ => continue,
        };
        out.insert(kv.key.clone(), value);
    }
    out
}

fn clean(s: Option<&str>, max: usize, ok: fn(char) -> bool) -> Option<String> {
    s.filter(|s| !s.is_empty() && s.len() <= max && s.chars().all(ok))
        .map(str::to_owned)
}

/// The batch skeleton of a resource: everything but the keys below is dropped here.
fn batch_for(resource: Option<&Resource>, project: &str) -> Batch {
    let attrs: &[KeyValue] = resource.map_or(&[], |r| &r.attributes);
    let platform = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    let service = attr_str(attrs, "service.name")
        .filter(|s| optel_wire::is_valid_name(s))
        .unwrap_or(project);
    let version = clean(
        attr_str(attrs, "service.version"),
        limits::MAX_VERSION_BYTES,
        |c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '-'),
    )
    .unwrap_or_else(|| "unknown".into());
    let pseudonym = clean(
        attr_str(attrs, PSEUDONYM_ATTRIBUTE),
        limits::MAX_PSEUDONYM_BYTES,
        |c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, ':' | '_' | '-'),
    )
    .unwrap_or_else(|| ANONYMOUS.into());
    let os = clean(
        attr_str(attrs, "os.type"),
        limits::MAX_PLATFORM_BYTES,
        platform,
    )
    .unwrap_or_else(|| "unknown".into());
    let arch = clean(
        attr_str(attrs, "host.arch"),
        limits::MAX_PLATFORM_BYTES,
        platform,
    )
    .unwrap_or_else(|| "unknown".into());
    Batch::new(service, version, pseudonym, os, arch)
}

/// A UUID (v4 layout) derived from bytes: the same item always gets the same event id.
fn derived_uuid(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    let d = h.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    optel_wire::format_uuid_v4(b)
}

fn ms_of_nanos(n: u64) -> i64 {
    (n / 1_000_000) as i64
}

/// Adds an event to the last batch of `out` (splitting past [`limits::MAX_BATCH_EVENTS`])
/// if it validates and lies in the accepted time window; else counts it rejected.
fn push(out: &mut Mapped, template: &Batch, pending: &mut Batch, event: Event, received: i64) {
    if out.full(1) {
        return;
    }
    let mut probe = template.clone();
    probe.events.push(event);
    let check = probe
        .validate()
        .and_then(|()| check_timestamps(&probe, received));
    match check {
        Ok(()) => {
            if pending.events.len() >= limits::MAX_BATCH_EVENTS {
                let full = std::mem::replace(pending, template.clone());
                out.batches.push(full);
            }
            pending.events.extend(probe.events);
            out.events += 1;
        }
        Err(e) => out.reject(1, || format!("{}: {}", e.field, e.reason)),
    }
}

fn flush(out: &mut Mapped, pending: Batch) {
    if !pending.events.is_empty() {
        out.batches.push(pending);
    }
}

/// Maps an OTLP trace export into optel batches (see the module docs).
pub fn map_traces(req: ExportTraceServiceRequest, project: &str, received: i64) -> Mapped {
    let mut out = Mapped::default();
    for rs in req.resource_spans {
        let template = batch_for(rs.resource.as_ref(), project);
        let mut pending = template.clone();
        for span in rs.scope_spans.into_iter().flat_map(|s| s.spans) {
            if span.trace_id.len() != 16 || span.trace_id.iter().all(|&b| b == 0) {
                out.reject(1, || {
                    format!(
                        "span {:?}: trace id must be 16 bytes, not all zero (got {})",
                        span.name,
                        span.trace_id.len()
                    )
                });
                continue;
            }
            if span.span_id.len() != 8 || span.span_id.iter().all(|&b| b == 0) {
                out.reject(1, || {
                    format!(
                        "span {:?}: span id must be 8 bytes, not all zero (got {})",
                        span.name,
                        span.span_id.len()
                    )
                });
                continue;
            }
            let failed = span
                .status
                .as_ref()
                .is_some_and(|s| s.code == SpanStatus::Error as i32);
            let mut e = Event::new(
                derived_uuid(&[b"span", &span.trace_id, &span.span_id]),
                EventType::Command,
                span.name.clone(),
                Timestamp::from_unix_ms(ms_of_nanos(span.start_time_unix_nano)),
                derived_uuid(&[b"trace", &span.trace_id]),
            );
            e.duration_ms = Some(
                span.end_time_unix_nano
                    .saturating_sub(span.start_time_unix_nano)
                    / 1_000_000,
            );
            e.success = Some(!failed);
            if failed {
                e.error_code = attr_str(&span.attributes, "error.type")
                    .or_else(|| attr_str(&span.attributes, "optel.error_code"))
                    .map(str::to_owned);
            }
            e.metadata = metadata(&span.attributes, &["error.type", "optel.error_code"]);
            push(&mut out, &template, &mut pending, e, received);
        }
        flush(&mut out, pending);
    }
    out
}

/// Maps an OTLP metrics export into optel batches: only [`COMMAND_METRIC`] Sums are stored;
/// every other data point is refused in the partial success.
///
/// Delta points count the invocations since the previous point. Cumulative points (the
/// official OpenTelemetry SDKs' default temporality) count the invocations since the series'
/// start time; the i-th invocation of a series always maps to the same event id, so each
/// export of the growing total stores only the invocations not seen before.
pub fn map_metrics(req: ExportMetricsServiceRequest, project: &str, received: i64) -> Mapped {
    let mut out = Mapped::default();
    for rm in req.resource_metrics {
        let template = batch_for(rm.resource.as_ref(), project);
        let resource = rm.resource.as_ref().map(Message::encode_to_vec);
        let resource = resource.unwrap_or_default();
        let mut pending = template.clone();
        for sm in rm.scope_metrics {
            let scope = sm.scope.map(|s| s.name).unwrap_or_default();
            for m in sm.metrics {
                let sum = match m.data {
                    Some(metric::Data::Sum(sum)) if m.name == COMMAND_METRIC => sum,
                    other => {
                        let n = match &other {
                            Some(metric::Data::Gauge(g)) => g.data_points.len(),
                            Some(metric::Data::Sum(s)) => s.data_points.len(),
                            Some(metric::Data::Histogram(h)) => h.data_points.len(),
                            Some(metric::Data::ExponentialHistogram(h)) => h.data_points.len(),
                            Some(metric::Data::Summary(s)) => s.data_points.len(),
                            None => 0,
                        };
                        out.reject(n as i64, || {
                            format!(
                                "metric {:?} is not stored: optel stores the {COMMAND_METRIC} sum only",
                                m.name
                            )
                        });
                        continue;
                    }
                };
                let cumulative =
                    sum.aggregation_temporality == AggregationTemporality::Cumulative as i32;
                if !cumulative
                    && sum.aggregation_temporality != AggregationTemporality::Delta as i32
                {
                    out.reject(sum.data_points.len() as i64, || {
                        format!("{COMMAND_METRIC} has no aggregation temporality: send delta or cumulative")
                    });
                    continue;
                }
                if cumulative && !sum.is_monotonic {
                    out.reject(sum.data_points.len() as i64, || {
                        format!("a cumulative {COMMAND_METRIC} must be monotonic: record it with a counter")
                    });
                    continue;
                }
                let series = Series {
                    resource: &resource,
                    scope: &scope,
                    cumulative,
                };
                for (index, p) in sum.data_points.iter().enumerate() {
                    // Checked before the point's events are made (up to 1,000 each).
                    if out.full(1) {
                        continue;
                    }
                    match command_events(series, index, p) {
                        Ok(events) => {
                            for e in events {
                                push(&mut out, &template, &mut pending, e, received);
                            }
                        }
                        Err(why) => out.reject(1, || why),
                    }
                }
            }
        }
        flush(&mut out, pending);
    }
    out
}

/// The series a [`COMMAND_METRIC`] point belongs to: its resource (encoded), instrumentation
/// scope name and temporality.
#[derive(Clone, Copy)]
struct Series<'a> {
    resource: &'a [u8],
    scope: &'a str,
    cumulative: bool,
}

/// The command events of the `index`-th [`COMMAND_METRIC`] point (none for failures, see the
/// module docs), or why the point is refused.
fn command_events(
    series: Series<'_>,
    index: usize,
    p: &NumberDataPoint,
) -> Result<Vec<Event>, String> {
    let count = match p.value {
        Some(number_data_point::Value::AsInt(i)) => i,
        Some(number_data_point::Value::AsDouble(f)) if f.is_finite() && f >= 0.0 => {
            f.round() as i64
        }
        _ => -1,
    };
    if !(0..=MAX_POINT_INVOCATIONS).contains(&count) {
        return Err(if series.cumulative {
            format!(
                "cumulative {COMMAND_METRIC} point value must be 0 to {MAX_POINT_INVOCATIONS}: \
                 use delta temporality for long-running processes"
            )
        } else {
            format!("{COMMAND_METRIC} point value must be 0 to {MAX_POINT_INVOCATIONS}")
        });
    }
    if series.cumulative && p.start_time_unix_nano == 0 {
        // Without a start time, the series of two installs could not be told apart.
        return Err(format!(
            "cumulative {COMMAND_METRIC} point has no start time: set start_time_unix_nano"
        ));
    }
    let command = attr_str(&p.attributes, "command")
        .ok_or_else(|| format!("{COMMAND_METRIC} point has no `command` attribute"))?;
    let success = match (
        attr_str(&p.attributes, "outcome"),
        attr(&p.attributes, "success"),
    ) {
        (Some(outcome), _) => Some(outcome == "success"),
        (None, Some(any_value::Value::BoolValue(b))) => Some(*b),
        _ => None,
    };
    if success == Some(false) {
        // Counted from the failed command's ERROR span instead (see module docs).
        return Ok(Vec::new());
    }
    // Delta: the point itself (attributes, times, value) and its position identify its
    // invocations. Cumulative: the series (resource, scope, attributes in a stable order, start
    // time) does, so the i-th invocation keeps its id as the total grows.
    let series_seed = series.cumulative.then(|| {
        let mut attrs: Vec<Vec<u8>> = p.attributes.iter().map(Message::encode_to_vec).collect();
        attrs.sort_unstable();
        let start = p.start_time_unix_nano.to_be_bytes();
        let mut parts: Vec<&[u8]> = vec![series.resource, series.scope.as_bytes(), &start];
        parts.extend(attrs.iter().map(Vec::as_slice));
        derived_uuid(&parts)
    });
    let (session, ids): (String, Vec<String>) = match &series_seed {
        Some(seed) => (
            derived_uuid(&[b"metric-cumulative-session", seed.as_bytes()]),
            (0..count)
                .map(|i| derived_uuid(&[b"metric-cumulative", seed.as_bytes(), &i.to_be_bytes()]))
                .collect(),
        ),
        None => {
            let encoded = p.encode_to_vec();
            let point_id = format!("{index}|{}|{}", p.start_time_unix_nano, p.time_unix_nano);
            (
                derived_uuid(&[b"metric-session", &encoded]),
                (0..count)
                    .map(|i| {
                        derived_uuid(&[b"metric", &encoded, point_id.as_bytes(), &i.to_be_bytes()])
                    })
                    .collect(),
            )
        }
    };
    let events = ids
        .into_iter()
        .map(|id| {
            let mut e = Event::new(
                id,
                EventType::Command,
                command,
                Timestamp::from_unix_ms(ms_of_nanos(p.time_unix_nano)),
                session.clone(),
            );
            e.success = success;
            e
        })
        .collect();
    Ok(events)
}

fn any_str(v: Option<&AnyValue>) -> Option<&str> {
    match v.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => Some(s),
        _ => None,
    }
}

/// Maps an OTLP logs export into optel batches (see the module docs).
pub fn map_logs(req: ExportLogsServiceRequest, project: &str, received: i64) -> Mapped {
    let mut out = Mapped::default();
    for rl in req.resource_logs {
        let template = batch_for(rl.resource.as_ref(), project);
        let mut pending = template.clone();
        for rec in rl.scope_logs.into_iter().flat_map(|s| s.log_records) {
            let name = Some(rec.event_name.as_str())
                .filter(|n| !n.is_empty())
                .or_else(|| attr_str(&rec.attributes, "event.name"))
                .or_else(|| any_str(rec.body.as_ref()))
                .unwrap_or("")
                .to_owned();
            let event_type = attr_str(&rec.attributes, "optel.event_type")
                .and_then(EventType::parse)
                .unwrap_or(EventType::Custom);
            let ts = if rec.time_unix_nano != 0 {
                rec.time_unix_nano
            } else {
                rec.observed_time_unix_nano
            };
            let encoded = rec.encode_to_vec();
            let mut e = Event::new(
                derived_uuid(&[b"log", &encoded]),
                event_type,
                name,
                Timestamp::from_unix_ms(ms_of_nanos(ts)),
                derived_uuid(&[b"log-session", &rec.trace_id]),
            );
            if event_type == EventType::Command {
                e.duration_ms = match attr(&rec.attributes, "duration_ms") {
                    Some(any_value::Value::IntValue(d)) if *d >= 0 => Some(*d as u64),
                    _ => None,
                };
                e.success = match attr(&rec.attributes, "success") {
                    Some(any_value::Value::BoolValue(b)) => Some(*b),
                    _ => None,
                };
                e.error_code = attr_str(&rec.attributes, "error_code").map(str::to_owned);
            }
            e.metadata = metadata(
                &rec.attributes,
                &[
                    "event.name",
                    "optel.event_type",
                    "duration_ms",
                    "success",
                    "error_code",
                ],
            );
            push(&mut out, &template, &mut pending, e, received);
        }
        flush(&mut out, pending);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_protobuf_round_trips_through_prost() {
        #[derive(Clone, PartialEq, Message)]
        struct Status {
            #[prost(int32, tag = "1")]
            code: i32,
            #[prost(string, tag = "2")]
            message: String,
        }
        let bytes = status_protobuf(8, "rate_limited: slow down");
        let s = Status::decode(&bytes[..]).unwrap();
        assert_eq!(s.code, 8);
        assert_eq!(s.message, "rate_limited: slow down");
    }

    /// One `command_invocation` point of `total` successful `test` runs in a Sum of
    /// `temporality`, from a resource named `service`.
    fn invocations(
        service: &str,
        temporality: AggregationTemporality,
        monotonic: bool,
        start_ns: u64,
        time_ns: u64,
        total: i64,
    ) -> ExportMetricsServiceRequest {
        use opentelemetry_proto::tonic::metrics::v1::{
            Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
        };
        let kv = |k: &str, v: &str| KeyValue {
            key: k.into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(v.into())),
            }),
            ..KeyValue::default()
        };
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", service)],
                    ..Resource::default()
                }),
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![Metric {
                        name: COMMAND_METRIC.into(),
                        data: Some(metric::Data::Sum(Sum {
                            aggregation_temporality: temporality as i32,
                            is_monotonic: monotonic,
                            data_points: vec![NumberDataPoint {
                                // The official SDKs' attribute order is not promised stable.
                                attributes: if total % 2 == 0 {
                                    vec![kv("command", "test"), kv("outcome", "success")]
                                } else {
                                    vec![kv("outcome", "success"), kv("command", "test")]
                                },
                                start_time_unix_nano: start_ns,
                                time_unix_nano: time_ns,
                                value: Some(number_data_point::Value::AsInt(total)),
                                ..NumberDataPoint::default()
                            }],
                        })),
                        ..Metric::default()
                    }],
                    ..ScopeMetrics::default()
                }],
                ..ResourceMetrics::default()
            }],
        }
    }

    fn ids(m: &Mapped) -> Vec<String> {
        m.batches
            .iter()
            .flat_map(|b| b.events.iter().map(|e| e.event_id.clone()))
            .collect()
    }

    /// Regression: the official SDKs export cumulative sums by default, which were refused
    /// ("must use delta temporality"), so an SDK left at its defaults stored no invocation.
    #[test]
    fn cumulative_totals_map_to_stable_ids_per_series() {
        use AggregationTemporality::{Cumulative, Delta};
        let now = now_ms();
        let ns = |ms: i64| (ms as u64) * 1_000_000;
        let (start, t1, t2) = (ns(now - 60_000), ns(now - 30_000), ns(now - 1_000));
        let map = |req| map_metrics(req, "p", now);
        let first = map(invocations("acme", Cumulative, true, start, t1, 2));
        let second = map(invocations("acme", Cumulative, true, start, t2, 5));
        assert_eq!(
            (first.rejected, second.rejected),
            (0, 0),
            "{}",
            second.message
        );
        let (first, second) = (ids(&first), ids(&second));
        assert_eq!((first.len(), second.len()), (2, 5));
        assert_eq!(
            first,
            second[..2],
            "the first two invocations keep their ids"
        );

        // Another series (start time, resource) has its own invocations.
        let restarted = map(invocations("acme", Cumulative, true, start + 1, t2, 2));
        let other = map(invocations("other", Cumulative, true, start, t2, 2));
        for m in [&restarted, &other] {
            assert!(ids(m).iter().all(|id| !second.contains(id)));
        }
        // Delta points are separate invocations even with equal values.
        let d1 = ids(&map(invocations("acme", Delta, true, start, t1, 2)));
        let d2 = ids(&map(invocations("acme", Delta, true, t1, t2, 2)));
        assert!(d1.iter().all(|id| !d2.contains(id)));

        // Refused, with a reason: no start time, not monotonic, too many.
        for (req, why) in [
            (
                invocations("acme", Cumulative, true, 0, t1, 2),
                "no start time",
            ),
            (
                invocations("acme", Cumulative, false, start, t1, 2),
                "monotonic",
            ),
            (
                invocations(
                    "acme",
                    Cumulative,
                    true,
                    start,
                    t1,
                    MAX_POINT_INVOCATIONS + 1,
                ),
                "delta",
            ),
        ] {
            let m = map(req);
            assert!(m.batches.is_empty() && m.rejected > 0, "{why}");
            assert!(m.message.contains(why), "{}", m.message);
        }
    }

    /// A small export cannot ask for millions of events: past [`MAX_REQUEST_EVENTS`], points
    /// are refused (with a reason) before their events are made.
    #[test]
    fn one_export_maps_to_a_bounded_number_of_events() {
        use AggregationTemporality::Delta;
        let now = now_ms();
        let ns = |ms: i64| (ms as u64) * 1_000_000;
        let mut req = invocations("acme", Delta, true, ns(now - 2_000), ns(now - 1_000), 0);
        let metric = &mut req.resource_metrics[0].scope_metrics[0].metrics[0];
        let Some(metric::Data::Sum(sum)) = &mut metric.data else {
            unreachable!("invocations() builds a Sum")
        };
        let point = sum.data_points[0].clone();
        sum.data_points = (0..100)
            .map(|i| NumberDataPoint {
                time_unix_nano: point.time_unix_nano + i,
                value: Some(number_data_point::Value::AsInt(MAX_POINT_INVOCATIONS)),
                ..point.clone()
            })
            .collect();
        let m = map_metrics(req, "p", now);
        let fit = MAX_REQUEST_EVENTS / MAX_POINT_INVOCATIONS as usize;
        assert_eq!(ids(&m).len(), MAX_REQUEST_EVENTS);
        assert_eq!(m.events, MAX_REQUEST_EVENTS);
        assert_eq!(m.rejected, (100 - fit) as i64);
        assert!(m.message.contains("smaller exports"), "{}", m.message);
    }

    #[test]
    fn identifying_attributes_and_ips() {
        assert!(is_identifying_key("service.instance.id"));
        assert!(is_identifying_key("host.name"));
        assert!(is_identifying_key("client.address"));
        assert!(!is_identifying_key("cache.hit"));
        assert!(looks_like_ip("10.0.0.1"));
        assert!(looks_like_ip("10.0.0.1:8080"));
        assert!(looks_like_ip("[::1]:80"));
        assert!(looks_like_ip("fe80::1"));
        assert!(!looks_like_ip("build"));
        // Derived ids are stable (a re-sent item maps to the same event), distinct per input,
        // and the parts are delimited ("ab" is not "a" + "b").
        let id = derived_uuid(&[b"a"]);
        assert!(optel_wire::is_uuid(&id));
        assert_eq!(id, derived_uuid(&[&b"ab"[..1]]));
        assert_ne!(id, derived_uuid(&[b"b"]));
        assert_ne!(derived_uuid(&[b"ab"]), derived_uuid(&[b"a", b"b"]));
    }
}
