//! The queue under real processes: many writers at once, and writers killed with SIGKILL at
//! random points of their run, including in the middle of writing their segment.
//!
//! The test binary re-runs itself as the writer (`OPTEL_TEST_WRITER_DIR` set): each writer is
//! one "run" of a tool that records [`EVENTS_PER_RUN`] events and shuts down, which appends one
//! segment. Afterwards every segment must parse, each run's events must be all there or (for
//! a killed run) all absent, and every run that exited normally must be there.
// Test code: a failed unwrap is a failed test with a clear location (clippy.toml allows it
// in #[test] functions only, not in their helpers).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use optel_wire::Batch;

const EVENTS_PER_RUN: usize = 2_000;
const WRITERS: usize = 24;

/// The writer's body, when this binary runs as a writer.
fn writer(dir: &Path) {
    let telemetry = optel::Telemetry::builder("acme", "1.0.0")
        .data_dir(dir)
        .default_consent(optel::Consent::On)
        .init();
    assert!(telemetry.is_enabled());
    for _ in 0..EVENTS_PER_RUN {
        optel::global().feature("queue.stress");
    }
    telemetry.shutdown();
}

fn spawn_writer(dir: &Path) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "writer_entry_point",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("OPTEL_TEST_WRITER_DIR", dir)
        .env_remove("ACME_TELEMETRY")
        .env_remove("DO_NOT_TRACK")
        .env_remove("CI")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Runs the writer when the parent test asks for it; a plain test run has nothing to check.
#[test]
fn writer_entry_point() {
    if let Some(dir) = std::env::var_os("OPTEL_TEST_WRITER_DIR") {
        writer(Path::new(&dir));
    }
}

/// Sessions found in the queue and their event counts; panics on any segment that does not
/// parse (a torn write).
fn sessions_in_queue(queue: &Path) -> HashMap<String, usize> {
    let mut sessions = HashMap::new();
    for entry in std::fs::read_dir(queue).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if name.starts_with('.') || !name.ends_with(".json") {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        let batch: Batch = serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("segment {name} is corrupt: {e}"));
        for event in batch.events {
            *sessions.entry(event.session_id).or_insert(0) += 1;
        }
    }
    sessions
}

#[test]
fn concurrent_writers_killed_at_random_points_leave_no_torn_segment() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // All writers start together; a third are killed after a delay spread over the span of a
    // run (start-up, recording, serialising, writing), the rest exit normally.
    let mut children: Vec<(Child, Option<Duration>)> = (0..WRITERS)
        .map(|i| {
            let kill_after =
                (i % 3 == 0).then(|| Duration::from_micros((i as u64 * 1_777) % 40_000));
            (spawn_writer(&data), kill_after)
        })
        .collect();
    let start = Instant::now();
    let mut normal_exits = 0;
    let mut killed = 0;
    for (child, kill_after) in &mut children {
        if let Some(after) = kill_after {
            while start.elapsed() < *after {
                std::hint::spin_loop();
            }
            if child.kill().is_ok() {
                killed += 1;
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    for (child, kill_after) in &mut children {
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                if kill_after.is_none() {
                    assert!(status.success(), "writer failed: {status}");
                    normal_exits += 1;
                }
                break;
            }
            assert!(Instant::now() < deadline, "writer did not finish in 60 s");
            std::thread::yield_now();
        }
    }
    assert!(killed > 0);

    let sessions = sessions_in_queue(&data.join("queue"));
    // A run is in the queue whole or not at all.
    for (session, n) in &sessions {
        assert_eq!(*n, EVENTS_PER_RUN, "session {session} is partial");
    }
    // Every run that exited normally is there (and killed runs that had finished writing may
    // be too): no loss beyond the killed processes' unflushed events.
    assert!(
        sessions.len() >= normal_exits,
        "{} runs queued, {normal_exits} exited normally",
        sessions.len()
    );
    eprintln!(
        "{killed} killed, {normal_exits} exited normally, {} runs queued",
        sessions.len()
    );
    assert!(sessions.len() <= WRITERS);
    let status = optel::queue_status(&data).unwrap();
    assert_eq!(
        status.pending_events,
        (sessions.len() * EVENTS_PER_RUN) as u64
    );
    assert_eq!(status.dropped_events_total, 0);
}
