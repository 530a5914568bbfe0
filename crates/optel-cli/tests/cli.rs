//! End-to-end tests of the `optel` binary: real processes, real sockets on 127.0.0.1, a real
//! SQLite file.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers: failing loudly is the point

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const OPTEL: &str = env!("CARGO_BIN_EXE_optel");
const ADMIN: &str = "cli-test-admin";

fn optel(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(OPTEL).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Starts `optel serve` on a free port; returns the child and its base URL.
fn serve(dir: &str) -> (Child, String) {
    let mut child = Command::new(OPTEL)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            dir,
            "--admin-token",
            ADMIN,
            "--rate-per-addr",
            "0",
            "--rate-per-key",
            "0",
        ])
        .env("OPTEL_LOG", "warn")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let url = loop {
        let line = lines
            .next()
            .expect("collector exited before listening")
            .unwrap();
        if let Some(rest) = line.strip_prefix("optel collector listening on ") {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    // Keep draining stderr so the collector never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, url)
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

fn batch_json(thread: u32, seq: u32, n: u32) -> serde_json::Value {
    let now = optel_wire::Timestamp::now().to_string();
    let events: Vec<_> = (0..n)
        .map(|i| {
            serde_json::json!({
                "event_id": format!("{:08x}-{:04x}-4000-8000-{:012x}", thread, seq & 0xffff, (u64::from(seq) << 16) | u64::from(i)),
                "event_type": "command", "name": "build", "timestamp": now,
                "session_id": "7e2d4c1a-0b9f-4e8d-8c7b-6a5f4e3d2c1b",
                "duration_ms": 10, "success": true
            })
        })
        .collect();
    serde_json::json!({
        "schema_version": 1, "service_name": "acme", "service_version": "1.0.0",
        "pseudonym": format!("{:032x}", thread), "os": "linux", "arch": "x86_64", "events": events
    })
}

fn post(
    agent: &ureq::Agent,
    url: &str,
    key: &str,
    body: &serde_json::Value,
) -> Option<serde_json::Value> {
    let mut resp = agent
        .post(&format!("{url}/v1/events"))
        .header("Authorization", &format!("Bearer {key}"))
        .header("Content-Type", "application/json")
        .send(serde_json::to_vec(body).unwrap().as_slice())
        .ok()?;
    let mut text = String::new();
    resp.body_mut().as_reader().read_to_string(&mut text).ok()?;
    resp.status()
        .is_success()
        .then(|| serde_json::from_str(&text).ok())
        .flatten()
}

fn create_project(dir: &str, name: &str) -> String {
    let (ok, out, err) = optel(&["projects", "create", name, "--data-dir", dir]);
    assert!(ok, "{err}");
    out.lines().last().unwrap().trim().to_owned()
}

#[test]
fn kill_9_during_load_loses_no_acknowledged_event_and_stores_none_twice() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let key = create_project(d, "acme");
    let (mut child, url) = serve(d);

    const THREADS: u32 = 4;
    const EVENTS: u32 = 50;
    // (thread, seq, acknowledged) of every batch sent.
    let sent: Arc<Mutex<Vec<(u32, u32, bool)>>> = Arc::default();
    let deadline = Instant::now() + Duration::from_secs(30);
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (url, key, sent) = (url.clone(), key.clone(), sent.clone());
            std::thread::spawn(move || {
                let agent = agent();
                let mut failures = 0;
                for seq in 0.. {
                    if failures > 3 || Instant::now() > deadline {
                        break;
                    }
                    let acked = post(&agent, &url, &key, &batch_json(t, seq, EVENTS)).is_some();
                    sent.lock().unwrap().push((t, seq, acked));
                    if !acked {
                        failures += 1;
                    }
                }
            })
        })
        .collect();
    // Kill -9 once the load is well under way.
    let start = Instant::now();
    while sent.lock().unwrap().iter().filter(|s| s.2).count() < 80 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "load did not start"
        );
        std::thread::yield_now();
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    for w in workers {
        w.join().unwrap();
    }
    let sent = sent.lock().unwrap().clone();
    let acked = sent.iter().filter(|s| s.2).count();
    assert!(acked >= 80);

    let (mut child, url) = serve(d);
    let agent = agent();
    // Every acknowledged batch is stored: re-sending it stores nothing new.
    for &(t, seq, was_acked) in &sent {
        let v = post(&agent, &url, &key, &batch_json(t, seq, EVENTS)).expect("re-send failed");
        if was_acked {
            assert_eq!(
                v["duplicates"], EVENTS,
                "acknowledged batch {t}/{seq} was lost"
            );
        }
    }
    // And nothing is stored twice: the store holds exactly the distinct events sent.
    let mut resp = agent
        .get(&format!("{url}/v1/projects/acme/overview?since=1d"))
        .header("Authorization", &format!("Bearer {ADMIN}"))
        .call()
        .unwrap();
    let mut text = String::new();
    resp.body_mut()
        .as_reader()
        .read_to_string(&mut text)
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["events"], sent.len() as u64 * u64::from(EVENTS), "{v}");
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn projects_keys_purge_and_forget_commands() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let key = create_project(d, "acme");
    assert!(key.starts_with("optel_ik_"));
    let (ok, _, err) = optel(&["projects", "create", "acme", "--data-dir", d]);
    assert!(!ok && err.contains("already exists"), "{err}");
    let (ok, out, _) = optel(&["keys", "create", "acme", "--data-dir", d]);
    assert!(ok);
    let key2 = out.lines().last().unwrap().trim().to_owned();
    assert_ne!(key, key2);

    let config = dir.path().join("optel.toml");
    std::fs::write(
        &config,
        "rate_per_addr = 0\nk_anonymity = 3\nretention = \"off\"\n",
    )
    .unwrap();
    let (ok, _, _) = optel(&["projects", "public", "acme", "on", "--data-dir", d]);
    assert!(ok);
    let (ok, out, _) = optel(&["projects", "list", "--data-dir", d]);
    assert!(
        ok && out.contains("acme") && out.contains("public"),
        "{out}"
    );

    let (child, url) = serve(d);
    let agent = agent();
    assert!(post(&agent, &url, &key2, &batch_json(1, 1, 5)).is_some());
    let mut child = child;
    child.kill().unwrap();
    child.wait().unwrap();

    let (ok, out, err) = optel(&[
        "stats",
        "--project",
        "acme",
        "--data-dir",
        d,
        "--format",
        "json",
    ]);
    assert!(ok, "{err}");
    let stats: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(stats["events"], 5);

    let (ok, out, _) = optel(&["keys", "revoke", &key2, "--data-dir", d]);
    assert!(ok && out.contains("revoked"));
    let (ok, _, err) = optel(&["keys", "revoke", &key2, "--data-dir", d]);
    assert!(!ok && err.contains("no active ingest key"), "{err}");

    let (ok, out, _) = optel(&["forget", &format!("{:032x}", 1), "--data-dir", d]);
    assert!(ok && out.contains("deleted 5 events"), "{out}");
    let (ok, out, _) = optel(&["purge", "--older-than", "400d", "--data-dir", d]);
    assert!(ok && out.contains("deleted 0 events"), "{out}");
    let (ok, out, _) = optel(&["projects", "delete", "acme", "--data-dir", d]);
    assert!(ok, "{out}");
    let (ok, _, err) = optel(&["projects", "delete", "acme", "--data-dir", d]);
    assert!(!ok && err.contains("no project"), "{err}");
    let (ok, _, err) = optel(&[
        "serve",
        "--config",
        config.with_extension("missing").to_str().unwrap(),
    ]);
    assert!(!ok && err.contains("cannot read config file"), "{err}");
}
