//! `POST /v1/events`: authenticate, bound, parse, validate, commit, then answer.
//!
//! Every request is treated as hostile: the body is read up to
//! [`optel_wire::limits::MAX_BODY_BYTES`] and no further; every field is validated
//! ([`optel_wire::Batch::validate`]) before anything is stored; the answer is 2xx only after the
//! batch is committed.

use axum::Json;
use axum::body::{Body, to_bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use optel_wire::{Batch, IngestResponse, Invalid, limits};

use crate::error::ApiError;
use crate::{AppState, keys, now_ms};

/// Oldest event timestamp accepted, relative to the time of receipt: 90 days. An SDK that was
/// offline longer than that has events nobody reports on any more.
pub const MAX_EVENT_AGE_MS: i64 = 90 * 24 * 3_600_000;
/// Furthest an event timestamp may lie in the future (clock skew): 1 hour.
pub const MAX_FUTURE_SKEW_MS: i64 = 3_600_000;

/// Handler of `POST /v1/events`.
pub async fn post_events(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<IngestResponse>, ApiError> {
    let project = authenticate(&state, &headers).await?;
    check_content_type(&headers)?;
    let bytes = to_bytes(body, limits::MAX_BODY_BYTES).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!(
                "request body is larger than {} bytes: send smaller batches",
                limits::MAX_BODY_BYTES
            ),
        )
    })?;
    let batch: Batch = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("body is not an optel batch: {e}"),
        )
    })?;
    batch.validate().map_err(ApiError::invalid_field)?;
    let received = now_ms();
    check_timestamps(&batch, received).map_err(ApiError::invalid_field)?;
    let store = state.store.clone();
    let project_id = project.id;
    let outcome =
        tokio::task::spawn_blocking(move || store.insert_batch(project_id, &batch, received))
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "insert task failed");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error: retry later",
                )
            })?
            .map_err(|e| ApiError::storage(&e))?;
    tracing::debug!(project = %project.name, inserted = outcome.inserted, duplicates = outcome.duplicates, "batch stored");
    Ok(Json(IngestResponse {
        accepted: outcome.inserted + outcome.duplicates,
        duplicates: outcome.duplicates,
    }))
}

async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<crate::storage::Project, ApiError> {
    let header = headers.get(header::AUTHORIZATION).ok_or_else(|| {
        ApiError::unauthenticated(
            "missing Authorization header: send `Authorization: Bearer <ingest key>`",
        )
    })?;
    let key = header.to_str().ok().and_then(keys::bearer).ok_or_else(|| {
        ApiError::unauthenticated("Authorization header is not `Bearer <ingest key>`")
    })?;
    let hash = keys::hash_key(key);
    let store = state.store.clone();
    let project = crate::blocking(move || store.project_for_key(&hash)).await?;
    project.ok_or_else(|| {
        ApiError::unauthenticated(
            "ingest key is not valid: create one with `optel projects create NAME`",
        )
    })
}

fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = content_type.split(';').next().unwrap_or("").trim();
    if !mime.eq_ignore_ascii_case("application/json") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("content type {content_type:?} is not supported: send application/json"),
        ));
    }
    if let Some(encoding) = headers.get(header::CONTENT_ENCODING) {
        let encoding = encoding.to_str().unwrap_or("?");
        if !encoding.eq_ignore_ascii_case("identity") {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_encoding",
                format!(
                    "content encoding {encoding:?} is not supported: send the body uncompressed"
                ),
            ));
        }
    }
    Ok(())
}

fn check_timestamps(batch: &Batch, now_ms: i64) -> Result<(), Invalid> {
    for (i, e) in batch.events.iter().enumerate() {
        let ts = e.timestamp.unix_ms();
        let reason = if ts < now_ms - MAX_EVENT_AGE_MS {
            "is more than 90 days old: events that old are not accepted"
        } else if ts > now_ms + MAX_FUTURE_SKEW_MS {
            "is more than 1 hour in the future: check the clock of the sending machine"
        } else {
            continue;
        };
        return Err(Invalid {
            field: format!("events[{i}].timestamp"),
            reason: format!("timestamp {} {reason}", e.timestamp),
        });
    }
    Ok(())
}
