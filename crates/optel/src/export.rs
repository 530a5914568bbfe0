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
#[derive(Debug)]
pub struct HttpExporter {
    url: String,
    ingest_key: Option<String>,
    agent: ureq::Agent,
}

/// Timeout for the TCP connect of a request.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

impl HttpExporter {
    /// An exporter to `url` (the full URL of the `/v1/events` route) sending `user_agent`.
    pub fn new(url: impl Into<String>, ingest_key: Option<String>, user_agent: &str) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .http_status_as_error(false)
            .user_agent(user_agent)
            .build()
            .into();
        Self {
            url: url.into(),
            ingest_key,
            agent,
        }
    }
}

impl Exporter for HttpExporter {
    fn export(&self, batch: &Batch, timeout: Duration) -> ExportResult {
        let body = serde_json::to_vec(batch).map_err(|e| ExportError::Rejected(e.to_string()))?;
        let mut request = self
            .agent
            .post(&self.url)
            .config()
            .timeout_global(Some(timeout))
            .build()
            .header("Content-Type", "application/json");
        if let Some(key) = &self.ingest_key {
            request = request.header("Authorization", &format!("Bearer {key}"));
        }
        match request.send(&body[..]) {
            Ok(response) => {
                let status = response.status().as_u16();
                let retry_after = response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                classify(status, retry_after)
            }
            Err(e) => Err(ExportError::Retryable {
                reason: e.to_string(),
                retry_after: None,
            }),
        }
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
