//! Bounds on a request before it is decoded: how many messages and items (spans, data points,
//! log records, metrics) its body holds.
//!
//! Decoding allocates a struct for every message of the body, whatever its size on the wire:
//! an empty `Span` is 2 bytes of protobuf and about 300 bytes once decoded, so a 4 MiB body of
//! them cost ~545 MB (BENCHMARKS.md, "OTLP decoding"). A protobuf body is therefore scanned
//! first, in one pass without allocating, following the OTLP schema to count the messages
//! decoding would make; a JSON body counts its objects (`{` outside strings). Past
//! [`MAX_REQUEST_MESSAGES`] messages or [`MAX_REQUEST_ITEMS`] items the request is refused
//! (413 `too_many_items`) before anything is allocated.

use axum::http::StatusCode;

use crate::error::ApiError;

use super::Encoding;

/// Most items (spans, metrics, data points, log records, span events and links) in one
/// request. The official SDKs export at most 512 spans or log records per request by default.
pub const MAX_REQUEST_ITEMS: usize = 20_000;
/// Most messages of any kind (items, attributes, values, resources, ...) in one request: about
/// 20 per item for items with ten attributes.
pub const MAX_REQUEST_MESSAGES: usize = 200_000;
/// Deepest nesting of messages (attribute values nest through arrays and maps).
pub const MAX_DEPTH: u32 = 32;

/// The OTLP message types, as far as the scanner needs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    TraceRequest,
    MetricsRequest,
    LogsRequest,
    ResourceSpans,
    ResourceMetrics,
    ResourceLogs,
    Resource,
    Scope,
    ScopeSpans,
    ScopeMetrics,
    ScopeLogs,
    Span,
    SpanEvent,
    Link,
    Status,
    KeyValue,
    AnyValue,
    ArrayValue,
    KeyValueList,
    EntityRef,
    Metric,
    NumberPoints,
    HistogramPoints,
    ExpHistogramPoints,
    SummaryPoints,
    NumberPoint,
    HistogramPoint,
    ExpHistogramPoint,
    Buckets,
    SummaryPoint,
    Quantile,
    Exemplar,
    LogRecord,
}

/// The message type of field `field` of a `ty` message, `None` for scalars, strings and bytes.
fn child(ty: Ty, field: u64) -> Option<Ty> {
    use Ty::*;
    Some(match (ty, field) {
        (TraceRequest, 1) => ResourceSpans,
        (MetricsRequest, 1) => ResourceMetrics,
        (LogsRequest, 1) => ResourceLogs,
        (ResourceSpans | ResourceMetrics | ResourceLogs, 1) => Resource,
        (ResourceSpans, 2) => ScopeSpans,
        (ResourceMetrics, 2) => ScopeMetrics,
        (ResourceLogs, 2) => ScopeLogs,
        (Resource, 1) => KeyValue,
        (Resource, 3) => EntityRef,
        (Scope, 3) => KeyValue,
        (ScopeSpans | ScopeMetrics | ScopeLogs, 1) => Scope,
        (ScopeSpans, 2) => Span,
        (ScopeMetrics, 2) => Metric,
        (ScopeLogs, 2) => LogRecord,
        (Span, 9) => KeyValue,
        (Span, 11) => SpanEvent,
        (Span, 13) => Link,
        (Span, 15) => Status,
        (SpanEvent, 3) | (Link, 4) => KeyValue,
        (KeyValue, 2) => AnyValue,
        (AnyValue, 5) => ArrayValue,
        (AnyValue, 6) => KeyValueList,
        (ArrayValue, 1) => AnyValue,
        (KeyValueList, 1) => KeyValue,
        (Metric, 5 | 7) => NumberPoints,
        (Metric, 9) => HistogramPoints,
        (Metric, 10) => ExpHistogramPoints,
        (Metric, 11) => SummaryPoints,
        (Metric, 12) => KeyValue,
        // Gauge, Sum, Histogram, ExponentialHistogram and Summary hold their points in field 1.
        (NumberPoints, 1) => NumberPoint,
        (HistogramPoints, 1) => HistogramPoint,
        (ExpHistogramPoints, 1) => ExpHistogramPoint,
        (SummaryPoints, 1) => SummaryPoint,
        (NumberPoint, 7) | (HistogramPoint, 9) | (ExpHistogramPoint, 1) => KeyValue,
        (SummaryPoint, 7) | (Exemplar, 7) => KeyValue,
        (NumberPoint, 5) | (HistogramPoint, 8) | (ExpHistogramPoint, 11) => Exemplar,
        (ExpHistogramPoint, 8 | 9) => Buckets,
        (SummaryPoint, 6) => Quantile,
        (LogRecord, 5) => AnyValue,
        (LogRecord, 6) => KeyValue,
        _ => return None,
    })
}

/// Whether a message of type `ty` is an item.
fn is_item(ty: Ty) -> bool {
    matches!(
        ty,
        Ty::Span
            | Ty::SpanEvent
            | Ty::Link
            | Ty::Metric
            | Ty::NumberPoint
            | Ty::HistogramPoint
            | Ty::ExpHistogramPoint
            | Ty::SummaryPoint
            | Ty::LogRecord
    )
}

/// Messages and items counted so far.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Messages (any type, items included).
    pub messages: usize,
    /// Items.
    pub items: usize,
}

fn too_many(what: &str, limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_many_items",
        format!("request holds more than {limit} {what}: send smaller exports"),
    )
}

fn invalid(why: &str) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "invalid_protobuf",
        format!("body is not an OTLP protobuf message ({why})"),
    )
}

impl Counts {
    fn bump(&mut self, ty: Ty) -> Result<(), ApiError> {
        self.messages += 1;
        if is_item(ty) {
            self.items += 1;
        }
        if self.items > MAX_REQUEST_ITEMS {
            return Err(too_many(
                "items (spans, metrics, data points, log records)",
                MAX_REQUEST_ITEMS,
            ));
        }
        if self.messages > MAX_REQUEST_MESSAGES {
            return Err(too_many(
                "messages (items, attributes, values)",
                MAX_REQUEST_MESSAGES,
            ));
        }
        Ok(())
    }
}

fn varint(buf: &[u8], i: &mut usize) -> Result<u64, ApiError> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*i).ok_or_else(|| invalid("truncated varint"))?;
        *i += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(invalid("varint longer than 10 bytes"))
}

/// Counts the messages of a protobuf `ty` message in `buf`, refusing past the limits.
fn scan_protobuf(buf: &[u8], ty: Ty, depth: u32, counts: &mut Counts) -> Result<(), ApiError> {
    if depth > MAX_DEPTH {
        return Err(invalid(&format!("messages nested deeper than {MAX_DEPTH}")));
    }
    let mut i = 0;
    while i < buf.len() {
        let key = varint(buf, &mut i)?;
        let skip = match key & 7 {
            0 => {
                varint(buf, &mut i)?;
                0
            }
            1 => 8,
            5 => 4,
            2 => {
                let len = usize::try_from(varint(buf, &mut i)?).unwrap_or(usize::MAX);
                let end = i
                    .checked_add(len)
                    .filter(|&e| e <= buf.len())
                    .ok_or_else(|| invalid("length past the end"))?;
                if let Some(ty) = child(ty, key >> 3) {
                    counts.bump(ty)?;
                    scan_protobuf(&buf[i..end], ty, depth + 1, counts)?;
                }
                len
            }
            _ => return Err(invalid("unsupported wire type")),
        };
        i = i
            .checked_add(skip)
            .filter(|&e| e <= buf.len())
            .ok_or_else(|| invalid("field past the end"))?;
    }
    Ok(())
}

/// Counts the objects of a JSON body (`{` outside strings): each is at most one message.
fn scan_json(buf: &[u8], counts: &mut Counts) -> Result<(), ApiError> {
    let mut in_string = false;
    let mut escaped = false;
    for &b in buf {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else if b == b'"' {
            in_string = true;
        } else if b == b'{' {
            counts.messages += 1;
            if counts.messages > MAX_REQUEST_MESSAGES {
                return Err(too_many("JSON objects", MAX_REQUEST_MESSAGES));
            }
        }
    }
    Ok(())
}

/// Refuses a body whose decoding would allocate past the limits (see the module docs).
///
/// # Errors
/// 413 `too_many_items`; 400 `invalid_protobuf` for a body that is not protobuf at all.
pub fn check(body: &[u8], encoding: Encoding, root: Ty) -> Result<Counts, ApiError> {
    let mut counts = Counts::default();
    match encoding {
        Encoding::Protobuf => scan_protobuf(body, root, 0, &mut counts)?,
        Encoding::Json => scan_json(body, &mut counts)?,
    }
    Ok(counts)
}

/// Refuses a decoded request of more than [`MAX_REQUEST_ITEMS`] items (JSON bodies, whose
/// scan counts objects only).
///
/// # Errors
/// 413 `too_many_items`.
pub fn check_items(items: usize) -> Result<(), ApiError> {
    if items > MAX_REQUEST_ITEMS {
        return Err(too_many(
            "items (spans, metrics, data points, log records)",
            MAX_REQUEST_ITEMS,
        ));
    }
    Ok(())
}
