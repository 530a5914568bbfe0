//! The collector's one HTTP error type: a client sees a status, a stable machine-readable code
//! and a safe message ([`optel_wire::ErrorBody`]); details go to the log.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use optel_wire::{ErrorBody, ErrorDetail};

/// An error answer of the HTTP API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable code, e.g. `invalid_field`.
    pub code: &'static str,
    /// Human message, safe to show to the client.
    pub message: String,
    /// JSON path of the field at fault.
    pub field: Option<String>,
    /// Seconds after which a retry may succeed (sent as `Retry-After`).
    pub retry_after_s: Option<u32>,
}

impl ApiError {
    /// An error without field or retry hint.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            field: None,
            retry_after_s: None,
        }
    }

    /// 401 `unauthenticated`.
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", message)
    }

    /// 400 `invalid_field` for one field.
    pub fn invalid_field(invalid: optel_wire::Invalid) -> Self {
        Self {
            field: Some(invalid.field),
            ..Self::new(StatusCode::BAD_REQUEST, "invalid_field", invalid.reason)
        }
    }

    /// 503 `storage_unavailable`, retryable; the cause goes to the log only.
    pub fn storage(err: &crate::storage::StorageError) -> Self {
        Self::storage_message(&err.to_string())
    }

    /// 503 `storage_unavailable` from a logged cause.
    pub fn storage_message(cause: &str) -> Self {
        tracing::error!(error = %cause, "storage error");
        Self {
            retry_after_s: Some(1),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage_unavailable",
                "the collector cannot reach its database right now: retry later",
            )
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message,
                field: self.field,
            },
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        response
            .extensions_mut()
            .insert(crate::extract::Rejected(self.code));
        if let Some(s) = self.retry_after_s {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        response
    }
}
