//! Unit tests of the `otlp` module.
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
    assert!(
        e.targets
            .iter()
            .all(|t| t.protocol == OtlpProtocol::HttpJson)
    );
    assert_eq!(e.targets[0].headers.len(), 2);
    let err =
        OtlpExporter::from_env(env(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "thrift")])).unwrap_err();
    assert!(err.to_string().contains("\"thrift\""));
    #[cfg(not(feature = "otlp-grpc"))]
    {
        let err =
            OtlpExporter::from_env(env(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")])).unwrap_err();
        assert!(err.to_string().contains("otlp-grpc"), "{err}");
    }
}

/// With `grpc`, every signal goes to the base URL itself (default port 4317), a signal's own
/// variable wins, and nothing is started before the first export.
#[cfg(feature = "otlp-grpc")]
#[test]
fn grpc_endpoints_and_nothing_started_before_an_export() {
    let vars = [
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", "http/protobuf"),
        (
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://traces.example:4317",
        ),
    ];
    let e = OtlpExporter::from_env(|k| {
        vars.iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| (*v).to_owned())
    })
    .unwrap();
    let [traces, metrics, logs] = &e.targets;
    assert_eq!(traces.protocol, OtlpProtocol::Grpc);
    assert_eq!(traces.grpc_endpoint, "http://traces.example:4317");
    assert_eq!(metrics.grpc_endpoint, DEFAULT_OTLP_GRPC_ENDPOINT);
    assert_eq!(logs.url, "http://localhost:4318/v1/logs");
    let e = OtlpExporter::from_env(|k| match k {
        "OTEL_EXPORTER_OTLP_PROTOCOL" => Some("grpc".into()),
        "OTEL_EXPORTER_OTLP_ENDPOINT" => Some("http://collector:5317".into()),
        _ => None,
    })
    .unwrap();
    assert!(
        e.targets
            .iter()
            .all(|t| t.grpc_endpoint == "http://collector:5317")
    );
    assert!(!e.grpc.started());
    let e = OtlpExporter::new("http://127.0.0.1:4317").protocol(OtlpProtocol::Grpc);
    assert_eq!(e.targets[0].grpc_endpoint, "http://127.0.0.1:4317");
    assert!(!e.grpc.started());
}

/// Per-signal variables win over the generic ones, for that signal only; header keys and
/// values are percent-decoded (the OTLP exporter spec's W3C baggage format).
#[test]
fn per_signal_settings_win_and_headers_are_percent_decoded() {
    let vars = [
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
        ("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", "http/protobuf"),
        ("OTEL_EXPORTER_OTLP_COMPRESSION", "none"),
        ("OTEL_EXPORTER_OTLP_METRICS_COMPRESSION", "gzip"),
        (
            "OTEL_EXPORTER_OTLP_HEADERS",
            "Authorization=Bearer%20optel_ik_1,x-a%3Db=c%2Cd",
        ),
        (
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
            "Authorization=Bearer%20traces",
        ),
        ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "2500"),
    ];
    let e = OtlpExporter::from_env(|k| {
        vars.iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| (*v).to_owned())
    })
    .unwrap();
    let [traces, metrics, logs] = &e.targets;
    assert_eq!(traces.protocol, OtlpProtocol::HttpJson);
    assert_eq!(logs.protocol, OtlpProtocol::HttpProtobuf);
    assert!(!traces.gzip && metrics.gzip && !logs.gzip);
    assert_eq!(
        traces.headers,
        [("Authorization".to_owned(), "Bearer traces".to_owned())]
    );
    assert_eq!(
        metrics.headers,
        [
            ("Authorization".to_owned(), "Bearer optel_ik_1".to_owned()),
            ("x-a=b".to_owned(), "c,d".to_owned())
        ]
    );
    assert_eq!(traces.timeout, Some(Duration::from_millis(2500)));
    assert_eq!(metrics.timeout, None);
    assert_eq!(percent_decode("100%"), "100%");
    let err = OtlpExporter::from_env(|k| {
        (k == "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL").then(|| "thrift".to_owned())
    })
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL")
    );
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

#[test]
fn debug_output_never_shows_header_values() {
    let e = OtlpExporter::from_env(|k| {
        (k == "OTEL_EXPORTER_OTLP_HEADERS").then(|| "x-api-key=secret-123".to_owned())
    })
    .unwrap();
    let shown = format!("{e:?}");
    assert!(!shown.contains("secret-123"), "{shown}");
    assert!(shown.contains("x-api-key"), "{shown}");
}
