//! Library mode: a library records through its host application's telemetry, never its own.
//!
//! A library cannot ask its users for consent: it does not own the terminal, the config files
//! or the exit. So a [`Library`] handle records only when the host application initialised
//! optel and its user consented; then the event goes through the host's consent, pseudonym,
//! queue and delivery, tagged with the library's name and version (attributes `library` and
//! `library_version`). Otherwise every call is one atomic load and a branch.

use std::borrow::Cow;

use optel_wire::EventType;

use crate::attribute::Value;
use crate::global::global;

/// A library's recorder; see [`library`].
#[derive(Debug, Clone, Copy)]
pub struct Library {
    name: &'static str,
    version: &'static str,
}

/// The recorder of library `name` at `version` (usually `env!("CARGO_PKG_NAME")` and
/// `env!("CARGO_PKG_VERSION")`). `const`, so it can live in a `static`. A no-op unless the host
/// application initialised optel with consent `local` or `on`.
///
/// # Examples
/// ```
/// static TELEMETRY: optel::Library = optel::library("mylib", "1.2.0");
/// // No host initialised optel in this doc test: nothing is recorded.
/// TELEMETRY.method("Database::connect");
/// assert!(!TELEMETRY.is_enabled());
/// ```
pub const fn library(name: &'static str, version: &'static str) -> Library {
    Library { name, version }
}

impl Library {
    /// Whether the host recorded telemetry with consent, so calls record.
    pub fn is_enabled(&self) -> bool {
        global().is_enabled()
    }

    /// Records that method `name` (e.g. `"Database::connect"`) of the library was called.
    pub fn method(&self, name: impl Into<Cow<'static, str>>) {
        self.record(EventType::Method, name, []);
    }

    /// Records that feature `name` of the library was used.
    pub fn feature(&self, name: impl Into<Cow<'static, str>>) {
        self.record(EventType::Feature, name, []);
    }

    /// Records a custom event `name` of the library with typed attributes.
    pub fn event_with<I>(&self, name: impl Into<Cow<'static, str>>, attributes: I)
    where
        I: IntoIterator<Item = (&'static str, Value)>,
    {
        self.record(EventType::Custom, name, attributes);
    }

    fn record<I>(&self, event_type: EventType, name: impl Into<Cow<'static, str>>, attributes: I)
    where
        I: IntoIterator<Item = (&'static str, Value)>,
    {
        let host = global();
        if host.0.is_none() {
            return;
        }
        let tags = [
            ("library", Value::Enum(self.name)),
            ("library_version", Value::Enum(self.version)),
        ];
        host.with_attributes(event_type, name, tags.into_iter().chain(attributes));
    }
}
