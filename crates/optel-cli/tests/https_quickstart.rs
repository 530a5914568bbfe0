//! The README's quick start over HTTPS: the example tool `acme`, built with the SDK's default
//! features (HTTPS included), delivers to a real `optel serve --tls-cert --tls-key` that uses
//! the self-signed test certificate of `optel-collector/tests/fixtures` (see its README), trusted through
//! `ACME_TELEMETRY_CA_FILE`; `acme telemetry forget` reaches it the same way.
//!
//! Regression: the SDK's default features had no TLS, so every send to an `https://` endpoint
//! failed with "TLS required" and was retried forever while the queue grew.
//!
//! Own file, and the minimum of `support/mod.rs` copied here, so that it stays independent of
//! the other process tests.

#![cfg(feature = "tls")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const OPTEL: &str = env!("CARGO_BIN_EXE_optel");

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../optel-collector/tests/fixtures")
        .join(name)
}

/// `optel ARGS...` without the caller's `OPTEL_*` variables; asserts success; returns stdout.
fn optel(args: &[&str]) -> String {
    let mut cmd = Command::new(OPTEL);
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(|n| n.starts_with("OPTEL_")) {
            cmd.env_remove(name);
        }
    }
    let out = cmd.args(args).output().unwrap();
    assert!(
        out.status.success(),
        "optel {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A running `optel serve`, killed when dropped.
struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve_https(data_dir: &Path) -> Server {
    let mut child = Command::new(OPTEL)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .arg("--tls-cert")
        .arg(fixture("tls-test.crt"))
        .arg("--tls-key")
        .arg(fixture("tls-test.key"))
        .env("OPTEL_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        // Reads to the end, so the collector never blocks on a full pipe.
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("optel collector listening on ") {
                let _ = tx.send(
                    rest.split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_owned(),
                );
            }
        }
    });
    let url = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("optel serve did not announce its URL");
    Server { child, url }
}

/// Runs `acme ARGS...` as a new install whose home is `home` (a clean environment).
fn acme(home: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    let bin = optel_test_support::locate_example_binary("acme").expect("the acme example binary");
    let out = Command::new(bin)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .envs(env.iter().copied())
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "acme {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn default_features_deliver_to_an_https_collector() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("collector");
    let out = optel(&[
        "projects",
        "create",
        "acme",
        "--data-dir",
        store.to_str().unwrap(),
    ]);
    let key = out.lines().last().unwrap().trim().to_owned();
    let server = serve_https(&store);
    assert!(
        server.url.starts_with("https://127.0.0.1:"),
        "{}",
        server.url
    );

    let home = dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let ca = fixture("tls-test.crt");
    let env = [
        ("ACME_TELEMETRY", "on"),
        ("ACME_TELEMETRY_ENDPOINT", server.url.as_str()),
        ("ACME_TELEMETRY_KEY", key.as_str()),
        ("ACME_TELEMETRY_CA_FILE", ca.to_str().unwrap()),
        // Long enough for a TLS handshake on a loaded machine: every event is sent before exit.
        ("ACME_TELEMETRY_EXIT_TIMEOUT_MS", "10000"),
    ];
    let project = dir.path().join("project");
    let project = project.to_str().unwrap();
    acme(&home, &env, &["init", project]);
    acme(&home, &env, &["check", project]);

    let data = home.join(".local/share/optel/acme");
    assert_eq!(
        optel::queue_status(&data).unwrap().pending_events,
        0,
        "every event was delivered over HTTPS"
    );
    let stats: serde_json::Value = serde_json::from_str(&optel(&[
        "stats",
        "--format",
        "json",
        "--project",
        "acme",
        "--data-dir",
        store.to_str().unwrap(),
    ]))
    .unwrap();
    assert_eq!(stats["events"].as_u64(), Some(2), "{stats}");

    // `telemetry forget` reaches the same collector with the same CA setting.
    let forget = acme(&home, &env, &["telemetry", "forget"]);
    let said = String::from_utf8_lossy(&forget.stdout);
    assert!(said.contains("the collector deleted 2 events"), "{said}");

    // Without the CA setting the self-signed certificate is not trusted: nothing is sent, the
    // events stay queued for a later run, and the tool still exits at once.
    let other_home = dir.path().join("other");
    std::fs::create_dir(&other_home).unwrap();
    acme(&other_home, &env[..3], &["check", project]);
    let queued = optel::queue_status(&other_home.join(".local/share/optel/acme")).unwrap();
    assert_eq!(queued.pending_events, 1);
}
