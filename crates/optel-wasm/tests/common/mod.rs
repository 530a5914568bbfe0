//! Plugins written in WebAssembly text (no wasm target is needed to build the tests) and a
//! host that runs them the way a tool would: one linker, one store per plugin instance.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

use std::sync::{Arc, Mutex};

use optel_wasm::{LogLevel, Plugin, PluginBuilder};
use wasmi::{Engine, Instance, Linker, Memory, Module, Store};

/// A "puppet" plugin: the test writes bytes into its memory and makes it call the host
/// functions with any pointer and length, or flood them from a loop inside the plugin.
pub const PUPPET: &str = r#"(module
  (import "telemetry" "log" (func $log (param i32 i32 i32)))
  (import "telemetry" "host_telemetry_event" (func $event (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "event") (param i32 i32) (result i32) (call $event (local.get 0) (local.get 1)))
  (func (export "log") (param i32 i32 i32) (call $log (local.get 0) (local.get 1) (local.get 2)))
  ;; Calls the event function $n times with the same bytes; returns how many were recorded
  ;; (result 0 or 1: RECORDED or RECORDED_PARTIAL).
  (func (export "flood") (param $ptr i32) (param $len i32) (param $n i32) (result i32)
    (local $ok i32)
    (block $done
      (loop $next
        (br_if $done (i32.eqz (local.get $n)))
        (if (i32.lt_u (call $event (local.get $ptr) (local.get $len)) (i32.const 2))
          (then (local.set $ok (i32.add (local.get $ok) (i32.const 1)))))
        (local.set $n (i32.sub (local.get $n) (i32.const 1)))
        (br $next)))
    (local.get $ok)))"#;

/// A plugin that calls the host but exports no memory: every read traps.
pub const NO_MEMORY: &str = r#"(module
  (import "telemetry" "log" (func $log (param i32 i32 i32)))
  (import "telemetry" "host_telemetry_event" (func $event (param i32 i32) (result i32)))
  (memory 1)
  (func (export "event") (param i32 i32) (result i32) (call $event (local.get 0) (local.get 1)))
  (func (export "log") (param i32 i32 i32) (call $log (local.get 0) (local.get 1) (local.get 2))))"#;

pub const PAGE: i32 = 65_536;

/// What a tool keeps in each plugin's store.
pub struct State {
    pub plugin: Plugin,
}

pub struct Host {
    pub engine: Engine,
    pub linker: Linker<State>,
}

impl Host {
    pub fn new() -> Self {
        let engine = Engine::default();
        let mut linker = Linker::new(&engine);
        optel_wasm::add_to_linker(&mut linker, |s: &State| &s.plugin).unwrap();
        Self { engine, linker }
    }

    pub fn start(&self, wat: &str, plugin: &Plugin) -> Running {
        let wasm = wat::parse_str(wat).unwrap();
        let module = Module::new(&self.engine, &wasm[..]).unwrap();
        let mut store = Store::new(
            &self.engine,
            State {
                plugin: plugin.clone(),
            },
        );
        let instance = self
            .linker
            .instantiate_and_start(&mut store, &module)
            .unwrap();
        let memory = instance.get_memory(&store, "memory");
        Running {
            store,
            instance,
            memory,
        }
    }
}

pub struct Running {
    pub store: Store<State>,
    pub instance: Instance,
    pub memory: Option<Memory>,
}

impl Running {
    pub fn write(&mut self, at: usize, bytes: &[u8]) {
        self.memory
            .unwrap()
            .write(&mut self.store, at, bytes)
            .unwrap();
    }

    pub fn event(&mut self, ptr: i32, len: i32) -> Result<i32, wasmi::Error> {
        let f = self
            .instance
            .get_typed_func::<(i32, i32), i32>(&self.store, "event")
            .unwrap();
        f.call(&mut self.store, (ptr, len))
    }

    /// Writes `json` at offset 0 and records it.
    pub fn event_json(&mut self, json: &str) -> i32 {
        self.write(0, json.as_bytes());
        self.event(0, json.len() as i32).unwrap()
    }

    pub fn log(&mut self, level: i32, ptr: i32, len: i32) -> Result<(), wasmi::Error> {
        let f = self
            .instance
            .get_typed_func::<(i32, i32, i32), ()>(&self.store, "log")
            .unwrap();
        f.call(&mut self.store, (level, ptr, len))
    }

    pub fn log_text(&mut self, level: i32, text: &str) {
        self.write(8_192, text.as_bytes());
        self.log(level, 8_192, text.len() as i32).unwrap();
    }

    /// Writes `json` at offset 0 and makes the plugin send it `n` times from its own loop.
    pub fn flood(&mut self, json: &str, n: i32) -> i32 {
        self.write(0, json.as_bytes());
        let f = self
            .instance
            .get_typed_func::<(i32, i32, i32), i32>(&self.store, "flood")
            .unwrap();
        f.call(&mut self.store, (0, json.len() as i32, n)).unwrap()
    }
}

/// A log sink that keeps what it receives.
#[derive(Clone, Default)]
pub struct Captured(pub Arc<Mutex<Vec<(LogLevel, String, bool)>>>);

impl Captured {
    pub fn sink(&self, builder: PluginBuilder) -> PluginBuilder {
        let lines = self.0.clone();
        builder.log_sink(move |r| {
            lines
                .lock()
                .unwrap()
                .push((r.level, r.message.to_owned(), r.from_host));
        })
    }

    pub fn lines(&self) -> Vec<(LogLevel, String, bool)> {
        self.0.lock().unwrap().clone()
    }
}
