#!/bin/sh
# Builds the fuzz targets as cargo-fuzz would (`cargo fuzz build`), for machines without
# cargo-fuzz: nightly Rust, libFuzzer's coverage instrumentation, AddressSanitizer.
# Usage: ./build.sh [TARGET...]   (default: every target)
set -eu
cd "$(dirname "$0")"
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Zsanitizer=address \
-Cdebug-assertions -Coverflow-checks"
[ "$#" -gt 0 ] || set -- wire_batch ingest_routes
bins=""
for t in "$@"; do bins="$bins --bin $t"; done
# shellcheck disable=SC2086
cargo +nightly build --locked --release --target x86_64-unknown-linux-gnu $bins
