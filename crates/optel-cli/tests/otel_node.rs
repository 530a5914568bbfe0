//! The official OpenTelemetry JavaScript SDK (`@opentelemetry/sdk-*` 3.1 with the OTLP/HTTP
//! **JSON** exporters 0.301, pinned in `tests/node/package.json`) against a real `optel serve`:
//! traces, metrics (cumulative, the SDK's default, and delta) and logs, with the host, OS and
//! process resource detectors on (`host.name`, `process.pid`, `process.command_args`, ...);
//! exact counts through the query API, and no sensitive string in the database files.
//!
//! The packages live under the build directory (`target/otel-node`, `npm ci` from the pinned
//! lock file; `.ci/run` installs them). Without Node.js or npm the test skips with a message,
//! unless `OPTEL_REQUIRE_OTEL_NODE=1` (set by `.ci/run`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use support::{
    command_counts, create_project, run_otel_exporter, serve_with_admin, stats_json, stored_in_db,
};

const ADMIN: &str = "otel-node-test-admin";

/// Strings that must never reach the database (see `tests/node/otel_export.mjs`).
const NEVER_STORED: &[&str] = &[
    "bob.jones@example.org",
    "n0de-tok-8812",
    "n0de-bearer-5531",
    "/home/bob",
    "GET /users",
    "login failed",
    "cache warm",
];

/// `target/otel-node` with the pinned packages installed, installing them if needed.
fn node_dir() -> Result<PathBuf, String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/otel-node");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    for file in ["package.json", "package-lock.json", "otel_export.mjs"] {
        std::fs::copy(src.join(file), dir.join(file)).map_err(|e| e.to_string())?;
    }
    if !dir.join("node_modules/@opentelemetry/sdk-trace").is_dir() {
        let ci = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .output()
            .map_err(|e| format!("npm is not available: {e}"))?;
        if !ci.status.success() {
            return Err(format!(
                "npm ci failed: {}",
                String::from_utf8_lossy(&ci.stderr)
            ));
        }
    }
    Ok(dir)
}

#[test]
fn node_sdk_json_exports_are_counted_exactly_and_nothing_sensitive_is_stored() {
    let node = match node_dir() {
        Ok(dir) if Command::new("node").arg("--version").output().is_ok() => dir,
        Ok(_) | Err(_) if std::env::var_os("OPTEL_REQUIRE_OTEL_NODE").is_none() => {
            eprintln!(
                "SKIPPED: Node.js or the pinned OpenTelemetry JS packages are not available; \
                 install them with `npm ci` in target/otel-node (see .ci/run)"
            );
            return;
        }
        other => panic!("OPTEL_REQUIRE_OTEL_NODE is set: {other:?}"),
    };
    let dir = tempfile::tempdir().unwrap();
    let mut server = serve_with_admin(dir.path(), ADMIN);
    for temporality in ["cumulative", "delta"] {
        let key = create_project(dir.path(), temporality);
        let mut script = Command::new("node");
        script.arg("otel_export.mjs").current_dir(&node);
        run_otel_exporter(
            script,
            &server.url,
            &key,
            temporality,
            "nodeapp",
            "service.version=3.0.0",
        );
        let s: Value = stats_json(
            temporality,
            &["--server", &server.url, "--since", "1h"],
            &[("OPTEL_ADMIN_TOKEN", ADMIN)],
        );
        let case = format!("{temporality}: {s:#}");
        assert_eq!(command_counts(&s, "nodeapp"), (Some(2), Some(1)), "{case}");
        assert_eq!(command_counts(&s, "sync"), (Some(1002), Some(1)), "{case}");
        assert_eq!(s["commands"].as_array().unwrap().len(), 2, "{case}");
        assert_eq!(s["events"], 1005, "{case}");
        assert_eq!(s["features"][0]["name"], "cache", "{case}");
        assert_eq!(s["versions"][0]["version"], "3.0.0", "{case}");
        // Node's `os.type`/`host.arch` (`linux`/`amd64` here) in the native spelling.
        assert_eq!(s["platforms"][0]["os"], std::env::consts::OS, "{case}");
        assert_eq!(s["platforms"][0]["arch"], std::env::consts::ARCH, "{case}");
    }
    let running = stored_in_db(dir.path(), NEVER_STORED);
    server.stop();
    let stopped = stored_in_db(dir.path(), NEVER_STORED);
    assert!(
        running.is_empty() && stopped.is_empty(),
        "{running:?} {stopped:?}"
    );
}
