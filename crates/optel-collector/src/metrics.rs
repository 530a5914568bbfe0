//! Prometheus metrics of the collector, served as text at `GET /metrics` (no auth: they hold
//! no user data, only counts). Kept dependency-free: a few atomics and labelled counters.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `optel_http_requests_total` | counter | `route`, `status` |
//! | `optel_events_accepted_total` | counter | |
//! | `optel_events_duplicate_total` | counter | |
//! | `optel_requests_rejected_total` | counter | `reason` (the error code) |
//! | `optel_batch_commit_seconds` | histogram | |
//! | `optel_commit_batches_total` | counter | batches stored by group commits |
//! | `optel_writer_queue_depth` | gauge | |
//! | `optel_attributes_dropped_total` | counter | `reason` (`identifying`, `not_allowed`, `unsupported`): attributes not stored (`crate::privacy`) |
//! | `optel_connections_open` | gauge | connections held (under `ServerConfig::max_connections`) |
//! | `optel_connections_replaced_total` | counter | connections closed at the cap to make room (idle, or a slow body) |
//! | `optel_connections_refused_total` | counter | connections refused at the cap (all busy) |

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the commit latency histogram, seconds.
const COMMIT_BUCKETS: [f64; 10] = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0];

/// The collector's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    rejected: Mutex<BTreeMap<String, u64>>,
    attributes_dropped: Mutex<BTreeMap<&'static str, u64>>,
    accepted: AtomicU64,
    duplicates: AtomicU64,
    commit_batches: AtomicU64,
    commit_count: AtomicU64,
    commit_sum_us: AtomicU64,
    commit_buckets: [AtomicU64; COMMIT_BUCKETS.len()],
    connections_open: AtomicU64,
    connections_replaced: AtomicU64,
    connections_refused: AtomicU64,
    config_reloads: AtomicU64,
    config_reload_failures: AtomicU64,
}

fn bump<K: Ord>(map: &Mutex<BTreeMap<K, u64>>, key: K) {
    let mut m = map
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    *m.entry(key).or_default() += 1;
}

impl Metrics {
    /// Counts one answered request of a route (its matched path, e.g. `/v1/events`).
    pub fn request(&self, route: &str, status: u16) {
        bump(&self.requests, (route.to_owned(), status));
    }

    /// Counts one configuration reload: applied (`ok`) or refused (a bad file; the previous
    /// configuration stays).
    pub fn config_reloaded(&self, ok: bool) {
        let counter = if ok {
            &self.config_reloads
        } else {
            &self.config_reload_failures
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one rejected ingest request by error code.
    pub fn rejected(&self, reason: &str) {
        bump(&self.rejected, reason.to_owned());
    }

    /// Counts `n` attributes not stored, by reason (see `crate::privacy`).
    pub fn attributes_dropped(&self, reason: &'static str, n: u64) {
        let mut m = self
            .attributes_dropped
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *m.entry(reason).or_default() += n;
    }

    /// Counts stored and duplicate events.
    pub fn accepted(&self, inserted: u64, duplicates: u64) {
        self.accepted.fetch_add(inserted, Ordering::Relaxed);
        self.duplicates.fetch_add(duplicates, Ordering::Relaxed);
    }

    /// Records the latency of one group commit of `batches` batches.
    pub fn observe_commit(&self, took: Duration, batches: usize) {
        let s = took.as_secs_f64();
        for (bound, slot) in COMMIT_BUCKETS.iter().zip(&self.commit_buckets) {
            if s <= *bound {
                slot.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.commit_count.fetch_add(1, Ordering::Relaxed);
        self.commit_sum_us
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
        self.commit_batches
            .fetch_add(batches as u64, Ordering::Relaxed);
    }

    /// Counts a connection taken in (`true`) or closed (`false`).
    pub(crate) fn connection(&self, opened: bool) {
        if opened {
            self.connections_open.fetch_add(1, Ordering::Relaxed);
        } else {
            self.connections_open.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Counts a connection closed at the cap to make room for a new one.
    pub(crate) fn connection_replaced(&self) {
        self.connections_replaced.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a connection refused at the cap.
    pub(crate) fn connection_refused(&self) {
        self.connections_refused.fetch_add(1, Ordering::Relaxed);
    }

    /// Events stored so far.
    pub fn accepted_total(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// The Prometheus text exposition, with the writer queue depth given.
    pub fn render(&self, queue_depth: usize) -> String {
        let mut out = String::new();
        out.push_str("# HELP optel_http_requests_total HTTP requests answered.\n");
        out.push_str("# TYPE optel_http_requests_total counter\n");
        for ((route, status), n) in self
            .requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
        {
            let _ = writeln!(
                out,
                "optel_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
        out.push_str("# HELP optel_events_accepted_total Events newly stored.\n");
        out.push_str("# TYPE optel_events_accepted_total counter\n");
        let _ = writeln!(out, "optel_events_accepted_total {}", self.accepted_total());
        out.push_str("# HELP optel_events_duplicate_total Events received again (same id), not stored twice.\n");
        out.push_str("# TYPE optel_events_duplicate_total counter\n");
        let _ = writeln!(
            out,
            "optel_events_duplicate_total {}",
            self.duplicates.load(Ordering::Relaxed)
        );
        out.push_str("# HELP optel_requests_rejected_total Ingest requests refused, by reason.\n");
        out.push_str("# TYPE optel_requests_rejected_total counter\n");
        for (reason, n) in self
            .rejected
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
        {
            let _ = writeln!(
                out,
                "optel_requests_rejected_total{{reason=\"{reason}\"}} {n}"
            );
        }
        out.push_str(
            "# HELP optel_attributes_dropped_total Attributes not stored at ingest, by reason.\n",
        );
        out.push_str("# TYPE optel_attributes_dropped_total counter\n");
        for (reason, n) in self
            .attributes_dropped
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
        {
            let _ = writeln!(
                out,
                "optel_attributes_dropped_total{{reason=\"{reason}\"}} {n}"
            );
        }
        out.push_str("# HELP optel_batch_commit_seconds Latency of one group commit.\n");
        out.push_str("# TYPE optel_batch_commit_seconds histogram\n");
        for (bound, slot) in COMMIT_BUCKETS.iter().zip(&self.commit_buckets) {
            let _ = writeln!(
                out,
                "optel_batch_commit_seconds_bucket{{le=\"{bound}\"}} {}",
                slot.load(Ordering::Relaxed)
            );
        }
        let count = self.commit_count.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "optel_batch_commit_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            out,
            "optel_batch_commit_seconds_sum {}",
            self.commit_sum_us.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "optel_batch_commit_seconds_count {count}");
        out.push_str("# HELP optel_commit_batches_total Batches stored by group commits.\n");
        out.push_str("# TYPE optel_commit_batches_total counter\n");
        let _ = writeln!(
            out,
            "optel_commit_batches_total {}",
            self.commit_batches.load(Ordering::Relaxed)
        );
        out.push_str("# HELP optel_writer_queue_depth Batches waiting for the writer.\n");
        out.push_str("# TYPE optel_writer_queue_depth gauge\n");
        let _ = writeln!(out, "optel_writer_queue_depth {queue_depth}");
        for (name, kind, help, value) in [
            (
                "optel_connections_open",
                "gauge",
                "Connections held.",
                &self.connections_open,
            ),
            (
                "optel_connections_replaced_total",
                "counter",
                "Connections closed at the connection cap to make room (idle, or a slow body).",
                &self.connections_replaced,
            ),
            (
                "optel_connections_refused_total",
                "counter",
                "Connections refused at the connection cap (every connection busy).",
                &self.connections_refused,
            ),
            (
                "optel_config_reloads_total",
                "counter",
                "Configuration reloads applied (SIGHUP or a change of the --config file).",
                &self.config_reloads,
            ),
            (
                "optel_config_reload_failures_total",
                "counter",
                "Configuration reloads refused (a bad file; the previous configuration stays).",
                &self.config_reload_failures,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            let _ = writeln!(out, "{name} {}", value.load(Ordering::Relaxed));
        }
        out
    }
}
