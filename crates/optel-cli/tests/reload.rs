//! Live reload of `optel serve --config` (SIGHUP and file change) and alert webhooks, against
//! real `optel serve` processes: a changed rate limit applies to a kept-alive connection, a bad
//! file keeps the previous configuration, and a new error code in a new version posts a signed
//! webhook to a receiver on a real socket.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use optel_collector::alerts::{self, AlertKind, AlertPayload};
use support::{Server, create_project, optel, run};

const ADMIN: &str = "reload-admin";

/// One HTTP/1.1 connection kept alive across requests: if the collector closed it, the next
/// request fails and the test with it.
struct KeepAlive {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl KeepAlive {
    fn open(url: &str) -> Self {
        let addr = url.trim_start_matches("http://");
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        Self {
            reader: BufReader::new(stream.try_clone().unwrap()),
            stream,
        }
    }

    /// POSTs a batch on this connection; returns the status.
    fn post(&mut self, key: &str, body: &[u8]) -> u16 {
        write!(
            self.stream,
            "POST /v1/events HTTP/1.1\r\nhost: collector\r\nauthorization: Bearer {key}\r\n\
             content-type: application/json\r\ncontent-length: {}\r\n\r\n",
            body.len()
        )
        .unwrap();
        self.stream.write_all(body).unwrap();
        let mut status_line = String::new();
        self.reader.read_line(&mut status_line).unwrap();
        assert!(
            status_line.starts_with("HTTP/1.1 "),
            "the kept-alive connection was closed: {status_line:?}"
        );
        let status: u16 = status_line[9..12].parse().unwrap();
        let mut len = 0;
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line).unwrap();
            if line == "\r\n" {
                break;
            }
            let lower = line.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                len = v.trim().parse().unwrap();
            }
            assert!(
                !lower.starts_with("connection: close"),
                "the collector closed the connection"
            );
        }
        let mut body = vec![0; len];
        self.reader.read_exact(&mut body).unwrap();
        status
    }

    /// The statuses of `n` requests in a row.
    fn burst(&mut self, key: &str, body: &[u8], n: usize) -> Vec<u16> {
        (0..n).map(|_| self.post(key, body)).collect()
    }
}

fn batch(version: &str, failures: &[(&str, usize)], n: usize) -> Vec<u8> {
    let now = optel_wire::Timestamp::now().to_string();
    let mut codes = failures
        .iter()
        .flat_map(|&(c, k)| std::iter::repeat_n(c, k));
    let events: Vec<_> = (0..n)
        .map(|i| {
            let code = codes.next();
            serde_json::json!({
                "event_id": format!("00000000-0000-4000-8000-{:04x}{i:08x}", version.len() * 7 + version.bytes().map(u64::from).sum::<u64>() as usize),
                "event_type": "command", "name": "build", "timestamp": now,
                "session_id": "7e2d4c1a-0b9f-4e8d-8c7b-6a5f4e3d2c1b",
                "duration_ms": 10, "success": code.is_none(), "error_code": code
            })
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "schema_version": 1, "service_name": "acme", "service_version": version,
        "pseudonym": "5f1d3c2b9a8e7d6c5f1d3c2b9a8e7d6c", "os": "linux", "arch": "x86_64",
        "events": events
    }))
    .unwrap()
}

/// The value of a counter at `/metrics`.
fn counter(url: &str, name: &str) -> u64 {
    let agent = support::agent();
    let text = agent
        .get(&format!("{url}/metrics"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Polls until `counter` exceeds `above` (a guard of one minute against a hang, not a figure).
fn wait_counter(url: &str, name: &str, above: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n = counter(url, name);
        if n > above {
            return n;
        }
        assert!(Instant::now() < deadline, "{name} stayed at {n}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sighup_applies_a_new_rate_limit_to_a_kept_alive_connection_and_a_bad_file_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let key = create_project(dir.path(), "acme");
    let config = dir.path().join("optel.toml");
    std::fs::write(&config, "rate_per_key = 1\nrate_per_addr = 0\n").unwrap();
    let server = Server::start(
        &[
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
            "--admin-token",
            ADMIN,
        ],
        &[],
    );
    let body = batch("1.0.0", &[], 1);
    let mut conn = KeepAlive::open(&server.url);
    // 1 request/s per key, a burst of 2: twenty in a row meet 429s.
    let statuses = conn.burst(&key, &body, 20);
    assert!(statuses.contains(&429), "{statuses:?}");

    // Unlimited, then SIGHUP: the same connection is never refused again.
    std::fs::write(&config, "rate_per_key = 0\nrate_per_addr = 0\n").unwrap();
    server.signal("HUP");
    let reloads = wait_counter(&server.url, "optel_config_reloads_total", 0);
    let statuses = conn.burst(&key, &body, 40);
    assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");

    // A file that does not parse: logged and counted, the previous configuration stays.
    std::fs::write(&config, "rate_per_key = \"lots\"\n").unwrap();
    server.signal("HUP");
    wait_counter(&server.url, "optel_config_reload_failures_total", 0);
    let statuses = conn.burst(&key, &body, 40);
    assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");

    // A change of the file alone (no signal) is picked up too: the limit is back.
    let reloads = counter(&server.url, "optel_config_reloads_total").max(reloads);
    std::fs::write(&config, "rate_per_key = 1\nrate_per_addr = 0\n").unwrap();
    wait_counter(&server.url, "optel_config_reloads_total", reloads);
    let statuses = conn.burst(&key, &body, 20);
    assert!(statuses.contains(&429), "{statuses:?}");
}

// `receiver(statuses)`: the collector tests' webhook receiver (std only).
include!("../../optel-collector/tests/collector/webhook_receiver.rs");

#[test]
fn a_new_error_code_in_a_new_version_posts_a_signed_webhook() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let key = create_project(dir.path(), "acme");
    let (url, received) = receiver(vec![204]);

    // Hooks are checked and managed from the command line; the secret is printed once.
    let bad = run(
        &[
            "alerts",
            "add",
            "--project",
            "acme",
            "--url",
            "ftp://x",
            "--data-dir",
            d,
        ],
        &[],
    );
    assert!(!bad.ok());
    assert!(
        bad.stderr.contains("use http:// or https://"),
        "{}",
        bad.stderr
    );
    let added = optel(
        &[
            "alerts",
            "add",
            "--project",
            "acme",
            "--url",
            &url,
            "--on",
            "new-error-code,failure-rate",
            "--data-dir",
            d,
        ],
        &[],
    );
    let secret = added.lines().last().unwrap().trim().to_owned();
    assert!(secret.starts_with(alerts::SECRET_PREFIX), "{added}");
    let listed = optel(&["alerts", "list", "--data-dir", d], &[]);
    assert!(listed.contains(&url), "{listed}");
    assert!(listed.contains("new-error-code,failure-rate"), "{listed}");
    assert!(
        !listed.contains(&secret),
        "the secret is shown once: {listed}"
    );
    let id = listed.split('\t').next().unwrap().trim().to_owned();

    // `alerts test` posts a signed test payload now.
    let tested = optel(&["alerts", "test", &id, "--data-dir", d], &[]);
    assert!(tested.contains("delivered: 204"), "{tested}");
    let (signature, body) = received.recv_timeout(Duration::from_secs(60)).unwrap();
    let now_s = optel_collector::now_ms() / 1000;
    assert!(alerts::verify(
        &secret,
        &signature,
        &body,
        now_s,
        alerts::SIGNATURE_TOLERANCE_S
    ));
    let p: AlertPayload = serde_json::from_slice(&body).unwrap();
    assert!(p.test);

    // The collector evaluates every second: 1.1.0 fails with E_NEW, never seen in 1.0.0.
    let config = dir.path().join("optel.toml");
    std::fs::write(&config, "alert_every = \"1s\"\n").unwrap();
    let server = Server::start(
        &["--data-dir", d, "--config", config.to_str().unwrap()],
        &[],
    );
    let mut conn = KeepAlive::open(&server.url);
    assert_eq!(conn.post(&key, &batch("1.0.0", &[("E_OLD", 2)], 10)), 200);
    assert_eq!(conn.post(&key, &batch("1.1.0", &[("E_NEW", 2)], 10)), 200);
    let (signature, body) = received.recv_timeout(Duration::from_secs(60)).unwrap();
    let now_s = optel_collector::now_ms() / 1000;
    assert!(
        alerts::verify(
            &secret,
            &signature,
            &body,
            now_s,
            alerts::SIGNATURE_TOLERANCE_S
        ),
        "{signature}"
    );
    assert!(!alerts::verify(
        "optel_whsec_other",
        &signature,
        &body,
        now_s,
        300
    ));
    let p: AlertPayload = serde_json::from_slice(&body).unwrap();
    assert_eq!(p.kind, AlertKind::NewErrorCode);
    assert_eq!(
        (p.version.as_str(), p.previous.as_deref()),
        ("1.1.0", Some("1.0.0"))
    );
    assert_eq!(p.error_code.as_deref(), Some("E_NEW"));
    assert!(!p.test);
    drop(server);

    let removed = optel(&["alerts", "remove", &id, "--data-dir", d], &[]);
    assert!(removed.contains("removed"), "{removed}");
    assert!(optel(&["alerts", "list", "--data-dir", d], &[]).contains("no alert hooks"));
}
