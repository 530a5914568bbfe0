//! The process-global recorder end to end with the `MemoryExporter` (feature `testing`):
//! before init nothing is recorded; after init with consent on, commands, attributes (redacted),
//! library events and sampling reach the exporter. Own file: it initialises the global.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

use std::time::Duration;

use optel::export::MemoryExporter;
use optel::{Consent, EventType, Value};
use optel_wire::AttributeValue;

static LIB: optel::Library = optel::library("mylib", "2.1.0");

#[test]
fn records_through_the_memory_exporter() {
    // Before init: every call is a no-op.
    assert!(!optel::global().is_enabled());
    LIB.method("Client::get");
    assert!(!LIB.is_enabled());

    let dir = tempfile::tempdir().unwrap();
    let memory = MemoryExporter::new();
    let guard = optel::Telemetry::builder("acme", "1.0.0")
        .data_dir(dir.path().join("data"))
        .config_dir(dir.path().join("config"))
        .default_consent(Consent::On)
        .exporter(memory.clone())
        .sample(EventType::Feature, 0.0)
        .exit_timeout(Duration::from_secs(10))
        .init();
    // The environment of the test runner may say otherwise (DO_NOT_TRACK on a developer's
    // machine); then there is nothing to check.
    if std::env::var_os("DO_NOT_TRACK").is_some() || std::env::var_os("ACME_TELEMETRY").is_some() {
        return;
    }
    assert!(guard.is_enabled(), "{}", guard.status());
    assert!(LIB.is_enabled());

    {
        let mut cmd = optel::track_command_execution("build");
        cmd.attr("target", "release");
        cmd.attr("jobs", 4);
        cmd.attr(
            "note",
            format!(
                "wrote {}/out.bin for jane@example.com",
                dir.path().display()
            ),
        );
        cmd.fail("E_NO_MANIFEST");
    }
    optel::global().event_with(
        "export",
        [("format", Value::from("json")), ("ratio", Value::from(0.5))],
    );
    optel::global().feature("sampled_out");
    optel::global().event("not a valid name");
    LIB.method("Client::get");
    guard.shutdown();

    let build = memory.assert_event(EventType::Command, "build");
    assert_eq!(build.success, Some(false));
    assert_eq!(build.error_code.as_deref(), Some("E_NO_MANIFEST"));
    assert_eq!(build.metadata["jobs"], AttributeValue::Int(4));
    assert_eq!(
        build.metadata["target"],
        AttributeValue::String("release".into())
    );
    assert_eq!(
        build.metadata["note"],
        AttributeValue::String("wrote <path> for <email>".into())
    );
    memory.assert_not_sent("jane@example.com");
    memory.assert_not_sent(dir.path().to_str().unwrap());
    memory.assert_event(EventType::Custom, "export");
    let lib = memory.assert_event(EventType::Method, "Client::get");
    assert_eq!(
        lib.metadata["library"],
        AttributeValue::String("mylib".into())
    );
    assert_eq!(
        lib.metadata["library_version"],
        AttributeValue::String("2.1.0".into())
    );
    // Sampled out with ratio 0, and the invalid name dropped and counted.
    assert_eq!(memory.event_names(), ["build", "export", "Client::get"]);
    let batches = memory.batches();
    assert_eq!(batches.iter().map(|b| b.dropped_events).sum::<u64>(), 1);

    // Every attribute key optel adds itself is listed in PRIVACY.md.
    let privacy = include_str!("../../../PRIVACY.md");
    for key in lib.metadata.keys() {
        assert!(
            privacy.contains(&format!("| `{key}` |")),
            "PRIVACY.md lacks {key}"
        );
    }

    // The run also went to the local ledger, 0600.
    let ledger = optel::export::JsonlFileExporter::new(dir.path().join("data/ledger"));
    assert_eq!(ledger.read_lines().unwrap().len(), 1);
}
