//! The exit wait: dropping the [`TelemetryGuard`] (or calling
//! [`TelemetryGuard::shutdown`]) closes the recorder, stamps and checks this run's events,
//! appends them to the queue as one segment and writes them to the ledger, then asks the
//! delivery thread for a last round followed by the exporter's `force_flush` and
//! `shutdown_with_timeout`. One deadline, set when the exit starts (now + the exit budget),
//! covers all of it: the host never waits longer. What is not sent by then stays queued for a
//! later run.

use std::sync::atomic::Ordering;
use std::time::Instant;

use optel_wire::Event;

use crate::attribute::{self, NameError};
use crate::recorder::Recorder;
use crate::status::Status;
use crate::{export, queue};

/// Returned by [`TelemetryBuilder::init`](crate::TelemetryBuilder::init); dropping it (or
/// calling [`shutdown`](Self::shutdown)) queues this run's events and waits at most the exit
/// budget for their delivery.
///
/// `std::process::exit` skips destructors: call [`shutdown`](Self::shutdown) before it.
#[must_use = "telemetry stops when this guard is dropped: keep it until the end of main"]
#[derive(Debug)]
pub struct TelemetryGuard {
    pub(crate) inner: Option<&'static Recorder>,
    pub(crate) status: Status,
}

impl TelemetryGuard {
    /// What telemetry is doing and which layer decided it.
    pub fn status(&self) -> &Status {
        &self.status
    }

    /// Whether events are being recorded.
    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Queues this run's events and waits at most the exit budget for their delivery. Later
    /// events of this process are not recorded.
    pub fn shutdown(mut self) {
        self.shutdown_inner();
    }

    fn shutdown_inner(&mut self) {
        if let Some(inner) = self.inner.take() {
            inner.shutdown(Instant::now() + inner.exit_timeout);
        }
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        self.shutdown_inner();
    }
}

impl Recorder {
    /// Closes the recorder and hands this run's events over: ledger, queue, then a delivery
    /// round waited for until `deadline`.
    pub(crate) fn shutdown(&self, deadline: Instant) {
        self.closed.store(true, Ordering::Release);
        // A poisoned lock still holds this run's events: hand them over all the same.
        let events = std::mem::take(
            &mut *self
                .buffer
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        let mut dropped = self.dropped.swap(0, Ordering::Relaxed);
        let mut catalog_drops = crate::catalog::Drops::default();
        let events: Vec<Event> = events
            .into_iter()
            .filter_map(|mut event| {
                event.event_id = self.event_id();
                event.session_id.clone_from(&self.session_id);
                // Undeclared events, attributes, values and phases never leave the process.
                if let Some(catalog) = &self.catalog
                    && !catalog.apply(&mut event, &mut catalog_drops)
                {
                    dropped += 1;
                    return None;
                }
                if let Err(e) = check_names(&event) {
                    // A misspelt name is a bug of the tool: say so loudly while it is
                    // developed, and never disturb its users (counted drop in release builds).
                    if cfg!(debug_assertions) {
                        eprintln!("optel: event dropped: {e}");
                    }
                    dropped += 1;
                    return None;
                }
                if event.validate().is_err() {
                    dropped += 1;
                    return None;
                }
                Some(event)
            })
            .collect();
        if !catalog_drops.is_empty() {
            self.report_catalog_drops(&catalog_drops);
        }
        if !events.is_empty() || dropped > 0 {
            let mut batch = self.envelope.clone();
            batch.events = events;
            // The queued segment carries the catalog, so that whichever run sends it can
            // give the collector a catalog it does not know yet; the exporter leaves it out
            // once the endpoint acknowledged the hash.
            batch.catalog = self.catalog.as_ref().map(|c| c.catalog.clone());
            // Drops of this process and those the full queue counted earlier (a batch needs an
            // event, so drops wait for a run that has some).
            batch.dropped_events = dropped
                + self
                    .queue
                    .as_ref()
                    .map_or(0, queue::Queue::take_unreported_drops);
            if !batch.events.is_empty() {
                // The queue first: it is what delivery sends, now or on a later run.
                if let Some(queue) = &self.queue {
                    let appended = queue.append(&batch);
                    self.debug.line(|| match &appended {
                        Ok(_) => format!(
                            "exit: {} events queued ({} dropped)",
                            batch.events.len(),
                            batch.dropped_events
                        ),
                        Err(e) => format!("exit: cannot queue this run's events: {e}"),
                    });
                }
                // The ledger is what `telemetry log` shows: every event this tool recorded
                // (the hash names the catalog; `telemetry preview` shows it in words).
                // Within what is left of the exit deadline, not a budget of its own.
                batch.catalog = None;
                let left = deadline.saturating_duration_since(Instant::now());
                let _ = export::Exporter::export(&self.ledger, &batch, left);
            }
        }
        if let Some(worker) = &self.worker {
            let started = Instant::now();
            let in_time = worker.finish(deadline);
            self.debug.line(|| {
                if in_time {
                    format!(
                        "exit: delivery finished in {} ms",
                        started.elapsed().as_millis()
                    )
                } else {
                    format!(
                        "exit: stopped waiting after {} ms (the exit budget); the rest stays queued",
                        started.elapsed().as_millis()
                    )
                }
            });
        }
    }
}

impl Recorder {
    /// Counts what the catalog dropped in the state file (`telemetry status`) and, in debug
    /// builds, warns once per name on stderr: an undeclared name is a bug of the tool.
    #[cold]
    fn report_catalog_drops(&self, drops: &crate::catalog::Drops) {
        if cfg!(debug_assertions) {
            for label in drops.undeclared.keys() {
                eprintln!(
                    "optel: dropped {label}: it is not declared in the event catalog \
                     (TelemetryBuilder::catalog)"
                );
            }
        }
        let saved = crate::catalog::CatalogState::add_drops(&self.data_dir, drops);
        self.debug.line(|| match saved {
            Ok(()) => format!(
                "catalog: {} undeclared and {} withheld items dropped",
                drops.undeclared.values().sum::<u64>(),
                drops.withheld.values().sum::<u64>()
            ),
            Err(e) => format!("catalog: cannot count its drops: {e}"),
        });
    }
}

/// Checks the event name, attribute keys and error code against the name rules.
fn check_names(event: &Event) -> Result<(), NameError> {
    attribute::check("event name", &event.name)?;
    for key in event.metadata.keys() {
        attribute::check("attribute key", key)?;
    }
    if let Some(code) = &event.error_code {
        attribute::check("error code", code)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use optel_wire::{Batch, EventType};

    use super::*;
    use crate::builder::Telemetry;
    use crate::consent::Consent;
    use crate::export::{ExportResult, Exporter};

    /// An exporter that only buffers in `export` and sends (into `delivered`) in
    /// `force_flush`, as a batching exporter does; it records every call and its timeout.
    #[derive(Debug, Clone, Default)]
    struct Buffering {
        state: Arc<Mutex<State>>,
        flush_takes: Duration,
    }

    #[derive(Debug, Default)]
    struct State {
        buffered: Vec<String>,
        delivered: Vec<String>,
        calls: Vec<(&'static str, Duration)>,
    }

    impl Exporter for Buffering {
        fn export(&self, batch: &Batch, timeout: Duration) -> ExportResult {
            let mut s = self.state.lock().unwrap();
            s.calls.push(("export", timeout));
            s.buffered
                .extend(batch.events.iter().map(|e| e.name.clone()));
            Ok(())
        }

        fn force_flush(&self, timeout: Duration) -> ExportResult {
            self.state
                .lock()
                .unwrap()
                .calls
                .push(("force_flush", timeout));
            std::thread::sleep(self.flush_takes);
            let mut s = self.state.lock().unwrap();
            let buffered = std::mem::take(&mut s.buffered);
            s.delivered.extend(buffered);
            Ok(())
        }

        fn shutdown_with_timeout(&self, timeout: Duration) -> ExportResult {
            self.state.lock().unwrap().calls.push(("shutdown", timeout));
            Ok(())
        }
    }

    fn recorder(dir: &std::path::Path, exporter: &Buffering, budget: Duration) -> Recorder {
        Telemetry::builder("acme", "1.0.0")
            .data_dir(dir.join("data"))
            .config_dir(dir.join("config"))
            .exporter(exporter.clone())
            .exit_timeout(budget)
            .start(&|_: &str| None, Consent::On, &|| None)
            .unwrap()
    }

    #[test]
    fn exit_flushes_and_shuts_down_a_buffering_exporter() {
        // Regression: force_flush and shutdown_with_timeout were never called, so what a
        // buffering exporter held at exit was silently lost.
        let dir = tempfile::tempdir().unwrap();
        let exporter = Buffering::default();
        let budget = Duration::from_secs(10);
        let rec = recorder(dir.path(), &exporter, budget);
        rec.record(rec.new_event(
            EventType::Command,
            "build".into(),
            std::time::SystemTime::now(),
        ));
        rec.shutdown(Instant::now() + budget);
        let s = exporter.state.lock().unwrap();
        assert_eq!(s.delivered, ["build"]);
        let names: Vec<&str> = s.calls.iter().map(|(n, _)| *n).collect();
        assert_eq!(names.last(), Some(&"shutdown"), "{names:?}");
        assert_eq!(names.iter().filter(|n| **n == "force_flush").count(), 1);
        assert!(s.calls.iter().all(|(_, t)| *t <= budget), "{:?}", s.calls);
    }

    #[test]
    fn one_deadline_covers_the_exit() {
        // A force_flush that overruns its timeout cannot hold the host past the exit budget,
        // and every call gets only what is left of that one deadline.
        let dir = tempfile::tempdir().unwrap();
        let exporter = Buffering {
            flush_takes: Duration::from_secs(3),
            ..Buffering::default()
        };
        let budget = Duration::from_millis(300);
        let rec = recorder(dir.path(), &exporter, budget);
        rec.record(rec.new_event(
            EventType::Command,
            "build".into(),
            std::time::SystemTime::now(),
        ));
        let started = Instant::now();
        rec.shutdown(started + budget);
        let waited = started.elapsed();
        assert!(waited < Duration::from_millis(1500), "waited {waited:?}");
        let s = exporter.state.lock().unwrap();
        let flush = s.calls.iter().find(|(n, _)| *n == "force_flush");
        assert!(flush.is_some_and(|(_, t)| *t <= budget), "{:?}", s.calls);
    }
}
