//! The event catalog on the SDK side (docs/adr/010-event-catalog.md): [`CatalogBuilder`]
//! declares, in the tool's source, everything the tool records; at exit the recorder keeps
//! only what is declared (and, for the prompt and notice layers, what the user has seen),
//! converts integers to their bucket label, and counts what it dropped; `telemetry preview`
//! and the opt-in prompt render the catalog in plain words ([`describe`]).
//!
//! A tool without a catalog keeps the behaviour of optel before catalogs: nothing is dropped
//! for being undeclared.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use optel_wire::catalog::{
    AttributeKind, AttributeSpec, Catalog, EventSpec, MeasurementSpec, PhaseSpec, Unit,
    bucket_label,
};
use optel_wire::{AttributeValue, Event, EventType};
use serde::{Deserialize, Serialize};

use crate::fsutil;

/// Builds a [`Catalog`]: every command, feature, method, custom event and measurement the
/// tool records, each with a one-line purpose. Attribute and phase methods apply to the entry
/// added last. Pass a function returning the catalog to
/// [`TelemetryBuilder::catalog`](crate::TelemetryBuilder::catalog): it runs only when
/// telemetry is on (or for `telemetry preview` and the opt-in prompt), never on the off path.
///
/// # Examples
/// ```
/// use optel::CatalogBuilder;
/// use optel::wire::catalog::Unit;
///
/// fn catalog() -> optel::wire::Catalog {
///     CatalogBuilder::new()
///         .command("build", "Builds a project.")
///         .enum_attribute("profile", "Debug or release build.", &["debug", "release"])
///         .phase("resolve", "Reads the manifest.")
///         .phase("compile", "Writes the output.")
///         .feature("strict", "`check --strict` was used.")
///         .measurement("files", "Files built by one build.", Unit::Count)
///         .build()
/// }
/// let c = catalog();
/// assert!(c.validate().is_ok());
/// assert_eq!(c.commands[0].phases.len(), 2);
/// ```
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct CatalogBuilder {
    catalog: Catalog,
    /// The list and index of the entry added last, which attributes and phases go to.
    last: Option<(EventType, usize)>,
}

impl CatalogBuilder {
    /// An empty catalog.
    pub fn new() -> Self {
        Self::default()
    }

    /// Declares command `name` (as given to
    /// [`track_command_execution`](crate::track_command_execution)).
    pub fn command(self, name: &str, purpose: &str) -> Self {
        self.entry(EventType::Command, name, purpose)
    }

    /// Declares feature `name` (as given to [`Handle::feature`](crate::Handle::feature)).
    pub fn feature(self, name: &str, purpose: &str) -> Self {
        self.entry(EventType::Feature, name, purpose)
    }

    /// Declares library method `name` (as given to [`Handle::method`](crate::Handle::method)).
    pub fn method(self, name: &str, purpose: &str) -> Self {
        self.entry(EventType::Method, name, purpose)
    }

    /// Declares custom event `name` (as given to [`Handle::event`](crate::Handle::event)).
    pub fn event(self, name: &str, purpose: &str) -> Self {
        self.entry(EventType::Custom, name, purpose)
    }

    /// Declares measurement `name` in `unit` (as given to
    /// [`Handle::measure`](crate::Handle::measure)).
    pub fn measurement(mut self, name: &str, purpose: &str, unit: Unit) -> Self {
        self.catalog.measurements.push(MeasurementSpec {
            name: name.to_owned(),
            purpose: purpose.to_owned(),
            unit,
        });
        self.last = Some((EventType::Measurement, self.catalog.measurements.len() - 1));
        self
    }

    /// Declares, on the entry added last, an attribute whose value is one of `values`; any
    /// other value is dropped (and counted).
    pub fn enum_attribute(self, name: &str, purpose: &str, values: &[&str]) -> Self {
        let values = values.iter().map(|v| (*v).to_owned()).collect();
        self.attribute(name, purpose, AttributeKind::Enum { values })
    }

    /// Declares, on the entry added last, a boolean attribute.
    pub fn bool_attribute(self, name: &str, purpose: &str) -> Self {
        self.attribute(name, purpose, AttributeKind::Bool)
    }

    /// Declares, on the entry added last, an integer attribute sent only as the label of its
    /// bucket among the ascending `buckets` bounds (`[1, 4, 16]` sends `"4..16"` for 5), never
    /// as the number.
    pub fn int_attribute(self, name: &str, purpose: &str, buckets: &[i64]) -> Self {
        let buckets = buckets.to_vec();
        self.attribute(name, purpose, AttributeKind::Int { buckets })
    }

    /// Declares, on the entry added last, a short free-text attribute: redacted before it is
    /// stored, and never a dimension of the analytics.
    pub fn text_attribute(self, name: &str, purpose: &str) -> Self {
        self.attribute(name, purpose, AttributeKind::Text)
    }

    /// Declares, on the command added last, phase `name` (as given to
    /// [`CommandGuard::phase`](crate::CommandGuard::phase)). On another kind of entry the
    /// phase is ignored and [`Catalog::validate`] does not see it: phases belong to commands.
    pub fn phase(mut self, name: &str, purpose: &str) -> Self {
        if let Some((EventType::Command, i)) = self.last
            && let Some(command) = self.catalog.commands.get_mut(i)
        {
            command.phases.push(PhaseSpec {
                name: name.to_owned(),
                purpose: purpose.to_owned(),
            });
        }
        self
    }

    /// The catalog. Check it with [`Catalog::validate`] in a test of the tool: at init an
    /// invalid catalog turns telemetry off for the run, and `telemetry status` says why.
    pub fn build(self) -> Catalog {
        self.catalog
    }

    fn entry(mut self, event_type: EventType, name: &str, purpose: &str) -> Self {
        let list = match event_type {
            EventType::Command => &mut self.catalog.commands,
            EventType::Feature => &mut self.catalog.features,
            EventType::Method => &mut self.catalog.methods,
            EventType::Custom | EventType::Measurement => &mut self.catalog.events,
        };
        list.push(EventSpec::new(name, purpose));
        self.last = Some((event_type, list.len() - 1));
        self
    }

    fn attribute(mut self, name: &str, purpose: &str, kind: AttributeKind) -> Self {
        let entry = match self.last {
            Some((EventType::Command, i)) => self.catalog.commands.get_mut(i),
            Some((EventType::Feature, i)) => self.catalog.features.get_mut(i),
            Some((EventType::Method, i)) => self.catalog.methods.get_mut(i),
            Some((EventType::Custom, i)) => self.catalog.events.get_mut(i),
            Some((EventType::Measurement, _)) | None => None,
        };
        if let Some(entry) = entry {
            entry
                .attributes
                .push(AttributeSpec::new(name, purpose, kind));
        }
        self
    }
}

/// The catalog in plain words, for `telemetry preview` and the opt-in prompt's "show me the
/// data": every entry with its purpose, each attribute with what values it can take, phases,
/// measurements with their unit.
pub(crate) fn describe(tool: &str, catalog: &Catalog) -> String {
    let mut out = format!(
        "What {tool} records (its event catalog; anything else is dropped before it is stored):\n"
    );
    let sections = [
        (
            "Commands you run (each with its duration, and success or an error code)",
            &catalog.commands,
        ),
        ("Features you use (that they were used)", &catalog.features),
        (
            "Library methods called (that they were called)",
            &catalog.methods,
        ),
        ("Other events", &catalog.events),
    ];
    for (title, list) in sections {
        if list.is_empty() {
            continue;
        }
        let _ = writeln!(out, "\n{title}:");
        for entry in list {
            let _ = writeln!(out, "  - {}: {}", entry.name, entry.purpose);
            for a in &entry.attributes {
                let _ = writeln!(
                    out,
                    "      {} ({}): {}",
                    a.name,
                    kind_in_words(&a.kind),
                    a.purpose
                );
            }
            for p in &entry.phases {
                let _ = writeln!(out, "      phase {} (its duration): {}", p.name, p.purpose);
            }
        }
    }
    if !catalog.measurements.is_empty() {
        let _ = writeln!(out, "\nMeasurements:");
        for m in &catalog.measurements {
            let _ = writeln!(
                out,
                "  - {} (a number of {}): {}",
                m.name,
                unit_in_words(m.unit),
                m.purpose
            );
        }
    }
    out
}

fn kind_in_words(kind: &AttributeKind) -> String {
    match kind {
        AttributeKind::Enum { values } => format!("one of {}", values.join(", ")),
        AttributeKind::Bool => "yes or no".to_owned(),
        AttributeKind::Int { buckets } => {
            let mut labels: Vec<String> = Vec::new();
            if let Some(first) = buckets.first() {
                labels.push(bucket_label(buckets, first - 1));
                for b in buckets {
                    labels.push(bucket_label(buckets, *b));
                }
            }
            if labels.is_empty() {
                "a number, never sent as such".to_owned()
            } else {
                format!("a number, sent only as its range: {}", labels.join(", "))
            }
        }
        AttributeKind::Text => "a short text with e-mails, paths, tokens and addresses removed; \
                                never used to group the statistics"
            .to_owned(),
    }
}

fn unit_in_words(unit: Unit) -> &'static str {
    match unit {
        Unit::Ms => "milliseconds",
        Unit::Bytes => "bytes",
        Unit::Count => "items",
    }
}

/// The wire kind of an event type in data categories (`command`, `feature`, `method`,
/// `custom`), as [`Catalog::data_categories`] spells them.
fn category_kind(event_type: EventType) -> &'static str {
    event_type.as_str()
}

/// The catalog a recorder applies at exit.
#[derive(Debug)]
pub(crate) struct ActiveCatalog {
    pub(crate) catalog: Catalog,
    /// [`Catalog::hash`].
    pub(crate) hash: String,
    /// The data categories this install may send; `None`: every declared one (consent from
    /// a layer that cannot be asked again, see ADR 010).
    pub(crate) allowed: Option<BTreeSet<String>>,
}

/// What applying the catalog dropped, by label (`undeclared attribute command:build:x`).
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Drops {
    /// Events, attributes, values and phases the catalog does not declare: a bug of the tool.
    #[serde(default)]
    pub(crate) undeclared: BTreeMap<String, u64>,
    /// Attributes and measurements declared, but not yet seen by the user (ADR 010): held
    /// back until the prompt or notice showed them.
    #[serde(default)]
    pub(crate) withheld: BTreeMap<String, u64>,
}

impl Drops {
    fn undeclared(&mut self, label: String) {
        *self.undeclared.entry(label).or_insert(0) += 1;
    }

    fn withheld(&mut self, label: String) {
        *self.withheld.entry(label).or_insert(0) += 1;
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.undeclared.is_empty() && self.withheld.is_empty()
    }

    fn add(&mut self, other: &Self) {
        for (k, v) in &other.undeclared {
            *self.undeclared.entry(k.clone()).or_insert(0) += v;
        }
        for (k, v) in &other.withheld {
            *self.withheld.entry(k.clone()).or_insert(0) += v;
        }
    }
}

impl ActiveCatalog {
    pub(crate) fn new(catalog: Catalog, allowed: Option<BTreeSet<String>>) -> Self {
        let hash = catalog.hash();
        Self {
            catalog,
            hash,
            allowed,
        }
    }

    fn allows(&self, category: &str) -> bool {
        self.allowed.as_ref().is_none_or(|a| a.contains(category))
    }

    /// Applies the catalog to one event: `false` when the whole event is dropped. Undeclared
    /// or mistyped attributes, enum values outside the list and undeclared phases are removed;
    /// integers become their bucket label. Every removal is counted in `drops`.
    pub(crate) fn apply(&self, event: &mut Event, drops: &mut Drops) -> bool {
        let kind = category_kind(event.event_type);
        if event.event_type == EventType::Measurement {
            if self.catalog.measurement(&event.name).is_none() {
                drops.undeclared(format!("measurement {}", event.name));
                return false;
            }
            let category = format!("measurement:{}", event.name);
            if !self.allows(&category) {
                drops.withheld(format!("measurement {}", event.name));
                return false;
            }
            event.metadata.clear();
            return true;
        }
        let Some(entry) = self.catalog.entry(event.event_type, &event.name) else {
            drops.undeclared(format!("event {kind}:{}", event.name));
            return false;
        };
        let metadata = std::mem::take(&mut event.metadata);
        for (key, value) in metadata {
            let label = format!("{kind}:{}:{key}", event.name);
            let Some(spec) = entry.attribute(&key) else {
                drops.undeclared(format!("attribute {label}"));
                continue;
            };
            if !self.allows(&format!("{kind}:{}:attribute:{key}", event.name)) {
                drops.withheld(format!("attribute {label}"));
                continue;
            }
            match typed(&spec.kind, value) {
                Some(v) => {
                    event.metadata.insert(key, v);
                }
                None => drops.undeclared(format!("value of attribute {label}")),
            }
        }
        if !event.phases.is_empty() {
            keep_declared_phases(entry, event, drops);
        }
        true
    }

    /// Applies the catalog to a run's events, returning what was dropped.
    #[cfg(test)]
    pub(crate) fn apply_all(&self, events: &mut Vec<Event>) -> Drops {
        let mut drops = Drops::default();
        events.retain_mut(|e| self.apply(e, &mut drops));
        drops
    }
}

/// The value as the catalog declares it, or `None` when it does not fit the declaration.
fn typed(kind: &AttributeKind, value: AttributeValue) -> Option<AttributeValue> {
    match (kind, value) {
        (AttributeKind::Enum { values }, AttributeValue::String(s)) => {
            values.contains(&s).then_some(AttributeValue::String(s))
        }
        (AttributeKind::Bool, AttributeValue::Bool(b)) => Some(AttributeValue::Bool(b)),
        (AttributeKind::Int { buckets }, AttributeValue::Int(i)) => {
            Some(AttributeValue::String(bucket_label(buckets, i)))
        }
        // Already redacted when it was recorded (`Value::into_wire`).
        (AttributeKind::Text, AttributeValue::String(s)) => Some(AttributeValue::String(s)),
        _ => None,
    }
}

/// Removes undeclared phases; a phase nested in a removed one moves up to the nearest kept
/// ancestor, so parent indices stay valid.
fn keep_declared_phases(entry: &EventSpec, event: &mut Event, drops: &mut Drops) {
    let phases = std::mem::take(&mut event.phases);
    // Old index -> new index, for kept phases.
    let mut new_index: Vec<Option<u32>> = Vec::with_capacity(phases.len());
    let mut parents: Vec<Option<u32>> = Vec::with_capacity(phases.len());
    for mut phase in phases {
        let mut parent = phase.parent;
        // Walk up through removed phases (parents always have smaller indices).
        while let Some(p) = parent {
            match new_index.get(p as usize) {
                Some(Some(_)) | None => break,
                Some(None) => parent = parents.get(p as usize).copied().flatten(),
            }
        }
        parents.push(parent);
        if entry.has_phase(&phase.name) {
            phase.parent = parent.and_then(|p| new_index.get(p as usize).copied().flatten());
            new_index.push(u32::try_from(event.phases.len()).ok());
            event.phases.push(phase);
        } else {
            drops.undeclared(format!("phase command:{}:{}", event.name, phase.name));
            new_index.push(None);
        }
    }
}

/// The catalog state file, `<data dir>/catalog_state` (0600, replaced atomically): which
/// catalog hash each endpoint acknowledged (`catalog_known`), and the running drop counts
/// `telemetry status` shows.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub(crate) struct CatalogState {
    /// Endpoint URL -> the last catalog hash it answered `catalog_known: true` for.
    #[serde(default)]
    pub(crate) acknowledged: BTreeMap<String, String>,
    /// Drops since the data directory was created.
    #[serde(default)]
    pub(crate) drops: Drops,
}

/// Largest catalog state file read: 256 KiB (a few thousand drop labels).
const MAX_STATE_BYTES: u64 = 256 * 1024;

/// Most distinct drop labels kept in the state file; further ones are summed under `other`.
const MAX_DROP_LABELS: usize = 200;

pub(crate) fn state_path(data_dir: &Path) -> PathBuf {
    data_dir.join("catalog_state")
}

impl CatalogState {
    /// The state in `data_dir`; empty when missing or unreadable (it only saves bytes and
    /// keeps counts, so losing it is harmless).
    pub(crate) fn load(data_dir: &Path) -> Self {
        fsutil::read_private(&state_path(data_dir), MAX_STATE_BYTES)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Reads, changes and writes the state. Concurrent processes may lose each other's
    /// update (last writer wins): the state is counts and a hint, never events.
    pub(crate) fn update(data_dir: &Path, change: impl FnOnce(&mut Self)) -> std::io::Result<()> {
        let mut state = Self::load(data_dir);
        change(&mut state);
        for map in [&mut state.drops.undeclared, &mut state.drops.withheld] {
            if map.len() > MAX_DROP_LABELS {
                let mut other = map.remove("other").unwrap_or(0);
                while map.len() >= MAX_DROP_LABELS {
                    match map.pop_last() {
                        Some((_, n)) => other += n,
                        None => break,
                    }
                }
                map.insert("other".to_owned(), other);
            }
        }
        let bytes = serde_json::to_vec(&state).map_err(std::io::Error::other)?;
        fsutil::write_private_atomic(&state_path(data_dir), &bytes)
    }

    /// Adds a run's drops.
    pub(crate) fn add_drops(data_dir: &Path, drops: &Drops) -> std::io::Result<()> {
        Self::update(data_dir, |s| s.drops.add(drops))
    }

    /// Whether `endpoint` acknowledged catalog `hash`.
    pub(crate) fn knows(&self, endpoint: &str, hash: &str) -> bool {
        self.acknowledged.get(endpoint).is_some_and(|h| h == hash)
    }
}

/// A line per kind of drop for `telemetry status`, the most frequent labels first.
#[cfg(feature = "clap")]
pub(crate) fn drops_summary(drops: &Drops) -> Vec<String> {
    let line = |what: &str, map: &BTreeMap<String, u64>| {
        let total: u64 = map.values().sum();
        let mut top: Vec<(&String, &u64)> = map.iter().collect();
        top.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let names: Vec<String> = top
            .iter()
            .take(5)
            .map(|(label, n)| format!("{label} ×{n}"))
            .collect();
        let more = if top.len() > 5 { ", …" } else { "" };
        format!("{what}: {total} ({}{more})", names.join(", "))
    };
    let mut out = Vec::new();
    if !drops.undeclared.is_empty() {
        out.push(line(
            "dropped as undeclared in the catalog",
            &drops.undeclared,
        ));
    }
    if !drops.withheld.is_empty() {
        out.push(line(
            "held back until you have seen them (new data categories)",
            &drops.withheld,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use optel_wire::{Phase, Timestamp};

    use super::*;

    fn acme() -> Catalog {
        CatalogBuilder::new()
            .command("build", "Builds.")
            .enum_attribute("profile", "Debug or release.", &["debug", "release"])
            .int_attribute("jobs", "Parallel jobs.", &[2, 8])
            .text_attribute("target", "The target triple.")
            .bool_attribute("offline", "Whether offline.")
            .phase("resolve", "Reads.")
            .phase("compile", "Writes.")
            .feature("strict", "Strict checks.")
            .measurement("files", "Files built.", Unit::Count)
            .build()
    }

    fn event(t: EventType, name: &str) -> Event {
        Event::new("", t, name, Timestamp::now(), "")
    }

    fn phase(name: &str, parent: Option<u32>) -> Phase {
        Phase {
            name: name.into(),
            parent,
            start_us: 0,
            duration_us: 1,
            success: true,
        }
    }

    #[test]
    fn builder_output_validates_and_phases_only_go_to_commands() {
        let c = acme();
        assert_eq!(c.validate(), Ok(()));
        let c = CatalogBuilder::new()
            .feature("x", "X.")
            .phase("p", "P.")
            .measurement("m", "M.", Unit::Ms)
            .bool_attribute("b", "B.")
            .build();
        assert!(c.features[0].phases.is_empty());
        assert!(c.features[0].attributes.is_empty());
    }

    #[test]
    fn undeclared_events_attributes_values_and_phases_are_dropped_and_counted() {
        let active = ActiveCatalog::new(acme(), None);
        let mut build = event(EventType::Command, "build");
        for (k, v) in [
            ("profile", AttributeValue::String("debug".into())),
            ("jobs", AttributeValue::Int(5)),
            ("target", AttributeValue::String("x86_64".into())),
            ("offline", AttributeValue::Bool(true)),
            ("typo", AttributeValue::Bool(true)),
        ] {
            build.metadata.insert(k.into(), v);
        }
        build.phases = vec![
            phase("resolve", None),
            phase("link", None),
            phase("compile", Some(1)),
        ];
        let mut bad_value = event(EventType::Command, "build");
        bad_value
            .metadata
            .insert("profile".into(), AttributeValue::String("fast".into()));
        let mut m = event(EventType::Measurement, "files");
        m.value = Some(3.0);
        let mut events = vec![
            build,
            bad_value,
            event(EventType::Feature, "strict"),
            event(EventType::Feature, "strikt"),
            m,
            event(EventType::Measurement, "lines"),
        ];
        let drops = active.apply_all(&mut events);
        assert_eq!(events.len(), 4);
        let b = &events[0];
        assert_eq!(b.metadata["jobs"], AttributeValue::String("2..8".into()));
        assert_eq!(
            b.metadata["profile"],
            AttributeValue::String("debug".into())
        );
        assert!(!b.metadata.contains_key("typo"));
        assert_eq!(b.phases.len(), 2);
        assert_eq!(b.phases[1].name, "compile");
        assert_eq!(b.phases[1].parent, None, "its removed parent had none");
        assert!(events[1].metadata.is_empty());
        let labels: Vec<&str> = drops.undeclared.keys().map(String::as_str).collect();
        assert_eq!(
            labels,
            [
                "attribute command:build:typo",
                "event feature:strikt",
                "measurement lines",
                "phase command:build:link",
                "value of attribute command:build:profile",
            ]
        );
    }

    #[test]
    fn unseen_categories_are_withheld() {
        let mut seen = acme().data_categories();
        seen.remove("command:build:attribute:jobs");
        seen.remove("measurement:files");
        let active = ActiveCatalog::new(acme(), Some(seen));
        let mut build = event(EventType::Command, "build");
        build.metadata.insert("jobs".into(), AttributeValue::Int(1));
        build
            .metadata
            .insert("profile".into(), AttributeValue::String("release".into()));
        let mut m = event(EventType::Measurement, "files");
        m.value = Some(1.0);
        let mut events = vec![build, m];
        let drops = active.apply_all(&mut events);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].metadata.len(), 1);
        assert!(drops.undeclared.is_empty());
        assert_eq!(drops.withheld.len(), 2);
    }

    #[test]
    fn nested_phases_keep_valid_parents() {
        let active = ActiveCatalog::new(acme(), None);
        let mut e = event(EventType::Command, "build");
        e.phases = vec![
            phase("resolve", None),
            phase("inner", Some(0)),
            phase("compile", Some(1)),
        ];
        let mut drops = Drops::default();
        assert!(active.apply(&mut e, &mut drops));
        assert_eq!(e.phases.len(), 2);
        assert_eq!(e.phases[1].parent, Some(0), "compile moves up to resolve");
    }

    #[test]
    fn description_is_plain_words() {
        let text = describe("acme", &acme());
        for want in [
            "  - build: Builds.",
            "profile (one of debug, release): Debug or release.",
            "jobs (a number, sent only as its range: <2, 2..8, >=8)",
            "phase resolve (its duration): Reads.",
            "files (a number of items): Files built.",
            "never used to group",
        ] {
            assert!(text.contains(want), "no {want:?} in\n{text}");
        }
    }

    #[test]
    fn state_round_trips_and_caps_labels() {
        let dir = tempfile::tempdir().unwrap();
        let mut drops = Drops::default();
        for i in 0..(MAX_DROP_LABELS + 10) {
            drops.undeclared(format!("event custom:e{i:04}"));
        }
        CatalogState::add_drops(dir.path(), &drops).unwrap();
        CatalogState::update(dir.path(), |s| {
            s.acknowledged
                .insert("http://h/v1/events".into(), "ab".into());
        })
        .unwrap();
        let s = CatalogState::load(dir.path());
        assert!(s.knows("http://h/v1/events", "ab"));
        assert!(!s.knows("http://other/v1/events", "ab"));
        assert_eq!(s.drops.undeclared.len(), MAX_DROP_LABELS);
        let total: u64 = s.drops.undeclared.values().sum();
        assert_eq!(total, (MAX_DROP_LABELS + 10) as u64);
    }
}
