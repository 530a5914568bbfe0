//! A host whose user did not consent: a plugin with the capability records nothing, gets
//! `code::OFF`, and no file is written. Own file: it initialises the SDK's process-global
//! recorder.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

mod common;

use common::{Host, PUPPET};
use optel::Consent;
use optel::export::MemoryExporter;
use optel_wasm::{Capability, Plugin, code};

#[test]
fn with_consent_off_nothing_is_recorded_or_written() {
    let dir = tempfile::tempdir().unwrap();
    let memory = MemoryExporter::new();
    let guard = optel::Telemetry::builder("plughost", "1.0.0")
        .data_dir(dir.path().join("data"))
        .config_dir(dir.path().join("config"))
        .default_consent(Consent::Off)
        .exporter(memory.clone())
        .init();
    // An environment that turns telemetry on for this tool would defeat the test.
    if std::env::var_os("PLUGHOST_TELEMETRY").is_some() {
        return;
    }
    assert!(!guard.is_enabled());

    let host = Host::new();
    let plugin = Plugin::builder("fmt-yaml", "1.4.0")
        .grant(Capability::Telemetry)
        .attribute_keys(["format"])
        .build()
        .unwrap();
    let mut run = host.start(PUPPET, &plugin);
    let json = r#"{"name":"convert","attributes":{"format":"yaml"}}"#;
    assert_eq!(run.event_json(json), code::OFF);
    // A flood costs nothing either: no budget spent, nothing parsed.
    assert_eq!(run.flood(json, 10_000), 0);
    let stats = plugin.stats();
    assert_eq!(stats.events_consent_off, 10_001);
    assert_eq!(
        stats.events_recorded + stats.events_rate_limited + stats.events_invalid,
        0
    );

    guard.shutdown();
    assert!(memory.events().is_empty());
    assert!(
        !dir.path().join("data").exists(),
        "nothing written with consent off"
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
