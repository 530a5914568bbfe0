//! The OTLP/HTTP codec: content types, request decoding, and answers (partial success or a
//! `google.rpc.Status`) in the request's encoding.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use prost::Message;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::ingest::media_type;

use super::{JSON, PROTOBUF};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    pub(crate) fn of(headers: &HeaderMap) -> Option<Self> {
        match media_type(headers).as_str() {
            PROTOBUF => Some(Self::Protobuf),
            JSON => Some(Self::Json),
            _ => None,
        }
    }

    pub(crate) fn content_type(self) -> &'static str {
        match self {
            Self::Protobuf => PROTOBUF,
            Self::Json => JSON,
        }
    }
}

/// gRPC status code of an HTTP error status (google.rpc.Code).
pub(super) fn grpc_code(status: StatusCode) -> i32 {
    match status.as_u16() {
        400 | 413 | 415 => 3, // INVALID_ARGUMENT
        401 => 16,            // UNAUTHENTICATED
        403 => 7,             // PERMISSION_DENIED
        404 => 5,             // NOT_FOUND
        429 => 8,             // RESOURCE_EXHAUSTED
        503 => 14,            // UNAVAILABLE
        _ => 13,              // INTERNAL
    }
}

/// Writes a protobuf varint.
pub(super) fn varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

/// `google.rpc.Status { code = 1; message = 2 }` in protobuf (no details).
pub fn status_protobuf(code: i32, message: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 8);
    if code != 0 {
        out.push(0x08);
        varint(&mut out, i64::from(code) as u64);
    }
    if !message.is_empty() {
        out.push(0x12);
        varint(&mut out, message.len() as u64);
        out.extend_from_slice(message.as_bytes());
    }
    out
}

/// An OTLP error answer: the status, `Retry-After` when retryable, a `google.rpc.Status` body.
pub(crate) fn error_response(e: ApiError, enc: Encoding) -> Response {
    let code = grpc_code(e.status);
    let message = match &e.field {
        Some(f) => format!("{} ({f}): {}", e.code, e.message),
        None => format!("{}: {}", e.code, e.message),
    };
    let body = match enc {
        Encoding::Protobuf => status_protobuf(code, &message),
        Encoding::Json => {
            serde_json::to_vec(&serde_json::json!({"code": code, "message": message}))
                .unwrap_or_default()
        }
    };
    let mut r = (e.status, [(header::CONTENT_TYPE, enc.content_type())], body).into_response();
    r.extensions_mut().insert(crate::extract::Rejected(e.code));
    if let Some(s) = e.retry_after_s {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(s));
    }
    r
}

pub(super) fn ok_response<T: Message + Serialize>(msg: &T, enc: Encoding) -> Response {
    let body = match enc {
        Encoding::Protobuf => msg.encode_to_vec(),
        Encoding::Json => serde_json::to_vec(msg).unwrap_or_default(),
    };
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, enc.content_type())],
        body,
    )
        .into_response()
}

pub(crate) fn decode<T: Message + Default + DeserializeOwned>(
    bytes: &[u8],
    enc: Encoding,
) -> Result<T, ApiError> {
    match enc {
        Encoding::Protobuf => T::decode(bytes).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_protobuf",
                format!("body is not an OTLP protobuf message ({e})"),
            )
        }),
        Encoding::Json => serde_json::from_slice(bytes).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_json",
                format!("body is not an OTLP JSON message ({e})"),
            )
        }),
    }
}

impl Encoding {
    /// 415 for a content type that is neither OTLP encoding.
    pub(crate) fn unsupported(headers: &HeaderMap) -> ApiError {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!(
                "content type {:?} is not supported: send {PROTOBUF} or {JSON}",
                crate::ingest::media_type(headers)
            ),
        )
    }
}

/// A refused OTLP request: the error, answered as a `google.rpc.Status` in `encoding`.
#[derive(Debug)]
pub(crate) struct OtlpRejection {
    /// What was wrong.
    pub error: ApiError,
    /// The encoding of the answer.
    pub encoding: Encoding,
}
