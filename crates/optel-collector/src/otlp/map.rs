//! What the three signal mappers share: the batch of a resource, derived event ids, and the
//! bounded accumulation of events into batches ([`Mapped`]).

use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use optel_wire::{Batch, Event, limits};
use prost::Message;
use sha2::{Digest, Sha256};

use crate::ingest::check_timestamps;
use crate::privacy::{Dropped, Origin};

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
    /// Why the first refused item was refused; or, with nothing refused, a warning (the OTLP
    /// specification allows `error_message` with a zero count).
    pub message: String,
    /// Attributes not stored ([`crate::privacy`]).
    pub dropped: Dropped,
    /// Cumulative series whose high-water mark moves once the batches are stored:
    /// `(series key, invocations stored so far)` (see [`super::metrics`]).
    pub advances: Vec<([u8; 32], i64)>,
}

impl Mapped {
    pub(super) fn reject(&mut self, n: i64, why: impl FnOnce() -> String) {
        if n <= 0 {
            return;
        }
        if self.rejected == 0 {
            self.message = why();
        }
        self.rejected += n;
    }

    /// A warning in the answer when nothing is refused.
    pub(super) fn warn(&mut self, why: impl FnOnce() -> String) {
        if self.rejected == 0 && self.message.is_empty() {
            self.message = why();
        }
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

/// An error code as stored: `error.type` when it is a valid name, else `_OTHER` (the semantic
/// conventions' fallback), so that a free-text error never becomes a code nor fails the item.
pub(super) fn error_code(value: Option<&str>) -> Option<String> {
    value.map(|v| {
        if optel_wire::is_valid_name(v) {
            v.to_owned()
        } else {
            "_OTHER".to_owned()
        }
    })
}

fn clean(s: Option<&str>, max: usize, ok: fn(char) -> bool) -> Option<String> {
    s.filter(|s| !s.is_empty() && s.len() <= max && s.chars().all(ok))
        .map(str::to_owned)
}

/// What the mappers know of one resource.
#[derive(Debug)]
pub(super) struct Source {
    /// The batch skeleton: service, version, install pseudonym, OS and architecture.
    pub template: Batch,
    /// Who produced the items (see [`crate::privacy`]).
    pub origin: Origin,
    /// What identifies the install in derived ids: the pseudonym and the resource's
    /// attributes in a stable order, so that two installs sending the same item are two items.
    pub install: Vec<u8>,
}

impl Source {
    /// The source of a resource: everything but the keys below is dropped here.
    pub fn of(resource: Option<&Resource>, project: &str) -> Self {
        let attrs: &[KeyValue] = resource.map_or(&[], |r| &r.attributes);
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
        let os = optel_wire::platform::normalize_os(attr_str(attrs, "os.type").unwrap_or(""));
        let arch = optel_wire::platform::normalize_arch(attr_str(attrs, "host.arch").unwrap_or(""));
        let origin = if attr_str(attrs, "telemetry.sdk.name") == Some("optel") {
            Origin::Optel
        } else {
            Origin::Foreign
        };
        let mut sorted: Vec<Vec<u8>> = attrs.iter().map(Message::encode_to_vec).collect();
        sorted.sort_unstable();
        let mut h = Sha256::new();
        h.update(pseudonym.as_bytes());
        for a in &sorted {
            h.update((a.len() as u64).to_be_bytes());
            h.update(a);
        }
        Self {
            template: Batch::new(service, version, pseudonym, os, arch),
            origin,
            install: h.finalize().to_vec(),
        }
    }
}

/// A UUID (v4 layout) derived from bytes: the same item always gets the same event id.
pub(super) fn derived_uuid(parts: &[&[u8]]) -> String {
    optel_wire::format_uuid_v4(digest16(parts))
}

fn digest16(parts: &[&[u8]]) -> [u8; 16] {
    let d = digest(parts);
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    b
}

/// SHA-256 of length-delimited parts ("ab" is not "a" + "b").
pub(super) fn digest(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    h.finalize().into()
}

pub(super) fn ms_of_nanos(n: u64) -> i64 {
    (n / 1_000_000) as i64
}

/// Why `event` (in a batch like `template`) cannot be stored, if it cannot: a field breaks a
/// rule or its time lies outside the accepted window.
pub(super) fn check(template: &Batch, event: &Event, received: i64) -> Result<(), String> {
    let mut probe = template.clone();
    probe.events.push(event.clone());
    probe
        .validate()
        .and_then(|()| check_timestamps(&probe, received))
        .map_err(|e| format!("{}: {}", e.field, e.reason))
}

/// Room left for events in this request.
pub(super) fn room(out: &Mapped) -> usize {
    MAX_REQUEST_EVENTS.saturating_sub(out.events)
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
