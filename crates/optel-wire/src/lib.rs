//! The optel wire format: what an optel SDK sends to `POST /v1/events` and what the collector
//! answers. No I/O happens here; the SDK and the collector share these types so that they can
//! never disagree, and golden JSON files in `tests/golden/` pin their exact form.
//!
//! The envelope is the common shape of usage-analytics batches (`service_name`,
//! `service_version`, `events[]` with `event_type`, `timestamp`, `metadata`), extended with what
//! a real system needs: a schema
//! version, a client-generated event id for idempotent retries, the install pseudonym, a session
//! id, and the OS and CPU architecture.
//!
//! ```
//! use optel_wire::{Batch, Event, EventType, Timestamp};
//!
//! let mut batch = Batch::new("acme", "1.2.0", "5f1d3c2b9a8e7d6c5f1d3c2b9a8e7d6c", "linux", "x86_64");
//! let mut event = Event::new(
//!     "0b6c8a4e-2f1d-4c3b-9a8e-7d6c5f1d3c2b",
//!     EventType::Command,
//!     "build",
//!     Timestamp::from_unix_ms(1_763_764_800_000),
//!     "7e2d4c1a-0b9f-4e8d-8c7b-6a5f4e3d2c1b",
//! );
//! event.duration_ms = Some(12);
//! event.success = Some(true);
//! batch.events.push(event);
//! assert!(batch.validate().is_ok());
//! let json = serde_json::to_string(&batch).unwrap();
//! assert!(json.contains(r#""event_type":"command""#));
//! ```
#![deny(missing_docs)]

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub mod catalog;
pub mod platform;
pub mod redact;

pub use catalog::Catalog;

/// The version of the batch envelope this crate writes. Version 2 (docs/adr/010-event-catalog.md)
/// adds the event catalog (`catalog_hash`, `catalog`), phases on command events and measurement
/// events; a version 1 batch is the same envelope without them.
pub const SCHEMA_VERSION: u32 = 2;

/// Every envelope version the collector accepts: 1 (without catalog, phases and measurements)
/// and 2. Others are refused with a 400 that names these.
pub const SUPPORTED_SCHEMA_VERSIONS: [u32; 2] = [1, 2];

/// Bounds on every field, shared by the SDK (which drops what breaks them before it is queued)
/// and the collector (which answers 400 naming the field). All lengths are in bytes of UTF-8.
pub mod limits {
    /// Most events in one batch.
    pub const MAX_BATCH_EVENTS: usize = 1_000;
    /// Largest request body the collector reads, after decompression: 4 MiB.
    pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
    /// Longest event name, attribute key, error code or service name.
    pub const MAX_NAME_BYTES: usize = 64;
    /// Longest service version string.
    pub const MAX_VERSION_BYTES: usize = 64;
    /// Longest pseudonym.
    pub const MAX_PSEUDONYM_BYTES: usize = 64;
    /// Longest OS or architecture name.
    pub const MAX_PLATFORM_BYTES: usize = 32;
    /// Most attributes in one event's `metadata`.
    pub const MAX_ATTRIBUTES: usize = 32;
    /// Longest string attribute value.
    pub const MAX_STRING_VALUE_BYTES: usize = 256;
    /// Longest duration a command may report: 7 days, in milliseconds.
    pub const MAX_DURATION_MS: u64 = 7 * 24 * 3_600_000;
    /// Most phases on one command event (schema version 2).
    pub const MAX_PHASES: usize = 64;
    /// Longest catalog hash: 64 lowercase hex digits of a SHA-256.
    pub const CATALOG_HASH_LEN: usize = 64;
}

/// A point in time, carried on the wire as an RFC 3339 UTC string with millisecond precision
/// (`"2026-11-21T22:40:00.123Z"`), held in memory as milliseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The current time.
    pub fn now() -> Self {
        Self::from_system_time(SystemTime::now())
    }

    /// A timestamp from milliseconds since the Unix epoch.
    pub const fn from_unix_ms(ms: i64) -> Self {
        Self(ms)
    }

    /// Milliseconds since the Unix epoch.
    pub const fn unix_ms(self) -> i64 {
        self.0
    }

    /// A timestamp from a [`SystemTime`]; times before 1970 clamp to the epoch.
    pub fn from_system_time(t: SystemTime) -> Self {
        let ms = t
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        Self(ms)
    }

    /// This timestamp as a [`SystemTime`]; negative values clamp to the epoch.
    pub fn to_system_time(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(u64::try_from(self.0).unwrap_or(0))
    }

    /// Parses an RFC 3339 timestamp such as `2026-11-21T22:40:00Z` or
    /// `2026-11-21T22:40:00.123Z`.
    ///
    /// # Errors
    /// A message quoting the bad value when it is not RFC 3339.
    pub fn parse(s: &str) -> Result<Self, String> {
        humantime::parse_rfc3339_weak(s)
            .map(Self::from_system_time)
            .map_err(|e| {
                format!(
                    "timestamp {s:?} is not RFC 3339 ({e}): use e.g. \"2026-11-21T22:40:00.123Z\""
                )
            })
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}",
            humantime::format_rfc3339_millis(self.to_system_time())
        )
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// What an event records. Serialized in snake case (`"command"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    /// A command invocation: `name` is the command, with `duration_ms`, `success` and, when it
    /// failed, `error_code` (a stable code such as `E_NO_MANIFEST`, never a message).
    Command,
    /// A feature used: `name` is the feature.
    Feature,
    /// A library method called: `name` is the method, e.g. `Database::connect`.
    Method,
    /// Any other event the author declares.
    Custom,
    /// A numeric measurement declared in the catalog (schema version 2): `name` is the
    /// measurement, `value` its value in the catalog's unit.
    Measurement,
}

impl EventType {
    /// The wire name, e.g. `"command"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Command => "command",
            Self::Feature => "feature",
            Self::Method => "method",
            Self::Custom => "custom",
            Self::Measurement => "measurement",
        }
    }

    /// The event type for a wire name, if it is one.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "command" => Self::Command,
            "feature" => Self::Feature,
            "method" => Self::Method,
            "custom" => Self::Custom,
            "measurement" => Self::Measurement,
            _ => return None,
        })
    }
}

/// A typed attribute value. On the wire it is the bare JSON value (`true`, `3`, `0.5`, `"x"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AttributeValue {
    /// A boolean.
    Bool(bool),
    /// A signed 64-bit integer.
    Int(i64),
    /// A 64-bit float; must be finite.
    Float(f64),
    /// A string of at most [`limits::MAX_STRING_VALUE_BYTES`] bytes. The SDK redacts strings
    /// before they are stored anywhere.
    String(String),
}

/// One recorded event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// A UUID generated by the client, unique per event: the collector stores an event once
    /// however often a batch is retried.
    pub event_id: String,
    /// What the event records.
    pub event_type: EventType,
    /// The command, feature, method or custom event name: `[A-Za-z0-9_.:-]`, 1 to 64 bytes.
    pub name: String,
    /// When the event happened (for commands: when the command started).
    pub timestamp: Timestamp,
    /// A random UUID per process run of the tool.
    pub session_id: String,
    /// Command duration in milliseconds, at most 7 days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// Whether the command succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success: Option<bool>,
    /// A stable error code string chosen by the author (e.g. `E_NO_MANIFEST`), never a message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    /// Typed attributes, at most 32, keys as event names.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, AttributeValue>,
    /// The value of a `measurement` event, finite, in the unit its catalog entry declares
    /// (schema version 2). Absent on every other event type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// Timed phases of a `command` event, in the order they started, at most
    /// [`limits::MAX_PHASES`] (schema version 2). Empty on every other event type.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub phases: Vec<Phase>,
}

/// One timed phase inside a command (schema version 2), e.g. `resolve` then `compile`.
///
/// Phases nest: `parent` is the index in the event's `phases` of the enclosing phase, always
/// smaller than this phase's own index. Times are microseconds so that short phases keep their
/// precision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Phase {
    /// The phase name, declared in the catalog under its command: a name (`[A-Za-z0-9_.:-]`,
    /// 1 to 64 bytes).
    pub name: String,
    /// Index of the enclosing phase in the event's `phases`, if it is nested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<u32>,
    /// When the phase started, in microseconds after the command started.
    pub start_us: u64,
    /// How long the phase took, in microseconds, at most 7 days.
    pub duration_us: u64,
    /// Whether the phase completed without failing.
    pub success: bool,
}

impl Event {
    /// An event with the required fields; the optional ones start empty.
    pub fn new(
        event_id: impl Into<String>,
        event_type: EventType,
        name: impl Into<String>,
        timestamp: Timestamp,
        session_id: impl Into<String>,
    ) -> Self {
        Self {
            event_id: event_id.into(),
            event_type,
            name: name.into(),
            timestamp,
            session_id: session_id.into(),
            duration_ms: None,
            success: None,
            error_code: None,
            metadata: BTreeMap::new(),
            value: None,
            phases: Vec::new(),
        }
    }
}

/// The body of `POST /v1/events`: events of one install of one tool version on one platform.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    /// Always [`SCHEMA_VERSION`] for this crate.
    pub schema_version: u32,
    /// The tool (or library) name, as passed to the SDK's builder: `[A-Za-z0-9_.:-]`, 1 to 64 bytes.
    pub service_name: String,
    /// The tool version, e.g. `1.2.0`: `[A-Za-z0-9_.+-]`, 1 to 64 bytes.
    pub service_version: String,
    /// The install pseudonym: a keyed hash of a per-install secret that never leaves the machine,
    /// rotated per epoch, or `ci:<vendor>` in CI. `[a-z0-9:_-]`, 1 to 64 bytes.
    pub pseudonym: String,
    /// Operating system, as Rust's `std::env::consts::OS` (`linux`, `macos`, `windows`, ...).
    pub os: String,
    /// CPU architecture, as Rust's `std::env::consts::ARCH` (`x86_64`, `aarch64`, ...).
    pub arch: String,
    /// Events the SDK dropped since its last delivered batch (full queue): counted, never sent.
    #[serde(default)]
    pub dropped_events: u64,
    /// SHA-256 of the tool's event catalog ([`Catalog::hash`]), 64 lowercase hex digits, when
    /// the tool declares one (schema version 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalog_hash: Option<String>,
    /// The catalog itself, sent until the collector answers that it knows `catalog_hash`
    /// ([`IngestResponse::catalog_known`]). Its hash must equal `catalog_hash`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalog: Option<Catalog>,
    /// The events, at most [`limits::MAX_BATCH_EVENTS`].
    pub events: Vec<Event>,
}

impl Batch {
    /// An empty batch of the current schema version.
    pub fn new(
        service_name: impl Into<String>,
        service_version: impl Into<String>,
        pseudonym: impl Into<String>,
        os: impl Into<String>,
        arch: impl Into<String>,
    ) -> Self {
        Self {
            schema_version: SCHEMA_VERSION,
            service_name: service_name.into(),
            service_version: service_version.into(),
            pseudonym: pseudonym.into(),
            os: os.into(),
            arch: arch.into(),
            dropped_events: 0,
            catalog_hash: None,
            catalog: None,
            events: Vec::new(),
        }
    }

    /// Checks every field against [`limits`] and the charsets documented on each field.
    ///
    /// # Errors
    /// The first field that breaks a rule, with its JSON path (`events[3].name`) and why.
    pub fn validate(&self) -> Result<(), Invalid> {
        if !SUPPORTED_SCHEMA_VERSIONS.contains(&self.schema_version) {
            return Err(Invalid::new(
                "schema_version",
                format!(
                    "schema version {} is not supported: this collector speaks versions 1 and 2",
                    self.schema_version
                ),
            ));
        }
        if self.schema_version < 2 {
            let v2_field = if self.catalog_hash.is_some() {
                Some("catalog_hash")
            } else if self.catalog.is_some() {
                Some("catalog")
            } else {
                None
            };
            if let Some(field) = v2_field {
                return Err(Invalid::new(
                    field,
                    "needs schema_version 2: version 1 batches carry no catalog".into(),
                ));
            }
        }
        if let Some(hash) = &self.catalog_hash
            && !(hash.len() == limits::CATALOG_HASH_LEN
                && hash
                    .bytes()
                    .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)))
        {
            return Err(Invalid::new(
                "catalog_hash",
                format!(
                    "{:?} is not a SHA-256 in 64 lowercase hex digits",
                    clip(hash)
                ),
            ));
        }
        if let Some(catalog) = &self.catalog {
            catalog.validate().map_err(|e| e.within("catalog"))?;
            if self.catalog_hash.as_deref() != Some(catalog.hash().as_str()) {
                return Err(Invalid::new(
                    "catalog_hash",
                    "must be present and equal to the SHA-256 of the catalog sent with it".into(),
                ));
            }
        }
        check_name("service_name", &self.service_name)?;
        check_text(
            "service_version",
            &self.service_version,
            limits::MAX_VERSION_BYTES,
            |c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '-'),
        )?;
        check_text(
            "pseudonym",
            &self.pseudonym,
            limits::MAX_PSEUDONYM_BYTES,
            |c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, ':' | '_' | '-'),
        )?;
        check_text("os", &self.os, limits::MAX_PLATFORM_BYTES, is_platform_char)?;
        check_text(
            "arch",
            &self.arch,
            limits::MAX_PLATFORM_BYTES,
            is_platform_char,
        )?;
        if self.events.is_empty() {
            return Err(Invalid::new(
                "events",
                "a batch needs at least one event".into(),
            ));
        }
        if self.events.len() > limits::MAX_BATCH_EVENTS {
            return Err(Invalid::new(
                "events",
                format!(
                    "{} events in one batch is too many: send at most {} per request",
                    self.events.len(),
                    limits::MAX_BATCH_EVENTS
                ),
            ));
        }
        for (i, event) in self.events.iter().enumerate() {
            event
                .validate()
                .and_then(|()| {
                    if self.schema_version >= 2 {
                        return Ok(());
                    }
                    if event.event_type == EventType::Measurement {
                        return Err(Invalid::new(
                            "event_type",
                            "measurement events need schema_version 2".into(),
                        ));
                    }
                    if !event.phases.is_empty() {
                        return Err(Invalid::new(
                            "phases",
                            "phases need schema_version 2".into(),
                        ));
                    }
                    Ok(())
                })
                .map_err(|e| e.within(&format!("events[{i}]")))?;
        }
        Ok(())
    }
}

impl Event {
    /// Checks this event's fields (see [`Batch::validate`]); paths are relative to the event.
    ///
    /// # Errors
    /// The first field that breaks a rule and why.
    pub fn validate(&self) -> Result<(), Invalid> {
        if !is_uuid(&self.event_id) {
            return Err(Invalid::new(
                "event_id",
                format!(
                    "event id {:?} is not a UUID (8-4-4-4-12 hex digits)",
                    clip(&self.event_id)
                ),
            ));
        }
        if !is_uuid(&self.session_id) {
            return Err(Invalid::new(
                "session_id",
                format!(
                    "session id {:?} is not a UUID (8-4-4-4-12 hex digits)",
                    clip(&self.session_id)
                ),
            ));
        }
        check_name("name", &self.name)?;
        if let Some(ms) = self.duration_ms
            && ms > limits::MAX_DURATION_MS
        {
            return Err(Invalid::new(
                "duration_ms",
                format!(
                    "duration {ms} ms is longer than the limit of {} ms (7 days)",
                    limits::MAX_DURATION_MS
                ),
            ));
        }
        if let Some(code) = &self.error_code {
            check_name("error_code", code)?;
        }
        if self.metadata.len() > limits::MAX_ATTRIBUTES {
            return Err(Invalid::new(
                "metadata",
                format!(
                    "{} attributes is too many: at most {} per event",
                    self.metadata.len(),
                    limits::MAX_ATTRIBUTES
                ),
            ));
        }
        for (key, value) in &self.metadata {
            check_name("metadata", key)?;
            let field = || format!("metadata.{key}");
            match value {
                AttributeValue::String(s) if s.len() > limits::MAX_STRING_VALUE_BYTES => {
                    return Err(Invalid::new(
                        &field(),
                        format!(
                            "value of {} bytes is too long: at most {} bytes",
                            s.len(),
                            limits::MAX_STRING_VALUE_BYTES
                        ),
                    ));
                }
                AttributeValue::Float(f) if !f.is_finite() => {
                    return Err(Invalid::new(&field(), "float values must be finite".into()));
                }
                _ => {}
            }
        }
        match (self.event_type, self.value) {
            (EventType::Measurement, None) => {
                return Err(Invalid::new(
                    "value",
                    "a measurement event needs a value".into(),
                ));
            }
            (EventType::Measurement, Some(v)) if !v.is_finite() => {
                return Err(Invalid::new("value", "must be a finite number".into()));
            }
            (EventType::Measurement, Some(_)) | (_, None) => {}
            (_, Some(_)) => {
                return Err(Invalid::new(
                    "value",
                    "only measurement events carry a value".into(),
                ));
            }
        }
        if !self.phases.is_empty() && self.event_type != EventType::Command {
            return Err(Invalid::new(
                "phases",
                "only command events carry phases".into(),
            ));
        }
        if self.phases.len() > limits::MAX_PHASES {
            return Err(Invalid::new(
                "phases",
                format!(
                    "{} phases is too many: at most {} per command",
                    self.phases.len(),
                    limits::MAX_PHASES
                ),
            ));
        }
        for (i, phase) in self.phases.iter().enumerate() {
            let within = |e: Invalid| e.within(&format!("phases[{i}]"));
            check_name("name", &phase.name).map_err(within)?;
            if let Some(parent) = phase.parent
                && usize::try_from(parent).map_or(true, |p| p >= i)
            {
                return Err(within(Invalid::new(
                    "parent",
                    format!("{parent} does not name an earlier phase of this command"),
                )));
            }
            let max_us = limits::MAX_DURATION_MS * 1_000;
            if phase.duration_us > max_us || phase.start_us > max_us {
                return Err(within(Invalid::new(
                    "duration_us",
                    format!("phase times are at most {max_us} µs (7 days)"),
                )));
            }
        }
        Ok(())
    }
}

/// Why a batch was refused: the JSON path of the field and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// JSON path of the offending field, e.g. `events[3].name`.
    pub field: String,
    /// What is wrong and what is allowed.
    pub reason: String,
}

impl Invalid {
    pub(crate) fn new(field: &str, reason: String) -> Self {
        Self {
            field: field.to_owned(),
            reason,
        }
    }

    pub(crate) fn within(mut self, prefix: &str) -> Self {
        self.field = format!("{prefix}.{}", self.field);
        self
    }
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

impl std::error::Error for Invalid {}

/// The characters allowed in names: event names, attribute keys, error codes, service names.
pub fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-')
}

/// Whether `s` is a valid name: 1 to [`limits::MAX_NAME_BYTES`] bytes of [`is_name_char`].
pub fn is_valid_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= limits::MAX_NAME_BYTES && s.chars().all(is_name_char)
}

fn is_platform_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'
}

pub(crate) fn check_name(field: &str, s: &str) -> Result<(), Invalid> {
    check_text(field, s, limits::MAX_NAME_BYTES, is_name_char)
}

pub(crate) fn check_text(
    field: &str,
    s: &str,
    max: usize,
    ok: fn(char) -> bool,
) -> Result<(), Invalid> {
    if s.is_empty() {
        return Err(Invalid::new(field, "must not be empty".into()));
    }
    if s.len() > max {
        return Err(Invalid::new(
            field,
            format!(
                "{:?} is {} bytes long: at most {max} bytes",
                clip(s),
                s.len()
            ),
        ));
    }
    if let Some(bad) = s.chars().find(|&c| !ok(c)) {
        return Err(Invalid::new(
            field,
            format!("{:?} contains {bad:?}, which is not allowed here", clip(s)),
        ));
    }
    Ok(())
}

/// The first 40 characters of `s`, so that an error message never echoes a huge value.
pub(crate) fn clip(s: &str) -> &str {
    match s.char_indices().nth(40) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Whether `s` is a UUID in its hyphenated text form (any version, either case).
pub fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, &c)| match i {
            8 | 13 | 18 | 23 => c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// The 16 bytes of a UUID in its hyphenated text form (either case), or `None` when `s` is not
/// one ([`is_uuid`]). The collector stores event and session ids this way.
///
/// ```
/// let id = "ffffffff-ffff-4fff-bfff-ffffffffffff";
/// assert_eq!(optel_wire::parse_uuid(id), Some([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x4f, 0xff,
///     0xbf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]));
/// assert_eq!(optel_wire::parse_uuid("42"), None);
/// ```
pub fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    if !is_uuid(s) {
        return None;
    }
    let mut out = [0u8; 16];
    let mut digits = s.bytes().filter(|&c| c != b'-').map(|c| match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => c - b'A' + 10,
    });
    for byte in &mut out {
        let hi = digits.next()?;
        let lo = digits.next()?;
        *byte = (hi << 4) | lo;
    }
    Some(out)
}

/// The proof of one pseudonym in a deletion request (`DELETE /v1/installs`,
/// docs/adr/002-deletion-by-pseudonym.md): `hex(HMAC-SHA-256(key = pseudonym, "optel forget
/// v1|<tool>|<timestamp>"))`, lowercase, with `timestamp` exactly the string sent. The SDK
/// computes it, the collector checks it: this is the one definition.
pub fn forget_proof(pseudonym: &str, tool: &str, timestamp: &str) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = match Hmac::<sha2::Sha256>::new_from_slice(pseudonym.as_bytes()) {
        Ok(m) => m,
        // HMAC takes keys of any length; this arm cannot run.
        Err(_) => return String::new(),
    };
    mac.update(format!("optel forget v1|{tool}|{timestamp}").as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Formats 16 bytes as a UUID version 4 in its hyphenated text form (RFC 9562 §5.4), setting
/// the version and variant bits: the one formatting of event ids, shared by the SDK (random
/// ids) and the collector (ids derived from OTLP items).
///
/// ```
/// let id = optel_wire::format_uuid_v4([0xff; 16]);
/// assert_eq!(id, "ffffffff-ffff-4fff-bfff-ffffffffffff");
/// assert!(optel_wire::is_uuid(&id));
/// ```
pub fn format_uuid_v4(mut b: [u8; 16]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let mut s = String::with_capacity(36);
    for (i, byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        s.push(char::from(HEX[usize::from(byte >> 4)]));
        s.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    s
}

/// The collector's answer to an accepted batch (HTTP 200).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestResponse {
    /// Events of the batch now stored, counting those that were already stored before.
    pub accepted: u64,
    /// Of `accepted`, how many had been stored by an earlier request (a retried batch).
    pub duplicates: u64,
    /// Whether the collector now holds the catalog named by the batch's `catalog_hash`; absent
    /// when the batch named none. An SDK stops sending the catalog once this is `true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalog_known: Option<bool>,
}

/// The body of every error answer of the collector's HTTP API (4xx and 5xx).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// One error: a stable machine-readable code, a human message, and the field at fault if any.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Stable code, e.g. `invalid_field`, `unauthenticated`, `payload_too_large`.
    pub code: String,
    /// What went wrong and what to do, safe to show to the client.
    pub message: String,
    /// JSON path of the field at fault, for `invalid_field`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_check() {
        assert!(is_uuid("0b6c8a4e-2f1d-4c3b-9a8e-7d6c5f1d3c2b"));
        assert!(!is_uuid("0b6c8a4e-2f1d-4c3b-9a8e-7d6c5f1d3c2"));
        assert!(!is_uuid("0b6c8a4e_2f1d-4c3b-9a8e-7d6c5f1d3c2b"));
        assert!(!is_uuid("zb6c8a4e-2f1d-4c3b-9a8e-7d6c5f1d3c2b"));
    }

    #[test]
    fn clip_is_char_safe() {
        let s = "é".repeat(50);
        assert_eq!(clip(&s).chars().count(), 40);
    }

    #[test]
    fn timestamp_round_trip() {
        let t = Timestamp::from_unix_ms(1_763_764_800_123);
        assert_eq!(t.to_string(), "2025-11-21T22:40:00.123Z");
        assert_eq!(Timestamp::parse(&t.to_string()), Ok(t));
        assert!(Timestamp::parse("yesterday").is_err());
    }
}
