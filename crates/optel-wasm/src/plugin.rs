//! A plugin as the host sees it: its identity, the capabilities the host granted it, its
//! catalog (what it may record), its budgets and its counters. One [`Plugin`] per plugin and
//! run, cloned into every `Store` that runs it, so its budget is per plugin rather than per
//! instance.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::budget::{RateLimit, TokenBucket};
use crate::error::{Error, Result};
use crate::log::{LogLevel, LogRecord, LogSink};

/// The attribute keys optel adds to every plugin event: the plugin's name and version.
pub const RESERVED_KEYS: [&str; 2] = ["plugin", "plugin_version"];

/// Default event budget: 100 events per plugin per run.
pub const DEFAULT_EVENT_BUDGET: RateLimit = RateLimit::per_run(100);

/// Default log budget: 1 000 lines per plugin per run.
pub const DEFAULT_LOG_BUDGET: RateLimit = RateLimit::per_run(1_000);

/// What a host may grant a plugin. `telemetry.log` needs none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Capability {
    /// `telemetry.host_telemetry_event`: record custom events through the host's telemetry,
    /// under its consent, catalog and budget. Without it the call returns
    /// [`code::DENIED`](crate::code::DENIED).
    Telemetry,
}

/// A plugin's identity, grants, catalog, budgets and counters. Cheap to clone: clones share
/// the budgets and counters.
///
/// # Examples
/// ```
/// use optel_wasm::{Capability, Plugin, RateLimit};
/// let plugin = Plugin::builder("fmt-yaml", "1.4.0")
///     .grant(Capability::Telemetry)
///     .attribute_keys(["format", "lines"])
///     .event_budget(RateLimit::per_run(20))
///     .build()?;
/// assert!(plugin.has(Capability::Telemetry));
/// assert_eq!(plugin.stats().events_recorded, 0);
/// # Ok::<(), optel_wasm::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Plugin {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) name: String,
    pub(crate) version: String,
    pub(crate) telemetry: bool,
    pub(crate) attribute_keys: Vec<&'static str>,
    pub(crate) event_names: Option<Vec<&'static str>>,
    pub(crate) events: Mutex<TokenBucket>,
    pub(crate) logs: Mutex<TokenBucket>,
    pub(crate) event_budget: RateLimit,
    pub(crate) sink: LogSink,
    pub(crate) counters: Counters,
    /// Whether the host already said that the event budget is spent (said once per plugin).
    pub(crate) told_rate_limited: AtomicBool,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) recorded: AtomicU64,
    pub(crate) consent_off: AtomicU64,
    pub(crate) denied: AtomicU64,
    pub(crate) too_large: AtomicU64,
    pub(crate) invalid: AtomicU64,
    pub(crate) rate_limited: AtomicU64,
    pub(crate) attributes_dropped: AtomicU64,
    pub(crate) bad_pointers: AtomicU64,
    pub(crate) logs_written: AtomicU64,
    pub(crate) logs_dropped: AtomicU64,
}

pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// What a plugin did with its telemetry so far (a snapshot of its counters). Every call of
/// `host_telemetry_event` lands in exactly one of the `events_*` counters, or in `bad_pointers`
/// if it trapped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PluginStats {
    /// Events handed to the host's recorder ([`code::RECORDED`](crate::code::RECORDED) or
    /// [`code::RECORDED_PARTIAL`](crate::code::RECORDED_PARTIAL)).
    pub events_recorded: u64,
    /// Events dropped because the host's telemetry is off ([`code::OFF`](crate::code::OFF)).
    pub events_consent_off: u64,
    /// Calls refused because the plugin lacks [`Capability::Telemetry`].
    pub events_denied: u64,
    /// Calls refused because the length was over [`MAX_EVENT_BYTES`](crate::MAX_EVENT_BYTES).
    pub events_too_large: u64,
    /// Events refused as malformed: not the documented JSON shape, a bad name, an undeclared
    /// event name, a non-scalar value.
    pub events_invalid: u64,
    /// Events dropped because the plugin's event budget was spent.
    pub events_rate_limited: u64,
    /// Attributes left out of recorded events because their key is not in the host's catalog.
    pub attributes_dropped: u64,
    /// Calls (`log` or `host_telemetry_event`) that trapped on a pointer and length outside
    /// the plugin's memory, or with no exported memory.
    pub bad_pointers: u64,
    /// Log lines written to the host's log.
    pub logs_written: u64,
    /// Log lines dropped: the log budget was spent or the level was not one.
    pub logs_dropped: u64,
}

impl Plugin {
    /// Starts describing plugin `name` (the SDK's name rules: `[A-Za-z0-9_.:-]`, 1 to 64
    /// bytes) at `version` (1 to 64 bytes of printable ASCII without spaces). Both are
    /// attached to every event the plugin records, as attributes `plugin` and
    /// `plugin_version`.
    pub fn builder(name: impl Into<String>, version: impl Into<String>) -> PluginBuilder {
        PluginBuilder {
            name: name.into(),
            version: version.into(),
            telemetry: false,
            attribute_keys: Vec::new(),
            event_names: None,
            event_budget: DEFAULT_EVENT_BUDGET,
            log_budget: DEFAULT_LOG_BUDGET,
            sink: LogSink::Stderr,
        }
    }

    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The plugin's version.
    pub fn version(&self) -> &str {
        &self.inner.version
    }

    /// Whether the host granted the plugin `capability`.
    pub fn has(&self, capability: Capability) -> bool {
        match capability {
            Capability::Telemetry => self.inner.telemetry,
        }
    }

    /// A snapshot of the plugin's counters.
    pub fn stats(&self) -> PluginStats {
        let c = &self.inner.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        PluginStats {
            events_recorded: get(&c.recorded),
            events_consent_off: get(&c.consent_off),
            events_denied: get(&c.denied),
            events_too_large: get(&c.too_large),
            events_invalid: get(&c.invalid),
            events_rate_limited: get(&c.rate_limited),
            attributes_dropped: get(&c.attributes_dropped),
            bad_pointers: get(&c.bad_pointers),
            logs_written: get(&c.logs_written),
            logs_dropped: get(&c.logs_dropped),
        }
    }

    /// Takes one event token.
    pub(crate) fn take_event_token(&self) -> bool {
        self.inner
            .events
            .lock()
            .is_ok_and(|mut b| b.try_take(Instant::now()))
    }

    /// Writes a log line if the log budget allows, else counts it dropped.
    pub(crate) fn log(&self, level: LogLevel, message: &str, from_host: bool) {
        let allowed = self
            .inner
            .logs
            .lock()
            .is_ok_and(|mut b| b.try_take(Instant::now()));
        if !allowed {
            bump(&self.inner.counters.logs_dropped);
            return;
        }
        bump(&self.inner.counters.logs_written);
        self.inner.sink.write(&LogRecord {
            plugin: &self.inner.name,
            version: &self.inner.version,
            level,
            message,
            from_host,
        });
    }
}

/// Describes a [`Plugin`]; see [`Plugin::builder`].
#[derive(Debug)]
#[must_use]
pub struct PluginBuilder {
    name: String,
    version: String,
    telemetry: bool,
    attribute_keys: Vec<&'static str>,
    event_names: Option<Vec<&'static str>>,
    event_budget: RateLimit,
    log_budget: RateLimit,
    sink: LogSink,
}

impl PluginBuilder {
    /// Grants `capability`. Default: none (the plugin can only log).
    pub fn grant(mut self, capability: Capability) -> Self {
        match capability {
            Capability::Telemetry => self.telemetry = true,
        }
        self
    }

    /// The attribute keys the plugin may send: the host's catalog for this plugin. Attributes
    /// with other keys are left out of the event and counted
    /// ([`PluginStats::attributes_dropped`]). Default: none, so events carry only the name
    /// and the plugin's identity. Keys follow the SDK's name rules; `plugin` and
    /// `plugin_version` are reserved.
    pub fn attribute_keys(mut self, keys: impl IntoIterator<Item = &'static str>) -> Self {
        self.attribute_keys.extend(keys);
        self
    }

    /// Restricts the event names the plugin may record to `names`; any other name makes the
    /// event invalid ([`code::INVALID`](crate::code::INVALID)). Default: any name that follows
    /// the SDK's name rules.
    pub fn event_names(mut self, names: impl IntoIterator<Item = &'static str>) -> Self {
        self.event_names.get_or_insert_with(Vec::new).extend(names);
        self
    }

    /// How many events the plugin may record. Default: [`DEFAULT_EVENT_BUDGET`] (100 per
    /// run). Events over budget are dropped and counted
    /// ([`PluginStats::events_rate_limited`]); the first drop is said once in the host's log.
    pub fn event_budget(mut self, limit: RateLimit) -> Self {
        self.event_budget = limit;
        self
    }

    /// How many lines the plugin may log. Default: [`DEFAULT_LOG_BUDGET`] (1 000 per run).
    /// Lines over budget are dropped and counted ([`PluginStats::logs_dropped`]).
    pub fn log_budget(mut self, limit: RateLimit) -> Self {
        self.log_budget = limit;
        self
    }

    /// Sends the plugin's log lines (and the host's lines about the plugin) to `sink` instead
    /// of stderr. Default: stderr, one line per record in the form of
    /// [`LogRecord`]'s `Display`. The sink runs on the thread that runs the plugin.
    pub fn log_sink(mut self, sink: impl Fn(&LogRecord<'_>) + Send + Sync + 'static) -> Self {
        self.sink = LogSink::Callback(Arc::new(sink));
        self
    }

    /// Checks the description and builds the plugin.
    ///
    /// # Errors
    /// [`Error::Name`] for a plugin name, attribute key or event name that breaks the name
    /// rules, [`Error::Version`] for a bad version, [`Error::ReservedKey`] for `plugin` or
    /// `plugin_version` among the attribute keys.
    pub fn build(self) -> Result<Plugin> {
        optel::validate_name(&self.name)?;
        let version_ok = !self.version.is_empty()
            && self.version.len() <= 64
            && self.version.bytes().all(|b| b.is_ascii_graphic());
        if !version_ok {
            return Err(Error::Version(self.version));
        }
        for key in &self.attribute_keys {
            optel::validate_name(key)?;
            if RESERVED_KEYS.contains(key) {
                return Err(Error::ReservedKey(key));
            }
        }
        for name in self.event_names.iter().flatten() {
            optel::validate_name(name)?;
        }
        Ok(Plugin {
            inner: Arc::new(Inner {
                name: self.name,
                version: self.version,
                telemetry: self.telemetry,
                attribute_keys: self.attribute_keys,
                event_names: self.event_names,
                events: Mutex::new(TokenBucket::new(self.event_budget)),
                logs: Mutex::new(TokenBucket::new(self.log_budget)),
                event_budget: self.event_budget,
                sink: self.sink,
                counters: Counters::default(),
                told_rate_limited: AtomicBool::new(false),
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_descriptions_are_refused_with_the_value_quoted() {
        let e = Plugin::builder("my plugin", "1").build().err();
        assert!(e.is_some_and(|e| e.to_string().contains("\"my plugin\"")));
        let e = Plugin::builder("p", "1.0 beta").build().err();
        assert!(matches!(e, Some(Error::Version(v)) if v == "1.0 beta"));
        let e = Plugin::builder("p", "").build().err();
        assert!(matches!(e, Some(Error::Version(_))));
        let e = Plugin::builder("p", "1")
            .attribute_keys(["plugin"])
            .build()
            .err();
        assert!(matches!(e, Some(Error::ReservedKey("plugin"))));
        let e = Plugin::builder("p", "1")
            .attribute_keys(["a b"])
            .build()
            .err();
        assert!(matches!(e, Some(Error::Name(_))));
        let e = Plugin::builder("p", "1").event_names(["x/y"]).build().err();
        assert!(matches!(e, Some(Error::Name(_))));
    }

    #[test]
    fn capabilities_are_off_unless_granted() {
        let p = Plugin::builder("p", "1.0.0+build.5").build();
        assert!(p.is_ok_and(|p| !p.has(Capability::Telemetry)));
    }
}
