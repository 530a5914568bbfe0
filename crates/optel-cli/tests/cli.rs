//! End-to-end tests of the `optel` binary: real processes, real sockets on 127.0.0.1, a real
//! SQLite file (and the real PostgreSQL for `kill -9` on that backend).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers: failing loudly is the point

mod support;

use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::{PgSchema, Server, agent, batch_json, create_project, optel, post, run, stats_json};

const ADMIN: &str = "cli-test-admin";

/// Starts `optel serve` on a free port over the data directory `dir`, without rate limits.
fn serve(dir: &str) -> Server {
    serve_store(&["--data-dir", dir])
}

/// Starts `optel serve` on a free port over the store `store` (`--data-dir DIR` or
/// `--database URL`), without rate limits.
fn serve_store(store: &[&str]) -> Server {
    let mut args = store.to_vec();
    args.extend([
        "--admin-token",
        ADMIN,
        "--rate-per-addr",
        "0",
        "--rate-per-key",
        "0",
    ]);
    Server::start(&args, &[])
}

#[test]
fn kill_9_during_load_loses_no_acknowledged_event_and_stores_none_twice() {
    let dir = tempfile::tempdir().unwrap();
    kill_9_during_load(&["--data-dir", dir.path().to_str().unwrap()]);
}

/// The same on PostgreSQL, whose collector runs two group commits at once.
#[test]
fn kill_9_during_load_on_postgres() {
    let pg = PgSchema::new("kill9");
    kill_9_during_load(&["--database", &pg.url]);
}

/// `kill -9` of a collector over `store` while 4 clients send, then a restart: every
/// acknowledged batch is stored, and nothing twice.
fn kill_9_during_load(store: &[&str]) {
    let mut create = vec!["projects", "create", "acme"];
    create.extend(store);
    let key = optel(&create, &[])
        .lines()
        .last()
        .unwrap()
        .trim()
        .to_owned();
    let mut server = serve_store(store);
    let url = server.url.clone();

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
    server.kill(); // SIGKILL
    for w in workers {
        w.join().unwrap();
    }
    let sent = sent.lock().unwrap().clone();
    let acked = sent.iter().filter(|s| s.2).count();
    assert!(acked >= 80);
    eprintln!(
        "{acked} of {} batches acknowledged before kill -9",
        sent.len()
    );

    let mut server = serve_store(store);
    let url = &server.url;
    let agent = agent();
    // Every acknowledged batch is stored: re-sending it stores nothing new.
    for &(t, seq, was_acked) in &sent {
        let v = post(&agent, url, &key, &batch_json(t, seq, EVENTS)).expect("re-send failed");
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
    server.kill();
}

#[test]
fn projects_keys_purge_and_forget_commands() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let key = create_project(dir.path(), "acme");
    assert!(key.starts_with("optel_ik_"));
    let r = run(&["projects", "create", "acme", "--data-dir", d], &[]);
    assert!(
        !r.ok() && r.stderr.contains("already exists"),
        "{}",
        r.stderr
    );
    let out = optel(&["keys", "create", "acme", "--data-dir", d], &[]);
    let key2 = out.lines().last().unwrap().trim().to_owned();
    assert_ne!(key, key2);
    let out = optel(
        &[
            "keys",
            "create",
            "acme",
            "--browser",
            "--origin",
            "https://app.example",
            "--data-dir",
            d,
        ],
        &[],
    );
    assert!(out.contains("browser key for https://app.example"), "{out}");
    assert!(
        out.lines().last().unwrap().starts_with("optel_bk_"),
        "{out}"
    );
    let r = run(
        &[
            "keys",
            "create",
            "acme",
            "--browser",
            "--origin",
            "app.example/x",
            "--data-dir",
            d,
        ],
        &[],
    );
    assert!(
        !r.ok() && r.stderr.contains("must start with https://"),
        "{}",
        r.stderr
    );

    let config = dir.path().join("optel.toml");
    std::fs::write(
        &config,
        "rate_per_addr = 0\nk_anonymity = 3\nretention = \"off\"\n",
    )
    .unwrap();
    optel(&["projects", "public", "acme", "on", "--data-dir", d], &[]);
    let out = optel(&["projects", "list", "--data-dir", d], &[]);
    assert!(out.contains("acme") && out.contains("public"), "{out}");
    // The differential-privacy mode: validated settings, shown by `list`, off again.
    let out = optel(
        &[
            "projects",
            "dp",
            "acme",
            "epsilon=0.5,daily-budget=4",
            "--data-dir",
            d,
        ],
        &[],
    );
    assert!(
        out.contains("epsilon 0.5") && out.contains("daily budget 4"),
        "{out}"
    );
    let out = optel(&["projects", "list", "--data-dir", d], &[]);
    assert!(out.contains("dp epsilon=0.5,daily-budget=4"), "{out}");
    let r = run(
        &["projects", "dp", "acme", "epsilon=50", "--data-dir", d],
        &[],
    );
    assert!(
        !r.ok() && r.stderr.contains("epsilon 50 is out of range"),
        "{}",
        r.stderr
    );
    optel(&["projects", "dp", "acme", "off", "--data-dir", d], &[]);
    let out = optel(&["projects", "list", "--data-dir", d], &[]);
    assert!(!out.contains("dp epsilon"), "{out}");

    let mut server = serve(d);
    let agent = agent();
    assert!(post(&agent, &server.url, &key2, &batch_json(1, 1, 5)).is_some());
    server.kill();

    let stats = stats_json("acme", &["--data-dir", d], &[]);
    assert_eq!(stats["events"], 5);

    let out = optel(&["keys", "revoke", &key2, "--data-dir", d], &[]);
    assert!(out.contains("revoked"));
    let r = run(&["keys", "revoke", &key2, "--data-dir", d], &[]);
    assert!(
        !r.ok() && r.stderr.contains("no active ingest key"),
        "{}",
        r.stderr
    );

    let out = optel(&["forget", &format!("{:032x}", 1), "--data-dir", d], &[]);
    assert!(out.contains("deleted 5 events"), "{out}");
    let out = optel(&["purge", "--older-than", "400d", "--data-dir", d], &[]);
    assert!(out.contains("deleted 0 events"), "{out}");
    optel(&["projects", "delete", "acme", "--data-dir", d], &[]);
    let r = run(&["projects", "delete", "acme", "--data-dir", d], &[]);
    assert!(!r.ok() && r.stderr.contains("no project"), "{}", r.stderr);
    let missing = config.with_extension("missing");
    let r = run(&["serve", "--config", missing.to_str().unwrap()], &[]);
    assert!(
        !r.ok() && r.stderr.contains("cannot read config file"),
        "{}",
        r.stderr
    );
}
