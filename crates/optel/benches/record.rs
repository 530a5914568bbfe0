//! Recording an event: telemetry off vs on, in the same run, so that the two figures compare.
//!
//! - `off`: before init, or after init with consent off (the same state: no global recorder).
//!   Budget: ≤ 2 ns, no allocation, so that a tool pays nothing measurable for telemetry its
//!   user turned off.
//! - `on`: after init with consent on, recording hands the event to the in-memory buffer
//!   (budget ≤ 200 ns). The buffer is drained outside the timed section every few thousand
//!   events, so every timed call is a real hand-off, never the cheaper "buffer full" drop.
//!
//! Run: `cargo bench -p optel --bench record`.

// A benchmark is a test harness: failing loudly on a broken setup is the point.
#![allow(clippy::panic)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};

/// Events recorded between two (untimed) drains; below the SDK's 10 000-event buffer.
const CHUNK: u64 = 5_000;

fn record(c: &mut Criterion) {
    let mut group = c.benchmark_group("record");
    // Off: nothing initialised in this process yet.
    assert!(!optel::global().is_enabled());
    group.bench_function("feature/off", |b| {
        b.iter(|| optel::global().feature(black_box("export")));
    });
    group.bench_function("command/off", |b| {
        b.iter(|| drop(optel::track_command_execution(black_box("build"))));
    });

    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let guard = optel::Telemetry::builder("bench", "1.0.0")
        .data_dir(dir.path().join("data"))
        .config_dir(dir.path().join("config"))
        .default_consent(optel::Consent::On)
        .init();
    assert!(guard.is_enabled(), "{}", guard.status());
    group.bench_function("feature/on", |b| {
        b.iter_custom(|iters| timed_chunks(iters, || optel::global().feature(black_box("export"))));
    });
    group.bench_function("command/on", |b| {
        b.iter_custom(|iters| {
            timed_chunks(iters, || {
                drop(optel::track_command_execution(black_box("build")))
            })
        });
    });
    group.finish();
    optel::__private::bench_drain();
    drop(guard);
}

fn timed_chunks(iters: u64, mut f: impl FnMut()) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(CHUNK);
        let start = Instant::now();
        for _ in 0..n {
            f();
        }
        total += start.elapsed();
        optel::__private::bench_drain();
        left -= n;
    }
    total
}

criterion_group!(benches, record);
criterion_main!(benches);
