//! Unit tests of the OTLP codec and mappers.

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, NumberDataPoint, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;

use super::codec::status_protobuf;
use super::map::derived_uuid;
use super::*;

#[test]
fn status_protobuf_round_trips_through_prost() {
    #[derive(Clone, PartialEq, Message)]
    struct Status {
        #[prost(int32, tag = "1")]
        code: i32,
        #[prost(string, tag = "2")]
        message: String,
    }
    let bytes = status_protobuf(8, "rate_limited: slow down");
    let s = Status::decode(&bytes[..]).unwrap();
    assert_eq!(s.code, 8);
    assert_eq!(s.message, "rate_limited: slow down");
}

/// One `command_invocation` point of `total` successful `test` runs in a Sum of
/// `temporality`, from a resource named `service`.
fn invocations(
    service: &str,
    temporality: AggregationTemporality,
    monotonic: bool,
    start_ns: u64,
    time_ns: u64,
    total: i64,
) -> ExportMetricsServiceRequest {
    invocations_of(
        service,
        None,
        temporality,
        monotonic,
        start_ns,
        time_ns,
        total,
        "success",
    )
}

/// [`invocations`] with an install pseudonym and an outcome.
#[allow(clippy::too_many_arguments)]
fn invocations_of(
    service: &str,
    pseudonym: Option<&str>,
    temporality: AggregationTemporality,
    monotonic: bool,
    start_ns: u64,
    time_ns: u64,
    total: i64,
    outcome: &str,
) -> ExportMetricsServiceRequest {
    use opentelemetry_proto::tonic::metrics::v1::{
        Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
    };
    let kv = |k: &str, v: &str| KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..KeyValue::default()
    };
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: std::iter::once(kv("service.name", service))
                    .chain(pseudonym.map(|p| kv(PSEUDONYM_ATTRIBUTE, p)))
                    .collect(),
                ..Resource::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: COMMAND_METRIC.into(),
                    data: Some(metric::Data::Sum(Sum {
                        aggregation_temporality: temporality as i32,
                        is_monotonic: monotonic,
                        data_points: vec![NumberDataPoint {
                            // The official SDKs' attribute order is not promised stable.
                            attributes: if total % 2 == 0 {
                                vec![kv("command", "test"), kv("outcome", outcome)]
                            } else {
                                vec![kv("outcome", outcome), kv("command", "test")]
                            },
                            start_time_unix_nano: start_ns,
                            time_unix_nano: time_ns,
                            value: Some(number_data_point::Value::AsInt(total)),
                            ..NumberDataPoint::default()
                        }],
                    })),
                    ..Metric::default()
                }],
                ..ScopeMetrics::default()
            }],
            ..ResourceMetrics::default()
        }],
    }
}

fn ids(m: &Mapped) -> Vec<String> {
    m.batches
        .iter()
        .flat_map(|b| b.events.iter().map(|e| e.event_id.clone()))
        .collect()
}

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..KeyValue::default()
    }
}

fn ns(ms: i64) -> u64 {
    (ms as u64) * 1_000_000
}

/// Maps a metrics export against `marks` and applies its advances to them, as the handler
/// does with the store.
fn map_with(req: ExportMetricsServiceRequest, now: i64, marks: &mut metrics::Marks) -> Mapped {
    let m = map_metrics(req, "p", now, marks);
    for (k, v) in &m.advances {
        let e = marks.entry(*k).or_default();
        *e = (*e).max(*v);
    }
    m
}

/// Regression (issue 4): a cumulative series stopped at 1,000 (every later export refused,
/// "use delta": 999 then 1001 counted 999). Cumulative totals are turned into deltas against
/// a stored high-water mark, with stable ids per ordinal.
#[test]
fn cumulative_totals_become_deltas_of_any_size() {
    use AggregationTemporality::{Cumulative, Delta};
    let now = now_ms();
    let (start, t1, t2, t3) = (
        ns(now - 60_000),
        ns(now - 30_000),
        ns(now - 2_000),
        ns(now - 1_000),
    );
    let mut marks = metrics::Marks::new();
    let mut export = |temporality, start, t, total| {
        map_with(
            invocations("acme", temporality, true, start, t, total),
            now,
            &mut marks,
        )
    };
    let first = export(Cumulative, start, t1, 999);
    let second = export(Cumulative, start, t2, 1001);
    assert_eq!(
        (first.rejected, second.rejected),
        (0, 0),
        "{}",
        second.message
    );
    assert_eq!((ids(&first).len(), ids(&second).len()), (999, 2));
    assert!(ids(&second).iter().all(|id| !ids(&first).contains(id)));
    // The same export again (a retry) and an older one arriving late store nothing new.
    let again = export(Cumulative, start, t2, 1001);
    let late = export(Cumulative, start, t1, 999);
    assert_eq!((ids(&again).len(), ids(&late).len()), (0, 0));
    // A big jump is stored 1,000 at a time, the rest with the next exports.
    let big = export(Cumulative, start, t3, 3_500);
    assert_eq!(ids(&big).len(), MAX_POINT_INVOCATIONS as usize);
    assert_eq!(big.rejected, 0);
    assert!(big.message.contains("next exports"), "{}", big.message);
    // A reset (new start time) is a new series counted from 0.
    let reset = export(Cumulative, t2, t3, 3);
    assert_eq!(ids(&reset).len(), 3);
    // Delta points are separate invocations even with equal values.
    let d1 = ids(&export(Delta, start, t1, 2));
    let d2 = ids(&export(Delta, t1, t2, 2));
    assert!(d1.iter().all(|id| !d2.contains(id)));
    // Without the mark (a lost update), the same invocations get the same ids.
    let lost = map_metrics(
        invocations("acme", Cumulative, true, start, t2, 1001),
        "p",
        now,
        &metrics::Marks::from([(first.advances[0].0, 999)]),
    );
    assert_eq!(ids(&lost), ids(&second));

    // Refused, with a reason: no start time, not monotonic, a delta too large.
    for (req, why) in [
        (
            invocations("acme", Cumulative, true, 0, t1, 2),
            "no start time",
        ),
        (
            invocations("acme", Cumulative, false, start, t1, 2),
            "monotonic",
        ),
        (
            invocations("acme", Delta, true, start, t1, MAX_POINT_INVOCATIONS + 1),
            "export more often",
        ),
    ] {
        let m = map_with(req, now, &mut marks);
        assert!(m.batches.is_empty() && m.rejected > 0, "{why}");
        assert!(m.message.contains(why), "{}", m.message);
    }
}

/// Regression (issue 5): ids derived from delta points left out the resource, so two installs
/// sending the same point counted once.
#[test]
fn two_installs_sending_the_same_point_are_two() {
    use AggregationTemporality::{Cumulative, Delta};
    let now = now_ms();
    let (start, t1) = (ns(now - 60_000), ns(now - 30_000));
    for temporality in [Delta, Cumulative] {
        let mut marks = metrics::Marks::new();
        let mut export = |install| {
            map_with(
                invocations_of(
                    "acme",
                    Some(install),
                    temporality,
                    true,
                    start,
                    t1,
                    3,
                    "success",
                ),
                now,
                &mut marks,
            )
        };
        let (a, b) = (export("install-a"), export("install-b"));
        assert_eq!((ids(&a).len(), ids(&b).len()), (3, 3));
        assert!(
            ids(&a).iter().all(|id| !ids(&b).contains(id)),
            "{temporality:?}"
        );
    }
}

/// Regression (issue 3): `outcome=failure` points were accepted, neither stored nor reported.
#[test]
fn failure_points_are_failed_commands() {
    let now = now_ms();
    let mut req = invocations_of(
        "acme",
        None,
        AggregationTemporality::Delta,
        true,
        ns(now - 2_000),
        ns(now - 1_000),
        2,
        "failure",
    );
    let Some(metric::Data::Sum(sum)) =
        &mut req.resource_metrics[0].scope_metrics[0].metrics[0].data
    else {
        unreachable!("invocations() builds a Sum")
    };
    sum.data_points[0]
        .attributes
        .push(kv("error.type", "E_NO_MANIFEST"));
    let m = map_metrics(req, "p", now, &metrics::Marks::new());
    assert_eq!(m.rejected, 0, "{}", m.message);
    let events: Vec<_> = m.batches.iter().flat_map(|b| &b.events).collect();
    assert_eq!(events.len(), 2);
    assert!(
        events
            .iter()
            .all(|e| e.success == Some(false) && e.error_code.as_deref() == Some("E_NO_MANIFEST"))
    );
}

/// A small export cannot ask for millions of events: past [`MAX_REQUEST_EVENTS`], points
/// are refused (with a reason) before their events are made.
#[test]
fn one_export_maps_to_a_bounded_number_of_events() {
    use AggregationTemporality::Delta;
    let now = now_ms();
    let mut req = invocations("acme", Delta, true, ns(now - 2_000), ns(now - 1_000), 0);
    let metric = &mut req.resource_metrics[0].scope_metrics[0].metrics[0];
    let Some(metric::Data::Sum(sum)) = &mut metric.data else {
        unreachable!("invocations() builds a Sum")
    };
    let point = sum.data_points[0].clone();
    sum.data_points = (0..100)
        .map(|i| NumberDataPoint {
            time_unix_nano: point.time_unix_nano + i,
            value: Some(number_data_point::Value::AsInt(MAX_POINT_INVOCATIONS)),
            ..point.clone()
        })
        .collect();
    let m = map_metrics(req, "p", now, &metrics::Marks::new());
    let fit = MAX_REQUEST_EVENTS / MAX_POINT_INVOCATIONS as usize;
    assert_eq!(ids(&m).len(), MAX_REQUEST_EVENTS);
    assert_eq!(m.events, MAX_REQUEST_EVENTS);
    assert_eq!(m.rejected, (100 - fit) as i64);
    assert!(m.message.contains("smaller exports"), "{}", m.message);
}

mod spans {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, SpanFlags};

    use super::{kv, ns};
    use crate::now_ms;
    use crate::otlp::map_traces;

    fn span(name: &str, id: u8, parent: Option<u8>, kind: SpanKind) -> Span {
        let now = now_ms();
        Span {
            trace_id: vec![7; 16],
            span_id: vec![id; 8],
            parent_span_id: parent.map(|p| vec![p; 8]).unwrap_or_default(),
            name: name.into(),
            kind: kind as i32,
            start_time_unix_nano: ns(now - 2_000),
            end_time_unix_nano: ns(now - 1_000),
            ..Span::default()
        }
    }

    fn request(resource: Vec<(&str, &str)>, spans: Vec<Span>) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: resource.into_iter().map(|(k, v)| kv(k, v)).collect(),
                    ..Resource::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..ScopeSpans::default()
                }],
                ..ResourceSpans::default()
            }],
        }
    }

    /// Regression (issue 2): one CLI run with a root span and two child spans became three
    /// commands, and a server span name ("GET /users/{id}") was refused.
    #[test]
    fn only_root_internal_spans_are_commands() {
        let mut remote_child = span("acme", 5, Some(9), SpanKind::Internal);
        remote_child.trace_id = vec![8; 16];
        remote_child.flags =
            SpanFlags::ContextHasIsRemoteMask as u32 | SpanFlags::ContextIsRemoteMask as u32;
        let mut local_orphan = span("phase", 6, Some(9), SpanKind::Internal);
        local_orphan.flags = SpanFlags::ContextHasIsRemoteMask as u32;
        let req = request(
            vec![("service.name", "acme")],
            vec![
                span("acme", 1, None, SpanKind::Internal),
                span("resolve", 2, Some(1), SpanKind::Internal),
                span("GET /users/{id}", 3, Some(1), SpanKind::Client),
                span("GET /users/{id}", 4, None, SpanKind::Server),
                remote_child,
                local_orphan,
                span("acme build", 10, None, SpanKind::Internal),
            ],
        );
        let m = map_traces(req, "p", now_ms());
        let names: Vec<&str> = m
            .batches
            .iter()
            .flat_map(|b| &b.events)
            .map(|e| e.name.as_str())
            .collect();
        assert_eq!(names, ["acme", "acme"], "{}", m.message);
        assert_eq!(m.rejected, 5);
    }

    /// Regression (issue 6): `host.arch=AMD64` or `os.type=Linux` refused every item.
    #[test]
    fn resource_platforms_are_normalised() {
        let req = request(
            vec![
                ("service.name", "acme"),
                ("os.type", "Linux"),
                ("host.arch", "AMD64"),
            ],
            vec![span("acme", 1, None, SpanKind::Internal)],
        );
        let m = map_traces(req, "p", now_ms());
        assert_eq!(m.rejected, 0, "{}", m.message);
        assert_eq!(
            (m.batches[0].os.as_str(), m.batches[0].arch.as_str()),
            ("linux", "x86_64")
        );
        let req = request(
            vec![("os.type", "Plan 9"), ("host.arch", "quantum")],
            vec![span("acme", 1, None, SpanKind::Internal)],
        );
        let m = map_traces(req, "p", now_ms());
        assert_eq!(m.rejected, 0, "{}", m.message);
        assert_eq!(
            (m.batches[0].os.as_str(), m.batches[0].arch.as_str()),
            ("unknown", "unknown")
        );
    }
}

mod limits {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    use prost::Message;

    use crate::otlp::Encoding;
    use crate::otlp::limit::{MAX_REQUEST_ITEMS, Ty, check};

    fn spans(n: usize, span: &Span) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![span.clone(); n],
                    ..ScopeSpans::default()
                }],
                ..ResourceSpans::default()
            }],
        }
    }

    /// Regression (issue 8): a 4 MiB protobuf of empty spans cost ~545 MB once decoded; it is
    /// now refused by a scan that allocates nothing.
    #[test]
    fn empty_spans_are_counted_before_decoding() {
        let bomb = spans(2_000_000, &Span::default()).encode_to_vec();
        assert!(bomb.len() <= 4 * 1024 * 1024, "{}", bomb.len());
        let e = check(&bomb, Encoding::Protobuf, Ty::TraceRequest).unwrap_err();
        assert_eq!((e.status.as_u16(), e.code), (413, "too_many_items"));
        let json = serde_json::to_vec(&spans(500_000, &Span::default())).unwrap();
        let e = check(&json, Encoding::Json, Ty::TraceRequest).unwrap_err();
        assert_eq!(e.code, "too_many_items");

        // A real-looking request passes, with the counts decoding would make.
        let span = Span {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            name: "acme".into(),
            attributes: vec![super::kv("a", "b"), super::kv("c", "d")],
            ..Span::default()
        };
        let ok = spans(MAX_REQUEST_ITEMS, &span).encode_to_vec();
        let counts = check(&ok, Encoding::Protobuf, Ty::TraceRequest).unwrap();
        assert_eq!(counts.items, MAX_REQUEST_ITEMS);
        // resource spans + scope spans + per span: itself, 2 key-values, 2 values.
        assert_eq!(counts.messages, 2 + 5 * MAX_REQUEST_ITEMS);
        let over = spans(MAX_REQUEST_ITEMS + 1, &span).encode_to_vec();
        assert!(check(&over, Encoding::Protobuf, Ty::TraceRequest).is_err());
        assert!(check(b"\x0a\xff", Encoding::Protobuf, Ty::TraceRequest).is_err());
    }
}

#[test]
fn derived_ids_are_stable_and_delimited() {
    // Derived ids are stable (a re-sent item maps to the same event), distinct per input,
    // and the parts are delimited ("ab" is not "a" + "b").
    let id = derived_uuid(&[b"a"]);
    assert!(optel_wire::is_uuid(&id));
    assert_eq!(id, derived_uuid(&[&b"ab"[..1]]));
    assert_ne!(id, derived_uuid(&[b"b"]));
    assert_ne!(derived_uuid(&[b"ab"]), derived_uuid(&[b"a", b"b"]));
}

/// A cumulative series never marks more invocations than the export stored: past the
/// request's event budget the mark stops where the stored events stop.
#[test]
fn a_mark_never_runs_ahead_of_the_stored_events() {
    use AggregationTemporality::{Cumulative, Delta};
    let now = now_ms();
    let (start, t) = (ns(now - 60_000), ns(now - 1_000));
    let mut req = invocations("acme", Delta, true, start, t, 0);
    let Some(metric::Data::Sum(sum)) =
        &mut req.resource_metrics[0].scope_metrics[0].metrics[0].data
    else {
        unreachable!("invocations() builds a Sum")
    };
    let point = sum.data_points[0].clone();
    // Delta points of 1,000, 1,000, ..., and 700: room for 300 more events.
    let fill = MAX_REQUEST_EVENTS as i64 - 300;
    let full = fill / MAX_POINT_INVOCATIONS;
    sum.data_points = (0..=full)
        .map(|i| NumberDataPoint {
            time_unix_nano: t + i as u64,
            value: Some(number_data_point::Value::AsInt(if i < full {
                MAX_POINT_INVOCATIONS
            } else {
                fill % MAX_POINT_INVOCATIONS
            })),
            ..point.clone()
        })
        .collect();
    let cumulative = invocations("acme", Cumulative, true, start, t, 800);
    let metric = cumulative.resource_metrics[0].scope_metrics[0].metrics[0].clone();
    req.resource_metrics[0].scope_metrics[0]
        .metrics
        .push(metric);
    let m = map_metrics(req, "p", now, &metrics::Marks::new());
    assert_eq!(m.events, MAX_REQUEST_EVENTS);
    assert_eq!(m.advances.len(), 1);
    assert_eq!(
        m.advances[0].1, 300,
        "only the 300 stored invocations are marked"
    );
    assert!(m.message.contains("next exports"), "{}", m.message);
}
