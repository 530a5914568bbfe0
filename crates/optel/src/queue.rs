//! The durable local queue: one segment file per process run, each a whole [`Batch`].
//!
//! Why segments rather than SQLite: see `docs/adr/001-local-queue.md` (measured there: a
//! segment append costs a fraction of a SQLite transaction, needs no schema, no WAL recovery
//! and no library the SDK would otherwise not link).
//!
//! A process writes its events once, at shutdown, under a temporary name and renames the file
//! into place, so a segment is either absent or complete: a `kill -9` at any point never leaves
//! a torn file (at worst a hidden `.tmp` file, removed by a later run). A sender claims a
//! segment with a non-blocking exclusive lock, so concurrent processes of the same tool do not
//! send the same segment at once, and deletes it only after the collector has answered 2xx. A
//! process that dies between the collector's commit and the deletion leaves the segment behind;
//! it is sent again later and the collector's idempotency on event ids keeps it from counting
//! twice.
//!
//! A segment's name carries its event count and byte size
//! (`<unix ns>-<random>-<events>e-<bytes>b.json`), so bounding the queue and reporting its size
//! cost one directory listing, not a read of every file.
//!
//! Bounds: at most [`MAX_SEGMENTS`] segments, [`MAX_QUEUE_EVENTS`] events and
//! [`MAX_QUEUE_BYTES`] bytes; past any of them the oldest segments are dropped first. Dropped
//! events are counted in the `dropped` file next to the segments: a lifetime total (shown by
//! `status`) and a not-yet-reported count that the next batch carries in `dropped_events`.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use optel_wire::Batch;

use crate::fsutil;
use crate::random::random_bytes;
use crate::store::{Count, SEALED_EXT, Sealer, StoreCounters};

/// Most segment files kept; the oldest go first.
pub(crate) const MAX_SEGMENTS: usize = 1_000;
/// Most events kept in segment files; the oldest segments go first.
pub(crate) const MAX_QUEUE_EVENTS: u64 = 100_000;
/// Most bytes kept in segment files: 16 MiB.
pub(crate) const MAX_QUEUE_BYTES: u64 = 16 * 1024 * 1024;
/// Largest segment file read back: anything larger was not written by us.
const MAX_SEGMENT_BYTES: u64 = 8 * 1024 * 1024;
/// Age after which a leftover temporary file (of a killed process) is removed.
const STALE_TMP_AGE: Duration = Duration::from_secs(600);
/// The drop counter file, beside the segments.
const DROPPED_FILE: &str = "dropped";

/// The queue directory of one tool.
#[derive(Debug, Clone)]
pub(crate) struct Queue {
    dir: PathBuf,
    bounds: Bounds,
    /// Seals new segments and opens sealed ones (the encrypted local store).
    sealer: Option<Sealer>,
}

/// Limits of the queue (the constants above; smaller in tests).
#[derive(Debug, Clone, Copy)]
struct Bounds {
    segments: usize,
    events: u64,
    bytes: u64,
}

const BOUNDS: Bounds = Bounds {
    segments: MAX_SEGMENTS,
    events: MAX_QUEUE_EVENTS,
    bytes: MAX_QUEUE_BYTES,
};

/// A segment file as listed: its path and what its name says about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Segment {
    pub(crate) path: PathBuf,
    /// Events in the segment.
    pub(crate) events: u64,
    /// Size of the segment file in bytes.
    pub(crate) bytes: u64,
    /// Sealed by the encrypted local store (`.sealed`), else plain JSON (`.json`).
    pub(crate) sealed: bool,
}

/// A segment this process has locked for sending.
#[derive(Debug)]
pub(crate) struct Claim {
    pub(crate) path: PathBuf,
    pub(crate) batch: Batch,
    pub(crate) bytes: u64,
    // Held for the lock: closing the file releases it.
    _file: File,
}

/// Counts of events dropped because the queue was full.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Dropped {
    /// Dropped and not yet reported to the collector.
    pub(crate) unreported: u64,
    /// Dropped since the queue was created.
    pub(crate) total: u64,
}

impl Queue {
    /// Opens (creating if needed, 0700) the queue directory.
    pub(crate) fn open(dir: PathBuf) -> io::Result<Self> {
        fsutil::create_private_dir(&dir)?;
        Ok(Self {
            dir,
            bounds: BOUNDS,
            sealer: None,
        })
    }

    /// Seals new segments with `sealer` and opens sealed ones with it; without one, sealed
    /// segments cannot be read and are dropped (counted) when claimed.
    pub(crate) fn sealed(mut self, sealer: Option<Sealer>) -> Self {
        self.sealer = sealer;
        self
    }

    /// Opens an existing queue directory without creating anything (for `status`).
    pub(crate) fn existing(dir: PathBuf) -> Self {
        Self {
            dir,
            bounds: BOUNDS,
            sealer: None,
        }
    }

    /// Appends a batch as a new segment, then enforces the bounds.
    pub(crate) fn append(&self, batch: &Batch) -> io::Result<PathBuf> {
        let json = serde_json::to_vec(batch).map_err(io::Error::other)?;
        // Nanoseconds, so that two appends of one process sort in order (the oldest segment is
        // dropped first); the random part keeps names of concurrent processes distinct.
        let now_ns = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let place = format!(
            "{now_ns:020}-{}-{}e",
            hex::encode(random_bytes::<6>()?),
            batch.events.len()
        );
        let (bytes, ext) = match &self.sealer {
            Some(sealer) => (sealer.seal(&format!("queue/{place}"), &json)?, SEALED_EXT),
            None => (json, "json"),
        };
        let name = format!("{place}-{}b.{ext}", bytes.len());
        let json = bytes;
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let path = self.dir.join(&name);
        let written = (|| {
            let mut f = fsutil::create_private(&tmp)?;
            f.write_all(&json)?;
            // No fsync: the page cache survives a killed process, and an fsync would cost the
            // host's exit milliseconds. A power cut may lose the last run's events.
            drop(f);
            fs::rename(&tmp, &path)
        })();
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        self.enforce_bounds()?;
        Ok(path)
    }

    /// Segments, oldest first.
    pub(crate) fn segments(&self) -> io::Result<Vec<Segment>> {
        let mut segments: Vec<Segment> = fs::read_dir(&self.dir)?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter_map(segment_of)
            .collect();
        segments.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(segments)
    }

    /// Number of events waiting in segments.
    pub(crate) fn pending_events(&self) -> io::Result<u64> {
        Ok(self.segments()?.iter().map(|s| s.events).sum())
    }

    /// Every readable queued batch, oldest first (for `telemetry preview` and `status`).
    // Used by the `telemetry` subcommand (feature `clap`).
    #[cfg_attr(not(feature = "clap"), allow(dead_code))]
    pub(crate) fn batches(&self) -> io::Result<Vec<Batch>> {
        Ok(self
            .segments()?
            .iter()
            .filter_map(|seg| {
                fsutil::open_read(&seg.path)
                    .ok()
                    .and_then(|f| self.parse(&f, seg, false))
                    .map(|(batch, _)| batch)
            })
            .collect())
    }

    /// Locks and reads a segment. `Ok(None)` when another process holds it or it vanished.
    /// A segment that cannot be parsed is deleted: it would never become valid.
    pub(crate) fn claim(&self, path: &Path) -> io::Result<Option<Claim>> {
        let file = match fsutil::open_read(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Ok(None),
            Err(fs::TryLockError::Error(e)) => return Err(e),
        }
        // The segment may have been sent and deleted by another process between our listing
        // and our lock: only a path that still exists is ours.
        if !path.exists() {
            return Ok(None);
        }
        let Some(segment) = segment_of(path.to_owned()) else {
            return Ok(None);
        };
        match self.parse(&file, &segment, true) {
            Some((batch, bytes)) => Ok(Some(Claim {
                path: path.to_owned(),
                batch,
                bytes,
                _file: file,
            })),
            None => {
                fs::remove_file(path)?;
                Ok(None)
            }
        }
    }

    /// Deletes a delivered segment (still holding its lock).
    pub(crate) fn complete(&self, claim: Claim) -> io::Result<()> {
        match fs::remove_file(&claim.path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// The drop counters.
    pub(crate) fn dropped(&self) -> Dropped {
        let [unreported, total] = fsutil::read_counters(&self.dir.join(DROPPED_FILE));
        Dropped { unreported, total }
    }

    /// Returns the unreported drop count and resets it to zero (the caller puts it in a batch).
    pub(crate) fn take_unreported_drops(&self) -> u64 {
        let mut taken = 0;
        let _ = fsutil::update_counters(&self.dir.join(DROPPED_FILE), |[unreported, _]| {
            taken = *unreported;
            *unreported = 0;
        });
        taken
    }

    /// Adds `n` dropped events to both counters.
    pub(crate) fn count_drops(&self, n: u64) -> io::Result<()> {
        fsutil::update_counters(&self.dir.join(DROPPED_FILE), |[unreported, total]| {
            *unreported = unreported.saturating_add(n);
            *total = total.saturating_add(n);
        })
    }

    fn enforce_bounds(&self) -> io::Result<()> {
        self.remove_stale_tmp();
        let segments = self.segments()?;
        let mut total_bytes: u64 = segments.iter().map(|s| s.bytes).sum();
        let mut total_events: u64 = segments.iter().map(|s| s.events).sum();
        let mut count = segments.len();
        let mut dropped = 0;
        for segment in &segments {
            if count <= self.bounds.segments
                && total_bytes <= self.bounds.bytes
                && total_events <= self.bounds.events
            {
                break;
            }
            // Only the process whose removal succeeds counts the segment's events, so two
            // processes enforcing bounds at once count each drop once.
            if fs::remove_file(&segment.path).is_ok() {
                dropped += segment.events;
            }
            count -= 1;
            total_bytes = total_bytes.saturating_sub(segment.bytes);
            total_events = total_events.saturating_sub(segment.events);
        }
        if dropped > 0 {
            self.count_drops(dropped)?;
        }
        Ok(())
    }

    /// Reads a segment: plain JSON, or sealed (opened with the sealer; a rejection is counted
    /// when `count` is set, so that listing for `preview` does not count what a claim will).
    fn parse(&self, file: &File, segment: &Segment, count: bool) -> Option<(Batch, u64)> {
        let mut bytes = Vec::new();
        file.take(MAX_SEGMENT_BYTES + 1)
            .read_to_end(&mut bytes)
            .ok()?;
        if bytes.len() as u64 > MAX_SEGMENT_BYTES {
            return None;
        }
        let size = bytes.len() as u64;
        if segment.sealed {
            let place = format!("queue/{}", segment_place(&segment.path)?);
            bytes = match (&self.sealer, count) {
                (Some(sealer), true) => sealer.open_counted(&place, &bytes)?,
                (Some(sealer), false) => sealer.open(&place, &bytes).ok()?,
                (None, true) => {
                    // Sealed by a run with the encrypted store, read by one without it.
                    if let Some(data_dir) = self.dir.parent() {
                        StoreCounters::add(data_dir, Count::Undecryptable, 1);
                    }
                    return None;
                }
                (None, false) => return None,
            };
        }
        let batch = serde_json::from_slice(&bytes).ok()?;
        Some((batch, size))
    }

    /// Removes temporary files left by processes killed while writing a segment.
    fn remove_stale_tmp(&self) {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        let now = SystemTime::now();
        for entry in entries.filter_map(Result::ok) {
            let name = entry.file_name();
            let is_tmp = name
                .to_str()
                .is_some_and(|n| n.starts_with('.') && n.ends_with(".tmp"));
            let stale = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|m| now.duration_since(m).ok())
                .is_some_and(|age| age > STALE_TMP_AGE);
            if is_tmp && stale {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
}

/// What the local queue and the delivery state of a data directory hold, for a tool's
/// `telemetry status`. Reading it creates nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueueStatus {
    /// Events waiting to be delivered.
    pub pending_events: u64,
    /// Bytes of queued segment files.
    pub pending_bytes: u64,
    /// Segment files (about one per run that recorded events).
    pub segments: usize,
    /// Events dropped because the queue was full, since the queue was created.
    pub dropped_events_total: u64,
    /// Of those, the ones not yet reported to the collector (the next batch carries them in
    /// `dropped_events`).
    pub dropped_events_unreported: u64,
    /// When the circuit breaker is open (the endpoint failed 5 times in a row, or asked to
    /// wait with `Retry-After`), until when no process sends.
    pub breaker_open_until: Option<std::time::SystemTime>,
    /// Delivery requests made today (UTC) by all processes of the tool.
    pub requests_today: u32,
    /// Delivery attempts since the last success that did not succeed (the breaker opens at 5).
    pub consecutive_failures: u32,
    /// The last delivery error since the last success, and when it happened.
    pub last_error: Option<(std::time::SystemTime, String)>,
    /// What the local store refused to keep or read (tampered or undecryptable records, a
    /// full ledger, low disk space).
    pub store: StoreCounters,
}

/// Reads the queue and delivery state kept in `data_dir` (the directory given to
/// [`TelemetryBuilder::data_dir`](crate::TelemetryBuilder::data_dir), or
/// [`default_data_dir`](crate::default_data_dir)). A missing directory reads as empty.
///
/// # Errors
/// The queue directory exists but cannot be listed.
///
/// # Examples
/// ```
/// let dir = std::env::temp_dir().join("optel-doc-no-such-dir");
/// let status = optel::queue_status(&dir).unwrap();
/// assert_eq!(status.pending_events, 0);
/// assert!(!dir.exists(), "reading the status creates nothing");
/// ```
pub fn queue_status(data_dir: &Path) -> io::Result<QueueStatus> {
    let queue = Queue::existing(data_dir.join("queue"));
    let segments = match queue.segments() {
        Ok(s) => s,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    let dropped = queue.dropped();
    let breaker_file = crate::breaker::Breaker::new(data_dir.to_owned());
    let breaker = breaker_file.state();
    let last_error = breaker_file.last_error();
    let now_ms = optel_wire::Timestamp::now().unix_ms();
    let today = now_ms.div_euclid(86_400_000);
    Ok(QueueStatus {
        pending_events: segments.iter().map(|s| s.events).sum(),
        pending_bytes: segments.iter().map(|s| s.bytes).sum(),
        segments: segments.len(),
        dropped_events_total: dropped.total,
        dropped_events_unreported: dropped.unreported,
        breaker_open_until: (breaker.open_until_ms > now_ms)
            .then(|| optel_wire::Timestamp::from_unix_ms(breaker.open_until_ms).to_system_time()),
        requests_today: if breaker.day == today {
            breaker.requests
        } else {
            0
        },
        consecutive_failures: breaker.failures,
        last_error,
        store: StoreCounters::read(data_dir),
    })
}

/// The place a sealed segment is bound to: its name without the size and extension,
/// `<ns>-<random>-<events>e`.
fn segment_place(path: &Path) -> Option<&str> {
    let name = path.file_name()?.to_str()?;
    let stem = name.strip_suffix(".sealed")?;
    Some(stem.rsplit_once('-')?.0)
}

/// The segment a path names, if it is one: `<ns>-<random>-<events>e-<bytes>b.json`, or
/// `.sealed` for a segment of the encrypted store.
fn segment_of(path: PathBuf) -> Option<Segment> {
    let name = path.file_name()?.to_str()?;
    let (stem, sealed) = match name.strip_suffix(".json") {
        Some(stem) => (stem, false),
        None => (name.strip_suffix(".sealed")?, true),
    };
    if stem.starts_with('.') {
        return None;
    }
    let mut parts = stem.rsplitn(3, '-');
    let bytes = parts.next()?.strip_suffix('b')?.parse().ok()?;
    let events = parts.next()?.strip_suffix('e')?.parse().ok()?;
    Some(Segment {
        path,
        events,
        bytes,
        sealed,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use optel_wire::{Event, EventType, Timestamp};

    pub(crate) fn batch(n: usize) -> Batch {
        let mut b = Batch::new("acme", "1.0.0", "p", "linux", "x86_64");
        for i in 0..n {
            b.events.push(Event::new(
                format!("00000000-0000-4000-8000-{i:012}"),
                EventType::Command,
                "build",
                Timestamp::from_unix_ms(0),
                "00000000-0000-4000-8000-000000000000",
            ));
        }
        b
    }

    #[test]
    fn append_claim_complete() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(dir.path().join("queue")).unwrap();
        q.append(&batch(2)).unwrap();
        q.append(&batch(3)).unwrap();
        assert_eq!(q.pending_events().unwrap(), 5);
        let segs = q.segments().unwrap();
        let claim = q.claim(&segs[0].path).unwrap().unwrap();
        assert_eq!(claim.bytes, segs[0].bytes);
        assert_eq!(fs::metadata(&segs[0].path).unwrap().len(), segs[0].bytes);
        assert_eq!(claim.batch.events.len(), 2, "oldest segment first");
        // A second claim on the same segment (as another process would try) is refused while
        // the first holds the lock.
        assert!(q.claim(&segs[0].path).unwrap().is_none());
        q.complete(claim).unwrap();
        assert_eq!(q.pending_events().unwrap(), 3);
    }

    #[test]
    fn corrupt_segment_is_discarded() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(dir.path().to_owned()).unwrap();
        let bad = dir.path().join("0000000000001-bad-3e-10b.json");
        fs::write(&bad, b"{\"schema_version\":1, trunc").unwrap();
        assert!(q.claim(&bad).unwrap().is_none());
        assert!(!bad.exists());
    }

    #[test]
    fn foreign_files_are_not_segments() {
        assert!(segment_of(PathBuf::from("/q/notes.json")).is_none());
        assert!(segment_of(PathBuf::from("/q/.1-a-1e-2b.json.tmp")).is_none());
        assert!(segment_of(PathBuf::from("/q/1-a-xe-2b.json")).is_none());
        assert_eq!(
            segment_of(PathBuf::from("/q/1-ab-3e-40b.json")).map(|s| (s.events, s.bytes)),
            Some((3, 40))
        );
    }

    #[test]
    fn full_queue_drops_oldest_and_counts() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(dir.path().to_owned()).unwrap();
        // Fill to the event bound with segments of MAX_QUEUE_EVENTS / 4 events (names only:
        // bounds are computed from names, so the files can be small).
        let quarter = MAX_QUEUE_EVENTS / 4;
        for i in 0..4 {
            fs::write(
                dir.path()
                    .join(format!("000000000000{i}-aa-{quarter}e-2b.json")),
                b"{}",
            )
            .unwrap();
        }
        q.append(&batch(7)).unwrap();
        let segs = q.segments().unwrap();
        assert_eq!(segs.len(), 4, "the oldest segment was dropped");
        assert!(!dir.path().join("0000000000000-aa-25000e-2b.json").exists());
        assert_eq!(
            q.dropped(),
            Dropped {
                unreported: quarter,
                total: quarter
            }
        );
        assert_eq!(q.take_unreported_drops(), quarter);
        assert_eq!(
            q.dropped(),
            Dropped {
                unreported: 0,
                total: quarter
            }
        );
    }

    #[test]
    fn stale_tmp_files_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(dir.path().to_owned()).unwrap();
        let tmp = dir.path().join(".1-aa-1e-2b.json.tmp");
        let f = File::create(&tmp).unwrap();
        f.set_modified(SystemTime::now() - Duration::from_secs(3600))
            .unwrap();
        drop(f);
        let fresh = dir.path().join(".2-aa-1e-2b.json.tmp");
        File::create(&fresh).unwrap();
        q.append(&batch(1)).unwrap();
        assert!(!tmp.exists());
        assert!(fresh.exists(), "a tmp file being written now is left alone");
    }

    #[derive(Debug, Clone)]
    enum Op {
        Append(usize),
        SendOldest,
        ClaimAndDie,
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            (1usize..40).prop_map(Op::Append),
            Just(Op::SendOldest),
            Just(Op::ClaimAndDie),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

        /// Against a model (a list of segment sizes): pending events, segment count and drop
        /// counters always agree, whatever the order of appends, sends and abandoned claims.
        #[test]
        fn queue_matches_model(ops in proptest::collection::vec(op(), 1..40)) {
            let dir = tempfile::tempdir().unwrap();
            let mut q = Queue::open(dir.path().to_owned()).unwrap();
            q.bounds = Bounds { segments: 6, events: 120, bytes: u64::MAX };
            let mut model: std::collections::VecDeque<u64> = Default::default();
            let mut dropped = 0u64;
            for op in ops {
                match op {
                    Op::Append(n) => {
                        q.append(&batch(n)).unwrap();
                        model.push_back(n as u64);
                        while model.len() > 6 || model.iter().sum::<u64>() > 120 {
                            dropped += model.pop_front().unwrap();
                        }
                    }
                    Op::SendOldest => {
                        if let Some(first) = q.segments().unwrap().first() {
                            let claim = q.claim(&first.path).unwrap().unwrap();
                            proptest::prop_assert_eq!(claim.batch.events.len() as u64, model[0]);
                            q.complete(claim).unwrap();
                            model.pop_front();
                        }
                    }
                    Op::ClaimAndDie => {
                        // A sender that claims and goes away without completing leaves the
                        // segment for the next one.
                        if let Some(first) = q.segments().unwrap().first() {
                            drop(q.claim(&first.path).unwrap());
                        }
                    }
                }
                proptest::prop_assert_eq!(q.pending_events().unwrap(), model.iter().sum::<u64>());
                proptest::prop_assert_eq!(q.segments().unwrap().len(), model.len());
                proptest::prop_assert_eq!(q.dropped().total, dropped);
            }
        }
    }

    #[cfg(unix)]
    #[test]
    fn segments_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(dir.path().join("q")).unwrap();
        let p = q.append(&batch(1)).unwrap();
        assert_eq!(fs::metadata(p).unwrap().permissions().mode() & 0o777, 0o600);
    }
}
