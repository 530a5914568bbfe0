//! What the three signal mappers share: the batch of a resource, derived event ids, and the
//! bounded accumulation of events into batches ([`Mapped`]).

use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use optel_wire::{Batch, Event, limits};
use sha2::{Digest, Sha256};

use crate::ingest::check_timestamps;

use super::{ANONYMOUS, MAX_REQUEST_EVENTS, PSEUDONYM_ATTRIBUTE};

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
    pub(super) fn reject(&mut self, n: i64, why: impl FnOnce() -> String) {
        if self.rejected == 0 {
            self.message = why();
        }
        self.rejected += n;
    }

    /// Whether [`MAX_REQUEST_EVENTS`] are mapped; if so, refuses `n` more items.
    pub(super) fn full(&mut self, n: i64) -> bool {
        let full = self.events >= MAX_REQUEST_EVENTS;
        if full {
            self.reject(n, || {
                format!("more than {MAX_REQUEST_EVENTS} events in one export: send smaller exports")
            });
        }
        full
    }
}

pub(super) fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

pub(super) fn attr_str<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a str> {
    match attr(attrs, key) {
        Some(any_value::Value::StringValue(s)) => Some(s),
        _ => None,
    }
}

/// Whether a string looks like an IPv4 or IPv6 address (with or without a port).
pub(super) fn clean(s: Option<&str>, max: usize, ok: fn(char) -> bool) -> Option<String> {
    s.filter(|s| !s.is_empty() && s.len() <= max && s.chars().all(ok))
        .map(str::to_owned)
}

/// The batch skeleton of a resource: everything but the keys below is dropped here.
pub(super) fn batch_for(resource: Option<&Resource>, project: &str) -> Batch {
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
pub(super) fn derived_uuid(parts: &[&[u8]]) -> String {
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

pub(super) fn ms_of_nanos(n: u64) -> i64 {
    (n / 1_000_000) as i64
}

/// Adds an event to the last batch of `out` (splitting past [`limits::MAX_BATCH_EVENTS`])
/// if it validates and lies in the accepted time window; else counts it rejected.
pub(super) fn push(
    out: &mut Mapped,
    template: &Batch,
    pending: &mut Batch,
    event: Event,
    received: i64,
) {
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

pub(super) fn flush(out: &mut Mapped, pending: Batch) {
    if !pending.events.is_empty() {
        out.batches.push(pending);
    }
}
