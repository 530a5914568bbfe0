//! What the schema version 2 rollups count of one event beyond the columns of `events`:
//! [`Extras`] (folded breakdown values, [`PhaseFact`]s, measurement value).

use optel_wire::catalog::{AttributeKind, Catalog, bucket_label};
use optel_wire::{AttributeValue, Event, EventType};
use serde::{Deserialize, Serialize};

/// Most distinct values one attribute of one event keeps as its own breakdown rows per catalog
/// version; the others are counted under [`OTHER_VALUE`]. Queries fold again across catalog
/// versions, so an answer never lists more than this many values plus `other`.
pub const MAX_DIMENSION_VALUES: usize = 64;

/// The breakdown value that counts everything beyond [`MAX_DIMENSION_VALUES`] and every value
/// its catalog does not declare.
pub const OTHER_VALUE: &str = "other";

/// What the schema version 2 rollups count of one event beyond the columns of `events`: its
/// breakdown values, phases and measurement value. Stored with the event (column `facts`) as
/// compact JSON, so that deletion by pseudonym subtracts exactly what ingest added, whatever
/// catalog versions the collector still holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Extras {
    /// `(attribute, value)` of each declared dimension the event carries, values already
    /// folded ([`OTHER_VALUE`]).
    #[serde(default, rename = "d", skip_serializing_if = "Vec::is_empty")]
    pub dims: Vec<(String, String)>,
    /// Each phase of a command.
    #[serde(default, rename = "p", skip_serializing_if = "Vec::is_empty")]
    pub phases: Vec<PhaseFact>,
    /// The value of a measurement event.
    #[serde(default, rename = "v", skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
}

/// What the rollups count of one phase of a command. Stored in [`Extras`] as the JSON array
/// `[name, duration_us, parent, start_us]`; facts stored before the phase waterfall (schema
/// version 10 on SQLite, 8 on PostgreSQL) are `[name, duration_us]` and read with an empty
/// parent and a start of 0, as the migrated rollup rows hold them, so that deleting those
/// events still subtracts exactly what they added.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PhaseFact {
    /// Phase name.
    pub name: String,
    /// Duration, µs.
    pub duration_us: u64,
    /// Name of the enclosing phase, empty at the top level.
    pub parent: String,
    /// Start, µs after the command started.
    pub start_us: u64,
}

impl Serialize for PhaseFact {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (&self.name, self.duration_us, &self.parent, self.start_us).serialize(s)
    }
}

impl<'de> Deserialize<'de> for PhaseFact {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        /// The two stored forms.
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Stored {
            Full(String, u64, String, u64),
            Short(String, u64),
        }
        Ok(match Stored::deserialize(d)? {
            Stored::Full(name, duration_us, parent, start_us) => Self {
                name,
                duration_us,
                parent,
                start_us,
            },
            Stored::Short(name, duration_us) => Self {
                name,
                duration_us,
                ..Self::default()
            },
        })
    }
}

/// The breakdown value of `value` for a declared attribute `kind`, folded: a value the
/// catalog declares (and, for enums, among its first [`MAX_DIMENSION_VALUES`]) stays itself,
/// anything else is [`OTHER_VALUE`]. `None` for text attributes, which are never dimensions.
fn dimension_value(kind: &AttributeKind, value: &AttributeValue) -> Option<String> {
    let other = || Some(OTHER_VALUE.to_owned());
    match (kind, value) {
        (AttributeKind::Text, _) => None,
        (AttributeKind::Enum { values }, AttributeValue::String(s)) => {
            if values.iter().take(MAX_DIMENSION_VALUES).any(|v| v == s) {
                Some(s.clone())
            } else {
                other()
            }
        }
        (AttributeKind::Bool, AttributeValue::Bool(b)) => Some(b.to_string()),
        (AttributeKind::Bool, AttributeValue::String(s)) if s == "true" || s == "false" => {
            Some(s.clone())
        }
        (AttributeKind::Int { buckets }, AttributeValue::Int(i)) => Some(bucket_label(buckets, *i)),
        (AttributeKind::Int { buckets }, AttributeValue::String(s)) => {
            // The SDK sends the bucket's label: keep it only if it is one of this catalog's.
            let labels = std::iter::once(i64::MIN)
                .chain(buckets.iter().copied())
                .map(|b| bucket_label(buckets, b));
            if labels.take(MAX_DIMENSION_VALUES).any(|l| &l == s) {
                Some(s.clone())
            } else {
                other()
            }
        }
        _ => other(),
    }
}

impl Extras {
    /// What the rollups count of `e` beyond its columns, given the catalog its batch names
    /// (`None` when the batch names none or the collector does not know it: then no breakdown
    /// values, as no attribute is known to be a dimension). Phases and measurement values are
    /// counted with or without a catalog.
    pub fn of(e: &Event, catalog: Option<&Catalog>) -> Self {
        let mut dims = Vec::new();
        if let Some(entry) = catalog.and_then(|c| c.entry(e.event_type, &e.name)) {
            for a in &entry.attributes {
                if let Some(v) = e.metadata.get(&a.name)
                    && let Some(folded) = dimension_value(&a.kind, v)
                {
                    dims.push((a.name.clone(), folded));
                }
            }
        }
        let phases = if e.event_type == EventType::Command {
            e.phases
                .iter()
                .map(|p| PhaseFact {
                    name: p.name.clone(),
                    duration_us: p.duration_us,
                    // Validation makes `parent` an earlier phase's index; anything else
                    // counts at the top level.
                    parent: p
                        .parent
                        .and_then(|i| e.phases.get(usize::try_from(i).ok()?))
                        .map(|q| q.name.clone())
                        .unwrap_or_default(),
                    start_us: p.start_us,
                })
                .collect()
        } else {
            Vec::new()
        };
        let value = if e.event_type == EventType::Measurement {
            e.value.filter(|v| v.is_finite())
        } else {
            None
        };
        Self {
            dims,
            phases,
            value,
        }
    }

    /// Whether there is nothing beyond the columns.
    pub fn is_empty(&self) -> bool {
        self.dims.is_empty() && self.phases.is_empty() && self.value.is_none()
    }

    /// The stored form (`events.facts`): compact JSON, `None` when empty.
    pub fn encode(&self) -> Option<String> {
        if self.is_empty() {
            return None;
        }
        serde_json::to_string(self).ok()
    }

    /// Reads the stored form; `NULL` or anything malformed reads as empty.
    pub fn decode(stored: Option<&str>) -> Self {
        stored
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollup::{Delta, EventFacts};

    #[test]
    fn phase_facts_keep_parent_and_start_and_read_the_old_form() {
        let mut e = Event::new(
            optel_wire::format_uuid_v4([1; 16]),
            EventType::Command,
            "build",
            optel_wire::Timestamp::from_unix_ms(0),
            "s",
        );
        for (name, parent, start_us) in [("compile", None, 1_000), ("codegen", Some(0), 2_600)] {
            e.phases.push(optel_wire::Phase {
                name: name.into(),
                parent,
                start_us,
                duration_us: 5_000,
                success: true,
            });
        }
        let x = Extras::of(&e, None);
        assert_eq!(x.phases[1].parent, "compile");
        assert_eq!(x.phases[0].parent, "");
        let stored = x.encode().unwrap();
        assert_eq!(
            stored,
            r#"{"p":[["compile",5000,"",1000],["codegen",5000,"compile",2600]]}"#
        );
        assert_eq!(Extras::decode(Some(&stored)), x);

        // Facts stored before the waterfall: at the top level, starting at 0, which is how
        // migration 0010 (PostgreSQL 0008) keeps their rollup rows.
        let old = Extras::decode(Some(r#"{"p":[["resolve",20000]],"v":1.5}"#));
        assert_eq!(
            old.phases,
            vec![PhaseFact {
                name: "resolve".into(),
                duration_us: 20_000,
                parent: String::new(),
                start_us: 0,
            }]
        );
        assert_eq!(old.value, Some(1.5));

        // Adding then subtracting an event leaves every phase row at zero; starts are summed
        // in whole ms, rounded.
        let facts = |extras| EventFacts {
            project_id: 1,
            ts_ms: 0,
            event_type: EventType::Command,
            name: "build",
            version: "1.0.0",
            os: "linux",
            arch: "x86_64",
            duration_ms: Some(9),
            success: Some(true),
            error_code: None,
            install: 7,
            extras,
        };
        let mut d = Delta::default();
        d.add(&facts(&x), 1);
        let key = |phase: &str, parent: &str| {
            (
                1_i64,
                (
                    0_i64,
                    "build".to_owned(),
                    phase.to_owned(),
                    parent.to_owned(),
                    "1.0.0".to_owned(),
                ),
            )
        };
        assert_eq!(d.phases[&key("codegen", "compile")].start_ms_sum, 3);
        assert_eq!(d.phases[&key("compile", "")].start_ms_sum, 1);
        d.add(&facts(&x), -1);
        assert!(
            d.phases
                .values()
                .all(|s| s.hist.is_empty() && s.start_ms_sum == 0)
        );
        assert_eq!(d.sorted_phases().len(), 2);
    }

    #[test]
    fn extras_fold_undeclared_values_and_skip_text() {
        use optel_wire::catalog::{AttributeSpec, EventSpec};
        let mut catalog = Catalog::default();
        let mut build = EventSpec::new("build", "Builds.");
        let many: Vec<String> = (0..100).map(|i| format!("v{i}")).collect();
        for (name, kind) in [
            ("many", AttributeKind::Enum { values: many }),
            ("fix", AttributeKind::Bool),
            (
                "jobs",
                AttributeKind::Int {
                    buckets: vec![2, 8],
                },
            ),
            ("note", AttributeKind::Text),
        ] {
            build
                .attributes
                .push(AttributeSpec::new(name, "Something.", kind));
        }
        catalog.commands.push(build);
        let mut e = Event::new(
            optel_wire::format_uuid_v4([1; 16]),
            EventType::Command,
            "build",
            optel_wire::Timestamp::from_unix_ms(0),
            "s",
        );
        for (k, v) in [
            ("many", AttributeValue::String("v70".into())),
            ("fix", AttributeValue::Bool(true)),
            ("jobs", AttributeValue::String("2..8".into())),
            ("note", AttributeValue::String("free text".into())),
        ] {
            e.metadata.insert(k.into(), v);
        }
        let x = Extras::of(&e, Some(&catalog));
        let dims: Vec<(&str, &str)> = x
            .dims
            .iter()
            .map(|(a, v)| (a.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            dims,
            vec![("many", "other"), ("fix", "true"), ("jobs", "2..8")]
        );
        e.metadata
            .insert("jobs".into(), AttributeValue::String("9..99".into()));
        e.metadata
            .insert("many".into(), AttributeValue::String("v3".into()));
        let x = Extras::of(&e, Some(&catalog));
        assert_eq!(x.dims[0].1, "v3");
        assert_eq!(x.dims[2].1, OTHER_VALUE);
        // Unknown catalog: no dimension at all.
        assert!(Extras::of(&e, None).dims.is_empty());
        assert_eq!(Extras::decode(x.encode().as_deref()), x);
        assert_eq!(Extras::decode(Some("junk")), Extras::default());
    }
}
