//! The exit wait: dropping the [`TelemetryGuard`] (or calling
//! [`TelemetryGuard::shutdown`]) closes the recorder, stamps and checks this run's events,
//! writes them to the ledger and appends them to the queue as one segment, then asks the
//! delivery thread for a round and waits for it at most the exit budget. What is not sent by
//! then stays queued for a later run.

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
        let events = match self.buffer.lock() {
            Ok(mut buffer) => std::mem::take(&mut *buffer),
            Err(_) => return,
        };
        let mut dropped = self.dropped.swap(0, Ordering::Relaxed);
        let events: Vec<Event> = events
            .into_iter()
            .filter_map(|mut event| {
                event.event_id = self.event_id();
                event.session_id.clone_from(&self.session_id);
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
        if !events.is_empty() || dropped > 0 {
            let mut batch = self.envelope.clone();
            batch.events = events;
            // Drops of this process and those the full queue counted earlier (a batch needs an
            // event, so drops wait for a run that has some).
            batch.dropped_events = dropped
                + self
                    .queue
                    .as_ref()
                    .map_or(0, queue::Queue::take_unreported_drops);
            if !batch.events.is_empty() {
                // The ledger is what `telemetry log` shows: every event this tool recorded.
                let _ = export::Exporter::export(&self.ledger, &batch, self.exit_timeout);
                if let Some(queue) = &self.queue {
                    let _ = queue.append(&batch);
                }
            }
        }
        if let Some(worker) = &self.worker {
            worker.flush(deadline);
        }
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
