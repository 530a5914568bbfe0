//! OTLP/HTTP export (feature `otlp`): optel batches as OpenTelemetry signals, for teams that
//! already run an OpenTelemetry Collector or an OTLP backend and want usage next to their
//! other signals.
//!
//! # Mapping
//! One mapping, shared with optel's collector (`docs/otlp.md` has the full table), so that an
//! event exported here comes back from the collector as it was recorded:
//! - Every command event becomes one **span**, as the OpenTelemetry semantic conventions for
//!   CLI programs describe an execution: kind `INTERNAL`, no parent (a root span: the
//!   collector counts root spans only), named after the command, start and end from the
//!   event's timestamp and duration, the trace id the session id (one trace per run of the
//!   tool). A failed command has status `ERROR` and its error code in `error.type`; the
//!   event's attributes are span attributes under their own keys.
//! - Commands are **not** also sent as a `command_invocation` metric: the collector counts
//!   both root spans and that metric's points as invocations, so sending both would count each
//!   command twice. (Earlier versions sent a delta Sum for every command and a span for failed
//!   ones only.) A backend that wants the count as a metric can derive it from the spans, e.g.
//!   with the OpenTelemetry Collector's `spanmetrics` connector.
//! - Every other event (feature, method, custom) becomes a log record whose `event_name` is
//!   the event's name, with the attribute `optel.event_type` (`feature`, `method`, `custom`)
//!   and the event's attributes under their own keys; no body.
//! - Events dropped on the install (`dropped_events`) become the delta Sum
//!   `optel.dropped_events`.
//! - Resource attributes: `service.name`, `service.version`, `os.type`, `host.arch` (in the
//!   semantic conventions' spelling: `darwin`, `amd64`, `arm64`), `telemetry.sdk.name`
//!   (`optel`), `telemetry.sdk.language` (`rust`), `telemetry.sdk.version`, and
//!   `optel.install.pseudonym` (the rotating pseudonym). Never `host.name` or anything else
//!   about the machine or the user.
//!
//! # Configuration ([`OtlpExporter::from_env`], OTLP exporter spec)
//! | variable | effect |
//! |---|---|
//! | `OTEL_EXPORTER_OTLP_ENDPOINT` | base URL; signals go to `<base>/v1/metrics`, `/v1/traces`, `/v1/logs` (default `http://localhost:4318`) |
//! | `OTEL_EXPORTER_OTLP_{METRICS,TRACES,LOGS}_ENDPOINT` | the URL of one signal, used as is |
//! | `OTEL_EXPORTER_OTLP_PROTOCOL` | `http/protobuf` (default) or `http/json` |
//! | `OTEL_EXPORTER_OTLP_COMPRESSION` | `gzip` (default here) or `none` |
//! | `OTEL_EXPORTER_OTLP_HEADERS` | `key=value,key2=value2` sent with every request |
//!
//! Retries follow the OTLP spec: only 429, 502, 503 and 504 (and network errors) are
//! retryable; any other non-2xx answer drops the batch. A batch is sent as up to three
//! requests (traces, logs, metrics); when one fails retryably the whole batch is retried, so an
//! OTLP backend may see a signal twice (optel's own collector deduplicates by event id, OTLP
//! has no such id).

use std::time::Duration;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, Status, span, status,
};
use optel_wire::{AttributeValue, Batch, EventType};

use crate::export::{ExportError, ExportResult, Exporter, Post, post};

/// Default OTLP/HTTP endpoint (the spec's default).
pub const DEFAULT_OTLP_ENDPOINT: &str = "http://localhost:4318";

/// `AGGREGATION_TEMPORALITY_DELTA` of the OTLP metrics proto.
const TEMPORALITY_DELTA: i32 = 1;
/// `SEVERITY_NUMBER_INFO`.
const SEVERITY_INFO: i32 = 9;

/// Encoding of OTLP request bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OtlpProtocol {
    /// `http/protobuf`: binary protobuf, `application/x-protobuf` (the spec's default).
    #[default]
    HttpProtobuf,
    /// `http/json`: the OTLP JSON mapping, `application/json`.
    HttpJson,
}

/// A configuration value the exporter cannot use.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct OtlpConfigError(String);

/// Sends batches to an OTLP/HTTP endpoint (see the [module docs](self) for the mapping).
#[derive(Debug)]
pub struct OtlpExporter {
    agent: ureq::Agent,
    metrics_url: String,
    traces_url: String,
    logs_url: String,
    headers: Vec<(String, String)>,
    protocol: OtlpProtocol,
    gzip: bool,
}

impl OtlpExporter {
    /// An exporter to the base URL `endpoint` (`http://localhost:4318`), protobuf, gzip.
    pub fn new(endpoint: &str) -> Self {
        let base = endpoint.trim_end_matches('/');
        Self {
            agent: crate::export::agent(concat!("optel/", env!("CARGO_PKG_VERSION"))),
            metrics_url: format!("{base}/v1/metrics"),
            traces_url: format!("{base}/v1/traces"),
            logs_url: format!("{base}/v1/logs"),
            headers: Vec::new(),
            protocol: OtlpProtocol::HttpProtobuf,
            gzip: true,
        }
    }

    /// An exporter configured by the `OTEL_EXPORTER_OTLP_*` variables read through `env`
    /// (pass `|k| std::env::var(k).ok()`), see the [module docs](self).
    ///
    /// # Errors
    /// An unknown protocol or compression, or a header without `=`.
    pub fn from_env(env: impl Fn(&str) -> Option<String>) -> Result<Self, OtlpConfigError> {
        let base = env("OTEL_EXPORTER_OTLP_ENDPOINT")
            .filter(|v| !v.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_OTLP_ENDPOINT.to_owned());
        let mut exporter = Self::new(base.trim());
        for (var, url) in [
            (
                "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
                &mut exporter.metrics_url,
            ),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                &mut exporter.traces_url,
            ),
            ("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", &mut exporter.logs_url),
        ] {
            if let Some(v) = env(var).filter(|v| !v.trim().is_empty()) {
                v.trim().clone_into(url);
            }
        }
        if let Some(p) = env("OTEL_EXPORTER_OTLP_PROTOCOL") {
            exporter.protocol = match p.trim() {
                "http/protobuf" => OtlpProtocol::HttpProtobuf,
                "http/json" => OtlpProtocol::HttpJson,
                other => {
                    return Err(OtlpConfigError(format!(
                        "OTEL_EXPORTER_OTLP_PROTOCOL {other:?} is not supported: use http/protobuf or http/json"
                    )));
                }
            };
        }
        if let Some(c) = env("OTEL_EXPORTER_OTLP_COMPRESSION") {
            exporter.gzip = match c.trim() {
                "gzip" => true,
                "none" => false,
                other => {
                    return Err(OtlpConfigError(format!(
                        "OTEL_EXPORTER_OTLP_COMPRESSION {other:?} is not supported: use gzip or none"
                    )));
                }
            };
        }
        if let Some(h) = env("OTEL_EXPORTER_OTLP_HEADERS") {
            for pair in h.split(',').filter(|p| !p.trim().is_empty()) {
                let (k, v) = pair.split_once('=').ok_or_else(|| {
                    OtlpConfigError(format!(
                        "OTEL_EXPORTER_OTLP_HEADERS entry {pair:?} is not key=value"
                    ))
                })?;
                exporter
                    .headers
                    .push((k.trim().to_owned(), v.trim().to_owned()));
            }
        }
        Ok(exporter)
    }

    /// The encoding. Default: [`OtlpProtocol::HttpProtobuf`].
    #[must_use]
    pub fn with_protocol(mut self, protocol: OtlpProtocol) -> Self {
        self.protocol = protocol;
        self
    }

    /// Whether bodies are gzip-compressed. Default: `true`.
    #[must_use]
    pub fn with_gzip(mut self, gzip: bool) -> Self {
        self.gzip = gzip;
        self
    }

    /// The URLs of the metrics, traces and logs routes, in that order.
    pub fn urls(&self) -> [&str; 3] {
        [&self.metrics_url, &self.traces_url, &self.logs_url]
    }

    fn send<T: prost::Message + serde::Serialize>(
        &self,
        url: &str,
        message: &T,
        timeout: Duration,
    ) -> ExportResult {
        let (body, content_type) = match self.protocol {
            OtlpProtocol::HttpProtobuf => (message.encode_to_vec(), "application/x-protobuf"),
            OtlpProtocol::HttpJson => (
                serde_json::to_vec(message).map_err(|e| ExportError::Rejected(e.to_string()))?,
                "application/json",
            ),
        };
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let request = Post {
            url,
            content_type,
            headers: &headers,
            body: &body,
            gzip: self.gzip,
            timeout,
        };
        post(&self.agent, &request, classify_otlp)
    }
}

impl Exporter for OtlpExporter {
    fn export(&self, batch: &Batch, timeout: Duration) -> ExportResult {
        let deadline = std::time::Instant::now() + timeout;
        let left = || deadline.saturating_duration_since(std::time::Instant::now());
        let signals = Signals::from_batch(batch);
        if let Some(m) = &signals.metrics {
            self.send(&self.metrics_url, m, left())?;
        }
        if let Some(t) = &signals.traces {
            self.send(&self.traces_url, t, left())?;
        }
        if let Some(l) = &signals.logs {
            self.send(&self.logs_url, l, left())?;
        }
        Ok(())
    }
}

/// OTLP's retry rule: 429, 502, 503, 504 are retryable, other non-2xx are final.
fn classify_otlp(status: u16, retry_after: Option<Duration>) -> ExportResult {
    match status {
        200..=299 => Ok(()),
        429 | 502 | 503 | 504 => Err(ExportError::Retryable {
            reason: format!("OTLP endpoint answered HTTP {status}"),
            retry_after,
        }),
        _ => Err(ExportError::Rejected(format!(
            "OTLP endpoint answered HTTP {status}"
        ))),
    }
}

/// The three OTLP requests of one batch; `None` for a signal with nothing in it.
#[derive(Debug, Default)]
struct Signals {
    metrics: Option<ExportMetricsServiceRequest>,
    traces: Option<ExportTraceServiceRequest>,
    logs: Option<ExportLogsServiceRequest>,
}

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn s(value: &str) -> any_value::Value {
    any_value::Value::StringValue(value.to_owned())
}

fn nanos(unix_ms: i64) -> u64 {
    u64::try_from(unix_ms)
        .unwrap_or(0)
        .saturating_mul(1_000_000)
}

/// `os.type` of the OpenTelemetry semantic conventions.
fn os_type(os: &str) -> &str {
    match os {
        "macos" => "darwin",
        other => other,
    }
}

/// `host.arch` of the OpenTelemetry semantic conventions.
fn host_arch(arch: &str) -> &str {
    match arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "x86",
        "arm" => "arm32",
        "powerpc64" => "ppc64",
        "s390x" => "s390x",
        other => other,
    }
}

fn resource(batch: &Batch) -> Resource {
    Resource {
        attributes: vec![
            kv("service.name", s(&batch.service_name)),
            kv("service.version", s(&batch.service_version)),
            kv("os.type", s(os_type(&batch.os))),
            kv("host.arch", s(host_arch(&batch.arch))),
            kv("telemetry.sdk.name", s("optel")),
            kv("telemetry.sdk.language", s("rust")),
            kv("telemetry.sdk.version", s(env!("CARGO_PKG_VERSION"))),
            kv("optel.install.pseudonym", s(&batch.pseudonym)),
        ],
        ..Default::default()
    }
}

fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: "optel".to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        ..Default::default()
    }
}

fn delta_sum(name: &str, description: &str, points: Vec<NumberDataPoint>) -> Metric {
    Metric {
        name: name.to_owned(),
        description: description.to_owned(),
        unit: "1".to_owned(),
        data: Some(metric::Data::Sum(Sum {
            data_points: points,
            aggregation_temporality: TEMPORALITY_DELTA,
            is_monotonic: true,
        })),
        ..Default::default()
    }
}

fn attribute_value(v: &AttributeValue) -> any_value::Value {
    match v {
        AttributeValue::Bool(b) => any_value::Value::BoolValue(*b),
        AttributeValue::Int(i) => any_value::Value::IntValue(*i),
        AttributeValue::Float(f) => any_value::Value::DoubleValue(*f),
        AttributeValue::String(st) => s(st),
    }
}

/// The attribute naming an event's optel type on a log record (read by the collector).
pub const EVENT_TYPE_ATTRIBUTE: &str = "optel.event_type";

/// 16 bytes of a UUID (the session or event id), or `fallback` if it is not one.
fn uuid_bytes(id: &str, fallback: u8) -> [u8; 16] {
    optel_wire::parse_uuid(id)
        .filter(|b| b.iter().any(|&x| x != 0))
        .unwrap_or([fallback; 16])
}

impl Signals {
    fn from_batch(batch: &Batch) -> Self {
        let mut spans = Vec::new();
        let mut logs = Vec::new();
        for e in &batch.events {
            let ts = e.timestamp.unix_ms();
            if e.event_type == EventType::Command {
                spans.push(command_span(e, ts));
            } else {
                let mut attributes = vec![kv(EVENT_TYPE_ATTRIBUTE, s(e.event_type.as_str()))];
                attributes.extend(e.metadata.iter().map(|(k, v)| kv(k, attribute_value(v))));
                logs.push(LogRecord {
                    time_unix_nano: nanos(ts),
                    observed_time_unix_nano: nanos(ts),
                    severity_number: SEVERITY_INFO,
                    severity_text: "INFO".to_owned(),
                    event_name: e.name.clone(),
                    trace_id: uuid_bytes(&e.session_id, 1).to_vec(),
                    attributes,
                    ..Default::default()
                });
            }
        }
        let mut metrics = Vec::new();
        if batch.dropped_events > 0 {
            let now = nanos(optel_wire::Timestamp::now().unix_ms());
            metrics.push(delta_sum(
                "optel.dropped_events",
                "Events dropped on the install because its queue was full.",
                vec![NumberDataPoint {
                    start_time_unix_nano: now,
                    time_unix_nano: now + 1,
                    value: Some(number_data_point::Value::AsInt(
                        i64::try_from(batch.dropped_events).unwrap_or(i64::MAX),
                    )),
                    ..Default::default()
                }],
            ));
        }
        Signals {
            metrics: (!metrics.is_empty()).then(|| ExportMetricsServiceRequest {
                resource_metrics: vec![ResourceMetrics {
                    resource: Some(resource(batch)),
                    scope_metrics: vec![ScopeMetrics {
                        scope: Some(scope()),
                        metrics,
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
            }),
            traces: (!spans.is_empty()).then(|| ExportTraceServiceRequest {
                resource_spans: vec![ResourceSpans {
                    resource: Some(resource(batch)),
                    scope_spans: vec![ScopeSpans {
                        scope: Some(scope()),
                        spans,
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
            }),
            logs: (!logs.is_empty()).then(|| ExportLogsServiceRequest {
                resource_logs: vec![ResourceLogs {
                    resource: Some(resource(batch)),
                    scope_logs: vec![ScopeLogs {
                        scope: Some(scope()),
                        log_records: logs,
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
            }),
        }
    }
}

/// A command as a root span of kind `INTERNAL` (the CLI semantic conventions' execution
/// span): trace id = the session id, span id = the event id's last 8 bytes.
fn command_span(e: &optel_wire::Event, ts: i64) -> Span {
    let trace_id = uuid_bytes(&e.session_id, 1).to_vec();
    let event = uuid_bytes(&e.event_id, 1);
    let span_id = event[8..].to_vec();
    let start = nanos(ts);
    let end = start + e.duration_ms.unwrap_or(0).saturating_mul(1_000_000);
    let mut attributes: Vec<KeyValue> = e
        .metadata
        .iter()
        .filter(|(k, _)| k.as_str() != "error.type")
        .map(|(k, v)| kv(k, attribute_value(v)))
        .collect();
    let status = if e.success == Some(false) {
        let code = e.error_code.as_deref().unwrap_or("_OTHER");
        attributes.push(kv("error.type", s(code)));
        Some(Status {
            code: status::StatusCode::Error as i32,
            message: format!("command failed with error code {code}"),
        })
    } else {
        None
    };
    Span {
        trace_id,
        span_id,
        name: e.name.clone(),
        kind: span::SpanKind::Internal as i32,
        start_time_unix_nano: start,
        end_time_unix_nano: end,
        attributes,
        status,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use optel_wire::{Event, Timestamp};
    use serde_json::Value;

    fn batch() -> Batch {
        let mut b = Batch::new("acme", "1.2.0", "abc123", "macos", "aarch64");
        let mk = |i: u32, t: EventType, name: &str| {
            Event::new(
                format!("0123abcd-0000-4000-8000-{i:012}"),
                t,
                name,
                Timestamp::from_unix_ms(1_700_000_000_000 + i64::from(i)),
                "00000000-0000-4000-8000-000000000000",
            )
        };
        let mut ok = mk(1, EventType::Command, "build");
        ok.success = Some(true);
        let mut ok2 = mk(2, EventType::Command, "build");
        ok2.success = Some(true);
        let mut failed = mk(3, EventType::Command, "build");
        failed.success = Some(false);
        failed.error_code = Some("E_NO_MANIFEST".into());
        failed.duration_ms = Some(12);
        let mut feature = mk(4, EventType::Feature, "cache");
        feature
            .metadata
            .insert("hits".into(), AttributeValue::Int(9_007_199_254_740_993));
        b.events = vec![ok, ok2, failed, feature];
        b.dropped_events = 2;
        b
    }

    /// Every object key in lowerCamelCase (no `_`), recursively.
    fn assert_camel_case(v: &Value, path: &str) {
        match v {
            Value::Object(map) => {
                for (k, child) in map {
                    assert!(!k.contains('_'), "key {path}.{k} is not lowerCamelCase");
                    assert!(
                        k.chars().next().is_some_and(|c| c.is_ascii_lowercase()),
                        "{path}.{k}"
                    );
                    assert_camel_case(child, &format!("{path}.{k}"));
                }
            }
            Value::Array(items) => items.iter().for_each(|i| assert_camel_case(i, path)),
            _ => {}
        }
    }

    fn attr<'a>(attrs: &'a Value, key: &str) -> &'a Value {
        attrs
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["key"] == key)
            .map(|a| &a["value"])
            .unwrap_or_else(|| panic!("no attribute {key}"))
    }

    #[test]
    fn resource_and_dropped_events_follow_the_otlp_json_rules() {
        let signals = Signals::from_batch(&batch());
        let json = serde_json::to_value(signals.metrics.unwrap()).unwrap();
        assert_camel_case(&json, "");
        let rm = &json["resourceMetrics"][0];
        let res = &rm["resource"]["attributes"];
        assert_eq!(attr(res, "service.name")["stringValue"], "acme");
        assert_eq!(attr(res, "os.type")["stringValue"], "darwin");
        assert_eq!(attr(res, "host.arch")["stringValue"], "arm64");
        assert_eq!(attr(res, "telemetry.sdk.name")["stringValue"], "optel");
        assert_eq!(
            attr(res, "optel.install.pseudonym")["stringValue"],
            "abc123"
        );
        assert!(
            !res.to_string().contains("host.name"),
            "never the host name"
        );
        // Commands are spans only (a metric as well would count them twice).
        let metrics = rm["scopeMetrics"][0]["metrics"].as_array().unwrap();
        assert_eq!(metrics.len(), 1);
        let dropped = &metrics[0];
        assert_eq!(dropped["name"], "optel.dropped_events");
        // Enums are integers; 64-bit integers are strings.
        assert_eq!(dropped["sum"]["aggregationTemporality"], 1);
        assert_eq!(dropped["sum"]["dataPoints"][0]["asInt"], "2");
    }

    /// Regression (issue 3): failed commands went out twice (a `failure` metric point and an
    /// ERROR span) and successes only as the metric; every command is now one root span.
    #[test]
    fn every_command_is_one_root_internal_span() {
        let signals = Signals::from_batch(&batch());
        let json = serde_json::to_value(signals.traces.unwrap()).unwrap();
        assert_camel_case(&json, "");
        let spans = json["resourceSpans"][0]["scopeSpans"][0]["spans"]
            .as_array()
            .unwrap();
        assert_eq!(spans.len(), 3, "one span per command");
        for sp in spans {
            assert_eq!(sp["name"], "build");
            assert_eq!(sp["kind"], 1, "INTERNAL");
            assert!(
                sp.get("parentSpanId").is_none_or(|p| p == ""),
                "a root span"
            );
            assert_eq!(
                sp["traceId"], "00000000000040008000000000000000",
                "the session"
            );
        }
        assert!(spans[0]["status"].is_null());
        let sp = &spans[2];
        assert_eq!(sp["spanId"], "8000000000000003");
        assert_eq!(sp["status"]["code"], 2);
        assert_eq!(
            attr(&sp["attributes"], "error.type")["stringValue"],
            "E_NO_MANIFEST"
        );
        assert_eq!(sp["startTimeUnixNano"], "1700000000003000000");
        assert_eq!(sp["endTimeUnixNano"], "1700000000015000000");
    }

    /// Regression (issue 1): the record's name was `optel.feature` and keys came back
    /// prefixed (`optel.hits`), so the collector stored a custom event `optel.feature`.
    #[test]
    fn other_events_are_log_records_named_after_the_event() {
        let signals = Signals::from_batch(&batch());
        let json = serde_json::to_value(signals.logs.unwrap()).unwrap();
        assert_camel_case(&json, "");
        let records = json["resourceLogs"][0]["scopeLogs"][0]["logRecords"]
            .as_array()
            .unwrap();
        assert_eq!(records.len(), 1);
        let r = &records[0];
        assert_eq!(r["eventName"], "cache");
        assert_eq!(
            attr(&r["attributes"], "optel.event_type")["stringValue"],
            "feature"
        );
        assert!(
            r.get("body").is_none_or(Value::is_null),
            "no free-text body"
        );
        assert_eq!(r["severityNumber"], 9);
        assert_eq!(
            attr(&r["attributes"], "hits")["intValue"],
            "9007199254740993"
        );
    }

    #[test]
    fn protobuf_round_trips() {
        use prost::Message;
        let t = Signals::from_batch(&batch()).traces.unwrap();
        let bytes = t.encode_to_vec();
        assert_eq!(ExportTraceServiceRequest::decode(&bytes[..]).unwrap(), t);
    }

    #[test]
    fn endpoint_rules() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                vars.iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        let e = OtlpExporter::from_env(env(&[])).unwrap();
        assert_eq!(
            e.urls(),
            [
                "http://localhost:4318/v1/metrics",
                "http://localhost:4318/v1/traces",
                "http://localhost:4318/v1/logs"
            ]
        );
        let e = OtlpExporter::from_env(env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://otel.example:4318/"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "https://traces.example/custom",
            ),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "api-key=s3cret, x-team=cli"),
        ]))
        .unwrap();
        assert_eq!(e.urls()[0], "https://otel.example:4318/v1/metrics");
        assert_eq!(e.urls()[1], "https://traces.example/custom");
        assert_eq!(e.protocol, OtlpProtocol::HttpJson);
        assert_eq!(e.headers.len(), 2);
        let err =
            OtlpExporter::from_env(env(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")])).unwrap_err();
        assert!(err.to_string().contains("\"grpc\""));
    }

    #[test]
    fn only_the_spec_statuses_are_retried() {
        for code in [429, 502, 503, 504] {
            assert!(matches!(
                classify_otlp(code, None),
                Err(ExportError::Retryable { .. })
            ));
        }
        for code in [400, 401, 404, 500, 501] {
            assert!(matches!(
                classify_otlp(code, None),
                Err(ExportError::Rejected(_))
            ));
        }
        assert!(classify_otlp(200, None).is_ok());
    }
}
