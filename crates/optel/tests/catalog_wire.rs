//! The event catalog at the wire, against a capture server on 127.0.0.1: undeclared events,
//! attributes, values, phases and measurements never reach the collector; declared ones arrive
//! as declared (integers as bucket labels, nested phases with valid parents, measurements with
//! their value); the catalog goes with the batch until the collector acknowledges its hash, the
//! hash always. Own file: each run initialises the global recorder, in a child process with a
//! cleared environment.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

use std::path::Path;
use std::time::Duration;

use optel::wire::catalog::Unit;
use optel::{CatalogBuilder, Consent, Value};

mod support;

/// Set in the child process that records; its value is the endpoint.
const CHILD: &str = "OPTEL_CATALOG_WIRE_ENDPOINT";
/// The data and config directories' parent, shared by the child runs.
const DIR: &str = "OPTEL_CATALOG_WIRE_DIR";

fn catalog() -> optel::wire::Catalog {
    CatalogBuilder::new()
        .command("build", "Builds a project.")
        .enum_attribute("profile", "Debug or release.", &["debug", "release"])
        .int_attribute("jobs", "Parallel jobs.", &[2, 8])
        .text_attribute("target", "The target name.")
        .phase("resolve", "Reads the manifest.")
        .phase("fetch", "Downloads what is missing.")
        .phase("compile", "Writes the output.")
        .feature("strict", "Strict checks.")
        .measurement("files", "Files built.", Unit::Count)
        .build()
}

/// Runs the recording body in a child process; returns its stderr.
fn run_child(endpoint: &str, dir: &Path) -> String {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "undeclared_data_never_reaches_the_collector",
            "--nocapture",
        ])
        .env_clear()
        .env(CHILD, endpoint)
        .env(DIR, dir)
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{stdout}\n{stderr}"
    );
    stderr
}

#[test]
fn undeclared_data_never_reaches_the_collector() {
    if let Some(endpoint) = std::env::var_os(CHILD) {
        record(
            endpoint.to_str().unwrap(),
            Path::new(&std::env::var_os(DIR).unwrap()),
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (url, requests) =
        support::capture(|_| (200, r#"{"accepted":5,"duplicates":0,"catalog_known":true}"#));
    let next_body = || {
        let r = requests.recv_timeout(Duration::from_secs(30)).unwrap();
        String::from_utf8(r.body).unwrap()
    };
    let stderr = run_child(&url, dir.path());
    let body = next_body();
    let batch: serde_json::Value = serde_json::from_str(&body).unwrap();
    // What the SDK sends is a valid schema version 2 batch, catalog and hash included (the
    // collector's own check).
    let typed: optel::wire::Batch = serde_json::from_str(&body).unwrap();
    assert_eq!(typed.validate(), Ok(()), "{body}");

    for secret in [
        "typo",
        "strikt",
        "lines",
        "deploy",
        "link",
        "fast",
        "jane@example.com",
        "secret_note",
    ] {
        assert!(!body.contains(secret), "{secret:?} was sent: {body}");
    }
    assert_eq!(batch["schema_version"], 2);
    let hash = catalog().hash();
    assert_eq!(batch["catalog_hash"], hash.as_str());
    assert_eq!(
        serde_json::from_value::<optel::wire::Catalog>(batch["catalog"].clone()).unwrap(),
        catalog()
    );
    let events = batch["events"].as_array().unwrap();
    let names: Vec<&str> = events.iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["build", "build", "strict", "files"], "{body}");
    let build = &events[0];
    assert_eq!(build["metadata"]["profile"], "debug");
    assert_eq!(
        build["metadata"]["jobs"], "2..8",
        "integers go as bucket labels"
    );
    assert_eq!(build["metadata"]["target"], "<email>", "text is redacted");
    let phases = build["phases"].as_array().unwrap();
    let phase_names: Vec<&str> = phases.iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(phase_names, ["resolve", "fetch", "compile"]);
    assert_eq!(phases[1]["parent"], 0, "fetch is nested in resolve");
    assert_eq!(phases[2]["parent"], serde_json::Value::Null);
    assert_eq!(phases[2]["success"], false);
    assert_eq!(events[1]["metadata"], serde_json::Value::Null, "{body}");
    assert_eq!(events[3]["event_type"], "measurement");
    assert_eq!(events[3]["value"], 3.0);
    // Undeclared whole events count as dropped.
    assert_eq!(batch["dropped_events"], 4, "{body}");

    // Debug builds warn once per dropped name, on stderr.
    if cfg!(debug_assertions) {
        let warnings = stderr
            .lines()
            .filter(|l| l.contains("dropped attribute command:build:typo"))
            .count();
        assert_eq!(warnings, 1, "{stderr}");
        assert!(stderr.contains("dropped event command:deploy"), "{stderr}");
    }

    // The collector acknowledged the catalog: the next run sends its hash only.
    run_child(&url, dir.path());
    let body = next_body();
    let batch: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(batch["catalog_hash"], hash.as_str());
    assert!(batch.get("catalog").is_none(), "{body}");
}

/// One run of a tool that declares `catalog()` and records some undeclared data.
fn record(endpoint: &str, dir: &Path) {
    let guard = optel::Telemetry::builder("cattool", "1.0.0")
        .data_dir(dir.join("data"))
        .config_dir(dir.join("config"))
        .default_consent(Consent::On)
        .endpoint(endpoint)
        .gzip(false)
        .catalog(catalog)
        .exit_timeout(Duration::from_secs(10))
        .init();
    assert!(guard.is_enabled(), "{}", guard.status());
    for profile in ["debug", "fast"] {
        let mut build = optel::track_command_execution("build");
        build.attr("profile", profile);
        build.attr("typo", true);
        if profile == "debug" {
            build.attr("jobs", 5);
            build.attr("target", "jane@example.com".to_owned());
            let resolve = build.phase("resolve");
            drop(build.phase("fetch"));
            drop(resolve);
            drop(build.phase("link"));
            build.phase("compile").fail();
        }
    }
    drop(optel::track_command_execution("deploy"));
    optel::global().feature("strict");
    optel::global().feature("strikt");
    optel::global().measure("files", 3.0);
    optel::global().measure("lines", 120.0);
    optel::global().event_with("secret_note", [("text", Value::from("hello".to_owned()))]);
    guard.shutdown();
}
