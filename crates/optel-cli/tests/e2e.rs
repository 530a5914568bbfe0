//! The main job end to end, with real processes: `optel serve` on a free loopback port, the
//! instrumented example tool `acme` run as separate processes for several simulated installs
//! (each its own HOME), and `optel stats --format json` reading the result.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

mod support;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Server, acme_bin, create_project, optel};

/// Starts `optel serve` on `listen` over the data directory `data_dir`.
fn serve(data_dir: &Path, listen: &str) -> Server {
    Server::start_on(listen, &["--data-dir", data_dir.to_str().unwrap()], &[])
}

fn stats_json(data_dir: &Path, project: &str) -> Value {
    let source = ["--since", "1h", "--data-dir", data_dir.to_str().unwrap()];
    support::stats_json(project, &source, &[])
}

/// One simulated install: its own HOME (hence its own install secret and queue).
struct Install {
    home: tempfile::TempDir,
    work: tempfile::TempDir,
}

impl Install {
    fn new() -> Self {
        Self {
            home: tempfile::tempdir().unwrap(),
            work: tempfile::tempdir().unwrap(),
        }
    }

    fn dir(&self, name: &str) -> String {
        self.work.path().join(name).display().to_string()
    }

    /// Runs `acme args...` with telemetry pointed at `endpoint`; `extra` adds or overrides env.
    fn acme(&self, args: &[&str], endpoint: &str, key: &str, extra: &[(&str, &str)]) -> Output {
        // A new user on a developer machine, never a CI runner (see `tool_command`).
        support::acme(self.home.path(), endpoint, key)
            .args(args)
            .env("ACME_TELEMETRY_EXIT_TIMEOUT_MS", "5000")
            .envs(extra.iter().copied())
            .output()
            .unwrap()
    }

    fn queued(&self) -> usize {
        optel::queued_events(&support::acme_data_dir(self.home.path()))
    }
}

/// Counts of (command, failed) pairs, from `optel stats --format json`.
fn command_counts(stats: &Value) -> BTreeMap<String, (u64, u64)> {
    stats["commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_owned(),
                (
                    c["count"].as_u64().unwrap(),
                    c["failures"].as_u64().unwrap(),
                ),
            )
        })
        .collect()
}

#[test]
fn commands_of_several_installs_reach_stats() {
    let data = tempfile::tempdir().unwrap();
    let key = create_project(data.path(), "acme");
    assert!(key.starts_with("optel_ik_"), "{key}");
    let server = serve(data.path(), "127.0.0.1:0");
    let ep = server.url.as_str();

    let installs: Vec<Install> = (0..3).map(|_| Install::new()).collect();
    // (install, args, expected exit success)
    let plan: Vec<(usize, Vec<String>, bool)> = vec![
        (0, vec!["init".into(), installs[0].dir("app")], true),
        (0, vec!["check".into(), installs[0].dir("app")], true),
        (0, vec!["build".into(), installs[0].dir("app")], true),
        (0, vec!["build".into(), installs[0].dir("app")], true),
        (1, vec!["init".into(), installs[1].dir("app")], true),
        (1, vec!["build".into(), installs[1].dir("missing")], false),
        (1, vec!["test".into(), installs[1].dir("app")], true),
        (
            2,
            vec!["check".into(), installs[2].dir("nothing-here")],
            false,
        ),
        (2, vec!["init".into(), installs[2].dir("app")], true),
        (2, vec!["init".into(), installs[2].dir("app")], false),
        (2, vec!["build".into(), installs[2].dir("app")], true),
    ];
    let mut expected: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for (i, args, ok) in &plan {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = installs[*i].acme(&args, ep, &key, &[]);
        assert_eq!(
            out.status.success(),
            *ok,
            "acme {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let entry = expected.entry(args[0].to_owned()).or_default();
        entry.0 += 1;
        entry.1 += u64::from(!ok);
    }
    for install in &installs {
        assert_eq!(install.queued(), 0, "every event was delivered before exit");
    }

    let stats = stats_json(data.path(), "acme");
    assert_eq!(command_counts(&stats), expected);
    assert_eq!(stats["active_installs"], 3);
    // Each successful build also records its `files` measurement (acme's catalog).
    let measurements = plan
        .iter()
        .filter(|(_, args, ok)| *ok && args[0] == "build")
        .count();
    assert_eq!(stats["events"], (plan.len() + measurements) as u64);
    let codes: BTreeMap<(String, String), u64> = stats["error_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let command = e["command"].as_str().unwrap().to_owned();
            let code = e["error_code"].as_str().unwrap().to_owned();
            ((command, code), e["count"].as_u64().unwrap())
        })
        .collect();
    let pair = |c: &str, e: &str| (c.to_owned(), e.to_owned());
    assert_eq!(
        codes,
        BTreeMap::from([
            (pair("build", "E_NO_MANIFEST"), 1),
            (pair("check", "E_NO_MANIFEST"), 1),
            (pair("init", "E_ALREADY_INITIALIZED"), 1),
        ])
    );
    assert_eq!(stats["platforms"][0]["os"], std::env::consts::OS);
    assert_eq!(stats["versions"][0]["version"], env!("CARGO_PKG_VERSION"));

    // Nothing identifying reached the database: no path, user name or host name.
    let db = std::fs::read(data.path().join("optel.db")).unwrap();
    let db = String::from_utf8_lossy(&db);
    for install in &installs {
        let home = install.home.path().display().to_string();
        let work = install.work.path().display().to_string();
        assert!(
            !db.contains(&home) && !db.contains(&work),
            "a path reached the database"
        );
    }
}

#[test]
fn do_not_track_sends_nothing_and_writes_nothing() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let install = Install::new();
    let out = install.acme(
        &["init", &install.dir("app")],
        &endpoint,
        "optel_ik_x",
        &[("DO_NOT_TRACK", "1")],
    );
    assert!(out.status.success());
    let out = install.acme(
        &["build", &install.dir("nope")],
        &endpoint,
        "optel_ik_x",
        &[("DO_NOT_TRACK", "1")],
    );
    assert_eq!(out.status.code(), Some(1), "acme keeps its own exit code");
    // No connection was attempted: the listener has nothing to accept.
    assert!(
        listener.accept().is_err(),
        "a connection reached the endpoint"
    );
    // No file at all under HOME: no secret, no queue, no directory.
    let entries: Vec<_> = std::fs::read_dir(install.home.path()).unwrap().collect();
    assert!(
        entries.is_empty(),
        "files were created under HOME: {entries:?}"
    );

    // The same holds with the tool's own switch set to off.
    let out = install.acme(
        &["check", &install.dir("app")],
        &endpoint,
        "optel_ik_x",
        &[("ACME_TELEMETRY", "off")],
    );
    assert!(out.status.success());
    assert!(listener.accept().is_err());
    assert_eq!(std::fs::read_dir(install.home.path()).unwrap().count(), 0);
}

#[test]
fn dead_endpoint_keeps_events_queued_until_the_collector_is_up() {
    // Reserve a port, then free it: nothing listens there.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let data = tempfile::tempdir().unwrap();
    let key = create_project(data.path(), "acme");
    let install = Install::new();

    // With the default exit budget (no override), acme exits with its own code, and promptly:
    // the bound below only catches a hang, it is not a performance figure.
    let started = Instant::now();
    let ok = install.acme(
        &["init", &install.dir("app")],
        &endpoint,
        &key,
        &[("ACME_TELEMETRY_EXIT_TIMEOUT_MS", "40")],
    );
    let failed = install.acme(
        &["build", &install.dir("missing")],
        &endpoint,
        &key,
        &[("ACME_TELEMETRY_EXIT_TIMEOUT_MS", "40")],
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(ok.status.success());
    assert_eq!(failed.status.code(), Some(1));
    assert_eq!(install.queued(), 2, "both runs' events wait in the queue");

    // The collector comes up on that port; the next run delivers everything.
    let _server = serve(data.path(), &format!("127.0.0.1:{port}"));
    let out = install.acme(&["check", &install.dir("app")], &endpoint, &key, &[]);
    assert!(out.status.success());
    assert_eq!(install.queued(), 0);
    let stats = stats_json(data.path(), "acme");
    assert_eq!(
        command_counts(&stats),
        BTreeMap::from([
            ("build".to_owned(), (1, 1)),
            ("check".to_owned(), (1, 0)),
            ("init".to_owned(), (1, 0)),
        ])
    );
    assert_eq!(stats["active_installs"], 1);
}

#[test]
fn demo_runs_end_to_end() {
    let acme = acme_bin();
    let stdout = optel(
        &[
            "demo",
            "--no-serve",
            "--installs",
            "3",
            "--listen",
            "127.0.0.1:0",
            "--acme",
            acme.to_str().unwrap(),
        ],
        &[],
    );
    assert!(stdout.contains(" 3 active installs"), "{stdout}");
    for command in ["init", "check", "build", "test"] {
        assert!(
            stdout.lines().any(|l| l.starts_with(command)),
            "{command} missing: {stdout}"
        );
    }
    assert!(stdout.contains("E_NO_MANIFEST"), "{stdout}");
}

#[test]
fn telemetry_forget_deletes_one_install_at_the_collector() {
    let data = tempfile::tempdir().unwrap();
    // The operator named the project otherwise than the tool: the SDK's proofs name the tool.
    let key = create_project(data.path(), "acme-prod");
    let server = serve(data.path(), "127.0.0.1:0");
    let ep = server.url.as_str();
    let (a, b) = (Install::new(), Install::new());
    for install in [&a, &b] {
        assert!(
            install
                .acme(&["init", &install.dir("app")], ep, &key, &[])
                .status
                .success()
        );
        assert!(
            install
                .acme(&["build", &install.dir("app")], ep, &key, &[])
                .status
                .success()
        );
    }
    assert_eq!(stats_json(data.path(), "acme-prod")["active_installs"], 2);

    let out = a.acme(&["telemetry", "forget"], ep, &key, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // init, build and the build's `files` measurement.
    assert!(stdout.contains("deleted 3 events"), "{stdout}");

    // Only the other install's events remain.
    let stats = stats_json(data.path(), "acme-prod");
    assert_eq!(stats["active_installs"], 1);
    assert_eq!(stats["events"], 3);

    // Without an install secret there is nothing to prove and nothing is sent.
    let fresh = Install::new();
    let out = fresh.acme(&["telemetry", "forget"], ep, &key, &[]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("nothing to forget"));
    assert_eq!(stats_json(data.path(), "acme-prod")["events"], 3);
}
