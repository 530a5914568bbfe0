//! Helpers of the process-level tests (`mod support;`): run the `optel` binary, start and stop
//! `optel serve` on a loopback port, run the instrumented example tool `acme` as an install.

// Each test binary uses a part of these.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, ErrorKind, Read as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The `optel` binary under test.
pub const OPTEL: &str = env!("CARGO_BIN_EXE_optel");

/// What `optel serve` prints to stderr once its socket is bound, followed by its base URL.
const LISTENING: &str = "optel collector listening on ";
/// What `optel serve --otlp-grpc-listen` prints before [`LISTENING`].
const GRPC_LISTENING: &str = "optel collector OTLP/gRPC listening on ";

/// How long `optel serve` may take to announce its URL, and to exit after SIGTERM. Only a guard
/// against a hang, not a performance figure.
const PATIENCE: Duration = Duration::from_secs(60);

/// A command for `optel ARGS...`. Only the test configures it: the caller's `OPTEL_*` variables
/// (data dir, database URL, server, admin token, ...) and `COLUMNS` are removed.
pub fn command<S: AsRef<OsStr>>(args: &[S]) -> Command {
    let mut cmd = Command::new(OPTEL);
    for (name, _) in std::env::vars_os() {
        if name
            .to_str()
            .is_some_and(|n| n.starts_with("OPTEL_") || n == "COLUMNS")
        {
            cmd.env_remove(name);
        }
    }
    cmd.args(args);
    cmd
}

/// How a finished `optel` run ended and what it printed (lossy UTF-8).
#[derive(Debug)]
pub struct Run {
    /// Its exit status.
    pub status: ExitStatus,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

impl Run {
    /// Whether it exited 0.
    pub fn ok(&self) -> bool {
        self.status.success()
    }
}

/// Runs `optel ARGS...` with the extra environment `env`, whatever its outcome.
pub fn run<S: AsRef<OsStr>>(args: &[S], env: &[(&str, &str)]) -> Run {
    let out = command(args).envs(env.iter().copied()).output().unwrap();
    Run {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs `optel ARGS...` with the extra environment `env`; asserts it succeeds; returns stdout.
pub fn optel<S: AsRef<OsStr>>(args: &[S], env: &[(&str, &str)]) -> String {
    let run = run(args, env);
    assert!(
        run.ok(),
        "optel {:?}: {}",
        args.iter().map(AsRef::as_ref).collect::<Vec<_>>(),
        run.stderr
    );
    run.stdout
}

/// Creates project `name` in the SQLite store in `dir` with `optel projects create`; returns its
/// ingest key (the last line of the output).
pub fn create_project(dir: &Path, name: &str) -> String {
    let out = optel(
        &[
            OsStr::new("projects"),
            "create".as_ref(),
            name.as_ref(),
            "--data-dir".as_ref(),
            dir.as_ref(),
        ],
        &[],
    );
    out.lines().last().unwrap().trim().to_owned()
}

/// Runs `optel stats --format json --project PROJECT ARGS...` with the extra environment `env`
/// (`ARGS` say where to read: `--data-dir DIR` or `--server URL`); asserts it succeeds; returns
/// the parsed JSON.
pub fn stats_json<S: AsRef<OsStr>>(
    project: &str,
    args: &[S],
    env: &[(&str, &str)],
) -> serde_json::Value {
    let mut all: Vec<&OsStr> = ["stats", "--format", "json", "--project", project]
        .map(OsStr::new)
        .into();
    all.extend(args.iter().map(AsRef::as_ref));
    serde_json::from_str(&optel(&all, env)).unwrap()
}

/// A command for `optel serve --listen LISTEN ARGS...` with the extra environment `env`, logging
/// at `warn` (so stderr carries little more than the announcement of the URL).
pub fn serve_command<S: AsRef<OsStr>>(listen: &str, args: &[S], env: &[(&str, &OsStr)]) -> Command {
    let mut cmd = command(&["serve", "--listen", listen]);
    cmd.args(args)
        .envs(env.iter().copied())
        .env("OPTEL_LOG", "warn");
    cmd
}

/// A running `optel serve`, killed when dropped unless [`Server::stop`] or [`Server::kill`]
/// ended it.
pub struct Server {
    /// The process.
    pub child: Child,
    /// Its base URL as it announced it (`http://127.0.0.1:PORT` or `https://…`).
    pub url: String,
    /// The URL of its OTLP/gRPC port, when it announced one (`--otlp-grpc-listen`).
    pub grpc_url: Option<String>,
}

impl Server {
    /// Starts `optel serve --listen 127.0.0.1:0 ARGS...` (a free port) with the extra environment
    /// `env`; returns once it announced its URL.
    ///
    /// # Panics
    /// The process exits before announcing its URL, or does not announce it within a minute.
    pub fn start<S: AsRef<OsStr>>(args: &[S], env: &[(&str, &OsStr)]) -> Self {
        Self::start_on("127.0.0.1:0", args, env)
    }

    /// [`Server::start`] listening on `listen` (`ADDR:PORT`).
    pub fn start_on<S: AsRef<OsStr>>(listen: &str, args: &[S], env: &[(&str, &OsStr)]) -> Self {
        Self::spawn(serve_command(listen, args, env))
    }

    /// Runs `cmd`, which must start an `optel serve` (e.g. [`serve_command`] inside a shell
    /// that lowers a limit first); returns once it announced its URL.
    pub fn spawn(mut cmd: Command) -> Self {
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || announced_url(stderr, &tx));
        let exited = match rx.recv_timeout(PATIENCE) {
            Ok(Ok((url, grpc_url))) => {
                return Self {
                    child,
                    url,
                    grpc_url,
                };
            }
            Ok(Err(printed)) => Some(printed),
            Err(_) => None,
        };
        let _ = child.kill();
        let _ = child.wait();
        match exited {
            Some(printed) => panic!("optel serve exited before listening; its stderr:\n{printed}"),
            None => {
                // Killed: its stderr has ended, and the reader sends what it printed.
                let printed = rx.recv().ok().and_then(Result::err).unwrap_or_default();
                panic!(
                    "optel serve did not announce its URL within {PATIENCE:?}; its stderr:\n{printed}"
                )
            }
        }
    }

    /// Sends SIGTERM (in-flight requests finish, the writer drains) and asserts that the
    /// process exits 0 within a minute.
    pub fn stop(&mut self) {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let deadline = Instant::now() + PATIENCE;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "optel serve did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(status.success(), "optel serve exited with {status:?}");
    }

    /// Sends the signal `name` (as `kill -NAME`, e.g. `HUP`) to the process.
    pub fn signal(&self, name: &str) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args([format!("-{name}"), pid])
            .status()
            .unwrap();
        assert!(sent.success(), "kill -{name} failed");
    }

    /// Kills the process with SIGKILL, as a crash would (nothing drains), and reaps it.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads the collector's stderr to its end: sends the URL of the first [`LISTENING`] line on `tx`,
/// or, if stderr ends before one, what it printed. Reading on keeps the collector from ever
/// blocking on a full pipe.
fn announced_url(stderr: ChildStderr, tx: &mpsc::Sender<Result<(String, Option<String>), String>>) {
    let mut before = Some(String::new());
    let mut grpc = None;
    for line in BufReader::new(stderr).lines() {
        let line = match line {
            Ok(line) => line,
            Err(e) if e.kind() == ErrorKind::InvalidData => continue,
            Err(_) => break,
        };
        let Some(printed) = before.as_mut() else {
            continue;
        };
        let first_word = |rest: &str| {
            rest.split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned()
        };
        if let Some(rest) = line.strip_prefix(GRPC_LISTENING) {
            grpc = Some(first_word(rest));
        } else if let Some(rest) = line.strip_prefix(LISTENING) {
            let _ = tx.send(Ok((first_word(rest), grpc.take())));
            before = None;
        } else {
            printed.push_str(&line);
            printed.push('\n');
        }
    }
    if let Some(printed) = before {
        let _ = tx.send(Err(printed));
    }
}

/// The example tool `acme`, built in the same target directory (with cargo if missing).
pub fn acme_bin() -> PathBuf {
    optel_test_support::locate_example_binary("acme").expect("the acme example binary")
}

/// A command for `acme` run as a new install whose home is `home` (a clean environment, see
/// [`optel_test_support::tool_command`]), with telemetry on, sending to `endpoint` with ingest key `key`.
pub fn acme(home: &Path, endpoint: &str, key: &str) -> Command {
    let mut cmd = optel_test_support::tool_command(&acme_bin(), home);
    cmd.env("ACME_TELEMETRY", "on")
        .env("ACME_TELEMETRY_ENDPOINT", endpoint)
        .env("ACME_TELEMETRY_KEY", key);
    cmd
}

/// Where the SDK keeps `acme`'s queue and state for the install whose home is `home`.
pub fn acme_data_dir(home: &Path) -> PathBuf {
    home.join(".local/share/optel/acme")
}

/// A schema of its own in the test PostgreSQL (`OPTEL_TEST_DATABASE_URL` as a `postgres://`
/// URL, default `postgres://postgres@127.0.0.1:5432/test`), dropped afterwards.
pub struct PgSchema {
    pub store: optel_collector::storage::PgStore,
    /// `--database` URL of the schema.
    pub url: String,
}

impl PgSchema {
    pub fn new(tag: &str) -> Self {
        let base = std::env::var("OPTEL_TEST_DATABASE_URL")
            .ok()
            .filter(|u| u.starts_with("postgres://") || u.starts_with("postgresql://"))
            .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".into());
        let schema = format!("optel_cli_{tag}_{}", std::process::id());
        let store = optel_collector::storage::PgStore::connect_in_schema(&base, Some(&schema))
            .unwrap_or_else(|e| panic!("PostgreSQL at {base:?} is needed for this test: {e}"));
        let sep = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{sep}options=-csearch_path%3D{schema}");
        Self { store, url }
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let _ = self.store.drop_schema();
    }
}

/// An HTTP client that returns error statuses as answers, with a 10 s timeout.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

/// A batch of `n` events whose ids are derived from `(thread, seq)`: sending it twice sends
/// the same events.
pub fn batch_json(thread: u32, seq: u32, n: u32) -> serde_json::Value {
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

/// Posts `body` to `URL/v1/events` with ingest key `key`: the answer if it was a 2xx.
pub fn post(
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

/// The strings of `needles` found in the bytes of the SQLite database files in `dir`
/// (`optel.db`, `-wal`, `-shm`), as `"needle" in file`.
pub fn stored_in_db(dir: &Path, needles: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for name in ["optel.db", "optel.db-wal", "optel.db-shm"] {
        let bytes = std::fs::read(dir.join(name)).unwrap_or_default();
        for needle in needles {
            if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                found.push(format!("{needle:?} in {name}"));
            }
        }
    }
    found
}

/// Starts `optel serve` on a free port over the SQLite store in `dir`, with admin token
/// `admin`.
pub fn serve_with_admin(dir: &Path, admin: &str) -> Server {
    Server::start(
        &[
            OsStr::new("--admin-token"),
            admin.as_ref(),
            "--data-dir".as_ref(),
            dir.as_ref(),
        ],
        &[],
    )
}

/// `(count, failures)` of command `name` in a `stats --format json` answer.
pub fn command_counts(stats: &serde_json::Value, name: &str) -> (Option<u64>, Option<u64>) {
    let row = stats["commands"]
        .as_array()
        .and_then(|rows| rows.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no command {name}: {stats:#}"));
    (row["count"].as_u64(), row["failures"].as_u64())
}

/// Runs `cmd` (an official OpenTelemetry SDK's exporter script) configured only by the
/// standard variables: endpoint `url`, `Authorization: Bearer key` (percent-encoded, as the
/// spec's header format asks), metrics `temporality`, `service` and `resource` attributes;
/// nothing else of the caller's environment but `PATH`. Asserts it ran and printed `exported`.
pub fn run_otel_exporter(
    mut cmd: Command,
    url: &str,
    key: &str,
    temporality: &str,
    service: &str,
    resource: &str,
) {
    let out = cmd
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", url)
        .env(
            "OTEL_EXPORTER_OTLP_HEADERS",
            format!("Authorization=Bearer%20{key}"),
        )
        .env(
            "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE",
            temporality,
        )
        .env("OTEL_SERVICE_NAME", service)
        .env("OTEL_RESOURCE_ATTRIBUTES", resource)
        .output()
        .unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("exported"),
        "exporter failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The session of [`otlp_batch`].
pub const OTLP_SESSION: &str = "7e2d4c1a-0b9f-4e8d-8c7b-6a5f4e3d2c1b";

/// An optel batch for the OTLP tests: two successful `build`s and a failed `check`
/// (`E_NO_MANIFEST`) of 12 ms each, and a `cache` feature, from install `pseudonym`, with event
/// ids from `first_id` on, all in one session.
pub fn otlp_batch(pseudonym: &str, first_id: u32) -> optel_wire::Batch {
    use optel_wire::{Batch, Event, EventType, Timestamp};
    let mut b = Batch::new("acme", "1.4.0", pseudonym, "linux", "x86_64");
    let now = Timestamp::now();
    let mut event = |kind, name: &str, ok: Option<bool>, code: Option<&str>| {
        let id = format!(
            "00000000-0000-4000-8000-{:012}",
            first_id + b.events.len() as u32
        );
        let mut e = Event::new(id, kind, name, now, OTLP_SESSION);
        if kind == EventType::Command {
            e.duration_ms = Some(12);
        }
        e.success = ok;
        e.error_code = code.map(str::to_owned);
        b.events.push(e);
    };
    event(EventType::Command, "build", Some(true), None);
    event(EventType::Command, "build", Some(true), None);
    event(
        EventType::Command,
        "check",
        Some(false),
        Some("E_NO_MANIFEST"),
    );
    event(EventType::Feature, "cache", None, None);
    b
}
