//! The cost of the encrypted local store per run, and of the consent re-check of a running
//! process, each next to its baseline in the same run.
//!
//! - `store_run/{plain,sealed}/{1,20}`: what a run persists at exit (one queue segment and one
//!   ledger record) with 1 and 20 events, plain JSON against XChaCha20-Poly1305-sealed.
//! - `store_seal/{json,json_sealed}/{1,20}`: the batch encoded as JSON, and sealed, in memory:
//!   what sealing adds without the file system's noise.
//! - `store_key/read`: reading the store key file, which init adds with the store on.
//! - `consent_check/{unchanged,changed}`: one look at the consent files' modification times
//!   by the delivery thread (a `stat` per path: the project policy from the working directory
//!   up, the user's file, the shared file), with nothing changed and with the user's file
//!   rewritten before each look.
//!
//! `cargo bench -p optel --features encryption --bench store`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use optel_wire::Batch;

fn batch(events: usize) -> Batch {
    optel::__private::bench_batch(events)
}

fn store_run(c: &mut Criterion) {
    let mut group = c.benchmark_group("store_run");
    for events in [1, 20] {
        let b = batch(events);
        for (name, sealed) in [("plain", false), ("sealed", true)] {
            let dir = tempfile::tempdir().unwrap();
            optel::__private::store_run(dir.path(), &b, sealed).unwrap();
            group.bench_with_input(BenchmarkId::new(name, events), &b, |bench, b| {
                bench.iter_batched(
                    // Not timed: empty the directories (kept), so that each run writes into a
                    // store holding nothing but itself.
                    || {
                        for sub in ["queue", "ledger"] {
                            for entry in std::fs::read_dir(dir.path().join(sub)).unwrap() {
                                std::fs::remove_file(entry.unwrap().path()).unwrap();
                            }
                        }
                    },
                    |()| optel::__private::store_run(dir.path(), black_box(b), sealed).unwrap(),
                    criterion::BatchSize::PerIteration,
                );
            });
        }
    }
    group.finish();
    let mut group = c.benchmark_group("store_seal");
    for events in [1, 20] {
        let b = batch(events);
        group.bench_with_input(BenchmarkId::new("json", events), &b, |bench, b| {
            bench.iter(|| optel::__private::store_encode(black_box(b), false));
        });
        group.bench_with_input(BenchmarkId::new("json_sealed", events), &b, |bench, b| {
            bench.iter(|| optel::__private::store_encode(black_box(b), true));
        });
    }
    group.finish();
    let dir = tempfile::tempdir().unwrap();
    optel::__private::store_key(dir.path(), "bench").unwrap();
    c.bench_function("store_key/read", |b| {
        b.iter(|| optel::__private::store_key(black_box(dir.path()), "bench").unwrap());
    });
}

fn consent_check(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path().join("home/user/src/project/crate");
    std::fs::create_dir_all(&cwd).unwrap();
    let config = dir.path().join("config");
    std::fs::create_dir_all(config.join("optel")).unwrap();
    let user = config.join("optel/bench.toml");
    std::fs::write(&user, "telemetry = \"on\"\n").unwrap();
    let mut watch = optel::__private::ConsentWatch::new("bench", &cwd, &config);
    assert!(watch.changed(), "the first look");
    let mut group = c.benchmark_group("consent_check");
    group.bench_function("unchanged", |b| b.iter(|| assert!(!watch.changed())));
    let mut n = 0u64;
    group.bench_function("changed", |b| {
        b.iter_batched(
            || {
                n += 1;
                // A size different from the last one: a change even within the file system's
                // timestamp granularity.
                let pad = "#".repeat(usize::try_from(n % 1000).unwrap() + 1);
                std::fs::write(&user, format!("telemetry = \"on\"\n{pad}\n")).unwrap();
            },
            |()| assert!(watch.changed()),
            criterion::BatchSize::PerIteration,
        );
    });
    group.finish();
}

criterion_group!(benches, store_run, consent_check);
criterion_main!(benches);
