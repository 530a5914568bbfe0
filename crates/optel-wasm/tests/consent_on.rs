//! Plugin events through a host whose telemetry is on: what a well-behaved plugin records
//! arrives (attributed, redacted, catalogued); a plugin without the capability records
//! nothing; hostile plugins trap or get counted drops and the host goes on; a flood spends the
//! budget; and a plugin exporter receives the host's batch. Own file: it initialises the SDK's
//! process-global recorder.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Captured, Host, PAGE, PUPPET};
use optel::export::{ExportResult, Exporter, MemoryExporter};
use optel::wire::{AttributeValue, Batch};
use optel::{Consent, EventType};
use optel_wasm::{Capability, LogLevel, Plugin, PluginExporter, code};
use wasmi::{Caller, Config, Engine, Linker, Module, Store};

/// The SDK takes one exporter: this one gives each batch to the memory exporter (to assert
/// on) and to a plugin exporter.
#[derive(Debug)]
struct Both(MemoryExporter, PluginExporter<Received>);

impl Exporter for Both {
    fn export(&self, batch: &Batch, timeout: Duration) -> ExportResult {
        self.0.export(batch, timeout)?;
        self.1.export(batch, timeout)
    }
}

type Received = Arc<Mutex<Vec<u8>>>;

/// An exporter plugin that hands the batch back to the host through the host's own import.
fn plugin_exporter() -> (PluginExporter<Received>, Received) {
    let wat = r#"(module
      (import "test" "sink" (func $sink (param i32 i32)))
      (memory (export "memory") 2)
      (func (export "alloc") (param i32) (result i32) (i32.const 16))
      (func (export "optel_export") (param i32 i32) (result i32)
        (call $sink (local.get 0) (local.get 1))
        (i32.const 0)))"#;
    let engine = Engine::new(Config::default().consume_fuel(true));
    let received = Received::default();
    let mut store = Store::new(&engine, received.clone());
    let mut linker = Linker::<Received>::new(&engine);
    linker
        .func_wrap(
            "test",
            "sink",
            |caller: Caller<'_, Received>, ptr: i32, len: i32| {
                let memory = caller.get_export("memory").unwrap().into_memory().unwrap();
                let bytes = &memory.data(&caller)[ptr as usize..][..len as usize];
                caller.data().lock().unwrap().extend_from_slice(bytes);
            },
        )
        .unwrap();
    let module = Module::new(&engine, &wat::parse_str(wat).unwrap()[..]).unwrap();
    let instance = linker.instantiate_and_start(&mut store, &module).unwrap();
    (
        PluginExporter::new("archive", store, instance).unwrap(),
        received,
    )
}

#[test]
fn plugin_events_go_through_the_host_under_its_rules() {
    let dir = tempfile::tempdir().unwrap();
    let memory = MemoryExporter::new();
    let (archive, archived) = plugin_exporter();
    let guard = optel::Telemetry::builder("plughost", "1.0.0")
        .data_dir(dir.path().join("data"))
        .config_dir(dir.path().join("config"))
        .default_consent(Consent::On)
        .exporter(Both(memory.clone(), archive))
        .exit_timeout(Duration::from_secs(10))
        .init();
    // The environment of the test runner may say otherwise (DO_NOT_TRACK on a developer's
    // machine); then there is nothing to check.
    if std::env::var_os("DO_NOT_TRACK").is_some()
        || std::env::var_os("PLUGHOST_TELEMETRY").is_some()
    {
        return;
    }
    assert!(guard.is_enabled(), "{}", guard.status());
    let host = Host::new();

    // A well-behaved plugin with the capability and a catalog of three keys.
    let good = Plugin::builder("fmt-yaml", "1.4.0")
        .grant(Capability::Telemetry)
        .attribute_keys(["format", "lines", "note"])
        .log_sink(|_| {})
        .build()
        .unwrap();
    let mut run = host.start(PUPPET, &good);
    let home = dir.path().display().to_string();
    let convert = format!(
        r#"{{"name":"convert","attributes":{{"format":"yaml","lines":120,
            "note":"for jane@example.com in {home}/notes.yaml","user":"jane"}}}}"#
    );
    assert_eq!(run.event_json(&convert), code::RECORDED_PARTIAL); // "user" is undeclared
    assert_eq!(run.event_json(r#"{"name":"started"}"#), code::RECORDED);
    // The log is the host's, never telemetry (the event count below shows it).
    run.log_text(2, "converted for jane@example.com");
    assert_eq!(good.stats().logs_written, 1);
    // A second instance of the same plugin records as the same plugin.
    let mut again = host.start(PUPPET, &good);
    assert_eq!(
        again.event_json(r#"{"name":"second_instance"}"#),
        code::RECORDED
    );
    let stats = good.stats();
    assert_eq!((stats.events_recorded, stats.attributes_dropped), (3, 1));

    // The same plugin without the capability: an error code, nothing recorded.
    let nocap = Plugin::builder("fmt-yaml-nocap", "1.4.0").build().unwrap();
    let mut run = host.start(PUPPET, &nocap);
    assert_eq!(run.event_json(r#"{"name":"sneaky"}"#), code::DENIED);
    assert_eq!(nocap.stats().events_denied, 1);

    // Hostile plugins: traps and counted drops; the host (and the plugin) go on.
    let warnings = Captured::default();
    let hostile = warnings
        .sink(Plugin::builder("hostile", "6.6.6").grant(Capability::Telemetry))
        .build()
        .unwrap();
    let mut run = host.start(PUPPET, &hostile);
    assert!(run.event(PAGE + 16, 8).is_err()); // pointer out of bounds
    assert!(run.event(-4, 8).is_err()); // negative pointer
    assert!(run.event(PAGE - 64, 4_000).is_err()); // length past the memory
    assert_eq!(run.event(0, 1 << 20).unwrap(), code::TOO_LARGE); // 1 MiB
    assert_eq!(run.event_json(r#"{"name": "#), code::INVALID);
    assert_eq!(run.event_json(r#"{"name":"rm -rf"}"#), code::INVALID);
    assert_eq!(
        run.event_json(r#"{"name":"x","attributes":{"a":[1,2]}}"#),
        code::INVALID
    );
    assert_eq!(run.event_json(r#"{"name":"hostile_ok"}"#), code::RECORDED);
    let stats = hostile.stats();
    assert_eq!(stats.bad_pointers, 3);
    assert_eq!(stats.events_too_large, 1);
    assert_eq!(stats.events_invalid, 3);
    assert_eq!(stats.events_recorded, 1);
    let lines = warnings.lines();
    assert_eq!(
        lines.len(),
        3,
        "one host warning per refused event: {lines:?}"
    );
    assert!(
        lines
            .iter()
            .all(|(level, _, from_host)| *level == LogLevel::Warn && *from_host)
    );
    assert!(
        lines[1].1.contains("\"rm -rf\" is not allowed"),
        "{lines:?}"
    );

    // A flood of 10 000 calls from a loop inside the plugin: the budget (100) is recorded,
    // the rest dropped and counted, and the host says so once.
    let notes = Captured::default();
    let flooder = notes
        .sink(Plugin::builder("flooder", "0.0.1").grant(Capability::Telemetry))
        .build()
        .unwrap();
    let mut run = host.start(PUPPET, &flooder);
    let start = Instant::now();
    let recorded = run.flood(r#"{"name":"flood","attributes":{"n":1}}"#, 10_000);
    eprintln!("10 000 calls in {:?}", start.elapsed());
    assert_eq!(recorded, 100);
    let stats = flooder.stats();
    assert_eq!(
        (stats.events_recorded, stats.events_rate_limited),
        (100, 9_900)
    );
    assert_eq!(stats.attributes_dropped, 100); // "n" is not in its (empty) catalog
    let notes = notes.lines();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(
        notes[0].1.contains("event budget spent (100 events"),
        "{notes:?}"
    );

    guard.shutdown();

    // What reached the host's exporter.
    let names = memory.event_names();
    let count = |n: &str| names.iter().filter(|x| *x == n).count();
    assert_eq!(count("convert"), 1);
    assert_eq!(count("started"), 1);
    assert_eq!(count("second_instance"), 1);
    assert_eq!(count("hostile_ok"), 1);
    assert_eq!(count("flood"), 100);
    assert_eq!(names.len(), 104, "nothing else: {names:?}");

    let convert = memory.assert_event(EventType::Custom, "convert");
    let attr = |k: &str| convert.metadata.get(k).cloned();
    assert_eq!(
        attr("plugin"),
        Some(AttributeValue::String("fmt-yaml".into()))
    );
    assert_eq!(
        attr("plugin_version"),
        Some(AttributeValue::String("1.4.0".into()))
    );
    assert_eq!(attr("format"), Some(AttributeValue::String("yaml".into())));
    assert_eq!(attr("lines"), Some(AttributeValue::Int(120)));
    assert_eq!(
        attr("note"),
        Some(AttributeValue::String("for <email> in <path>".into()))
    );
    assert_eq!(attr("user"), None);
    memory.assert_not_sent("jane@example.com");
    memory.assert_not_sent(&home);
    let flood = memory.assert_event(EventType::Custom, "flood");
    assert_eq!(
        flood.metadata.get("plugin"),
        Some(&AttributeValue::String("flooder".into()))
    );

    // The plugin exporter got the same batch, as optel JSON.
    let archived: Batch = serde_json::from_slice(&archived.lock().unwrap()).unwrap();
    assert_eq!(archived.events.len(), 104);
    assert!(archived.events.iter().any(|e| e.name == "convert"));
}
