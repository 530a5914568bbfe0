//! The OTLP exporter plugged into the SDK, against a real HTTP listener on 127.0.0.1 that
//! records what it receives.
// Test code: a failed unwrap is a failed test with a clear location (clippy.toml allows it
// in #[test] functions only, not in their helpers).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg(feature = "otlp")]

use std::io::Read;
use std::sync::mpsc;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

mod support;

use support::{Received, capture};

fn header<'a>(r: &'a Received, name: &str) -> Option<&'a str> {
    r.header(name)
}

/// Serves HTTP/1.1 requests (one per connection), answering 200, and reports each.
fn recorder() -> (String, mpsc::Receiver<Received>) {
    recorder_answering(|_| 200)
}

/// [`recorder`] answering each path with the status `status(path)`.
fn recorder_answering(status: fn(&str) -> u16) -> (String, mpsc::Receiver<Received>) {
    capture(move |path| (status(path), ""))
}

#[test]
fn sdk_sends_gzip_protobuf_signals_to_the_otlp_routes() {
    let (url, received) = recorder();
    let dir = tempfile::tempdir().unwrap();
    let telemetry = optel::Telemetry::builder("acme", "1.2.0")
        .data_dir(dir.path())
        .default_consent(optel::Consent::On)
        .exit_timeout(Duration::from_secs(5))
        .exporter(optel::otlp::OtlpExporter::new(&url))
        .init();
    assert!(telemetry.is_enabled(), "{}", telemetry.status());
    optel::track_command_execution("build").fail("E_NO_MANIFEST");
    drop(optel::track_command_execution("build"));
    optel::global().feature("cache");
    telemetry.shutdown();

    // Commands as spans, the feature as a log record; no metric (nothing was dropped).
    let mut got: Vec<Received> = (0..2)
        .map(|_| received.recv_timeout(Duration::from_secs(10)).unwrap())
        .collect();
    got.sort_by(|a, b| a.path.cmp(&b.path));
    let paths: Vec<&str> = got.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(paths, ["/v1/logs", "/v1/traces"]);
    for r in &got {
        assert_eq!(header(r, "content-type"), Some("application/x-protobuf"));
        assert_eq!(header(r, "content-encoding"), Some("gzip"));
    }
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(&got[1].body[..])
        .read_to_end(&mut raw)
        .unwrap();
    let traces = ExportTraceServiceRequest::decode(&raw[..]).unwrap();
    let spans = &traces.resource_spans[0].scope_spans[0].spans;
    assert_eq!(spans.len(), 2, "one span per command");
    let resource = traces.resource_spans[0].resource.as_ref().unwrap();
    assert!(
        resource
            .attributes
            .iter()
            .any(|kv| kv.key == "service.name")
    );
    assert!(!resource.attributes.iter().any(|kv| kv.key == "host.name"));
    assert_eq!(optel::queue_status(dir.path()).unwrap().pending_events, 0);
}

/// A backend without logs (404 on `/v1/logs`, as a traces-only backend answers): the exporter
/// marks logs unsupported and stops sending them, and the traces still go out, every time.
#[test]
fn a_404_marks_one_signal_unsupported_and_keeps_the_others() {
    use optel::export::Exporter;
    use optel_wire::{Batch, Event, EventType, Timestamp};
    let (url, received) = recorder_answering(|path| if path == "/v1/logs" { 404 } else { 200 });
    let exporter = optel::otlp::OtlpExporter::new(&url);
    let mut batch = Batch::new("acme", "1.0.0", "p", "linux", "x86_64");
    for (i, kind) in [EventType::Feature, EventType::Command]
        .into_iter()
        .enumerate()
    {
        batch.events.push(Event::new(
            format!("00000000-0000-4000-8000-00000000000{i}"),
            kind,
            "x",
            Timestamp::now(),
            "00000000-0000-4000-8000-000000000009",
        ));
    }
    for _ in 0..2 {
        exporter.export(&batch, Duration::from_secs(5)).unwrap();
    }
    let paths: Vec<String> = (0..3)
        .map(|_| received.recv_timeout(Duration::from_secs(5)).unwrap().path)
        .collect();
    assert_eq!(paths, ["/v1/traces", "/v1/logs", "/v1/traces"]);
    assert!(received.recv_timeout(Duration::from_millis(300)).is_err());
}
