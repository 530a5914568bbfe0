//! Exporters: where delivered batches go. Transport is separate from batching (STYLE.md §8,
//! after `opentelemetry-sdk`'s `SpanExporter`): the queue and the delivery thread decide *what*
//! to send and *when*; an [`Exporter`] only moves one batch somewhere.
//!
//! # Contract
//! - [`Exporter::export`] is never called concurrently: one delivery thread owns the exporter.
//! - Every call returns within the timeout it is given (it must enforce it itself).
//! - The exporter does not retry. It says whether a retry can help
//!   ([`ExportError::Retryable`], with an optional `Retry-After`) or not
//!   ([`ExportError::Rejected`]); the delivery thread keeps retryable batches queued for a later
//!   round or a later run and drops rejected ones.
//! - Exporters never panic and never block the host: they run on the delivery thread only.

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

/// The default exporter: optel JSON batches to a collector's `POST /v1/events`, with the
/// project ingest key as `Authorization: Bearer <key>`.
///
/// - Bodies are gzip-compressed (`Content-Encoding: gzip`) unless
///   [`with_gzip(false)`](Self::with_gzip) is set; the optel collector decodes them.
/// - The TCP connect times out after [`CONNECT_TIMEOUT`] (1 s); the whole request after the
///   timeout given to [`Exporter::export`].
/// - Proxies come from the environment: `ALL_PROXY`, `HTTPS_PROXY` or `HTTP_PROXY` (the first
///   set, upper or lower case), except for the hosts listed in `NO_PROXY`.
/// - `Retry-After` (in seconds) of a 429 or 503 is passed on to the delivery thread, which
///   holds every process of the tool back until then.
#[derive(Debug)]
pub struct HttpExporter {
    url: String,
    ingest_key: Option<String>,
    agent: ureq::Agent,
    gzip: bool,
}

/// Timeout for the TCP connect of a request: 1 s.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

impl HttpExporter {
    /// An exporter to `url` (the full URL of the `/v1/events` route) sending `user_agent`.
    pub fn new(url: impl Into<String>, ingest_key: Option<String>, user_agent: &str) -> Self {
        Self {
            url: url.into(),
            ingest_key,
            agent: agent(user_agent),
            gzip: true,
        }
    }

    /// Whether request bodies are gzip-compressed. Default: `true` (the optel collector
    /// accepts `Content-Encoding: gzip` since 0.1). Turn it off for a collector that does not.
    #[must_use]
    pub fn with_gzip(mut self, gzip: bool) -> Self {
        self.gzip = gzip;
        self
    }
}

/// The HTTP agent every exporter uses: connect timeout, statuses as values, proxy from the
/// environment (honouring `NO_PROXY`).
pub(crate) fn agent(user_agent: &str) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_connect(Some(CONNECT_TIMEOUT))
        .http_status_as_error(false)
        .user_agent(user_agent)
        .proxy(ureq::Proxy::try_from_env())
        .build()
        .into()
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

/// Sends one POST and classifies the answer with `classify`.
pub(crate) fn post(
    agent: &ureq::Agent,
    post: &Post<'_>,
    classify: fn(u16, Option<Duration>) -> ExportResult,
) -> ExportResult {
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
        Ok(response) => {
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(parse_retry_after);
            classify(response.status().as_u16(), retry_after)
        }
        Err(e) => Err(ExportError::Retryable {
            reason: e.to_string(),
            retry_after: None,
        }),
    }
}

/// `Retry-After` in delay-seconds form (RFC 9110 §10.2.3). The HTTP-date form is ignored: the
/// backoff applies instead.
fn parse_retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

impl Exporter for HttpExporter {
    fn export(&self, batch: &Batch, timeout: Duration) -> ExportResult {
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
        post(&self.agent, &request, classify)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classes() {
        assert!(classify(200, None).is_ok());
        assert!(classify(202, None).is_ok());
        assert!(matches!(classify(400, None), Err(ExportError::Rejected(_))));
        assert!(matches!(classify(413, None), Err(ExportError::Rejected(_))));
        assert!(matches!(
            classify(401, None),
            Err(ExportError::Retryable { .. })
        ));
        assert!(matches!(
            classify(429, Some(Duration::from_secs(3))),
            Err(ExportError::Retryable { retry_after: Some(d), .. }) if d == Duration::from_secs(3)
        ));
        assert!(matches!(
            classify(503, None),
            Err(ExportError::Retryable { .. })
        ));
    }

    #[test]
    fn retry_after_seconds() {
        assert_eq!(parse_retry_after(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }

    #[test]
    fn gzip_round_trips() {
        use std::io::Read;
        let body = br#"{"events":[]}"#.repeat(100);
        let packed = gzip(&body).unwrap();
        assert!(packed.len() < body.len() / 4);
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&packed[..])
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, body);
    }

    #[test]
    fn exporter_is_object_safe() {
        let exporters: Vec<Box<dyn Exporter>> = vec![Box::new(NoopExporter)];
        let batch = Batch::new("acme", "1.0.0", "p", "linux", "x86_64");
        assert!(
            exporters[0]
                .export(&batch, Duration::from_millis(1))
                .is_ok()
        );
    }
}
