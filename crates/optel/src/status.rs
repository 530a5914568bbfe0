//! Status: what telemetry is doing in this process and which layer decided it, as shown by a
//! tool's `telemetry status`.

use std::fmt;
use std::path::PathBuf;

use crate::consent::{Consent, ConsentSource};
use crate::identity::Epoch;

/// What telemetry is doing in this process and why, for a tool's `telemetry status`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Status {
    /// The effective consent state.
    pub consent: Consent,
    /// The layer that decided it.
    pub decided_by: ConsentSource,
    /// The endpoint events are sent to, if any.
    pub endpoint: Option<String>,
    /// The directory of the install secret and the queue, when telemetry is on.
    pub data_dir: Option<PathBuf>,
    /// How often the pseudonym changes.
    pub pseudonym_epoch: Epoch,
    /// The current epoch's label (`2026-11`), when telemetry runs.
    pub pseudonym_epoch_label: Option<String>,
    /// Events waiting in the local queue, when known (`telemetry status`).
    pub queued_events: Option<usize>,
    /// Events dropped because the local queue was full, since it was created (its persisted
    /// counter), when known (`telemetry status`).
    pub dropped_events: Option<u64>,
    /// Why telemetry is off despite consent, or a consent value that was not understood.
    pub note: Option<String>,
}

impl Status {
    pub(crate) fn new(
        consent: Consent,
        decided_by: ConsentSource,
        pseudonym_epoch: Epoch,
        note: Option<String>,
    ) -> Self {
        Self {
            consent,
            decided_by,
            endpoint: None,
            data_dir: None,
            pseudonym_epoch,
            pseudonym_epoch_label: None,
            queued_events: None,
            dropped_events: None,
            note,
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "telemetry: {} (decided by {})",
            self.consent, self.decided_by
        )?;
        if let Some(path) = self.decided_by.path() {
            writeln!(f, "deciding file: {}", path.display())?;
        }
        if let Some(endpoint) = &self.endpoint {
            writeln!(f, "endpoint: {endpoint}")?;
        }
        match &self.pseudonym_epoch_label {
            Some(label) => writeln!(
                f,
                "pseudonym: rotates {} (current epoch {label})",
                self.pseudonym_epoch
            )?,
            None => writeln!(f, "pseudonym: rotates {}", self.pseudonym_epoch)?,
        }
        if let Some(dir) = &self.data_dir {
            writeln!(f, "data directory: {}", dir.display())?;
        }
        if let Some(n) = self.queued_events {
            writeln!(f, "queued events: {n}")?;
        }
        if let Some(n) = self.dropped_events {
            writeln!(f, "dropped events: {n}")?;
        }
        if let Some(note) = &self.note {
            writeln!(f, "note: {note}")?;
        }
        Ok(())
    }
}
