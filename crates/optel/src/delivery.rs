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

use crate::queue::{Claim, Queue};

/// Most events sent in one request.
const MAX_REQUEST_EVENTS: usize = 500;
/// Timeout for the TCP connect (seed 000's 2 s request timeout bounds the whole request).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Timeout for a whole request, connect included (seed 000).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// Where and how to send.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// Full URL of the collector's `/v1/events` route.
    pub(crate) url: String,
    /// The project ingest key, sent as `Authorization: Bearer <key>`.
    pub(crate) ingest_key: Option<String>,
    /// `User-Agent`, e.g. `optel/0.1.0 (acme/1.2.0)`.
    pub(crate) user_agent: String,
}

/// Handle to the delivery thread.
#[derive(Debug)]
pub(crate) struct Worker {
    requests: SyncSender<SyncSender<()>>,
}

impl Worker {
    /// Starts the thread; it begins with a round for segments left by earlier runs.
    pub(crate) fn start(queue: Queue, target: Target) -> std::io::Result<Self> {
        // Capacity 4: flush requests beyond that are redundant with those already waiting.
        let (tx, rx) = mpsc::sync_channel::<SyncSender<()>>(4);
        thread::Builder::new()
            .name("optel-delivery".into())
            .spawn(move || run(&queue, &target, &rx))?;
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

fn run(queue: &Queue, target: &Target, requests: &Receiver<SyncSender<()>>) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(CONNECT_TIMEOUT))
        .timeout_global(Some(REQUEST_TIMEOUT))
        .http_status_as_error(false)
        .user_agent(target.user_agent.as_str())
        .build()
        .into();
    deliver_all(queue, target, &agent);
    while let Ok(done) = requests.recv() {
        deliver_all(queue, target, &agent);
        let _ = done.try_send(());
    }
}

/// What happened to one request.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// 2xx: the collector committed the batch.
    Delivered,
    /// The collector will never accept this batch (400, 413, 422): drop it.
    Rejected,
    /// Network error, 401/403, 429 or 5xx: keep it for a later run.
    Retry,
}

/// One round: send every segment that can be claimed, grouped into requests of events that
/// share the same envelope. Stops at the first request that must be retried, so a dead
/// endpoint costs one connection attempt per round.
fn deliver_all(queue: &Queue, target: &Target, agent: &ureq::Agent) {
    let Ok(paths) = queue.segments() else { return };
    let mut group: Vec<Claim> = Vec::new();
    let mut events = 0;
    for path in paths {
        let Ok(Some(claim)) = queue.claim(&path) else { continue };
        let fits = group.first().is_none_or(|first| same_envelope(&first.batch, &claim.batch))
            && events + claim.batch.events.len() <= MAX_REQUEST_EVENTS;
        if !fits && !group.is_empty() {
            if !send_group(queue, target, agent, std::mem::take(&mut group)) {
                return;
            }
            events = 0;
        }
        events += claim.batch.events.len();
        group.push(claim);
    }
    if !group.is_empty() {
        send_group(queue, target, agent, group);
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
fn send_group(queue: &Queue, target: &Target, agent: &ureq::Agent, group: Vec<Claim>) -> bool {
    let Some(first) = group.first() else { return true };
    let mut batch = first.batch.clone();
    batch.events.clear();
    for claim in &group {
        batch.events.extend(claim.batch.events.iter().cloned());
        batch.dropped_events += claim.batch.dropped_events;
    }
    match send(target, agent, &batch) {
        Outcome::Delivered | Outcome::Rejected => {
            for claim in group {
                let _ = queue.complete(claim);
            }
            true
        }
        Outcome::Retry => false,
    }
}

fn send(target: &Target, agent: &ureq::Agent, batch: &Batch) -> Outcome {
    let Ok(body) = serde_json::to_vec(batch) else { return Outcome::Rejected };
    let mut request = agent.post(&target.url).header("Content-Type", "application/json");
    if let Some(key) = &target.ingest_key {
        request = request.header("Authorization", &format!("Bearer {key}"));
    }
    match request.send(&body[..]) {
        Ok(response) => classify(response.status().as_u16()),
        Err(_) => Outcome::Retry,
    }
}

fn classify(status: u16) -> Outcome {
    match status {
        200..=299 => Outcome::Delivered,
        400 | 413 | 422 => Outcome::Rejected,
        _ => Outcome::Retry,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classes() {
        assert_eq!(classify(200), Outcome::Delivered);
        assert_eq!(classify(202), Outcome::Delivered);
        assert_eq!(classify(400), Outcome::Rejected);
        assert_eq!(classify(413), Outcome::Rejected);
        assert_eq!(classify(401), Outcome::Retry);
        assert_eq!(classify(429), Outcome::Retry);
        assert_eq!(classify(503), Outcome::Retry);
    }
}
