//! The SDK's OTLP exporter against the collector's OTLP routes, over real HTTP on loopback:
//! what optel sends as OTLP (the `command_invocation` metric, error spans for failed commands,
//! log records for other events) must arrive as the same events, counted once, in both
//! encodings.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

use std::time::Duration;

use optel::export::Exporter;
use optel::otlp::OtlpExporter;
use optel_test_support::LocalCollector;
use optel_wire::{Batch, Event, EventType, Timestamp};

const SESSION: &str = "7e2d4c1a-0b9f-4e8d-8c7b-6a5f4e3d2c1b";

fn batch(pseudonym: &str, first_id: u32) -> Batch {
    let mut b = Batch::new("acme", "1.4.0", pseudonym, "linux", "x86_64");
    let now = Timestamp::now();
    let mut event = |kind, name: &str, ok: Option<bool>, code: Option<&str>| {
        let id = format!(
            "00000000-0000-4000-8000-{:012}",
            first_id + b.events.len() as u32
        );
        let mut e = Event::new(id, kind, name, now, SESSION);
        if kind == EventType::Command {
            e.duration_ms = Some(12);
        }
        e.success = ok;
        e.error_code = code.map(str::to_owned);
        b.events.push(e);
    };
    event(EventType::Command, "build", Some(true), None);
    event(EventType::Command, "build", Some(true), None);
    event(
        EventType::Command,
        "check",
        Some(false),
        Some("E_NO_MANIFEST"),
    );
    event(EventType::Feature, "cache", None, None);
    b
}

fn exporter(collector: &LocalCollector, protocol: &str) -> OtlpExporter {
    let endpoint = collector.endpoint();
    let headers = format!("Authorization=Bearer {}", collector.key());
    OtlpExporter::from_env(move |k| match k {
        "OTEL_EXPORTER_OTLP_ENDPOINT" => Some(endpoint.clone()),
        "OTEL_EXPORTER_OTLP_HEADERS" => Some(headers.clone()),
        "OTEL_EXPORTER_OTLP_PROTOCOL" => Some(protocol.to_owned()),
        _ => None,
    })
    .unwrap()
}

#[test]
fn otlp_from_the_sdk_arrives_as_the_same_events() {
    for protocol in ["http/protobuf", "http/json"] {
        let dir = tempfile::tempdir().unwrap();
        let collector = LocalCollector::start(dir.path(), "acme").unwrap();
        let exporter = exporter(&collector, protocol);
        let sent = batch("5f1d3c2b9a8e7d6c5f1d3c2b9a8e7d6c", 1);
        exporter.export(&sent, Duration::from_secs(10)).unwrap();
        // A retried export (same events) must not count twice.
        exporter.export(&sent, Duration::from_secs(10)).unwrap();

        let stats = collector.stats().unwrap();
        let commands: Vec<(String, u64, u64)> = stats
            .commands
            .iter()
            .map(|c| (c.name.clone(), c.count, c.failures))
            .collect();
        assert_eq!(
            commands,
            [("build".to_owned(), 2, 0), ("check".to_owned(), 1, 1)],
            "{protocol}"
        );
        assert_eq!(stats.error_codes.len(), 1, "{protocol}");
        assert_eq!(stats.error_codes[0].error_code, "E_NO_MANIFEST");
        assert_eq!(
            stats.active_installs, 1,
            "{protocol}: the pseudonym came through"
        );
        assert_eq!(stats.versions[0].version, "1.4.0");
        assert_eq!(stats.platforms[0].os, "linux");
    }
}
