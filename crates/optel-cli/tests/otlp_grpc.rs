//! OTLP/gRPC (feature `otlp-grpc`): the SDK's OTLP exporter with `OTEL_EXPORTER_OTLP_PROTOCOL=grpc`
//! against a real `optel serve --otlp-grpc-listen`, over loopback: the events arrive once,
//! exactly, with and without gzip; a bad key is refused for good, a rate limit is retried
//! after the delay the collector names, a dead endpoint is retryable. The official Python
//! SDK's gRPC exporter against the same port is in `tests/otel_python.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

mod support;

use std::ffi::OsStr;
use std::time::Duration;

use optel::export::{ExportError, Exporter};
use optel::otlp::OtlpExporter;
use support::{Server, command_counts, create_project, otlp_batch, stats_json};

const ADMIN: &str = "otlp-grpc-test-admin";
/// `optel serve` with an admin token and OTLP/gRPC on a free port, plus `args`.
fn serve(dir: &std::path::Path, args: &[&str]) -> Server {
    let mut all: Vec<&OsStr> = vec![
        "--admin-token".as_ref(),
        ADMIN.as_ref(),
        "--data-dir".as_ref(),
        dir.as_os_str(),
        "--otlp-grpc-listen".as_ref(),
        "127.0.0.1:0".as_ref(),
    ];
    all.extend(args.iter().map(OsStr::new));
    let server = Server::start(&all, &[]);
    assert!(server.grpc_url.is_some(), "no OTLP/gRPC port announced");
    server
}

/// An exporter configured only by the standard variables, plus `extra` ones.
fn exporter(endpoint: &str, key: &str, extra: &[(&str, &str)]) -> OtlpExporter {
    let mut vars: Vec<(String, String)> = vec![
        ("OTEL_EXPORTER_OTLP_PROTOCOL".into(), "grpc".into()),
        ("OTEL_EXPORTER_OTLP_ENDPOINT".into(), endpoint.into()),
        (
            "OTEL_EXPORTER_OTLP_HEADERS".into(),
            format!("Authorization=Bearer%20{key}"),
        ),
    ];
    vars.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    OtlpExporter::from_env(|k| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())).unwrap()
}

#[test]
fn sdk_grpc_exports_arrive_once_with_and_without_gzip() {
    let dir = tempfile::tempdir().unwrap();
    let key = create_project(dir.path(), "acme");
    let server = serve(dir.path(), &[]);
    let grpc = server.grpc_url.clone().unwrap();
    let gzip = exporter(&grpc, &key, &[]);
    let sent = otlp_batch("5f1d3c2b9a8e7d6c5f1d3c2b9a8e7d6c", 1);
    gzip.export(&sent, Duration::from_secs(20)).unwrap();
    // A retried export (the same events) counts once.
    gzip.export(&sent, Duration::from_secs(20)).unwrap();
    let plain = exporter(&grpc, &key, &[("OTEL_EXPORTER_OTLP_COMPRESSION", "none")]);
    plain
        .export(
            &otlp_batch("0a1b2c3d4e5f60718293a4b5c6d7e8f9", 100),
            Duration::from_secs(20),
        )
        .unwrap();
    assert_eq!(gzip.rejected_items() + plain.rejected_items(), 0);

    let s = stats_json(
        "acme",
        &["--server", &server.url, "--since", "1h"],
        &[("OPTEL_ADMIN_TOKEN", ADMIN)],
    );
    assert_eq!(command_counts(&s, "build"), (Some(4), Some(0)), "{s:#}");
    assert_eq!(command_counts(&s, "check"), (Some(2), Some(2)), "{s:#}");
    assert_eq!(s["features"][0]["name"], "cache", "{s:#}");
    assert_eq!(s["features"][0]["count"], 2, "{s:#}");
    assert_eq!(s["error_codes"][0]["error_code"], "E_NO_MANIFEST", "{s:#}");
    assert_eq!(s["versions"][0]["version"], "1.4.0", "{s:#}");
}

#[test]
fn grpc_refusals_follow_the_http_routes() {
    let dir = tempfile::tempdir().unwrap();
    let key = create_project(dir.path(), "acme");
    let server = serve(dir.path(), &["--rate-per-key", "1"]);
    let grpc = server.grpc_url.clone().unwrap();
    let sent = otlp_batch("5f1d3c2b9a8e7d6c5f1d3c2b9a8e7d6c", 1);

    // A key the collector does not know: refused for good (UNAUTHENTICATED), never retried.
    let stranger = exporter(&grpc, "optel_ik_not-a-real-key", &[]);
    match stranger.export(&sent, Duration::from_secs(20)) {
        Err(ExportError::Rejected(why)) => assert!(why.contains("Unauthenticated"), "{why}"),
        other => panic!("{other:?}"),
    }

    // One request per second per key: a burst meets RESOURCE_EXHAUSTED with the retry delay
    // of the HTTP route's `Retry-After`, which the SDK retries after that delay.
    let known = exporter(&grpc, &key, &[]);
    let throttled = (0..20).find_map(|_| match known.export(&sent, Duration::from_secs(20)) {
        Ok(()) => None,
        Err(ExportError::Retryable {
            reason,
            retry_after,
        }) => Some((reason, retry_after)),
        Err(e) => panic!("{e}"),
    });
    let (reason, retry_after) = throttled.expect("20 exports in a row were never rate limited");
    assert!(reason.contains("rate_limited"), "{reason}");
    assert!(retry_after.is_some(), "{reason}");

    // Refusals are counted as the HTTP routes' are.
    let metrics = support::agent()
        .get(format!("{}/metrics", server.url))
        .call()
        .unwrap()
        .into_body()
        .read_to_string()
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.contains("unauthenticated") && l.starts_with("optel_requests_rejected")),
        "{metrics}"
    );
}

#[test]
fn an_unreachable_grpc_endpoint_is_retryable() {
    // A port nobody listens on: bound, then closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let e = exporter(&format!("http://127.0.0.1:{port}"), "optel_ik_x", &[]);
    let sent = otlp_batch("5f1d3c2b9a8e7d6c5f1d3c2b9a8e7d6c", 1);
    assert!(matches!(
        e.export(&sent, Duration::from_secs(5)),
        Err(ExportError::Retryable { .. })
    ));
}
