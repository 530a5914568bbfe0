//! The event catalog: what a tool declares it records (docs/adr/010-event-catalog.md).
//!
//! A tool declares, in its source, every command, feature, method, custom event and measurement
//! it records, each attribute with its type, and each command's phases, with a one-line purpose
//! for each. The SDK drops what is not declared, renders the catalog for `telemetry preview`,
//! and sends its [`Catalog::hash`] with each batch (and the catalog itself until the collector
//! knows it). The collector stores each catalog version per project and breaks analytics down
//! by exactly the declared dimensions: enum, bool and bucketed integer attributes. Free-text
//! attributes are redacted by the SDK and never a dimension.
//!
//! On the wire a catalog is JSON:
//!
//! ```json
//! {
//!   "commands": [{
//!     "name": "build", "purpose": "Builds a project.",
//!     "attributes": [{"name": "profile", "purpose": "Debug or release build.",
//!                     "type": "enum", "values": ["debug", "release"]}],
//!     "phases": [{"name": "resolve", "purpose": "Reads the manifest."}]
//!   }],
//!   "features": [], "methods": [], "events": [],
//!   "measurements": [{"name": "files", "purpose": "Files built.", "unit": "count"}]
//! }
//! ```
//!
//! ```
//! use optel_wire::catalog::{AttributeKind, AttributeSpec, Catalog, EventSpec};
//!
//! let mut catalog = Catalog::default();
//! let mut build = EventSpec::new("build", "Builds a project.");
//! build.attributes.push(AttributeSpec::new(
//!     "profile",
//!     "Debug or release build.",
//!     AttributeKind::Enum { values: vec!["debug".into(), "release".into()] },
//! ));
//! catalog.commands.push(build);
//! assert!(catalog.validate().is_ok());
//! assert_eq!(catalog.hash().len(), 64);
//! ```

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{EventType, Invalid, check_name, clip};

/// Bounds on a catalog, checked by [`Catalog::validate`].
pub mod limits {
    /// Most entries (commands, features, methods, custom events and measurements together).
    pub const MAX_ENTRIES: usize = 1_024;
    /// Most attributes declared on one entry (the wire's per-event attribute limit).
    pub const MAX_ATTRIBUTES: usize = crate::limits::MAX_ATTRIBUTES;
    /// Most phases declared on one command.
    pub const MAX_PHASES: usize = crate::limits::MAX_PHASES;
    /// Most values of one enum attribute.
    pub const MAX_ENUM_VALUES: usize = 256;
    /// Most bucket bounds of one integer attribute.
    pub const MAX_BUCKETS: usize = 32;
    /// Longest purpose line, in bytes of UTF-8.
    pub const MAX_PURPOSE_BYTES: usize = 200;
}

/// Everything a tool declares it records. Entries keep their declared order, which is also the
/// order [`Catalog::hash`] sees.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Catalog {
    /// Commands (`event_type` `command`), with their attributes and phases.
    #[serde(default)]
    pub commands: Vec<EventSpec>,
    /// Features (`feature` events).
    #[serde(default)]
    pub features: Vec<EventSpec>,
    /// Library methods (`method` events).
    #[serde(default)]
    pub methods: Vec<EventSpec>,
    /// Custom events (`custom` events).
    #[serde(default)]
    pub events: Vec<EventSpec>,
    /// Measurements (`measurement` events).
    #[serde(default)]
    pub measurements: Vec<MeasurementSpec>,
}

/// One declared command, feature, method or custom event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventSpec {
    /// The event name, as recorded: a wire name (`[A-Za-z0-9_.:-]`, 1 to 64 bytes).
    pub name: String,
    /// One line saying why it is recorded, shown to users by `telemetry preview`.
    pub purpose: String,
    /// The attributes it may carry; any other attribute is dropped by the SDK.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attributes: Vec<AttributeSpec>,
    /// Its phases (commands only). Nested phases are declared by their own name too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub phases: Vec<PhaseSpec>,
}

impl EventSpec {
    /// An entry without attributes or phases.
    pub fn new(name: impl Into<String>, purpose: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            purpose: purpose.into(),
            attributes: Vec::new(),
            phases: Vec::new(),
        }
    }

    /// The declared attribute called `name`, if any.
    pub fn attribute(&self, name: &str) -> Option<&AttributeSpec> {
        self.attributes.iter().find(|a| a.name == name)
    }

    /// Whether `name` is one of its declared phases.
    pub fn has_phase(&self, name: &str) -> bool {
        self.phases.iter().any(|p| p.name == name)
    }
}

/// One declared phase of a command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhaseSpec {
    /// The phase name (a wire name).
    pub name: String,
    /// One line saying what the phase does.
    pub purpose: String,
}

/// One declared attribute: its name, purpose and type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttributeSpec {
    /// The attribute key (a wire name).
    pub name: String,
    /// One line saying why it is recorded.
    pub purpose: String,
    /// Its type, flattened into the object as `"type": "enum" | "bool" | "int" | "text"`.
    #[serde(flatten)]
    pub kind: AttributeKind,
}

impl AttributeSpec {
    /// An attribute declaration.
    pub fn new(name: impl Into<String>, purpose: impl Into<String>, kind: AttributeKind) -> Self {
        Self {
            name: name.into(),
            purpose: purpose.into(),
            kind,
        }
    }
}

/// The type of a declared attribute, which also says whether analytics may break down by it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AttributeKind {
    /// One of the listed string values; anything else is dropped by the SDK. A dimension.
    Enum {
        /// The allowed values, each 1 to 64 bytes.
        values: Vec<String>,
    },
    /// `true` or `false`. A dimension.
    Bool,
    /// An integer, sent only as the label of its bucket ([`bucket_label`]), never the number
    /// itself. A dimension.
    Int {
        /// Ascending bucket bounds, e.g. `[10, 100, 1000]`.
        buckets: Vec<i64>,
    },
    /// A short free text, redacted by the SDK before it is stored; never a dimension.
    Text,
}

impl AttributeKind {
    /// Whether analytics break down by attributes of this kind (all but `text`).
    pub fn is_dimension(&self) -> bool {
        !matches!(self, Self::Text)
    }
}

/// The unit of a measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// Milliseconds.
    Ms,
    /// Bytes.
    Bytes,
    /// A plain count.
    Count,
}

impl Unit {
    /// The wire name: `ms`, `bytes` or `count`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Ms => "ms",
            Self::Bytes => "bytes",
            Self::Count => "count",
        }
    }
}

/// One declared measurement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeasurementSpec {
    /// The measurement name (a wire name).
    pub name: String,
    /// One line saying what is measured.
    pub purpose: String,
    /// Its unit.
    pub unit: Unit,
}

/// The label an integer is sent as, for ascending `bounds` `[b0, b1, …, bn]`: `"<b0"` below the
/// first bound, `"b0..b1"` for `b0 <= v < b1`, …, `">=bn"` from the last bound on. With no
/// bounds every value is `"any"`.
///
/// ```
/// use optel_wire::catalog::bucket_label;
/// assert_eq!(bucket_label(&[10, 100], 3), "<10");
/// assert_eq!(bucket_label(&[10, 100], 10), "10..100");
/// assert_eq!(bucket_label(&[10, 100], 5000), ">=100");
/// ```
pub fn bucket_label(bounds: &[i64], value: i64) -> String {
    let Some(first) = bounds.first() else {
        return "any".to_owned();
    };
    if value < *first {
        return format!("<{first}");
    }
    for pair in bounds.windows(2) {
        if value >= pair[0] && value < pair[1] {
            return format!("{}..{}", pair[0], pair[1]);
        }
    }
    format!(">={}", bounds[bounds.len() - 1])
}

impl Catalog {
    /// SHA-256 of the catalog's JSON (serde_json, fields in declaration order, no whitespace),
    /// as 64 lowercase hex digits: the `catalog_hash` of a batch.
    pub fn hash(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        hex::encode(Sha256::digest(&json))
    }

    /// The declared entry for an event of `event_type` called `name`; `None` for measurements
    /// (see [`Catalog::measurement`]) and undeclared names.
    pub fn entry(&self, event_type: EventType, name: &str) -> Option<&EventSpec> {
        let list = match event_type {
            EventType::Command => &self.commands,
            EventType::Feature => &self.features,
            EventType::Method => &self.methods,
            EventType::Custom => &self.events,
            EventType::Measurement => return None,
        };
        list.iter().find(|e| e.name == name)
    }

    /// The declared measurement called `name`.
    pub fn measurement(&self, name: &str) -> Option<&MeasurementSpec> {
        self.measurements.iter().find(|m| m.name == name)
    }

    /// The data categories the catalog declares: one string per attribute
    /// (`"command:build:attribute:profile"`) and per measurement (`"measurement:files"`).
    /// A new version whose categories are not a subset of the ones a user saw must ask an
    /// opt-in user again; adding a command or a phase adds no category.
    pub fn data_categories(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for (kind, list) in [
            ("command", &self.commands),
            ("feature", &self.features),
            ("method", &self.methods),
            ("custom", &self.events),
        ] {
            for entry in list {
                for attribute in &entry.attributes {
                    out.insert(format!(
                        "{kind}:{}:attribute:{}",
                        entry.name, attribute.name
                    ));
                }
            }
        }
        for m in &self.measurements {
            out.insert(format!("measurement:{}", m.name));
        }
        out
    }

    /// Checks names, purposes and bounds ([`limits`]), and that no name is declared twice in
    /// one list.
    ///
    /// # Errors
    /// The first field that breaks a rule, with its path (`commands[0].attributes[1].values`).
    pub fn validate(&self) -> Result<(), Invalid> {
        let entries = self.commands.len()
            + self.features.len()
            + self.methods.len()
            + self.events.len()
            + self.measurements.len();
        if entries > limits::MAX_ENTRIES {
            return Err(Invalid::new(
                "commands",
                format!(
                    "{entries} entries is too many: at most {}",
                    limits::MAX_ENTRIES
                ),
            ));
        }
        for (field, list) in [
            ("commands", &self.commands),
            ("features", &self.features),
            ("methods", &self.methods),
            ("events", &self.events),
        ] {
            let mut seen = BTreeSet::new();
            for (i, entry) in list.iter().enumerate() {
                let path = format!("{field}[{i}]");
                if !seen.insert(entry.name.as_str()) {
                    return Err(Invalid::new(
                        &format!("{path}.name"),
                        format!("{:?} is declared twice", clip(&entry.name)),
                    ));
                }
                entry.validate().map_err(|e| e.within(&path))?;
            }
        }
        let mut seen = BTreeSet::new();
        for (i, m) in self.measurements.iter().enumerate() {
            let within = |e: Invalid| e.within(&format!("measurements[{i}]"));
            check_name("name", &m.name).map_err(within)?;
            check_purpose(&m.purpose).map_err(within)?;
            if !seen.insert(m.name.as_str()) {
                return Err(within(Invalid::new(
                    "name",
                    format!("{:?} is declared twice", clip(&m.name)),
                )));
            }
        }
        Ok(())
    }
}

impl EventSpec {
    fn validate(&self) -> Result<(), Invalid> {
        check_name("name", &self.name)?;
        check_purpose(&self.purpose)?;
        if self.attributes.len() > limits::MAX_ATTRIBUTES {
            return Err(Invalid::new(
                "attributes",
                format!("at most {} attributes per entry", limits::MAX_ATTRIBUTES),
            ));
        }
        if self.phases.len() > limits::MAX_PHASES {
            return Err(Invalid::new(
                "phases",
                format!("at most {} phases per command", limits::MAX_PHASES),
            ));
        }
        let mut seen = BTreeSet::new();
        for (i, a) in self.attributes.iter().enumerate() {
            let within = |e: Invalid| e.within(&format!("attributes[{i}]"));
            check_name("name", &a.name).map_err(within)?;
            check_purpose(&a.purpose).map_err(within)?;
            if !seen.insert(a.name.as_str()) {
                return Err(within(Invalid::new(
                    "name",
                    format!("{:?} is declared twice", clip(&a.name)),
                )));
            }
            a.kind.validate().map_err(within)?;
        }
        let mut seen = BTreeSet::new();
        for (i, p) in self.phases.iter().enumerate() {
            let within = |e: Invalid| e.within(&format!("phases[{i}]"));
            check_name("name", &p.name).map_err(within)?;
            check_purpose(&p.purpose).map_err(within)?;
            if !seen.insert(p.name.as_str()) {
                return Err(within(Invalid::new(
                    "name",
                    format!("{:?} is declared twice", clip(&p.name)),
                )));
            }
        }
        Ok(())
    }
}

impl AttributeKind {
    fn validate(&self) -> Result<(), Invalid> {
        match self {
            Self::Enum { values } => {
                if values.is_empty() || values.len() > limits::MAX_ENUM_VALUES {
                    return Err(Invalid::new(
                        "values",
                        format!(
                            "an enum needs 1 to {} values, not {}",
                            limits::MAX_ENUM_VALUES,
                            values.len()
                        ),
                    ));
                }
                let mut seen = BTreeSet::new();
                for v in values {
                    if v.is_empty() || v.len() > crate::limits::MAX_NAME_BYTES {
                        return Err(Invalid::new(
                            "values",
                            format!(
                                "{:?}: enum values are 1 to {} bytes",
                                clip(v),
                                crate::limits::MAX_NAME_BYTES
                            ),
                        ));
                    }
                    if !seen.insert(v.as_str()) {
                        return Err(Invalid::new(
                            "values",
                            format!("{:?} is listed twice", clip(v)),
                        ));
                    }
                }
            }
            Self::Int { buckets } => {
                if buckets.len() > limits::MAX_BUCKETS {
                    return Err(Invalid::new(
                        "buckets",
                        format!("at most {} bucket bounds", limits::MAX_BUCKETS),
                    ));
                }
                if buckets.windows(2).any(|w| w[0] >= w[1]) {
                    return Err(Invalid::new(
                        "buckets",
                        "bucket bounds must be strictly ascending".into(),
                    ));
                }
            }
            Self::Bool | Self::Text => {}
        }
        Ok(())
    }
}

fn check_purpose(purpose: &str) -> Result<(), Invalid> {
    if purpose.trim().is_empty() {
        return Err(Invalid::new(
            "purpose",
            "say in one line why this is recorded".into(),
        ));
    }
    if purpose.len() > limits::MAX_PURPOSE_BYTES || purpose.contains('\n') {
        return Err(Invalid::new(
            "purpose",
            format!("one line of at most {} bytes", limits::MAX_PURPOSE_BYTES),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Catalog {
        let mut build = EventSpec::new("build", "Builds a project.");
        build.attributes.push(AttributeSpec::new(
            "profile",
            "Debug or release.",
            AttributeKind::Enum {
                values: vec!["debug".into(), "release".into()],
            },
        ));
        build.phases.push(PhaseSpec {
            name: "resolve".into(),
            purpose: "Reads the manifest.".into(),
        });
        Catalog {
            commands: vec![build],
            measurements: vec![MeasurementSpec {
                name: "files".into(),
                purpose: "Files built.".into(),
                unit: Unit::Count,
            }],
            ..Catalog::default()
        }
    }

    #[test]
    fn hash_changes_with_content_and_round_trips() {
        let c = sample();
        let json = serde_json::to_string(&c).unwrap_or_default();
        assert!(
            json.contains(r#""type":"enum","values":["debug","release"]"#),
            "{json}"
        );
        let back: Catalog = serde_json::from_str(&json).unwrap_or_default();
        assert_eq!(back, c);
        assert_eq!(back.hash(), c.hash());
        let mut changed = c.clone();
        changed.commands[0].purpose = "Builds.".into();
        assert_ne!(changed.hash(), c.hash());
    }

    #[test]
    fn categories_grow_with_attributes_not_commands() {
        let c = sample();
        let mut more_commands = c.clone();
        more_commands
            .commands
            .push(EventSpec::new("check", "Checks."));
        assert_eq!(more_commands.data_categories(), c.data_categories());
        let mut more_data = c.clone();
        more_data.commands[0].attributes.push(AttributeSpec::new(
            "jobs",
            "Parallel jobs.",
            AttributeKind::Int {
                buckets: vec![1, 4, 16],
            },
        ));
        assert!(!more_data.data_categories().is_subset(&c.data_categories()));
    }

    #[test]
    fn validation_names_the_field() {
        let mut c = sample();
        c.commands[0].attributes[0].kind = AttributeKind::Int {
            buckets: vec![5, 5],
        };
        assert_eq!(
            c.validate().map_err(|e| e.field),
            Err("commands[0].attributes[0].buckets".to_owned())
        );
        let mut c = sample();
        c.commands.push(c.commands[0].clone());
        assert_eq!(
            c.validate().map_err(|e| e.field),
            Err("commands[1].name".to_owned())
        );
        let mut c = sample();
        c.measurements[0].purpose = String::new();
        assert_eq!(
            c.validate().map_err(|e| e.field),
            Err("measurements[0].purpose".to_owned())
        );
    }
}
