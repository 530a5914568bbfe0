//! The command guard: [`CommandGuard`] times one command and records it when dropped, as a
//! success, a failure with an error code, or a panic; [`PhaseGuard`] times one phase of it
//! (`resolve`, `compile`), and phases nest.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::time::{Duration, Instant, SystemTime};

use optel_wire::{EventType, Phase};

use crate::attribute::Value;
use crate::recorder::{Recorder, add_attributes};

/// Times one command; records it when dropped. Created by
/// [`Handle::command`](crate::Handle::command) or
/// [`track_command_execution`](crate::track_command_execution).
#[derive(Debug)]
#[must_use = "the command is recorded when this guard is dropped"]
pub struct CommandGuard {
    // Boxed: with telemetry off the guard is one null pointer, so creating and dropping it
    // costs a branch; with telemetry on the allocation is small next to the clock reads.
    pub(crate) active: Option<Box<ActiveCommand>>,
}

#[derive(Debug)]
pub(crate) struct ActiveCommand {
    inner: &'static Recorder,
    name: Cow<'static, str>,
    started: Instant,
    started_at: SystemTime,
    error_code: Option<Cow<'static, str>>,
    attributes: Vec<(&'static str, Value)>,
    /// Phases in the order they started; at most `optel_wire::limits::MAX_PHASES`.
    phases: RefCell<Vec<PhaseRecord>>,
    /// Index of the innermost phase still open: the parent of the next one.
    open: Cell<Option<u32>>,
}

#[derive(Debug)]
struct PhaseRecord {
    name: &'static str,
    parent: Option<u32>,
    started: Instant,
    /// Set when its guard drops.
    duration: Option<Duration>,
    success: bool,
}

/// Times one phase of a command; records its duration (and failure) under the command when
/// dropped. Created by [`CommandGuard::phase`]. With telemetry off it holds nothing.
#[derive(Debug)]
#[must_use = "the phase ends when this guard is dropped"]
pub struct PhaseGuard<'a> {
    active: Option<(&'a ActiveCommand, u32)>,
}

impl PhaseGuard<'_> {
    /// Ends the phase now, as failed. (Dropping the guard while the thread panics also
    /// records a failure.)
    pub fn fail(mut self) {
        if let Some((command, index)) = self.active.take() {
            end_phase(command, index, false);
        }
    }
}

impl Drop for PhaseGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        if let Some((command, index)) = self.active.take() {
            end_phase(command, index, !std::thread::panicking());
        }
    }
}

#[inline(never)]
fn start_phase(command: &ActiveCommand, name: &'static str) -> Option<u32> {
    let mut phases = command.phases.try_borrow_mut().ok()?;
    if phases.len() >= optel_wire::limits::MAX_PHASES {
        return None;
    }
    let index = u32::try_from(phases.len()).ok()?;
    phases.push(PhaseRecord {
        name,
        parent: command.open.get(),
        started: Instant::now(),
        duration: None,
        success: true,
    });
    command.open.set(Some(index));
    Some(index)
}

#[inline(never)]
fn end_phase(command: &ActiveCommand, index: u32, success: bool) {
    let Ok(mut phases) = command.phases.try_borrow_mut() else {
        return;
    };
    if let Some(phase) = phases.get_mut(index as usize) {
        phase.duration = Some(phase.started.elapsed());
        phase.success = success;
        command.open.set(phase.parent);
    }
}

impl CommandGuard {
    /// Records the command as failed with a stable error code (`[A-Za-z0-9_.:-]`, at most 64
    /// bytes, e.g. `"E_NO_MANIFEST"`): a code, never a message, which could hold a path.
    pub fn fail(mut self, error_code: impl Into<Cow<'static, str>>) {
        if let Some(active) = &mut self.active {
            active.error_code = Some(error_code.into());
        }
    }

    /// Adds a typed attribute to the command event (string values are redacted, see
    /// [`redact`](crate::redact)). A no-op when telemetry is off.
    pub fn attr(&mut self, key: &'static str, value: impl Into<Value>) {
        if let Some(active) = &mut self.active {
            active.attributes.push((key, value.into()));
        }
    }

    /// Starts phase `name` of this command (declared in the catalog under the command, e.g.
    /// `"resolve"`); the phase ends when the returned guard drops. A phase started while
    /// another is open is nested in it. At most 64 phases per command are kept. A no-op,
    /// without allocation, when telemetry is off.
    ///
    /// # Examples
    /// ```
    /// let command = optel::track_command_execution("build");
    /// {
    ///     let _resolve = command.phase("resolve");
    ///     // read the manifest
    /// }
    /// let compile = command.phase("compile");
    /// compile.fail(); // or drop it: a success
    /// ```
    #[inline]
    pub fn phase(&self, name: &'static str) -> PhaseGuard<'_> {
        PhaseGuard {
            active: self
                .active
                .as_deref()
                .and_then(|command| start_phase(command, name).map(|index| (command, index))),
        }
    }

    /// Sets the error code without ending the command (see [`fail`](Self::fail)).
    pub fn set_error_code(&mut self, error_code: impl Into<Cow<'static, str>>) {
        if let Some(active) = &mut self.active {
            active.error_code = Some(error_code.into());
        }
    }
}

impl Drop for CommandGuard {
    // Inlined so that the off path is a null check at the call site.
    #[inline]
    fn drop(&mut self) {
        if let Some(active) = self.active.take() {
            record_command(*active);
        }
    }
}

/// The on path of [`Handle::command`](crate::Handle::command), out of line so that the off
/// path inlines to a load and a branch at the call site.
#[inline(never)]
pub(crate) fn start_command(
    inner: &'static Recorder,
    name: Cow<'static, str>,
) -> Box<ActiveCommand> {
    Box::new(ActiveCommand {
        inner,
        name,
        started: Instant::now(),
        started_at: SystemTime::now(),
        error_code: None,
        attributes: Vec::new(),
        phases: RefCell::new(Vec::new()),
        open: Cell::new(None),
    })
}

#[inline(never)]
fn record_command(active: ActiveCommand) {
    let inner = active.inner;
    let mut event = inner.new_event(EventType::Command, active.name, active.started_at);
    let elapsed = active.started.elapsed();
    event.duration_ms = Some(u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX));
    let code = match active.error_code {
        Some(code) => Some(code),
        None if std::thread::panicking() => Some(Cow::Borrowed("panic")),
        None => None,
    };
    event.success = Some(code.is_none());
    event.error_code = code.map(Cow::into_owned);
    add_attributes(&mut event, active.attributes);
    event.phases = active
        .phases
        .into_inner()
        .into_iter()
        .map(|p| {
            let micros = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
            // A phase still open (its guard was forgotten) ends with the command, failed.
            let duration = p.duration.unwrap_or_else(|| p.started.elapsed());
            Phase {
                name: p.name.to_owned(),
                parent: p.parent,
                start_us: micros(p.started.saturating_duration_since(active.started)),
                duration_us: micros(duration),
                success: p.duration.is_some() && p.success,
            }
        })
        .collect();
    inner.record(event);
}
