//! Log records → events of any type.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
use optel_wire::{Event, EventType, Timestamp};
use prost::Message;

use super::map::{Mapped, attr, attr_str, batch_for, derived_uuid, flush, ms_of_nanos, push};
use super::privacy::metadata;

pub(super) fn any_str(v: Option<&AnyValue>) -> Option<&str> {
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
