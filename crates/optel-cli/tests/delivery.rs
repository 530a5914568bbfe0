//! SDK delivery end to end: the example tool `acme` as real processes against a real collector
//! and hostile endpoints on 127.0.0.1.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use optel_cli::loopback::{self, LocalCollector};

const PROXY_VARS: &[&str] = &[
    "ALL_PROXY",
    "all_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "NO_PROXY",
    "no_proxy",
];

fn acme() -> PathBuf {
    optel_cli::locate_example_binary("acme").unwrap()
}

/// A project directory `acme check` accepts.
fn project(dir: &Path) -> PathBuf {
    let app = dir.join("app");
    let status = Command::new(acme())
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
    let mut cmd = Command::new(acme());
    cmd.arg("check")
        .arg(app)
        .env("HOME", home)
        .env_remove("XDG_DATA_HOME")
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("DO_NOT_TRACK")
        .env_remove("CI")
        .env("ACME_TELEMETRY", "on")
        .env("ACME_TELEMETRY_ENDPOINT", endpoint)
        .env("ACME_TELEMETRY_KEY", key)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for var in PROXY_VARS {
        cmd.env_remove(var);
    }
    for (k, v) in extra {
        cmd.env(k, v);
    }
    assert!(cmd.status().unwrap().success());
}

fn data_dir(home: &Path) -> PathBuf {
    home.join(".local/share/optel/acme")
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
    let status = optel::queue_status(&data_dir(&home)).unwrap();
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
    let status = optel::queue_status(&data_dir(&home)).unwrap();
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
    let dead_proxy = format!("http://{}", loopback::refusing_addr().unwrap());
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
        optel::queue_status(&data_dir(&proxied))
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
