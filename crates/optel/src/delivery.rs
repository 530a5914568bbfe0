//! Delivery: a background thread sends queued segments to the collector, off the host's
//! critical path.
//!
//! The thread starts at init and immediately sends what earlier runs left in the queue, while
//! the host does its work. At shutdown the host asks for one more round (for this run's
//! segment) and waits for it at most the exit budget; whatever is not sent by then stays queued
//! for a later run. The thread is never joined: when the host's `main` returns, the process
//! ends and the thread with it, so no process or thread outlives the tool.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::thread;
use std::time::{Duration, Instant};

use optel_wire::Batch;

use crate::export::{ExportError, Exporter};
use crate::queue::{Claim, Queue};

/// Most events sent in one request.
const MAX_REQUEST_EVENTS: usize = 500;
/// Timeout of one export call (seed 000's 2 s request timeout).
const EXPORT_TIMEOUT: Duration = Duration::from_secs(2);

/// Handle to the delivery thread.
#[derive(Debug)]
pub(crate) struct Worker {
    requests: SyncSender<SyncSender<()>>,
}

impl Worker {
    /// Starts the thread; it begins with a round for segments left by earlier runs.
    pub(crate) fn start(queue: Queue, exporter: Box<dyn Exporter>) -> std::io::Result<Self> {
        // Capacity 4: flush requests beyond that are redundant with those already waiting.
        let (tx, rx) = mpsc::sync_channel::<SyncSender<()>>(4);
        thread::Builder::new()
            .name("optel-delivery".into())
            .spawn(move || run(&queue, exporter.as_ref(), &rx))?;
        Ok(Self { requests: tx })
    }

    /// Asks for a delivery round and waits for it until `deadline`. Returns whether the round
    /// finished in time.
    pub(crate) fn flush(&self, deadline: Instant) -> bool {
        let (done_tx, done_rx) = mpsc::sync_channel(1);
        if self.requests.try_send(done_tx).is_err() {
            return false;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match done_rx.recv_timeout(left) {
            Ok(()) => true,
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => false,
        }
    }
}

fn run(queue: &Queue, exporter: &dyn Exporter, requests: &Receiver<SyncSender<()>>) {
    deliver_all(queue, exporter);
    while let Ok(done) = requests.recv() {
        deliver_all(queue, exporter);
        let _ = done.try_send(());
    }
}

/// One round: send every segment that can be claimed, grouped into batches of events that
/// share the same envelope. Stops at the first batch that must be retried, so a dead
/// endpoint costs one attempt per round.
fn deliver_all(queue: &Queue, exporter: &dyn Exporter) {
    let Ok(paths) = queue.segments() else { return };
    let mut group: Vec<Claim> = Vec::new();
    let mut events = 0;
    for path in paths {
        let Ok(Some(claim)) = queue.claim(&path) else {
            continue;
        };
        let fits = group
            .first()
            .is_none_or(|first| same_envelope(&first.batch, &claim.batch))
            && events + claim.batch.events.len() <= MAX_REQUEST_EVENTS;
        if !fits && !group.is_empty() {
            if !send_group(queue, exporter, std::mem::take(&mut group)) {
                return;
            }
            events = 0;
        }
        events += claim.batch.events.len();
        group.push(claim);
    }
    if !group.is_empty() {
        send_group(queue, exporter, group);
    }
}

fn same_envelope(a: &Batch, b: &Batch) -> bool {
    a.service_name == b.service_name
        && a.service_version == b.service_version
        && a.pseudonym == b.pseudonym
        && a.os == b.os
        && a.arch == b.arch
}

/// Sends one group as one batch; returns whether the round may go on.
fn send_group(queue: &Queue, exporter: &dyn Exporter, group: Vec<Claim>) -> bool {
    let Some(first) = group.first() else {
        return true;
    };
    let mut batch = first.batch.clone();
    batch.events.clear();
    // The first segment's count is added in the loop below like the others.
    batch.dropped_events = 0;
    for claim in &group {
        batch.events.extend(claim.batch.events.iter().cloned());
        batch.dropped_events += claim.batch.dropped_events;
    }
    match exporter.export(&batch, EXPORT_TIMEOUT) {
        Ok(()) | Err(ExportError::Rejected(_)) => {
            for claim in group {
                let _ = queue.complete(claim);
            }
            true
        }
        Err(ExportError::Retryable { .. }) => false,
    }
}
