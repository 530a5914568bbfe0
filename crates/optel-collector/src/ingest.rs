//! `POST /v1/events`: authenticate, bound, parse, validate, commit, then answer.
//!
//! Every request is treated as hostile: the body is read up to
//! [`optel_wire::limits::MAX_BODY_BYTES`] and no further, and a gzip body
//! (`Content-Encoding: gzip`) is decompressed up to the same limit and no further (413 past
//! it, so a small "zip bomb" costs 4 MiB at most); every field is validated
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
    let gzip = check_content_type(&headers)?;
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
    let bytes = if gzip {
        gunzip(&bytes)?
    } else {
        bytes.to_vec()
    };
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

/// Decompresses a gzip body, reading at most [`limits::MAX_BODY_BYTES`] bytes of output.
///
/// # Errors
/// 413 when the output would be larger, 400 when the body is not gzip.
pub fn gunzip(compressed: &[u8]) -> Result<Vec<u8>, ApiError> {
    use std::io::Read;
    let limit = limits::MAX_BODY_BYTES as u64;
    let mut out = Vec::with_capacity(
        compressed
            .len()
            .saturating_mul(4)
            .min(limits::MAX_BODY_BYTES),
    );
    flate2::read::GzDecoder::new(compressed)
        .take(limit + 1)
        .read_to_end(&mut out)
        .map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_gzip",
                format!(
                    "body is not valid gzip ({e}): compress it with gzip or send it uncompressed"
                ),
            )
        })?;
    if out.len() as u64 > limit {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!(
                "decompressed request body is larger than {} bytes: send smaller batches",
                limits::MAX_BODY_BYTES
            ),
        ));
    }
    Ok(out)
}

/// Checks the content type and encoding; returns whether the body is gzip-compressed.
fn check_content_type(headers: &HeaderMap) -> Result<bool, ApiError> {
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
        let encoding = encoding.to_str().unwrap_or("?").trim();
        if encoding.eq_ignore_ascii_case("gzip") {
            return Ok(true);
        }
        if !encoding.eq_ignore_ascii_case("identity") {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_encoding",
                format!(
                    "content encoding {encoding:?} is not supported: send gzip or an uncompressed body"
                ),
            ));
        }
    }
    Ok(false)
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn gunzip_round_trips() {
        assert_eq!(gunzip(&gz(b"{\"a\":1}")).unwrap(), b"{\"a\":1}");
    }

    #[test]
    fn gzip_bomb_is_413_not_unbounded() {
        // 64 MiB of zeros compress to ~64 KiB: decompression must stop at the limit.
        let bomb = gz(&vec![0u8; 64 * 1024 * 1024]);
        assert!(bomb.len() < limits::MAX_BODY_BYTES);
        let err = gunzip(&bomb).unwrap_err();
        assert_eq!(err.status, StatusCode::PAYLOAD_TOO_LARGE);
        // Exactly at the limit is fine.
        assert_eq!(
            gunzip(&gz(&vec![b' '; limits::MAX_BODY_BYTES]))
                .unwrap()
                .len(),
            limits::MAX_BODY_BYTES
        );
    }

    #[test]
    fn not_gzip_is_400() {
        let err = gunzip(b"{\"plain\":true}").unwrap_err();
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn content_encodings() {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
        assert!(!check_content_type(&h).unwrap());
        h.insert(header::CONTENT_ENCODING, "gzip".parse().unwrap());
        assert!(check_content_type(&h).unwrap());
        h.insert(header::CONTENT_ENCODING, "br".parse().unwrap());
        assert!(check_content_type(&h).is_err());
    }
}
