//! Golden files pin the wire format: the JSON the SDK sends and the collector answers must not
//! change by accident. A deliberate change bumps `SCHEMA_VERSION` and adds new golden files.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

use std::collections::BTreeMap;

use optel_wire::{
    AttributeValue, Batch, ErrorBody, ErrorDetail, Event, EventType, IngestResponse,
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
    batch
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
    assert_eq!(batch.schema_version, SCHEMA_VERSION);
    batch.validate().unwrap();
}

#[test]
fn response_and_error_match_golden() {
    let response = IngestResponse {
        accepted: 3,
        duplicates: 1,
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
        (Box::new(|b| b.schema_version = 2), "schema_version"),
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
