//! The official OpenTelemetry Rust SDK (`opentelemetry_sdk` + `opentelemetry-otlp`, HTTP
//! exporters) as a peer of the collector's OTLP/HTTP ingest: real spans, a `command_invocation`
//! counter and log records, exported from a separate process configured only through the
//! standard `OTEL_*` environment variables (endpoint, `Authorization: Bearer` header, protocol,
//! compression, delta or the default cumulative temporality, resource attributes) to a real `optel serve` on a loopback socket,
//! in protobuf and JSON, with and without gzip; then read back through the query API with
//! `optel stats --server`.
//!
//! The exporter process is this test binary started again with [`CHILD`] set: environment
//! variables are the way users configure the SDK, and a child process is the only way to set
//! them without `unsafe` (`std::env::set_var`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

mod support;

use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

use opentelemetry::KeyValue;
use opentelemetry::logs::{LogRecord as _, Logger as _, LoggerProvider as _, Severity};
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::trace::{Span as _, Status, Tracer as _, TracerProvider as _};
use opentelemetry_otlp::{LogExporter, MetricExporter, SpanExporter, WithHttpConfig as _};
use opentelemetry_sdk::logs::SdkLoggerProvider;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;
use serde_json::Value;

use support::{Server, create_project, stats_json};

const ADMIN: &str = "otel-sdk-test-admin";
/// Set in the exporter child process: it exports and exits instead of testing.
const CHILD: &str = "OPTEL_TEST_OTEL_SDK_EXPORTER";
/// Values that must never be stored (resource and span attributes that identify a machine).
const HOST_NAME: &str = "workstation-of-jane-4f1c";
const INSTANCE_ID: &str = "instance-5d0b7e3a-91c2";
const PEER_IP: &str = "198.51.100.23";
/// A span attribute that is kept (a CLI semantic-conventions key, on the allow-list for any
/// OpenTelemetry SDK): the positive control of the "never stored" search. `build.profile`,
/// outside the allow-list, is not stored from a foreign SDK.
const KEPT: &str = "profile-release-7c1e";
/// A span attribute outside the allow-list.
const NOT_ALLOWED: &str = "not-allowed-9b2d";

/// The transport of the official exporter: a blocking `ureq` agent (already a dependency of the
/// workspace) instead of the default `reqwest`, whose tree is much larger. The exporter builds
/// the request (URL, headers, encoding, compression); this only carries it, after checking that
/// its encoding and compression are the ones the environment asked for.
#[derive(Debug)]
struct UreqClient {
    agent: ureq::Agent,
    content_type: &'static str,
    gzip: bool,
}

/// Requests whose encoding or compression differed from the configuration.
static WRONG_REQUESTS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for UreqClient {
    async fn send_bytes(
        &self,
        request: opentelemetry_http::Request<opentelemetry_http::Bytes>,
    ) -> Result<
        opentelemetry_http::Response<opentelemetry_http::Bytes>,
        opentelemetry_http::HttpError,
    > {
        let header = |name| {
            request
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
        };
        let (content_type, encoding) = (header("content-type"), header("content-encoding"));
        if content_type != self.content_type || (encoding == "gzip") != self.gzip {
            let wrong = format!(
                "{} sent as {content_type:?}, encoding {encoding:?}: expected {:?}, gzip {}",
                request.uri(),
                self.content_type,
                self.gzip
            );
            WRONG_REQUESTS.lock().unwrap().push(wrong.clone());
            return Err(wrong.into());
        }
        let (parts, body) = request.into_parts();
        let mut response = self
            .agent
            .run(ureq::http::Request::from_parts(parts, body.to_vec()))?;
        let body = response.body_mut().read_to_vec()?;
        let (parts, _) = response.into_parts();
        Ok(opentelemetry_http::Response::from_parts(parts, body.into()))
    }
}

fn client() -> UreqClient {
    let env = |k| std::env::var(k).unwrap_or_default();
    UreqClient {
        agent: ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into(),
        content_type: match env("OTEL_EXPORTER_OTLP_PROTOCOL").as_str() {
            "http/json" => "application/json",
            _ => "application/x-protobuf",
        },
        gzip: env("OTEL_EXPORTER_OTLP_COMPRESSION") == "gzip",
    }
}

/// The instrumented program: what an author using the official SDK would write.
fn export_with_the_official_sdk() {
    let spans = SpanExporter::builder()
        .with_http()
        .with_http_client(client())
        .build()
        .unwrap();
    let tracer_provider = SdkTracerProvider::builder()
        .with_batch_exporter(spans)
        .build();
    let tracer = tracer_provider.tracer("acme-cli");
    let start = SystemTime::now() - Duration::from_secs(5);
    let mut build = tracer
        .span_builder("build")
        .with_start_time(start)
        .with_attributes([
            KeyValue::new("process.executable.name", KEPT),
            KeyValue::new("build.profile", NOT_ALLOWED),
            KeyValue::new("cache.hit", true),
            KeyValue::new("host.name", HOST_NAME),
            KeyValue::new("net.peer.ip", PEER_IP),
        ])
        .start(&tracer);
    build.set_status(Status::Ok);
    build.end_with_timestamp(start + Duration::from_millis(250));
    let mut check = tracer
        .span_builder("check")
        .with_start_time(start)
        .with_attributes([KeyValue::new("error.type", "E_NO_MANIFEST")])
        .start(&tracer);
    check.set_status(Status::error("Cargo.toml not found"));
    check.end_with_timestamp(start + Duration::from_millis(40));
    tracer_provider.shutdown().unwrap();

    let metrics = MetricExporter::builder()
        .with_http()
        .with_http_client(client())
        .build()
        .unwrap();
    let meter_provider = SdkMeterProvider::builder()
        .with_periodic_exporter(metrics)
        .build();
    let invocations = meter_provider
        .meter("acme-cli")
        .u64_counter("command_invocation")
        .build();
    let test = [
        KeyValue::new("command", "test"),
        KeyValue::new("outcome", "success"),
    ];
    invocations.add(2, &test);
    // Two exports: with cumulative temporality (the SDK's default) the second carries the total
    // of 3 again, which must not count the first 2 twice.
    meter_provider.force_flush().unwrap();
    invocations.add(1, &test);
    // A failure counted by the metric is a failed invocation (regression: it was accepted
    // and neither stored nor reported).
    invocations.add(
        1,
        &[
            KeyValue::new("command", "check"),
            KeyValue::new("outcome", "failure"),
            KeyValue::new("error.type", "E_NO_MANIFEST"),
        ],
    );
    meter_provider.shutdown().unwrap();

    let logs = LogExporter::builder()
        .with_http()
        .with_http_client(client())
        .build()
        .unwrap();
    let logger_provider = SdkLoggerProvider::builder()
        .with_batch_exporter(logs)
        .build();
    let logger = logger_provider.logger("acme-cli");
    let mut record = logger.create_log_record();
    record.set_event_name("cache");
    record.set_severity_number(Severity::Info);
    record.add_attribute("optel.event_type", "feature");
    logger.emit(record);
    logger_provider.shutdown().unwrap();
    let wrong = WRONG_REQUESTS.lock().unwrap();
    assert!(wrong.is_empty(), "{wrong:#?}");
}

/// One way of exporting: a project of its own, the protocol, gzip or not, delta temporality or
/// the SDK's default (cumulative).
#[derive(Debug)]
struct Case {
    project: &'static str,
    protocol: &'static str,
    gzip: bool,
    delta: bool,
}

/// Runs the exporter process against `endpoint` with the ingest key in the standard headers
/// variable (percent-encoded, as the specification's W3C baggage format has it).
fn run_exporter(endpoint: &str, key: &str, case: &Case) {
    let mut exporter = Command::new(std::env::current_exe().unwrap());
    if case.delta {
        exporter.env("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "delta");
    }
    let out = exporter
        .args([
            "--exact",
            "official_sdk_exporters_are_accepted_and_mapped",
            "--nocapture",
        ])
        .env(CHILD, "1")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
        .env(
            "OTEL_EXPORTER_OTLP_HEADERS",
            format!("Authorization=Bearer%20{key}"),
        )
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", case.protocol)
        .env(
            "OTEL_EXPORTER_OTLP_COMPRESSION",
            if case.gzip { "gzip" } else { "none" },
        )
        .env("OTEL_SERVICE_NAME", "acme")
        .env(
            "OTEL_RESOURCE_ATTRIBUTES",
            format!(
                "service.version=1.4.0,os.type=linux,host.arch=amd64,\
                 host.name={HOST_NAME},service.instance.id={INSTANCE_ID}"
            ),
        )
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "exporter ({case:?}) failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `optel stats --format json` read from the running collector's query API.
fn stats(url: &str, project: &str) -> Value {
    stats_json(
        project,
        &["--server", url, "--since", "1h"],
        &[("OPTEL_ADMIN_TOKEN", ADMIN)],
    )
}

/// Whether any file of `dir` contains `needle`.
fn stored_anywhere(dir: &Path, needle: &str) -> bool {
    std::fs::read_dir(dir).unwrap().any(|entry| {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap_or_default();
        bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
    })
}

#[test]
fn official_sdk_exporters_are_accepted_and_mapped() {
    if std::env::var_os(CHILD).is_some() {
        export_with_the_official_sdk();
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let case = |project, protocol, gzip, delta| Case {
        project,
        protocol,
        gzip,
        delta,
    };
    let cases = [
        case("proto", "http/protobuf", false, true),
        case("proto-gzip", "http/protobuf", true, false),
        case("json", "http/json", false, false),
        case("json-gzip", "http/json", true, true),
    ];
    let keys: Vec<String> = cases
        .iter()
        .map(|c| create_project(dir.path(), c.project))
        .collect();
    let mut server = Server::start(
        &[
            OsStr::new("--admin-token"),
            ADMIN.as_ref(),
            "--data-dir".as_ref(),
            dir.path().as_ref(),
        ],
        &[],
    );

    for (c, key) in cases.iter().zip(&keys) {
        run_exporter(&server.url, key, c);
        let s = stats(&server.url, c.project);
        let case = format!("{c:?}: {s:#}");
        // Spans: `build` OK, `check` ERROR; the counter: 3 successful `test` runs over two
        // exports and one failed `check`; the log record: the `cache` feature.
        assert_eq!(s["events"], 7, "{case}");
        assert_eq!(s["invocations"], 6, "{case}");
        assert_eq!(s["failures"], 2, "{case}");
        let commands = s["commands"].as_array().unwrap();
        let command = |name: &str| {
            commands
                .iter()
                .find(|c| c["name"] == name)
                .unwrap_or_else(|| panic!("no command {name}: {case}"))
        };
        assert_eq!(command("test")["count"], 3, "{case}");
        assert_eq!(command("test")["failures"], 0, "{case}");
        assert_eq!(command("build")["count"], 1, "{case}");
        assert_eq!(command("build")["failures"], 0, "{case}");
        assert_eq!(command("check")["count"], 2, "{case}");
        assert_eq!(command("check")["failures"], 2, "{case}");
        // Durations come from span start and end (the rollup histogram is within 12.5 %).
        let p50 = |name: &str| command(name)["p50_ms"].as_u64().unwrap();
        assert!((219..=281).contains(&p50("build")), "{case}");
        assert!((35..=45).contains(&p50("check")), "{case}");
        assert_eq!(s["error_codes"][0]["command"], "check", "{case}");
        assert_eq!(s["error_codes"][0]["error_code"], "E_NO_MANIFEST", "{case}");
        assert_eq!(s["features"][0]["name"], "cache", "{case}");
        assert_eq!(s["features"][0]["count"], 1, "{case}");
        assert_eq!(s["versions"][0]["version"], "1.4.0", "{case}");
        assert_eq!(s["platforms"][0]["os"], "linux", "{case}");
        // `host.arch=amd64` is stored as the native spelling.
        assert_eq!(s["platforms"][0]["arch"], "x86_64", "{case}");
        assert_eq!(s["active_installs"], 1, "{case}");
    }

    // Stop the collector (SIGTERM: the writer drains) and search every byte it wrote.
    server.stop();
    assert!(
        stored_anywhere(dir.path(), KEPT),
        "the search finds stored attributes"
    );
    for secret in [HOST_NAME, INSTANCE_ID, PEER_IP, NOT_ALLOWED] {
        assert!(
            !stored_anywhere(dir.path(), secret),
            "{secret} must not be stored"
        );
    }
}
