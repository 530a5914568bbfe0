//! Recording an event: telemetry off vs on, in the same run, so that the two figures compare.
//!
//! - `off`: before init, or after init with consent off (the same state: no global recorder).
//!   Budget: ≤ 2 ns, no allocation, so that a tool pays nothing measurable for telemetry its
//!   user turned off.
//! - `on`: after init with consent on, recording hands the event to the in-memory buffer
//!   (budget ≤ 200 ns). The buffer is drained outside the timed section every few thousand
//!   events, so every timed call is a real hand-off, never the cheaper "buffer full" drop.
//!
//! - `phases`: a command with four phases (two nested) vs the bare command, in the same run:
//!   the difference divided by four is the cost of one phase (budget ≤ 250 ns on; off, the
//!   phase guard is empty: a branch).
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
    group.bench_function("command+4phases/off", |b| b.iter(command_with_phases));
    group.bench_function("measure/off", |b| {
        b.iter(|| optel::global().measure(black_box("files"), black_box(3.0)));
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
    group.bench_function("command+4phases/on", |b| {
        b.iter_custom(|iters| timed_chunks(iters, command_with_phases));
    });
    group.bench_function("measure/on", |b| {
        b.iter_custom(|iters| {
            timed_chunks(iters, || {
                optel::global().measure(black_box("files"), black_box(3.0));
            })
        });
    });
    group.finish();
    optel::__private::bench_drain();
    drop(guard);
}

/// A command with four phases: `resolve` holding a nested `fetch`, then `compile` holding a
/// nested `link`.
fn command_with_phases() {
    let command = optel::track_command_execution(black_box("build"));
    {
        let _resolve = command.phase(black_box("resolve"));
        drop(command.phase(black_box("fetch")));
    }
    {
        let _compile = command.phase(black_box("compile"));
        drop(command.phase(black_box("link")));
    }
    drop(command);
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
