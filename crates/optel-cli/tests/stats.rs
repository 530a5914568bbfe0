//! `optel stats` against a real collector process (`optel serve` on 127.0.0.1) and against its
//! data directory, with fixture events sent through the real ingest route.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

mod support;

use std::path::Path;

use optel_wire::{Batch, Event, EventType, Timestamp};
use support::{Server, create_project, optel, run, stats_json};

const TOKEN: &str = "test-admin-token-0123456789";

/// Starts `optel serve` over the data directory `dir`, its query routes guarded by [`TOKEN`].
fn start_collector(dir: &Path) -> Server {
    Server::start(
        &["--admin-token", TOKEN, "--data-dir", dir.to_str().unwrap()],
        &[],
    )
}

fn uuid(n: u64) -> String {
    format!("00000000-0000-4000-8000-{n:012x}")
}

/// Install `a` (linux): build ok, build failed E_NO_MANIFEST, test ok, feature cache.
/// Install `b` (macos): build ok, method Db::connect.
fn fixture_batches() -> Vec<Batch> {
    let now = Timestamp::now();
    let mut n = 0;
    let mut event = |t: EventType, name: &str, success: Option<bool>, code: Option<&str>| {
        n += 1;
        let mut e = Event::new(uuid(n), t, name, now, uuid(1000));
        e.success = success;
        e.duration_ms = success.map(|_| 100 * n);
        e.error_code = code.map(str::to_owned);
        e
    };
    let mut a = Batch::new("acme", "0.2.0", "install-a", "linux", "x86_64");
    a.events = vec![
        event(EventType::Command, "build", Some(true), None),
        event(
            EventType::Command,
            "build",
            Some(false),
            Some("E_NO_MANIFEST"),
        ),
        event(EventType::Command, "test", Some(true), None),
        event(EventType::Feature, "cache", None, None),
    ];
    let mut b = Batch::new("acme", "0.1.0", "install-b", "macos", "aarch64");
    b.events = vec![
        event(EventType::Command, "build", Some(true), None),
        event(EventType::Method, "Db::connect", None, None),
    ];
    vec![a, b]
}

fn ingest(url: &str, key: &str, batch: &Batch) {
    let response = ureq::post(&format!("{url}/v1/events"))
        .header("Authorization", &format!("Bearer {key}"))
        .header("Content-Type", "application/json")
        .send(&serde_json::to_vec(batch).unwrap()[..])
        .unwrap();
    assert!(
        response.status().is_success(),
        "ingest answered {}",
        response.status()
    );
}

fn command<'a>(v: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    v["commands"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no command {name} in {v}"))
}

#[test]
fn stats_remote_and_local_agree_in_every_format() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let key = create_project(&data, "acme");
    create_project(&data, "other");
    let collector = start_collector(&data);
    for batch in fixture_batches() {
        ingest(&collector.url, &key, &batch);
    }
    let data_s = data.to_str().unwrap();
    let env = [("OPTEL_ADMIN_TOKEN", TOKEN)];

    // Remote JSON: the shape the end-to-end tests rely on.
    let remote = stats_json("acme", &["--server", &collector.url, "--since", "7d"], &env);
    assert_eq!(remote["active_installs"], 2);
    assert_eq!(command(&remote, "build")["count"], 3);
    assert_eq!(command(&remote, "build")["failures"], 1);
    assert_eq!(command(&remote, "test")["count"], 1);
    assert_eq!(command(&remote, "test")["failures"], 0);

    // Local data directory: the same numbers (the collector is still running: WAL readers).
    let local = stats_json("acme", &["--data-dir", data_s, "--since", "7d"], &[]);
    assert_eq!(local["commands"], remote["commands"]);
    assert_eq!(local["active_installs"], remote["active_installs"]);
    assert_eq!(local["error_codes"], remote["error_codes"]);

    // CSV: one long table.
    let csv = optel(
        &[
            "stats",
            "--server",
            &collector.url,
            "--project",
            "acme",
            "--format",
            "csv",
        ],
        &env,
    );
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "kind,name,detail,count,failures,installs,events,p50_ms,p95_ms"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("command,build,,3,1,2,")),
        "{csv}"
    );
    assert!(lines.contains(&"error,build,E_NO_MANIFEST,1,,,,,"), "{csv}");
    assert!(lines.contains(&"platform,macos,aarch64,,,1,2,,"), "{csv}");
    assert!(lines.contains(&"feature,cache,,1,,1,,,"), "{csv}");
    assert!(lines.contains(&"method,Db::connect,,1,,1,,,"), "{csv}");

    // Table: fits a narrow terminal, no colour codes when not on a terminal.
    let table = optel(
        &["stats", "--server", &collector.url, "--project", "acme"],
        &[("OPTEL_ADMIN_TOKEN", TOKEN), ("COLUMNS", "44")],
    );
    assert!(!table.contains('\x1b'), "{table}");
    assert!(
        table.contains("COMMAND") && table.contains("E_NO_MANIFEST"),
        "{table}"
    );
    for line in table.lines() {
        assert!(
            line.chars().count() <= 44,
            "line wider than 44 columns: {line:?}"
        );
    }
    // --color always forces colour even into a pipe.
    let out = run(
        &[
            "stats",
            "--server",
            &collector.url,
            "--project",
            "acme",
            "--color",
            "always",
        ],
        &env,
    );
    assert!(out.stdout.contains("\x1b[1m"));

    // Errors say what to do.
    let out = run(
        &["stats", "--server", &collector.url, "--project", "acme"],
        &[("OPTEL_ADMIN_TOKEN", "wrong")],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stderr.contains("did not accept the admin token"));
    let out = run(
        &["stats", "--server", &collector.url, "--project", "acme"],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stderr.contains("OPTEL_ADMIN_TOKEN"));
    if !cfg!(feature = "tls") {
        let out = run(
            &[
                "stats",
                "--server",
                "https://127.0.0.1:9",
                "--project",
                "acme",
            ],
            &env,
        );
        assert_eq!(out.status.code(), Some(1));
        assert!(out.stderr.contains("built without TLS"));
    }
    let out = run(&["stats", "--server", &collector.url], &env);
    assert_eq!(out.status.code(), Some(1));
    let err = &out.stderr;
    assert!(
        err.contains("--project") && err.contains("acme") && err.contains("other"),
        "{err}"
    );
    let out = run(
        &["stats", "--server", &collector.url, "--project", "nope"],
        &env,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stderr.contains("no project named \"nope\""));
    let out = run(
        &[
            "stats",
            "--data-dir",
            dir.path().join("missing").to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stderr.contains("no optel database"));
}

#[test]
fn the_dashboard_is_served_with_its_assets_and_strict_headers() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let collector = start_collector(&data);
    for (path, ty) in [
        ("/", "text/html"),
        ("/public/acme", "text/html"),
        ("/assets/app.js", "text/javascript"),
        ("/assets/app.css", "text/css"),
        ("/assets/chart.umd.min.js", "text/javascript"),
        ("/assets/icon.svg", "image/svg+xml"),
    ] {
        let mut response = ureq::get(&format!("{}{path}", collector.url))
            .call()
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let h = response.headers();
        assert!(
            h["content-type"].to_str().unwrap().starts_with(ty),
            "{path}"
        );
        assert!(
            h["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("default-src 'none'")
        );
        assert_eq!(h["x-content-type-options"], "nosniff");
        let etag = h["etag"].to_str().unwrap().to_owned();
        assert!(!response.body_mut().read_to_vec().unwrap().is_empty());
        // Revalidation with the ETag costs no body.
        let again = ureq::get(&format!("{}{path}", collector.url))
            .header("If-None-Match", &etag)
            .call()
            .unwrap();
        assert_eq!(again.status(), 304, "{path}");
    }
    let response = ureq::get(&format!("{}/assets/nope.js", collector.url))
        .config()
        .http_status_as_error(false)
        .build()
        .call()
        .unwrap();
    assert_eq!(response.status(), 404);
}

/// One `acme build` run of `install` as a schema version 2 batch: the build with its
/// `profile`, phases `resolve` and `compile`, and a `files` measurement; the first run carries
/// the catalog (of the wire's golden batch), the others name it by hash.
fn acme_run(n: u64, install: &str, profile: &str, carry: bool) -> Batch {
    let golden: Batch =
        serde_json::from_str(include_str!("../../optel-wire/tests/golden/batch_v2.json")).unwrap();
    let catalog = golden.catalog.unwrap();
    let mut b = Batch::new("acme", "1.3.0", install, "linux", "x86_64");
    b.catalog_hash = Some(catalog.hash());
    b.catalog = carry.then_some(catalog);
    let now = Timestamp::now();
    let mut build = Event::new(
        uuid(10 * n),
        EventType::Command,
        "build",
        now,
        uuid(2000 + n),
    );
    build.duration_ms = Some(1_300);
    build.success = Some(true);
    build.metadata.insert(
        "profile".into(),
        optel_wire::AttributeValue::String(profile.into()),
    );
    for (name, us) in [("resolve", 20_000), ("compile", 1_250_000)] {
        build.phases.push(optel_wire::Phase {
            name: name.into(),
            parent: None,
            start_us: 0,
            duration_us: us,
            success: true,
        });
    }
    let mut files = Event::new(
        uuid(10 * n + 1),
        EventType::Measurement,
        "files",
        now,
        uuid(2000 + n),
    );
    files.value = Some(12.0);
    let mut strict = Event::new(
        uuid(10 * n + 2),
        EventType::Feature,
        "strict",
        now,
        uuid(2000 + n),
    );
    strict.success = None;
    b.events = vec![build, files, strict];
    b
}

/// Issue #12's scenario: three `acme build` runs (two debug, one release) from two installs
/// show `profile` debug 2 / release 1, phases `resolve` and `compile` with 3 each, and `files`
/// with 3, in `optel stats --format json` read from a real `optel serve` process.
#[test]
fn stats_show_breakdowns_phases_and_measurements_of_v2_batches() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let key = create_project(&data, "acme");
    let collector = start_collector(&data);
    for (n, install, profile, carry) in [
        (1, "install-a", "debug", true),
        (2, "install-b", "debug", false),
        (3, "install-a", "release", false),
    ] {
        ingest(&collector.url, &key, &acme_run(n, install, profile, carry));
    }
    let env = [("OPTEL_ADMIN_TOKEN", TOKEN)];
    let v = stats_json(
        "acme",
        &["--server", &collector.url, "--since", "24h"],
        &env,
    );
    let profile = v["breakdowns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["command"] == "build" && b["attribute"] == "profile")
        .unwrap_or_else(|| panic!("no profile breakdown in {v}"));
    assert_eq!(
        profile["values"],
        serde_json::json!([
            {"value": "debug", "count": 2, "failures": 0, "installs": 2},
            {"value": "release", "count": 1, "failures": 0, "installs": 1},
        ])
    );
    for phase in ["resolve", "compile"] {
        let row = v["phases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["command"] == "build" && p["phase"] == phase)
            .unwrap_or_else(|| panic!("no phase {phase} in {v}"));
        assert_eq!(row["count"], 3, "{row}");
        assert!(row["p50_ms"].as_f64().unwrap() > 0.0 && row["p95_ms"].is_f64());
    }
    let files = &v["measurements"][0];
    assert_eq!(files["name"], "files");
    assert_eq!(files["count"], 3);
    assert_eq!(files["sum"], 36.0);
    assert_eq!(files["unit"], "count");
    let strict = &v["features"][0];
    assert_eq!(strict["name"], "strict");
    let today = &strict["daily"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(today["count"], 3);
    assert_eq!(today["installs"], 2);
    assert_eq!(today["day"].as_str().unwrap().len(), "YYYY-MM-DD".len());

    // The same through the local data directory, and as tables for people.
    let local = stats_json(
        "acme",
        &["--data-dir", data.to_str().unwrap(), "--since", "24h"],
        &[],
    );
    assert_eq!(local["breakdowns"], v["breakdowns"]);
    assert_eq!(local["phases"], v["phases"]);
    let table = optel(
        &["stats", "--server", &collector.url, "--project", "acme"],
        &env,
    );
    for needle in ["build resolve", "build profile=debug", "MEASUREMENT"] {
        assert!(table.contains(needle), "{needle}: {table}");
    }
}
