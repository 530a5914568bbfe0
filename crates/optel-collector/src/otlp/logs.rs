//! Log records → events of any type.
//!
//! An event is a log record with an event name (`event_name`, or the older `event.name`
//! attribute): the name of the feature, method or custom event, its type from the
//! `optel.event_type` attribute (`feature`, `method`, `custom` (the default) or `command`),
//! its other attributes stored under their own keys (through [`crate::privacy`]). optel's own
//! exporter sends exactly this, so an event comes back as it was sent. The body is never
//! stored (free text); a record without an event name is a log line, not an event: dropped and
//! counted in the partial success.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value;
use optel_wire::{Event, EventType, Timestamp};
use prost::Message;

use super::map::{
    Mapped, Source, attr, attr_str, derived_uuid, error_code, flush, ms_of_nanos, push,
};
use super::privacy::metadata;

/// The attribute naming an event's optel type.
pub const EVENT_TYPE_ATTRIBUTE: &str = "optel.event_type";

/// Record attributes read into event fields rather than stored as metadata.
const CONSUMED: &[&str] = &[
    "event.name",
    EVENT_TYPE_ATTRIBUTE,
    "duration_ms",
    "success",
    "error_code",
    "error.type",
];

/// Maps an OTLP logs export into optel batches (see the module docs).
pub fn map_logs(req: ExportLogsServiceRequest, project: &str, received: i64) -> Mapped {
    let mut out = Mapped::default();
    let mut unnamed = 0;
    for rl in req.resource_logs {
        let source = Source::of(rl.resource.as_ref(), project);
        let mut pending = source.template.clone();
        for rec in rl.scope_logs.into_iter().flat_map(|s| s.log_records) {
            let Some(name) = Some(rec.event_name.as_str())
                .filter(|n| !n.is_empty())
                .or_else(|| attr_str(&rec.attributes, "event.name"))
            else {
                unnamed += 1;
                continue;
            };
            let name = name.to_owned();
            let event_type = attr_str(&rec.attributes, EVENT_TYPE_ATTRIBUTE)
                .and_then(EventType::parse)
                .unwrap_or(EventType::Custom);
            let ts = if rec.time_unix_nano != 0 {
                rec.time_unix_nano
            } else {
                rec.observed_time_unix_nano
            };
            let encoded = rec.encode_to_vec();
            let mut e = Event::new(
                derived_uuid(&[b"log", &source.install, &encoded]),
                event_type,
                name,
                Timestamp::from_unix_ms(ms_of_nanos(ts)),
                derived_uuid(&[b"trace", &source.install, &rec.trace_id]),
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
                e.error_code = error_code(
                    attr_str(&rec.attributes, "error.type")
                        .or_else(|| attr_str(&rec.attributes, "error_code")),
                );
            }
            e.metadata = metadata(source.origin, &rec.attributes, CONSUMED, &mut out.dropped);
            push(&mut out, &source.template, &mut pending, e, received);
        }
        flush(&mut out, pending);
    }
    out.reject(unnamed, || {
        format!(
            "{unnamed} log record(s) without an event name not stored: optel stores events \
             (set event_name), not log lines"
        )
    });
    out
}
