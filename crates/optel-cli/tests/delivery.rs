//! SDK delivery end to end: the example tool `acme` as real processes against a real collector
//! and hostile endpoints on 127.0.0.1.
// Test code: a failed unwrap is a failed test with a clear location (clippy.toml allows it
// in #[test] functions only, not in their helpers).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use optel_test_support::{LocalCollector, refusing_addr};
use support::{acme_bin, acme_data_dir};

/// A project directory `acme check` accepts.
fn project(dir: &Path) -> PathBuf {
    let app = dir.join("app");
    let status = Command::new(acme_bin())
        .args(["init"])
        .arg(&app)
        .env("ACME_TELEMETRY", "off")
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    app
}

/// Runs `acme check APP` with telemetry on, a private HOME and `extra` environment.
fn run_acme(home: &Path, app: &Path, endpoint: &str, key: &str, extra: &[(&str, &str)]) {
    // A real user's home exists; the SDK never creates a missing one.
    std::fs::create_dir_all(home).unwrap();
    let status = support::acme(home, endpoint, key)
        .arg("check")
        .arg(app)
        .envs(extra.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn gzip_batches_reach_the_collector_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let app = project(dir.path());
    let collector = LocalCollector::start(&dir.path().join("collector"), "acme").unwrap();
    let home = dir.path().join("home");
    for _ in 0..4 {
        // A generous budget: this test checks delivery (gzip on by default), not latency.
        run_acme(
            &home,
            &app,
            &collector.endpoint(),
            collector.key(),
            &[("ACME_TELEMETRY_EXIT_TIMEOUT_MS", "5000")],
        );
    }
    assert_eq!(collector.events().unwrap(), 4);
    let status = optel::queue_status(&acme_data_dir(&home)).unwrap();
    assert_eq!(status.pending_events, 0);
    assert!(status.requests_today >= 1);
    assert_eq!(status.breaker_open_until, None);
}

/// A listener that accepts connections, counts them and closes them at once.
fn counting_closer() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            if stream.is_ok() {
                seen.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    (addr, count)
}

#[test]
fn dead_endpoint_opens_the_shared_breaker_so_later_runs_make_no_connection() {
    let dir = tempfile::tempdir().unwrap();
    let app = project(dir.path());
    let (addr, connections) = counting_closer();
    let home = dir.path().join("home");
    // The first run retries (100 ms backoff, x1.5) within its 3 s budget until the fifth
    // failure opens the breaker; every later run finds it open in the state file.
    for _ in 0..6 {
        run_acme(
            &home,
            &app,
            &format!("http://{addr}"),
            "optel_ik_test",
            &[("ACME_TELEMETRY_EXIT_TIMEOUT_MS", "3000")],
        );
    }
    assert_eq!(connections.load(Ordering::SeqCst), 5);
    let status = optel::queue_status(&acme_data_dir(&home)).unwrap();
    assert!(status.breaker_open_until.is_some());
    assert_eq!(status.requests_today, 5);
    // Nothing is lost: every run's event waits in the queue.
    assert_eq!(status.pending_events, 6);
}

#[test]
fn https_proxy_is_used_and_no_proxy_bypasses_it() {
    let dir = tempfile::tempdir().unwrap();
    let app = project(dir.path());
    let collector = LocalCollector::start(&dir.path().join("collector"), "acme").unwrap();
    let dead_proxy = format!("http://{}", refusing_addr().unwrap());
    let budget = ("ACME_TELEMETRY_EXIT_TIMEOUT_MS", "1000");

    // Through a dead proxy nothing arrives; the event stays queued.
    let proxied = dir.path().join("proxied");
    run_acme(
        &proxied,
        &app,
        &collector.endpoint(),
        collector.key(),
        &[("HTTPS_PROXY", &dead_proxy), budget],
    );
    assert_eq!(collector.events().unwrap(), 0);
    assert_eq!(
        optel::queue_status(&acme_data_dir(&proxied))
            .unwrap()
            .pending_events,
        1
    );

    // NO_PROXY naming the collector's host bypasses the proxy.
    let bypass = dir.path().join("bypass");
    run_acme(
        &bypass,
        &app,
        &collector.endpoint(),
        collector.key(),
        &[
            ("HTTPS_PROXY", &dead_proxy),
            ("NO_PROXY", "127.0.0.1"),
            budget,
        ],
    );
    assert_eq!(collector.events().unwrap(), 1);
}

fn ledger_line(i: usize, events: usize) -> String {
    let mut b = optel_wire::Batch::new("acme", "1.0.0", "abc", "linux", "x86_64");
    for j in 0..events {
        b.events.push(optel_wire::Event::new(
            format!("00000000-0000-4000-8000-{:06}{j:06}", i),
            optel_wire::EventType::Command,
            "build",
            optel_wire::Timestamp::now(),
            "00000000-0000-4000-8000-000000000000",
        ));
    }
    serde_json::to_string(&b).unwrap()
}

#[test]
fn upload_sends_ledger_files_once_and_skips_bad_lines() {
    let dir = tempfile::tempdir().unwrap();
    let collector = LocalCollector::start(&dir.path().join("collector"), "acme").unwrap();
    let ledger = dir.path().join("ledger");
    std::fs::create_dir(&ledger).unwrap();
    // 400 + 300 events: more than one request of 500.
    let a: Vec<String> = (0..4).map(|i| ledger_line(i, 100)).collect();
    std::fs::write(ledger.join("2026-11-20.jsonl"), a.join("\n") + "\n").unwrap();
    let b = [
        ledger_line(10, 150),
        "{not json".to_owned(),
        String::new(),
        ledger_line(11, 150),
    ];
    std::fs::write(ledger.join("2026-11-21.jsonl"), b.join("\n")).unwrap();
    std::fs::write(ledger.join("notes.txt"), "not a ledger").unwrap();

    let upload = |endpoint: &str, key: &str| {
        let ledger = ledger.to_str().unwrap();
        let args = [
            "upload",
            ledger,
            "--since",
            "7d",
            "--endpoint",
            endpoint,
            "--key",
            key,
        ];
        support::run(&args, &[])
    };
    let first = upload(&collector.endpoint(), collector.key());
    assert!(first.ok(), "{}", first.stderr);
    assert!(
        first
            .stdout
            .starts_with("uploaded 700 events from 2 ledger files")
            && first.stdout.contains("skipped 1 unreadable lines"),
        "{}",
        first.stdout
    );
    assert_eq!(collector.events().unwrap(), 700);

    // Uploading again stores nothing twice.
    let again = upload(&collector.endpoint(), collector.key());
    assert!(again.ok(), "{}", again.stderr);
    assert_eq!(collector.events().unwrap(), 700);

    // An endpoint that stays down is a clear error after the retries, not a silent success.
    let down = format!("http://{}", refusing_addr().unwrap());
    let failed = upload(&down, "optel_ik_wrong");
    assert!(!failed.ok(), "{}", failed.stdout);
    assert!(failed.stderr.contains("attempts"), "{}", failed.stderr);
}
