//! The `command_invocation` metric → command events.
//!
//! A point counts invocations of its `command` attribute with outcome `outcome`
//! (`success`|`failure`, or a boolean `success`): successes become successful command events,
//! failures failed ones (error code from the point's `error.type`).
//!
//! - **Delta** points count the invocations since the previous point; the ids of their events
//!   derive from the install and the point itself, so a retried export never double counts.
//!   A delta point stands for at most [`MAX_POINT_INVOCATIONS`].
//! - **Cumulative** points (the official SDKs' default) count the invocations since the
//!   series' start time. They are turned into deltas per (install, series, start time): the
//!   store keeps, per series, how many invocations are stored so far (its high-water mark,
//!   `otlp_cumulative` table of both backends), and an export stores the invocations from the
//!   mark to the point's value. The i-th invocation of a series always gets the same event id,
//!   so a lost mark update (a crash between commit and update) or two collectors racing only
//!   produce duplicates the store skips. A new start time is a new series (a reset, e.g. a
//!   restarted process) and starts from 0. A value below the mark (an older export arriving
//!   late) stores nothing. At most [`MAX_POINT_INVOCATIONS`] invocations are stored per point
//!   and export; the rest follow with the next export of the series (said in the answer).
//!
//! Why in the store, not a bounded in-memory map: the mark must survive a restart (else the
//! first export after it would store the whole total again, or, bounded per point, refuse it)
//! and be shared by every collector writing to one PostgreSQL database; an evicted in-memory
//! entry would have the same effect as a restart.
//!
//! The `optel.dropped_events` sum (sent by optel's exporter) is accepted and not stored, as
//! on the native route; any other metric is refused in the partial success.

use std::collections::HashMap;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, NumberDataPoint, metric, number_data_point,
};
use optel_wire::{Event, EventType, Timestamp};
use prost::Message;

use super::map::{
    Mapped, Source, attr, attr_str, check, derived_uuid, digest, error_code, flush, ms_of_nanos,
    push, room,
};
use super::{COMMAND_METRIC, MAX_POINT_INVOCATIONS, MAX_REQUEST_EVENTS};

/// The metric optel's exporter sends for events dropped on the install: accepted, not stored.
pub const DROPPED_METRIC: &str = "optel.dropped_events";

/// High-water marks of cumulative series: series key → invocations stored so far.
pub type Marks = HashMap<[u8; 32], i64>;

/// The key of the cumulative series of a point: install, scope, attributes in a stable
/// order, start time.
fn series_key(source: &Source, scope: &str, p: &NumberDataPoint) -> [u8; 32] {
    let mut attrs: Vec<Vec<u8>> = p.attributes.iter().map(Message::encode_to_vec).collect();
    attrs.sort_unstable();
    let start = p.start_time_unix_nano.to_be_bytes();
    let mut parts: Vec<&[u8]> = vec![
        b"cumulative",
        &source.install,
        scope.as_bytes(),
        COMMAND_METRIC.as_bytes(),
        &start,
    ];
    parts.extend(attrs.iter().map(Vec::as_slice));
    digest(&parts)
}

/// The series keys whose marks [`map_metrics`] needs (read from the store first).
pub fn cumulative_keys(req: &ExportMetricsServiceRequest, project: &str) -> Vec<[u8; 32]> {
    let mut keys = Vec::new();
    for rm in &req.resource_metrics {
        let source = Source::of(rm.resource.as_ref(), project);
        for sm in &rm.scope_metrics {
            let scope = sm.scope.as_ref().map_or("", |s| s.name.as_str());
            for m in &sm.metrics {
                if let Some(metric::Data::Sum(sum)) = &m.data
                    && m.name == COMMAND_METRIC
                    && sum.aggregation_temporality == AggregationTemporality::Cumulative as i32
                {
                    keys.extend(
                        sum.data_points
                            .iter()
                            .map(|p| series_key(&source, scope, p)),
                    );
                }
            }
        }
    }
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// Maps an OTLP metrics export into optel batches (see the module docs); `marks` holds the
/// stored high-water marks of the request's cumulative series ([`cumulative_keys`]).
pub fn map_metrics(
    req: ExportMetricsServiceRequest,
    project: &str,
    received: i64,
    marks: &Marks,
) -> Mapped {
    let mut out = Mapped::default();
    let mut marks = marks.clone();
    let mut advanced: Marks = HashMap::new();
    for rm in req.resource_metrics {
        let source = Source::of(rm.resource.as_ref(), project);
        let mut pending = source.template.clone();
        for sm in rm.scope_metrics {
            let scope = sm.scope.map(|s| s.name).unwrap_or_default();
            for m in sm.metrics {
                let sum = match m.data {
                    Some(metric::Data::Sum(sum)) if m.name == COMMAND_METRIC => sum,
                    Some(metric::Data::Sum(_)) if m.name == DROPPED_METRIC => continue,
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
                                super::traces::clip(&m.name)
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
                // Points of one series in time order, so that a mark only grows.
                let mut points = sum.data_points;
                points.sort_by_key(|p| p.time_unix_nano);
                for p in &points {
                    // Checked before the point's events are made (up to 1,000 each).
                    if out.full(1) {
                        continue;
                    }
                    let point = match Point::read(p) {
                        Ok(point) => point,
                        Err(why) => {
                            out.reject(1, || why);
                            continue;
                        }
                    };
                    // One event of the point stands for all: a point that cannot be stored
                    // is refused whole (before any mark moves).
                    let session = derived_uuid(&[
                        b"metric-session",
                        &source.install,
                        &p.start_time_unix_nano.to_be_bytes(),
                    ]);
                    let mut sample = Event::new(
                        derived_uuid(&[b"sample"]),
                        EventType::Command,
                        point.command,
                        Timestamp::from_unix_ms(ms_of_nanos(p.time_unix_nano)),
                        session.clone(),
                    );
                    sample.success = point.success;
                    if point.success == Some(false) {
                        sample.error_code = point.error_code.clone();
                    }
                    if let Err(why) = check(&source.template, &sample, received) {
                        out.reject(1, || why);
                        continue;
                    }
                    let room = room(&out) as i64;
                    let ids: Vec<String> = if cumulative {
                        if p.start_time_unix_nano == 0 {
                            // Without a start time, a reset could not be told from a total.
                            out.reject(1, || {
                                format!(
                                    "cumulative {COMMAND_METRIC} point has no start time: set start_time_unix_nano"
                                )
                            });
                            continue;
                        }
                        let key = series_key(&source, &scope, p);
                        let mark = marks.get(&key).copied().unwrap_or(0);
                        let high = point
                            .count
                            .min(mark.saturating_add(MAX_POINT_INVOCATIONS.min(room)));
                        if point.count > high {
                            out.warn(|| {
                                format!(
                                    "a cumulative {COMMAND_METRIC} series grew by more than this \
                                     export can store ({MAX_POINT_INVOCATIONS} per point, \
                                     {MAX_REQUEST_EVENTS} per export): the rest is stored with \
                                     its next exports"
                                )
                            });
                        }
                        if high > mark {
                            marks.insert(key, high);
                            advanced.insert(key, high);
                        }
                        (mark..high)
                            .map(|i| derived_uuid(&[b"metric-cumulative", &key, &i.to_be_bytes()]))
                            .collect()
                    } else {
                        if point.count > MAX_POINT_INVOCATIONS {
                            out.reject(1, || {
                                format!(
                                    "{COMMAND_METRIC} delta point value must be 0 to {MAX_POINT_INVOCATIONS}: export more often"
                                )
                            });
                            continue;
                        }
                        if point.count > room {
                            out.reject(1, || {
                                format!(
                                    "more than {MAX_REQUEST_EVENTS} events in one export: send smaller exports"
                                )
                            });
                            continue;
                        }
                        let encoded = p.encode_to_vec();
                        (0..point.count)
                            .map(|i| {
                                derived_uuid(&[
                                    b"metric",
                                    &source.install,
                                    &encoded,
                                    &i.to_be_bytes(),
                                ])
                            })
                            .collect()
                    };
                    for id in ids {
                        let mut e = sample.clone();
                        e.event_id = id;
                        push(&mut out, &source.template, &mut pending, e, received);
                    }
                }
            }
        }
        flush(&mut out, pending);
    }
    out.advances = advanced.into_iter().collect();
    out
}

/// What a [`COMMAND_METRIC`] point says.
struct Point<'a> {
    count: i64,
    command: &'a str,
    success: Option<bool>,
    error_code: Option<String>,
}

impl<'a> Point<'a> {
    fn read(p: &'a NumberDataPoint) -> Result<Self, String> {
        let count = match p.value {
            Some(number_data_point::Value::AsInt(i)) => i,
            Some(number_data_point::Value::AsDouble(f)) if f.is_finite() && f >= 0.0 => {
                f.round() as i64
            }
            _ => -1,
        };
        if count < 0 {
            return Err(format!(
                "{COMMAND_METRIC} point value must be a count of 0 or more"
            ));
        }
        let command = attr_str(&p.attributes, "command")
            .ok_or_else(|| format!("{COMMAND_METRIC} point has no `command` attribute"))?;
        let success = match (
            attr_str(&p.attributes, "outcome"),
            attr(&p.attributes, "success"),
        ) {
            (Some(outcome), _) => Some(outcome != "failure"),
            (None, Some(any_value::Value::BoolValue(b))) => Some(*b),
            _ => None,
        };
        Ok(Self {
            count,
            command,
            success,
            error_code: error_code(attr_str(&p.attributes, "error.type")),
        })
    }
}
