//! The command guard: [`CommandGuard`] times one command and records it when dropped, as a
//! success, a failure with an error code, or a panic.

use std::borrow::Cow;
use std::time::{Instant, SystemTime};

use optel_wire::EventType;

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
    inner.record(event);
}
