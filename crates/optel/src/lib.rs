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
//! - Files are written 0600 in directories created 0700. `PRIVACY.md` at the repository root
//!   lists every field that can ever be sent.
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
//! | `<TOOL>_TELEMETRY_EXIT_TIMEOUT_MS` | replaces the exit budget, at most 10 000 ms |
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
//! # Features
//! | feature | adds |
//! |---|---|
//! | `tls` | HTTPS endpoints (rustls with the webpki roots) |
//! | `clap` | `cli`: the ready `telemetry` subcommand |
//! | `testing` | `export::MemoryExporter` with assertion helpers, for authors' own tests |
//! | `otlp` | `otlp::OtlpExporter`: OTLP/HTTP export (protobuf or JSON) via `opentelemetry-proto` |
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod attribute;
#[cfg(feature = "clap")]
#[cfg_attr(docsrs, doc(cfg(feature = "clap")))]
pub mod cli;
mod consent;
mod delivery;
pub mod export;
mod fsutil;
mod identity;
mod library;
#[cfg(feature = "otlp")]
#[cfg_attr(docsrs, doc(cfg(feature = "otlp")))]
pub mod otlp;
mod queue;
pub mod redact;

use std::borrow::Cow;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use optel_wire::{Batch, Event, Timestamp};

pub use attribute::{NameError, Value, validate_name};
pub use consent::{Asking, Consent, ConsentSource, PROJECT_POLICY_FILE};
pub use identity::{Epoch, MachineId};
pub use library::{Library, library};
pub use optel_wire::EventType;
pub use queue::{QueueStatus, queue_status};

/// Default exit budget: the longest the host's exit waits for telemetry.
pub const DEFAULT_EXIT_TIMEOUT: Duration = Duration::from_millis(40);

/// The longest exit budget `<TOOL>_TELEMETRY_EXIT_TIMEOUT_MS` may ask for: 10 s.
pub const MAX_EXIT_TIMEOUT: Duration = Duration::from_secs(10);

/// Default exit budget in CI (the `CI` environment variable is set): 2 s of bounded blocking
/// flush, since a CI machine has no next run to deliver what is left.
pub const DEFAULT_CI_FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// Default timeout of one whole delivery request (connect, send, answer): 2 s (seed 000).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// Default cap on delivery requests per UTC day and tool install: 10 000 (about one per run; a
/// storm of retries is already held back by the circuit breaker).
pub const DEFAULT_DAILY_REQUEST_CAP: u32 = 10_000;

/// Most events kept in memory by one process before shutdown; more are dropped and counted.
const MAX_BUFFERED_EVENTS: usize = 10_000;

static GLOBAL: OnceLock<Inner> = OnceLock::new();
static INIT_CALLED: AtomicBool = AtomicBool::new(false);

/// Entry point: [`Telemetry::builder`].
#[derive(Debug)]
pub struct Telemetry(());

impl Telemetry {
    /// Starts configuring telemetry for the tool `tool` (its name, `[A-Za-z0-9_.:-]`, at most
    /// 64 bytes, e.g. `"acme"`) at version `version` (usually `env!("CARGO_PKG_VERSION")`).
    pub fn builder(tool: impl Into<String>, version: impl Into<String>) -> TelemetryBuilder {
        TelemetryBuilder {
            tool: tool.into(),
            version: version.into(),
            endpoint: None,
            ingest_key: None,
            data_dir: None,
            default_consent: Consent::Off,
            exit_timeout: DEFAULT_EXIT_TIMEOUT,
            asking: Asking::Silent,
            epoch: Epoch::Monthly,
            samples: Vec::new(),
            exporter: None,
            config_dir: None,
            ledger_retention_days: export::DEFAULT_RETENTION_DAYS,
            ci_flush_timeout: DEFAULT_CI_FLUSH_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            daily_request_cap: DEFAULT_DAILY_REQUEST_CAP,
            gzip: true,
        }
    }
}

/// Configures telemetry; [`init`](Self::init) starts it.
#[derive(Debug, Clone)]
#[must_use]
pub struct TelemetryBuilder {
    tool: String,
    version: String,
    endpoint: Option<String>,
    ingest_key: Option<String>,
    data_dir: Option<PathBuf>,
    default_consent: Consent,
    exit_timeout: Duration,
    asking: Asking,
    epoch: Epoch,
    samples: Vec<(EventType, f64)>,
    exporter: Option<std::sync::Arc<dyn export::Exporter>>,
    config_dir: Option<PathBuf>,
    ledger_retention_days: u32,
    ci_flush_timeout: Duration,
    request_timeout: Duration,
    daily_request_cap: u32,
    gzip: bool,
}

impl TelemetryBuilder {
    /// The collector's base URL (`https://telemetry.acme.dev`; events go to `<url>/v1/events`)
    /// or the full URL of its `/v1/events` route. Default: none, events are only queued
    /// locally. `<TOOL>_TELEMETRY_ENDPOINT` replaces it.
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint = Some(url.into());
        self
    }

    /// The project ingest key printed by `optel projects create`, sent as
    /// `Authorization: Bearer <key>`. Default: none. `<TOOL>_TELEMETRY_KEY` replaces it.
    pub fn ingest_key(mut self, key: impl Into<String>) -> Self {
        self.ingest_key = Some(key.into());
        self
    }

    /// The directory for the install secret and the queue. Default:
    /// `<platform data dir>/optel/<tool>` (on Linux `$XDG_DATA_HOME/optel/<tool>` or
    /// `~/.local/share/optel/<tool>`).
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// The consent state when no user layer decides. Default: [`Consent::Off`].
    /// [`Asking::OptIn`] and [`Asking::Notice`] replace it (off until asked, and on).
    pub fn default_consent(mut self, consent: Consent) -> Self {
        self.default_consent = consent;
        self
    }

    /// How the user is asked when no layer above the author's default decided: never
    /// ([`Asking::Silent`], the default), an opt-in question on an interactive terminal
    /// ([`Asking::OptIn`]), or a one-time notice with telemetry on ([`Asking::Notice`]).
    /// Neither ever happens in CI or when stdin or stderr is not a terminal.
    pub fn asking(mut self, asking: Asking) -> Self {
        self.asking = asking;
        self
    }

    /// How often the pseudonym changes. Default: [`Epoch::Monthly`].
    pub fn pseudonym_epoch(mut self, epoch: Epoch) -> Self {
        self.epoch = epoch;
        self
    }

    /// Keeps events of `event_type` from a fraction `ratio` (0.0 to 1.0, clamped) of installs
    /// (seed 003's sample rate). The choice is a deterministic function of the pseudonym: an
    /// install is either in or out for a whole epoch, so its counts stay consistent. Default:
    /// 1.0 for every type.
    pub fn sample(mut self, event_type: EventType, ratio: f64) -> Self {
        let ratio = if ratio.is_nan() {
            0.0
        } else {
            ratio.clamp(0.0, 1.0)
        };
        self.samples.retain(|(t, _)| *t != event_type);
        self.samples.push((event_type, ratio));
        self
    }

    /// The directory of the user's consent files: `<dir>/optel/<tool>.toml` and
    /// `<dir>/optel/consent.toml`. Default: the platform config directory (on Linux
    /// `$XDG_CONFIG_HOME` or `~/.config`).
    pub fn config_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.config_dir = Some(dir.into());
        self
    }

    /// How many days the local ledger (`<data dir>/ledger/*.jsonl`, what `telemetry log`
    /// shows) keeps events; `0` keeps them forever. Default:
    /// [`export::DEFAULT_RETENTION_DAYS`] (30).
    pub fn ledger_retention_days(mut self, days: u32) -> Self {
        self.ledger_retention_days = days;
        self
    }

    /// The longest the host's exit waits for telemetry to be written and sent. Default:
    /// [`DEFAULT_EXIT_TIMEOUT`] (40 ms). `<TOOL>_TELEMETRY_EXIT_TIMEOUT_MS` replaces it (at most
    /// [`MAX_EXIT_TIMEOUT`]), for CI jobs and tests that want every event delivered before exit.
    pub fn exit_timeout(mut self, timeout: Duration) -> Self {
        self.exit_timeout = timeout;
        self
    }

    /// The exit budget when the `CI` environment variable is set (to anything but empty, `0`
    /// or `false`): a bounded blocking flush, since a CI machine has no later run. Default:
    /// [`DEFAULT_CI_FLUSH_TIMEOUT`] (2 s), at most [`MAX_EXIT_TIMEOUT`].
    /// `<TOOL>_TELEMETRY_EXIT_TIMEOUT_MS` replaces it too.
    pub fn ci_flush_timeout(mut self, timeout: Duration) -> Self {
        self.ci_flush_timeout = timeout.min(MAX_EXIT_TIMEOUT);
        self
    }

    /// Timeout of one whole delivery request, connect included (the connect alone times out
    /// after [`export::CONNECT_TIMEOUT`]). Default: [`DEFAULT_REQUEST_TIMEOUT`] (2 s). Requests
    /// run on the delivery thread: this never delays the host beyond the exit budget.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Most delivery requests per UTC day from this install, shared by all its processes.
    /// Default: [`DEFAULT_DAILY_REQUEST_CAP`] (10 000). Past it, events stay queued until the
    /// next day.
    pub fn daily_request_cap(mut self, cap: u32) -> Self {
        self.daily_request_cap = cap;
        self
    }

    /// Whether request bodies are gzip-compressed (`Content-Encoding: gzip`). Default: `true`;
    /// set `false` for a collector that does not decode gzip.
    pub fn gzip(mut self, gzip: bool) -> Self {
        self.gzip = gzip;
        self
    }

    /// Sends batches with `exporter` instead of the optel HTTP exporter, e.g.
    /// `optel::otlp::OtlpExporter` (feature `otlp`) for an OpenTelemetry backend. The queue,
    /// batching, retries, circuit breaker and exit budget stay the same. Default: the optel
    /// collector at [`endpoint`](Self::endpoint). With an exporter set, delivery runs even
    /// without an endpoint (e.g. a `MemoryExporter` in tests, feature `testing`).
    pub fn exporter(mut self, exporter: impl export::Exporter) -> Self {
        self.exporter = Some(std::sync::Arc::new(exporter));
        self
    }

    /// Resolves consent and, if it is on, installs the process-global recorder and starts
    /// delivery. Never fails: on any problem telemetry is disabled and
    /// [`TelemetryGuard::status`] says why. A second call in the same process returns a
    /// disabled guard and leaves the first in place.
    ///
    /// Keep the returned guard alive until the end of `main`: dropping it queues this run's
    /// events and waits at most the exit budget for delivery.
    pub fn init(self) -> TelemetryGuard {
        if INIT_CALLED.swap(true, Ordering::AcqRel) {
            let status = Status::new(
                Consent::Off,
                ConsentSource::AuthorDefault,
                self.epoch,
                Some("optel was already initialised in this process".into()),
            );
            return TelemetryGuard {
                inner: None,
                status,
            };
        }
        let env = |k: &str| std::env::var(k).ok();
        let interactive = consent::interactive();
        self.init_with(&env, interactive, &consent::ci_vendor)
    }

    #[cfg(test)]
    fn init_with_env(self, env: &dyn Fn(&str) -> Option<String>) -> TelemetryGuard {
        INIT_CALLED.store(true, Ordering::Release);
        self.init_with(env, (false, false), &|| None)
    }

    /// Resolves consent without asking, writing or starting anything.
    pub(crate) fn resolve(&self, env: &dyn Fn(&str) -> Option<String>) -> consent::Resolution {
        consent::resolve(&consent::Inputs {
            env,
            tool: &self.tool,
            cwd: std::env::current_dir().ok(),
            config_dir: self.config_path(),
            default: match self.asking {
                Asking::Silent => self.default_consent,
                Asking::OptIn => Consent::Off,
                Asking::Notice => Consent::On,
            },
        })
    }

    pub(crate) fn config_path(&self) -> Option<PathBuf> {
        self.config_dir
            .clone()
            .or_else(consent::platform_config_dir)
    }

    pub(crate) fn user_config_file(&self) -> Option<PathBuf> {
        self.config_path()
            .map(|c| consent::user_config_path(&c, &self.tool))
    }

    pub(crate) fn resolved_data_dir(&self) -> Option<PathBuf> {
        self.data_dir
            .clone()
            .or_else(|| default_data_dir(&self.tool))
    }

    pub(crate) fn ledger(&self, data_dir: &Path) -> export::JsonlFileExporter {
        export::JsonlFileExporter::new(data_dir.join("ledger"))
            .retention_days(self.ledger_retention_days)
    }

    /// The endpoint after `<TOOL>_TELEMETRY_ENDPOINT`.
    pub(crate) fn effective_endpoint(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Option<String> {
        let prefix = consent::env_prefix(&self.tool);
        env(&format!("{prefix}_TELEMETRY_ENDPOINT")).or(self.endpoint.clone())
    }

    /// The exporter delivery uses: the one set in code, else the HTTP exporter to the
    /// endpoint, else none (events stay queued).
    pub(crate) fn delivery_exporter(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Option<Box<dyn export::Exporter>> {
        if let Some(e) = &self.exporter {
            return Some(Box::new(e.clone()));
        }
        let endpoint = self.effective_endpoint(env)?;
        let prefix = consent::env_prefix(&self.tool);
        let ingest_key = env(&format!("{prefix}_TELEMETRY_KEY")).or(self.ingest_key.clone());
        let user_agent = format!(
            "optel/{} ({}/{})",
            env!("CARGO_PKG_VERSION"),
            self.tool,
            self.version
        );
        Some(Box::new(
            export::HttpExporter::new(events_url(&endpoint), ingest_key, &user_agent)
                .with_gzip(self.gzip),
        ))
    }

    /// The request policy of the delivery thread.
    pub(crate) fn delivery_policy(&self) -> delivery::Policy {
        delivery::Policy {
            request_timeout: self.request_timeout,
            daily_request_cap: self.daily_request_cap,
        }
    }

    fn init_with(
        self,
        env: &dyn Fn(&str) -> Option<String>,
        (stdin_tty, stderr_tty): (bool, bool),
        ci: &dyn Fn() -> Option<String>,
    ) -> TelemetryGuard {
        let mut resolution = self.resolve(env);
        if resolution.source == ConsentSource::AuthorDefault && self.asking != Asking::Silent {
            resolution = self.ask_or_tell(resolution, stdin_tty, stderr_tty, ci);
        }
        let mut status = Status::new(
            resolution.consent,
            resolution.source,
            self.epoch,
            resolution.note,
        );
        status.endpoint = self.effective_endpoint(env);
        if resolution.consent == Consent::Off {
            return TelemetryGuard {
                inner: None,
                status,
            };
        }
        match self.start(env, resolution.consent, ci) {
            Ok(inner) => {
                status.data_dir = Some(inner.data_dir.clone());
                status.pseudonym_epoch_label = Some(inner.epoch_label.clone());
                // INIT_CALLED guarantees we are the only one to set GLOBAL.
                let inner = GLOBAL.get_or_init(|| inner);
                TelemetryGuard {
                    inner: Some(inner),
                    status,
                }
            }
            Err(reason) => {
                status.consent = Consent::Off;
                status.note = Some(reason);
                TelemetryGuard {
                    inner: None,
                    status,
                }
            }
        }
    }

    /// Opt-in question or notice, when the author's default was reached.
    #[cold]
    fn ask_or_tell(
        &self,
        mut resolution: consent::Resolution,
        stdin_tty: bool,
        stderr_tty: bool,
        ci: &dyn Fn() -> Option<String>,
    ) -> consent::Resolution {
        // CI is checked last: it reads many variables, and without a terminal it is moot.
        let can_ask = stdin_tty && stderr_tty && consent::can_ask(true, true, ci().is_some());
        let Some(user_file) = self.user_config_file() else {
            return resolution;
        };
        let notice_shown = consent::read_file(&user_file)
            .ok()
            .flatten()
            .is_some_and(|f| f.notice_shown);
        match self.asking {
            Asking::OptIn if can_ask => {
                let answer = consent::ask(&self.tool, &self.sample_payload());
                if let Err(e) = consent::write_user_choice(&user_file, Some(answer), notice_shown) {
                    resolution.note = Some(format!(
                        "cannot keep your answer in {}: {e}; you will be asked again",
                        user_file.display()
                    ));
                } else {
                    resolution.source = ConsentSource::UserConfig(user_file);
                }
                resolution.consent = answer;
            }
            Asking::OptIn => {
                resolution.note = Some(format!(
                    "not asked (no interactive terminal, or CI): run `{} telemetry enable` to opt in",
                    self.tool
                ));
            }
            Asking::Notice if can_ask && !notice_shown => {
                eprint!("{}", consent::notice(&self.tool));
                let _ = consent::write_user_choice(&user_file, None, true);
            }
            _ => {}
        }
        resolution
    }

    /// An example of what one run sends, with this tool's name, version and platform.
    pub(crate) fn sample_payload(&self) -> String {
        let mut batch = Batch::new(
            self.tool.clone(),
            self.version.clone(),
            "5f1d3c2b9a8e7d6c5f1d3c2b9a8e7d6c",
            std::env::consts::OS,
            std::env::consts::ARCH,
        );
        let mut event = Event::new(
            "0b6c8a4e-2f1d-4c3b-9a8e-7d6c5f1d3c2b",
            EventType::Command,
            "build",
            Timestamp::now(),
            "7e2d4c1a-0b9f-4e8d-8c7b-6a5f4e3d2c1b",
        );
        event.duration_ms = Some(412);
        event.success = Some(false);
        event.error_code = Some("E_NO_MANIFEST".into());
        batch.events.push(event);
        serde_json::to_string_pretty(&batch).unwrap_or_default()
    }

    #[cold]
    fn start(
        self,
        env: &dyn Fn(&str) -> Option<String>,
        consent: Consent,
        ci: &dyn Fn() -> Option<String>,
    ) -> Result<Inner, String> {
        if !optel_wire::is_valid_name(&self.tool) {
            return Err(format!(
                "tool name {:?} is not allowed: use [A-Za-z0-9_.:-], at most 64 bytes",
                self.tool
            ));
        }
        let prefix = consent::env_prefix(&self.tool);
        let data_dir = self
            .resolved_data_dir()
            .ok_or("no home directory to keep the telemetry queue in")?;
        fsutil::create_private_dir(&data_dir)
            .map_err(|e| format!("cannot create {}: {e}", data_dir.display()))?;
        let now = SystemTime::now();
        let epoch_label = self.epoch.label(now);
        // In CI every run of a vendor shares one pseudonym: ephemeral runners would otherwise
        // each count as a new install. No secret is created there.
        let pseudonym = match ci() {
            Some(vendor) => identity::ci_pseudonym(&vendor),
            None => {
                let secret = identity::load_or_create_secret(&data_dir)
                    .map_err(|e| format!("cannot read or create the install secret: {e}"))?;
                identity::pseudonym(&secret, &self.tool, &epoch_label)
            }
        };
        let mut sampled_out = [false; 4];
        for (event_type, ratio) in &self.samples {
            sampled_out[type_index(*event_type)] =
                identity::sample_point(&pseudonym, event_type.as_str()) >= *ratio;
        }
        let session = identity::random_bytes::<16>().map_err(|e| e.to_string())?;
        let id_seed = identity::random_bytes::<16>().map_err(|e| e.to_string())?;
        let exit_timeout = exit_budget(env, &prefix, self.exit_timeout, self.ci_flush_timeout);
        let (queue, worker) = if consent == Consent::On {
            let queue = queue::Queue::open(data_dir.join("queue"))
                .map_err(|e| format!("cannot create the queue directory: {e}"))?;
            let worker = match self.delivery_exporter(env) {
                Some(exporter) => Some(
                    delivery::Worker::start(
                        queue.clone(),
                        delivery::Breaker::new(data_dir.clone()),
                        self.delivery_policy(),
                        exporter,
                    )
                    .map_err(|e| format!("cannot start the delivery thread: {e}"))?,
                ),
                None => None,
            };
            (Some(queue), worker)
        } else {
            (None, None)
        };
        let ledger = self.ledger(&data_dir);
        Ok(Inner {
            envelope: Batch::new(
                self.tool.clone(),
                self.version,
                pseudonym,
                std::env::consts::OS,
                std::env::consts::ARCH,
            ),
            session_id: identity::uuid_v4(session),
            id_seed,
            next_seq: AtomicU64::new(0),
            buffer: Mutex::new(Vec::new()),
            dropped: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            sampled_out,
            queue,
            ledger,
            worker,
            data_dir,
            epoch_label,
            exit_timeout,
        })
    }
}

/// Index of an event type in per-type tables.
const fn type_index(t: EventType) -> usize {
    match t {
        EventType::Command => 0,
        EventType::Feature => 1,
        EventType::Method => 2,
        EventType::Custom => 3,
    }
}

/// The exit budget: `<TOOL>_TELEMETRY_EXIT_TIMEOUT_MS` if set (at most [`MAX_EXIT_TIMEOUT`]),
/// else the CI flush timeout when `CI` is set to anything but empty, `0` or `false`, else the
/// builder's exit timeout.
fn exit_budget(
    env: &dyn Fn(&str) -> Option<String>,
    prefix: &str,
    exit_timeout: Duration,
    ci_flush_timeout: Duration,
) -> Duration {
    let in_ci = env("CI").is_some_and(|v| !matches!(v.trim(), "" | "0" | "false"));
    let budget = if in_ci {
        ci_flush_timeout
    } else {
        exit_timeout
    };
    env(&format!("{prefix}_TELEMETRY_EXIT_TIMEOUT_MS"))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(budget, |ms| Duration::from_millis(ms).min(MAX_EXIT_TIMEOUT))
}

/// The URL of the `/v1/events` route for an endpoint given as a base URL or as the route.
fn events_url(endpoint: &str) -> String {
    let trimmed = endpoint.trim_end_matches('/');
    if trimmed.ends_with("/v1/events") {
        trimmed.to_owned()
    } else {
        format!("{trimmed}/v1/events")
    }
}

/// What telemetry is doing in this process and why, for a tool's `telemetry status`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Status {
    /// The effective consent state.
    pub consent: Consent,
    /// The layer that decided it.
    pub decided_by: ConsentSource,
    /// The endpoint events are sent to, if any.
    pub endpoint: Option<String>,
    /// The directory of the install secret and the queue, when telemetry is on.
    pub data_dir: Option<PathBuf>,
    /// How often the pseudonym changes.
    pub pseudonym_epoch: Epoch,
    /// The current epoch's label (`2026-11`), when telemetry runs.
    pub pseudonym_epoch_label: Option<String>,
    /// Events waiting in the local queue, when known (`telemetry status`).
    pub queued_events: Option<usize>,
    /// Events dropped and counted in the local queue, when known (`telemetry status`).
    pub dropped_events: Option<u64>,
    /// Why telemetry is off despite consent, or a consent value that was not understood.
    pub note: Option<String>,
}

impl Status {
    pub(crate) fn new(
        consent: Consent,
        decided_by: ConsentSource,
        pseudonym_epoch: Epoch,
        note: Option<String>,
    ) -> Self {
        Self {
            consent,
            decided_by,
            endpoint: None,
            data_dir: None,
            pseudonym_epoch,
            pseudonym_epoch_label: None,
            queued_events: None,
            dropped_events: None,
            note,
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "telemetry: {} (decided by {})",
            self.consent, self.decided_by
        )?;
        if let Some(path) = self.decided_by.path() {
            writeln!(f, "deciding file: {}", path.display())?;
        }
        if let Some(endpoint) = &self.endpoint {
            writeln!(f, "endpoint: {endpoint}")?;
        }
        match &self.pseudonym_epoch_label {
            Some(label) => writeln!(
                f,
                "pseudonym: rotates {} (current epoch {label})",
                self.pseudonym_epoch
            )?,
            None => writeln!(f, "pseudonym: rotates {}", self.pseudonym_epoch)?,
        }
        if let Some(dir) = &self.data_dir {
            writeln!(f, "data directory: {}", dir.display())?;
        }
        if let Some(n) = self.queued_events {
            writeln!(f, "queued events: {n}")?;
        }
        if let Some(n) = self.dropped_events {
            writeln!(f, "dropped events: {n}")?;
        }
        if let Some(note) = &self.note {
            writeln!(f, "note: {note}")?;
        }
        Ok(())
    }
}

/// Returned by [`TelemetryBuilder::init`]; dropping it (or calling [`shutdown`](Self::shutdown))
/// queues this run's events and waits at most the exit budget for their delivery.
///
/// `std::process::exit` skips destructors: call [`shutdown`](Self::shutdown) before it.
#[must_use = "telemetry stops when this guard is dropped: keep it until the end of main"]
#[derive(Debug)]
pub struct TelemetryGuard {
    inner: Option<&'static Inner>,
    status: Status,
}

impl TelemetryGuard {
    /// What telemetry is doing and which layer decided it.
    pub fn status(&self) -> &Status {
        &self.status
    }

    /// Whether events are being recorded.
    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Queues this run's events and waits at most the exit budget for their delivery. Later
    /// events of this process are not recorded.
    pub fn shutdown(mut self) {
        self.shutdown_inner();
    }

    fn shutdown_inner(&mut self) {
        if let Some(inner) = self.inner.take() {
            inner.shutdown(Instant::now() + inner.exit_timeout);
        }
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        self.shutdown_inner();
    }
}

/// The recorder installed by [`TelemetryBuilder::init`] when consent is on.
struct Inner {
    /// Envelope fields shared by every event of this process (events empty).
    envelope: Batch,
    session_id: String,
    /// Random bits from which event ids are derived: `seed XOR sequence number`, formatted as
    /// UUID v4. Unique within the process, unpredictable across processes, and cheap.
    id_seed: [u8; 16],
    next_seq: AtomicU64,
    buffer: Mutex<Vec<Event>>,
    dropped: AtomicU64,
    closed: AtomicBool,
    /// Per event type: whether this install is sampled out ([`TelemetryBuilder::sample`]).
    sampled_out: [bool; 4],
    /// The send queue, with consent `on` only.
    queue: Option<queue::Queue>,
    /// The local ledger (`telemetry log`), with consent `local` or `on`.
    ledger: export::JsonlFileExporter,
    worker: Option<delivery::Worker>,
    data_dir: PathBuf,
    epoch_label: String,
    exit_timeout: Duration,
}

impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inner")
            .field("service", &self.envelope.service_name)
            .finish_non_exhaustive()
    }
}

impl Inner {
    fn event_id(&self) -> String {
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let mut bytes = self.id_seed;
        // The sequence number goes into the last 8 bytes; below 2^62 it never touches the UUID
        // variant bits, so ids stay distinct.
        for (b, s) in bytes[8..].iter_mut().zip(seq.to_be_bytes()) {
            *b ^= s;
        }
        identity::uuid_v4(bytes)
    }

    /// The hand-off: a check and a push. Event ids, the session id and validation are filled
    /// in at shutdown, off the host's hot path.
    fn record(&self, event: Event) {
        if self.sampled_out[type_index(event.event_type)] {
            return;
        }
        if self.closed.load(Ordering::Acquire) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let Ok(mut buffer) = self.buffer.lock() else {
            return;
        };
        if buffer.len() < MAX_BUFFERED_EVENTS {
            buffer.push(event);
        } else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn shutdown(&self, deadline: Instant) {
        self.closed.store(true, Ordering::Release);
        let events = match self.buffer.lock() {
            Ok(mut buffer) => std::mem::take(&mut *buffer),
            Err(_) => return,
        };
        let mut dropped = self.dropped.swap(0, Ordering::Relaxed);
        let events: Vec<Event> = events
            .into_iter()
            .filter_map(|mut event| {
                event.event_id = self.event_id();
                event.session_id.clone_from(&self.session_id);
                if let Err(e) = check_names(&event) {
                    // A misspelt name is a bug of the tool: say so loudly while it is
                    // developed, and never disturb its users (counted drop in release builds).
                    if cfg!(debug_assertions) {
                        eprintln!("optel: event dropped: {e}");
                    }
                    dropped += 1;
                    return None;
                }
                if event.validate().is_err() {
                    dropped += 1;
                    return None;
                }
                Some(event)
            })
            .collect();
        if !events.is_empty() || dropped > 0 {
            let mut batch = self.envelope.clone();
            batch.events = events;
            // Drops of this process and those the full queue counted earlier (a batch needs an
            // event, so drops wait for a run that has some).
            batch.dropped_events = dropped
                + self
                    .queue
                    .as_ref()
                    .map_or(0, queue::Queue::take_unreported_drops);
            if !batch.events.is_empty() {
                // The ledger is what `telemetry log` shows: every event this tool recorded.
                let _ = export::Exporter::export(&self.ledger, &batch, self.exit_timeout);
                if let Some(queue) = &self.queue {
                    let _ = queue.append(&batch);
                }
            }
        }
        if let Some(worker) = &self.worker {
            worker.flush(deadline);
        }
    }

    fn new_event(&self, event_type: EventType, name: Cow<'static, str>, at: SystemTime) -> Event {
        Event::new(
            String::new(),
            event_type,
            name,
            Timestamp::from_system_time(at),
            String::new(),
        )
    }
}

/// The process-global recorder: a no-op until [`TelemetryBuilder::init`] ran with consent on.
/// Cheap to copy.
#[derive(Debug, Clone, Copy)]
pub struct Handle(Option<&'static Inner>);

/// The process-global recorder. Before init, or with consent off, every call on it does
/// nothing: one atomic load and a branch.
#[inline]
pub fn global() -> Handle {
    Handle(GLOBAL.get())
}

/// Starts timing command `name` on the global recorder (seed 000's entry point); see
/// [`Handle::command`].
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

    /// Records a custom event `name` with typed attributes (at most 32; keys follow the name
    /// rules; string values are redacted, see [`redact`]).
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

/// Adds attributes after redaction; a non-finite float is left out.
fn add_attributes<I>(event: &mut Event, attributes: I)
where
    I: IntoIterator<Item = (&'static str, Value)>,
{
    for (key, value) in attributes {
        if let Some(v) = value.into_wire() {
            event.metadata.insert(key.to_owned(), v);
        }
    }
}

/// Checks the event name, attribute keys and error code against the name rules.
fn check_names(event: &Event) -> Result<(), NameError> {
    attribute::check("event name", &event.name)?;
    for key in event.metadata.keys() {
        attribute::check("attribute key", key)?;
    }
    if let Some(code) = &event.error_code {
        attribute::check("error code", code)?;
    }
    Ok(())
}

/// Times one command; records it when dropped. Created by [`Handle::command`] or
/// [`track_command_execution`].
#[derive(Debug)]
#[must_use = "the command is recorded when this guard is dropped"]
pub struct CommandGuard {
    // Boxed: with telemetry off the guard is one null pointer, so creating and dropping it
    // costs a branch; with telemetry on the allocation is small next to the clock reads.
    active: Option<Box<ActiveCommand>>,
}

#[derive(Debug)]
struct ActiveCommand {
    inner: &'static Inner,
    name: Cow<'static, str>,
    started: Instant,
    started_at: SystemTime,
    error_code: Option<Cow<'static, str>>,
    attributes: Vec<(&'static str, Value)>,
}

impl CommandGuard {
    /// Records the command as failed with a stable error code (`[A-Za-z0-9_.:-]`, at most 64
    /// bytes, e.g. `"E_NO_MANIFEST"`): a code, never a message, which could hold a path.
    pub fn fail(mut self, error_code: impl Into<Cow<'static, str>>) {
        if let Some(active) = &mut self.active {
            active.error_code = Some(error_code.into());
        }
    }

    /// Adds a typed attribute to the command event (string values are redacted, see
    /// [`redact`]). A no-op when telemetry is off.
    pub fn attr(&mut self, key: &'static str, value: impl Into<Value>) {
        if let Some(active) = &mut self.active {
            active.attributes.push((key, value.into()));
        }
    }

    /// Sets the error code without ending the command (see [`fail`](Self::fail)).
    pub fn set_error_code(&mut self, error_code: impl Into<Cow<'static, str>>) {
        if let Some(active) = &mut self.active {
            active.error_code = Some(error_code.into());
        }
    }
}

impl Drop for CommandGuard {
    // Inlined so that the off path is a null check at the call site.
    #[inline]
    fn drop(&mut self) {
        if let Some(active) = self.active.take() {
            record_command(*active);
        }
    }
}

/// The on path of [`Handle::command`], out of line so that the off path inlines to a load and
/// a branch at the call site.
#[inline(never)]
fn start_command(inner: &'static Inner, name: Cow<'static, str>) -> Box<ActiveCommand> {
    Box::new(ActiveCommand {
        inner,
        name,
        started: Instant::now(),
        started_at: SystemTime::now(),
        error_code: None,
        attributes: Vec::new(),
    })
}

#[inline(never)]
fn record_command(active: ActiveCommand) {
    let inner = active.inner;
    let mut event = inner.new_event(EventType::Command, active.name, active.started_at);
    let elapsed = active.started.elapsed();
    event.duration_ms = Some(u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX));
    let code = match active.error_code {
        Some(code) => Some(code),
        None if std::thread::panicking() => Some(Cow::Borrowed("panic")),
        None => None,
    };
    event.success = Some(code.is_none());
    event.error_code = code.map(Cow::into_owned);
    add_attributes(&mut event, active.attributes);
    inner.record(event);
}

/// The default data directory of `tool` (see [`TelemetryBuilder::data_dir`]), if the platform
/// has one. Useful to show users where telemetry data lives.
pub fn default_data_dir(tool: &str) -> Option<PathBuf> {
    directories::BaseDirs::new().map(|b| b.data_dir().join("optel").join(tool))
}

#[doc(hidden)]
/// Takes this process's buffered events without sending them and returns how many: only for
/// the recording benchmark, which records more events than the buffer holds.
pub fn __bench_drain() -> usize {
    GLOBAL
        .get()
        .and_then(|inner| {
            inner
                .buffer
                .lock()
                .ok()
                .map(|mut b| std::mem::take(&mut *b).len())
        })
        .unwrap_or(0)
}

#[doc(hidden)]
/// Number of events waiting in a data directory's queue (used by tests and `status`).
pub fn queued_events(data_dir: &Path) -> usize {
    queue::Queue::open(data_dir.join("queue"))
        .and_then(|q| q.pending_events())
        .map_or(0, |n| usize::try_from(n).unwrap_or(usize::MAX))
}

/// Hooks for the benchmarks in `benches/` (not a stable API).
#[doc(hidden)]
pub mod __bench {
    use std::path::Path;

    /// Appends `batch` to the queue in `dir` as one segment (what a process does at exit).
    ///
    /// # Errors
    /// The directory or file cannot be written.
    pub fn queue_append(dir: &Path, batch: &optel_wire::Batch) -> std::io::Result<()> {
        crate::queue::Queue::open(dir.to_owned())?.append(batch)?;
        Ok(())
    }

    /// Empties the global recorder's in-memory buffer, so a benchmark measures recording
    /// rather than the full-buffer drop path.
    pub fn clear_buffer() {
        if let Some(inner) = crate::GLOBAL.get()
            && let Ok(mut buffer) = inner.buffer.lock()
        {
            buffer.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn author_default() -> consent::Resolution {
        consent::Resolution {
            consent: Consent::On,
            source: ConsentSource::AuthorDefault,
            note: None,
        }
    }

    #[test]
    fn notice_is_shown_once_on_a_terminal_and_never_in_ci() {
        let dir = tempfile::tempdir().unwrap();
        let b = Telemetry::builder("acme", "1.0.0")
            .config_dir(dir.path())
            .asking(Asking::Notice);
        let file = consent::user_config_path(dir.path(), "acme");
        // CI on a terminal, or no terminal: nothing shown, so nothing recorded as shown.
        let r = b.ask_or_tell(author_default(), true, true, &|| {
            Some("github-actions".into())
        });
        assert_eq!(r.consent, Consent::On);
        b.ask_or_tell(author_default(), false, true, &|| None);
        b.ask_or_tell(author_default(), true, false, &|| None);
        assert!(!file.exists());
        // A terminal outside CI: shown, and remembered.
        b.ask_or_tell(author_default(), true, true, &|| None);
        let f = consent::read_file(&file).unwrap().unwrap();
        assert!(f.notice_shown);
        assert_eq!(f.telemetry, None, "showing the notice is not a choice");
    }

    #[test]
    fn opt_in_without_a_terminal_is_off_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let b = Telemetry::builder("acme", "1.0.0")
            .config_dir(dir.path())
            .asking(Asking::OptIn);
        let env = |_: &str| None;
        let r = b.resolve(&env);
        assert_eq!(
            (r.consent, r.source.layer()),
            (Consent::Off, "author_default")
        );
        let r = b.ask_or_tell(r, false, false, &|| None);
        assert_eq!(r.consent, Consent::Off);
        assert!(r.note.unwrap().contains("acme telemetry enable"));
        assert!(!dir.path().join("optel").exists());
    }

    #[test]
    fn a_choice_ends_asking() {
        // After `telemetry disable` the user config decides, so the author's default (and with
        // it the question or notice) is never reached again.
        let dir = tempfile::tempdir().unwrap();
        let file = consent::user_config_path(dir.path(), "acme");
        consent::write_user_choice(&file, Some(Consent::Off), true).unwrap();
        let b = Telemetry::builder("acme", "1.0.0")
            .config_dir(dir.path())
            .asking(Asking::Notice);
        let r = b.resolve(&|_: &str| None);
        assert_eq!(r.source, ConsentSource::UserConfig(file));
        assert_eq!(r.consent, Consent::Off);
    }

    #[test]
    fn exit_budget_in_ci_and_overrides() {
        let budget = |vars: &[(&str, &str)]| {
            let vars: Vec<(String, String)> = vars
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            let env = move |k: &str| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
            exit_budget(&env, "ACME", DEFAULT_EXIT_TIMEOUT, DEFAULT_CI_FLUSH_TIMEOUT)
        };
        assert_eq!(budget(&[]), DEFAULT_EXIT_TIMEOUT);
        assert_eq!(budget(&[("CI", "true")]), DEFAULT_CI_FLUSH_TIMEOUT);
        assert_eq!(budget(&[("CI", "false")]), DEFAULT_EXIT_TIMEOUT);
        assert_eq!(budget(&[("CI", "")]), DEFAULT_EXIT_TIMEOUT);
        assert_eq!(
            budget(&[("CI", "1"), ("ACME_TELEMETRY_EXIT_TIMEOUT_MS", "5")]),
            Duration::from_millis(5)
        );
        assert_eq!(
            budget(&[("ACME_TELEMETRY_EXIT_TIMEOUT_MS", "99999999")]),
            MAX_EXIT_TIMEOUT
        );
    }

    #[test]
    fn endpoint_forms() {
        assert_eq!(events_url("http://h:1"), "http://h:1/v1/events");
        assert_eq!(events_url("http://h:1/"), "http://h:1/v1/events");
        assert_eq!(events_url("http://h:1/v1/events"), "http://h:1/v1/events");
    }

    #[test]
    fn off_returns_disabled_guard_without_touching_disk() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let env = |k: &str| (k == "DO_NOT_TRACK").then(|| "1".to_owned());
        let guard = Telemetry::builder("acme", "1.0.0")
            .data_dir(&data)
            .default_consent(Consent::On)
            .init_with_env(&env);
        assert!(!guard.is_enabled());
        assert_eq!(guard.status().decided_by, ConsentSource::DoNotTrack);
        assert!(!data.exists());
        assert!(!global().is_enabled());
    }
}
