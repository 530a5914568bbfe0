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
use super::privacy::{is_identifying_key, looks_like_ip};
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
                attributes: vec![kv("service.name", service)],
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
                                vec![kv("command", "test"), kv("outcome", "success")]
                            } else {
                                vec![kv("outcome", "success"), kv("command", "test")]
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

/// Regression: the official SDKs export cumulative sums by default, which were refused
/// ("must use delta temporality"), so an SDK left at its defaults stored no invocation.
#[test]
fn cumulative_totals_map_to_stable_ids_per_series() {
    use AggregationTemporality::{Cumulative, Delta};
    let now = now_ms();
    let ns = |ms: i64| (ms as u64) * 1_000_000;
    let (start, t1, t2) = (ns(now - 60_000), ns(now - 30_000), ns(now - 1_000));
    let map = |req| map_metrics(req, "p", now);
    let first = map(invocations("acme", Cumulative, true, start, t1, 2));
    let second = map(invocations("acme", Cumulative, true, start, t2, 5));
    assert_eq!(
        (first.rejected, second.rejected),
        (0, 0),
        "{}",
        second.message
    );
    let (first, second) = (ids(&first), ids(&second));
    assert_eq!((first.len(), second.len()), (2, 5));
    assert_eq!(
        first,
        second[..2],
        "the first two invocations keep their ids"
    );

    // Another series (start time, resource) has its own invocations.
    let restarted = map(invocations("acme", Cumulative, true, start + 1, t2, 2));
    let other = map(invocations("other", Cumulative, true, start, t2, 2));
    for m in [&restarted, &other] {
        assert!(ids(m).iter().all(|id| !second.contains(id)));
    }
    // Delta points are separate invocations even with equal values.
    let d1 = ids(&map(invocations("acme", Delta, true, start, t1, 2)));
    let d2 = ids(&map(invocations("acme", Delta, true, t1, t2, 2)));
    assert!(d1.iter().all(|id| !d2.contains(id)));

    // Refused, with a reason: no start time, not monotonic, too many.
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
            invocations(
                "acme",
                Cumulative,
                true,
                start,
                t1,
                MAX_POINT_INVOCATIONS + 1,
            ),
            "delta",
        ),
    ] {
        let m = map(req);
        assert!(m.batches.is_empty() && m.rejected > 0, "{why}");
        assert!(m.message.contains(why), "{}", m.message);
    }
}

/// A small export cannot ask for millions of events: past [`MAX_REQUEST_EVENTS`], points
/// are refused (with a reason) before their events are made.
#[test]
fn one_export_maps_to_a_bounded_number_of_events() {
    use AggregationTemporality::Delta;
    let now = now_ms();
    let ns = |ms: i64| (ms as u64) * 1_000_000;
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
    let m = map_metrics(req, "p", now);
    let fit = MAX_REQUEST_EVENTS / MAX_POINT_INVOCATIONS as usize;
    assert_eq!(ids(&m).len(), MAX_REQUEST_EVENTS);
    assert_eq!(m.events, MAX_REQUEST_EVENTS);
    assert_eq!(m.rejected, (100 - fit) as i64);
    assert!(m.message.contains("smaller exports"), "{}", m.message);
}

#[test]
fn identifying_attributes_and_ips() {
    assert!(is_identifying_key("service.instance.id"));
    assert!(is_identifying_key("host.name"));
    assert!(is_identifying_key("client.address"));
    assert!(!is_identifying_key("cache.hit"));
    assert!(looks_like_ip("10.0.0.1"));
    assert!(looks_like_ip("10.0.0.1:8080"));
    assert!(looks_like_ip("[::1]:80"));
    assert!(looks_like_ip("fe80::1"));
    assert!(!looks_like_ip("build"));
    // Derived ids are stable (a re-sent item maps to the same event), distinct per input,
    // and the parts are delimited ("ab" is not "a" + "b").
    let id = derived_uuid(&[b"a"]);
    assert!(optel_wire::is_uuid(&id));
    assert_eq!(id, derived_uuid(&[&b"ab"[..1]]));
    assert_ne!(id, derived_uuid(&[b"b"]));
    assert_ne!(derived_uuid(&[b"ab"]), derived_uuid(&[b"a", b"b"]));
}
