//! The recorder: what [`TelemetryBuilder::init`](crate::TelemetryBuilder::init) installs when
//! consent is on. Recording is the hand-off only, a check and a push into a bounded in-memory
//! buffer; everything slower (ids, validation, writing, sending) happens at exit, in
//! `shutdown`.

use std::borrow::Cow;
use std::fmt;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use optel_wire::{Batch, Event, EventType, Timestamp};

use crate::attribute::Value;
use crate::{delivery, export, identity, queue};

/// Most events kept in memory by one process before shutdown; more are dropped and counted.
const MAX_BUFFERED_EVENTS: usize = 10_000;

/// The recorder installed by [`TelemetryBuilder::init`](crate::TelemetryBuilder::init) when
/// consent is on.
pub(crate) struct Recorder {
    /// Envelope fields shared by every event of this process (events empty; `catalog_hash`
    /// set when the tool declares a catalog, the catalog itself added at exit).
    pub(crate) envelope: Batch,
    /// The tool's event catalog, applied to this run's events at exit.
    pub(crate) catalog: Option<crate::catalog::ActiveCatalog>,
    pub(crate) session_id: String,
    /// Random bits from which event ids are derived: `bits XOR sequence number`, formatted as
    /// UUID v4. Unique within the process, unpredictable across processes, and cheap.
    pub(crate) id_bits: [u8; 16],
    pub(crate) next_seq: AtomicU64,
    pub(crate) buffer: Mutex<Vec<Event>>,
    pub(crate) dropped: AtomicU64,
    pub(crate) closed: AtomicBool,
    /// Per event type: whether this install is sampled out
    /// ([`TelemetryBuilder::sample`](crate::TelemetryBuilder::sample)).
    pub(crate) sampled_out: [bool; 5],
    /// The send queue, with consent `on` only.
    pub(crate) queue: Option<queue::Queue>,
    /// The local ledger (`telemetry log`), with consent `local` or `on`.
    pub(crate) ledger: export::JsonlFileExporter,
    pub(crate) worker: Option<delivery::Worker>,
    pub(crate) data_dir: PathBuf,
    pub(crate) epoch_label: String,
    pub(crate) exit_timeout: Duration,
    /// `<TOOL>_TELEMETRY_DEBUG` lines.
    pub(crate) debug: crate::debug::DebugLog,
}

impl fmt::Debug for Recorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recorder")
            .field("service", &self.envelope.service_name)
            .finish_non_exhaustive()
    }
}

impl Recorder {
    pub(crate) fn event_id(&self) -> String {
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let mut bytes = self.id_bits;
        // The sequence number goes into the last 8 bytes; below 2^62 it never touches the UUID
        // variant bits, so ids stay distinct.
        for (b, s) in bytes[8..].iter_mut().zip(seq.to_be_bytes()) {
            *b ^= s;
        }
        identity::uuid_v4(bytes)
    }

    /// The hand-off: a check and a push. Event ids, the session id and validation are filled
    /// in at shutdown, off the host's hot path.
    pub(crate) fn record(&self, event: Event) {
        if self.sampled_out[type_index(event.event_type)] {
            return;
        }
        if self.closed.load(Ordering::Acquire) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        // A panic elsewhere while the lock was held leaves a plain Vec behind: keep using it
        // rather than losing this event uncounted.
        let mut buffer = self
            .buffer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if buffer.len() < MAX_BUFFERED_EVENTS {
            buffer.push(event);
        } else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn new_event(
        &self,
        event_type: EventType,
        name: Cow<'static, str>,
        at: SystemTime,
    ) -> Event {
        Event::new(
            String::new(),
            event_type,
            name,
            Timestamp::from_system_time(at),
            String::new(),
        )
    }
}

/// Index of an event type in per-type tables.
pub(crate) const fn type_index(t: EventType) -> usize {
    match t {
        EventType::Command => 0,
        EventType::Feature => 1,
        EventType::Method => 2,
        EventType::Custom => 3,
        EventType::Measurement => 4,
    }
}

/// Adds attributes after redaction; a non-finite float is left out.
pub(crate) fn add_attributes<I>(event: &mut Event, attributes: I)
where
    I: IntoIterator<Item = (&'static str, Value)>,
{
    for (key, value) in attributes {
        if let Some(v) = value.into_wire() {
            event.metadata.insert(key.to_owned(), v);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::builder::Telemetry;
    use crate::consent::Consent;

    #[test]
    fn a_poisoned_buffer_still_keeps_events() {
        // Regression: after a panic while the buffer lock was held, every event was dropped
        // without being counted.
        let dir = tempfile::tempdir().unwrap();
        let rec = Telemetry::builder("acme", "1.0.0")
            .data_dir(dir.path().join("data"))
            .config_dir(dir.path().join("config"))
            .start(&|_: &str| None, Consent::Local, &|| None)
            .unwrap();
        std::thread::scope(|s| {
            let poisoned = s
                .spawn(|| {
                    let _held = rec.buffer.lock();
                    panic!("a panic while the lock is held");
                })
                .join();
            assert!(poisoned.is_err());
        });
        assert!(rec.buffer.is_poisoned());
        rec.record(rec.new_event(EventType::Command, "build".into(), SystemTime::now()));
        let kept = rec
            .buffer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len();
        assert_eq!(kept + rec.dropped.load(Ordering::Relaxed) as usize, 1);
        assert_eq!(kept, 1);
    }
}
