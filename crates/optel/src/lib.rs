//! optel: privacy-first usage telemetry for CLI tools and libraries.
//!
//! Three lines in a tool's `main`:
//!
//! ```no_run
//! # fn run() -> Result<(), &'static str> { Ok(()) }
//! let _telemetry = optel::Telemetry::builder("acme", env!("CARGO_PKG_VERSION"))
//!     .endpoint("https://telemetry.acme.dev")
//!     .asking(optel::Asking::OptIn) // ask once on an interactive terminal, never in CI
//!     .init();
//! let command = optel::track_command_execution("build");
//! if let Err(code) = run() {
//!     command.fail(code);
//! }
//! // `_telemetry` drops at the end of `main`: this run's events are queued and sent within
//! // the exit budget (40 ms by default); what is not sent goes on a later run.
//! ```
//!
//! To say exactly what the tool records, declare an event catalog with [`CatalogBuilder`] and
//! [`TelemetryBuilder::catalog`]: undeclared events, attributes and phases are then dropped
//! before anything is stored, and `telemetry preview` shows the catalog in plain words
//! (docs/adr/010-event-catalog.md). Commands have phases ([`CommandGuard::phase`]); numbers
//! are recorded with [`Handle::measure`].
//!
//! `init` never fails: on any problem telemetry is off for the run and `status` says why;
//! [`TelemetryBuilder::try_init`] returns the reason as an [`InitError`] instead.
//!
//! With the `clap` feature, `cli::TelemetryArgs` gives users `<tool> telemetry
//! status|enable|disable|local|reset|preview|log|purge|flush` with one line in the tool's
//! subcommand enum (see the `cli` module).
//!
//! # Consent
//! Three states ([`Consent`]): `off` (nothing runs: no thread, no file, no socket, no
//! hashing), `local` (events go to a local ledger only, `telemetry log`), `on` (sent). Layers,
//! highest first: `DO_NOT_TRACK`, `<TOOL>_TELEMETRY=off|local|on`, a project policy file
//! ([`PROJECT_POLICY_FILE`], found walking up from the working directory), the user's per-tool
//! config, a consent file shared by every optel tool, the author's default. See the table in
//! [`ConsentSource`] and `<tool> telemetry status`, which names the deciding layer and its file.
//! How the user is asked is the author's choice ([`Asking`]): silently the author's default,
//! an opt-in question, or a one-time notice; never in CI, never without a terminal.
//!
//! # Privacy guarantees
//! - With consent off, [`TelemetryBuilder::init`] reads environment variables and at most
//!   three small consent files, and returns: no thread, no file written, no socket. The
//!   global recorder stays empty, so every recording call is one atomic load and a branch.
//! - The install is identified by a pseudonym: a keyed hash (HMAC-SHA-256) of a random secret
//!   that never leaves the machine, rotated per [`Epoch`] (monthly by default). In CI every run
//!   of a vendor sends `ci:<vendor>`. No host name, user name or machine id is read
//!   ([`MachineId`] exists for authors who need one, and is never sent by optel).
//! - Events carry a command, feature or method name, a duration, an outcome, an error code and
//!   typed attributes ([`Value`]); free-text values pass through [`redact`] before they are
//!   stored anywhere. Names are checked ([`validate_name`]): an event that breaks the rules is
//!   dropped and counted (with an error on stderr in debug builds).
//! - Files are written 0600 in directories created 0700, opened without following symbolic
//!   links, only when regular, and read with a size limit; a directory that is a link,
//!   another user's or writable by others is refused (telemetry is then off, and `status` says
//!   why), and `HOME` or a set `XDG_*_HOME` is never created. `PRIVACY.md` at the repository
//!   root lists every field that can ever be sent.
//!
//! # Libraries
//! A library records through [`library`]: a no-op unless its host application initialised
//! optel with consent, then it uses the host's consent, pseudonym and delivery.
//!
//! # Never waiting
//! Recording is an in-memory push. Sending happens on a background thread that starts at init;
//! at exit the host waits at most the exit budget ([`TelemetryBuilder::exit_timeout`]). Segments
//! not delivered stay in the local queue and go on a later run, so no event is lost because the
//! network was down.
//!
//! # Environment variables
//! | variable | effect |
//! |---|---|
//! | `DO_NOT_TRACK` | any value but empty, `0` or `false` turns telemetry off |
//! | `<TOOL>_TELEMETRY` | `off`, `local` or `on`; overrides every file and the author's default; anything else means off |
//! | `<TOOL>_TELEMETRY_ENDPOINT` | replaces the endpoint given in code (e.g. a self-hosted collector) |
//! | `<TOOL>_TELEMETRY_KEY` | replaces the ingest key given in code |
//! | `<TOOL>_TELEMETRY_CA_FILE` | a PEM file of root certificates trusted for HTTPS instead of the default roots (features `tls`, `rustls`); replaces [`TelemetryBuilder::tls_root_certificates`] |
//! | `SSL_CERT_FILE` | the same, for every tool; [`TelemetryBuilder::tls_root_certificates`] replaces it |
//! | `<TOOL>_TELEMETRY_DEBUG` | `1`: one line on stderr per decision (consent and its layer, endpoint, each request's size and outcome, the breaker, the daily cap, the exit wait) |
//! | `<TOOL>_TELEMETRY_EXIT_TIMEOUT_MS` | replaces the exit budget, at most 10 000 ms |
//! | `<TOOL>_TELEMETRY_CONSENT_CHECK_MS` | replaces the consent check interval of a running process ([`TelemetryBuilder::consent_check_interval`]), at most 60 000 ms; meant for tests |
//! | `CI` | set (not empty, `0` or `false`): the exit budget becomes a bounded blocking flush ([`TelemetryBuilder::ci_flush_timeout`], 2 s) |
//! | `ALL_PROXY`, `HTTPS_PROXY`, `HTTP_PROXY`, `NO_PROXY` | proxy for delivery requests, except hosts in `NO_PROXY` |
//!
//! `<TOOL>` is the tool name upper-cased with every character outside `[A-Z0-9]` replaced by
//! `_` (`my-cli` → `MY_CLI`).
//!
//! # Delivery
//! Each run's events become one segment file in the local queue at exit (bounded by events and
//! bytes; drops are counted, see [`queue_status`]). The delivery thread merges segments into
//! gzip-compressed requests, retries with exponential backoff and jitter, honours
//! `Retry-After`, and shares a circuit breaker and a daily request cap with every other process
//! of the tool through a state file, so a dead endpoint costs new processes nothing.
//!
//! The user's per-tool config file may choose the exporter (`exporter = "optel" | "otlp_http" |
//! "stdout" | "file"`), the endpoint and compression (`[upload] endpoint`, `compression`) and the
//! ledger's retention (`local_retention_days`), unless the tool forbids it
//! ([`TelemetryBuilder::user_exporter_choice`]); consent still decides whether anything is
//! sent. A long-running process re-checks consent and hands its events over every
//! [`TelemetryBuilder::consent_check_interval`], on the delivery thread.
//!
//! # Features
//! | feature | adds |
//! |---|---|
//! | `tls` (default) | HTTPS endpoints with the platform's TLS library and root certificates: OpenSSL on Linux and other Unixes (linked dynamically: `libssl.so.3` at run time, `pkg-config` and `libssl-dev` to build), SChannel on Windows, Security.framework on macOS; or a private CA ([`TelemetryBuilder::tls_root_certificates`], `<TOOL>_TELEMETRY_CA_FILE`, `SSL_CERT_FILE`). Without `tls` and `rustls` (`default-features = false`) only `http://` endpoints work, and an `https://` one turns telemetry off at init, saying so in `status` |
//! | `rustls` | HTTPS with rustls (the `ring` provider) and the compiled-in webpki roots instead of the platform's TLS: static, pure Rust, about 1.6 MB larger; use it with `default-features = false` (when both are on, rustls is used). The same private-CA settings |
//! | `clap` | `cli`: the ready `telemetry` subcommand |
//! | `testing` | `export::MemoryExporter` with assertion helpers, for authors' own tests |
//! | `otlp` | `otlp::OtlpExporter`: OTLP/HTTP export (protobuf or JSON) via `opentelemetry-proto` |
//! | `encryption` | `TelemetryBuilder::encrypt_local_store`: queue segments and the ledger sealed at rest with XChaCha20-Poly1305 (RustCrypto `chacha20poly1305`), the key in `<config dir>/optel/keys/<tool>.key` (0600). Threat model: `docs/adr/014-encrypted-local-store.md` |
//! | `otlp-grpc` | OTLP/gRPC for `otlp::OtlpExporter` (`OTEL_EXPORTER_OTLP_PROTOCOL=grpc`): tonic on a current-thread tokio runtime started by the first export; see `docs/adr/016-otlp-grpc.md` for its size and build cost |
//! | `miette` | `miette::Diagnostic` for the public errors ([`InitError`], [`NameError`], the export and `cli` errors): a stable code (`optel::init::no_data_directory`) and a help text |
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod attribute;
mod breaker;
mod builder;
#[cfg(feature = "clap")]
mod bundle;
mod catalog;
#[cfg(feature = "clap")]
#[cfg_attr(docsrs, doc(cfg(feature = "clap")))]
pub mod cli;
mod command;
mod consent;
mod debug;
mod delivery;
#[cfg(feature = "miette")]
mod diagnostic;
pub mod export;
mod fsutil;
mod global;
mod identity;
mod library;
#[cfg(feature = "otlp")]
#[cfg_attr(docsrs, doc(cfg(feature = "otlp")))]
pub mod otlp;
mod queue;
mod random;
mod recorder;
pub mod redact;
mod shutdown;
mod startup;
mod status;
mod store;

#[doc(hidden)]
pub mod __private;

/// The payload types of the wire format ([`wire::Batch`], [`wire::Event`]), for a custom
/// [`export::Exporter`] without a second dependency.
pub use optel_wire as wire;

pub use attribute::{NameError, Value, validate_name};
pub use builder::{
    DEFAULT_CI_FLUSH_TIMEOUT, DEFAULT_DAILY_REQUEST_CAP, DEFAULT_EXIT_TIMEOUT,
    DEFAULT_REQUEST_TIMEOUT, MAX_EXIT_TIMEOUT, Telemetry, TelemetryBuilder, default_data_dir,
};
pub use builder::{
    DEFAULT_CONSENT_CHECK_INTERVAL, DEFAULT_MIN_FREE_DISK_BYTES, MAX_CONSENT_CHECK_INTERVAL,
};
pub use catalog::CatalogBuilder;
pub use command::{CommandGuard, PhaseGuard};
pub use consent::{Asking, Consent, ConsentSource, PROJECT_POLICY_FILE};
pub use global::{Handle, global, track_command_execution};
pub use identity::{Epoch, MachineId};
pub use library::{Library, library};
pub use optel_wire::EventType;
pub use queue::{QueueStatus, queue_status};
pub use shutdown::TelemetryGuard;
pub use startup::InitError;
pub use status::Status;
pub use store::StoreCounters;

#[doc(hidden)]
pub use __private::queued_events;
