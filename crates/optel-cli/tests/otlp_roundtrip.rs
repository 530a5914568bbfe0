//! The SDK's OTLP exporter against the collector's OTLP routes, over real HTTP on loopback:
//! what optel sends as OTLP (a root span per command, a log record per other event) must
//! arrive as the same events, counted once, in both encodings; and `optel upload --otlp`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

mod support;

use std::time::Duration;

use optel::export::Exporter;
use optel::otlp::OtlpExporter;
use optel_test_support::LocalCollector;
use optel_wire::{Batch, Event, EventType, Timestamp};
use support::{OTLP_SESSION as SESSION, otlp_batch};

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
        let sent = otlp_batch("5f1d3c2b9a8e7d6c5f1d3c2b9a8e7d6c", 1);
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

/// What the collector stored of one event: everything the query API does not show.
type Stored = (
    String,
    String,
    Option<i64>,
    Option<bool>,
    Option<String>,
    Option<String>,
);

/// The project's stored events, in a stable order, with their upload's OS and architecture.
fn stored_events(dir: &std::path::Path) -> (Vec<Stored>, Vec<(String, String)>) {
    let db = rusqlite::Connection::open(dir.join("optel.db")).unwrap();
    let mut stmt = db
        .prepare(
            "SELECT event_type, name, duration_ms, success, error_code, metadata FROM events
             ORDER BY event_type, name, error_code",
        )
        .unwrap();
    let events = stmt
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })
        .unwrap()
        .collect::<Result<Vec<Stored>, _>>()
        .unwrap();
    let mut stmt = db.prepare("SELECT DISTINCT os, arch FROM uploads").unwrap();
    let platforms = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    (events, platforms)
}

/// Regression (issue 1): optel → optel lost every feature, method and custom event name (they
/// arrived as custom events named `optel.feature`, keys prefixed `optel.`), and successful
/// commands went out only as a metric (no duration, no attributes). Every event type now
/// comes back exactly as it was recorded, in both encodings, and a retry counts once.
#[test]
fn every_event_type_round_trips_exactly() {
    use optel_wire::AttributeValue;
    for protocol in ["http/protobuf", "http/json"] {
        let dir = tempfile::tempdir().unwrap();
        let collector = LocalCollector::start(dir.path(), "acme").unwrap();
        let exporter = exporter(&collector, protocol);
        let mut b = Batch::new(
            "acme",
            "1.4.0",
            "5f1d3c2b9a8e7d6c5f1d3c2b9a8e7d6c",
            "macos",
            "aarch64",
        );
        let now = Timestamp::now();
        let mut add = |kind, name: &str, meta: Vec<(&str, AttributeValue)>| {
            let id = format!("00000000-0000-4000-8000-{:012}", 100 + b.events.len());
            let mut e = Event::new(id, kind, name, now, SESSION);
            e.metadata = meta.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
            b.events.push(e);
            b.events.len() - 1
        };
        let ok = add(
            EventType::Command,
            "build",
            vec![("profile", AttributeValue::String("release".into()))],
        );
        let failed = add(
            EventType::Command,
            "check",
            vec![("strict", AttributeValue::Bool(true))],
        );
        add(
            EventType::Feature,
            "cache",
            vec![
                ("hits", AttributeValue::Int(9_007_199_254_740_993)),
                ("cache.warm", AttributeValue::Bool(false)),
            ],
        );
        add(
            EventType::Method,
            "Database::connect",
            vec![("pool.size", AttributeValue::Int(4))],
        );
        add(
            EventType::Custom,
            "upgrade.prompted",
            vec![("ratio", AttributeValue::Float(0.25))],
        );
        b.events[ok].duration_ms = Some(250);
        b.events[ok].success = Some(true);
        b.events[failed].duration_ms = Some(40);
        b.events[failed].success = Some(false);
        b.events[failed].error_code = Some("E_NO_MANIFEST".into());
        exporter.export(&b, Duration::from_secs(10)).unwrap();
        exporter.export(&b, Duration::from_secs(10)).unwrap();

        let mut want: Vec<Stored> = b
            .events
            .iter()
            .map(|e| {
                (
                    e.event_type.as_str().to_owned(),
                    e.name.clone(),
                    e.duration_ms.map(|d| d as i64),
                    e.success,
                    e.error_code.clone(),
                    (!e.metadata.is_empty()).then(|| serde_json::to_string(&e.metadata).unwrap()),
                )
            })
            .collect();
        want.sort();
        let (mut got, platforms) = stored_events(dir.path());
        got.sort();
        assert_eq!(got, want, "{protocol}");
        assert_eq!(
            platforms,
            [("macos".to_owned(), "aarch64".to_owned())],
            "{protocol}"
        );
        let stats = collector.stats().unwrap();
        assert_eq!(stats.features[0].name, "cache");
        assert_eq!(stats.methods[0].name, "Database::connect");
        let commands: Vec<(String, u64, u64)> = stats
            .commands
            .iter()
            .map(|c| (c.name.clone(), c.count, c.failures))
            .collect();
        assert_eq!(
            commands,
            [("build".to_owned(), 1, 0), ("check".to_owned(), 1, 1)]
        );
    }
}

/// `optel upload --otlp` with `--protocol` and `--compression`, authenticated with `--key`; a
/// run in which the endpoint refused anything (here an event older than the collector's 90
/// days, refused in the partial success) exits non-zero and says so.
#[test]
fn upload_over_otlp_exits_non_zero_when_anything_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let collector = LocalCollector::start(dir.path(), "acme").unwrap();
    let ledger = tempfile::tempdir().unwrap();
    let mut b = otlp_batch("5f1d3c2b9a8e7d6c5f1d3c2b9a8e7d6c", 300);
    let upload = |b: &Batch, protocol: &str, compression: &str| {
        std::fs::write(
            ledger.path().join("ledger.jsonl"),
            serde_json::to_string(b).unwrap() + "\n",
        )
        .unwrap();
        support::run(
            &[
                "upload",
                ledger.path().to_str().unwrap(),
                "--otlp",
                "--protocol",
                protocol,
                "--compression",
                compression,
                "--endpoint",
                &collector.endpoint(),
                "--key",
                collector.key(),
            ],
            &[],
        )
    };
    let ok = upload(&b, "http/json", "none");
    assert!(ok.ok(), "{}", ok.stderr);
    assert_eq!(collector.stats().unwrap().commands.len(), 2);

    let old = Timestamp::from_unix_ms(Timestamp::now().unix_ms() - 100 * 86_400_000);
    b.events[3].timestamp = old;
    let refused = upload(&b, "http/protobuf", "gzip");
    assert!(!refused.ok(), "{}", refused.stdout);
    assert!(
        refused.stderr.contains("refused 0 events and 1 OTLP items"),
        "{}",
        refused.stderr
    );
}
