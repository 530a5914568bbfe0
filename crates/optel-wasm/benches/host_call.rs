//! The cost of one host call from a plugin, measured from a loop inside the plugin (so the
//! figure includes crossing from the interpreter into the host and back):
//!
//! - `noop`: a host function that does nothing (the crossing alone, the baseline);
//! - `log/sink`: `telemetry.log` of 23 bytes into a host sink that drops it;
//! - `event/denied`: `host_telemetry_event` without the capability (nothing read);
//! - `event/off`: with the capability, host telemetry off (bounds checked, nothing parsed);
//! - `event/on`: consent on, an 88-byte event with three declared attributes: read, parsed,
//!   redacted, handed to the SDK's buffer (drained outside the timed section);
//! - `event/rate_limited`: consent on, budget spent: the flood path;
//! - `sdk/event_with`: the same event recorded by the host through the SDK (the floor);
//! - `sdk/redact`: redacting one of its strings.
//!
//! And how long a plugin exporter that loops forever takes to spend
//! [`PluginExporter::DEFAULT_FUEL`] (printed, not a criterion figure).
//!
//! Run: `cargo bench -p optel-wasm --bench host_call`.

// A benchmark is a test harness: failing loudly on a broken setup is the point.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use optel::export::Exporter;
use optel_wasm::{Capability, Plugin, PluginExporter, RateLimit};
use wasmi::{Caller, Config, Engine, Instance, Linker, Module, Store, TypedFunc};

const PLUGIN: &str = r#"(module
  (import "telemetry" "log" (func $log (param i32 i32 i32)))
  (import "telemetry" "host_telemetry_event" (func $event (param i32 i32) (result i32)))
  (import "bench" "noop" (func $noop (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "{\"name\":\"convert\",\"attributes\":{\"format\":\"yaml\",\"lines\":120,\"note\":\"3 files converted\"}}")
  (data (i32.const 200) "converted 3 files, 0 ms")
  (func (export "events") (param $n i32)
    (loop $next
      (drop (call $event (i32.const 0) (i32.const 88)))
      (br_if $next (local.tee $n (i32.sub (local.get $n) (i32.const 1))))))
  (func (export "logs") (param $n i32)
    (loop $next
      (call $log (i32.const 2) (i32.const 200) (i32.const 23))
      (br_if $next (local.tee $n (i32.sub (local.get $n) (i32.const 1))))))
  (func (export "noops") (param $n i32)
    (loop $next
      (drop (call $noop (i32.const 0) (i32.const 88)))
      (br_if $next (local.tee $n (i32.sub (local.get $n) (i32.const 1)))))))"#;

/// Calls a chunk, below the SDK's 10 000-event buffer, between two untimed drains.
const CHUNK: u64 = 5_000;

struct State {
    plugin: Plugin,
}

struct Bench {
    store: Store<State>,
    instance: Instance,
}

impl Bench {
    fn new(plugin: Plugin) -> Self {
        let engine = Engine::default();
        let mut linker = Linker::<State>::new(&engine);
        optel_wasm::add_to_linker(&mut linker, |s: &State| &s.plugin).unwrap();
        linker
            .func_wrap("bench", "noop", |_: Caller<'_, State>, _: i32, _: i32| {
                0_i32
            })
            .unwrap();
        let module = Module::new(&engine, &wat::parse_str(PLUGIN).unwrap()[..]).unwrap();
        let mut store = Store::new(&engine, State { plugin });
        let instance = linker.instantiate_and_start(&mut store, &module).unwrap();
        Self { store, instance }
    }

    fn func(&self, name: &str) -> TypedFunc<i32, ()> {
        self.instance.get_typed_func(&self.store, name).unwrap()
    }

    /// Times `iters` calls of the plugin's loop `name`, in chunks.
    fn timed(&mut self, name: &str, iters: u64) -> Duration {
        let f = self.func(name);
        let mut total = Duration::ZERO;
        let mut left = iters;
        while left > 0 {
            let n = left.min(CHUNK);
            let start = Instant::now();
            f.call(&mut self.store, n as i32).unwrap();
            total += start.elapsed();
            optel::__private::bench_drain();
            left -= n;
        }
        total
    }
}

fn plugin(telemetry: bool, budget: u32) -> Plugin {
    let mut b = Plugin::builder("bench-plugin", "1.0.0")
        .attribute_keys(["format", "lines", "note"])
        .event_budget(RateLimit::per_run(budget))
        .log_budget(RateLimit::per_run(u32::MAX))
        .log_sink(|_| {});
    if telemetry {
        b = b.grant(Capability::Telemetry);
    }
    b.build().unwrap()
}

fn host_call(c: &mut Criterion) {
    let mut group = c.benchmark_group("host_call");
    group.throughput(Throughput::Elements(1));
    assert!(!optel::global().is_enabled());

    let mut bench = Bench::new(plugin(false, u32::MAX));
    group.bench_function("noop", |b| b.iter_custom(|n| bench.timed("noops", n)));
    group.bench_function("log/sink", |b| b.iter_custom(|n| bench.timed("logs", n)));
    group.bench_function("event/denied", |b| {
        b.iter_custom(|n| bench.timed("events", n))
    });

    let mut bench = Bench::new(plugin(true, u32::MAX));
    group.bench_function("event/off", |b| b.iter_custom(|n| bench.timed("events", n)));

    let dir = tempfile::tempdir().unwrap();
    let guard = optel::Telemetry::builder("bench", "1.0.0")
        .data_dir(dir.path().join("data"))
        .config_dir(dir.path().join("config"))
        .default_consent(optel::Consent::On)
        .exporter(optel::export::NoopExporter)
        .init();
    assert!(guard.is_enabled(), "{}", guard.status());
    group.bench_function("event/on", |b| b.iter_custom(|n| bench.timed("events", n)));

    // The same event recorded by the host itself, through the SDK: what a plugin event costs
    // on top of it is the crossing, the read and the JSON parse.
    group.bench_function("sdk/event_with", |b| {
        b.iter_custom(|n| {
            let mut total = Duration::ZERO;
            let mut left = n;
            while left > 0 {
                let chunk = left.min(CHUNK);
                let start = Instant::now();
                for _ in 0..chunk {
                    optel::global().event_with(
                        std::hint::black_box("convert"),
                        [
                            ("format", optel::Value::Str("yaml".into())),
                            ("lines", optel::Value::Int(120)),
                            ("note", optel::Value::Str("3 files converted".into())),
                        ],
                    );
                }
                total += start.elapsed();
                optel::__private::bench_drain();
                left -= chunk;
            }
            total
        })
    });
    group.bench_function("sdk/redact", |b| {
        b.iter(|| optel::redact::redact(std::hint::black_box("3 files converted")).len())
    });

    let mut spent = Bench::new(plugin(true, 0));
    group.bench_function("event/rate_limited", |b| {
        b.iter_custom(|n| spent.timed("events", n))
    });
    group.finish();
    optel::__private::bench_drain();
    drop(guard);

    looping_exporter();
}

/// How long the default fuel lasts for a plugin that loops: the longest a plugin exporter can
/// hold the delivery thread when the SDK's timeout is longer.
fn looping_exporter() {
    let wat = r#"(module
      (memory (export "memory") 1)
      (func (export "alloc") (param i32) (result i32) (i32.const 0))
      (func (export "optel_export") (param i32 i32) (result i32) (loop $l (br $l)) (i32.const 0)))"#;
    let engine = Engine::new(Config::default().consume_fuel(true));
    let mut store = Store::new(&engine, ());
    let module = Module::new(&engine, &wat::parse_str(wat).unwrap()[..]).unwrap();
    let instance = Linker::new(&engine)
        .instantiate_and_start(&mut store, &module)
        .unwrap();
    let exporter = PluginExporter::new("spinner", store, instance).unwrap();
    let batch = optel::wire::Batch::new("bench", "1.0.0", "p", "linux", "x86_64");
    for timeout in [Duration::from_millis(40), Duration::from_secs(3_600)] {
        let start = Instant::now();
        let e = exporter.export(&batch, timeout).unwrap_err();
        println!(
            "looping exporter, timeout {timeout:?}: stopped after {:?} ({e})",
            start.elapsed()
        );
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = host_call
}
criterion_main!(benches);
