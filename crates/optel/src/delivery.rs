//! Delivery: a background thread sends queued segments to the collector, off the host's
//! critical path.
//!
//! The thread starts at init and immediately sends what earlier runs left in the queue, while
//! the host does its work. At shutdown the host asks for one more round (for this run's
//! segment), followed by the exporter's `force_flush` and `shutdown_with_timeout`, and waits
//! for all of it at most until the exit deadline; whatever is not sent by then stays queued
//! for a later run. The thread is never joined and no process is ever spawned: when the host's
//! `main` returns, the process ends and the thread with it, so nothing outlives the tool.
//!
//! Resilience:
//! - **Batching**: segments with the same envelope are merged into requests of at most
//!   [`MAX_REQUEST_EVENTS`] events and [`MAX_REQUEST_BYTES`] bytes of JSON.
//! - **Retries**: a retryable failure is retried after an exponential backoff with jitter
//!   (100 ms, ×1.5, capped at 2 s, for at most 10 s per round, never past the round's
//!   deadline), or after the server's `Retry-After`.
//! - **Circuit breaker** and **daily cap** (module `breaker`), shared by every process of the
//!   tool through a small state file in the data directory: after 5 consecutive failures the
//!   breaker opens for 30 s, during which no process sends anything; then one process sends one
//!   probe (half-open) and the others wait for its outcome. At most a fixed number of requests
//!   go out per UTC day per tool install, so a firewall or a broken collector can never cause a
//!   retry storm.

use std::io;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::thread;
use std::time::{Duration, Instant};

use optel_wire::Batch;

use crate::breaker::{BREAKER_FAILURES, Breaker};
use crate::debug::{DebugLog, rfc3339};
use crate::export::{ExportError, Exporter};
use crate::queue::{Claim, Queue};
use crate::random::random_bytes;

/// Most events sent in one request (the collector accepts up to
/// [`optel_wire::limits::MAX_BATCH_EVENTS`]).
pub(crate) const MAX_REQUEST_EVENTS: usize = 500;
/// Most bytes of (uncompressed) segment JSON merged into one request: 1 MiB, well under the
/// collector's [`optel_wire::limits::MAX_BODY_BYTES`].
pub(crate) const MAX_REQUEST_BYTES: u64 = 1024 * 1024;
/// First retry delay: 100 ms.
const INITIAL_BACKOFF: Duration = Duration::from_millis(100);
/// Growth of the retry delay per attempt: ×1.5, gentler than doubling, so that a few retries
/// fit in one round.
const BACKOFF_MULTIPLIER: f64 = 1.5;
/// Longest retry delay: 2 s, so a round still makes several attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Longest time one round keeps retrying: 10 s, after which what is left waits for a later
/// round or run.
const MAX_RETRY_TIME: Duration = Duration::from_secs(10);
/// Longest `Retry-After` honoured: 1 hour. A longer one is clamped, so a misconfigured server
/// cannot silence telemetry for good.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// Settings of the delivery thread.
#[derive(Debug, Clone)]
pub(crate) struct Policy {
    /// Timeout of one whole request (connect, send, answer).
    pub(crate) request_timeout: Duration,
    /// Most requests per UTC day.
    pub(crate) daily_request_cap: u32,
    /// `<TOOL>_TELEMETRY_DEBUG` lines.
    pub(crate) debug: DebugLog,
}

/// Handle to the delivery thread.
#[derive(Debug)]
pub(crate) struct Worker {
    requests: SyncSender<FlushRequest>,
}

#[derive(Debug)]
struct FlushRequest {
    deadline: Instant,
    done: SyncSender<()>,
}

impl Worker {
    /// Starts the thread; it begins with a round for segments left by earlier runs.
    pub(crate) fn start(
        queue: Queue,
        breaker: Breaker,
        policy: Policy,
        exporter: Box<dyn Exporter>,
    ) -> io::Result<Self> {
        // One request: the exit's.
        let (tx, rx) = mpsc::sync_channel::<FlushRequest>(1);
        thread::Builder::new()
            .name("optel-delivery".into())
            .spawn(move || {
                let sender = Sender {
                    queue: &queue,
                    breaker: &breaker,
                    policy: &policy,
                    exporter: exporter.as_ref(),
                };
                sender.run(&rx);
            })?;
        Ok(Self { requests: tx })
    }

    /// The exit: a last delivery round, then [`Exporter::force_flush`] and
    /// [`Exporter::shutdown_with_timeout`], all within `deadline` (the one exit deadline).
    /// Returns whether all of it finished in time; what did not goes on a later run. The
    /// thread takes no request after this one.
    pub(crate) fn finish(&self, deadline: Instant) -> bool {
        let (done_tx, done_rx) = mpsc::sync_channel(1);
        let request = FlushRequest {
            deadline,
            done: done_tx,
        };
        if self.requests.try_send(request).is_err() {
            return false;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match done_rx.recv_timeout(left) {
            Ok(()) => true,
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => false,
        }
    }
}

struct Sender<'a> {
    queue: &'a Queue,
    breaker: &'a Breaker,
    policy: &'a Policy,
    exporter: &'a dyn Exporter,
}

impl Sender<'_> {
    fn run(&self, requests: &Receiver<FlushRequest>) {
        self.deliver_all(Instant::now() + MAX_RETRY_TIME);
        if let Ok(request) = requests.recv() {
            self.deliver_all(request.deadline);
            // A buffering exporter would otherwise lose what it holds: the contract's
            // force_flush and shutdown_with_timeout, never past the exit deadline.
            let left = || request.deadline.saturating_duration_since(Instant::now());
            let _ = self.exporter.force_flush(left());
            let _ = self.exporter.shutdown_with_timeout(left());
            let _ = request.done.try_send(());
        }
    }

    /// One round: send every segment that can be claimed, grouped into requests of events that
    /// share the same envelope. Stops at the first request that cannot go now (breaker open,
    /// cap reached, retries exhausted or deadline passed).
    fn deliver_all(&self, deadline: Instant) {
        let Ok(segments) = self.queue.segments() else {
            return;
        };
        let mut group: Vec<Claim> = Vec::new();
        let mut events = 0;
        let mut bytes = 0;
        for segment in segments {
            if Instant::now() >= deadline {
                return;
            }
            if !self.breaker.may_send() {
                self.debug_breaker("not sending");
                return;
            }
            let Ok(Some(claim)) = self.queue.claim(&segment.path) else {
                continue;
            };
            let fits = group
                .first()
                .is_none_or(|first| same_envelope(&first.batch, &claim.batch))
                && events + claim.batch.events.len() <= MAX_REQUEST_EVENTS
                && bytes + claim.bytes <= MAX_REQUEST_BYTES;
            if !fits && !group.is_empty() {
                if !self.send_group(std::mem::take(&mut group), deadline) {
                    return;
                }
                events = 0;
                bytes = 0;
            }
            events += claim.batch.events.len();
            bytes += claim.bytes;
            group.push(claim);
        }
        if !group.is_empty() {
            self.send_group(group, deadline);
        }
    }

    /// Sends one group as one batch, retrying within the policy; returns whether the round
    /// may go on.
    fn send_group(&self, group: Vec<Claim>, deadline: Instant) -> bool {
        let Some(first) = group.first() else {
            return true;
        };
        let mut batch = first.batch.clone();
        batch.events.clear();
        // The first segment's count is added in the loop below like the others (regression:
        // it was counted twice; tests::merged_segments_report_each_drop_count_once).
        batch.dropped_events = 0;
        for claim in &group {
            batch.events.extend(claim.batch.events.iter().cloned());
            batch.dropped_events += claim.batch.dropped_events;
        }
        let mut backoff = Backoff::new();
        let round_end = deadline.min(Instant::now() + MAX_RETRY_TIME);
        let bytes: u64 = group.iter().map(|c| c.bytes).sum();
        loop {
            let now = Instant::now();
            if now >= round_end {
                return false;
            }
            if !self.breaker.acquire(self.policy.daily_request_cap) {
                self.debug_breaker("request not sent");
                return false;
            }
            let timeout = self.policy.request_timeout.min(round_end - now);
            self.policy.debug.line(|| {
                // Not the exporter's Debug: a custom one may hold credentials.
                format!(
                    "sending {} events ({bytes} bytes of JSON, {} dropped reported), timeout {} ms",
                    batch.events.len(),
                    batch.dropped_events,
                    timeout.as_millis()
                )
            });
            let result = self.exporter.export(&batch, timeout);
            self.policy.debug.line(|| match &result {
                Ok(()) => format!("delivered in {} ms", now.elapsed().as_millis()),
                Err(e) => format!("{e} (after {} ms)", now.elapsed().as_millis()),
            });
            match result {
                Ok(()) | Err(ExportError::Rejected(_)) => {
                    self.breaker.success();
                    if let Err(e) = result {
                        // Kept after success clears it: a rejected batch is worth seeing.
                        self.breaker.record_error(&e.to_string());
                    }
                    for claim in group {
                        let _ = self.queue.complete(claim);
                    }
                    return true;
                }
                Err(ExportError::Retryable {
                    retry_after,
                    reason,
                }) => {
                    self.breaker.record_error(&format!("will retry: {reason}"));
                    let retry_after = retry_after.map(|d| d.min(MAX_RETRY_AFTER));
                    self.breaker.failure(retry_after);
                    self.debug_breaker("after the failure");
                    let delay = retry_after.unwrap_or_else(|| backoff.next_delay());
                    if Instant::now() + delay >= round_end {
                        return false;
                    }
                    thread::sleep(delay);
                }
            }
        }
    }
}

impl Sender<'_> {
    /// A debug line with the breaker and daily-cap state.
    fn debug_breaker(&self, what: &str) {
        self.policy.debug.line(|| {
            let s = self.breaker.state();
            let now = optel_wire::Timestamp::now().unix_ms();
            let breaker = if s.open_until_ms > now {
                format!(
                    "breaker open until {}",
                    rfc3339(optel_wire::Timestamp::from_unix_ms(s.open_until_ms).to_system_time())
                )
            } else {
                "breaker closed".to_owned()
            };
            format!(
                "{what}: {breaker}, {} failures in a row (opens at {BREAKER_FAILURES}), {} of {} requests today",
                s.failures, s.requests, self.policy.daily_request_cap
            )
        });
    }
}

fn same_envelope(a: &Batch, b: &Batch) -> bool {
    a.service_name == b.service_name
        && a.service_version == b.service_version
        && a.pseudonym == b.pseudonym
        && a.os == b.os
        && a.arch == b.arch
        && a.catalog_hash == b.catalog_hash
}

/// Exponential backoff with jitter: the n-th delay is drawn uniformly from
/// `[d/2, d]` where `d = min(100 ms × 1.5^n, 2 s)`, so processes that failed together do not
/// retry together.
#[derive(Debug)]
pub(crate) struct Backoff {
    next: Duration,
}

impl Backoff {
    pub(crate) fn new() -> Self {
        Self {
            next: INITIAL_BACKOFF,
        }
    }

    pub(crate) fn next_delay(&mut self) -> Duration {
        let ceiling = self.next;
        self.next = ceiling.mul_f64(BACKOFF_MULTIPLIER).min(MAX_BACKOFF);
        let fraction = random_bytes::<2>()
            .map(|b| f64::from(u16::from_le_bytes(b)) / f64::from(u16::MAX))
            .unwrap_or(1.0);
        ceiling.mul_f64(0.5 + 0.5 * fraction)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_by_half_with_jitter_and_caps() {
        let mut b = Backoff::new();
        let ceilings = [100, 150, 225, 337, 506, 759, 1139, 1708, 2000, 2000];
        for ceiling in ceilings {
            let d = b.next_delay();
            let ceiling = Duration::from_millis(ceiling + 1);
            assert!(
                d <= ceiling && d >= ceiling / 2 - Duration::from_millis(1),
                "{d:?}"
            );
        }
    }

    use std::sync::Mutex;

    /// An exporter that answers from a script and records the size of each batch.
    #[derive(Debug)]
    struct Scripted {
        answers: Mutex<Vec<crate::export::ExportResult>>,
        calls: Mutex<Vec<usize>>,
        dropped: Mutex<Vec<u64>>,
    }

    impl Scripted {
        fn new(mut answers: Vec<crate::export::ExportResult>) -> Self {
            answers.reverse();
            Self {
                answers: Mutex::new(answers),
                calls: Mutex::new(Vec::new()),
                dropped: Mutex::new(Vec::new()),
            }
        }
    }

    impl Exporter for Scripted {
        fn export(&self, batch: &Batch, _timeout: Duration) -> crate::export::ExportResult {
            self.calls.lock().unwrap().push(batch.events.len());
            self.dropped.lock().unwrap().push(batch.dropped_events);
            self.answers.lock().unwrap().pop().unwrap_or(Ok(()))
        }
    }

    fn retryable(retry_after: Option<Duration>) -> crate::export::ExportResult {
        Err(ExportError::Retryable {
            reason: "test".into(),
            retry_after,
        })
    }

    fn setup(segments: &[usize]) -> (tempfile::TempDir, Queue, Breaker) {
        let dir = tempfile::tempdir().unwrap();
        let queue = Queue::open(dir.path().join("queue")).unwrap();
        for &n in segments {
            queue.append(&crate::queue::tests::batch(n)).unwrap();
        }
        let breaker = Breaker::new(dir.path().to_owned());
        (dir, queue, breaker)
    }

    fn round(queue: &Queue, breaker: &Breaker, exporter: &Scripted) {
        let policy = Policy {
            request_timeout: Duration::from_secs(1),
            daily_request_cap: 100,
            debug: DebugLog::default(),
        };
        Sender {
            queue,
            breaker,
            policy: &policy,
            exporter,
        }
        .deliver_all(Instant::now() + Duration::from_secs(5));
    }

    #[test]
    fn segments_are_merged_up_to_the_request_size() {
        let (_dir, queue, breaker) = setup(&[200, 200, 200]);
        let exporter = Scripted::new(vec![]);
        round(&queue, &breaker, &exporter);
        assert_eq!(*exporter.calls.lock().unwrap(), [400, 200]);
        assert_eq!(queue.pending_events().unwrap(), 0);
    }

    #[test]
    fn merged_segments_report_each_drop_count_once() {
        // Regression: the first segment's `dropped_events` was counted twice when segments
        // were merged into one request (the merged batch started as a copy of it).
        let dir = tempfile::tempdir().unwrap();
        let queue = Queue::open(dir.path().join("queue")).unwrap();
        for (n, dropped) in [(2, 5), (3, 7)] {
            let mut batch = crate::queue::tests::batch(n);
            batch.dropped_events = dropped;
            queue.append(&batch).unwrap();
        }
        let breaker = Breaker::new(dir.path().to_owned());
        let exporter = Scripted::new(vec![]);
        round(&queue, &breaker, &exporter);
        assert_eq!(*exporter.calls.lock().unwrap(), [5], "one request");
        assert_eq!(*exporter.dropped.lock().unwrap(), [12]);
    }

    #[test]
    fn retryable_failures_are_retried_with_backoff_then_delivered() {
        let (_dir, queue, breaker) = setup(&[3]);
        let exporter = Scripted::new(vec![retryable(None), retryable(None), Ok(())]);
        round(&queue, &breaker, &exporter);
        assert_eq!(exporter.calls.lock().unwrap().len(), 3);
        assert_eq!(queue.pending_events().unwrap(), 0);
        assert_eq!(breaker.state().failures, 0);
    }

    #[test]
    fn retry_after_ends_the_round_and_keeps_the_segment() {
        let (_dir, queue, breaker) = setup(&[3]);
        let exporter = Scripted::new(vec![retryable(Some(Duration::from_secs(60)))]);
        round(&queue, &breaker, &exporter);
        assert_eq!(exporter.calls.lock().unwrap().len(), 1);
        assert_eq!(queue.pending_events().unwrap(), 3);
        assert!(!breaker.may_send());
    }

    #[test]
    fn rejected_batches_are_dropped_not_retried() {
        let (_dir, queue, breaker) = setup(&[3]);
        let exporter = Scripted::new(vec![Err(ExportError::Rejected("400".into()))]);
        round(&queue, &breaker, &exporter);
        assert_eq!(exporter.calls.lock().unwrap().len(), 1);
        assert_eq!(queue.pending_events().unwrap(), 0);
    }
}
