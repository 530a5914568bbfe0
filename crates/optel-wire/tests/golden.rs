//! Golden files pin the wire format: the JSON the SDK sends and the collector answers must not
//! change by accident. A deliberate change bumps `SCHEMA_VERSION` and adds new golden files.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

use std::collections::BTreeMap;

use optel_wire::catalog::{
    AttributeKind, AttributeSpec, Catalog, EventSpec, MeasurementSpec, PhaseSpec, Unit,
};
use optel_wire::{
    AttributeValue, Batch, ErrorBody, ErrorDetail, Event, EventType, IngestResponse, Phase,
    SCHEMA_VERSION, Timestamp,
};

const SESSION: &str = "7e2d4c1a-0b9f-4e8d-8c7b-6a5f4e3d2c1b";

fn golden(name: &str) -> String {
    let path = format!("{}/tests/golden/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

fn sample_batch() -> Batch {
    let mut batch = Batch::new(
        "acme",
        "1.2.0",
        "5f1d3c2b9a8e7d6c5f1d3c2b9a8e7d6c",
        "linux",
        "x86_64",
    );
    let mut build = Event::new(
        "0b6c8a4e-2f1d-4c3b-9a8e-7d6c5f1d3c2b",
        EventType::Command,
        "build",
        Timestamp::parse("2026-11-21T22:40:00.123Z").unwrap(),
        SESSION,
    );
    build.duration_ms = Some(1250);
    build.success = Some(true);
    let mut check = Event::new(
        "1c7d9b5f-3a2e-4d4c-8b9f-8e7d6a2e4d3c",
        EventType::Command,
        "check",
        Timestamp::parse("2026-11-21T22:40:02Z").unwrap(),
        SESSION,
    );
    check.duration_ms = Some(3);
    check.success = Some(false);
    check.error_code = Some("E_NO_MANIFEST".into());
    let mut cache = Event::new(
        "2d8eac60-4b3f-4e5d-9caf-9f8e7b3f5e4d",
        EventType::Feature,
        "cache",
        Timestamp::parse("2026-11-21T22:40:02.5Z").unwrap(),
        SESSION,
    );
    cache.metadata = BTreeMap::from([
        ("enabled".to_owned(), AttributeValue::Bool(true)),
        ("entries".to_owned(), AttributeValue::Int(42)),
        ("hit_ratio".to_owned(), AttributeValue::Float(0.75)),
        ("mode".to_owned(), AttributeValue::String("shared".into())),
    ]);
    batch.events = vec![build, check, cache];
    batch.schema_version = 1;
    batch
}

fn sample_catalog() -> Catalog {
    let mut build = EventSpec::new(
        "build",
        "Builds a project, to learn which profiles are used.",
    );
    build.attributes.push(AttributeSpec::new(
        "profile",
        "Debug or release build.",
        AttributeKind::Enum {
            values: vec!["debug".into(), "release".into()],
        },
    ));
    build.attributes.push(AttributeSpec::new(
        "jobs",
        "Parallel jobs, bucketed.",
        AttributeKind::Int {
            buckets: vec![2, 8],
        },
    ));
    build.phases = vec![
        PhaseSpec {
            name: "resolve".into(),
            purpose: "Reads the manifest.".into(),
        },
        PhaseSpec {
            name: "compile".into(),
            purpose: "Compiles the sources.".into(),
        },
    ];
    let mut strict = EventSpec::new("strict", "Whether strict checking is used.");
    strict.attributes.push(AttributeSpec::new(
        "fix",
        "Whether fixes were applied.",
        AttributeKind::Bool,
    ));
    Catalog {
        commands: vec![build],
        features: vec![strict],
        measurements: vec![MeasurementSpec {
            name: "files".into(),
            purpose: "How many files a build compiled.".into(),
            unit: Unit::Count,
        }],
        ..Catalog::default()
    }
}

/// A version 2 batch: catalog, a command with attributes and phases, a measurement.
fn sample_batch_v2() -> Batch {
    let mut batch = Batch::new(
        "acme",
        "1.3.0",
        "5f1d3c2b9a8e7d6c5f1d3c2b9a8e7d6c",
        "linux",
        "x86_64",
    );
    let catalog = sample_catalog();
    batch.catalog_hash = Some(catalog.hash());
    batch.catalog = Some(catalog);
    let mut build = Event::new(
        "0b6c8a4e-2f1d-4c3b-9a8e-7d6c5f1d3c2b",
        EventType::Command,
        "build",
        Timestamp::parse("2026-11-21T22:40:00.123Z").unwrap(),
        SESSION,
    );
    build.duration_ms = Some(1250);
    build.success = Some(true);
    build.metadata = BTreeMap::from([
        ("jobs".to_owned(), AttributeValue::String("2..8".into())),
        (
            "profile".to_owned(),
            AttributeValue::String("release".into()),
        ),
    ]);
    build.phases = vec![
        Phase {
            name: "resolve".into(),
            parent: None,
            start_us: 150,
            duration_us: 20_400,
            success: true,
        },
        Phase {
            name: "compile".into(),
            parent: None,
            start_us: 20_600,
            duration_us: 1_228_900,
            success: true,
        },
    ];
    let mut files = Event::new(
        "3e9fbd71-5c4a-4f6e-8dba-af9f8c4a6f5e",
        EventType::Measurement,
        "files",
        Timestamp::parse("2026-11-21T22:40:01.373Z").unwrap(),
        SESSION,
    );
    files.value = Some(12.0);
    batch.events = vec![build, files];
    batch
}

#[test]
fn batch_v2_serializes_to_golden() {
    let json = serde_json::to_string_pretty(&sample_batch_v2()).unwrap();
    assert_eq!(json.trim(), golden("batch_v2.json").trim());
    let back: Batch = serde_json::from_str(&json).unwrap();
    assert_eq!(back, sample_batch_v2());
    assert_eq!(back.schema_version, SCHEMA_VERSION);
    back.validate().unwrap();
}

#[test]
fn response_v2_names_the_catalog() {
    let response = IngestResponse {
        accepted: 2,
        duplicates: 0,
        catalog_known: Some(true),
    };
    assert_eq!(
        serde_json::to_string_pretty(&response).unwrap(),
        golden("response_v2.json").trim()
    );
}

#[test]
fn version_2_rules_name_the_field() {
    let cases: Vec<Case> = vec![
        (
            Box::new(|b| b.catalog_hash = Some("0".repeat(64))),
            "catalog_hash",
        ),
        (
            Box::new(|b| b.catalog_hash = Some("XYZ".into())),
            "catalog_hash",
        ),
        (
            Box::new(|b| {
                if let Some(c) = &mut b.catalog {
                    c.commands[0].name = "bad name".into();
                }
            }),
            "catalog.commands[0].name",
        ),
        (Box::new(|b| b.events[1].value = None), "events[1].value"),
        (
            Box::new(|b| b.events[1].value = Some(f64::INFINITY)),
            "events[1].value",
        ),
        (
            Box::new(|b| b.events[0].value = Some(1.0)),
            "events[0].value",
        ),
        (
            Box::new(|b| b.events[0].phases[1].parent = Some(1)),
            "events[0].phases[1].parent",
        ),
        (
            Box::new(|b| b.events[0].phases[0].name = "/tmp/x".into()),
            "events[0].phases[0].name",
        ),
        (
            Box::new(|b| b.events[0].phases[0].duration_us = u64::MAX),
            "events[0].phases[0].duration_us",
        ),
        (
            Box::new(|b| {
                let p = b.events[0].phases[0].clone();
                b.events[0].phases = vec![p; optel_wire::limits::MAX_PHASES + 1];
            }),
            "events[0].phases",
        ),
        (
            Box::new(|b| {
                let p = b.events[0].phases[0].clone();
                b.events[1].phases = vec![p];
            }),
            "events[1].phases",
        ),
        (
            Box::new(|b| {
                b.schema_version = 1;
                b.catalog = None;
            }),
            "catalog_hash",
        ),
        (
            Box::new(|b| {
                b.schema_version = 1;
                b.catalog = None;
                b.catalog_hash = None;
            }),
            "events[0].phases",
        ),
        (
            Box::new(|b| {
                b.schema_version = 1;
                b.catalog = None;
                b.catalog_hash = None;
                b.events[0].phases.clear();
            }),
            "events[1].event_type",
        ),
    ];
    for (mutate, field) in cases {
        let mut batch = sample_batch_v2();
        mutate(&mut batch);
        let err = batch.validate().expect_err(field);
        assert_eq!(err.field, field, "{err}");
    }
}

#[test]
fn batch_serializes_to_golden() {
    let json = serde_json::to_string_pretty(&sample_batch()).unwrap();
    assert_eq!(json.trim(), golden("batch_v1.json").trim());
}

#[test]
fn golden_batch_parses_and_validates() {
    let batch: Batch = serde_json::from_str(&golden("batch_v1.json")).unwrap();
    assert_eq!(batch, sample_batch());
    assert_eq!(batch.schema_version, 1, "version 1 batches stay accepted");
    batch.validate().unwrap();
}

#[test]
fn response_and_error_match_golden() {
    let response = IngestResponse {
        accepted: 3,
        duplicates: 1,
        catalog_known: None,
    };
    assert_eq!(
        serde_json::to_string_pretty(&response).unwrap(),
        golden("response_v1.json").trim()
    );

    let mut batch = sample_batch();
    batch.events[0].name = "bad name".into();
    let invalid = batch.validate().unwrap_err();
    let body = ErrorBody {
        error: ErrorDetail {
            code: "invalid_field".into(),
            message: invalid.reason,
            field: Some(invalid.field),
        },
    };
    assert_eq!(
        serde_json::to_string_pretty(&body).unwrap(),
        golden("error_v1.json").trim()
    );
}

/// A change to a valid batch, and the field the error must name.
type Case = (Box<dyn Fn(&mut Batch)>, &'static str);

#[test]
fn validation_names_the_field() {
    let cases: Vec<Case> = vec![
        (Box::new(|b| b.schema_version = 3), "schema_version"),
        (Box::new(|b| b.service_name = String::new()), "service_name"),
        (
            Box::new(|b| b.service_version = "1.0 beta".into()),
            "service_version",
        ),
        (Box::new(|b| b.pseudonym = "Alice@host".into()), "pseudonym"),
        (Box::new(|b| b.os = "Linux!".into()), "os"),
        (Box::new(|b| b.events.clear()), "events"),
        (
            Box::new(|b| b.events[1].event_id = "42".into()),
            "events[1].event_id",
        ),
        (
            Box::new(|b| b.events[1].session_id = "x".into()),
            "events[1].session_id",
        ),
        (
            Box::new(|b| b.events[0].name = "x".repeat(65)),
            "events[0].name",
        ),
        (
            Box::new(|b| b.events[0].name = "/home/alice".into()),
            "events[0].name",
        ),
        (
            Box::new(|b| b.events[1].error_code = Some("no such file".into())),
            "events[1].error_code",
        ),
        (
            Box::new(|b| b.events[0].duration_ms = Some(u64::MAX)),
            "events[0].duration_ms",
        ),
        (
            Box::new(|b| {
                b.events[2]
                    .metadata
                    .insert("note".into(), AttributeValue::String("x".repeat(257)));
            }),
            "events[2].metadata.note",
        ),
        (
            Box::new(|b| {
                b.events[2]
                    .metadata
                    .insert("ratio".into(), AttributeValue::Float(f64::NAN));
            }),
            "events[2].metadata.ratio",
        ),
        (
            Box::new(|b| {
                b.events[2]
                    .metadata
                    .insert("bad key".into(), AttributeValue::Bool(true));
            }),
            "events[2].metadata",
        ),
        (
            Box::new(|b| {
                for i in 0..40 {
                    b.events[2]
                        .metadata
                        .insert(format!("k{i}"), AttributeValue::Int(i));
                }
            }),
            "events[2].metadata",
        ),
        (
            Box::new(|b| {
                let e = b.events[0].clone();
                b.events = vec![e; optel_wire::limits::MAX_BATCH_EVENTS + 1];
            }),
            "events",
        ),
    ];
    for (mutate, field) in cases {
        let mut batch = sample_batch();
        mutate(&mut batch);
        let err = batch.validate().expect_err(field);
        assert_eq!(err.field, field, "{err}");
        assert!(!err.reason.is_empty());
    }
}

#[test]
fn unknown_event_type_is_refused() {
    let text = golden("batch_v1.json").replace("\"feature\"", "\"keystroke\"");
    let err = serde_json::from_str::<Batch>(&text).unwrap_err();
    assert!(err.to_string().contains("keystroke"), "{err}");
}

/// Walks `path` (object keys and array indexes) to the parent of its last step.
fn parent_of<'a>(
    root: &'a mut serde_json::Value,
    path: &[serde_json::Value],
) -> &'a mut serde_json::Value {
    let mut cur = root;
    for step in &path[..path.len() - 1] {
        cur = match step {
            serde_json::Value::String(k) => &mut cur[k.as_str()],
            serde_json::Value::Number(i) => &mut cur[usize::try_from(i.as_u64().unwrap()).unwrap()],
            other => panic!("bad path step {other}"),
        };
    }
    cur
}

/// The validation cases shared with the JavaScript SDK (`sdk/fixtures/wire-validation.json`):
/// each mutates `batch_v2.json` and names the first field `Batch::validate` must refuse.
#[test]
fn shared_validation_cases_name_the_same_field_as_the_javascript_validator() {
    let path = format!(
        "{}/../../sdk/fixtures/wire-validation.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let fixture: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let golden_batch: serde_json::Value = serde_json::from_str(&golden("batch_v2.json")).unwrap();
    let cases = fixture["cases"].as_array().unwrap();
    assert!(cases.len() >= 20);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let mut batch = golden_batch.clone();
        for p in case["delete"].as_array().into_iter().flatten() {
            let p = p.as_array().unwrap();
            let last = p.last().unwrap().as_str().unwrap();
            parent_of(&mut batch, p)
                .as_object_mut()
                .unwrap()
                .remove(last);
        }
        for pair in case["set"].as_array().into_iter().flatten() {
            let (p, value) = (pair[0].as_array().unwrap(), pair[1].clone());
            let parent = parent_of(&mut batch, p);
            match p.last().unwrap() {
                serde_json::Value::String(k) => parent[k.as_str()] = value,
                serde_json::Value::Number(i) => {
                    let (i, list) = (
                        usize::try_from(i.as_u64().unwrap()).unwrap(),
                        parent.as_array_mut().unwrap(),
                    );
                    if i == list.len() {
                        list.push(value);
                    } else {
                        list[i] = value;
                    }
                }
                other => panic!("bad path step {other}"),
            }
        }
        let batch: Batch = serde_json::from_value(batch).unwrap_or_else(|e| panic!("{name}: {e}"));
        let got = batch.validate().err().map(|e| e.field);
        assert_eq!(got.as_deref(), case["expect_field"].as_str(), "{name}");
    }
}
