//! A long-running process (here a daemon recording through library mode) notices
//! `telemetry disable` run in another process, without a restart: within the consent check
//! interval it sends nothing more, records nothing more and writes nothing more. Real processes
//! and a real socket: the daemon is this test binary run again as a child.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

#[path = "support/capture.rs"]
mod capture;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use capture::Capture;

/// Set in the child: the test's root directory.
const CHILD_ROOT: &str = "OPTEL_TEST_DAEMON_ROOT";

fn builder(root: &Path) -> optel::TelemetryBuilder {
    optel::Telemetry::builder("daemon", "1.0.0")
        .data_dir(root.join("data"))
        .config_dir(root.join("config"))
}

/// Polls `done` every 10 ms until it holds or `limit` passes.
fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The daemon, run as a child process by `telemetry_disable_stops_a_running_daemon`: records
/// through a library until told to stop, marking when it sees that consent was withdrawn.
#[test]
#[ignore = "the child process of telemetry_disable_stops_a_running_daemon"]
fn daemon_child() {
    let Ok(root) = std::env::var(CHILD_ROOT) else {
        return;
    };
    let root = PathBuf::from(root);
    let endpoint = fs::read_to_string(root.join("endpoint")).unwrap();
    let guard = builder(&root)
        .endpoint(endpoint)
        // Shortened for the test (default 30 s, at most 60 s).
        .consent_check_interval(Duration::from_millis(100))
        .init();
    assert!(guard.is_enabled(), "{}", guard.status());
    static LIB: optel::Library = optel::library("daemonlib", "1.0.0");
    let mut withdrawn = false;
    while !root.join("stop").exists() {
        if !withdrawn && !LIB.is_enabled() {
            withdrawn = true;
            fs::write(root.join("withdrawn"), "").unwrap();
        }
        LIB.method(if withdrawn {
            "after_disable"
        } else {
            "before_disable"
        });
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(guard);
}

#[test]
fn telemetry_disable_stops_a_running_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let capture = Capture::start();
    fs::write(root.join("endpoint"), &capture.url).unwrap();
    let telemetry = |command| {
        let mut out = Vec::new();
        optel::cli::TelemetryArgs { command }
            .execute(&builder(root), &|_: &str| None, &mut out)
            .unwrap();
    };
    telemetry(optel::cli::TelemetryCommand::Enable);
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["daemon_child", "--exact", "--ignored", "--nocapture"])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", root)
        .env(CHILD_ROOT, root)
        .current_dir(root)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    // While consent is on, the running daemon sends what it records, without exiting.
    wait_for(
        "the daemon's first delivery",
        Duration::from_secs(60),
        || !capture.event_names().is_empty(),
    );
    telemetry(optel::cli::TelemetryCommand::Disable);
    let disabled = Instant::now();
    wait_for(
        "the daemon noticing `telemetry disable`",
        Duration::from_secs(60),
        || root.join("withdrawn").exists(),
    );
    eprintln!("noticed after {:?}", disabled.elapsed());
    let sent_when_noticed = capture.bodies().len();
    fs::write(root.join("stop"), "").unwrap();
    let exited = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if exited.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("the daemon did not exit");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(status.success(), "the daemon failed: {status}");
    // Nothing more was sent, not even at its exit, and nothing recorded after is anywhere.
    assert_eq!(capture.bodies().len(), sent_when_noticed);
    assert!(capture.event_names().iter().all(|n| n == "before_disable"));
    assert_eq!(optel::queued_events(&root.join("data")), 0);
    let ledger = root.join("data/ledger");
    for entry in fs::read_dir(&ledger).unwrap().flatten() {
        let text = fs::read_to_string(entry.path()).unwrap();
        assert!(!text.contains("after_disable"), "written after disable");
    }
}
