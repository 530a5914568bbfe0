//! Process tests of the collector's hardening, each pinning an attack or a failure found in
//! review: idle connections past the open-file limit, a slow header, a half-open request held
//! across SIGTERM, and a project deleted while others send.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers: failing loudly is the point

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::{OPTEL, PgSchema, Server, agent, batch_json, create_project, optel, post};

/// Flags that switch the rate limits off (the tests send fast from one address).
const NO_RATE_LIMITS: [&str; 4] = ["--rate-per-addr", "0", "--rate-per-key", "0"];

/// `optel serve --listen 127.0.0.1:0 ARGS...` in a shell that first lowers the open-file limit
/// to `nofile`, as on a host with the common default of 1,024.
fn serve_with_nofile(nofile: u32, args: &[&str]) -> Server {
    let cmd = support::serve_command("127.0.0.1:0", args, &[]);
    let program = cmd.get_program().to_owned();
    assert_eq!(program, OPTEL);
    let mut shell = std::process::Command::new("sh");
    shell
        .arg("-c")
        .arg(format!("ulimit -n {nofile} && exec \"$0\" \"$@\""))
        .arg(program)
        .args(cmd.get_args());
    for (name, value) in cmd.get_envs() {
        match value {
            Some(v) => shell.env(name, v),
            None => shell.env_remove(name),
        };
    }
    Server::spawn(shell)
}

fn addr_of(server: &Server) -> SocketAddr {
    server.url.strip_prefix("http://").unwrap().parse().unwrap()
}

/// `GET path` on a new connection: the status, or `None` without an answer within `patience`.
fn get_status(addr: SocketAddr, path: &str, patience: Duration) -> Option<u16> {
    let mut tcp = TcpStream::connect_timeout(&addr, patience).ok()?;
    tcp.set_read_timeout(Some(patience)).unwrap();
    tcp.write_all(
        format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes(),
    )
    .ok()?;
    let mut answer = [0u8; 12];
    tcp.read_exact(&mut answer).ok()?;
    std::str::from_utf8(&answer[9..12]).ok()?.parse().ok()
}

/// Posts `body` to `/v1/events`: the status, 0 when no answer came.
fn post_status(agent: &ureq::Agent, url: &str, key: &str, body: &serde_json::Value) -> u16 {
    agent
        .post(&format!("{url}/v1/events"))
        .header("Authorization", &format!("Bearer {key}"))
        .header("Content-Type", "application/json")
        .send(serde_json::to_vec(body).unwrap().as_slice())
        .map_or(0, |r| r.status().as_u16())
}

/// Regression: with the common open-file limit of 1,024, 1,100 idle connections (no key
/// needed) made the collector stop answering `/healthz` and ingest, for as long as they stayed.
#[test]
fn idle_connections_past_the_open_file_limit_leave_health_and_ingest_answering() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let key = create_project(dir.path(), "acme");
    let mut args = vec!["--data-dir", data];
    args.extend(NO_RATE_LIMITS);
    let mut server = serve_with_nofile(1024, &args);
    let addr = addr_of(&server);
    let idle: Vec<TcpStream> = (0..1_100)
        .filter_map(|_| TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok())
        .collect();
    assert!(
        idle.len() >= 1_024,
        "only {} connections opened",
        idle.len()
    );
    std::thread::sleep(Duration::from_millis(300));
    for path in ["/healthz", "/readyz", "/healthz"] {
        let started = Instant::now();
        let status = get_status(addr, path, Duration::from_secs(1));
        assert_eq!(status, Some(200), "{path} after {:?}", started.elapsed());
        assert!(started.elapsed() < Duration::from_secs(1));
    }
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(2)))
        .build()
        .into();
    assert_eq!(
        post_status(&agent, &server.url, &key, &batch_json(1, 1, 5)),
        200
    );
    drop(idle);
    server.stop();
}

/// Regression: axum's `serve` set no timer, so a connection that sent nothing (or half a
/// header) stayed open forever.
#[test]
fn a_silent_or_slow_client_is_closed_at_the_header_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let mut server = Server::start(&["--data-dir", data, "--header-timeout", "1s"], &[]);
    let addr = addr_of(&server);
    let silent = TcpStream::connect(addr).unwrap();
    let mut slow = TcpStream::connect(addr).unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n")
        .unwrap();
    // A kept-alive connection that went quiet after one answer.
    let mut kept = TcpStream::connect(addr).unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .unwrap();
    let started = Instant::now();
    for (what, mut tcp) in [("silent", silent), ("slow", slow), ("kept-alive", kept)] {
        tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut sink = Vec::new();
        let closed = tcp.read_to_end(&mut sink);
        let took = started.elapsed();
        assert!(
            closed.is_ok()
                || closed
                    .as_ref()
                    .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
            "{what}: not closed within 5 s: {closed:?}"
        );
        assert!(
            took < Duration::from_secs(3),
            "{what}: closed after {took:?}"
        );
    }
    assert!(started.elapsed() >= Duration::from_millis(900));
    server.stop();
}

/// Regression: SIGTERM never finished while one client held a half-open request: the port
/// closed, so the service was down, but the process ran until the client left. Now in-flight
/// requests get `--shutdown-timeout`, then the writer drains, and every acknowledged event
/// is stored.
#[test]
fn sigterm_with_a_half_open_request_exits_within_the_shutdown_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let key = create_project(dir.path(), "acme");
    let mut args = vec!["--data-dir", data, "--shutdown-timeout", "2s"];
    args.extend(NO_RATE_LIMITS);
    let mut server = Server::start(&args, &[]);
    let addr = addr_of(&server);
    let url = server.url.clone();

    // The half-open request: its head and 10 of its 1,000 bytes, then nothing.
    let mut held = TcpStream::connect(addr).unwrap();
    write!(
        held,
        "POST /v1/events HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {key}\r\n\
         content-type: application/json\r\ncontent-length: 1000\r\n\r\n{{\"schema_"
    )
    .unwrap();
    let _idle = TcpStream::connect(addr).unwrap();

    const EVENTS: u32 = 20;
    let sent: Arc<Mutex<Vec<(u32, u32, bool)>>> = Arc::default();
    let workers: Vec<_> = (0..3)
        .map(|t| {
            let (url, key, sent) = (url.clone(), key.clone(), sent.clone());
            std::thread::spawn(move || {
                let agent = agent();
                let mut failures = 0;
                for seq in 0.. {
                    let acked = post_status(&agent, &url, &key, &batch_json(t, seq, EVENTS)) == 200;
                    sent.lock().unwrap().push((t, seq, acked));
                    if !acked {
                        failures += 1;
                        if failures > 3 {
                            break;
                        }
                    }
                }
            })
        })
        .collect();
    while sent.lock().unwrap().iter().filter(|s| s.2).count() < 30 {
        std::thread::sleep(Duration::from_millis(10));
    }
    let started = Instant::now();
    server.signal("TERM");
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "optel serve still running 10 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = started.elapsed();
    assert!(status.success(), "{status:?}");
    // 2 s for the held request, then the writer's drain.
    assert!(took < Duration::from_secs(4), "exit took {took:?}");
    for w in workers {
        w.join().unwrap();
    }
    drop(held);

    let sent = sent.lock().unwrap().clone();
    let server = Server::start(&args, &[]);
    let agent = agent();
    for &(t, seq, acked) in sent.iter().filter(|s| s.2) {
        let v = post(&agent, &server.url, &key, &batch_json(t, seq, EVENTS)).unwrap();
        assert!(acked);
        assert_eq!(
            v["duplicates"], EVENTS,
            "acknowledged batch {t}/{seq} was lost"
        );
    }
    eprintln!(
        "{} batches acknowledged, exit {took:?} after SIGTERM",
        sent.iter().filter(|s| s.2).count()
    );
}

/// Regression: deleting a project while the collector ran broke writes for every project for
/// about 10 s: the deleted project's rows failed their foreign key and rolled back the group
/// commit they shared with live projects (503).
#[test]
fn deleting_a_project_under_load_fails_no_other_project_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    deleting_a_project_under_load(&["--data-dir", dir.path().to_str().unwrap()]);
}

/// The same on PostgreSQL, whose collector runs two group commits at once.
#[test]
fn deleting_a_project_under_load_fails_no_other_project_on_postgres() {
    let pg = PgSchema::new("delete");
    deleting_a_project_under_load(&["--database", &pg.url]);
}

fn deleting_a_project_under_load(store: &[&str]) {
    let create = |name: &str| {
        let mut args = vec!["projects", "create", name];
        args.extend(store);
        optel(&args, &[]).lines().last().unwrap().trim().to_owned()
    };
    let live = create("live");
    let doomed = create("doomed");
    let mut args = store.to_vec();
    args.extend(NO_RATE_LIMITS);
    let mut server = Server::start(&args, &[]);
    let url = server.url.clone();
    let until = Instant::now() + Duration::from_secs(5);
    // (key is the doomed one, status) of every request.
    let seen: Arc<Mutex<Vec<(bool, u16)>>> = Arc::default();
    let workers: Vec<_> = (0..6)
        .map(|t| {
            let doomed_sender = t < 2;
            let key = if doomed_sender {
                doomed.clone()
            } else {
                live.clone()
            };
            let (url, seen) = (url.clone(), seen.clone());
            std::thread::spawn(move || {
                let agent = agent();
                for seq in 0.. {
                    if Instant::now() > until {
                        break;
                    }
                    let status = post_status(&agent, &url, &key, &batch_json(t, seq, 10));
                    seen.lock().unwrap().push((doomed_sender, status));
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    let mut delete = vec!["projects", "delete", "doomed"];
    delete.extend(store);
    optel(&delete, &[]);
    let deleted_at = Instant::now();
    for w in workers {
        w.join().unwrap();
    }
    assert!(
        deleted_at < until,
        "the deletion took too long to test anything"
    );
    let seen = seen.lock().unwrap().clone();
    let live_seen: Vec<u16> = seen.iter().filter(|s| !s.0).map(|s| s.1).collect();
    let failed: Vec<u16> = live_seen.iter().copied().filter(|s| *s != 200).collect();
    assert!(
        live_seen.len() > 50,
        "only {} live requests",
        live_seen.len()
    );
    assert!(
        failed.is_empty(),
        "{} of {} requests of the live project failed: {failed:?}",
        failed.len(),
        live_seen.len()
    );
    // The deleted project's key is refused (401) once its cache entry is gone.
    let last = seen.iter().rev().find(|s| s.0).unwrap();
    assert_eq!(last.1, 401, "the deleted project's key is still accepted");
    server.stop();
}

/// The new settings are flags and config keys: `--durability` (what a 2xx survives), the
/// timeouts and the connection cap; bad values are refused with the accepted ones named.
#[test]
fn durability_timeouts_and_cap_are_flags_and_config_keys() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let key = create_project(dir.path(), "acme");
    let config = dir.path().join("optel.toml");
    std::fs::write(
        &config,
        "durability = \"fsync\"\nheader_timeout = \"5s\"\nbody_timeout = \"5s\"\n\
         tls_handshake_timeout = \"5s\"\nbody_memory_mib = 64\nshutdown_timeout = \"3s\"\nmax_connections = 100\n",
    )
    .unwrap();
    let mut server = Server::start(
        &["--data-dir", data, "--config", config.to_str().unwrap()],
        &[],
    );
    assert_eq!(
        post_status(&agent(), &server.url, &key, &batch_json(1, 1, 3)),
        200
    );
    server.stop();
    let mut server = Server::start(&["--data-dir", data, "--durability", "crash-safe"], &[]);
    assert_eq!(
        post_status(&agent(), &server.url, &key, &batch_json(1, 2, 3)),
        200
    );
    server.stop();
    let bad = support::run(
        &["serve", "--data-dir", data, "--durability", "sometimes"],
        &[],
    );
    assert!(!bad.ok());
    assert!(
        bad.stderr.contains("fsync") && bad.stderr.contains("crash-safe"),
        "{}",
        bad.stderr
    );
    std::fs::write(&config, "header_timeout = \"soon\"\n").unwrap();
    let bad = support::run(
        &[
            "serve",
            "--data-dir",
            data,
            "--config",
            config.to_str().unwrap(),
        ],
        &[],
    );
    assert!(!bad.ok());
    assert!(bad.stderr.contains("header_timeout"), "{}", bad.stderr);
}
