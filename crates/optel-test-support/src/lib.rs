//! What the tests and harnesses of the optel workspace share, and nothing a user needs (so it
//! is not published):
//!
//! - loopback endpoints: [`LocalCollector`], a real collector that can be stopped and restarted
//!   on the same port; [`refusing_addr`], [`blackhole`] and [`slow_responder`], the ways a
//!   collector can fail;
//! - the instrumented example tool: [`locate_example_binary`] finds it (building it with cargo
//!   when cargo runs the test), [`tool_command`] runs it as a new install.
//!
//! Everything binds 127.0.0.1 only.

#![warn(missing_docs)]

mod loopback;
mod tool;

pub use self::loopback::{LocalCollector, blackhole, refusing_addr, slow_responder};
pub use self::tool::{locate_example_binary, tool_command};
