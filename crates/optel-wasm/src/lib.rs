//! optel-wasm: telemetry for WebAssembly plugins, through their host.
//!
//! A tool that hosts WebAssembly plugins lets them record telemetry only through itself, under
//! its user's consent and its own catalog: a plugin never opens a socket or a file, never sees
//! the pseudonym, and records nothing unless the host granted it the `telemetry` capability.
//! This crate is kept out of the SDK's build (it depends on `optel`, not the other way round)
//! and runs plugins with [`wasmi`], an interpreter (docs/adr/007-wasm-plugins.md says why).
//!
//! # Quick start (a host author)
//! ```
//! use optel_wasm::{Capability, Plugin, RateLimit};
//! use wasmi::{Engine, Linker, Module, Store};
//!
//! // 1. Your store data holds the running plugin's `Plugin`.
//! struct PluginState {
//!     plugin: Plugin,
//! }
//!
//! // 2. One linker for every plugin, with the telemetry host functions in it.
//! let engine = Engine::default();
//! let mut linker = Linker::<PluginState>::new(&engine);
//! optel_wasm::add_to_linker(&mut linker, |state: &PluginState| &state.plugin)?;
//!
//! // 3. One `Plugin` per plugin and run: its grants, catalog and budget. Only this one may
//! //    record events, with two declared attributes, at most 20 a run.
//! let formatter = Plugin::builder("fmt-yaml", "1.4.0")
//!     .grant(Capability::Telemetry)
//!     .attribute_keys(["format", "lines"])
//!     .event_budget(RateLimit::per_run(20))
//!     .build()?;
//!
//! // 4. Run the plugin as usual.
//! let wasm = wat::parse_str(r#"(module
//!     (import "telemetry" "log" (func $log (param i32 i32 i32)))
//!     (import "telemetry" "host_telemetry_event" (func $event (param i32 i32) (result i32)))
//!     (memory (export "memory") 1)
//!     (data (i32.const 0) "{\"name\":\"convert\",\"attributes\":{\"format\":\"yaml\",\"lines\":12}}")
//!     (data (i32.const 100) "converted")
//!     (func (export "run") (result i32)
//!         (call $log (i32.const 2) (i32.const 100) (i32.const 9))
//!         (call $event (i32.const 0) (i32.const 61))))"#)?;
//! let module = Module::new(&engine, &wasm)?;
//! let mut store = Store::new(&engine, PluginState { plugin: formatter.clone() });
//! let instance = linker.instantiate_and_start(&mut store, &module)?;
//! let result = instance.get_typed_func::<(), i32>(&store, "run")?.call(&mut store, ())?;
//!
//! // This doc test never initialised optel: the host's telemetry is off, nothing is recorded.
//! assert_eq!(result, optel_wasm::code::OFF);
//! assert_eq!(formatter.stats().events_consent_off, 1);
//! assert_eq!(formatter.stats().logs_written, 1); // "plugin fmt-yaml 1.4.0: info: converted" on stderr
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//! With the host's telemetry on (`optel::Telemetry::builder(..).init()` in its `main`, and the
//! user's consent), the event is recorded as a `custom` event named `convert` with attributes
//! `format`, `lines`, `plugin` = `fmt-yaml` and `plugin_version` = `1.4.0`, and goes wherever
//! the host's events go.
//!
//! # What a plugin can call
//! Two functions imported from module `"telemetry"` (see [`add_to_linker`]):
//! - `log(level: i32, ptr: i32, len: i32)`: always available. A line in the host's log (stderr,
//!   or the host's [`PluginBuilder::log_sink`]), never recorded, never sent. At most
//!   [`MAX_LOG_BYTES`] kept, control characters replaced, [`DEFAULT_LOG_BUDGET`] lines a run.
//! - `host_telemetry_event(json_ptr: i32, len: i32) -> i32`: only with
//!   [`Capability::Telemetry`]. Records a custom event from JSON of at most [`MAX_EVENT_BYTES`]
//!   bytes; see [`event`] for its shape and [`code`] for the result.
//!
//! # For plugin authors
//! A plugin in Rust (target `wasm32-unknown-unknown` or `wasm32-wasip1`) declares the imports
//! and checks nothing but its own bugs: whatever the result, it carries on.
//! ```rust,ignore
//! #[link(wasm_import_module = "telemetry")]
//! unsafe extern "C" {
//!     fn log(level: i32, ptr: *const u8, len: usize);
//!     fn host_telemetry_event(json_ptr: *const u8, len: usize) -> i32;
//! }
//!
//! fn converted(lines: usize) {
//!     let json = format!(r#"{{"name":"convert","attributes":{{"format":"yaml","lines":{lines}}}}}"#);
//!     // 0 or 1: recorded; 2: the host's telemetry is off; below 0: see `optel_wasm::code`.
//!     let _ = unsafe { host_telemetry_event(json.as_ptr(), json.len()) };
//!     let msg = "converted";
//!     unsafe { log(2, msg.as_ptr(), msg.len()) };
//! }
//! ```
//!
//! # What the host guarantees
//! - **Consent**: events are recorded through the SDK's global handle ([`optel::global`]),
//!   so with the host's telemetry off (no consent, or optel never initialised) nothing is
//!   recorded, no file is written, and the call returns [`code::OFF`].
//! - **Catalog**: event names follow the SDK's rules ([`optel::validate_name`]) and, if the
//!   host declared them, its list ([`PluginBuilder::event_names`]); attributes whose keys
//!   the host did not declare ([`PluginBuilder::attribute_keys`]) are left out and counted.
//! - **Privacy**: strings are redacted ([`optel::redact`]) and cut to 256 bytes; every event
//!   names its plugin (`plugin`, `plugin_version` attributes), which a plugin cannot forge.
//! - **Budgets**: [`DEFAULT_EVENT_BUDGET`] (100 events per plugin per run, configurable with
//!   [`RateLimit`]); excess events are dropped and counted ([`PluginStats`]), and said once in
//!   the host's log.
//!
//! # Untrusted plugins
//! A plugin cannot crash the host through these functions: a pointer or length outside its
//! memory traps (the plugin's call fails, the host goes on); a length over [`MAX_EVENT_BYTES`]
//! returns [`code::TOO_LARGE`] before anything is read; malformed JSON returns
//! [`code::INVALID`] with the reason in the host's log; a flood spends the budget, then costs
//! a lock and a counter per call. Bounding a plugin's CPU and memory in general is the host's
//! business (`wasmi::Config::consume_fuel`, `Store::limiter`); [`PluginExporter`] always
//! bounds its calls with fuel.
//!
//! # Plugin exporters
//! [`PluginExporter`] makes a plugin an [`optel::export::Exporter`]: give it to
//! `TelemetryBuilder::exporter` and the host's batches go to the plugin's `optel_export`
//! function. See [`exporter`] for the protocol.
#![deny(missing_docs)]

mod budget;
mod error;
pub mod event;
pub mod exporter;
mod host;
mod log;
mod plugin;

/// The WebAssembly interpreter whose [`Linker`](wasmi::Linker) and [`Store`](wasmi::Store)
/// appear in this crate's API.
pub use wasmi;

pub use budget::RateLimit;
pub use error::{Error, Result};
pub use event::MAX_PLUGIN_ATTRIBUTES;
pub use exporter::PluginExporter;
pub use host::{EVENT, LOG, MAX_EVENT_BYTES, MODULE, add_to_linker, code};
pub use log::{LogLevel, LogRecord, MAX_LOG_BYTES};
pub use plugin::{
    Capability, DEFAULT_EVENT_BUDGET, DEFAULT_LOG_BUDGET, Plugin, PluginBuilder, PluginStats,
    RESERVED_KEYS,
};
