//! Spans → command events.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode as SpanStatus;
use optel_wire::{Event, EventType, Timestamp};

use super::map::{Mapped, attr_str, batch_for, derived_uuid, flush, ms_of_nanos, push};
use super::privacy::metadata;

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
