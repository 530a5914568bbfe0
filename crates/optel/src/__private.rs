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

/// What one run persists at exit, for the store benchmark: its batch appended to the queue in
/// `data_dir/queue` as one segment and written to the ledger in `data_dir/ledger`, sealed with
/// a fixed test key when `sealed` (feature `encryption`).
///
/// # Errors
/// A file cannot be written.
pub fn store_run(data_dir: &Path, batch: &optel_wire::Batch, sealed: bool) -> std::io::Result<()> {
    #[cfg(feature = "encryption")]
    let sealer = sealed.then(|| crate::store::Sealer::new(&[7; 32], "bench", data_dir));
    #[cfg(not(feature = "encryption"))]
    let sealer: Option<crate::store::Sealer> = {
        let _ = sealed;
        None
    };
    Queue::open(data_dir.join("queue"))?
        .sealed(sealer.clone())
        .append(batch)?;
    crate::export::JsonlFileExporter::new(data_dir.join("ledger"))
        .max_bytes(0)
        .sealed(sealer)
        .append(batch)
        .map_err(std::io::Error::other)?;
    Ok(())
}

/// Reads the store key of `tool` under `config_dir` (creating it on first use): what init adds
/// with the encrypted store on.
///
/// # Errors
/// The key directory or file cannot be created or read.
pub fn store_key(config_dir: &Path, tool: &str) -> std::io::Result<[u8; 32]> {
    let plan = crate::fsutil::DirPlan::explicit(config_dir.join("optel").join("keys"));
    crate::store::load_or_create_key(&plan, tool, true)?
        .map(|(key, _)| key)
        .ok_or_else(|| std::io::Error::other("no key"))
}

/// The consent re-check of a running process, for its benchmark.
#[derive(Debug)]
pub struct ConsentWatch(crate::consent::Watch);

impl ConsentWatch {
    /// Watches the consent files of `tool` from `cwd` and `config_dir`.
    pub fn new(tool: &str, cwd: &Path, config_dir: &Path) -> Self {
        Self(crate::consent::Watch::new(
            tool,
            Some(cwd),
            Some(config_dir),
        ))
    }

    /// One check: whether a consent file changed since the last.
    pub fn changed(&mut self) -> bool {
        self.0.changed()
    }
}

/// A run's batch of `events` command events, as the queue and store benchmarks persist it.
pub fn bench_batch(events: usize) -> optel_wire::Batch {
    use optel_wire::{Event, EventType, Timestamp};
    let mut b = optel_wire::Batch::new(
        "bench",
        "1.0.0",
        "0123456789abcdef0123456789abcdef",
        "linux",
        "x86_64",
    );
    for i in 0..events {
        let mut e = Event::new(
            format!("00000000-0000-4000-8000-{i:012}"),
            EventType::Command,
            "build",
            Timestamp::now(),
            "00000000-0000-4000-8000-000000000000",
        );
        e.duration_ms = Some(12);
        e.success = Some(true);
        b.events.push(e);
    }
    b
}

/// A batch encoded as a queue segment holds it: JSON, sealed with a fixed test key when
/// `sealed` (feature `encryption`). Returns the size, for the store benchmark.
pub fn store_encode(batch: &optel_wire::Batch, sealed: bool) -> usize {
    let json = serde_json::to_vec(batch).unwrap_or_default();
    #[cfg(feature = "encryption")]
    if sealed {
        thread_local! {
            static SEALER: crate::store::Sealer =
                crate::store::Sealer::new(&[7; 32], "bench", Path::new("."));
        }
        return SEALER.with(|s| s.seal("queue/1-a-1e", &json).map_or(0, |v| v.len()));
    }
    let _ = sealed;
    json.len()
}
