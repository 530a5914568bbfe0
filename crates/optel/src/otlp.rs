//! OTLP export (feature `otlp`: OTLP/HTTP; feature `otlp-grpc`: OTLP/gRPC too): optel batches
//! as OpenTelemetry signals, for teams that already run an OpenTelemetry Collector or an OTLP
//! backend and want usage next to their other signals.
//!
//! # Mapping
//! One mapping, shared with optel's collector (`docs/otlp.md` has the full table), so that an
//! event exported here comes back from the collector as it was recorded:
//! - Every command event becomes one **span**, as the OpenTelemetry semantic conventions for
//!   CLI programs describe an execution: kind `INTERNAL`, no parent (a root span: the
//!   collector counts root spans only), named after the command, start and end from the
//!   event's timestamp and duration, the trace id the session id (one trace per run of the
//!   tool). A failed command has status `ERROR` and its error code in `error.type`; the
//!   event's attributes are span attributes under their own keys.
//! - Commands are **not** also sent as a `command_invocation` metric: the collector counts
//!   both root spans and that metric's points as invocations, so sending both would count each
//!   command twice. (Earlier versions sent a delta Sum for every command and a span for failed
//!   ones only.) A backend that wants the count as a metric can derive it from the spans, e.g.
//!   with the OpenTelemetry Collector's `spanmetrics` connector.
//! - Every other event (feature, method, custom) becomes a log record whose `event_name` is
//!   the event's name, with the attribute `optel.event_type` (`feature`, `method`, `custom`)
//!   and the event's attributes under their own keys; no body.
//! - Events dropped on the install (`dropped_events`) become the delta Sum
//!   `optel.dropped_events`.
//! - Resource attributes: `service.name`, `service.version`, `os.type`, `host.arch` (in the
//!   semantic conventions' spelling: `darwin`, `amd64`, `arm64`), `telemetry.sdk.name`
//!   (`optel`), `telemetry.sdk.language` (`rust`), `telemetry.sdk.version`, and
//!   `optel.install.pseudonym` (the rotating pseudonym). Never `host.name` or anything else
//!   about the machine or the user.
//!
//! # Configuration ([`OtlpExporter::from_env`], OTLP exporter spec)
//! Every setting has a generic variable and one per signal (`TRACES`, `METRICS`, `LOGS`); the
//! per-signal one wins over the generic one for that signal.
//!
//! | variable | effect |
//! |---|---|
//! | `OTEL_EXPORTER_OTLP_ENDPOINT` | base URL; signals go to `<base>/v1/traces`, `/v1/metrics`, `/v1/logs` (default `http://localhost:4318`); with `grpc`, every signal goes to the base URL itself (default `http://localhost:4317`) |
//! | `OTEL_EXPORTER_OTLP_{TRACES,METRICS,LOGS}_ENDPOINT` | the URL of one signal, used as is |
//! | `OTEL_EXPORTER_OTLP[_{SIGNAL}]_PROTOCOL` | `http/protobuf` (default), `http/json`, or `grpc` (feature `otlp-grpc`) |
//! | `OTEL_EXPORTER_OTLP[_{SIGNAL}]_COMPRESSION` | `gzip` (default here) or `none` |
//! | `OTEL_EXPORTER_OTLP[_{SIGNAL}]_HEADERS` | `key=value,key2=value2` sent with every request (gRPC: as metadata, keys lowercased); keys and values are percent-decoded (`Authorization=Bearer%20KEY`) |
//! | `OTEL_EXPORTER_OTLP_CERTIFICATE` | a PEM file of the root certificates trusted for HTTPS instead of the default roots (features `tls`, `rustls`), read on the delivery thread |
//! | `OTEL_EXPORTER_OTLP[_{SIGNAL}]_TIMEOUT` | most milliseconds one request may take (default: the caller's deadline) |
//!
//! # Delivery
//! Each signal is sent on its own: one signal failing does not keep the others from being
//! sent. An endpoint that answers 404 for a signal does not support it: that signal is skipped
//! from then on and the others go on. Retries follow the OTLP spec: only 429, 502, 503 and 504
//! (and network errors) are retryable, and then the whole batch is retried, so an OTLP backend
//! may see a signal twice (optel's own collector derives event ids and stores each once); any
//! other non-2xx answer drops the batch. Items an endpoint refuses in a 2xx answer's partial
//! success are counted ([`OtlpExporter::rejected_items`]).
//!
//! # OTLP/gRPC (feature `otlp-grpc`)
//! With `OtlpProtocol::Grpc` a signal is sent as the unary `Export` call of its OTLP service
//! (tonic), with the same requests, so the same data, as over HTTP. The exporter starts a
//! current-thread tokio runtime on the delivery thread at its first export, never before (no
//! runtime and no socket without consent), and keeps one connection per endpoint. Every call
//! is bounded by the caller's deadline. Retries follow the OTLP/gRPC spec: `UNAVAILABLE`,
//! `DEADLINE_EXCEEDED`, `CANCELLED`, `ABORTED`, `OUT_OF_RANGE`, `DATA_LOSS`, and
//! `RESOURCE_EXHAUSTED` when it carries a retry delay; `UNIMPLEMENTED` is treated like a 404.
//! `https://` endpoints use rustls (`ring`) with the platform's roots (feature `tls`) or the
//! webpki roots (feature `rustls`), or the PEM of `OTEL_EXPORTER_OTLP_CERTIFICATE`; proxies
//! (`HTTPS_PROXY`) are not used. `docs/adr/016-otlp-grpc.md` has the reasons.
use std::time::Duration;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, Status, span, status,
};
use optel_wire::{AttributeValue, Batch, EventType};

use crate::export::{ExportError, ExportResult, Exporter};

#[cfg(feature = "otlp-grpc")]
mod grpc;
#[cfg(feature = "otlp-grpc")]
#[cfg_attr(docsrs, doc(cfg(feature = "otlp-grpc")))]
pub use grpc::DEFAULT_OTLP_GRPC_ENDPOINT;

/// Default OTLP/HTTP endpoint (the spec's default).
pub const DEFAULT_OTLP_ENDPOINT: &str = "http://localhost:4318";

/// `AGGREGATION_TEMPORALITY_DELTA` of the OTLP metrics proto.
const TEMPORALITY_DELTA: i32 = 1;
/// `SEVERITY_NUMBER_INFO`.
const SEVERITY_INFO: i32 = 9;

/// Encoding of OTLP request bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OtlpProtocol {
    /// `http/protobuf`: binary protobuf, `application/x-protobuf` (the spec's default).
    #[default]
    HttpProtobuf,
    /// `http/json`: the OTLP JSON mapping, `application/json`.
    HttpJson,
    /// `grpc`: the unary `Export` calls of OTLP/gRPC (feature `otlp-grpc`), protobuf over
    /// HTTP/2. The endpoint is the base URL, without the `/v1/…` paths.
    #[cfg(feature = "otlp-grpc")]
    #[cfg_attr(docsrs, doc(cfg(feature = "otlp-grpc")))]
    Grpc,
}

/// A configuration value the exporter cannot use.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct OtlpConfigError(String);

/// The three OTLP signals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signal {
    Traces,
    Metrics,
    Logs,
}

impl Signal {
    const ALL: [Signal; 3] = [Signal::Traces, Signal::Metrics, Signal::Logs];

    /// The variable infix (`TRACES`) and the route (`v1/traces`).
    fn names(self) -> (&'static str, &'static str) {
        match self {
            Self::Traces => ("TRACES", "v1/traces"),
            Self::Metrics => ("METRICS", "v1/metrics"),
            Self::Logs => ("LOGS", "v1/logs"),
        }
    }
}

/// Where and how one signal is sent.
struct Target {
    url: String,
    /// The endpoint of OTLP/gRPC calls: the base URL, or the signal's own URL.
    #[cfg_attr(not(feature = "otlp-grpc"), allow(dead_code))]
    grpc_endpoint: String,
    headers: Vec<(String, String)>,
    protocol: OtlpProtocol,
    gzip: bool,
    timeout: Option<Duration>,
    /// Set when the endpoint answered 404: the signal is not sent again.
    unsupported: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Target {
    // Header values are never printed: `OTEL_EXPORTER_OTLP_HEADERS` usually holds an API key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let header_names: Vec<&str> = self.headers.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("Target")
            .field("url", &self.url)
            .field("grpc_endpoint", &self.grpc_endpoint)
            .field("header_names", &header_names)
            .field("protocol", &self.protocol)
            .field("gzip", &self.gzip)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Target {
    fn new(base: &str, signal: Signal) -> Self {
        Self {
            url: format!("{}/{}", base.trim_end_matches('/'), signal.names().1),
            grpc_endpoint: base.to_owned(),
            headers: Vec::new(),
            protocol: OtlpProtocol::HttpProtobuf,
            gzip: true,
            timeout: None,
            unsupported: std::sync::atomic::AtomicBool::new(false),
        }
    }
}

/// Sends batches to an OTLP/HTTP endpoint (see the [module docs](self) for the mapping).
#[derive(Debug)]
pub struct OtlpExporter {
    /// Built on first use, on the delivery thread: reading a CA file never delays init.
    agent: std::sync::OnceLock<Result<ureq::Agent, String>>,
    roots: Option<crate::export::RootCertificates>,
    /// Traces, metrics, logs (the order of [`Signal::ALL`]).
    targets: [Target; 3],
    /// Items refused in partial-success answers so far.
    rejected: std::sync::atomic::AtomicU64,
    /// The OTLP/gRPC runtime and channels, started by the first gRPC export.
    #[cfg(feature = "otlp-grpc")]
    grpc: grpc::GrpcTransport,
}

/// Percent-decodes `s` (`%20` → space); a `%` not followed by two hex digits stays as is.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| char::from(c).to_digit(16);
        if b[i] == b'%'
            && let (Some(h), Some(l)) = (
                b.get(i + 1).copied().and_then(hex),
                b.get(i + 2).copied().and_then(hex),
            )
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl OtlpExporter {
    /// An exporter to the base URL `endpoint` (`http://localhost:4318`), protobuf, gzip.
    pub fn new(endpoint: &str) -> Self {
        let base = endpoint.trim();
        Self {
            agent: std::sync::OnceLock::new(),
            roots: None,
            targets: Signal::ALL.map(|s| Target::new(base, s)),
            rejected: std::sync::atomic::AtomicU64::new(0),
            #[cfg(feature = "otlp-grpc")]
            grpc: grpc::GrpcTransport::default(),
        }
    }

    /// An exporter configured by the `OTEL_EXPORTER_OTLP_*` variables read through `env`
    /// (pass `|k| std::env::var(k).ok()`), see the [module docs](self): for each setting of
    /// each signal, the per-signal variable, else the generic one, else the default.
    ///
    /// # Errors
    /// An unknown protocol or compression (`grpc` without the `otlp-grpc` feature), a header
    /// without `=`, a timeout that is not a number of milliseconds.
    pub fn from_env(env: impl Fn(&str) -> Option<String>) -> Result<Self, OtlpConfigError> {
        let var = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        let base_var = var("OTEL_EXPORTER_OTLP_ENDPOINT");
        let base = base_var
            .clone()
            .unwrap_or_else(|| DEFAULT_OTLP_ENDPOINT.to_owned());
        let mut exporter = Self::new(base.trim());
        if let Some(path) = var("OTEL_EXPORTER_OTLP_CERTIFICATE") {
            exporter.roots = Some(crate::export::RootCertificates::File(path.trim().into()));
        }
        for (signal, target) in Signal::ALL.iter().zip(exporter.targets.iter_mut()) {
            let infix = signal.names().0;
            // The per-signal variable wins; `name` says which one was read, for errors.
            let setting = |what: &str| {
                let specific = format!("OTEL_EXPORTER_OTLP_{infix}_{what}");
                match var(&specific) {
                    Some(v) => Some((specific, v)),
                    None => {
                        let generic = format!("OTEL_EXPORTER_OTLP_{what}");
                        var(&generic).map(|v| (generic, v))
                    }
                }
            };
            if let Some((name, p)) = setting("PROTOCOL") {
                target.protocol = parse_protocol(&name, p.trim())?;
            }
            // The spec's gRPC default port differs from HTTP's.
            #[cfg(feature = "otlp-grpc")]
            if base_var.is_none() && target.protocol == OtlpProtocol::Grpc {
                DEFAULT_OTLP_GRPC_ENDPOINT.clone_into(&mut target.grpc_endpoint);
            }
            if let Some(url) = var(&format!("OTEL_EXPORTER_OTLP_{infix}_ENDPOINT")) {
                url.trim().clone_into(&mut target.url);
                url.trim().clone_into(&mut target.grpc_endpoint);
            }
            if let Some((name, c)) = setting("COMPRESSION") {
                target.gzip = match c.trim() {
                    "gzip" => true,
                    "none" => false,
                    other => {
                        return Err(OtlpConfigError(format!(
                            "{name} {other:?} is not supported: use gzip or none"
                        )));
                    }
                };
            }
            if let Some((name, t)) = setting("TIMEOUT") {
                let ms: u64 = t.trim().parse().map_err(|_| {
                    OtlpConfigError(format!(
                        "{name} {t:?} is not a number of milliseconds: use e.g. 10000"
                    ))
                })?;
                target.timeout = Some(Duration::from_millis(ms));
            }
            if let Some((name, h)) = setting("HEADERS") {
                for pair in h.split(',').filter(|p| !p.trim().is_empty()) {
                    let (k, v) = pair.split_once('=').ok_or_else(|| {
                        OtlpConfigError(format!("{name} entry {pair:?} is not key=value"))
                    })?;
                    target
                        .headers
                        .push((percent_decode(k.trim()), percent_decode(v.trim())));
                }
            }
        }
        Ok(exporter)
    }

    /// Trusts only the certificates in `pem` (one or more `BEGIN CERTIFICATE` blocks) for
    /// HTTPS, instead of the default roots: a backend behind a private CA. Default: the
    /// platform's roots (feature `tls`) or the webpki roots (feature `rustls`), or the PEM
    /// file named by `OTEL_EXPORTER_OTLP_CERTIFICATE` with [`from_env`](Self::from_env).
    #[cfg(any(feature = "tls", feature = "rustls"))]
    #[cfg_attr(docsrs, doc(cfg(any(feature = "tls", feature = "rustls"))))]
    #[must_use]
    pub fn tls_root_certificates(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.roots = Some(crate::export::RootCertificates::Pem(pem.into().into()));
        self
    }

    /// The encoding of every signal. Default: [`OtlpProtocol::HttpProtobuf`].
    #[must_use]
    pub fn protocol(mut self, protocol: OtlpProtocol) -> Self {
        for t in &mut self.targets {
            t.protocol = protocol;
        }
        self
    }

    /// Whether bodies are gzip-compressed, for every signal. Default: `true`.
    #[must_use]
    pub fn gzip(mut self, gzip: bool) -> Self {
        for t in &mut self.targets {
            t.gzip = gzip;
        }
        self
    }

    /// Adds a header sent with every request of every signal, e.g.
    /// `("Authorization", "Bearer optel_ik_…")`.
    #[must_use]
    pub fn header(mut self, name: &str, value: &str) -> Self {
        for t in &mut self.targets {
            t.headers.push((name.to_owned(), value.to_owned()));
        }
        self
    }

    /// The URLs of the metrics, traces and logs routes, in that order.
    pub fn urls(&self) -> [&str; 3] {
        [
            &self.targets[1].url,
            &self.targets[0].url,
            &self.targets[2].url,
        ]
    }

    /// Items (spans, data points, log records) endpoints refused in the partial success of
    /// 2xx answers so far.
    pub fn rejected_items(&self) -> u64 {
        self.rejected.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn send<T: OtlpRequest>(
        &self,
        signal: Signal,
        message: &T,
        deadline: std::time::Instant,
    ) -> ExportResult {
        use std::sync::atomic::Ordering;
        let target = &self.targets[signal as usize];
        if target.unsupported.load(Ordering::Relaxed) {
            return Ok(());
        }
        #[cfg(feature = "otlp-grpc")]
        if target.protocol == OtlpProtocol::Grpc {
            let rejected = self.grpc.send(
                signal,
                target,
                self.roots.as_ref(),
                message.grpc(),
                deadline,
            )?;
            if rejected > 0 {
                self.rejected.fetch_add(rejected, Ordering::Relaxed);
            }
            return Ok(());
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let timeout = target.timeout.map_or(left, |t| t.min(left));
        let (body, content_type) = match target.protocol {
            OtlpProtocol::HttpJson => (
                serde_json::to_vec(message).map_err(|e| ExportError::Rejected(e.to_string()))?,
                "application/json",
            ),
            _ => (message.encode_to_vec(), "application/x-protobuf"),
        };
        let compressed;
        let body = if target.gzip {
            compressed =
                crate::export::gzip(&body).map_err(|e| ExportError::Rejected(e.to_string()))?;
            &compressed[..]
        } else {
            &body[..]
        };
        let agent = self
            .agent
            .get_or_init(|| {
                crate::export::agent_with_roots(
                    concat!("optel/", env!("CARGO_PKG_VERSION")),
                    self.roots.as_ref(),
                )
            })
            .as_ref()
            .map_err(|reason| ExportError::Retryable {
                reason: reason.clone(),
                retry_after: None,
            })?;
        let mut request = agent
            .post(&target.url)
            .config()
            .timeout_global(Some(timeout))
            .build()
            .header("Content-Type", content_type);
        if target.gzip {
            request = request.header("Content-Encoding", "gzip");
        }
        for (name, value) in &target.headers {
            request = request.header(name, value);
        }
        let mut response = request.send(body).map_err(|e| ExportError::Retryable {
            reason: e.to_string(),
            retry_after: None,
        })?;
        let status = response.status().as_u16();
        if status == 404 {
            // The endpoint does not take this signal: stop sending it, keep the others.
            target.unsupported.store(true, Ordering::Relaxed);
            return Ok(());
        }
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(crate::export::parse_retry_after);
        classify_otlp(status, retry_after)?;
        // A 2xx may carry a partial success: count what was refused.
        let answer = response
            .body_mut()
            .with_config()
            .limit(64 * 1024)
            .read_to_vec()
            .unwrap_or_default();
        let rejected = rejected_in(signal, target.protocol, &answer);
        if rejected > 0 {
            self.rejected.fetch_add(rejected, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// The protocol named by the variable `name`.
fn parse_protocol(name: &str, value: &str) -> Result<OtlpProtocol, OtlpConfigError> {
    match value {
        "http/protobuf" => Ok(OtlpProtocol::HttpProtobuf),
        "http/json" => Ok(OtlpProtocol::HttpJson),
        #[cfg(feature = "otlp-grpc")]
        "grpc" => Ok(OtlpProtocol::Grpc),
        #[cfg(not(feature = "otlp-grpc"))]
        "grpc" => Err(OtlpConfigError(format!(
            "{name} \"grpc\" needs optel's `otlp-grpc` feature: enable it, or use http/protobuf"
        ))),
        other => Err(OtlpConfigError(format!(
            "{name} {other:?} is not supported: use http/protobuf, http/json or grpc"
        ))),
    }
}

/// Items refused in an OTLP answer body (`partial_success`), 0 when there is none.
fn rejected_in(signal: Signal, protocol: OtlpProtocol, body: &[u8]) -> u64 {
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
    use prost::Message;
    fn parse<T: Message + Default + serde::de::DeserializeOwned>(
        protocol: OtlpProtocol,
        body: &[u8],
    ) -> Option<T> {
        match protocol {
            OtlpProtocol::HttpJson => serde_json::from_slice(body).ok(),
            _ => T::decode(body).ok(),
        }
    }
    let n = match signal {
        Signal::Traces => parse::<ExportTraceServiceResponse>(protocol, body)
            .and_then(|r| r.partial_success)
            .map(|p| p.rejected_spans),
        Signal::Metrics => parse::<ExportMetricsServiceResponse>(protocol, body)
            .and_then(|r| r.partial_success)
            .map(|p| p.rejected_data_points),
        Signal::Logs => parse::<ExportLogsServiceResponse>(protocol, body)
            .and_then(|r| r.partial_success)
            .map(|p| p.rejected_log_records),
    };
    n.and_then(|n| u64::try_from(n).ok()).unwrap_or(0)
}

impl Exporter for OtlpExporter {
    fn export(&self, batch: &Batch, timeout: Duration) -> ExportResult {
        let deadline = std::time::Instant::now() + timeout;
        let signals = Signals::from_batch(batch);
        // Each signal on its own: a failure of one does not keep the others from being sent.
        let results = [
            signals
                .traces
                .as_ref()
                .map(|t| self.send(Signal::Traces, t, deadline)),
            signals
                .metrics
                .as_ref()
                .map(|m| self.send(Signal::Metrics, m, deadline)),
            signals
                .logs
                .as_ref()
                .map(|l| self.send(Signal::Logs, l, deadline)),
        ];
        let mut outcome = Ok(());
        for r in results.into_iter().flatten() {
            match (r, &outcome) {
                // A retryable failure wins: the whole batch is tried again.
                (Err(e @ ExportError::Retryable { .. }), _) => outcome = Err(e),
                (Err(e), Ok(())) => outcome = Err(e),
                _ => {}
            }
        }
        outcome
    }
}

/// An OTLP export request, sent over HTTP as protobuf or JSON, or over gRPC.
trait OtlpRequest: prost::Message + serde::Serialize {
    /// The request for the gRPC transport.
    #[cfg(feature = "otlp-grpc")]
    fn grpc(&self) -> grpc::Request<'_>;
}

impl OtlpRequest for ExportTraceServiceRequest {
    #[cfg(feature = "otlp-grpc")]
    fn grpc(&self) -> grpc::Request<'_> {
        grpc::Request::Traces(self)
    }
}

impl OtlpRequest for ExportMetricsServiceRequest {
    #[cfg(feature = "otlp-grpc")]
    fn grpc(&self) -> grpc::Request<'_> {
        grpc::Request::Metrics(self)
    }
}

impl OtlpRequest for ExportLogsServiceRequest {
    #[cfg(feature = "otlp-grpc")]
    fn grpc(&self) -> grpc::Request<'_> {
        grpc::Request::Logs(self)
    }
}

/// OTLP's retry rule: 429, 502, 503, 504 are retryable, other non-2xx are final.
fn classify_otlp(status: u16, retry_after: Option<Duration>) -> ExportResult {
    match status {
        200..=299 => Ok(()),
        429 | 502 | 503 | 504 => Err(ExportError::Retryable {
            reason: format!("OTLP endpoint answered HTTP {status}"),
            retry_after,
        }),
        _ => Err(ExportError::Rejected(format!(
            "OTLP endpoint answered HTTP {status}"
        ))),
    }
}

/// The three OTLP requests of one batch; `None` for a signal with nothing in it.
#[derive(Debug, Default)]
struct Signals {
    metrics: Option<ExportMetricsServiceRequest>,
    traces: Option<ExportTraceServiceRequest>,
    logs: Option<ExportLogsServiceRequest>,
}

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn s(value: &str) -> any_value::Value {
    any_value::Value::StringValue(value.to_owned())
}

fn nanos(unix_ms: i64) -> u64 {
    u64::try_from(unix_ms)
        .unwrap_or(0)
        .saturating_mul(1_000_000)
}

/// `os.type` of the OpenTelemetry semantic conventions.
fn os_type(os: &str) -> &str {
    match os {
        "macos" => "darwin",
        other => other,
    }
}

/// `host.arch` of the OpenTelemetry semantic conventions.
fn host_arch(arch: &str) -> &str {
    match arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "x86",
        "arm" => "arm32",
        "powerpc64" => "ppc64",
        "s390x" => "s390x",
        other => other,
    }
}

fn resource(batch: &Batch) -> Resource {
    Resource {
        attributes: vec![
            kv("service.name", s(&batch.service_name)),
            kv("service.version", s(&batch.service_version)),
            kv("os.type", s(os_type(&batch.os))),
            kv("host.arch", s(host_arch(&batch.arch))),
            kv("telemetry.sdk.name", s("optel")),
            kv("telemetry.sdk.language", s("rust")),
            kv("telemetry.sdk.version", s(env!("CARGO_PKG_VERSION"))),
            kv("optel.install.pseudonym", s(&batch.pseudonym)),
        ],
        ..Default::default()
    }
}

fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: "optel".to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        ..Default::default()
    }
}

fn delta_sum(name: &str, description: &str, points: Vec<NumberDataPoint>) -> Metric {
    Metric {
        name: name.to_owned(),
        description: description.to_owned(),
        unit: "1".to_owned(),
        data: Some(metric::Data::Sum(Sum {
            data_points: points,
            aggregation_temporality: TEMPORALITY_DELTA,
            is_monotonic: true,
        })),
        ..Default::default()
    }
}

fn attribute_value(v: &AttributeValue) -> any_value::Value {
    match v {
        AttributeValue::Bool(b) => any_value::Value::BoolValue(*b),
        AttributeValue::Int(i) => any_value::Value::IntValue(*i),
        AttributeValue::Float(f) => any_value::Value::DoubleValue(*f),
        AttributeValue::String(st) => s(st),
    }
}

/// The attribute naming an event's optel type on a log record (read by the collector).
pub const EVENT_TYPE_ATTRIBUTE: &str = "optel.event_type";

/// 16 bytes of a UUID (the session or event id), or `fallback` if it is not one.
fn uuid_bytes(id: &str, fallback: u8) -> [u8; 16] {
    optel_wire::parse_uuid(id)
        .filter(|b| b.iter().any(|&x| x != 0))
        .unwrap_or([fallback; 16])
}

impl Signals {
    fn from_batch(batch: &Batch) -> Self {
        let mut spans = Vec::new();
        let mut logs = Vec::new();
        for e in &batch.events {
            let ts = e.timestamp.unix_ms();
            if e.event_type == EventType::Command {
                spans.push(command_span(e, ts));
            } else {
                let mut attributes = vec![kv(EVENT_TYPE_ATTRIBUTE, s(e.event_type.as_str()))];
                attributes.extend(e.metadata.iter().map(|(k, v)| kv(k, attribute_value(v))));
                logs.push(LogRecord {
                    time_unix_nano: nanos(ts),
                    observed_time_unix_nano: nanos(ts),
                    severity_number: SEVERITY_INFO,
                    severity_text: "INFO".to_owned(),
                    event_name: e.name.clone(),
                    trace_id: uuid_bytes(&e.session_id, 1).to_vec(),
                    attributes,
                    ..Default::default()
                });
            }
        }
        let mut metrics = Vec::new();
        if batch.dropped_events > 0 {
            let now = nanos(optel_wire::Timestamp::now().unix_ms());
            metrics.push(delta_sum(
                "optel.dropped_events",
                "Events dropped on the install because its queue was full.",
                vec![NumberDataPoint {
                    start_time_unix_nano: now,
                    time_unix_nano: now + 1,
                    value: Some(number_data_point::Value::AsInt(
                        i64::try_from(batch.dropped_events).unwrap_or(i64::MAX),
                    )),
                    ..Default::default()
                }],
            ));
        }
        Signals {
            metrics: (!metrics.is_empty()).then(|| ExportMetricsServiceRequest {
                resource_metrics: vec![ResourceMetrics {
                    resource: Some(resource(batch)),
                    scope_metrics: vec![ScopeMetrics {
                        scope: Some(scope()),
                        metrics,
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
            }),
            traces: (!spans.is_empty()).then(|| ExportTraceServiceRequest {
                resource_spans: vec![ResourceSpans {
                    resource: Some(resource(batch)),
                    scope_spans: vec![ScopeSpans {
                        scope: Some(scope()),
                        spans,
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
            }),
            logs: (!logs.is_empty()).then(|| ExportLogsServiceRequest {
                resource_logs: vec![ResourceLogs {
                    resource: Some(resource(batch)),
                    scope_logs: vec![ScopeLogs {
                        scope: Some(scope()),
                        log_records: logs,
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
            }),
        }
    }
}

/// A command as a root span of kind `INTERNAL` (the CLI semantic conventions' execution
/// span): trace id = the session id, span id = the event id's last 8 bytes.
fn command_span(e: &optel_wire::Event, ts: i64) -> Span {
    let trace_id = uuid_bytes(&e.session_id, 1).to_vec();
    let event = uuid_bytes(&e.event_id, 1);
    let span_id = event[8..].to_vec();
    let start = nanos(ts);
    let end = start + e.duration_ms.unwrap_or(0).saturating_mul(1_000_000);
    let mut attributes: Vec<KeyValue> = e
        .metadata
        .iter()
        .filter(|(k, _)| k.as_str() != "error.type")
        .map(|(k, v)| kv(k, attribute_value(v)))
        .collect();
    let status = if e.success == Some(false) {
        let code = e.error_code.as_deref().unwrap_or("_OTHER");
        attributes.push(kv("error.type", s(code)));
        Some(Status {
            code: status::StatusCode::Error as i32,
            message: format!("command failed with error code {code}"),
        })
    } else {
        None
    };
    Span {
        trace_id,
        span_id,
        name: e.name.clone(),
        kind: span::SpanKind::Internal as i32,
        start_time_unix_nano: start,
        end_time_unix_nano: end,
        attributes,
        status,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests;
