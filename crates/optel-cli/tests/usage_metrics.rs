//! `GET /v1/metrics/usage` of a real `optel serve`, parsed by the Prometheus project's own
//! text-format parser (`prometheus_client.parser.text_string_to_metric_families` of the Python
//! package `prometheus-client`, pinned in `tests/python/requirements.txt`): usage counters and
//! duration summaries per project, command and version, behind the admin token.
//!
//! The parser lives in the virtualenv `.ci/run` creates (`target/otel-py`, or `OPTEL_OTEL_PY`);
//! without one the test creates it, and skips with a message when that is impossible, unless
//! `OPTEL_REQUIRE_OTEL_PY=1` (set by `.ci/run`) makes that a failure.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

mod support;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{Value, json};

use support::{agent, create_project, post, serve_with_admin};

const ADMIN: &str = "usage-metrics-test-admin";

/// Prints every sample of the text read on stdin as JSON: family, type, name, labels, value.
const PARSE: &str = "\
import sys, json
from prometheus_client.parser import text_string_to_metric_families
out = []
for fam in text_string_to_metric_families(sys.stdin.read()):
    for s in fam.samples:
        out.append({'family': fam.name, 'type': fam.type, 'name': s.name,
                    'labels': s.labels, 'value': s.value})
print(json.dumps(out))
";

fn python() -> Result<PathBuf, String> {
    let venv = std::env::var_os("OPTEL_OTEL_PY").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/otel-py"),
        PathBuf::from,
    );
    let py = venv.join("bin/python");
    let ready = |py: &Path| {
        Command::new(py)
            .args(["-c", "import prometheus_client.parser"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if ready(&py) {
        return Ok(py);
    }
    if !py.exists() {
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
    }
    let requirements = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/requirements.txt");
    let pip = Command::new(venv.join("bin/pip"))
        .args(["install", "-q", "-r"])
        .arg(requirements)
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

fn parse(py: &Path, text: &str) -> Vec<Value> {
    let mut child = Command::new(py)
        .args(["-c", PARSE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the Prometheus parser refused the text: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Value>(&out.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// A batch of install `install` on `version`: `(command, success, duration_ms)` events.
fn batch(install: u32, version: &str, commands: &[(&str, bool, u64)]) -> Value {
    let now = optel_wire::Timestamp::now().to_string();
    let events: Vec<Value> = commands
        .iter()
        .enumerate()
        .map(|(i, (name, ok, ms))| {
            let mut e = json!({
                "event_id": format!("{install:08x}-0000-4000-8000-{i:012x}"),
                "event_type": "command", "name": name, "timestamp": now,
                "session_id": "7e2d4c1a-0b9f-4e8d-8c7b-6a5f4e3d2c1b",
                "duration_ms": ms, "success": ok,
            });
            if !ok {
                e["error_code"] = json!("E_BUILD");
            }
            e
        })
        .collect();
    json!({
        "schema_version": 1, "service_name": "acme", "service_version": version,
        "pseudonym": format!("{install:032x}"), "os": "linux", "arch": "x86_64", "events": events
    })
}

fn sample<'a>(samples: &'a [Value], name: &str, labels: &[(&str, &str)]) -> &'a Value {
    samples
        .iter()
        .find(|s| s["name"] == name && labels.iter().all(|(k, v)| s["labels"][*k] == *v))
        .unwrap_or_else(|| panic!("no sample {name} {labels:?} in {samples:#?}"))
}

#[test]
fn usage_metrics_parse_with_the_prometheus_parser() {
    let py = match python() {
        Ok(py) => py,
        Err(why) if std::env::var_os("OPTEL_REQUIRE_OTEL_PY").is_none() => {
            eprintln!(
                "SKIPPED: prometheus-client is not available ({why}); install it with \
                 `python3 -m venv target/otel-py && target/otel-py/bin/pip install -r \
                 crates/optel-cli/tests/python/requirements.txt`"
            );
            return;
        }
        Err(why) => panic!("OPTEL_REQUIRE_OTEL_PY is set and prometheus-client is missing: {why}"),
    };
    let dir = tempfile::tempdir().unwrap();
    let acme = create_project(dir.path(), "acme");
    let zeta = create_project(dir.path(), "zeta");
    let mut server = serve_with_admin(dir.path(), ADMIN);
    let a = agent();
    let b1 = batch(
        1,
        "1.0.0",
        &[
            ("build", true, 100),
            ("build", true, 200),
            ("build", false, 300),
            ("test", true, 50),
        ],
    );
    let b2 = batch(2, "1.1.0", &[("build", true, 400), ("build", true, 400)]);
    let mut b3 = batch(3, "2.0.0", &[("deploy", true, 10)]);
    b3["service_name"] = json!("zeta");
    assert!(post(&a, &server.url, &acme, &b1).is_some());
    assert!(post(&a, &server.url, &acme, &b2).is_some());
    assert!(post(&a, &server.url, &zeta, &b3).is_some());
    // A schema version 2 batch with its catalog: `build` declares the phases `resolve` and
    // `compile`; the undeclared phase `link` is summed into `other`, and so is the undeclared
    // command `secret` (once the project has a catalog, only declared names get series).
    let golden =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../optel-wire/tests/golden/batch_v2.json");
    let mut v2: Value = serde_json::from_str(&std::fs::read_to_string(golden).unwrap()).unwrap();
    v2["pseudonym"] = json!(format!("{:032x}", 4));
    let now = optel_wire::Timestamp::now().to_string();
    let mut events = Vec::new();
    for (i, (command, phases)) in [
        (
            "build",
            vec![("resolve", 20_000), ("compile", 1_200_000), ("link", 5_000)],
        ),
        ("build", vec![("resolve", 20_000), ("compile", 1_200_000)]),
        ("secret", vec![("resolve", 1_000)]),
    ]
    .into_iter()
    .enumerate()
    {
        let phases: Vec<Value> = phases
            .into_iter()
            .map(|(name, us)| json!({"name": name, "start_us": 0, "duration_us": us, "success": true}))
            .collect();
        events.push(json!({
            "event_id": format!("00000004-0000-4000-8000-{i:012x}"),
            "event_type": "command", "name": command, "timestamp": now,
            "session_id": "7e2d4c1a-0b9f-4e8d-8c7b-6a5f4e3d2c1b",
            "duration_ms": 1250, "success": true, "phases": phases,
        }));
    }
    v2["events"] = json!(events);
    assert!(
        post(&a, &server.url, &acme, &v2).is_some(),
        "v2 batch refused"
    );

    let url = format!("{}/v1/metrics/usage", server.url);
    let status = a.get(&url).call().unwrap().status();
    assert_eq!(status, 401, "the usage metrics need the admin token");
    let get = |url: &str| {
        let mut r = a
            .get(url)
            .header("Authorization", &format!("Bearer {ADMIN}"))
            .call()
            .unwrap();
        (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
    };
    let (status, text) = get(&url);
    assert_eq!(status, 200, "{text}");
    let samples = parse(&py, &text);

    let inv = "optel_usage_command_invocations_total";
    let fail = "optel_usage_command_failures_total";
    let build_1 = [
        ("project", "acme"),
        ("command", "build"),
        ("version", "1.0.0"),
    ];
    assert_eq!(sample(&samples, inv, &build_1)["value"], 3.0);
    assert_eq!(sample(&samples, fail, &build_1)["value"], 1.0);
    assert_eq!(sample(&samples, inv, &build_1)["type"], "counter");
    let build_2 = [
        ("project", "acme"),
        ("command", "build"),
        ("version", "1.1.0"),
    ];
    assert_eq!(sample(&samples, inv, &build_2)["value"], 2.0);
    assert_eq!(sample(&samples, fail, &build_2)["value"], 0.0);
    let deploy = [
        ("project", "zeta"),
        ("command", "deploy"),
        ("version", "2.0.0"),
    ];
    assert_eq!(sample(&samples, inv, &deploy)["value"], 1.0);

    let dur = "optel_usage_command_duration_seconds";
    let build = [("project", "acme"), ("command", "build")];
    assert_eq!(
        sample(&samples, &format!("{dur}_count"), &build)["value"],
        7.0
    );
    assert_eq!(
        sample(&samples, &format!("{dur}_sum"), &build)["value"],
        3.9
    );
    let other = [
        ("project", "acme"),
        ("command", "other"),
        ("version", "1.0.0"),
    ];
    assert_eq!(
        sample(&samples, inv, &other)["value"],
        1.0,
        "undeclared `test` is other"
    );
    assert!(
        !samples.iter().any(|s| s["labels"]["command"] == "secret"),
        "an undeclared command has no series of its own"
    );

    let phase = "optel_usage_phase_duration_seconds";
    let resolve = [
        ("project", "acme"),
        ("command", "build"),
        ("phase", "resolve"),
    ];
    assert_eq!(
        sample(&samples, &format!("{phase}_count"), &resolve)["value"],
        2.0
    );
    assert_eq!(
        sample(&samples, &format!("{phase}_count"), &resolve)["type"],
        "summary"
    );
    let compile = [
        ("project", "acme"),
        ("command", "build"),
        ("phase", "compile"),
        ("quantile", "0.95"),
    ];
    let p95 = sample(&samples, phase, &compile)["value"].as_f64().unwrap();
    assert!(
        (1.2 * 0.981..=1.2 * 1.019).contains(&p95),
        "compile p95 1.2 s within 1.9 %: {p95}"
    );
    let link = [
        ("project", "acme"),
        ("command", "build"),
        ("phase", "other"),
    ];
    assert_eq!(
        sample(&samples, &format!("{phase}_count"), &link)["value"],
        1.0
    );
    let p50 = sample(
        &samples,
        dur,
        &[
            ("project", "acme"),
            ("command", "build"),
            ("quantile", "0.5"),
        ],
    );
    let p50 = p50["value"].as_f64().unwrap();
    assert!(
        (0.35..=0.45).contains(&p50),
        "p50 (400 ms) within 12.5 %: {p50}"
    );

    // One project only; an unknown project is 404.
    let (status, text) = get(&format!("{url}?project=zeta"));
    assert_eq!(status, 200);
    let only = parse(&py, &text);
    assert!(
        only.iter().all(|s| s["labels"]["project"] == "zeta"),
        "{only:#?}"
    );
    assert_eq!(get(&format!("{url}?project=nope")).0, 404);
    server.stop();
}
