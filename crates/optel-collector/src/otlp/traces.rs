//! Spans → command events, following the semantic conventions for CLI programs
//! (<https://opentelemetry.io/docs/specs/semconv/cli/cli-spans/>): one execution of a
//! program is one span of kind `INTERNAL`, named after the executable or a low-cardinality
//! command, with `process.exit.code` and, when it failed, `error.type`.
//!
//! A command is a **root** span: no parent, or a parent in another process (the span's flags
//! say the parent is remote, e.g. a CLI started by a traced CI job). A child span (its parent
//! is in the request, or is known to be local) is a phase of a command, not a command: it is
//! dropped and counted in the partial success. So is a root span of another kind (`SERVER`,
//! `CLIENT`, ...: a request, not a program run) and a span whose name is not a valid command
//! name (`GET /users/{id}`): that one span, never the rest of the request.

use std::collections::HashSet;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode as SpanStatus;
use opentelemetry_proto::tonic::trace::v1::{Span, SpanFlags};
use optel_wire::{Event, EventType, Timestamp};

use super::map::{
    Mapped, Source, attr, attr_str, derived_uuid, error_code, flush, ms_of_nanos, push,
};
use super::privacy::metadata;

/// Span attributes read into event fields rather than stored as metadata.
const CONSUMED: &[&str] = &["error.type", "optel.error_code"];

/// Whether a span's parent is known to be in this process (its flags carry the W3C
/// `is_remote` bit and it is clear).
fn parent_is_local(span: &Span) -> bool {
    let has = SpanFlags::ContextHasIsRemoteMask as u32;
    let remote = SpanFlags::ContextIsRemoteMask as u32;
    span.flags & has != 0 && span.flags & remote == 0
}

/// Maps an OTLP trace export into optel batches (see the module docs).
pub fn map_traces(req: ExportTraceServiceRequest, project: &str, received: i64) -> Mapped {
    let mut out = Mapped::default();
    // Every (trace, span) of the request: a span whose parent is among them is a child.
    let in_request: HashSet<(&[u8], &[u8])> = req
        .resource_spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .flat_map(|ss| &ss.spans)
        .map(|s| (s.trace_id.as_slice(), s.span_id.as_slice()))
        .collect();
    let mut children = 0;
    for rs in &req.resource_spans {
        let source = Source::of(rs.resource.as_ref(), project);
        let mut pending = source.template.clone();
        for span in rs.scope_spans.iter().flat_map(|s| &s.spans) {
            if span.trace_id.len() != 16 || span.trace_id.iter().all(|&b| b == 0) {
                out.reject(1, || {
                    format!(
                        "span {:?}: trace id must be 16 bytes, not all zero (got {})",
                        clip(&span.name),
                        span.trace_id.len()
                    )
                });
                continue;
            }
            if span.span_id.len() != 8 || span.span_id.iter().all(|&b| b == 0) {
                out.reject(1, || {
                    format!(
                        "span {:?}: span id must be 8 bytes, not all zero (got {})",
                        clip(&span.name),
                        span.span_id.len()
                    )
                });
                continue;
            }
            let has_parent = !span.parent_span_id.is_empty();
            if has_parent
                && (in_request.contains(&(&span.trace_id[..], &span.parent_span_id[..]))
                    || parent_is_local(span))
            {
                children += 1;
                continue;
            }
            if span.kind != SpanKind::Internal as i32 && span.kind != SpanKind::Unspecified as i32 {
                out.reject(1, || {
                    format!(
                        "span {:?} of kind {} is not a program run: optel stores root spans \
                         of kind INTERNAL as commands",
                        clip(&span.name),
                        kind_name(span.kind)
                    )
                });
                continue;
            }
            if !optel_wire::is_valid_name(&span.name) {
                out.reject(1, || {
                    format!(
                        "span name {:?} is not a command name: name execution spans after the \
                         executable or command, [A-Za-z0-9_.:-], at most 64 bytes",
                        clip(&span.name)
                    )
                });
                continue;
            }
            let exit_code = match attr(&span.attributes, "process.exit.code") {
                Some(any_value::Value::IntValue(c)) => Some(*c),
                _ => None,
            };
            let failed = span
                .status
                .as_ref()
                .is_some_and(|s| s.code == SpanStatus::Error as i32)
                || exit_code.is_some_and(|c| c != 0);
            let mut e = Event::new(
                derived_uuid(&[b"span", &source.install, &span.trace_id, &span.span_id]),
                EventType::Command,
                span.name.clone(),
                Timestamp::from_unix_ms(ms_of_nanos(span.start_time_unix_nano)),
                derived_uuid(&[b"trace", &source.install, &span.trace_id]),
            );
            e.duration_ms = Some(
                span.end_time_unix_nano
                    .saturating_sub(span.start_time_unix_nano)
                    / 1_000_000,
            );
            e.success = Some(!failed);
            if failed {
                e.error_code = error_code(
                    attr_str(&span.attributes, "error.type")
                        .or_else(|| attr_str(&span.attributes, "optel.error_code")),
                );
            }
            e.metadata = metadata(source.origin, &span.attributes, CONSUMED, &mut out.dropped);
            push(&mut out, &source.template, &mut pending, e, received);
        }
        flush(&mut out, pending);
    }
    out.reject(children, || {
        format!(
            "{children} child span(s) not stored: a command is a root span (no parent in the \
             request); child spans are phases of a command and are not counted"
        )
    });
    out
}

fn kind_name(kind: i32) -> &'static str {
    SpanKind::try_from(kind).map_or("UNKNOWN", |k| match k {
        SpanKind::Unspecified => "UNSPECIFIED",
        SpanKind::Internal => "INTERNAL",
        SpanKind::Server => "SERVER",
        SpanKind::Client => "CLIENT",
        SpanKind::Producer => "PRODUCER",
        SpanKind::Consumer => "CONSUMER",
    })
}

/// At most 40 characters of a name quoted in an answer.
pub(super) fn clip(s: &str) -> &str {
    match s.char_indices().nth(40) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}
