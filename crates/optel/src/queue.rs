//! The durable local queue: one segment file per process run, each a whole [`Batch`].
//!
//! A process writes its events once, at shutdown, under a temporary name and renames the file
//! into place, so a segment is either absent or complete: a `kill -9` at any point never leaves
//! a torn file. A sender claims a segment with a non-blocking exclusive lock, so concurrent
//! processes of the same tool do not send the same segment at once, and deletes it only after
//! the collector has answered 2xx. A process that dies between the collector's commit and the
//! deletion leaves the segment behind; it is sent again later and the collector's idempotency on
//! event ids keeps it from counting twice.
//!
//! Bounds: at most [`MAX_SEGMENTS`] segments and [`MAX_QUEUE_BYTES`] bytes; past that the oldest
//! segments are dropped first.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use optel_wire::Batch;

use crate::fsutil;
use crate::identity::random_bytes;

/// Most segment files kept; the oldest go first.
pub(crate) const MAX_SEGMENTS: usize = 1_000;
/// Most bytes kept in segment files: 16 MiB.
pub(crate) const MAX_QUEUE_BYTES: u64 = 16 * 1024 * 1024;
/// Largest segment file read back: anything larger was not written by us.
const MAX_SEGMENT_BYTES: u64 = 8 * 1024 * 1024;

/// The queue directory of one tool.
#[derive(Debug, Clone)]
pub(crate) struct Queue {
    dir: PathBuf,
}

/// A segment this process has locked for sending.
#[derive(Debug)]
pub(crate) struct Claim {
    pub(crate) path: PathBuf,
    pub(crate) batch: Batch,
    // Held for the lock: closing the file releases it.
    _file: File,
}

impl Queue {
    /// Opens (creating if needed, 0700) the queue directory.
    pub(crate) fn open(dir: PathBuf) -> io::Result<Self> {
        fsutil::create_private_dir(&dir)?;
        Ok(Self { dir })
    }

    /// Appends a batch as a new segment, then enforces the bounds.
    pub(crate) fn append(&self, batch: &Batch) -> io::Result<PathBuf> {
        let json = serde_json::to_vec(batch).map_err(io::Error::other)?;
        // Nanoseconds, zero-padded, so that names sort oldest first.
        let now_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let name = format!("{now_ns:020}-{}.json", hex::encode(random_bytes::<6>()?));
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

    /// Segment paths, oldest first.
    pub(crate) fn segments(&self) -> io::Result<Vec<PathBuf>> {
        let mut paths: Vec<PathBuf> = fs::read_dir(&self.dir)?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| is_segment(p))
            .collect();
        paths.sort();
        Ok(paths)
    }

    /// Number of events waiting in segments that can be read.
    pub(crate) fn pending_events(&self) -> io::Result<usize> {
        let mut n = 0;
        for path in self.segments()? {
            if let Ok(Some(batch)) = read_segment(&path) {
                n += batch.events.len();
            }
        }
        Ok(n)
    }

    /// Every readable queued batch, oldest first (for `telemetry preview` and `status`).
    /// Added for issue 3's user commands.
    // Used by the `telemetry` subcommand (feature `clap`).
    #[cfg_attr(not(feature = "clap"), allow(dead_code))]
    pub(crate) fn batches(&self) -> io::Result<Vec<Batch>> {
        Ok(self
            .segments()?
            .iter()
            .filter_map(|p| read_segment(p).ok().flatten())
            .collect())
    }

    /// Locks and reads a segment. `Ok(None)` when another process holds it or it vanished.
    /// A segment that cannot be parsed is deleted: it would never become valid.
    pub(crate) fn claim(&self, path: &Path) -> io::Result<Option<Claim>> {
        let file = match File::open(path) {
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
        match parse(&file) {
            Some(batch) => Ok(Some(Claim {
                path: path.to_owned(),
                batch,
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

    fn enforce_bounds(&self) -> io::Result<()> {
        let segments = self.segments()?;
        let sizes: Vec<u64> = segments
            .iter()
            .map(|p| fs::metadata(p).map(|m| m.len()).unwrap_or(0))
            .collect();
        let mut total: u64 = sizes.iter().sum();
        let mut count = segments.len();
        for (path, size) in segments.iter().zip(sizes) {
            if count <= MAX_SEGMENTS && total <= MAX_QUEUE_BYTES {
                break;
            }
            let _ = fs::remove_file(path);
            count -= 1;
            total -= size;
        }
        Ok(())
    }
}

fn is_segment(p: &Path) -> bool {
    p.extension().is_some_and(|e| e == "json")
        && p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| !n.starts_with('.'))
}

fn read_segment(path: &Path) -> io::Result<Option<Batch>> {
    Ok(parse(&File::open(path)?))
}

fn parse(file: &File) -> Option<Batch> {
    let mut bytes = Vec::new();
    file.take(MAX_SEGMENT_BYTES + 1)
        .read_to_end(&mut bytes)
        .ok()?;
    if bytes.len() as u64 > MAX_SEGMENT_BYTES {
        return None;
    }
    serde_json::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use optel_wire::{Event, EventType, Timestamp};

    fn batch(n: usize) -> Batch {
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
        let claim = q.claim(&segs[0]).unwrap().unwrap();
        assert_eq!(claim.batch.events.len(), 2, "oldest segment first");
        // A second claim on the same segment (as another process would try) is refused while
        // the first holds the lock.
        assert!(q.claim(&segs[0]).unwrap().is_none());
        q.complete(claim).unwrap();
        assert_eq!(q.pending_events().unwrap(), 3);
    }

    #[test]
    fn corrupt_segment_is_discarded() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(dir.path().to_owned()).unwrap();
        let bad = dir.path().join("0000000000001-bad.json");
        fs::write(&bad, b"{\"schema_version\":1, trunc").unwrap();
        assert!(q.claim(&bad).unwrap().is_none());
        assert!(!bad.exists());
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
