//! The builder: [`Telemetry::builder`] and its settings, each with its default and the
//! environment variable that overrides it (`<TOOL>_TELEMETRY_ENDPOINT`, `_KEY`,
//! `_EXIT_TIMEOUT_MS`, `CI`), and the paths and exporter those settings resolve to.
//! [`TelemetryBuilder::init`] itself is in `startup`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use optel_wire::EventType;

use crate::consent::{self, Asking, Consent};
use crate::debug::DebugLog;
use crate::fsutil::DirPlan;
use crate::identity::Epoch;
use crate::{delivery, export};

/// Default exit budget: the longest the host's exit waits for telemetry.
pub const DEFAULT_EXIT_TIMEOUT: Duration = Duration::from_millis(40);

/// The longest exit budget `<TOOL>_TELEMETRY_EXIT_TIMEOUT_MS` may ask for: 10 s.
pub const MAX_EXIT_TIMEOUT: Duration = Duration::from_secs(10);

/// Default exit budget in CI (the `CI` environment variable is set): 2 s of bounded blocking
/// flush, since a CI machine has no next run to deliver what is left.
pub const DEFAULT_CI_FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// Default timeout of one whole delivery request (connect, send, answer): 2 s, long enough for
/// a collector across an ocean on a slow link, short enough that a dead endpoint frees the
/// delivery thread quickly.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// Default cap on delivery requests per UTC day and tool install: 10 000 (about one per run; a
/// storm of retries is already held back by the circuit breaker).
pub const DEFAULT_DAILY_REQUEST_CAP: u32 = 10_000;

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
            root_certificates: None,
            catalog: None,
        }
    }
}

/// Configures telemetry; [`init`](Self::init) starts it.
#[derive(Debug, Clone)]
#[must_use]
pub struct TelemetryBuilder {
    pub(crate) tool: String,
    pub(crate) version: String,
    pub(crate) endpoint: Option<String>,
    pub(crate) ingest_key: Option<String>,
    pub(crate) data_dir: Option<PathBuf>,
    pub(crate) default_consent: Consent,
    pub(crate) exit_timeout: Duration,
    pub(crate) asking: Asking,
    pub(crate) epoch: Epoch,
    pub(crate) samples: Vec<(EventType, f64)>,
    pub(crate) exporter: Option<std::sync::Arc<dyn export::Exporter>>,
    pub(crate) config_dir: Option<PathBuf>,
    pub(crate) ledger_retention_days: u32,
    pub(crate) ci_flush_timeout: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) daily_request_cap: u32,
    pub(crate) gzip: bool,
    pub(crate) root_certificates: Option<std::sync::Arc<[u8]>>,
    pub(crate) catalog: Option<fn() -> optel_wire::Catalog>,
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

    /// Keeps events of `event_type` from a fraction `ratio` (0.0 to 1.0, clamped) of installs,
    /// to thin out a high-volume event type while its shares stay right. The choice is a deterministic function of the pseudonym: an
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

    /// Declares the tool's event catalog (docs/adr/010-event-catalog.md): `catalog` returns
    /// it, usually built with [`CatalogBuilder`](crate::CatalogBuilder). It is called only
    /// when telemetry is on, or to ask the user or render `telemetry preview`; never on the
    /// off path. With a catalog the SDK is strict: undeclared events, attributes, enum values
    /// and phases are dropped before anything is stored (counted, shown by `telemetry
    /// status`, and in debug builds warned about once on stderr), integers are sent only as
    /// their bucket label, and each batch carries the catalog's hash. A new attribute or
    /// measurement is sent only once the user has seen it: an opt-in tool asks again on a
    /// terminal, a notice tool shows its notice again. Default: none, and nothing is dropped
    /// for being undeclared (the behaviour before catalogs). An invalid catalog turns
    /// telemetry off for the run, and `status` says why.
    pub fn catalog(mut self, catalog: fn() -> optel_wire::Catalog) -> Self {
        self.catalog = Some(catalog);
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

    /// Trusts only the certificates in `pem` (one or more `BEGIN CERTIFICATE` blocks) for the
    /// HTTPS endpoint, instead of the default roots: for a collector behind a private CA or with
    /// a self-signed certificate. Default: the platform's roots (feature `tls`) or the webpki
    /// roots (feature `rustls`); `SSL_CERT_FILE` (a PEM file) replaces
    /// them when set, this setting replaces `SSL_CERT_FILE`, and `<TOOL>_TELEMETRY_CA_FILE` (a
    /// PEM file) replaces this setting, as `<TOOL>_TELEMETRY_ENDPOINT` replaces the endpoint.
    /// The file is read on the delivery thread, never at init. Feature `tls` or `rustls`.
    ///
    /// # Examples
    /// ```no_run
    /// let pem = std::fs::read("/etc/acme/telemetry-ca.pem").unwrap_or_default();
    /// let _guard = optel::Telemetry::builder("acme", "1.0.0")
    ///     .endpoint("https://telemetry.acme.internal")
    ///     .tls_root_certificates(pem)
    ///     .init();
    /// ```
    #[cfg(any(feature = "tls", feature = "rustls"))]
    #[cfg_attr(docsrs, doc(cfg(any(feature = "tls", feature = "rustls"))))]
    pub fn tls_root_certificates(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.root_certificates = Some(pem.into().into());
        self
    }

    /// The root certificates of the HTTP exporter: `<TOOL>_TELEMETRY_CA_FILE`, else those set in
    /// code, else `SSL_CERT_FILE`, else none (the default roots).
    pub(crate) fn root_certificates(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Option<export::RootCertificates> {
        let file = |var: &str| {
            env(var)
                .filter(|v| !v.trim().is_empty())
                .map(|v| export::RootCertificates::File(PathBuf::from(v)))
        };
        let prefix = consent::env_prefix(&self.tool);
        file(&format!("{prefix}_TELEMETRY_CA_FILE"))
            .or_else(|| {
                self.root_certificates
                    .clone()
                    .map(export::RootCertificates::Pem)
            })
            .or_else(|| file("SSL_CERT_FILE"))
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

    /// How the data directory is created and checked (see `fsutil`): a directory set in code
    /// is created with its parents; the default one only below an existing home (or an
    /// existing `XDG_DATA_HOME`), and every level from `optel/` down is checked.
    pub(crate) fn data_dir_plan(&self) -> Option<DirPlan> {
        if let Some(dir) = &self.data_dir {
            return Some(DirPlan::explicit(dir.clone()));
        }
        let base = directories::BaseDirs::new()?;
        Some(DirPlan::under_base(
            base.data_dir(),
            base.home_dir(),
            xdg_set("XDG_DATA_HOME"),
            &["optel", &self.tool],
        ))
    }

    /// How the directory of the user's consent files (`<config dir>/optel`) is created.
    pub(crate) fn config_dir_plan(&self) -> Option<DirPlan> {
        if let Some(dir) = &self.config_dir {
            return Some(DirPlan::explicit(dir.join("optel")));
        }
        let base = directories::BaseDirs::new()?;
        Some(DirPlan::under_base(
            base.config_dir(),
            base.home_dir(),
            xdg_set("XDG_CONFIG_HOME"),
            &["optel"],
        ))
    }

    /// Writes the user's choice to the per-tool config file (see
    /// [`consent::write_user_choice`]), creating its directory by [`Self::config_dir_plan`];
    /// returns the file.
    pub(crate) fn save_user_choice(
        &self,
        consent: Option<Consent>,
        notice_shown: bool,
        seen: Option<&std::collections::BTreeSet<String>>,
    ) -> std::io::Result<PathBuf> {
        let plan = self.config_dir_plan().ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::NotFound, "no home directory")
        })?;
        plan.ensure()?;
        let path = plan.dir.join(format!("{}.toml", self.tool));
        consent::write_user_choice(&path, consent, notice_shown, seen)?;
        Ok(path)
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
                .gzip(self.gzip)
                .with_roots(self.root_certificates(env))
                .with_catalog_state(self.resolved_data_dir()),
        ))
    }

    /// The request policy of the delivery thread.
    pub(crate) fn delivery_policy(&self, env: &dyn Fn(&str) -> Option<String>) -> delivery::Policy {
        delivery::Policy {
            request_timeout: self.request_timeout,
            daily_request_cap: self.daily_request_cap,
            debug: DebugLog::from_env(env, &self.tool),
        }
    }
}

/// The exit budget: `<TOOL>_TELEMETRY_EXIT_TIMEOUT_MS` if set (at most [`MAX_EXIT_TIMEOUT`]),
/// else the CI flush timeout when `CI` is set to anything but empty, `0` or `false`, else the
/// builder's exit timeout.
pub(crate) fn exit_budget(
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

/// Whether an XDG base directory variable is in force (set to an absolute path, on the
/// platforms where the `directories` crate reads it).
fn xdg_set(var: &str) -> bool {
    cfg!(all(unix, not(target_os = "macos")))
        && std::env::var_os(var).is_some_and(|v| Path::new(&v).is_absolute())
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

/// The default data directory of `tool` (see [`TelemetryBuilder::data_dir`]), if the platform
/// has one. Useful to show users where telemetry data lives.
pub fn default_data_dir(tool: &str) -> Option<PathBuf> {
    directories::BaseDirs::new().map(|b| b.data_dir().join("optel").join(tool))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consent::ConsentSource;

    #[test]
    fn a_choice_ends_asking() {
        // After `telemetry disable` the user config decides, so the author's default (and with
        // it the question or notice) is never reached again.
        let dir = tempfile::tempdir().unwrap();
        let file = consent::user_config_path(dir.path(), "acme");
        consent::write_user_choice(&file, Some(Consent::Off), true, None).unwrap();
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
}
