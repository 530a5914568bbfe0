//! The process-global recorder: [`global`] returns a [`Handle`] on it, a no-op until
//! [`TelemetryBuilder::init`](crate::TelemetryBuilder::init) installed a recorder with consent
//! on; [`track_command_execution`] is the one-line way to time a command on it.

use std::borrow::Cow;
use std::sync::OnceLock;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use optel_wire::EventType;

use crate::attribute::Value;
use crate::command::{CommandGuard, start_command};
use crate::recorder::{Recorder, add_attributes};

/// The installed recorder; set once, by the first init with consent on.
pub(crate) static GLOBAL: OnceLock<Recorder> = OnceLock::new();

/// The process-global recorder: a no-op until
/// [`TelemetryBuilder::init`](crate::TelemetryBuilder::init) ran with consent on. Cheap to copy.
#[derive(Debug, Clone, Copy)]
pub struct Handle(pub(crate) Option<&'static Recorder>);

/// The process-global recorder. Before init, or with consent off, every call on it does
/// nothing: one atomic load and a branch.
#[inline]
pub fn global() -> Handle {
    Handle(GLOBAL.get())
}

/// Starts timing command `name` on the global recorder: the one line a tool adds per
/// command; see [`Handle::command`].
#[inline]
pub fn track_command_execution(name: impl Into<Cow<'static, str>>) -> CommandGuard {
    global().command(name)
}

impl Handle {
    /// Whether events are recorded.
    pub fn is_enabled(&self) -> bool {
        self.0
            .is_some_and(|inner| !inner.closed.load(Ordering::Relaxed))
    }

    /// Starts timing command `name` (`[A-Za-z0-9_.:-]`, at most 64 bytes, e.g. `"build"`). The
    /// returned guard records the command when dropped: a success unless
    /// [`CommandGuard::fail`] was called or the thread is panicking (error code `panic`).
    #[inline]
    pub fn command(&self, name: impl Into<Cow<'static, str>>) -> CommandGuard {
        CommandGuard {
            active: self.0.map(|inner| start_command(inner, name.into())),
        }
    }

    /// Records that feature `name` was used.
    pub fn feature(&self, name: impl Into<Cow<'static, str>>) {
        self.simple(EventType::Feature, name);
    }

    /// Records that library method `name` (e.g. `"Database::connect"`) was called.
    pub fn method(&self, name: impl Into<Cow<'static, str>>) {
        self.simple(EventType::Method, name);
    }

    /// Records a custom event `name`.
    pub fn event(&self, name: impl Into<Cow<'static, str>>) {
        self.simple(EventType::Custom, name);
    }

    /// Records `value` for measurement `name`, declared in the catalog with its unit (e.g.
    /// `"files"`, a count). A non-finite value is dropped and counted. A no-op when telemetry
    /// is off: one atomic load and a branch, no allocation.
    ///
    /// # Examples
    /// ```
    /// optel::global().measure("files", 12.0); // a no-op before init
    /// ```
    #[inline]
    pub fn measure(&self, name: impl Into<Cow<'static, str>>, value: f64) {
        if let Some(inner) = self.0 {
            record_measurement(inner, name.into(), value);
        }
    }

    /// Records a custom event `name` with typed attributes (at most 32; keys follow the name
    /// rules; string values are redacted, see [`redact`](crate::redact)).
    pub fn event_with<I>(&self, name: impl Into<Cow<'static, str>>, attributes: I)
    where
        I: IntoIterator<Item = (&'static str, Value)>,
    {
        self.with_attributes(EventType::Custom, name, attributes);
    }

    /// Records that feature `name` was used, with typed attributes (see
    /// [`event_with`](Self::event_with)).
    pub fn feature_with<I>(&self, name: impl Into<Cow<'static, str>>, attributes: I)
    where
        I: IntoIterator<Item = (&'static str, Value)>,
    {
        self.with_attributes(EventType::Feature, name, attributes);
    }

    pub(crate) fn with_attributes<I>(
        &self,
        event_type: EventType,
        name: impl Into<Cow<'static, str>>,
        attributes: I,
    ) where
        I: IntoIterator<Item = (&'static str, Value)>,
    {
        if let Some(inner) = self.0 {
            let mut event = inner.new_event(event_type, name.into(), SystemTime::now());
            add_attributes(&mut event, attributes);
            inner.record(event);
        }
    }

    fn simple(&self, event_type: EventType, name: impl Into<Cow<'static, str>>) {
        if let Some(inner) = self.0 {
            inner.record(inner.new_event(event_type, name.into(), SystemTime::now()));
        }
    }
}

#[inline(never)]
fn record_measurement(inner: &Recorder, name: Cow<'static, str>, value: f64) {
    let mut event = inner.new_event(EventType::Measurement, name, SystemTime::now());
    event.value = Some(value);
    inner.record(event);
}
