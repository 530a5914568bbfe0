//! Plugins against a host whose telemetry is off (optel is never initialised in this process):
//! the log, capabilities, hostile pointers and lengths, and plugin exporters (which do not need
//! the global SDK). Consent-on behaviour is in `consent_on.rs` (own process).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Captured, Host, NO_MEMORY, PAGE, PUPPET};
use optel::export::{ExportError, Exporter};
use optel::wire::{Batch, Event, EventType, Timestamp};
use optel_wasm::{Capability, LogLevel, Plugin, PluginExporter, RateLimit, code};
use wasmi::{Caller, Config, Engine, Linker, Module, Store};

#[test]
fn log_lines_reach_the_host_sink_clean_and_bounded() {
    let host = Host::new();
    let captured = Captured::default();
    let plugin = captured
        .sink(Plugin::builder("fmt-yaml", "1.4.0").log_budget(RateLimit::per_run(4)))
        .build()
        .unwrap();
    let mut run = host.start(PUPPET, &plugin);

    run.log_text(2, "converted 3 files");
    run.log_text(0, "bad\nline \x1b[31mred");
    run.log_text(7, "no such level"); // dropped, counted
    run.log_text(1, &"x".repeat(5_000)); // cut to 1 KiB
    run.log_text(3, "fourth written line");
    run.log_text(3, "over budget"); // dropped, counted

    let lines = captured.lines();
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert_eq!(
        lines[0],
        (LogLevel::Info, "converted 3 files".into(), false)
    );
    assert_eq!(lines[1].1, "bad\u{FFFD}line \u{FFFD}[31mred");
    assert_eq!(lines[2].1.len(), optel_wasm::MAX_LOG_BYTES + '…'.len_utf8());
    assert_eq!(lines[3].1, "fourth written line");
    let stats = plugin.stats();
    assert_eq!((stats.logs_written, stats.logs_dropped), (4, 2));
}

#[test]
fn the_log_goes_to_stderr_by_default_and_needs_no_capability() {
    let host = Host::new();
    let plugin = Plugin::builder("quiet", "0.1.0").build().unwrap();
    let mut run = host.start(PUPPET, &plugin);
    run.log_text(2, "hello from a plugin without capabilities");
    assert_eq!(plugin.stats().logs_written, 1);
}

#[test]
fn without_the_capability_nothing_is_read_or_recorded() {
    let host = Host::new();
    let plugin = Plugin::builder("nocap", "1.0.0").build().unwrap();
    let mut run = host.start(PUPPET, &plugin);
    assert_eq!(run.event_json(r#"{"name":"started"}"#), code::DENIED);
    // Refused before the memory is touched: even a wild pointer gets the error code.
    assert_eq!(run.event(-1, 1 << 20).unwrap(), code::DENIED);
    let stats = plugin.stats();
    assert_eq!((stats.events_denied, stats.events_recorded), (2, 0));
    assert_eq!(stats.bad_pointers, 0);
}

#[test]
fn with_the_host_telemetry_off_the_call_says_so() {
    // optel is not initialised in this process: the host's telemetry is off.
    assert!(!optel::global().is_enabled());
    let host = Host::new();
    let plugin = Plugin::builder("fmt-yaml", "1.4.0")
        .grant(Capability::Telemetry)
        .build()
        .unwrap();
    let mut run = host.start(PUPPET, &plugin);
    assert_eq!(run.event_json(r#"{"name":"started"}"#), code::OFF);
    assert_eq!(run.flood(r#"{"name":"x"}"#, 1_000), 0);
    let stats = plugin.stats();
    assert_eq!(stats.events_consent_off, 1_001);
    assert_eq!(stats.events_recorded + stats.events_rate_limited, 0);
}

#[test]
fn hostile_pointers_and_lengths_trap_and_the_host_goes_on() {
    let host = Host::new();
    let plugin = Plugin::builder("hostile", "6.6.6")
        .grant(Capability::Telemetry)
        .log_sink(|_| {})
        .build()
        .unwrap();
    let mut run = host.start(PUPPET, &plugin);

    // A pointer outside the 64 KiB memory, negative (= above 2 GiB), or a length past the end.
    for (ptr, len) in [
        (PAGE + 10, 5),
        (-1, 10),
        (PAGE - 100, 1_000),
        (i32::MAX, 4_096),
    ] {
        let e = run.event(ptr, len).unwrap_err();
        assert!(e.to_string().contains("outside its memory"), "{e}");
        let e = run.log(2, ptr, len).unwrap_err();
        assert!(e.to_string().contains("outside its memory"), "{e}");
    }
    // A length of 1 MiB is refused before anything is read; a 1 MiB log line traps.
    assert_eq!(run.event(0, 1 << 20).unwrap(), code::TOO_LARGE);
    assert_eq!(run.event(0, -1).unwrap(), code::TOO_LARGE);
    assert!(run.log(2, 0, 1 << 20).is_err());
    // The same instance still works after its traps.
    assert_eq!(run.event_json(r#"{"name":"still_here"}"#), code::OFF);
    run.log_text(2, "still here");

    let stats = plugin.stats();
    assert_eq!(stats.bad_pointers, 9);
    assert_eq!(stats.events_too_large, 2);
    assert_eq!(stats.logs_written, 1);

    // No exported memory: a trap too, never a host panic.
    let mut bare = host.start(NO_MEMORY, &plugin);
    assert!(
        bare.event(0, 10)
            .unwrap_err()
            .to_string()
            .contains("exports no memory")
    );
    assert!(bare.log(2, 0, 10).is_err());
}

#[test]
fn a_budget_is_per_plugin_not_per_instance() {
    // Consent is off here, so the budget is exercised through the log (events need consent;
    // see consent_on.rs for the event flood).
    let host = Host::new();
    let plugin = Plugin::builder("many", "1.0.0")
        .log_budget(RateLimit::per_run(3))
        .log_sink(|_| {})
        .build()
        .unwrap();
    for _ in 0..3 {
        let mut run = host.start(PUPPET, &plugin);
        run.log_text(2, "a");
        run.log_text(2, "b");
    }
    let stats = plugin.stats();
    assert_eq!((stats.logs_written, stats.logs_dropped), (3, 3));
}

#[test]
fn linking_twice_is_an_error_not_a_panic() {
    let host = Host::new();
    let mut linker = host.linker;
    let e = optel_wasm::add_to_linker(&mut linker, |s: &common::State| &s.plugin).unwrap_err();
    assert!(matches!(e, optel_wasm::Error::Link(_)), "{e}");
}

// ---- plugin exporters ----------------------------------------------------------------------

/// An exporter plugin: a bump allocator, a host import `test.sink` that hands the batch back to
/// the test, and a result chosen by the test through a global.
const EXPORTER: &str = r#"(module
  (import "test" "sink" (func $sink (param i32 i32)))
  (memory (export "memory") 2)
  (global $result (export "result") (mut i32) (i32.const 0))
  (func (export "set_result") (param i32) (global.set $result (local.get 0)))
  (func (export "alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "optel_export") (param $ptr i32) (param $len i32) (result i32)
    (call $sink (local.get $ptr) (local.get $len))
    (global.get $result)))"#;

fn fuel_engine() -> Engine {
    Engine::new(Config::default().consume_fuel(true))
}

type Received = Arc<Mutex<Vec<Vec<u8>>>>;

fn exporter_plugin(wat: &str) -> (PluginExporter<Received>, Received, wasmi::Instance) {
    let engine = fuel_engine();
    let received = Received::default();
    let mut store = Store::new(&engine, received.clone());
    let mut linker = Linker::<Received>::new(&engine);
    linker
        .func_wrap(
            "test",
            "sink",
            |caller: Caller<'_, Received>, ptr: i32, len: i32| {
                let memory = caller.get_export("memory").unwrap().into_memory().unwrap();
                let bytes = memory.data(&caller)[ptr as usize..][..len as usize].to_vec();
                caller.data().lock().unwrap().push(bytes);
            },
        )
        .unwrap();
    let module = Module::new(&engine, &wat::parse_str(wat).unwrap()[..]).unwrap();
    let instance = linker.instantiate_and_start(&mut store, &module).unwrap();
    let exporter = PluginExporter::new("upload", store, instance).unwrap();
    (exporter, received, instance)
}

fn batch() -> Batch {
    let mut batch = Batch::new("acme", "1.0.0", "p", "linux", "x86_64");
    batch.events.push(Event::new(
        "e1",
        EventType::Custom,
        "convert",
        Timestamp::from_unix_ms(0),
        "s",
    ));
    batch
}

const SECOND: Duration = Duration::from_secs(1);

#[test]
fn an_exporter_plugin_receives_the_batch_json_and_its_result_maps_to_export_errors() {
    let (exporter, received, instance) = exporter_plugin(EXPORTER);
    exporter.export(&batch(), SECOND).unwrap();
    let got: Batch = serde_json::from_slice(&received.lock().unwrap()[0]).unwrap();
    assert_eq!(got, batch());

    let set = |code: i32| {
        exporter.with_store(|store| {
            let f = instance
                .get_typed_func::<i32, ()>(&*store, "set_result")
                .unwrap();
            f.call(store, code).unwrap();
        });
    };
    set(30);
    assert!(matches!(
        exporter.export(&batch(), SECOND),
        Err(ExportError::Retryable { retry_after: Some(d), .. }) if d == Duration::from_secs(30)
    ));
    set(i32::MAX);
    assert!(matches!(
        exporter.export(&batch(), SECOND),
        Err(ExportError::Retryable { retry_after: Some(d), .. }) if d == Duration::from_secs(3_600)
    ));
    set(-7);
    let e = exporter.export(&batch(), SECOND).unwrap_err();
    assert!(matches!(e, ExportError::Rejected(_)));
    assert!(e.to_string().contains("code -7"), "{e}");
    assert_eq!(received.lock().unwrap().len(), 4);
}

#[test]
fn an_exporter_that_loops_forever_runs_out_of_fuel_and_the_host_goes_on() {
    let looping = r#"(module
      (memory (export "memory") 1)
      (func (export "alloc") (param i32) (result i32) (i32.const 0))
      (func (export "optel_export") (param i32 i32) (result i32)
        (loop $forever (br $forever))
        (i32.const 0)))"#;
    let engine = fuel_engine();
    let mut store = Store::new(&engine, ());
    let module = Module::new(&engine, &wat::parse_str(looping).unwrap()[..]).unwrap();
    let instance = Linker::new(&engine)
        .instantiate_and_start(&mut store, &module)
        .unwrap();
    let exporter = PluginExporter::new("spinner", store, instance).unwrap();
    // The SDK's timeout ends it (the default fuel would last longer in a debug build).
    let timeout = Duration::from_millis(200);
    let start = Instant::now();
    let e = exporter.export(&batch(), timeout).unwrap_err();
    let elapsed = start.elapsed();
    eprintln!("looping exporter stopped after {elapsed:?} (timeout {timeout:?})");
    assert!(matches!(e, ExportError::Retryable { .. }));
    assert!(e.to_string().contains("did not return within 200ms"), "{e}");
    // One slice of fuel past the deadline at most: generous for a loaded debug build.
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");

    // With a long timeout, the fuel ends it; each export gets its own budget.
    let exporter = exporter.fuel(1_000_000);
    for _ in 0..2 {
        let e = exporter
            .export(&batch(), Duration::from_secs(3_600))
            .unwrap_err();
        assert!(
            e.to_string().contains("ran out of fuel (1000000 units)"),
            "{e}"
        );
    }
}

#[test]
fn traps_and_wild_alloc_results_are_export_errors() {
    let cases = [
        (
            "(func (export \"alloc\") (param i32) (result i32) (unreachable))
             (func (export \"optel_export\") (param i32 i32) (result i32) (i32.const 0))",
            "trapped in alloc",
        ),
        (
            "(func (export \"alloc\") (param i32) (result i32) (i32.const -8))
             (func (export \"optel_export\") (param i32 i32) (result i32) (i32.const 0))",
            "outside its memory",
        ),
        (
            "(func (export \"alloc\") (param i32) (result i32) (i32.const 65500))
             (func (export \"optel_export\") (param i32 i32) (result i32) (i32.const 0))",
            "outside its memory",
        ),
        (
            "(func (export \"alloc\") (param i32) (result i32) (i32.const 0))
             (func (export \"optel_export\") (param i32 i32) (result i32)
               (i32.div_u (i32.const 1) (i32.const 0)))",
            "trapped in optel_export",
        ),
        (
            "(func (export \"alloc\") (param i32) (result i32) (loop $l (br $l)) (i32.const 0))
             (func (export \"optel_export\") (param i32 i32) (result i32) (i32.const 0))",
            "ran out of fuel",
        ),
    ];
    for (funcs, reason) in cases {
        let wat = format!("(module (memory (export \"memory\") 1) {funcs})");
        let engine = fuel_engine();
        let mut store = Store::new(&engine, ());
        let module = Module::new(&engine, &wat::parse_str(&wat).unwrap()[..]).unwrap();
        let instance = Linker::new(&engine)
            .instantiate_and_start(&mut store, &module)
            .unwrap();
        let exporter = PluginExporter::new("broken", store, instance)
            .unwrap()
            .fuel(1_000_000);
        let e = exporter.export(&batch(), SECOND).unwrap_err();
        assert!(matches!(e, ExportError::Retryable { .. }), "{e}");
        assert!(e.to_string().contains(reason), "{e} lacks {reason}");
    }
}

#[test]
fn exporters_check_the_protocol_and_fuel_up_front() {
    let engine = fuel_engine();
    let mut store = Store::new(&engine, ());
    let module = Module::new(
        &engine,
        &wat::parse_str(r#"(module (memory (export "memory") 1) (func (export "alloc") (param i64) (result i32) (i32.const 0)))"#).unwrap()[..],
    )
    .unwrap();
    let instance = Linker::new(&engine)
        .instantiate_and_start(&mut store, &module)
        .unwrap();
    let e = PluginExporter::new("half", store, instance).unwrap_err();
    assert!(
        e.to_string().contains("must export `alloc: (i32) -> i32`"),
        "{e}"
    );

    let engine = Engine::default(); // no fuel metering
    let mut store = Store::new(&engine, ());
    let module = Module::new(
        &engine,
        &wat::parse_str(EXPORTER.replace(
            "(import \"test\" \"sink\" (func $sink (param i32 i32)))",
            "(func $sink (param i32 i32))",
        ))
        .unwrap()[..],
    )
    .unwrap();
    let instance = Linker::new(&engine)
        .instantiate_and_start(&mut store, &module)
        .unwrap();
    let e = PluginExporter::new("nofuel", store, instance).unwrap_err();
    assert!(matches!(e, optel_wasm::Error::FuelDisabled), "{e}");
}

#[test]
fn an_exporter_that_grows_its_memory_is_held_by_the_hosts_limiter() {
    // `alloc` asks for 3.75 GiB more memory and returns what memory.grow said (-1 when
    // refused), as a careless allocator would.
    let greedy = r#"(module
      (memory (export "memory") 1)
      (func (export "alloc") (param i32) (result i32) (memory.grow (i32.const 60000)))
      (func (export "optel_export") (param i32 i32) (result i32) (i32.const 0)))"#;
    let engine = fuel_engine();
    let limits = wasmi::StoreLimitsBuilder::new()
        .memory_size(16 << 20)
        .build();
    let mut store = Store::new(&engine, limits);
    store.limiter(|limits| limits);
    let module = Module::new(&engine, &wat::parse_str(greedy).unwrap()[..]).unwrap();
    let instance = Linker::new(&engine)
        .instantiate_and_start(&mut store, &module)
        .unwrap();
    let exporter = PluginExporter::new("greedy", store, instance).unwrap();
    let e = exporter.export(&batch(), SECOND).unwrap_err();
    assert!(
        e.to_string()
            .contains("returned 4294967295, outside its memory"),
        "{e}"
    );
    let pages = exporter.with_store(|s| instance.get_memory(&*s, "memory").unwrap().size(&*s));
    assert_eq!(pages, Some(1), "the limiter refused the growth");
}
