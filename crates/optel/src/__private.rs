//! Hooks for the benchmarks in `benches/` and for tests of other crates: not a stable API,
//! hidden from the docs, and free to change in any release.

use std::path::Path;

use crate::global::GLOBAL;
use crate::queue::Queue;

/// Takes this process's buffered events without sending them and returns how many: only for
/// the recording benchmark, which records more events than the buffer holds.
pub fn bench_drain() -> usize {
    GLOBAL
        .get()
        .and_then(|inner| {
            inner
                .buffer
                .lock()
                .ok()
                .map(|mut b| std::mem::take(&mut *b).len())
        })
        .unwrap_or(0)
}

/// Empties the global recorder's in-memory buffer, so a benchmark measures recording
/// rather than the full-buffer drop path.
pub fn clear_buffer() {
    if let Some(inner) = GLOBAL.get()
        && let Ok(mut buffer) = inner.buffer.lock()
    {
        buffer.clear();
    }
}

/// Appends `batch` to the queue in `dir` as one segment (what a process does at exit).
///
/// # Errors
/// The directory or file cannot be written.
pub fn queue_append(dir: &Path, batch: &optel_wire::Batch) -> std::io::Result<()> {
    Queue::open(dir.to_owned())?.append(batch)?;
    Ok(())
}

/// Number of events waiting in a data directory's queue (used by tests and `status`).
pub fn queued_events(data_dir: &Path) -> usize {
    Queue::open(data_dir.join("queue"))
        .and_then(|q| q.pending_events())
        .map_or(0, |n| usize::try_from(n).unwrap_or(usize::MAX))
}
