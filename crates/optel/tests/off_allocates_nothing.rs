//! With telemetry off (before init, and after init with consent off) recording allocates
//! nothing: the budget for recording an event with telemetry off is "≤ 2 ns, no allocation",
//! so that a tool pays nothing measurable for telemetry its user turned off (the time is in
//! BENCHMARKS.md; this proves the allocation part). Own file: it
//! installs a counting global allocator, and must initialise the global recorder itself.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

use std::alloc::System;

use optel::{Consent, Value};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

static LIB: optel::Library = optel::library("mylib", "2.1.0");

/// Every recording entry point of the SDK, 1,000 times each; returns the allocations made.
fn allocations_while_recording() -> usize {
    let region = Region::new(GLOBAL);
    for _ in 0..1_000 {
        let h = optel::global();
        h.feature("export");
        h.method("Client::get");
        h.event("custom");
        h.event_with(
            "custom",
            [("count", Value::Int(3)), ("ok", Value::Bool(true))],
        );
        h.feature_with("export", [("format", Value::Enum("csv"))]);
        let mut build = optel::track_command_execution("build");
        build.attr("jobs", 4_i64);
        {
            // Phases, nested, and a failed one (schema version 2).
            let resolve = build.phase("resolve");
            drop(build.phase("fetch"));
            drop(resolve);
            build.phase("compile").fail();
        }
        build.set_error_code("E_NO_MANIFEST");
        drop(build);
        h.measure("files", 12.0);
        optel::track_command_execution("check").fail("E_NO_MANIFEST");
        drop(h.command("test"));
        LIB.method("Client::get");
        LIB.feature("pool");
        LIB.event_with("retry", [("attempt", Value::Int(2))]);
    }
    region.change().allocations
}

/// A catalog: with consent off it is never built (the builder only keeps the function).
fn catalog() -> optel::wire::Catalog {
    optel::CatalogBuilder::new()
        .command("build", "Builds.")
        .phase("resolve", "Reads.")
        .build()
}

#[test]
fn recording_allocates_nothing_before_init_and_with_consent_off() {
    assert!(!optel::global().is_enabled());
    assert_eq!(allocations_while_recording(), 0, "before init");

    let dir = tempfile::tempdir().unwrap();
    let guard = optel::Telemetry::builder("offalloc", "1.0.0")
        .data_dir(dir.path().join("data"))
        .config_dir(dir.path().join("config"))
        .default_consent(Consent::Off)
        .catalog(catalog)
        .init();
    assert!(!guard.is_enabled(), "{}", guard.status());
    assert!(!optel::global().is_enabled());
    assert_eq!(allocations_while_recording(), 0, "after init, consent off");

    // The counter counts: the same calls with a real allocation in between are seen.
    let region = Region::new(GLOBAL);
    let v = std::hint::black_box(vec![1_u8; 64]);
    drop(v);
    assert!(region.change().allocations >= 1);
}
