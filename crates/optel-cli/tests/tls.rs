//! `optel serve --tls-cert --tls-key`: a real collector process serving HTTPS with the test-only
//! self-signed certificate in `optel-collector/tests/fixtures` (see its README), a client that trusts exactly
//! that certificate, and the failure modes an operator meets: plain HTTP on the HTTPS port,
//! silent or broken clients, missing, unreadable or mismatched files, and a renewed certificate
//! served after `SIGHUP`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use support::{Server, create_project, serve_command, stats_json};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../optel-collector/tests/fixtures")
        .join(name)
}

/// An HTTPS client that trusts only the test certificate (no webpki roots, no system store).
fn https_agent() -> ureq::Agent {
    agent_trusting("tls-test.crt")
}

/// An HTTPS client that trusts only the fixture certificate `cert`.
fn agent_trusting(cert: &str) -> ureq::Agent {
    let pem = std::fs::read(fixture(cert)).unwrap();
    let cert = ureq::tls::Certificate::from_pem(&pem).unwrap();
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .tls_config(
            ureq::tls::TlsConfig::builder()
                .root_certs(ureq::tls::RootCerts::new_with_certs(&[cert]))
                .build(),
        )
        .build()
        .into()
}

fn batch(first: u32, n: u32) -> Vec<u8> {
    let now = optel_wire::Timestamp::now().to_string();
    let events: Vec<_> = (first..first + n)
        .map(|i| {
            serde_json::json!({
                "event_id": format!("00000000-0000-4000-8000-{i:012}"),
                "event_type": "command", "name": "build", "timestamp": now,
                "session_id": "7e2d4c1a-0b9f-4e8d-8c7b-6a5f4e3d2c1b",
                "duration_ms": 10, "success": true
            })
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "schema_version": 1, "service_name": "acme", "service_version": "1.0.0",
        "pseudonym": "5f1d3c2b9a8e7d6c5f1d3c2b9a8e7d6c", "os": "linux", "arch": "x86_64",
        "events": events
    }))
    .unwrap()
}

/// POSTs a batch; returns the status and the JSON body.
fn post(agent: &ureq::Agent, url: &str, key: &str, body: &[u8]) -> (u16, serde_json::Value) {
    let mut resp = agent
        .post(&format!("{url}/v1/events"))
        .header("Authorization", &format!("Bearer {key}"))
        .header("Content-Type", "application/json")
        .send(body)
        .unwrap();
    let text = resp.body_mut().read_to_string().unwrap();
    (
        resp.status().as_u16(),
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
    )
}

fn stats_events(dir: &Path) -> u64 {
    let v = stats_json("acme", &["--data-dir", dir.to_str().unwrap()], &[]);
    v["events"].as_u64().unwrap()
}

#[test]
fn https_ingest_plain_http_refused_and_graceful_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let key = create_project(dir.path(), "acme");
    // The certificate comes from the config file, the key from the environment: both ways an
    // operator may set them.
    let config = dir.path().join("optel.toml");
    std::fs::write(
        &config,
        format!(
            "tls_cert = {:?}\nrate_per_key = 0\nrate_per_addr = 1\n",
            fixture("tls-test.crt").to_str().unwrap()
        ),
    )
    .unwrap();
    let key_file = fixture("tls-test.key");
    let mut server = Server::start(
        &[
            "--config",
            config.to_str().unwrap(),
            "--data-dir",
            dir.path().to_str().unwrap(),
        ],
        &[("OPTEL_TLS_KEY", key_file.as_os_str())],
    );
    assert!(
        server.url.starts_with("https://127.0.0.1:"),
        "{}",
        server.url
    );
    let addr = server.url.trim_start_matches("https://").to_owned();
    let https = https_agent();

    // A client that connects and never speaks holds one handshake slot, not the server.
    let silent = TcpStream::connect(&addr).unwrap();

    let (status, body) = post(&https, &server.url, &key, &batch(1, 5));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["accepted"], 5, "{body}");

    // Plain HTTP on the HTTPS port: a clean 400 that says what to do.
    let plain = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .new_agent();
    let (status, body) = post(&plain, &format!("http://{addr}"), &key, &batch(100, 1));
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "https_required", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("https://"),
        "{body}"
    );

    // A broken handshake (a TLS record header, then garbage) is dropped without harm.
    let mut broken = TcpStream::connect(&addr).unwrap();
    broken
        .write_all(&[0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5])
        .unwrap();
    broken
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut sink = Vec::new();
    let _ = broken.read_to_end(&mut sink);

    // Still serving, and the same events again are not counted twice.
    let (status, body) = post(&https, &server.url, &key, &batch(1, 5));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["duplicates"], 5, "{body}");
    drop(silent);

    // The client address reached the per-address limit (1 request/s, burst 2) over TLS.
    let statuses: Vec<u16> = (0..6)
        .map(|i| post(&https, &server.url, &key, &batch(200 + i, 1)).0)
        .collect();
    assert!(statuses.contains(&429), "{statuses:?}");

    // SIGTERM: in-flight work finishes, the writer drains, the process exits 0.
    server.stop();
    let accepted = 5 + statuses.iter().filter(|&&s| s == 200).count() as u64;
    assert_eq!(stats_events(dir.path()), accepted);
}

/// Whether a new HTTPS connection that trusts only `cert` gets an answer from `/healthz`.
fn trusted_by(cert: &str, url: &str) -> bool {
    // A new agent each time: a pooled connection would keep the certificate it began with.
    agent_trusting(cert)
        .get(&format!("{url}/healthz"))
        .call()
        .is_ok_and(|r| r.status() == 200)
}

/// A renewed certificate is served after `SIGHUP` (what certbot's deploy hook or
/// `systemctl reload` sends), without a restart and without losing the collector's state.
#[test]
fn renewed_certificate_is_served_after_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let key = create_project(dir.path(), "acme");
    let (cert_file, key_file) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::copy(fixture("tls-test.crt"), &cert_file).unwrap();
    std::fs::copy(fixture("tls-test.key"), &key_file).unwrap();
    let server = Server::start(
        &[
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--tls-cert",
            cert_file.to_str().unwrap(),
            "--tls-key",
            key_file.to_str().unwrap(),
        ],
        &[],
    );
    assert!(trusted_by("tls-test.crt", &server.url));
    assert!(!trusted_by("tls-renewed.crt", &server.url));
    let (status, body) = post(&https_agent(), &server.url, &key, &batch(1, 3));
    assert_eq!(status, 200, "{body}");

    // The renewal replaces both files in place, then signals.
    std::fs::copy(fixture("tls-renewed.crt"), &cert_file).unwrap();
    std::fs::copy(fixture("tls-renewed.key"), &key_file).unwrap();
    server.signal("HUP");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !trusted_by("tls-renewed.crt", &server.url) {
        assert!(
            std::time::Instant::now() < deadline,
            "the renewed certificate was not served within 30 s of SIGHUP"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!trusted_by("tls-test.crt", &server.url));
    let (status, body) = post(
        &agent_trusting("tls-renewed.crt"),
        &server.url,
        &key,
        &batch(1, 4),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["duplicates"], 3,
        "the same store, the same events: {body}"
    );
}

/// Runs `optel serve` that must fail before listening; returns its stderr.
fn serve_fails(args: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let out = serve_command(
        "127.0.0.1:0",
        &["--data-dir", dir.path().to_str().unwrap()],
        &[],
    )
    .args(args)
    .output()
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
    assert!(!err.contains("listening"), "{err}");
    err
}

#[test]
fn certificate_and_key_errors_say_what_to_do() {
    let cert = fixture("tls-test.crt");
    let key = fixture("tls-test.key");
    let other = fixture("tls-other.key");
    let missing = fixture("no-such.pem");
    let (cert, key, other, missing) = (
        cert.to_str().unwrap(),
        key.to_str().unwrap(),
        other.to_str().unwrap(),
        missing.to_str().unwrap(),
    );

    let err = serve_fails(&["--tls-cert", missing, "--tls-key", key]);
    assert!(
        err.contains("cannot read the TLS certificate file") && err.contains("--tls-cert"),
        "{err}"
    );
    let err = serve_fails(&["--tls-cert", cert, "--tls-key", missing]);
    assert!(
        err.contains("cannot read the TLS key file") && err.contains("--tls-key"),
        "{err}"
    );
    let err = serve_fails(&["--tls-cert", cert]);
    assert!(err.contains("no key") && err.contains("--tls-key"), "{err}");
    let err = serve_fails(&["--tls-key", key]);
    assert!(
        err.contains("no certificate") && err.contains("--tls-cert"),
        "{err}"
    );
    // The files swapped: no certificate in the key file, no key in the certificate file.
    let err = serve_fails(&["--tls-cert", key, "--tls-key", cert]);
    assert!(err.contains("holds no PEM certificate"), "{err}");
    let err = serve_fails(&["--tls-cert", cert, "--tls-key", cert]);
    assert!(
        err.contains("holds no PEM private key") && err.contains("PKCS#8"),
        "{err}"
    );
    let err = serve_fails(&["--tls-cert", cert, "--tls-key", other]);
    assert!(err.contains("does not match the certificate"), "{err}");
}

/// A client that opens the HTTPS port and never completes its handshake (nothing sent, or a
/// first byte of a handshake and no more) is closed at `--tls-handshake-timeout`, while a
/// real client is served meanwhile.
#[test]
fn a_stalled_tls_handshake_is_closed_at_its_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(
        &[
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--tls-cert",
            fixture("tls-test.crt").to_str().unwrap(),
            "--tls-key",
            fixture("tls-test.key").to_str().unwrap(),
            "--tls-handshake-timeout",
            "1s",
        ],
        &[],
    );
    let addr = server.url.strip_prefix("https://").unwrap().to_owned();
    let silent = TcpStream::connect(&addr).unwrap();
    let mut partial = TcpStream::connect(&addr).unwrap();
    partial.write_all(&[0x16, 0x03, 0x01]).unwrap();
    assert!(trusted_by("tls-test.crt", &server.url));
    let started = std::time::Instant::now();
    for mut tcp in [silent, partial] {
        tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut sink = Vec::new();
        let closed = tcp.read_to_end(&mut sink);
        assert!(
            closed.is_ok()
                || closed
                    .as_ref()
                    .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
            "not closed within 5 s: {closed:?}"
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    server.stop();
}
