//! The host functions a plugin imports from module [`MODULE`] (`"telemetry"`):
//!
//! | import | WebAssembly type | needs |
//! |---|---|---|
//! | `telemetry.log` | `(func (param $level i32) (param $ptr i32) (param $len i32))` | nothing |
//! | `telemetry.host_telemetry_event` | `(func (param $json_ptr i32) (param $len i32) (result i32))` | [`Capability::Telemetry`](crate::Capability::Telemetry) |
//!
//! Both read `len` bytes at `ptr` in the plugin's exported memory `"memory"`. A range outside
//! that memory (or no exported memory) traps: the plugin's call fails with an error, the host
//! goes on.

use wasmi::{Caller, Extern, Linker};

use crate::error::Error;
use crate::event::{Catalog, parse};
use crate::log::{LogLevel, MAX_LOG_BYTES, clean_message};
use crate::plugin::{Plugin, bump};

/// The import module of the host functions: `"telemetry"`.
pub const MODULE: &str = "telemetry";
/// The log function's import name: `"log"`.
pub const LOG: &str = "log";
/// The event function's import name: `"host_telemetry_event"`.
pub const EVENT: &str = "host_telemetry_event";
/// Longest event JSON accepted, in bytes (4 KiB); a longer `len` returns
/// [`code::TOO_LARGE`] without reading the plugin's memory.
pub const MAX_EVENT_BYTES: usize = 4096;

/// The results of `telemetry.host_telemetry_event`: `0` or more means the call went as it
/// should (the event may still not be recorded, e.g. with consent off), below `0` the plugin
/// did something wrong. A plugin should carry on either way: telemetry is never its business.
pub mod code {
    /// The event was handed to the host's recorder.
    pub const RECORDED: i32 = 0;
    /// The event was handed to the host's recorder without some attributes: their keys are
    /// not in the host's catalog for this plugin.
    pub const RECORDED_PARTIAL: i32 = 1;
    /// The host's telemetry is off (no consent, or the host never initialised optel): nothing
    /// recorded.
    pub const OFF: i32 = 2;
    /// The plugin lacks the `telemetry` capability: nothing read, nothing recorded.
    pub const DENIED: i32 = -1;
    /// `len` is over [`MAX_EVENT_BYTES`](crate::MAX_EVENT_BYTES) (or negative): nothing read.
    pub const TOO_LARGE: i32 = -2;
    /// The JSON is malformed or breaks a rule (see [`crate::event`]); the reason goes to the
    /// host's log.
    pub const INVALID: i32 = -3;
    /// The plugin's event budget is spent: dropped and counted.
    pub const RATE_LIMITED: i32 = -4;
}

/// Defines `telemetry.log` and `telemetry.host_telemetry_event` in `linker`, for stores whose
/// data gives the running plugin's [`Plugin`] through `plugin` (e.g.
/// `|state: &MyState| &state.plugin`). Call it once per linker; every store instantiated
/// through it then answers for its own plugin: its grants, catalog, budget and counters.
///
/// # Errors
/// [`Error::Link`](crate::Error::Link) if the linker already defines either function.
///
/// # Examples
/// ```
/// use optel_wasm::{Capability, Plugin};
/// use wasmi::{Engine, Linker, Module, Store};
///
/// struct State { plugin: Plugin }
///
/// let engine = Engine::default();
/// let mut linker = Linker::<State>::new(&engine);
/// optel_wasm::add_to_linker(&mut linker, |s: &State| &s.plugin)?;
///
/// // Without the capability, the plugin's event call returns `code::DENIED` (-1).
/// let wasm = wat::parse_str(r#"(module
///     (import "telemetry" "host_telemetry_event" (func $event (param i32 i32) (result i32)))
///     (memory (export "memory") 1)
///     (data (i32.const 0) "{\"name\":\"started\"}")
///     (func (export "run") (result i32) (call $event (i32.const 0) (i32.const 18))))"#)?;
/// let plugin = Plugin::builder("fmt-yaml", "1.4.0").build()?;
/// let mut store = Store::new(&engine, State { plugin: plugin.clone() });
/// let instance = linker.instantiate_and_start(&mut store, &Module::new(&engine, &wasm)?)?;
/// let run = instance.get_typed_func::<(), i32>(&store, "run")?;
/// assert_eq!(run.call(&mut store, ())?, optel_wasm::code::DENIED);
/// assert_eq!(plugin.stats().events_denied, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn add_to_linker<T: 'static>(
    linker: &mut Linker<T>,
    plugin: fn(&T) -> &Plugin,
) -> Result<(), Error> {
    linker.func_wrap(
        MODULE,
        LOG,
        move |caller: Caller<'_, T>, level: i32, ptr: i32, len: i32| -> Result<(), wasmi::Error> {
            log(&caller, plugin(caller.data()), level, ptr, len)
        },
    )?;
    linker.func_wrap(
        MODULE,
        EVENT,
        move |caller: Caller<'_, T>, ptr: i32, len: i32| -> Result<i32, wasmi::Error> {
            event(&caller, plugin(caller.data()), ptr, len)
        },
    )?;
    Ok(())
}

/// Wasm pointers and lengths are unsigned 32-bit numbers in `i32`s.
fn unsigned(x: i32) -> usize {
    x as u32 as usize
}

/// The first `keep` bytes of `ptr..ptr + len` in the plugin's memory; a trap if the whole
/// range is not inside it.
fn read<T>(
    caller: &Caller<'_, T>,
    plugin: &Plugin,
    ptr: i32,
    len: usize,
    keep: usize,
) -> Result<Vec<u8>, wasmi::Error> {
    let memory = caller.get_export("memory").and_then(Extern::into_memory);
    let Some(memory) = memory else {
        bump(&plugin.inner.counters.bad_pointers);
        return Err(wasmi::Error::new(format!(
            "optel-wasm: plugin {:?} exports no memory named \"memory\"",
            plugin.name()
        )));
    };
    let data = memory.data(caller);
    let start = unsigned(ptr);
    let bytes = start
        .checked_add(len)
        .filter(|end| *end <= data.len())
        .and_then(|_| data.get(start..start + len.min(keep)));
    match bytes {
        Some(bytes) => Ok(bytes.to_vec()),
        None => {
            bump(&plugin.inner.counters.bad_pointers);
            Err(wasmi::Error::new(format!(
                "optel-wasm: plugin {:?} passed {len} bytes at {start}, outside its memory of {} bytes",
                plugin.name(),
                data.len()
            )))
        }
    }
}

fn log<T>(
    caller: &Caller<'_, T>,
    plugin: &Plugin,
    level: i32,
    ptr: i32,
    len: i32,
) -> Result<(), wasmi::Error> {
    let bytes = read(caller, plugin, ptr, unsigned(len), MAX_LOG_BYTES + 1)?;
    match LogLevel::from_code(level) {
        Some(level) => plugin.log(level, &clean_message(&bytes), false),
        None => bump(&plugin.inner.counters.logs_dropped),
    }
    Ok(())
}

fn event<T>(
    caller: &Caller<'_, T>,
    plugin: &Plugin,
    ptr: i32,
    len: i32,
) -> Result<i32, wasmi::Error> {
    let counters = &plugin.inner.counters;
    if !plugin.inner.telemetry {
        bump(&counters.denied);
        return Ok(code::DENIED);
    }
    let len = unsigned(len);
    if len > MAX_EVENT_BYTES {
        bump(&counters.too_large);
        return Ok(code::TOO_LARGE);
    }
    // Bounds are checked even with consent off, so a plugin's bug shows the same way on
    // every machine.
    let bytes = read(caller, plugin, ptr, len, len)?;
    let host = optel::global();
    if !host.is_enabled() {
        bump(&counters.consent_off);
        return Ok(code::OFF);
    }
    // The budget is taken before parsing: a flood costs a lock and a counter, not a parse.
    if !plugin.take_event_token() {
        bump(&counters.rate_limited);
        if !plugin
            .inner
            .told_rate_limited
            .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            let budget = plugin.inner.event_budget;
            plugin.log(
                LogLevel::Warn,
                &format!(
                    "event budget spent ({} events, {} more a second): further events are dropped and counted",
                    budget.burst(),
                    budget.per_second()
                ),
                true,
            );
        }
        return Ok(code::RATE_LIMITED);
    }
    let catalog = Catalog {
        attribute_keys: &plugin.inner.attribute_keys,
        event_names: plugin.inner.event_names.as_deref(),
    };
    match parse(&bytes, catalog) {
        Ok(event) => {
            let identity = [
                ("plugin", optel::Value::Str(plugin.inner.name.clone())),
                (
                    "plugin_version",
                    optel::Value::Str(plugin.inner.version.clone()),
                ),
            ];
            host.event_with(event.name, identity.into_iter().chain(event.attributes));
            bump(&counters.recorded);
            if event.undeclared > 0 {
                counters.attributes_dropped.fetch_add(
                    u64::from(event.undeclared),
                    std::sync::atomic::Ordering::Relaxed,
                );
                Ok(code::RECORDED_PARTIAL)
            } else {
                Ok(code::RECORDED)
            }
        }
        Err(e) => {
            bump(&counters.invalid);
            plugin.log(LogLevel::Warn, &format!("event refused: {e}"), true);
            Ok(code::INVALID)
        }
    }
}
