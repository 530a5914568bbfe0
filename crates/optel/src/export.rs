//! Exporters: where delivered batches go. Transport is separate from batching (after
//! `opentelemetry-sdk`'s `SpanExporter`), so a new destination is one small trait impl: the
//! queue and the delivery thread decide *what* to send and *when*; an [`Exporter`] only moves
//! one batch somewhere.
//!
//! # Contract
//! - [`Exporter::export`] is never called concurrently: one delivery thread owns the exporter.
//! - Every call returns within the timeout it is given (it must enforce it itself).
//! - The exporter does not retry. It says whether a retry can help
//!   ([`ExportError::Retryable`], with an optional `Retry-After`) or not
//!   ([`ExportError::Rejected`]); the delivery thread keeps retryable batches queued for a later
//!   round or a later run and drops rejected ones.
//! - Exporters never panic and never block the host: they run on the delivery thread only.
//! - At exit, after the last delivery round, [`Exporter::force_flush`] and then
//!   [`Exporter::shutdown_with_timeout`] are called once each, on the delivery thread, with
//!   what is left of the exit deadline (which can be zero); no call follows them. An exporter
//!   that buffers must send or persist its buffer there.

use std::fmt;
use std::time::Duration;

use optel_wire::Batch;

/// Why an export did not succeed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    /// The destination may accept the batch later (network error, timeout, 429, 5xx).
    #[error("export failed, will retry: {reason}")]
    Retryable {
        /// What happened.
        reason: String,
        /// How long the destination asked us to wait (`Retry-After`), if it said.
        retry_after: Option<Duration>,
    },
    /// The destination will never accept this batch (400, 413, ...): it is dropped.
    #[error("export rejected: {0}")]
    Rejected(String),
}

/// `Result` of an export.
pub type ExportResult = Result<(), ExportError>;

/// Moves batches to a destination. Object-safe: the SDK holds a `Box<dyn Exporter>`.
pub trait Exporter: Send + Sync + fmt::Debug + 'static {
    /// Exports one batch, within `timeout`.
    ///
    /// # Errors
    /// [`ExportError::Retryable`] when a later attempt may succeed, [`ExportError::Rejected`]
    /// when none will.
    fn export(&self, batch: &Batch, timeout: Duration) -> ExportResult;

    /// Flushes anything the exporter buffers itself, within `timeout`. Default: nothing to do.
    ///
    /// # Errors
    /// As [`export`](Self::export).
    fn force_flush(&self, _timeout: Duration) -> ExportResult {
        Ok(())
    }

    /// Releases the exporter's resources, within `timeout`. Default: nothing to do.
    ///
    /// # Errors
    /// As [`export`](Self::export).
    fn shutdown_with_timeout(&self, _timeout: Duration) -> ExportResult {
        Ok(())
    }
}

/// An exporter that accepts every batch and sends it nowhere.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoopExporter;

impl Exporter for NoopExporter {
    fn export(&self, _batch: &Batch, _timeout: Duration) -> ExportResult {
        Ok(())
    }
}

/// Prints each event as one JSON object on one line to **stderr**, and sends nothing: for
/// debugging what a tool records (a user's `exporter = "stdout"` in the per-tool config file
/// chooses it). stderr, so that the tool's own stdout stays clean for pipes.
///
/// # Examples
/// ```
/// use optel::export::{Exporter, StderrExporter};
/// let batch = optel_wire::Batch::new("acme", "1.0.0", "p", "linux", "x86_64");
/// assert!(StderrExporter.export(&batch, std::time::Duration::from_secs(1)).is_ok());
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct StderrExporter;

impl StderrExporter {
    /// The lines [`Exporter::export`] prints for `batch`: one JSON object per event.
    pub(crate) fn lines(batch: &Batch) -> String {
        let mut out = String::new();
        for event in &batch.events {
            if let Ok(json) = serde_json::to_string(event) {
                out.push_str(&json);
                out.push('\n');
            }
        }
        out
    }
}

impl Exporter for StderrExporter {
    fn export(&self, batch: &Batch, _timeout: Duration) -> ExportResult {
        use std::io::Write;
        // One write of all lines: the lines of concurrent processes do not interleave.
        std::io::stderr()
            .lock()
            .write_all(Self::lines(batch).as_bytes())
            .map_err(|e| ExportError::Retryable {
                reason: format!("cannot write to stderr: {e}"),
                retry_after: None,
            })
    }
}

/// The default exporter: optel JSON batches to a collector's `POST /v1/events`, with the
/// project ingest key as `Authorization: Bearer <key>`.
///
/// - Bodies are gzip-compressed (`Content-Encoding: gzip`) unless
///   [`gzip(false)`](Self::gzip) is set; the optel collector decodes them.
/// - The TCP connect times out after [`CONNECT_TIMEOUT`] (1 s); the whole request after the
///   timeout given to [`Exporter::export`].
/// - Proxies come from the environment: `ALL_PROXY`, `HTTPS_PROXY` or `HTTP_PROXY` (the first
///   set, upper or lower case), except for the hosts listed in `NO_PROXY`.
/// - `Retry-After` (in seconds) of a 429 or 503 is passed on to the delivery thread, which
///   holds every process of the tool back until then.
/// - HTTPS trusts the platform's root certificates (feature `tls`, on by default: the
///   platform's TLS library) or the webpki roots (feature `rustls`), or only the
///   certificates given with [`tls_root_certificates`](Self::tls_root_certificates) (a
///   private CA, a self-signed collector).
pub struct HttpExporter {
    url: String,
    ingest_key: Option<String>,
    user_agent: String,
    gzip: bool,
    #[cfg_attr(not(any(feature = "tls", feature = "rustls")), allow(dead_code))]
    roots: Option<RootCertificates>,
    /// Built on first use, on the delivery thread: reading a CA file never delays init.
    agent: std::sync::OnceLock<Result<ureq::Agent, String>>,
    /// The data directory whose catalog state remembers which catalog hash this endpoint
    /// acknowledged (`catalog_known`), so the catalog is sent only until then.
    catalog_state: Option<std::path::PathBuf>,
}

impl fmt::Debug for HttpExporter {
    // The ingest key is never printed (debug lines and panics show this): only whether one is
    // set.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpExporter")
            .field("url", &self.url)
            .field("ingest_key", &self.ingest_key.as_ref().map(|_| "<set>"))
            .field("gzip", &self.gzip)
            .field("custom_roots", &self.roots.is_some())
            .finish_non_exhaustive()
    }
}

/// Where the root certificates of an [`HttpExporter`] come from.
#[derive(Debug, Clone)]
#[cfg_attr(not(any(feature = "tls", feature = "rustls")), allow(dead_code))]
pub(crate) enum RootCertificates {
    /// PEM text given in code.
    Pem(std::sync::Arc<[u8]>),
    /// A PEM file named by `<TOOL>_TELEMETRY_CA_FILE` or `SSL_CERT_FILE`, read on first use.
    File(std::path::PathBuf),
}

/// Largest CA file read: 1 MiB (a full system bundle is about 200 KiB).
#[cfg(any(feature = "tls", feature = "rustls"))]
const MAX_CA_FILE_BYTES: u64 = 1024 * 1024;

/// Timeout for the TCP connect of a request: 1 s.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

impl HttpExporter {
    /// An exporter to `url` (the full URL of the `/v1/events` route) sending `user_agent`.
    pub fn new(url: impl Into<String>, ingest_key: Option<String>, user_agent: &str) -> Self {
        Self {
            url: url.into(),
            ingest_key,
            user_agent: user_agent.to_owned(),
            gzip: true,
            roots: None,
            agent: std::sync::OnceLock::new(),
            catalog_state: None,
        }
    }

    /// Trusts only the certificates in `pem` (one or more `BEGIN CERTIFICATE` blocks) for
    /// HTTPS, instead of the default roots: for a collector behind a private CA or with a
    /// self-signed certificate. Default: the platform's roots (feature `tls`) or the webpki
    /// roots (feature `rustls`).
    ///
    /// # Examples
    /// ```
    /// # let pem = b"-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n".to_vec();
    /// let exporter = optel::export::HttpExporter::new("https://telemetry.internal/v1/events", None, "acme")
    ///     .tls_root_certificates(pem);
    /// # let _ = exporter;
    /// ```
    #[cfg(any(feature = "tls", feature = "rustls"))]
    #[cfg_attr(docsrs, doc(cfg(any(feature = "tls", feature = "rustls"))))]
    #[must_use]
    pub fn tls_root_certificates(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.roots = Some(RootCertificates::Pem(pem.into().into()));
        self
    }

    pub(crate) fn with_roots(mut self, roots: Option<RootCertificates>) -> Self {
        self.roots = roots;
        self
    }

    /// Remembers in `data_dir` which catalog hash the endpoint acknowledged. Without it the
    /// catalog goes with every batch that carries one.
    pub(crate) fn with_catalog_state(mut self, data_dir: Option<std::path::PathBuf>) -> Self {
        self.catalog_state = data_dir;
        self
    }

    /// The agent, built on first use.
    fn agent(&self) -> Result<&ureq::Agent, ExportError> {
        self.agent
            .get_or_init(|| self.build_agent())
            .as_ref()
            .map_err(|reason| ExportError::Retryable {
                reason: reason.clone(),
                retry_after: None,
            })
    }

    fn build_agent(&self) -> Result<ureq::Agent, String> {
        agent_with_roots(&self.user_agent, self.roots.as_ref())
    }

    /// Whether request bodies are gzip-compressed. Default: `true` (the optel collector
    /// accepts `Content-Encoding: gzip` since 0.1). Turn it off for a collector that does not.
    #[must_use]
    pub fn gzip(mut self, gzip: bool) -> Self {
        self.gzip = gzip;
        self
    }
}

/// The HTTP agent every exporter uses: connect timeout, statuses as values, proxy from the
/// environment (honouring `NO_PROXY`).
pub(crate) fn agent(user_agent: &str) -> ureq::Agent {
    agent_config(user_agent).build().into()
}

/// The agent with `roots` as the only trusted root certificates (when given, feature `tls`):
/// a PEM file is read here, bounded, so call it off the host's path.
///
/// # Errors
/// The file cannot be read, or holds no valid certificate.
#[cfg(any(feature = "tls", feature = "rustls"))]
pub(crate) fn agent_with_roots(
    user_agent: &str,
    roots: Option<&RootCertificates>,
) -> Result<ureq::Agent, String> {
    let Some(roots) = roots else {
        return Ok(agent(user_agent));
    };
    let (pem, source) = root_pem(roots)?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item {
            Ok(ureq::tls::PemItem::Certificate(cert)) => certs.push(cert),
            Ok(_) => {}
            Err(e) => return Err(format!("{source} is not valid PEM: {e}")),
        }
    }
    if certs.is_empty() {
        return Err(format!(
            "{source} holds no certificate: give PEM with BEGIN CERTIFICATE blocks"
        ));
    }
    let roots = ureq::tls::RootCerts::new_with_certs(&certs);
    Ok(agent_config(user_agent)
        .tls_config(tls_config(Some(roots)))
        .build()
        .into())
}

/// The PEM text of `roots` (a file is read here, at most 1 MiB) and a description of where it
/// came from, for error messages.
#[cfg(any(feature = "tls", feature = "rustls"))]
pub(crate) fn root_pem(
    roots: &RootCertificates,
) -> Result<(std::borrow::Cow<'_, [u8]>, String), String> {
    Ok(match roots {
        RootCertificates::Pem(pem) => (pem[..].into(), "the root certificates given".into()),
        RootCertificates::File(path) => (
            crate::fsutil::read_system_file(path, MAX_CA_FILE_BYTES)
                .map_err(|e| format!("cannot read the CA file {}: {e}", path.display()))?
                .into(),
            format!("the CA file {}", path.display()),
        ),
    })
}

/// The TLS settings of every agent: rustls with the compiled-in webpki roots when the `rustls`
/// feature is on, else the platform's TLS library (feature `tls`: OpenSSL, SChannel,
/// Security.framework) with the platform's roots; `roots`, when given, replace either.
#[cfg(any(feature = "tls", feature = "rustls"))]
fn tls_config(roots: Option<ureq::tls::RootCerts>) -> ureq::tls::TlsConfig {
    use ureq::tls::{RootCerts, TlsProvider};
    #[cfg(feature = "rustls")]
    let (provider, default_roots) = (TlsProvider::Rustls, RootCerts::WebPki);
    #[cfg(not(feature = "rustls"))]
    let (provider, default_roots) = (TlsProvider::NativeTls, RootCerts::PlatformVerifier);
    ureq::tls::TlsConfig::builder()
        .provider(provider)
        .root_certs(roots.unwrap_or(default_roots))
        .build()
}

/// Without TLS there are no root certificates to set.
///
/// # Errors
/// Never.
#[cfg(not(any(feature = "tls", feature = "rustls")))]
pub(crate) fn agent_with_roots(
    user_agent: &str,
    _roots: Option<&RootCertificates>,
) -> Result<ureq::Agent, String> {
    Ok(agent(user_agent))
}

fn agent_config(user_agent: &str) -> ureq::config::ConfigBuilder<ureq::typestate::AgentScope> {
    let config = ureq::Agent::config_builder()
        .timeout_connect(Some(CONNECT_TIMEOUT))
        .http_status_as_error(false)
        .user_agent(user_agent)
        .proxy(ureq::Proxy::try_from_env());
    // ureq's default provider is rustls: name the one the features chose.
    #[cfg(any(feature = "tls", feature = "rustls"))]
    let config = config.tls_config(tls_config(None));
    config
}

/// Compresses `body` with gzip (fast level: telemetry bodies are small and highly redundant).
pub(crate) fn gzip(body: &[u8]) -> std::io::Result<Vec<u8>> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4 + 64),
        flate2::Compression::fast(),
    );
    encoder.write_all(body)?;
    encoder.finish()
}

/// One POST of an exporter.
#[derive(Debug)]
pub(crate) struct Post<'a> {
    pub(crate) url: &'a str,
    pub(crate) content_type: &'a str,
    pub(crate) headers: &'a [(&'a str, &'a str)],
    pub(crate) body: &'a [u8],
    pub(crate) gzip: bool,
    pub(crate) timeout: Duration,
}

/// Largest answer body read after a successful POST: 64 KiB.
const MAX_ANSWER_BYTES: u64 = 64 * 1024;

/// Sends one POST and classifies the answer with `classify`; on success returns the answer's
/// body (empty when it cannot be read: the request succeeded all the same).
pub(crate) fn post(
    agent: &ureq::Agent,
    post: &Post<'_>,
    classify: fn(u16, Option<Duration>) -> ExportResult,
) -> Result<String, ExportError> {
    let Post {
        url,
        content_type,
        headers,
        body,
        gzip: compress,
        timeout,
    } = *post;
    let compressed;
    let body = if compress {
        compressed = gzip(body).map_err(|e| ExportError::Rejected(e.to_string()))?;
        &compressed[..]
    } else {
        body
    };
    let mut request = agent
        .post(url)
        .config()
        .timeout_global(Some(timeout))
        .build()
        .header("Content-Type", content_type);
    if compress {
        request = request.header("Content-Encoding", "gzip");
    }
    for &(name, value) in headers {
        request = request.header(name, value);
    }
    match request.send(body) {
        Ok(mut response) => {
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(parse_retry_after);
            classify(response.status().as_u16(), retry_after)?;
            Ok(response
                .body_mut()
                .with_config()
                .limit(MAX_ANSWER_BYTES)
                .read_to_string()
                .unwrap_or_default())
        }
        Err(e) => Err(ExportError::Retryable {
            reason: e.to_string(),
            retry_after: None,
        }),
    }
}

/// `Retry-After` in delay-seconds form (RFC 9110 §10.2.3). The HTTP-date form is ignored: the
/// backoff applies instead.
pub(crate) fn parse_retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

impl Exporter for HttpExporter {
    fn export(&self, batch: &Batch, timeout: Duration) -> ExportResult {
        let hash = batch.catalog_hash.as_deref();
        let state = self
            .catalog_state
            .as_deref()
            .filter(|_| hash.is_some())
            .map(crate::catalog::CatalogState::load);
        let known = state
            .as_ref()
            .zip(hash)
            .is_some_and(|(s, h)| s.knows(&self.url, h));
        let stripped;
        let batch = if known && batch.catalog.is_some() {
            stripped = Batch {
                catalog: None,
                ..batch.clone()
            };
            &stripped
        } else {
            batch
        };
        let body = serde_json::to_vec(batch).map_err(|e| ExportError::Rejected(e.to_string()))?;
        let auth = self.ingest_key.as_ref().map(|key| format!("Bearer {key}"));
        let headers: Vec<(&str, &str)> = auth
            .as_deref()
            .map(|a| ("Authorization", a))
            .into_iter()
            .collect();
        let request = Post {
            url: &self.url,
            content_type: "application/json",
            headers: &headers,
            body: &body,
            gzip: self.gzip,
            timeout,
        };
        let answer = post(self.agent()?, &request, classify)?;
        if let (Some(dir), Some(hash), false) = (&self.catalog_state, hash, known) {
            let acknowledged = serde_json::from_str::<optel_wire::IngestResponse>(&answer)
                .is_ok_and(|r| r.catalog_known == Some(true));
            if acknowledged {
                // Losing this write only means sending the catalog once more.
                let _ = crate::catalog::CatalogState::update(dir, |s| {
                    s.acknowledged.insert(self.url.clone(), hash.to_owned());
                });
            }
        }
        Ok(())
    }
}

/// A shared exporter (as [`TelemetryBuilder::exporter`](crate::TelemetryBuilder::exporter)
/// keeps it) exports through the exporter it points to.
impl Exporter for std::sync::Arc<dyn Exporter> {
    fn export(&self, batch: &Batch, timeout: Duration) -> ExportResult {
        self.as_ref().export(batch, timeout)
    }

    fn force_flush(&self, timeout: Duration) -> ExportResult {
        self.as_ref().force_flush(timeout)
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> ExportResult {
        self.as_ref().shutdown_with_timeout(timeout)
    }
}

/// Maps an HTTP status of the collector to an export outcome: 2xx delivered; 400, 413 and 422
/// can never succeed; anything else (401/403 while a key is fixed, 429, 5xx) is retried later.
pub(crate) fn classify(status: u16, retry_after: Option<Duration>) -> ExportResult {
    match status {
        200..=299 => Ok(()),
        400 | 413 | 422 => Err(ExportError::Rejected(format!(
            "collector answered HTTP {status}"
        ))),
        _ => Err(ExportError::Retryable {
            reason: format!("collector answered HTTP {status}"),
            retry_after,
        }),
    }
}

/// Errors of the [`JsonlFileExporter`]'s own operations (purge, reading the ledger back).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileExportError {
    /// The directory or a file could not be created, read, written or deleted.
    #[error("cannot {action} {}: {source}; check its permissions and free space", path.display())]
    Io {
        /// What was attempted (`create`, `read`, `write`, `delete`).
        action: &'static str,
        /// The file or directory.
        path: std::path::PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A batch could not be encoded as JSON.
    #[error("cannot encode a batch as JSON: {0}")]
    Encode(#[from] serde_json::Error),
}

/// Largest ledger file read back: 256 MiB (a day of a very busy tool is a few MiB).
const MAX_LEDGER_FILE_BYTES: u64 = 256 * 1024 * 1024;

/// The default retention of [`JsonlFileExporter`] files: 30 days, long enough to look back over
/// a month of use, short enough that the ledger stays small.
pub const DEFAULT_RETENTION_DAYS: u32 = 30;

/// The default size bound of a [`JsonlFileExporter`]'s directory: 1 MiB of files (a few
/// thousand runs).
pub const DEFAULT_LEDGER_MAX_BYTES: u64 = 1024 * 1024;

/// What an append to the ledger did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Appended {
    /// The record was written.
    Written,
    /// The size bound left no room even after older days were deleted: not written.
    Full,
}

/// Writes each batch as one JSON object on one line (JSONL) to a file per UTC day,
/// `<dir>/YYYY-MM-DD.jsonl`, so retention deletes whole files. This is the local ledger of `local`
/// consent and what `telemetry log` prints.
///
/// - The directory and its missing parents are created (0700); files are created 0600. Links
///   are never followed, and a directory that is a link, belongs to another user or is
///   writable by others is refused.
/// - After each export, files older than the retention (default [`DEFAULT_RETENTION_DAYS`])
///   are deleted; [`purge_all`](Self::purge_all) deletes them all (the user's right to erase
///   what was kept about them).
/// - The files together stay under a size bound (default [`DEFAULT_LEDGER_MAX_BYTES`]): the
///   oldest days are deleted first; a record that still does not fit is not written, and
///   [`Exporter::export`] rejects it.
/// - With the encrypted local store (feature `encryption`), files are `YYYY-MM-DD.sealed`,
///   one sealed record per line (hex); [`read_lines`](Self::read_lines) opens them.
/// - Appends are whole lines written with one `write` call, so concurrent processes of the same
///   tool do not interleave within a line on local file systems.
///
/// # Examples
/// ```
/// use optel::export::{Exporter, JsonlFileExporter};
/// let dir = tempfile::tempdir().unwrap();
/// let ledger = JsonlFileExporter::new(dir.path().join("ledger")).retention_days(7);
/// let batch = optel_wire::Batch::new("acme", "1.0.0", "p", "linux", "x86_64");
/// ledger.export(&batch, std::time::Duration::from_secs(1)).unwrap();
/// assert_eq!(ledger.read_lines().unwrap().len(), 1);
/// assert_eq!(ledger.purge_all().unwrap(), 1);
/// ```
#[derive(Debug, Clone)]
pub struct JsonlFileExporter {
    dir: std::path::PathBuf,
    retention_days: u32,
    max_bytes: u64,
    sealer: Option<crate::store::Sealer>,
}

impl JsonlFileExporter {
    /// An exporter writing into `dir`, keeping files [`DEFAULT_RETENTION_DAYS`] days.
    pub fn new(dir: impl Into<std::path::PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            retention_days: DEFAULT_RETENTION_DAYS,
            max_bytes: DEFAULT_LEDGER_MAX_BYTES,
            sealer: None,
        }
    }

    /// The most bytes the files may take together; `0` sets no bound. Default:
    /// [`DEFAULT_LEDGER_MAX_BYTES`] (1 MiB).
    pub fn max_bytes(mut self, bytes: u64) -> Self {
        self.max_bytes = bytes;
        self
    }

    /// Seals records with `sealer` (the encrypted local store).
    pub(crate) fn sealed(mut self, sealer: Option<crate::store::Sealer>) -> Self {
        self.sealer = sealer;
        self
    }

    /// Deletes every sealed file and returns how many records they held: called when the store
    /// key was just created, so no sealed record can be opened any more.
    #[cfg_attr(not(feature = "encryption"), allow(dead_code))]
    pub(crate) fn drop_sealed(&self) -> u64 {
        let mut records = 0;
        for path in self.files().unwrap_or_default() {
            if path
                .extension()
                .is_some_and(|e| e == crate::store::SEALED_EXT)
            {
                let lines = crate::fsutil::read_private(&path, MAX_LEDGER_FILE_BYTES)
                    .map_or(0, |b| {
                        b.split(|c| *c == b'\n').filter(|l| !l.is_empty()).count()
                    });
                if remove(&path).is_ok() {
                    records += lines as u64;
                }
            }
        }
        records
    }

    /// How many days files are kept, counting today (`1` keeps today's file only). `0` keeps
    /// them forever. Default: [`DEFAULT_RETENTION_DAYS`].
    pub fn retention_days(mut self, days: u32) -> Self {
        self.retention_days = days;
        self
    }

    /// The directory written to.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// The ledger files, oldest first. Empty when the directory does not exist.
    ///
    /// # Errors
    /// [`FileExportError::Io`] when the directory cannot be listed.
    pub fn files(&self) -> Result<Vec<std::path::PathBuf>, FileExportError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(io_err("read", &self.dir, source)),
        };
        let mut files: Vec<_> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| day_of(p).is_some())
            .collect();
        files.sort();
        Ok(files)
    }

    /// Every line of every file, oldest first.
    ///
    /// # Errors
    /// [`FileExportError::Io`] when a file cannot be read.
    pub fn read_lines(&self) -> Result<Vec<String>, FileExportError> {
        let mut lines = Vec::new();
        for path in self.files()? {
            let bytes = crate::fsutil::read_private(&path, MAX_LEDGER_FILE_BYTES)
                .map_err(|e| io_err("read", &path, e))?;
            let text = String::from_utf8_lossy(&bytes);
            let records = text.lines().filter(|l| !l.is_empty());
            if path
                .extension()
                .is_some_and(|e| e == crate::store::SEALED_EXT)
            {
                // Records that do not open (another key, altered) are left out.
                let (Some(sealer), Some(day)) = (&self.sealer, day_name(&path)) else {
                    continue;
                };
                let place = format!("ledger/{day}");
                lines.extend(records.filter_map(|r| {
                    let sealed = hex::decode(r).ok()?;
                    String::from_utf8(sealer.open(&place, &sealed).ok()?).ok()
                }));
            } else {
                lines.extend(records.map(str::to_owned));
            }
        }
        Ok(lines)
    }

    /// Deletes files older than the retention, as of `now`; returns how many.
    ///
    /// # Errors
    /// [`FileExportError::Io`] when a file cannot be deleted.
    pub fn purge_expired(&self, now: std::time::SystemTime) -> Result<usize, FileExportError> {
        if self.retention_days == 0 {
            return Ok(0);
        }
        let today = unix_day(now);
        let mut n = 0;
        for path in self.files()? {
            if let Some(day) = day_of(&path)
                && day + u64::from(self.retention_days) <= today
            {
                remove(&path)?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Deletes every file and the directory itself; returns how many files.
    ///
    /// # Errors
    /// [`FileExportError::Io`] when a file cannot be deleted.
    pub fn purge_all(&self) -> Result<usize, FileExportError> {
        let files = self.files()?;
        for path in &files {
            remove(path)?;
        }
        let _ = std::fs::remove_dir(&self.dir);
        Ok(files.len())
    }

    /// Appends one batch as one record of today's file, after deleting expired files and
    /// making room under the size bound.
    pub(crate) fn append(&self, batch: &Batch) -> Result<Appended, FileExportError> {
        use std::io::Write;
        let json = serde_json::to_vec(batch)?;
        crate::fsutil::create_private_dir(&self.dir).map_err(|e| io_err("create", &self.dir, e))?;
        let now = std::time::SystemTime::now();
        let mut day = humantime::format_rfc3339_seconds(now).to_string();
        day.truncate(10);
        let (path, mut line) = match &self.sealer {
            Some(sealer) => {
                let sealed = sealer
                    .seal(&format!("ledger/{day}"), &json)
                    .map_err(|e| io_err("seal a record for", &self.dir, e))?;
                let ext = crate::store::SEALED_EXT;
                (
                    self.dir.join(format!("{day}.{ext}")),
                    hex::encode(sealed).into_bytes(),
                )
            }
            None => (self.dir.join(format!("{day}.jsonl")), json),
        };
        line.push(b'\n');
        self.purge_expired(now)?;
        if !self.make_room(&path, line.len() as u64)? {
            return Ok(Appended::Full);
        }
        let mut file = crate::fsutil::open_append(&path).map_err(|e| io_err("write", &path, e))?;
        file.write_all(&line)
            .map_err(|e| io_err("write", &path, e))?;
        Ok(Appended::Written)
    }

    /// Deletes the oldest files other than `today` until `need` more bytes fit under the size
    /// bound; returns whether they fit.
    fn make_room(&self, today: &std::path::Path, need: u64) -> Result<bool, FileExportError> {
        if self.max_bytes == 0 {
            return Ok(true);
        }
        let sized: Vec<(std::path::PathBuf, u64)> = self
            .files()?
            .into_iter()
            .map(|p| {
                let len = std::fs::symlink_metadata(&p).map_or(0, |m| m.len());
                (p, len)
            })
            .collect();
        let mut total: u64 = sized.iter().map(|(_, len)| len).sum();
        for (path, len) in &sized {
            if total.saturating_add(need) <= self.max_bytes {
                break;
            }
            if path != today {
                remove(path)?;
                total = total.saturating_sub(*len);
            }
        }
        Ok(total.saturating_add(need) <= self.max_bytes)
    }
}

impl Exporter for JsonlFileExporter {
    fn export(&self, batch: &Batch, _timeout: Duration) -> ExportResult {
        match self.append(batch) {
            Ok(Appended::Written) => Ok(()),
            Ok(Appended::Full) => Err(ExportError::Rejected(format!(
                "{} is full ({} bytes): the record was not written",
                self.dir.display(),
                self.max_bytes
            ))),
            Err(FileExportError::Encode(e)) => Err(ExportError::Rejected(e.to_string())),
            Err(e) => Err(ExportError::Retryable {
                reason: e.to_string(),
                retry_after: None,
            }),
        }
    }
}

fn io_err(action: &'static str, path: &std::path::Path, source: std::io::Error) -> FileExportError {
    FileExportError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

fn remove(path: &std::path::Path) -> Result<(), FileExportError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_err("delete", path, e)),
        _ => Ok(()),
    }
}

fn unix_day(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400)
}

/// The UTC day (days since 1970) of a ledger file named `YYYY-MM-DD.jsonl` (or `.sealed`).
fn day_of(path: &std::path::Path) -> Option<u64> {
    let stem = day_name(path)?;
    let t = humantime::parse_rfc3339(&format!("{stem}T00:00:00Z")).ok()?;
    Some(unix_day(t))
}

/// The `YYYY-MM-DD` of a ledger file's name.
fn day_name(path: &std::path::Path) -> Option<&str> {
    let ext = path.extension()?;
    if ext != "jsonl" && ext != crate::store::SEALED_EXT {
        return None;
    }
    let stem = path.file_stem()?.to_str()?;
    (stem.len() == 10).then_some(stem)
}

/// Keeps every exported batch in memory, for authors' own tests (feature `testing`): hand a
/// clone to [`crate::TelemetryBuilder::exporter`], run the code under test, then assert on what
/// would have been sent.
///
/// # Examples
/// ```
/// use optel::export::{Exporter, MemoryExporter};
/// use optel_wire::{Batch, Event, EventType, Timestamp};
/// let memory = MemoryExporter::new();
/// let mut batch = Batch::new("acme", "1.0.0", "p", "linux", "x86_64");
/// batch.events.push(Event::new("e", EventType::Command, "build", Timestamp::from_unix_ms(0), "s"));
/// memory.export(&batch, std::time::Duration::from_secs(1)).unwrap();
/// memory.assert_event(EventType::Command, "build");
/// memory.assert_not_sent("/home/");
/// assert_eq!(memory.event_names(), ["build"]);
/// ```
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
#[derive(Debug, Clone, Default)]
pub struct MemoryExporter {
    batches: std::sync::Arc<std::sync::Mutex<Vec<Batch>>>,
}

#[cfg(feature = "testing")]
impl MemoryExporter {
    /// An empty exporter; clones share the same storage.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every batch exported so far.
    pub fn batches(&self) -> Vec<Batch> {
        self.batches.lock().map(|b| b.clone()).unwrap_or_default()
    }

    /// Every event exported so far, in order.
    pub fn events(&self) -> Vec<optel_wire::Event> {
        self.batches().into_iter().flat_map(|b| b.events).collect()
    }

    /// The names of every event exported so far, in order.
    pub fn event_names(&self) -> Vec<String> {
        self.events().into_iter().map(|e| e.name).collect()
    }

    /// Forgets everything exported so far.
    pub fn clear(&self) {
        if let Ok(mut b) = self.batches.lock() {
            b.clear();
        }
    }

    /// Asserts that an event of `event_type` named `name` was exported, and returns it.
    ///
    /// # Panics
    /// When there is none, listing what was exported.
    #[expect(
        clippy::panic,
        reason = "an assertion helper: failing the author's test is its job (see # Panics)"
    )]
    pub fn assert_event(&self, event_type: optel_wire::EventType, name: &str) -> optel_wire::Event {
        let events = self.events();
        match events
            .iter()
            .find(|e| e.event_type == event_type && e.name == name)
        {
            Some(event) => event.clone(),
            None => panic!(
                "no {} event named {name:?} was exported; exported: {:?}",
                event_type.as_str(),
                self.event_names()
            ),
        }
    }

    /// Asserts that nothing was exported.
    ///
    /// # Panics
    /// When something was, listing it.
    pub fn assert_no_events(&self) {
        let names = self.event_names();
        assert!(names.is_empty(), "expected no events, exported: {names:?}");
    }

    /// Asserts that `needle` (a path, a user name, a secret) appears nowhere in the JSON of
    /// the exported batches.
    ///
    /// # Panics
    /// When it does.
    pub fn assert_not_sent(&self, needle: &str) {
        for batch in self.batches() {
            let json = serde_json::to_string(&batch).unwrap_or_default();
            assert!(
                !json.contains(needle),
                "{needle:?} was sent in a batch: {json}"
            );
        }
    }
}

#[cfg(feature = "testing")]
impl Exporter for MemoryExporter {
    fn export(&self, batch: &Batch, _timeout: Duration) -> ExportResult {
        match self.batches.lock() {
            Ok(mut b) => {
                b.push(batch.clone());
                Ok(())
            }
            Err(_) => Err(ExportError::Rejected("memory exporter poisoned".into())),
        }
    }
}

#[cfg(test)]
mod tests;
