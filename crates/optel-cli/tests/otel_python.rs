//! The official OpenTelemetry Python SDK (`opentelemetry-sdk` and
//! `opentelemetry-exporter-otlp-proto-http`, pinned in `tests/python/requirements.txt`) against
//! a real `optel serve`: traces, metrics (cumulative, the SDK's default, and delta) and logs,
//! over OTLP/HTTP and, with the `otlp-grpc` feature, over OTLP/gRPC
//! (`opentelemetry-exporter-otlp-proto-grpc` to `optel serve --otlp-grpc-listen`),
//! configured only by the standard `OTEL_*` variables, with every sensitive attribute of the
//! issue attached; exact counts read back through the query API (`optel stats --server`), and
//! the bytes of the database files (`optel.db`, `-wal`, `-shm`) searched for every sensitive
//! string, while the collector runs and after it stopped.
//!
//! The SDK lives in a virtualenv under the build directory (`target/otel-py`, or
//! `OPTEL_OTEL_PY`); `.ci/run` creates it. Without one, the test creates it with
//! `python3 -m venv` and pip, and skips with a message when that is impossible, unless
//! `OPTEL_REQUIRE_OTEL_PY=1` (set by `.ci/run`) makes that a failure. The Python SDK exports
//! protobuf only (it has no `http/json` exporter).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use support::{
    command_counts, create_project, run_otel_exporter, serve_with_admin, stats_json, stored_in_db,
};

const ADMIN: &str = "otel-python-test-admin";

/// Strings that must never reach the database (see `tests/python/otel_export.py`).
const NEVER_STORED: &[&str] = &[
    "alice.smith@example.com",
    "s3cr3t-tok-4471",
    "eyJhbGciOiJIUzI1NiJ9",
    "Bearer ",
    "/home/alice",
    "SELECT * FROM users",
    "alice-laptop",
    "hunter2-secret",
    "48213",
    "login failed",
    "GET /users",
    "machine-77aa",
];

fn venv_dir() -> PathBuf {
    std::env::var_os("OPTEL_OTEL_PY").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/otel-py"),
        PathBuf::from,
    )
}

fn python_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python")
}

/// The venv's Python with the pinned SDK importable, creating the venv if needed; `Err` with
/// the reason when it cannot be had.
fn python() -> Result<PathBuf, String> {
    let venv = venv_dir();
    let py = venv.join("bin/python");
    let ready = |py: &Path| {
        Command::new(py)
            .args([
                "-c",
                "import opentelemetry.sdk, opentelemetry.exporter.otlp.proto.http, \
                 opentelemetry.exporter.otlp.proto.grpc",
            ])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if ready(&py) {
        return Ok(py);
    }
    let made = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .output()
        .map_err(|e| format!("python3 is not available: {e}"))?;
    if !made.status.success() {
        return Err(format!(
            "python3 -m venv failed: {}",
            String::from_utf8_lossy(&made.stderr)
        ));
    }
    let pip = Command::new(venv.join("bin/pip"))
        .args(["install", "-q", "-r"])
        .arg(python_dir().join("requirements.txt"))
        .output()
        .map_err(|e| format!("pip is not available: {e}"))?;
    if !pip.status.success() || !ready(&py) {
        return Err(format!(
            "pip install failed: {}",
            String::from_utf8_lossy(&pip.stderr)
        ));
    }
    Ok(py)
}

#[test]
fn python_sdk_exports_are_counted_exactly_and_nothing_sensitive_is_stored() {
    python_sdk_exports(false);
}

/// The same exports over OTLP/gRPC, to the collector's gRPC port.
#[cfg(feature = "otlp-grpc")]
#[test]
fn python_sdk_grpc_exports_are_counted_exactly_and_nothing_sensitive_is_stored() {
    python_sdk_exports(true);
}

fn python_sdk_exports(grpc: bool) {
    let py = match python() {
        Ok(py) => py,
        Err(why) if std::env::var_os("OPTEL_REQUIRE_OTEL_PY").is_none() => {
            eprintln!(
                "SKIPPED: the OpenTelemetry Python SDK is not available ({why}); \
                 install it with `python3 -m venv target/otel-py && target/otel-py/bin/pip \
                 install -r crates/optel-cli/tests/python/requirements.txt`"
            );
            return;
        }
        Err(why) => panic!("OPTEL_REQUIRE_OTEL_PY is set and the Python SDK is missing: {why}"),
    };
    let dir = tempfile::tempdir().unwrap();
    let cases = [("cumulative", "cumulative"), ("delta", "delta")];
    let keys: Vec<String> = cases
        .iter()
        .map(|(project, _)| create_project(dir.path(), project))
        .collect();
    let mut server = if grpc {
        let args: [&std::ffi::OsStr; 6] = [
            "--admin-token".as_ref(),
            ADMIN.as_ref(),
            "--data-dir".as_ref(),
            dir.path().as_os_str(),
            "--otlp-grpc-listen".as_ref(),
            "127.0.0.1:0".as_ref(),
        ];
        support::Server::start(&args, &[])
    } else {
        serve_with_admin(dir.path(), ADMIN)
    };
    let endpoint = if grpc {
        server
            .grpc_url
            .clone()
            .expect("no OTLP/gRPC port announced")
    } else {
        server.url.clone()
    };
    for ((project, temporality), key) in cases.iter().zip(&keys) {
        let mut script = Command::new(&py);
        script.arg(python_dir().join("otel_export.py"));
        if grpc {
            script.arg("grpc");
        }
        run_otel_exporter(
            script,
            &endpoint,
            key,
            temporality,
            "pyapp",
            "service.version=2.1.0,os.type=Linux,host.arch=AMD64,host.name=alice-laptop,\
             service.instance.id=machine-77aa",
        );
        let s: Value = stats_json(
            project,
            &["--server", &server.url, "--since", "1h"],
            &[("OPTEL_ADMIN_TOKEN", ADMIN)],
        );
        let case = format!("{project}: {s:#}");
        let command = |name: &str| command_counts(&s, name);
        // Two runs of `pyapp` (root INTERNAL spans; the children and the SERVER span are not
        // commands), one failed; `sync`: 999 + 2 successes and 1 failure through the counter
        // (past 1,000 in both temporalities); one `cache` feature (the plain log line is not
        // an event).
        assert_eq!(command("pyapp"), (Some(2), Some(1)), "{case}");
        assert_eq!(command("sync"), (Some(1002), Some(1)), "{case}");
        assert_eq!(s["commands"].as_array().unwrap().len(), 2, "{case}");
        assert_eq!(s["invocations"], 1004, "{case}");
        assert_eq!(s["failures"], 2, "{case}");
        assert_eq!(s["events"], 1005, "{case}");
        assert_eq!(s["features"][0]["name"], "cache", "{case}");
        assert_eq!(s["features"][0]["count"], 1, "{case}");
        let codes: Vec<&str> = s["error_codes"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|r| r["error_code"].as_str())
            .collect();
        assert!(
            codes.contains(&"E_CONFIG") && codes.contains(&"E_NET"),
            "{case}"
        );
        // `os.type=Linux`, `host.arch=AMD64`: normalised, not refused.
        assert_eq!(s["platforms"][0]["os"], "linux", "{case}");
        assert_eq!(s["platforms"][0]["arch"], "x86_64", "{case}");
        assert_eq!(s["versions"][0]["version"], "2.1.0", "{case}");
    }
    // The WAL holds the latest commits while the collector runs: search it now, then again
    // after SIGTERM (checkpointed into the main file).
    let running = stored_in_db(dir.path(), NEVER_STORED);
    server.stop();
    let stopped = stored_in_db(dir.path(), NEVER_STORED);
    assert!(
        running.is_empty() && stopped.is_empty(),
        "{running:?} {stopped:?}"
    );
    // Positive control: the search does find what is stored.
    let db = std::fs::read(dir.path().join("optel.db")).unwrap();
    assert!(
        db.windows(6).any(|w| w == b"E_CONF"),
        "the search finds stored values"
    );
}
