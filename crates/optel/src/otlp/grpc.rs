//! OTLP/gRPC transport (feature `otlp-grpc`): the unary `Export` calls of the OTLP trace,
//! metrics and logs services through tonic's generated clients.
//!
//! The exporter is synchronous and runs on the SDK's delivery thread, so the async client runs
//! on a current-thread tokio runtime the exporter owns, started by the first export (never on
//! the recording path, never without consent: an exporter that never exports starts nothing).
//! Each signal keeps one lazily connected channel. Every call is bounded by the caller's
//! deadline (and the signal's timeout), its connection attempt included.

use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Instant;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use tonic::codec::CompressionEncoding;
use tonic::metadata::{AsciiMetadataValue, MetadataKey};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};
use tonic_types::StatusExt as _;

use super::{Signal, Target};
use crate::export::{ExportError, ExportResult, RootCertificates};

/// Default OTLP/gRPC endpoint (the spec's default).
pub const DEFAULT_OTLP_GRPC_ENDPOINT: &str = "http://localhost:4317";

/// One OTLP export request of any signal, borrowed.
#[derive(Debug, Clone, Copy)]
pub(super) enum Request<'a> {
    Traces(&'a ExportTraceServiceRequest),
    Metrics(&'a ExportMetricsServiceRequest),
    Logs(&'a ExportLogsServiceRequest),
}

/// The runtime and channels of the gRPC transport, all made on first use.
#[derive(Debug, Default)]
pub(super) struct GrpcTransport {
    runtime: OnceLock<Result<tokio::runtime::Runtime, String>>,
    /// One channel per signal (the order of [`Signal::ALL`]): endpoints may differ.
    channels: Mutex<[Option<Channel>; 3]>,
}

impl GrpcTransport {
    /// Whether the runtime was started (by a first export).
    #[cfg(test)]
    pub(super) fn started(&self) -> bool {
        self.runtime.get().is_some()
    }

    /// Sends `request` to `target`'s gRPC endpoint before `deadline`; returns the items the
    /// endpoint refused in a partial success.
    ///
    /// # Errors
    /// Retryable: the runtime cannot start, the connection fails, the deadline passes, or the
    /// endpoint answers a status the OTLP spec calls retryable (`RESOURCE_EXHAUSTED` only with
    /// a retry delay). Rejected: the endpoint, a header or the CA file cannot be used, or any
    /// other status. `UNIMPLEMENTED` marks the signal unsupported and is `Ok(0)`.
    pub(super) fn send(
        &self,
        signal: Signal,
        target: &Target,
        roots: Option<&RootCertificates>,
        request: Request<'_>,
        deadline: Instant,
    ) -> Result<u64, ExportError> {
        let runtime = self
            .runtime
            .get_or_init(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .thread_name("optel-otlp-grpc")
                    .build()
                    .map_err(|e| format!("cannot start the OTLP/gRPC runtime: {e}"))
            })
            .as_ref()
            .map_err(|reason| ExportError::Retryable {
                reason: reason.clone(),
                retry_after: None,
            })?;
        let left = deadline.saturating_duration_since(Instant::now());
        let timeout = target.timeout.map_or(left, |t| t.min(left));
        let channel = {
            let mut channels = self.channels.lock().unwrap_or_else(PoisonError::into_inner);
            match &channels[signal as usize] {
                Some(channel) => channel.clone(),
                None => {
                    // `connect_lazy` spawns the connection's tasks on the current runtime.
                    let _inside = runtime.enter();
                    let channel = endpoint(&target.grpc_endpoint, roots)?.connect_lazy();
                    channels[signal as usize] = Some(channel.clone());
                    channel
                }
            }
        };
        let metadata = metadata(&target.headers)?;
        let gzip = target.gzip;
        let call = async move {
            macro_rules! export {
                ($client:ident, $message:expr, $field:ident, $rejected:ident) => {{
                    let mut client = $client::new(channel);
                    if gzip {
                        client = client
                            .send_compressed(CompressionEncoding::Gzip)
                            .accept_compressed(CompressionEncoding::Gzip);
                    }
                    let mut request = tonic::Request::new($message.clone());
                    *request.metadata_mut() = metadata;
                    request.set_timeout(timeout);
                    client
                        .export(request)
                        .await
                        .map(|r| r.into_inner().$field.map_or(0, |p| p.$rejected))
                }};
            }
            match request {
                Request::Traces(m) => {
                    export!(TraceServiceClient, m, partial_success, rejected_spans)
                }
                Request::Metrics(m) => {
                    export!(
                        MetricsServiceClient,
                        m,
                        partial_success,
                        rejected_data_points
                    )
                }
                Request::Logs(m) => {
                    export!(LogsServiceClient, m, partial_success, rejected_log_records)
                }
            }
        };
        let answer = runtime
            .block_on(async { tokio::time::timeout(timeout, call).await })
            .map_err(|_| ExportError::Retryable {
                reason: format!("OTLP/gRPC export did not finish within {timeout:?}"),
                retry_after: None,
            })?;
        match answer {
            Ok(rejected) => Ok(u64::try_from(rejected).unwrap_or(0)),
            Err(status) if status.code() == Code::Unimplemented => {
                // The endpoint does not take this signal: stop sending it, keep the others.
                target
                    .unsupported
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                Ok(0)
            }
            Err(status) => classify(&status).map(|()| 0),
        }
    }
}

/// The OTLP/gRPC retry rule: `CANCELLED`, `DEADLINE_EXCEEDED`, `ABORTED`, `OUT_OF_RANGE`,
/// `UNAVAILABLE`, `DATA_LOSS` are retryable, `RESOURCE_EXHAUSTED` only with a
/// `google.rpc.RetryInfo` (whose delay is kept); every other status is final.
fn classify(status: &Status) -> ExportResult {
    let retry_after = status
        .get_details_retry_info()
        .and_then(|info| info.retry_delay);
    let reason = format!(
        "OTLP/gRPC endpoint answered {:?}: {}",
        status.code(),
        status.message()
    );
    match status.code() {
        Code::Cancelled
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::OutOfRange
        | Code::Unavailable
        | Code::DataLoss => Err(ExportError::Retryable {
            reason,
            retry_after,
        }),
        Code::ResourceExhausted if retry_after.is_some() => Err(ExportError::Retryable {
            reason,
            retry_after,
        }),
        _ => Err(ExportError::Rejected(reason)),
    }
}

/// The endpoint of `url` (`http://host:4317` or, with TLS, `https://…`).
fn endpoint(url: &str, roots: Option<&RootCertificates>) -> Result<Endpoint, ExportError> {
    let rejected = |why: String| ExportError::Rejected(why);
    let endpoint = Endpoint::from_shared(url.to_owned())
        .map_err(|e| rejected(format!("OTLP/gRPC endpoint {url:?} is not a URL: {e}")))?
        .connect_timeout(crate::export::CONNECT_TIMEOUT)
        .user_agent(concat!("optel/", env!("CARGO_PKG_VERSION")))
        .map_err(|e| rejected(e.to_string()))?;
    if url.starts_with("https://") {
        return tls(endpoint, url, roots);
    }
    let _ = roots;
    Ok(endpoint)
}

#[cfg(any(feature = "tls", feature = "rustls"))]
fn tls(
    endpoint: Endpoint,
    url: &str,
    roots: Option<&RootCertificates>,
) -> Result<Endpoint, ExportError> {
    use tonic::transport::{Certificate, ClientTlsConfig};
    let config = match roots {
        Some(roots) => {
            let (pem, _) = crate::export::root_pem(roots).map_err(ExportError::Rejected)?;
            ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem))
        }
        None => ClientTlsConfig::new().with_enabled_roots(),
    };
    endpoint
        .tls_config(config)
        .map_err(|e| ExportError::Rejected(format!("OTLP/gRPC endpoint {url:?}: {e}")))
}

#[cfg(not(any(feature = "tls", feature = "rustls")))]
fn tls(_: Endpoint, url: &str, _: Option<&RootCertificates>) -> Result<Endpoint, ExportError> {
    Err(ExportError::Rejected(format!(
        "OTLP/gRPC endpoint {url:?} needs TLS: enable optel's `tls` or `rustls` feature"
    )))
}

/// The headers as gRPC metadata (keys lowercased, as gRPC requires).
fn metadata(headers: &[(String, String)]) -> Result<tonic::metadata::MetadataMap, ExportError> {
    let mut map = tonic::metadata::MetadataMap::new();
    for (name, value) in headers {
        let key = MetadataKey::from_bytes(name.to_ascii_lowercase().as_bytes()).map_err(|_| {
            ExportError::Rejected(format!(
                "header name {name:?} is not valid gRPC metadata: use [a-z0-9-_.]"
            ))
        })?;
        // The value is never quoted: it usually holds an API key.
        let value = AsciiMetadataValue::try_from(value.as_str()).map_err(|_| {
            ExportError::Rejected(format!(
                "the value of header {name:?} is not valid gRPC metadata: use visible ASCII"
            ))
        })?;
        map.insert(key, value);
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn status_with_retry(code: Code, delay: Option<Duration>) -> Status {
        let mut details = tonic_types::ErrorDetails::new();
        if delay.is_some() {
            details.set_retry_info(delay);
        }
        Status::with_error_details(code, "x", details)
    }

    #[test]
    fn retry_rule_follows_the_otlp_grpc_spec() {
        let retryable = |s: &Status| matches!(classify(s), Err(ExportError::Retryable { .. }));
        for code in [Code::Unavailable, Code::DeadlineExceeded, Code::Aborted] {
            assert!(retryable(&Status::new(code, "x")), "{code:?}");
        }
        for code in [Code::InvalidArgument, Code::Unauthenticated, Code::Internal] {
            assert!(!retryable(&Status::new(code, "x")), "{code:?}");
        }
        assert!(!retryable(&Status::new(Code::ResourceExhausted, "x")));
        let throttled = status_with_retry(Code::ResourceExhausted, Some(Duration::from_secs(3)));
        match classify(&throttled) {
            Err(ExportError::Retryable { retry_after, .. }) => {
                assert_eq!(retry_after, Some(Duration::from_secs(3)));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn headers_become_lowercase_metadata_and_bad_ones_are_refused() {
        let map = metadata(&[("Authorization".into(), "Bearer k".into())]).unwrap();
        assert_eq!(map.get("authorization").unwrap(), "Bearer k");
        let bad = metadata(&[("x".into(), "line\nbreak".into())]).unwrap_err();
        assert!(!bad.to_string().contains("line"), "{bad}");
    }
}
