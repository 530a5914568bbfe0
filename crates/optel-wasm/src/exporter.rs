//! A plugin as an optel [`Exporter`]: the host hands each delivered batch to the plugin, which
//! sends or stores it its own way (the seed's "new exporter" hook).
//!
//! # Protocol
//! The plugin exports:
//!
//! | export | WebAssembly type | what |
//! |---|---|---|
//! | `memory` | memory | where the batch is written |
//! | `alloc` | `(func (param $len i32) (result i32))` | returns a pointer to `len` free bytes |
//! | `optel_export` | `(func (param $ptr i32) (param $len i32) (result i32))` | takes the batch |
//!
//! For each batch the host calls `alloc(len)`, writes the batch's JSON (the optel wire format,
//! [`optel::wire::Batch`]) there, and calls `optel_export(ptr, len)`. Its result:
//!
//! | result | meaning | [`ExportError`] |
//! |---|---|---|
//! | `0` | exported | none |
//! | `n > 0` | try again in `n` seconds (at most 3 600) | [`ExportError::Retryable`] with `retry_after` |
//! | `n < 0` | never accepted | [`ExportError::Rejected`] |
//!
//! A trap, an out-of-bounds `alloc` result, running out of fuel or of time is
//! [`ExportError::Retryable`]: the batch stays in the queue for a later run, when the plugin
//! may be fixed.
//!
//! # Bounded
//! A plugin that loops cannot hang the host's exit. The plugin runs on fuel (wasmi's
//! instruction metering) handed out in slices of 100 000 units; between slices the exporter
//! checks the clock, so an export ends within the `timeout` the SDK gives it (plus one slice,
//! well under a millisecond in an optimised build) and after at most
//! [`PluginExporter::DEFAULT_FUEL`] units (or [`fuel`](PluginExporter::fuel)),
//! whichever comes first.
//!
//! Fuel bounds time, not memory: a plugin's `alloc` may grow its memory. Bound it as for any
//! untrusted plugin, with a limiter on the store before handing it over
//! (`wasmi::StoreLimitsBuilder::new().memory_size(16 << 20).build()` and `Store::limiter`).

use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use optel::export::{ExportError, ExportResult, Exporter};
use optel::wire::Batch;
use wasmi::{Instance, Memory, Store, TypedFunc, TypedResumableCall, WasmParams, WasmResults};

use crate::error::{Error, Result};

/// Longest `Retry-After` a plugin may ask for: one hour.
const MAX_RETRY_AFTER_SECS: i32 = 3_600;

/// An [`Exporter`] that hands batches to a WebAssembly plugin; see the module docs for the
/// protocol. Calls are serialised (the SDK never calls an exporter concurrently anyway).
///
/// # Examples
/// ```
/// use optel::export::Exporter;
/// use optel_wasm::PluginExporter;
/// use wasmi::{Config, Engine, Linker, Module, Store};
///
/// let wasm = wat::parse_str(r#"(module
///     (memory (export "memory") 1)
///     (func (export "alloc") (param i32) (result i32) (i32.const 1024))
///     (func (export "optel_export") (param i32 i32) (result i32) (i32.const 0)))"#)?;
/// let engine = Engine::new(Config::default().consume_fuel(true));
/// let mut store = Store::new(&engine, ());
/// let instance = Linker::new(&engine).instantiate_and_start(&mut store, &Module::new(&engine, &wasm)?)?;
/// let exporter = PluginExporter::new("upload-s3", store, instance)?;
///
/// let batch = optel::wire::Batch::new("acme", "1.0.0", "p", "linux", "x86_64");
/// assert!(exporter.export(&batch, std::time::Duration::from_secs(1)).is_ok());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct PluginExporter<T: Send + 'static = ()> {
    name: String,
    fuel: u64,
    guest: Mutex<Guest<T>>,
}

struct Guest<T: 'static> {
    store: Store<T>,
    memory: Memory,
    alloc: TypedFunc<i32, i32>,
    export: TypedFunc<(i32, i32), i32>,
}

impl<T: Send + 'static> fmt::Debug for PluginExporter<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PluginExporter")
            .field("name", &self.name)
            .field("fuel", &self.fuel)
            .finish_non_exhaustive()
    }
}

impl<T: Send + 'static> PluginExporter<T> {
    /// Most fuel one export may spend (`alloc` and `optel_export` together): 200 million
    /// units, roughly one per WebAssembly instruction. A real exporter needs a tiny fraction
    /// of it; BENCHMARKS.md gives how long a looping plugin takes to spend it.
    pub const DEFAULT_FUEL: u64 = 200_000_000;

    /// An exporter over plugin `name` (used in error messages), already instantiated in
    /// `store`. The store's engine must meter fuel (`wasmi::Config::consume_fuel(true)`).
    ///
    /// # Errors
    /// [`Error::MissingExport`] if the instance lacks `memory`, `alloc` or `optel_export`
    /// with the types above; [`Error::FuelDisabled`] if the engine does not meter fuel.
    pub fn new(name: impl Into<String>, store: Store<T>, instance: Instance) -> Result<Self> {
        let name = name.into();
        let missing = |export: &'static str, reason: String| Error::MissingExport {
            plugin: name.clone(),
            export,
            reason,
        };
        if store.get_fuel().is_err() {
            return Err(Error::FuelDisabled);
        }
        let memory = instance
            .get_memory(&store, "memory")
            .ok_or_else(|| missing("memory `memory`", "no memory export of that name".into()))?;
        let alloc = instance
            .get_typed_func::<i32, i32>(&store, "alloc")
            .map_err(|e| missing("`alloc: (i32) -> i32`", e.to_string()))?;
        let export = instance
            .get_typed_func::<(i32, i32), i32>(&store, "optel_export")
            .map_err(|e| missing("`optel_export: (i32, i32) -> i32`", e.to_string()))?;
        Ok(Self {
            name,
            fuel: Self::DEFAULT_FUEL,
            guest: Mutex::new(Guest {
                store,
                memory,
                alloc,
                export,
            }),
        })
    }

    /// Most fuel one export may spend. Default: [`DEFAULT_FUEL`](Self::DEFAULT_FUEL).
    #[must_use]
    pub fn fuel(mut self, fuel: u64) -> Self {
        self.fuel = fuel;
        self
    }

    /// Runs `f` on the plugin's store, e.g. to read what the host's own imports collected.
    /// `None` if an earlier call panicked while holding the store.
    pub fn with_store<R>(&self, f: impl FnOnce(&mut Store<T>) -> R) -> Option<R> {
        self.guest.lock().ok().map(|mut g| f(&mut g.store))
    }

    fn failed(&self, reason: String) -> ExportError {
        ExportError::Retryable {
            reason: format!("plugin {:?} {reason}", self.name),
            retry_after: None,
        }
    }

    fn trapped(&self, step: &str, error: &wasmi::Error) -> ExportError {
        self.failed(format!("trapped in {step}: {error}"))
    }

    /// Calls `func` in slices of [`FUEL_SLICE`] fuel, checking the clock between slices, so
    /// the call ends by `deadline` (give or take one slice) and after at most `self.fuel`.
    fn call_bounded<P: WasmParams, R: WasmResults>(
        &self,
        store: &mut Store<T>,
        bounds: &mut Bounds,
        func: &TypedFunc<P, R>,
        params: P,
        step: &str,
    ) -> Result<R, ExportError> {
        let budget = &mut bounds.fuel_left;
        let mut slice = FUEL_SLICE.min(*budget);
        store
            .set_fuel(slice)
            .map_err(|e| ExportError::Rejected(format!("cannot set fuel: {e}")))?;
        let mut call = func
            .call_resumable(&mut *store, params)
            .map_err(|e| self.trapped(step, &e))?;
        loop {
            match call {
                TypedResumableCall::Finished(results) => {
                    *budget -= slice - store.get_fuel().unwrap_or(0).min(slice);
                    return Ok(results);
                }
                TypedResumableCall::HostTrap(trap) => {
                    return Err(self.trapped(step, trap.host_error()));
                }
                TypedResumableCall::OutOfFuel(more) => {
                    *budget -= slice;
                    if *budget == 0 || more.required_fuel() > *budget {
                        return Err(self.failed(format!(
                            "ran out of fuel ({} units) in {step}: it may loop",
                            self.fuel
                        )));
                    }
                    if bounds.deadline.is_some_and(|d| Instant::now() >= d) {
                        return Err(self.failed(format!(
                            "did not return within {:?} in {step}: it may loop",
                            bounds.timeout
                        )));
                    }
                    slice = FUEL_SLICE.max(more.required_fuel()).min(*budget);
                    store
                        .set_fuel(slice)
                        .map_err(|e| ExportError::Rejected(format!("cannot set fuel: {e}")))?;
                    call = more
                        .resume(&mut *store)
                        .map_err(|e| self.trapped(step, &e))?;
                }
            }
        }
    }
}

/// What is left of one export's fuel and time.
#[derive(Debug)]
struct Bounds {
    fuel_left: u64,
    deadline: Option<Instant>,
    timeout: Duration,
}

/// Fuel given at a time: between slices the exporter checks the clock. About 100 000
/// instructions: well under a millisecond in an optimised build.
const FUEL_SLICE: u64 = 100_000;

impl<T: Send + 'static> Exporter for PluginExporter<T> {
    /// Hands `batch` to the plugin, within `timeout` (checked every 100 000 units of
    /// fuel) and [`fuel`](Self::fuel) fuel, whichever comes first.
    fn export(&self, batch: &Batch, timeout: Duration) -> ExportResult {
        // A timeout too large for an `Instant` (`Duration::MAX`) means no deadline: the fuel
        // still bounds the call.
        let deadline = Instant::now().checked_add(timeout);
        let json = serde_json::to_vec(batch)
            .map_err(|e| ExportError::Rejected(format!("cannot encode the batch: {e}")))?;
        let len = i32::try_from(json.len()).map_err(|_| {
            ExportError::Rejected(format!("batch of {} bytes is over 2 GiB", json.len()))
        })?;
        let mut guest = self.guest.lock().map_err(|_| {
            ExportError::Rejected(format!(
                "plugin {:?} is unusable: an earlier call panicked",
                self.name
            ))
        })?;
        let Guest {
            store,
            memory,
            alloc,
            export,
        } = &mut *guest;
        let mut bounds = Bounds {
            fuel_left: self.fuel,
            deadline,
            timeout,
        };
        let ptr = self.call_bounded(store, &mut bounds, alloc, len, "alloc")?;
        memory
            .write(&mut *store, ptr as u32 as usize, &json)
            .map_err(|_| {
                self.failed(format!(
                    "alloc({len}) returned {}, outside its memory",
                    ptr as u32
                ))
            })?;
        let code = self.call_bounded(store, &mut bounds, export, (ptr, len), "optel_export")?;
        match code {
            0 => Ok(()),
            n if n > 0 => Err(ExportError::Retryable {
                reason: format!("plugin {:?} asked to retry in {n} s", self.name),
                retry_after: Some(Duration::from_secs(
                    n.min(MAX_RETRY_AFTER_SECS).unsigned_abs().into(),
                )),
            }),
            n => Err(ExportError::Rejected(format!(
                "plugin {:?} rejected the batch (code {n})",
                self.name
            ))),
        }
    }
}
