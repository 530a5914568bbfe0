//! The one writer of a store, with group commit.
//!
//! Ingest handlers do not touch the database: they hand validated batches to [`Writer`], whose
//! dedicated thread takes every batch waiting in its bounded queue (up to
//! [`MAX_GROUP_EVENTS`] events), stores them in ONE transaction
//! ([`Store::insert_prepared`]), and only then answers each handler. Many concurrent requests
//! thus share one commit (one fsync) instead of queueing for the database lock one by one.
//! When the queue is full, [`Writer::submit`] fails at once with [`SubmitError::Saturated`] and
//! the handler answers 503 with `Retry-After`, instead of buffering without bound.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use optel_wire::Batch;
use tokio::sync::{mpsc, oneshot};

use crate::metrics::Metrics;
use crate::storage::{InsertOutcome, PreparedBatch, Store};

/// Default queue capacity, in batches.
pub const DEFAULT_QUEUE: usize = 256;
/// Most events stored in one group commit.
pub const MAX_GROUP_EVENTS: usize = 20_000;

/// Why a batch was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// The queue is full: retry shortly.
    #[error("the collector is saturated: retry in a second")]
    Saturated,
    /// The writer has stopped (shutdown).
    #[error("the collector is shutting down: retry later")]
    Stopped,
}

/// Outcome of one submitted batch, delivered after the commit.
pub type WriteResult = Result<InsertOutcome, String>;

struct Job {
    prepared: PreparedBatch,
    received_ms: i64,
    reply: oneshot::Sender<WriteResult>,
}

enum Msg {
    Write(Box<Job>),
    Stop,
}

/// Handle to the writer thread of a store. Cheap to clone.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Msg>,
    capacity: usize,
    stopped: Arc<AtomicBool>,
    done: Arc<std::sync::Mutex<Vec<std::thread::JoinHandle<()>>>>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("capacity", &self.capacity)
            .field("depth", &self.depth())
            .finish()
    }
}

impl Writer {
    /// Starts the writer threads of `store` ([`Store::concurrent_commits`] of them, each
    /// taking the next group while the others commit) with a queue of `capacity` batches.
    ///
    /// # Errors
    /// A thread cannot be spawned.
    pub fn spawn(
        store: Arc<dyn Store>,
        capacity: usize,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<Self> {
        let capacity = capacity.max(1);
        let (tx, rx) = mpsc::channel(capacity);
        let queue = Arc::new(Queue {
            rx: std::sync::Mutex::new(rx),
            stopping: AtomicBool::new(false),
        });
        let mut handles = Vec::new();
        for _ in 0..store.concurrent_commits().max(1) {
            let (store, queue, metrics) = (store.clone(), queue.clone(), metrics.clone());
            handles.push(
                std::thread::Builder::new()
                    .name("optel-writer".into())
                    .spawn(move || run(&*store, &queue, &metrics))?,
            );
        }
        Ok(Self {
            tx,
            capacity,
            stopped: Arc::new(AtomicBool::new(false)),
            done: Arc::new(std::sync::Mutex::new(handles)),
        })
    }

    /// Batches waiting for the writer.
    pub fn depth(&self) -> usize {
        self.capacity.saturating_sub(self.tx.capacity())
    }

    /// Queues a validated batch; the receiver yields after its commit.
    ///
    /// # Errors
    /// [`SubmitError::Saturated`] when the queue is full, [`SubmitError::Stopped`] after
    /// [`Writer::shutdown`].
    pub fn submit(
        &self,
        project_id: i64,
        batch: Batch,
        received_ms: i64,
    ) -> Result<oneshot::Receiver<WriteResult>, SubmitError> {
        self.submit_with_catalog(project_id, batch, None, received_ms)
    }

    /// [`Writer::submit`] for a batch whose `catalog_hash` names `catalog`, which the
    /// collector stored earlier (a catalog the batch carries is used without this).
    ///
    /// # Errors
    /// As [`Writer::submit`].
    pub fn submit_with_catalog(
        &self,
        project_id: i64,
        batch: Batch,
        catalog: Option<&optel_wire::catalog::Catalog>,
        received_ms: i64,
    ) -> Result<oneshot::Receiver<WriteResult>, SubmitError> {
        if self.stopped.load(Ordering::Acquire) {
            return Err(SubmitError::Stopped);
        }
        let (reply, rx) = oneshot::channel();
        // The work that needs no database is done here, on the request's thread, keeping the
        // single writer thread for the database alone.
        let job = Box::new(Job {
            prepared: match catalog {
                Some(c) if batch.catalog.is_none() => {
                    PreparedBatch::with_catalog(project_id, batch, Some(c))
                }
                _ => PreparedBatch::new(project_id, batch),
            },
            received_ms,
            reply,
        });
        match self.tx.try_send(Msg::Write(job)) {
            Ok(()) => Ok(rx),
            Err(mpsc::error::TrySendError::Full(_)) => Err(SubmitError::Saturated),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(SubmitError::Stopped),
        }
    }

    /// Stops taking batches, stores every batch already queued, and waits for the thread
    /// (at most `timeout`). Safe to call more than once.
    pub async fn shutdown(&self, timeout: Duration) {
        self.stopped.store(true, Ordering::Release);
        let _ = tokio::time::timeout(timeout, self.tx.send(Msg::Stop)).await;
        let handles = std::mem::take(
            &mut *self
                .done
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        let join = tokio::task::spawn_blocking(move || {
            for h in handles {
                let _ = h.join();
            }
        });
        let _ = tokio::time::timeout(timeout, join).await;
    }
}

/// The queue the writer threads share: one at a time takes a group out of it.
struct Queue {
    rx: std::sync::Mutex<mpsc::Receiver<Msg>>,
    stopping: AtomicBool,
}

/// The next group: every batch waiting (at least one, up to [`MAX_GROUP_EVENTS`] events), and
/// whether the stop message came.
fn next_group(queue: &Queue) -> (Vec<Job>, bool) {
    let mut rx = queue
        .rx
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut jobs = Vec::new();
    if queue.stopping.load(Ordering::Acquire) {
        return (jobs, true);
    }
    let mut stop = false;
    let mut events = 0;
    match rx.blocking_recv() {
        Some(Msg::Write(j)) => {
            events += j.prepared.batch.events.len();
            jobs.push(*j);
        }
        Some(Msg::Stop) | None => stop = true,
    }
    while !stop && events < MAX_GROUP_EVENTS {
        match rx.try_recv() {
            Ok(Msg::Write(j)) => {
                events += j.prepared.batch.events.len();
                jobs.push(*j);
            }
            Ok(Msg::Stop) => stop = true,
            Err(_) => break,
        }
    }
    if stop {
        queue.stopping.store(true, Ordering::Release);
        // Anything still queued after the stop is refused (503), not lost: its sender retries.
        rx.close();
    }
    (jobs, stop)
}

fn run(store: &dyn Store, queue: &Queue, metrics: &Metrics) {
    loop {
        let (jobs, stop) = next_group(queue);
        if !jobs.is_empty() {
            commit(store, jobs, metrics);
        }
        if stop {
            return;
        }
    }
}

fn commit(store: &dyn Store, jobs: Vec<Job>, metrics: &Metrics) {
    let started = Instant::now();
    // A group spans one received time: the earliest, so nothing is dated after its answer.
    let received = jobs.iter().map(|j| j.received_ms).min().unwrap_or(0);
    let (mut batches, replies): (Vec<PreparedBatch>, Vec<_>) =
        jobs.into_iter().map(|j| (j.prepared, j.reply)).unzip();
    let result = store.insert_prepared(&mut batches, received);
    metrics.observe_commit(started.elapsed(), replies.len());
    match result {
        Ok(outcomes) => {
            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                let _ = reply.send(Ok(outcome));
            }
        }
        Err(e) if batches.len() > 1 => {
            // One bad batch (its project deleted meanwhile, a constraint) must not fail the
            // others it happened to share a transaction with: each is committed on its own,
            // and only the one at fault fails. A database that is down fails them all again.
            tracing::warn!(error = %e, batches = replies.len(), "group commit failed: committing its batches one by one");
            for (p, reply) in batches.into_iter().zip(replies) {
                let _ = reply.send(commit_alone(store, p, received));
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "commit failed");
            for reply in replies {
                let _ = reply.send(Err(e.to_string()));
            }
        }
    }
}

/// Commits one batch of a failed group in a transaction of its own.
fn commit_alone(store: &dyn Store, batch: PreparedBatch, received_ms: i64) -> WriteResult {
    // The failed attempt may have taken the prepared delta out: prepare the batch again.
    let mut one = [batch.reprepared()];
    match store.insert_prepared(&mut one, received_ms) {
        Ok(outcomes) => outcomes
            .into_iter()
            .next()
            .ok_or_else(|| "the store answered no outcome".to_owned()),
        Err(e) => {
            tracing::error!(error = %e, project_id = one[0].project_id, "batch commit failed");
            Err(e.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::storage::{PgStore, SqliteStore};
    use optel_wire::{Event, EventType, Timestamp};

    fn batch(seed: u32, n: usize) -> Batch {
        let mut b = Batch::new("acme", "1.0.0", format!("{seed:032x}"), "linux", "x86_64");
        for i in 0..n {
            b.events.push(Event::new(
                format!("{seed:08x}-0000-4000-8000-{i:012x}"),
                EventType::Command,
                "build",
                Timestamp::from_unix_ms(crate::now_ms()),
                "7e2d4c1a-0b9f-4e8d-8c7b-6a5f4e3d2c1b",
            ));
        }
        b
    }

    /// Regression: deleting a project while the collector ran failed the writes of every
    /// project for seconds, because the deleted project's batch failed its foreign key and
    /// rolled back the whole group commit it shared with live projects' batches.
    fn a_bad_batch_fails_alone(store: &dyn Store) {
        let live = store.create_project("live", "hash-live", 0).unwrap();
        let gone = store.create_project("gone", "hash-gone", 0).unwrap();
        assert!(store.delete_project("gone").unwrap());
        let metrics = Metrics::default();
        let mut receivers = Vec::new();
        let jobs = [(live.id, 1), (gone.id, 2), (live.id, 3)]
            .into_iter()
            .map(|(project, seed)| {
                let (reply, rx) = oneshot::channel();
                receivers.push(rx);
                Job {
                    prepared: PreparedBatch::new(project, batch(seed, 3)),
                    received_ms: crate::now_ms(),
                    reply,
                }
            })
            .collect();
        commit(store, jobs, &metrics);
        let results: Vec<WriteResult> = receivers
            .into_iter()
            .map(|mut rx| rx.try_recv().unwrap())
            .collect();
        assert_eq!(
            results[0],
            Ok(InsertOutcome {
                inserted: 3,
                duplicates: 0
            })
        );
        assert!(results[1].is_err(), "{:?}", results[1]);
        assert_eq!(
            results[2],
            Ok(InsertOutcome {
                inserted: 3,
                duplicates: 0
            })
        );
        // The live batches were counted once in the rollups.
        let days = crate::rollup::DayRange {
            first: 0,
            last: i64::MAX / 2,
        };
        let total: i64 = store
            .counts(live.id, days)
            .unwrap()
            .iter()
            .map(|r| r.count)
            .sum();
        assert_eq!(total, 6);
    }

    #[test]
    fn a_bad_batch_fails_alone_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        a_bad_batch_fails_alone(&SqliteStore::open(dir.path()).unwrap());
    }

    #[test]
    fn a_bad_batch_fails_alone_on_postgres() {
        let url = std::env::var("OPTEL_TEST_DATABASE_URL")
            .unwrap_or_else(|_| "host=127.0.0.1 user=postgres dbname=test".into());
        let schema = format!("optel_writer_{}", std::process::id());
        let store = PgStore::connect_in_schema(&url, Some(&schema)).unwrap();
        a_bad_batch_fails_alone(&store);
        store.drop_schema().unwrap();
    }
}
