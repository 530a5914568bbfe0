//! Privacy at the door: the one filter every ingest path applies before anything is stored
//! (native batches in [`crate::ingest`], and OTLP traces, metrics and logs in
//! [`crate::otlp`]).
//!
//! - **Platform**: the OS and architecture are mapped to one spelling
//!   ([`optel_wire::platform`]); an unknown value is stored as `unknown`, never refused.
//! - **Attribute keys**: identifying keys ([`is_identifying_key`]: `host.name`, `url.*`,
//!   `user_agent.*`, `http.request.header.*`, `exception.message`, `db.query.text`, ...) are
//!   never stored, whatever sent them. Of the rest, an allow-list decides: from an optel SDK
//!   (native batches; OTLP whose resource says `telemetry.sdk.name = optel`) the keys the tool's
//!   author declared in code through the SDK's typed attributes; from any other OpenTelemetry
//!   SDK only [`SEMCONV_KEYS`] (the CLI semantic conventions and `error.type`). Every dropped
//!   attribute is counted (`optel_attributes_dropped_total{reason}` at `/metrics`).
//! - **Values**: every stored string goes through the SDK's redaction rules
//!   ([`optel_wire::redact`]: e-mails, tokens, `key=value` secrets, URLs with credentials or a
//!   query, paths, IP addresses), so a value the SDK would have redacted is redacted here too,
//!   whichever client sent it.
//!
//! Claiming `telemetry.sdk.name = optel` only buys what the native route gives any holder of an
//! ingest key: author-chosen keys, still minus the identifying ones, still redacted.

use std::collections::BTreeMap;

use optel_wire::{AttributeValue, Batch, limits};

/// Where attributes come from, which decides the allow-list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// An optel SDK: keys declared by the tool's author through the SDK's typed attributes.
    Optel,
    /// Any other client (e.g. an official OpenTelemetry SDK): only [`SEMCONV_KEYS`].
    Foreign,
}

/// Attribute keys kept from any client: the OpenTelemetry semantic conventions for CLI
/// programs (<https://opentelemetry.io/docs/specs/semconv/cli/cli-spans/>) that say nothing
/// about the person or machine, and `error.type`.
pub const SEMCONV_KEYS: &[&str] = &["process.executable.name", "process.exit.code", "error.type"];

/// Exact keys that identify a person, a machine, or carry free text that may.
const IDENTIFYING: &[&str] = &[
    "service.instance.id",
    "host.name",
    "host.id",
    "host.ip",
    "host.mac",
    "host.image.id",
    "process.pid",
    "process.parent_pid",
    "process.command",
    "process.command_line",
    "process.command_args",
    "process.executable.path",
    "process.owner",
    "process.working_directory",
    "client.address",
    "client.port",
    "exception.message",
    "exception.stacktrace",
    "db.query.text",
    "db.statement",
    "db.user",
    "code.file.path",
    "code.filepath",
    "device.id",
    "k8s.pod.name",
    "container.id",
    "session.id",
    "session.previous_id",
];

/// Key prefixes that identify (every key under them).
const IDENTIFYING_PREFIXES: &[&str] = &[
    "user.",
    "enduser.",
    "url.",
    "user_agent.",
    "http.request.header.",
    "http.response.header.",
    "network.peer.",
    "process.user.",
    "process.real_user.",
    "process.saved_user.",
    "process.environment_variable.",
    "geo.",
];

/// Words that make a key identifying wherever they stand as a whole segment (segments split on
/// `.`, `_`, `-`): `api_token`, `auth.password`, `user-email`; not `tokens.input`.
const IDENTIFYING_WORDS: &[&str] = &[
    "token", "password", "passwd", "secret", "email", "ip", "mac", "hostname", "username",
];

/// Whether an attribute key is never stored: it identifies a machine or a person, or holds
/// free text that may (see the module docs). Case-insensitive.
pub fn is_identifying_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    IDENTIFYING.contains(&k.as_str())
        || IDENTIFYING_PREFIXES.iter().any(|p| k.starts_with(p))
        || k.contains("address")
        || k.contains("peer")
        || k.split(['.', '_', '-'])
            .any(|segment| IDENTIFYING_WORDS.contains(&segment))
}

/// Why an attribute was not stored: the `reason` label of `optel_attributes_dropped_total`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Dropped {
    /// Identifying keys ([`is_identifying_key`]).
    pub identifying: u64,
    /// Keys outside the allow-list of their origin, or not valid names.
    pub not_allowed: u64,
    /// Values that cannot be stored (non-finite floats, arrays, maps, bytes), or past
    /// [`limits::MAX_ATTRIBUTES`].
    pub unsupported: u64,
}

impl Dropped {
    /// Counted in the collector's Prometheus counters.
    pub(crate) fn record(self, metrics: &crate::metrics::Metrics) {
        for (reason, n) in [
            ("identifying", self.identifying),
            ("not_allowed", self.not_allowed),
            ("unsupported", self.unsupported),
        ] {
            if n > 0 {
                metrics.attributes_dropped(reason, n);
            }
        }
    }
}

/// A string value as stored: redacted with the SDK's rules, cut to
/// [`limits::MAX_STRING_VALUE_BYTES`].
pub fn redact_string(s: &str) -> String {
    optel_wire::redact::redact(s).into_owned()
}

/// Whether `key` may be stored from `origin` (before its value is looked at).
fn allowed(origin: Origin, key: &str, dropped: &mut Dropped) -> bool {
    if is_identifying_key(key) {
        dropped.identifying += 1;
        return false;
    }
    let ok = optel_wire::is_valid_name(key)
        && match origin {
            Origin::Optel => true,
            Origin::Foreign => SEMCONV_KEYS.contains(&key),
        };
    if !ok {
        dropped.not_allowed += 1;
    }
    ok
}

/// Filters attributes `(key, value)` from `origin` into what may be stored (see the module
/// docs); `None` values are attributes whose type cannot be stored.
pub(crate) fn filter<K: AsRef<str> + Into<String>>(
    origin: Origin,
    attrs: impl IntoIterator<Item = (K, Option<AttributeValue>)>,
    dropped: &mut Dropped,
) -> BTreeMap<String, AttributeValue> {
    let mut out = BTreeMap::new();
    for (key, value) in attrs {
        if !allowed(origin, key.as_ref(), dropped) {
            continue;
        }
        let value = match value {
            Some(AttributeValue::String(s)) => AttributeValue::String(redact_string(&s)),
            Some(AttributeValue::Float(f)) if !f.is_finite() => {
                dropped.unsupported += 1;
                continue;
            }
            Some(v) => v,
            None => {
                dropped.unsupported += 1;
                continue;
            }
        };
        if out.len() >= limits::MAX_ATTRIBUTES {
            dropped.unsupported += 1;
            continue;
        }
        out.insert(key.into(), value);
    }
    out
}

/// A batch's platform names in their one spelling ([`optel_wire::platform`]): runs before
/// validation, so an odd spelling is stored as `unknown` rather than refused.
pub(crate) fn normalize_platform(batch: &mut Batch) {
    batch.os = optel_wire::platform::normalize_os(&batch.os).to_owned();
    batch.arch = optel_wire::platform::normalize_arch(&batch.arch).to_owned();
}

/// The door of a validated native batch: every event's metadata filtered (origin
/// [`Origin::Optel`]) and its strings redacted.
pub(crate) fn scrub_batch(batch: &mut Batch) -> Dropped {
    let mut dropped = Dropped::default();
    for e in &mut batch.events {
        if e.metadata.is_empty() {
            continue;
        }
        let metadata = std::mem::take(&mut e.metadata);
        e.metadata = filter(
            Origin::Optel,
            metadata.into_iter().map(|(k, v)| (k, Some(v))),
            &mut dropped,
        );
    }
    dropped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifying_keys() {
        for k in [
            "host.name",
            "host.id",
            "process.pid",
            "process.command_args",
            "user.email",
            "enduser.id",
            "client.address",
            "url.full",
            "url.query",
            "user_agent.original",
            "code.file.path",
            "exception.message",
            "exception.stacktrace",
            "db.query.text",
            "http.request.header.authorization",
            "service.instance.id",
            "Host.Name",
        ] {
            assert!(is_identifying_key(k), "{k}");
        }
        for k in [
            "api_token",
            "auth.password",
            "user-email",
            "net.host.ip",
            "client.port",
        ] {
            assert!(is_identifying_key(k), "{k}");
        }
        for k in [
            "cache.hit",
            "error.type",
            "process.exit.code",
            "hits",
            "tokens.input",
            "client.version",
        ] {
            assert!(!is_identifying_key(k), "{k}");
        }
    }

    #[test]
    fn foreign_attributes_keep_only_the_allow_list() {
        let mut d = Dropped::default();
        let kept = filter(
            Origin::Foreign,
            [
                ("error.type", Some(AttributeValue::String("E_X".into()))),
                ("process.exit.code", Some(AttributeValue::Int(2))),
                ("cache.hit", Some(AttributeValue::Bool(true))),
                ("url.full", Some(AttributeValue::String("https://x".into()))),
            ],
            &mut d,
        );
        assert_eq!(
            kept.keys().collect::<Vec<_>>(),
            ["error.type", "process.exit.code"]
        );
        assert_eq!((d.identifying, d.not_allowed), (1, 1));
        let mut d = Dropped::default();
        let kept = filter(
            Origin::Optel,
            [
                (
                    "note",
                    Some(AttributeValue::String("mail jane@example.com".into())),
                ),
                ("cache.hit", Some(AttributeValue::Bool(true))),
                ("host.name", Some(AttributeValue::String("box".into()))),
            ],
            &mut d,
        );
        assert_eq!(
            kept.get("note"),
            Some(&AttributeValue::String("mail <email>".into()))
        );
        assert!(kept.contains_key("cache.hit"));
        assert_eq!(d.identifying, 1);
    }

    /// Regression: the native path kept metadata verbatim, the same values the OTLP door now
    /// redacts; and `Linux`/`AMD64` made a native batch a 400.
    #[test]
    fn native_batches_are_scrubbed_too() {
        let mut b = Batch::new("acme", "1.0.0", "p", "Linux", "AMD64");
        let mut e = optel_wire::Event::new(
            "0b6c8a4e-2f1d-4c3b-9a8e-7d6c5f1d3c2b",
            optel_wire::EventType::Feature,
            "x",
            optel_wire::Timestamp::now(),
            "0b6c8a4e-2f1d-4c3b-9a8e-7d6c5f1d3c2b",
        );
        e.metadata.insert(
            "where".into(),
            AttributeValue::String("/home/alice/src/app.py".into()),
        );
        e.metadata.insert(
            "url.full".into(),
            AttributeValue::String("https://x".into()),
        );
        b.events.push(e);
        normalize_platform(&mut b);
        let d = scrub_batch(&mut b);
        assert_eq!((b.os.as_str(), b.arch.as_str()), ("linux", "x86_64"));
        assert_eq!(
            b.events[0].metadata.get("where"),
            Some(&AttributeValue::String("<path>".into()))
        );
        assert!(!b.events[0].metadata.contains_key("url.full"));
        assert_eq!(d.identifying, 1);
    }
}
