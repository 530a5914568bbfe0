//! Status: what telemetry is doing in this process and which layer decided it, as shown by a
//! tool's `telemetry status`.

use std::fmt;
use std::path::PathBuf;
use std::time::SystemTime;

use crate::breaker::BREAKER_FAILURES;
use crate::debug::rfc3339;

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
    /// Until when the circuit breaker holds every process back, when it is open
    /// (`telemetry status`).
    pub breaker_open_until: Option<SystemTime>,
    /// Delivery attempts since the last success that failed, when known (`telemetry status`).
    pub delivery_failures: Option<u32>,
    /// The last delivery error since the last success and when it happened
    /// (`telemetry status`).
    pub last_error: Option<(SystemTime, String)>,
    /// Delivery requests made today (UTC) and the daily cap, when known (`telemetry status`).
    pub requests_today: Option<(u32, u32)>,
    /// The hash of the tool's event catalog (SHA-256, 64 hex digits), when it declares one.
    pub catalog_hash: Option<String>,
    /// What the catalog dropped since the data directory was created, one line per kind
    /// (undeclared; held back until seen), with the most frequent names (`telemetry status`).
    pub catalog_drops: Vec<String>,
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
            breaker_open_until: None,
            delivery_failures: None,
            last_error: None,
            requests_today: None,
            catalog_hash: None,
            catalog_drops: Vec::new(),
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
        if let Some(hash) = &self.catalog_hash {
            writeln!(f, "event catalog: {hash} (`telemetry preview` shows it)")?;
        }
        for line in &self.catalog_drops {
            writeln!(f, "{line}")?;
        }
        match (self.breaker_open_until, self.delivery_failures) {
            (Some(until), failures) => writeln!(
                f,
                "delivery: paused, circuit breaker open until {} ({} failed attempts in a row)",
                rfc3339(until),
                failures.unwrap_or(0)
            )?,
            (None, Some(failures)) if failures > 0 => writeln!(
                f,
                "delivery: {failures} failed attempts in a row (the breaker opens at {BREAKER_FAILURES})"
            )?,
            (None, Some(_)) => writeln!(f, "delivery: circuit breaker closed")?,
            (None, None) => {}
        }
        if let Some((sent, cap)) = self.requests_today {
            if sent >= cap {
                writeln!(
                    f,
                    "requests today: {sent} of {cap}: daily cap reached, sending resumes tomorrow (UTC)"
                )?;
            } else {
                writeln!(f, "requests today: {sent} of {cap} (daily cap)")?;
            }
        }
        if let Some((at, error)) = &self.last_error {
            writeln!(f, "last error: {error} (at {})", rfc3339(*at))?;
        }
        if let Some(note) = &self.note {
            writeln!(f, "note: {note}")?;
        }
        Ok(())
    }
}
