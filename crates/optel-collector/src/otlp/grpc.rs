//! OTLP/gRPC ingest (feature `otlp-grpc`): the unary `Export` methods of the OTLP
//! `TraceService`, `MetricsService` and `LogsService` on a port of their own
//! ([`serve_otlp_grpc`]), per the OTLP specification
//! (<https://opentelemetry.io/docs/specs/otlp/#otlpgrpc>).
//!
//! A gRPC export goes through the same doors as an OTLP/HTTP one, in the same order
//! ([`crate::extract`]): the address rate limit and the ingest key (metadata
//! `authorization: Bearer optel_ik_…`, what the HTTP routes read) with its rate limit
//! ([`admit`]), the message bounded to [`optel_wire::limits::MAX_BODY_BYTES`] before and after
//! gzip decompression (tonic's decoding limit), then the same scan of the message before it is
//! decoded and the same mapping, privacy filter and storage ([`super::decode_bounded`],
//! [`super::export_traces`] & co.). Browser keys are refused, as on the HTTP OTLP routes.
//!
//! Refusals are gRPC statuses carrying the HTTP route's stable code as the `reason` of a
//! `google.rpc.ErrorInfo` (domain `optel`), and a `google.rpc.RetryInfo` where the HTTP answer
//! has a `Retry-After`. 400 and 413 become `INVALID_ARGUMENT`, 401 `UNAUTHENTICATED`, 403
//! `PERMISSION_DENIED`, 429 `RESOURCE_EXHAUSTED` (with its retry delay, so that OTLP clients
//! retry it), 5xx `UNAVAILABLE` (retryable).

use std::convert::Infallible;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{Request, Response, StatusCode};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use tonic::body::Body;
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::server::Grpc;
use tonic::transport::server::{TcpConnectInfo, TcpIncoming};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use super::{Encoding, Signal, decode_bounded, export_logs, export_metrics, export_traces};
use crate::AppState;
use crate::error::ApiError;
use crate::ingest::admit;
use crate::storage::Project;

/// The gRPC method of trace exports.
pub const TRACES_METHOD: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
/// The gRPC method of metrics exports.
pub const METRICS_METHOD: &str = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";
/// The gRPC method of logs exports.
pub const LOGS_METHOD: &str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";

/// Settings of the OTLP/gRPC listener.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct GrpcConfig {
    /// Longest time one export may take, from its headers to its answer (`CANCELLED` past
    /// it). Default: [`crate::DEFAULT_BODY_TIMEOUT`].
    pub request_timeout: Duration,
    /// Most exports in flight on one HTTP/2 connection. Default: 32.
    pub max_concurrent_streams: u32,
    /// How long [`serve_otlp_grpc`] waits for exports in flight once its shutdown signal
    /// completed. Default: [`crate::DEFAULT_SHUTDOWN_TIMEOUT`].
    pub shutdown_timeout: Duration,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        Self {
            request_timeout: crate::DEFAULT_BODY_TIMEOUT,
            max_concurrent_streams: 32,
            shutdown_timeout: crate::DEFAULT_SHUTDOWN_TIMEOUT,
        }
    }
}

/// Serves OTLP/gRPC ingest (plain HTTP/2, no TLS) on `listener` until `shutdown` completes,
/// then lets exports in flight finish, for at most `config.shutdown_timeout`.
///
/// # Errors
/// The server fails (the listener is already bound, so only a failure of the HTTP/2 server
/// itself).
pub async fn serve_otlp_grpc(
    listener: tokio::net::TcpListener,
    state: AppState,
    config: GrpcConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let server = tonic::transport::Server::builder()
        .timeout(config.request_timeout)
        .max_concurrent_streams(config.max_concurrent_streams)
        .serve_with_incoming_shutdown(OtlpGrpc { state }, incoming, async move {
            shutdown.await;
            let _ = stop_tx.send(());
        });
    tokio::pin!(server);
    tokio::select! {
        done = &mut server => return done.map_err(std::io::Error::other),
        _ = stop_rx => {}
    }
    match tokio::time::timeout(config.shutdown_timeout, server).await {
        Ok(done) => done.map_err(std::io::Error::other),
        Err(_) => {
            tracing::warn!("OTLP/gRPC exports still in flight at the shutdown timeout");
            Ok(())
        }
    }
}

/// The three `Export` methods as one tower service.
#[derive(Debug, Clone)]
struct OtlpGrpc {
    state: AppState,
}

impl tower::Service<Request<Body>> for OtlpGrpc {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let state = self.state.clone();
        Box::pin(async move {
            let path = req.uri().path().to_owned();
            let (response, status) = match path.as_str() {
                TRACES_METHOD => {
                    export::<ExportTraceServiceRequest, _, _, _>(
                        state.clone(),
                        req,
                        |s, p, r| async move { export_traces(&s, p, r).await },
                    )
                    .await
                }
                METRICS_METHOD => {
                    export::<ExportMetricsServiceRequest, _, _, _>(
                        state.clone(),
                        req,
                        |s, p, r| async move { export_metrics(&s, p, r).await },
                    )
                    .await
                }
                LOGS_METHOD => {
                    export::<ExportLogsServiceRequest, _, _, _>(
                        state.clone(),
                        req,
                        |s, p, r| async move { export_logs(&s, p, r).await },
                    )
                    .await
                }
                _ => {
                    let status = Status::unimplemented(format!(
                        "{path:?} is not an OTLP export method: this port serves \
                         {TRACES_METHOD}, {METRICS_METHOD} and {LOGS_METHOD}"
                    ));
                    return Ok(status.into_http());
                }
            };
            state.metrics.request(&path, status);
            Ok(response)
        })
    }
}

/// One unary export: admission, then tonic's framing and decompression (bounded), then the
/// bounded decoding and the ingest shared with OTLP/HTTP. Returns the answer and the HTTP
/// status the same request would have had, for `optel_requests_total`.
async fn export<Req, Resp, F, Fut>(
    state: AppState,
    req: Request<Body>,
    ingest: F,
) -> (Response<Body>, u16)
where
    Req: Signal,
    Resp: Message + Send + 'static,
    F: FnOnce(AppState, Project, Req) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<Resp, ApiError>> + Send,
{
    let (parts, body) = req.into_parts();
    let addr = parts
        .extensions
        .get::<TcpConnectInfo>()
        .and_then(TcpConnectInfo::remote_addr)
        .map(|a| a.ip());
    let project = match admit(&state, addr, &parts).await {
        Ok(admitted) => admitted.project,
        Err(e) => {
            let status = e.status.as_u16();
            return (refuse(&state, e).into_http(), status);
        }
    };
    let refused = std::sync::Arc::new(std::sync::atomic::AtomicU16::new(0));
    let seen = refused.clone();
    let handler = tower::service_fn(move |request: tonic::Request<Bytes>| {
        let state = state.clone();
        let project = project.clone();
        let ingest = ingest.clone();
        let seen = seen.clone();
        async move {
            let outcome = async {
                let decoded: Req = decode_bounded(request.into_inner(), Encoding::Protobuf).await?;
                ingest(state.clone(), project, decoded).await
            }
            .await;
            outcome.map(tonic::Response::new).map_err(|e| {
                seen.store(e.status.as_u16(), std::sync::atomic::Ordering::Relaxed);
                refuse(&state, e)
            })
        }
    });
    let mut grpc = Grpc::new(RawRequests::<Resp>(PhantomData))
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(optel_wire::limits::MAX_BODY_BYTES);
    let response = grpc.unary(handler, Request::from_parts(parts, body)).await;
    let status = match refused.load(std::sync::atomic::Ordering::Relaxed) {
        0 if response.headers().contains_key("grpc-status") => {
            // Refused by tonic itself: too large, bad framing or compression.
            StatusCode::BAD_REQUEST.as_u16()
        }
        0 => StatusCode::OK.as_u16(),
        s => s,
    };
    (response, status)
}

/// `e` as a gRPC status (see the [module docs](self)), counted in
/// `optel_requests_rejected_total` like the HTTP routes' refusals.
fn refuse(state: &AppState, e: ApiError) -> Status {
    state.metrics.rejected(e.code);
    status_of(e)
}

/// `e` as a gRPC status with its stable code and retry delay as error details.
fn status_of(e: ApiError) -> Status {
    let code = match e.status.as_u16() {
        400 | 413 | 415 => Code::InvalidArgument,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        429 => Code::ResourceExhausted,
        500..=599 => Code::Unavailable,
        _ => Code::Internal,
    };
    let mut details = ErrorDetails::with_error_info(
        e.code,
        "optel",
        std::collections::HashMap::<String, String>::new(),
    );
    if let Some(s) = e.retry_after_s {
        details.set_retry_info(Some(Duration::from_secs(u64::from(s))));
    }
    let message = match &e.field {
        Some(field) => format!("{}: {} (field {field})", e.code, e.message),
        None => format!("{}: {}", e.code, e.message),
    };
    Status::with_error_details(code, message, details)
}

/// A codec that hands requests over undecoded (the bytes of the message, after tonic's
/// framing and decompression), so that [`decode_bounded`] scans them before they are decoded,
/// and encodes answers of type `Resp` as protobuf.
struct RawRequests<Resp>(PhantomData<fn(Resp)>);

impl<Resp: Message + Send + 'static> Codec for RawRequests<Resp> {
    type Encode = Resp;
    type Decode = Bytes;
    type Encoder = ProtoEncoder<Resp>;
    type Decoder = RawDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        ProtoEncoder(PhantomData)
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawDecoder
    }
}

/// Encodes a protobuf answer.
struct ProtoEncoder<Resp>(PhantomData<fn(Resp)>);

impl<Resp: Message> Encoder for ProtoEncoder<Resp> {
    type Item = Resp;
    type Error = Status;

    fn encode(&mut self, item: Resp, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.encode(dst)
            .map_err(|e| Status::internal(format!("cannot encode the answer: {e}")))
    }
}

/// Takes a request message's bytes as they are.
struct RawDecoder;

impl Decoder for RawDecoder {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        use bytes::Buf as _;
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_keep_their_code_and_retry_delay() {
        let mut limited = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "slow down");
        limited.retry_after_s = Some(2);
        let status = status_of(limited);
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert!(status.message().starts_with("rate_limited: "), "{status:?}");
        let details = status.get_error_details();
        assert_eq!(details.error_info().unwrap().reason, "rate_limited");
        assert_eq!(
            details.retry_info().unwrap().retry_delay,
            Some(Duration::from_secs(2))
        );
        let cases = [
            (StatusCode::UNAUTHORIZED, Code::Unauthenticated),
            (StatusCode::PAYLOAD_TOO_LARGE, Code::InvalidArgument),
            (StatusCode::FORBIDDEN, Code::PermissionDenied),
            (StatusCode::SERVICE_UNAVAILABLE, Code::Unavailable),
        ];
        for (http, grpc) in cases {
            let status = status_of(ApiError::new(http, "x", "y"));
            assert_eq!(status.code(), grpc, "{http}");
            assert!(status.get_details_retry_info().is_none(), "{http}");
        }
    }
}
