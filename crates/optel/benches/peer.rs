//! optel against its peer, the OpenTelemetry Rust SDK, in the same run, so that both figures
//! come from the same machine and the same load.
//!
//! - `record/*`: one event recorded with telemetry off and on, next to an OpenTelemetry span
//!   started and ended with a no-op tracer and with the SDK's batch span processor (exporter
//!   doing nothing).
//! - `queue_append/*`: persisting a run's events at exit: optel's segment file against a SQLite
//!   transaction (WAL, `synchronous=NORMAL`) holding the same JSON, the usual design for a
//!   local event store. The figures decide `docs/adr/001-local-queue.md`.
//!
//! `cargo bench -p optel --bench peer`
// Test code: a failed unwrap is a failed test with a clear location (clippy.toml allows it
// in #[test] functions only, not in their helpers).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use opentelemetry::trace::{Span, Tracer, TracerProvider};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use optel_wire::Batch;

#[derive(Debug)]
struct DiscardExporter;

impl SpanExporter for DiscardExporter {
    fn export(
        &self,
        batch: Vec<SpanData>,
    ) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        drop(batch);
        std::future::ready(Ok(()))
    }
}

fn record(c: &mut Criterion) {
    let mut group = c.benchmark_group("record");
    // Off: before init, the global recorder is the no-op.
    group.bench_function("optel_off", |b| {
        b.iter(|| optel::global().feature(black_box("build")));
    });
    let noop = opentelemetry::trace::noop::NoopTracerProvider::new().tracer("bench");
    group.bench_function("otel_noop_tracer", |b| {
        b.iter(|| {
            let mut span = noop.start(black_box("build"));
            span.end();
        });
    });

    let dir = tempfile::tempdir().expect("tempdir");
    let guard = optel::Telemetry::builder("bench", "1.0.0")
        .data_dir(dir.path())
        .default_consent(optel::Consent::On)
        .init();
    assert!(guard.is_enabled(), "{}", guard.status());
    group.bench_function("optel_on", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                // Stay under the 10 000-event buffer so every call records.
                let n = left.min(5_000);
                optel::__private::clear_buffer();
                let start = std::time::Instant::now();
                for _ in 0..n {
                    optel::global().feature(black_box("build"));
                }
                total += start.elapsed();
                left -= n;
            }
            total
        });
    });
    optel::__private::clear_buffer();

    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(DiscardExporter)
        .build();
    let tracer = provider.tracer("bench");
    group.bench_function("otel_sdk_batch_processor", |b| {
        b.iter(|| {
            let mut span = tracer.start(black_box("build"));
            span.end();
        });
    });
    group.finish();
    let _ = provider.shutdown();
    drop(guard);
}

/// A run's batch of `events` command events (shared with the store benchmark).
fn batch(events: usize) -> Batch {
    optel::__private::bench_batch(events)
}

fn queue_append(c: &mut Criterion) {
    let mut group = c.benchmark_group("queue_append");
    for events in [1usize, 20] {
        let b = batch(events);
        // Each iteration appends to an existing queue of a fresh directory; creating and
        // removing the directory happen outside the timing.
        group.bench_function(format!("optel_segment/{events}_events"), |bench| {
            bench.iter_batched(
                || {
                    let dir = tempfile::tempdir().expect("tempdir");
                    optel::__private::queue_append(dir.path(), &b).expect("first append");
                    dir
                },
                |dir| {
                    optel::__private::queue_append(dir.path(), &b).expect("append");
                    dir
                },
                BatchSize::PerIteration,
            );
        });
        group.bench_function(format!("sqlite_wal/{events}_events"), |bench| {
            bench.iter_batched(
                || {
                    let dir = tempfile::tempdir().expect("tempdir");
                    let conn = sqlite_queue(dir.path());
                    drop(conn);
                    dir
                },
                |dir| {
                    // What a process would do at exit with a SQLite queue: open (checking
                    // the schema), insert in one transaction, close.
                    let mut conn = sqlite_queue(dir.path());
                    let tx = conn.transaction().expect("tx");
                    tx.execute(
                        "INSERT INTO queue (batch) VALUES (?1)",
                        [serde_json::to_string(&b).expect("json")],
                    )
                    .expect("insert");
                    tx.commit().expect("commit");
                    drop(conn);
                    dir
                },
                BatchSize::PerIteration,
            );
        });
    }
    group.finish();
}

fn sqlite_queue(dir: &std::path::Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(dir.join("queue.db")).expect("open");
    conn.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;
         CREATE TABLE IF NOT EXISTS queue (id INTEGER PRIMARY KEY, batch TEXT NOT NULL);",
    )
    .expect("schema");
    conn
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50);
    targets = record, queue_append
}
criterion_main!(benches);
