//! The process-global recorder end to end with the `MemoryExporter` (feature `testing`):
//! before init nothing is recorded; after init with consent on, commands, attributes (redacted),
//! library events and sampling reach the exporter. Own file: it initialises the global, in a
//! child process with a cleared environment.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

use std::time::Duration;

use optel::export::MemoryExporter;
use optel::{Consent, EventType, Value};
use optel_wire::AttributeValue;

static LIB: optel::Library = optel::library("mylib", "2.1.0");

/// Set in the child process that runs the test body.
const CHILD: &str = "OPTEL_GLOBAL_RECORDER_CHILD";

#[test]
fn records_through_the_memory_exporter() {
    // The test sets up its own environment: it runs again as a child process with a cleared
    // environment, so DO_NOT_TRACK or ACME_TELEMETRY on a developer's machine or a CI runner
    // cannot turn telemetry off (regression: it returned early and passed without checking).
    if std::env::var_os(CHILD).is_none() {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "records_through_the_memory_exporter",
                "--nocapture",
            ])
            .env_clear()
            .env(CHILD, "1")
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        return;
    }
    run();
}

fn run() {
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
