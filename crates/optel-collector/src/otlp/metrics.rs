//! The `command_invocation` metric → command events.

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, NumberDataPoint, metric, number_data_point,
};
use optel_wire::{Event, EventType, Timestamp};
use prost::Message;

use super::map::{Mapped, attr, attr_str, batch_for, derived_uuid, flush, ms_of_nanos, push};
use super::{COMMAND_METRIC, MAX_POINT_INVOCATIONS};

/// Maps an OTLP metrics export into optel batches: only [`COMMAND_METRIC`] Sums are stored;
/// every other data point is refused in the partial success.
///
/// Delta points count the invocations since the previous point. Cumulative points (the
/// official OpenTelemetry SDKs' default temporality) count the invocations since the series'
/// start time; the i-th invocation of a series always maps to the same event id, so each
/// export of the growing total stores only the invocations not seen before.
pub fn map_metrics(req: ExportMetricsServiceRequest, project: &str, received: i64) -> Mapped {
    let mut out = Mapped::default();
    for rm in req.resource_metrics {
        let template = batch_for(rm.resource.as_ref(), project);
        let resource = rm.resource.as_ref().map(Message::encode_to_vec);
        let resource = resource.unwrap_or_default();
        let mut pending = template.clone();
        for sm in rm.scope_metrics {
            let scope = sm.scope.map(|s| s.name).unwrap_or_default();
            for m in sm.metrics {
                let sum = match m.data {
                    Some(metric::Data::Sum(sum)) if m.name == COMMAND_METRIC => sum,
                    other => {
                        let n = match &other {
                            Some(metric::Data::Gauge(g)) => g.data_points.len(),
                            Some(metric::Data::Sum(s)) => s.data_points.len(),
                            Some(metric::Data::Histogram(h)) => h.data_points.len(),
                            Some(metric::Data::ExponentialHistogram(h)) => h.data_points.len(),
                            Some(metric::Data::Summary(s)) => s.data_points.len(),
                            None => 0,
                        };
                        out.reject(n as i64, || {
                            format!(
                                "metric {:?} is not stored: optel stores the {COMMAND_METRIC} sum only",
                                m.name
                            )
                        });
                        continue;
                    }
                };
                let cumulative =
                    sum.aggregation_temporality == AggregationTemporality::Cumulative as i32;
                if !cumulative
                    && sum.aggregation_temporality != AggregationTemporality::Delta as i32
                {
                    out.reject(sum.data_points.len() as i64, || {
                        format!("{COMMAND_METRIC} has no aggregation temporality: send delta or cumulative")
                    });
                    continue;
                }
                if cumulative && !sum.is_monotonic {
                    out.reject(sum.data_points.len() as i64, || {
                        format!("a cumulative {COMMAND_METRIC} must be monotonic: record it with a counter")
                    });
                    continue;
                }
                let series = Series {
                    resource: &resource,
                    scope: &scope,
                    cumulative,
                };
                for (index, p) in sum.data_points.iter().enumerate() {
                    // Checked before the point's events are made (up to 1,000 each).
                    if out.full(1) {
                        continue;
                    }
                    match command_events(series, index, p) {
                        Ok(events) => {
                            for e in events {
                                push(&mut out, &template, &mut pending, e, received);
                            }
                        }
                        Err(why) => out.reject(1, || why),
                    }
                }
            }
        }
        flush(&mut out, pending);
    }
    out
}

/// The series a [`COMMAND_METRIC`] point belongs to: its resource (encoded), instrumentation
/// scope name and temporality.
#[derive(Clone, Copy)]
pub(super) struct Series<'a> {
    resource: &'a [u8],
    scope: &'a str,
    cumulative: bool,
}

/// The command events of the `index`-th [`COMMAND_METRIC`] point (none for failures, see the
/// module docs), or why the point is refused.
pub(super) fn command_events(
    series: Series<'_>,
    index: usize,
    p: &NumberDataPoint,
) -> Result<Vec<Event>, String> {
    let count = match p.value {
        Some(number_data_point::Value::AsInt(i)) => i,
        Some(number_data_point::Value::AsDouble(f)) if f.is_finite() && f >= 0.0 => {
            f.round() as i64
        }
        _ => -1,
    };
    if !(0..=MAX_POINT_INVOCATIONS).contains(&count) {
        return Err(if series.cumulative {
            format!(
                "cumulative {COMMAND_METRIC} point value must be 0 to {MAX_POINT_INVOCATIONS}: \
                 use delta temporality for long-running processes"
            )
        } else {
            format!("{COMMAND_METRIC} point value must be 0 to {MAX_POINT_INVOCATIONS}")
        });
    }
    if series.cumulative && p.start_time_unix_nano == 0 {
        // Without a start time, the series of two installs could not be told apart.
        return Err(format!(
            "cumulative {COMMAND_METRIC} point has no start time: set start_time_unix_nano"
        ));
    }
    let command = attr_str(&p.attributes, "command")
        .ok_or_else(|| format!("{COMMAND_METRIC} point has no `command` attribute"))?;
    let success = match (
        attr_str(&p.attributes, "outcome"),
        attr(&p.attributes, "success"),
    ) {
        (Some(outcome), _) => Some(outcome == "success"),
        (None, Some(any_value::Value::BoolValue(b))) => Some(*b),
        _ => None,
    };
    if success == Some(false) {
        // Counted from the failed command's ERROR span instead (see module docs).
        return Ok(Vec::new());
    }
    // Delta: the point itself (attributes, times, value) and its position identify its
    // invocations. Cumulative: the series (resource, scope, attributes in a stable order, start
    // time) does, so the i-th invocation keeps its id as the total grows.
    let series_seed = series.cumulative.then(|| {
        let mut attrs: Vec<Vec<u8>> = p.attributes.iter().map(Message::encode_to_vec).collect();
        attrs.sort_unstable();
        let start = p.start_time_unix_nano.to_be_bytes();
        let mut parts: Vec<&[u8]> = vec![series.resource, series.scope.as_bytes(), &start];
        parts.extend(attrs.iter().map(Vec::as_slice));
        derived_uuid(&parts)
    });
    let (session, ids): (String, Vec<String>) = match &series_seed {
        Some(seed) => (
            derived_uuid(&[b"metric-cumulative-session", seed.as_bytes()]),
            (0..count)
                .map(|i| derived_uuid(&[b"metric-cumulative", seed.as_bytes(), &i.to_be_bytes()]))
                .collect(),
        ),
        None => {
            let encoded = p.encode_to_vec();
            let point_id = format!("{index}|{}|{}", p.start_time_unix_nano, p.time_unix_nano);
            (
                derived_uuid(&[b"metric-session", &encoded]),
                (0..count)
                    .map(|i| {
                        derived_uuid(&[b"metric", &encoded, point_id.as_bytes(), &i.to_be_bytes()])
                    })
                    .collect(),
            )
        }
    };
    let events = ids
        .into_iter()
        .map(|id| {
            let mut e = Event::new(
                id,
                EventType::Command,
                command,
                Timestamp::from_unix_ms(ms_of_nanos(p.time_unix_nano)),
                session.clone(),
            );
            e.success = success;
            e
        })
        .collect();
    Ok(events)
}
