//! PRIVACY.md lists every field that can ever be sent: a wire field missing from it fails here.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

use std::collections::BTreeSet;

use optel_wire::{AttributeValue, Batch, Event, EventType, Timestamp};

/// Every JSON key of `v`, except the keys inside `metadata` (author-declared attributes) and
/// `catalog` (the author's declaration of them), which PRIVACY.md describes as a whole.
fn keys(v: &serde_json::Value, out: &mut BTreeSet<String>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, child) in map {
                out.insert(k.clone());
                if k != "metadata" && k != "catalog" {
                    keys(child, out);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|i| keys(i, out)),
        _ => {}
    }
}

#[test]
fn every_wire_field_is_listed_in_privacy_md() {
    let privacy = include_str!("../../../PRIVACY.md");
    let mut batch = Batch::new(
        "acme",
        "1.0.0",
        "0123456789abcdef0123456789abcdef",
        "linux",
        "x86_64",
    );
    batch.dropped_events = 1;
    let mut event = Event::new(
        "0b6c8a4e-2f1d-4c3b-9a8e-7d6c5f1d3c2b",
        EventType::Command,
        "build",
        Timestamp::from_unix_ms(0),
        "7e2d4c1a-0b9f-4e8d-8c7b-6a5f4e3d2c1b",
    );
    // Every optional field set, so that none is skipped in the JSON.
    event.duration_ms = Some(1);
    event.success = Some(false);
    event.error_code = Some("E".into());
    event
        .metadata
        .insert("flag".into(), AttributeValue::Bool(true));
    event.phases.push(optel_wire::Phase {
        name: "resolve".into(),
        parent: Some(0),
        start_us: 1,
        duration_us: 2,
        success: true,
    });
    batch.events.push(event);
    let mut measurement = Event::new(
        "0b6c8a4e-2f1d-4c3b-9a8e-7d6c5f1d3c2c",
        EventType::Measurement,
        "files",
        Timestamp::from_unix_ms(0),
        "7e2d4c1a-0b9f-4e8d-8c7b-6a5f4e3d2c1b",
    );
    measurement.value = Some(3.0);
    batch.events.push(measurement);
    let catalog = optel::CatalogBuilder::new()
        .command("build", "Builds.")
        .build();
    batch.catalog_hash = Some(catalog.hash());
    batch.catalog = Some(catalog);
    let json = serde_json::to_value(&batch).unwrap();
    let mut found = BTreeSet::new();
    keys(&json, &mut found);
    assert!(found.len() >= 16, "{found:?}");
    let missing: Vec<_> = found
        .iter()
        .filter(|k| !privacy.contains(&format!("| `{k}` |")))
        .collect();
    assert!(
        missing.is_empty(),
        "PRIVACY.md does not list {missing:?}: add a row for each"
    );
}
