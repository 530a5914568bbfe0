//! Redaction of free text: the rules live in [`optel_wire::redact`], shared with the collector,
//! which applies the same rules to every string it stores; this module keeps the SDK's public
//! path (`optel::redact::redact`).
//!
//! ```
//! let r = optel::redact::redact("failed for jane@example.com at /home/jane/app");
//! assert_eq!(r, "failed for <email> at <path>");
//! ```

pub use optel_wire::redact::redact;
