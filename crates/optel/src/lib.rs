//! optel: privacy-first usage telemetry for CLI tools and libraries.
//!
//! Three lines in a tool's `main`:
//!
//! ```no_run
//! # fn run() -> Result<(), &'static str> { Ok(()) }
//! let _telemetry = optel::Telemetry::builder("acme", env!("CARGO_PKG_VERSION"))
//!     .endpoint("https://telemetry.acme.dev")
//!     .init();
//! let command = optel::track_command_execution("build");
//! if let Err(code) = run() {
//!     command.fail(code);
//! }
//! // `_telemetry` drops at the end of `main`: this run's events are queued and sent within
//! // the exit budget (40 ms by default); what is not sent goes on a later run.
//! ```
//!
//! # Privacy guarantees
//! - Nothing runs unless consent is `on`: `DO_NOT_TRACK=1` or `<TOOL>_TELEMETRY=off` wins over
//!   everything, and the author's default is off. With consent off, [`TelemetryBuilder::init`]
//!   reads two environment variables and returns: no thread, no file, no socket.
//! - The install is identified by a pseudonym: a keyed hash (HMAC-SHA-256) of a random secret
//!   that never leaves the machine, rotated monthly. No host name, user name or machine id is
//!   read.
//! - Events carry a command, feature or method name, a duration, an outcome and an error code
//!   string: never arguments, paths or messages. Names are checked against the wire charset
//!   (`[A-Za-z0-9_.:-]`, at most 64 bytes) and dropped if they break it.
//! - Files are written 0600 in directories created 0700.
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
//! | `<TOOL>_TELEMETRY` | `off` or `on`; overrides the author's default; anything else means off |
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
//! | feature | what it adds |
//! |---|---|
//! | `tls` | HTTPS endpoints (rustls with the webpki roots) |
//! | `otlp` | `optel::otlp::OtlpExporter`: OTLP/HTTP export (protobuf or JSON) via `opentelemetry-proto` |
#![deny(missing_docs)]

mod consent;
mod delivery;
pub mod export;
mod fsutil;
mod identity;
#[cfg(feature = "otlp")]
#[cfg_attr(docsrs, doc(cfg(feature = "otlp")))]
pub mod otlp;
mod queue;

use std::borrow::Cow;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use optel_wire::{Batch, Event, EventType, Timestamp};

pub use consent::{Consent, ConsentSource};
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
            ci_flush_timeout: DEFAULT_CI_FLUSH_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            daily_request_cap: DEFAULT_DAILY_REQUEST_CAP,
            gzip: true,
            exporter: None,
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
    ci_flush_timeout: Duration,
    request_timeout: Duration,
    daily_request_cap: u32,
    gzip: bool,
    exporter: Option<std::sync::Arc<dyn export::Exporter>>,
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
    pub fn default_consent(mut self, consent: Consent) -> Self {
        self.default_consent = consent;
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
    /// collector at [`endpoint`](Self::endpoint).
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
        self.init_with_env(&|k| std::env::var(k).ok())
    }

    fn init_with_env(self, env: &dyn Fn(&str) -> Option<String>) -> TelemetryGuard {
        let prefix = consent::env_prefix(&self.tool);
        let tool_var = format!("{prefix}_TELEMETRY");
        let (consent, source, note) = consent::resolve(env, &tool_var, self.default_consent);
        let endpoint = env(&format!("{prefix}_TELEMETRY_ENDPOINT")).or(self.endpoint.clone());
        let mut status = Status {
            consent,
            decided_by: source,
            endpoint: endpoint.clone(),
            data_dir: None,
            note,
        };
        if INIT_CALLED.swap(true, Ordering::AcqRel) {
            status.consent = Consent::Off;
            status.note = Some("optel was already initialised in this process".into());
            return TelemetryGuard {
                inner: None,
                status,
            };
        }
        if consent == Consent::Off {
            return TelemetryGuard {
                inner: None,
                status,
            };
        }
        match self.start(env, &prefix, endpoint) {
            Ok(inner) => {
                status.data_dir = Some(inner.data_dir.clone());
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

    #[cold]
    fn start(
        self,
        env: &dyn Fn(&str) -> Option<String>,
        prefix: &str,
        endpoint: Option<String>,
    ) -> Result<Inner, String> {
        if !optel_wire::is_valid_name(&self.tool) {
            return Err(format!(
                "tool name {:?} is not allowed: use [A-Za-z0-9_.:-], at most 64 bytes",
                self.tool
            ));
        }
        let data_dir = match self.data_dir {
            Some(dir) => dir,
            None => directories::BaseDirs::new()
                .map(|b| b.data_dir().join("optel").join(&self.tool))
                .ok_or("no home directory to keep the telemetry queue in")?,
        };
        fsutil::create_private_dir(&data_dir)
            .map_err(|e| format!("cannot create {}: {e}", data_dir.display()))?;
        let secret = identity::load_or_create_secret(&data_dir)
            .map_err(|e| format!("cannot read or create the install secret: {e}"))?;
        let epoch = identity::monthly_epoch(SystemTime::now());
        let queue = queue::Queue::open(data_dir.join("queue"))
            .map_err(|e| format!("cannot create the queue directory: {e}"))?;
        let session = identity::random_bytes::<16>().map_err(|e| e.to_string())?;
        let id_seed = identity::random_bytes::<16>().map_err(|e| e.to_string())?;
        let ingest_key = env(&format!("{prefix}_TELEMETRY_KEY")).or(self.ingest_key);
        let exit_timeout = exit_budget(env, prefix, self.exit_timeout, self.ci_flush_timeout);
        let policy = delivery::Policy {
            request_timeout: self.request_timeout,
            daily_request_cap: self.daily_request_cap,
        };
        let breaker = delivery::Breaker::new(data_dir.clone());
        let exporter: Option<Box<dyn export::Exporter>> = match (self.exporter, endpoint) {
            (Some(custom), _) => Some(Box::new(custom)),
            (None, Some(endpoint)) => {
                let user_agent = format!(
                    "optel/{} ({}/{})",
                    env!("CARGO_PKG_VERSION"),
                    self.tool,
                    self.version
                );
                let exporter =
                    export::HttpExporter::new(events_url(&endpoint), ingest_key, &user_agent)
                        .with_gzip(self.gzip);
                Some(Box::new(exporter))
            }
            (None, None) => None,
        };
        let worker = match exporter {
            Some(exporter) => Some(
                delivery::Worker::start(queue.clone(), breaker, policy, exporter)
                    .map_err(|e| format!("cannot start the delivery thread: {e}"))?,
            ),
            None => None,
        };
        Ok(Inner {
            envelope: Batch::new(
                self.tool.clone(),
                self.version,
                identity::pseudonym(&secret, &self.tool, &epoch),
                std::env::consts::OS,
                std::env::consts::ARCH,
            ),
            session_id: identity::uuid_v4(session),
            id_seed,
            next_seq: AtomicU64::new(0),
            buffer: Mutex::new(Vec::new()),
            dropped: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            queue,
            worker,
            data_dir,
            exit_timeout,
        })
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
    /// Why telemetry is off despite consent, or a consent value that was not understood.
    pub note: Option<String>,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "telemetry: {} (decided by {})",
            self.consent, self.decided_by
        )?;
        if let Some(endpoint) = &self.endpoint {
            writeln!(f, "endpoint: {endpoint}")?;
        }
        if let Some(dir) = &self.data_dir {
            writeln!(f, "data directory: {}", dir.display())?;
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
    queue: queue::Queue,
    worker: Option<delivery::Worker>,
    data_dir: PathBuf,
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

    /// The hot path: a closed check and a push. Ids are assigned and events validated at
    /// shutdown ([`Inner::finish`]), off the host's per-event cost.
    fn record(&self, event: Event) {
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
            Ok(mut buffer) => self.finish(std::mem::take(&mut *buffer)),
            Err(_) => return,
        };
        if !events.is_empty() {
            let mut batch = self.envelope.clone();
            batch.events = events;
            // Drops of this process and those the full queue counted earlier (a batch needs
            // an event, so drops wait for a run that has some).
            batch.dropped_events =
                self.dropped.swap(0, Ordering::Relaxed) + self.queue.take_unreported_drops();
            let _ = self.queue.append(&batch);
        }
        if let Some(worker) = &self.worker {
            worker.flush(deadline);
        }
    }

    /// Gives each recorded event its id and drops (counting them) those that break the wire
    /// rules, e.g. a name outside `[A-Za-z0-9_.:-]`.
    fn finish(&self, mut events: Vec<Event>) -> Vec<Event> {
        for event in &mut events {
            event.event_id = self.event_id();
        }
        let before = events.len();
        events.retain(|e| e.validate().is_ok());
        let invalid = (before - events.len()) as u64;
        self.dropped.fetch_add(invalid, Ordering::Relaxed);
        events
    }

    fn new_event(&self, event_type: EventType, name: Cow<'static, str>, at: SystemTime) -> Event {
        Event::new(
            String::new(),
            event_type,
            name,
            Timestamp::from_system_time(at),
            self.session_id.clone(),
        )
    }
}

/// The process-global recorder: a no-op until [`TelemetryBuilder::init`] ran with consent on.
/// Cheap to copy.
#[derive(Debug, Clone, Copy)]
pub struct Handle(Option<&'static Inner>);

/// The process-global recorder. Before init, or with consent off, every call on it does
/// nothing: one atomic load and a branch.
pub fn global() -> Handle {
    Handle(GLOBAL.get())
}

/// Starts timing command `name` on the global recorder (seed 000's entry point); see
/// [`Handle::command`].
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
    pub fn command(&self, name: impl Into<Cow<'static, str>>) -> CommandGuard {
        CommandGuard {
            active: self.0.map(|inner| ActiveCommand {
                inner,
                name: name.into(),
                started: Instant::now(),
                started_at: SystemTime::now(),
                error_code: None,
            }),
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

    fn simple(&self, event_type: EventType, name: impl Into<Cow<'static, str>>) {
        if let Some(inner) = self.0 {
            inner.record(inner.new_event(event_type, name.into(), SystemTime::now()));
        }
    }
}

/// Times one command; records it when dropped. Created by [`Handle::command`] or
/// [`track_command_execution`].
#[derive(Debug)]
#[must_use = "the command is recorded when this guard is dropped"]
pub struct CommandGuard {
    active: Option<ActiveCommand>,
}

#[derive(Debug)]
struct ActiveCommand {
    inner: &'static Inner,
    name: Cow<'static, str>,
    started: Instant,
    started_at: SystemTime,
    error_code: Option<Cow<'static, str>>,
}

impl CommandGuard {
    /// Records the command as failed with a stable error code (`[A-Za-z0-9_.:-]`, at most 64
    /// bytes, e.g. `"E_NO_MANIFEST"`): a code, never a message, which could hold a path.
    pub fn fail(mut self, error_code: impl Into<Cow<'static, str>>) {
        if let Some(active) = &mut self.active {
            active.error_code = Some(error_code.into());
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
    fn drop(&mut self) {
        let Some(active) = self.active.take() else {
            return;
        };
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
        inner.record(event);
    }
}

/// The default data directory of `tool` (see [`TelemetryBuilder::data_dir`]), if the platform
/// has one. Useful to show users where telemetry data lives.
pub fn default_data_dir(tool: &str) -> Option<PathBuf> {
    directories::BaseDirs::new().map(|b| b.data_dir().join("optel").join(tool))
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
