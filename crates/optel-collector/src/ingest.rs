//! Ingest: `POST /v1/events` (optel batches), `DELETE /v1/installs` (deletion by pseudonym),
//! and what every ingest route shares: the key lookup behind [`crate::extract::IngestKey`],
//! bounded body reading ([`read_body`]), timestamp checks, and the hand-off to the group-commit
//! writer, which answers only after the commit (503 + `Retry-After` when its queue is full).
//! The order in which a request is refused is described in [`crate::extract`].

use std::collections::HashMap;
use std::io::Read;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt as _;
use optel_wire::catalog::Catalog;
use optel_wire::{Batch, IngestResponse, Invalid, limits};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::extract::{IngestJson, IngestKey, IngestPayload};
use crate::storage::{InsertOutcome, KeyGrant, Project};
use crate::writer::SubmitError;
use crate::{AppState, keys, now_ms};

/// Oldest event timestamp accepted, relative to the time of receipt: 90 days. An SDK that was
/// offline longer than that has events nobody reports on any more.
pub const MAX_EVENT_AGE_MS: i64 = 90 * 24 * 3_600_000;
/// Furthest an event timestamp may lie in the future (clock skew): 1 hour.
pub const MAX_FUTURE_SKEW_MS: i64 = 3_600_000;
/// How long a validated ingest key is remembered in memory (1 s): a key revoked, or a project
/// deleted, by another process sharing the database (`optel keys revoke`, `optel projects
/// delete`) stops working within this time. In that window a deleted project's batches fail
/// alone (503), never the other projects' (the group-commit writer retries them alone), and such a failure forgets the
/// project's cached keys at once. The cost is one key lookup per key and second.
pub const KEY_CACHE_TTL: Duration = Duration::from_secs(1);

/// The client's address, when the server was started with connect info (never stored).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip()),
        ))
    }
}

/// Ingest keys recently found valid: key hash → what it grants, for [`KEY_CACHE_TTL`].
#[derive(Debug, Default)]
pub struct KeyCache {
    map: Mutex<HashMap<String, (KeyGrant, Instant)>>,
}

impl KeyCache {
    fn get(&self, hash: &str) -> Option<KeyGrant> {
        let map = self
            .map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.get(hash)
            .filter(|(_, at)| at.elapsed() < KEY_CACHE_TTL)
            .map(|(g, _)| g.clone())
    }

    /// Forgets every cached key of project `id`: the next request checks its key again.
    pub(crate) fn forget_project(&self, id: i64) {
        self.map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|_, (g, _)| g.project.id != id);
    }

    /// Forgets every cached key.
    pub(crate) fn clear(&self) {
        self.map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
    }

    fn put(&self, hash: String, grant: KeyGrant) {
        let mut map = self
            .map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() > 10_000 {
            map.retain(|_, (_, at)| at.elapsed() < KEY_CACHE_TTL);
        }
        map.insert(hash, (grant, Instant::now()));
    }
}

/// Handler of `POST /v1/events`.
pub(crate) async fn post_events(
    State(state): State<AppState>,
    IngestKey(project): IngestKey,
    IngestJson(mut batch): IngestJson<Batch>,
) -> Result<Json<IngestResponse>, ApiError> {
    // One platform spelling for every door; privacy at the door, the same filter as the OTLP
    // routes' (`crate::privacy`), once the batch is valid.
    crate::privacy::normalize_platform(&mut batch);
    batch.validate().map_err(ApiError::invalid_field)?;
    crate::privacy::scrub_batch(&mut batch).record(&state.metrics);
    let received = now_ms();
    check_timestamps(&batch, received).map_err(ApiError::invalid_field)?;
    // The catalog the batch names: the one it carries (stored with it), else the stored one.
    let carried = batch.catalog.clone().map(Arc::new);
    let catalog = match (&carried, &batch.catalog_hash) {
        (Some(c), _) => Some(c.clone()),
        (None, Some(hash)) => known_catalog(&state, project.id, hash).await?,
        (None, None) => None,
    };
    let catalog_known = batch.catalog_hash.as_ref().map(|_| catalog.is_some());
    let hash = batch.catalog_hash.clone();
    let outcome = store_with_catalog(&state, &project, batch, catalog.as_deref(), received).await?;
    if let (Some(c), Some(hash)) = (carried, hash) {
        state.catalog_cache.put(project.id, hash, c);
    }
    Ok(Json(IngestResponse {
        accepted: outcome.inserted + outcome.duplicates,
        duplicates: outcome.duplicates,
        // Some(true) once the catalog is stored (by this batch or before): the SDK stops
        // sending it; Some(false) when the hash is unknown: the SDK sends it with the next.
        catalog_known,
    }))
}

/// Most catalog versions [`CatalogCache`] holds (of all projects) before it starts afresh.
const CATALOG_CACHE_MAX: usize = 1_024;

/// Catalog versions recently read or stored, by project id and hash: a catalog version never
/// changes, so most batches, which name a catalog without carrying it, need no database read
/// to be broken down by it.
#[derive(Debug, Default)]
pub(crate) struct CatalogCache {
    map: Mutex<HashMap<(i64, String), Arc<Catalog>>>,
}

impl CatalogCache {
    fn get(&self, project_id: i64, hash: &str) -> Option<Arc<Catalog>> {
        self.map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&(project_id, hash.to_owned()))
            .cloned()
    }

    fn put(&self, project_id: i64, hash: String, catalog: Arc<Catalog>) {
        let mut map = self
            .map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() >= CATALOG_CACHE_MAX {
            map.clear();
        }
        map.insert((project_id, hash), catalog);
    }

    /// Forgets every cached catalog (a deleted project's id may be reused).
    pub(crate) fn clear(&self) {
        self.map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
    }
}

/// The stored catalog version `hash` of a project, from the cache or the store.
///
/// # Errors
/// 503 when the database cannot be asked.
async fn known_catalog(
    state: &AppState,
    project_id: i64,
    hash: &str,
) -> Result<Option<Arc<Catalog>>, ApiError> {
    if let Some(c) = state.catalog_cache.get(project_id, hash) {
        return Ok(Some(c));
    }
    let store = state.store.clone();
    let h = hash.to_owned();
    let found = crate::app::blocking(move || store.catalog(project_id, &h)).await?;
    Ok(found.map(|c| {
        let c = Arc::new(c);
        state
            .catalog_cache
            .put(project_id, hash.to_owned(), c.clone());
        c
    }))
}

/// A request admitted by its ingest key.
#[derive(Debug, Clone)]
pub(crate) struct Admitted {
    /// The key's project.
    pub project: Project,
    /// For a browser key, the request's `Origin` (one of the key's origins).
    pub browser_origin: Option<String>,
}

/// The browser key of a query string (`?key=optel_bk_…`), if any.
pub(crate) fn browser_key_param(query: Option<&str>) -> Option<&str> {
    query?.split('&').find_map(|p| p.strip_prefix("key="))
}

/// Address rate limit, ingest key, key rate limit: a server key in `Authorization: Bearer`,
/// or a browser key in `?key=` that must come with one of its origins in `Origin` and may only
/// send optel batches (`POST /v1/events`).
///
/// # Errors
/// 429; 401 for a missing or invalid key; 403 `origin_not_allowed` or `browser_key_scope`;
/// 503 when the database cannot be asked.
pub(crate) async fn admit(
    state: &AppState,
    addr: Option<IpAddr>,
    parts: &Parts,
) -> Result<Admitted, ApiError> {
    state.limits.check_addr(addr)?;
    let headers = &parts.headers;
    let (key, browser) = match browser_key_param(parts.uri.query()) {
        Some(key) => (key, true),
        None => {
            let header = headers.get(header::AUTHORIZATION).ok_or_else(|| {
                ApiError::unauthenticated(
                    "missing Authorization header: send `Authorization: Bearer <ingest key>`",
                )
            })?;
            let key = header.to_str().ok().and_then(keys::bearer).ok_or_else(|| {
                ApiError::unauthenticated("Authorization header is not `Bearer <ingest key>`")
            })?;
            (key, false)
        }
    };
    if browser != key.starts_with(keys::BROWSER_KEY_PREFIX) {
        return Err(ApiError::unauthenticated(if browser {
            "`?key=` takes browser keys (optel_bk_…) only: send a server key in `Authorization: Bearer`"
        } else {
            "a browser key (optel_bk_…) goes in `?key=`, from a page of one of its origins"
        }));
    }
    let hash = keys::hash_key(key);
    let grant = grant_for(state, &hash).await?;
    if !browser {
        state.limits.check_key(&hash)?;
        return Ok(Admitted {
            project: grant.project,
            browser_origin: None,
        });
    }
    if parts.uri.path() != "/v1/events" || parts.method != axum::http::Method::POST {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "browser_key_scope",
            "a browser key can only send optel batches to POST /v1/events",
        ));
    }
    let origin = allowed_origin(headers, &grant)?;
    state.limits.check_browser_key(&hash)?;
    Ok(Admitted {
        project: grant.project,
        browser_origin: Some(origin),
    })
}

/// The request's `Origin` when `grant` allows it.
///
/// # Errors
/// 403 `origin_not_allowed`.
pub(crate) fn allowed_origin(headers: &HeaderMap, grant: &KeyGrant) -> Result<String, ApiError> {
    let origin = headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if grant.origins.iter().any(|o| o == origin) {
        Ok(origin.to_owned())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "origin_not_allowed",
            format!(
                "origin {origin:?} may not use this browser key: add it with `optel keys create --browser --origin`"
            ),
        ))
    }
}

/// What the key (by hash) grants, from the cache or the store.
///
/// # Errors
/// 401 for an unknown or revoked key; 503 when the database cannot be asked.
pub(crate) async fn grant_for(state: &AppState, hash: &str) -> Result<KeyGrant, ApiError> {
    if let Some(g) = state.key_cache.get(hash) {
        return Ok(g);
    }
    let store = state.store.clone();
    let h = hash.to_owned();
    let found = crate::app::blocking(move || store.project_for_key(&h)).await?;
    let grant = found.ok_or_else(|| {
        ApiError::unauthenticated(
            "ingest key is not valid: create one with `optel keys create PROJECT`",
        )
    })?;
    state.key_cache.put(hash.to_owned(), grant.clone());
    Ok(grant)
}

/// Step 5: queue a validated batch for the writer and wait for its commit.
///
/// # Errors
/// 503 `saturated` / `shutting_down` / `storage_unavailable` with `Retry-After`.
pub async fn store(
    state: &AppState,
    project: &Project,
    batch: Batch,
    received_ms: i64,
) -> Result<InsertOutcome, ApiError> {
    store_with_catalog(state, project, batch, None, received_ms).await
}

/// [`store`] for a batch whose `catalog_hash` names `catalog` (stored earlier).
///
/// # Errors
/// As [`store`].
async fn store_with_catalog(
    state: &AppState,
    project: &Project,
    batch: Batch,
    catalog: Option<&Catalog>,
    received_ms: i64,
) -> Result<InsertOutcome, ApiError> {
    let rx = state
        .writer
        .submit_with_catalog(project.id, batch, catalog, received_ms)
        .map_err(|e| {
            let code = match e {
                SubmitError::Saturated => "saturated",
                SubmitError::Stopped => "shutting_down",
            };
            ApiError {
                retry_after_s: Some(1),
                ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code, e.to_string())
            }
        })?;
    let outcome = rx
        .await
        .map_err(|_| ApiError::storage_message("the writer stopped before the commit"))?
        .map_err(|e| {
            // The project may be gone (deleted by another process): check its key again next
            // time rather than for the rest of the cache's lifetime.
            state.key_cache.forget_project(project.id);
            ApiError::storage_message(&e)
        })?;
    state.metrics.accepted(outcome.inserted, outcome.duplicates);
    if outcome.inserted > 0 {
        state.activity.record(project.id, crate::now_ms());
    }
    tracing::debug!(project = %project.name, inserted = outcome.inserted, duplicates = outcome.duplicates, "batch stored");
    Ok(outcome)
}

/// The media type of a request (`Content-Type` without parameters, lowercase).
pub fn media_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// Refuses (415) a `Content-Type` outside `accepted`.
///
/// # Errors
/// 415 `unsupported_media_type` naming the accepted types.
pub fn check_content_type(headers: &HeaderMap, accepted: &[&str]) -> Result<(), ApiError> {
    let mime = media_type(headers);
    if accepted.contains(&mime.as_str()) {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        format!(
            "content type {mime:?} is not supported: send {}",
            accepted.join(" or ")
        ),
    ))
}

fn too_large(what: &str) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!(
            "request body is larger than {} bytes{what}: send smaller batches",
            limits::MAX_BODY_BYTES
        ),
    )
}

/// Reads a request body of any ingest route: at most [`limits::MAX_BODY_BYTES`] on the wire
/// and, with `Content-Encoding: gzip`, at most that many bytes after decompression. The
/// decompressor stops at the bound, so a gzip bomb is refused after a few megabytes of work.
/// A `Content-Length` above the bound is refused before a byte of the body is read (nor is
/// `100 Continue` sent), and the whole body must arrive within the server's body timeout
/// ([`crate::ServerConfig::body_timeout`], a request extension; the default without one).
///
/// # Errors
/// 413 `payload_too_large`; 415 `unsupported_encoding` for encodings other than `gzip` and
/// `identity`; 400 `invalid_gzip` for a corrupt gzip stream; 400 `invalid_body` for a body
/// whose framing is broken (a malformed chunk, a connection closed early); 408
/// `request_timeout` for a body slower than the timeout; 503 `saturated` when the bodies being
/// read already hold the server's body memory ([`crate::ServerConfig::body_memory`]).
pub async fn read_body(parts: &Parts, body: Body) -> Result<Bytes, ApiError> {
    let headers = &parts.headers;
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase());
    let gzip = match encoding.as_deref() {
        None | Some("identity") | Some("") => false,
        Some("gzip") => true,
        Some(other) => {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_encoding",
                format!("content encoding {other:?} is not supported: send gzip or identity"),
            ));
        }
    };
    // hyper has checked the header's syntax already; a length it accepted and we cannot read
    // is larger than any bound.
    let declared = match headers.get(header::CONTENT_LENGTH) {
        Some(length) => {
            let length = length
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok());
            match length {
                Some(n) if n <= limits::MAX_BODY_BYTES as u64 => n as usize,
                _ => return Err(too_large("")),
            }
        }
        None => limits::MAX_BODY_BYTES,
    };
    let server = parts.extensions.get::<crate::server::BodyLimits>();
    let timeout = server.map_or(crate::server::DEFAULT_BODY_TIMEOUT, |l| l.timeout);
    // Reserved from the memory budget all bodies share while this one is read and
    // decompressed: many clients each holding a large body open cannot exhaust memory.
    let reserve = if gzip { 2 * declared } else { declared };
    let _reserved = match server {
        Some(l) => Some(
            l.memory
                .clone()
                .try_acquire_many_owned(u32::try_from(reserve.div_ceil(1024)).unwrap_or(u32::MAX))
                .map_err(|_| ApiError {
                    retry_after_s: Some(1),
                    ..ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "saturated",
                        "the collector is reading too many request bodies at once: retry in a second",
                    )
                })?,
        ),
        None => None,
    };
    let _reading = crate::server::ReadingBody::start(parts.extensions.get());
    let limited = http_body_util::Limited::new(body, limits::MAX_BODY_BYTES);
    let raw = match tokio::time::timeout(timeout, limited.collect()).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => return Err(too_large("")),
        Ok(Err(e)) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_body",
                format!(
                    "request body cannot be read ({e}): check its framing (Content-Length or chunked encoding)"
                ),
            ));
        }
        Err(_) => {
            return Err(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                format!(
                    "request body did not arrive within {}: send it faster or in smaller batches",
                    humantime::format_duration(timeout)
                ),
            ));
        }
    };
    if !gzip {
        return Ok(raw);
    }
    let mut out = Vec::with_capacity((raw.len() * 4).min(limits::MAX_BODY_BYTES));
    let mut decoder =
        flate2::read::MultiGzDecoder::new(&raw[..]).take(limits::MAX_BODY_BYTES as u64 + 1);
    decoder.read_to_end(&mut out).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_gzip",
            format!("body is not valid gzip ({e}): compress it with gzip or send it plain"),
        )
    })?;
    if out.len() > limits::MAX_BODY_BYTES {
        return Err(too_large(" after decompression"));
    }
    Ok(out.into())
}

/// Checks every event timestamp lies within [`MAX_EVENT_AGE_MS`] before and
/// [`MAX_FUTURE_SKEW_MS`] after `now_ms`.
///
/// # Errors
/// The first event outside the window, by path (`events[3].timestamp`).
pub fn check_timestamps(batch: &Batch, now_ms: i64) -> Result<(), Invalid> {
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

/// How far a forget request's `timestamp` may be from the collector's clock: 10 minutes.
pub const FORGET_SKEW_MS: i64 = 600_000;
/// Most pseudonyms in one forget request.
pub const MAX_FORGET_PSEUDONYMS: usize = 64;

/// Body of `DELETE /v1/installs`: the pseudonyms an install can derive (one per epoch it
/// knows), each with a proof (docs/adr/002-deletion-by-pseudonym.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForgetRequest {
    /// When the request was made (RFC 3339); refused when more than 10 minutes off.
    pub timestamp: optel_wire::Timestamp,
    /// The tool's name as the SDK knows it (its batches' `service`), which the proofs are
    /// bound to; without it, the project's name. The SDK cannot know what the operator named
    /// the project, so it sends this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    /// The installs to forget.
    pub installs: Vec<ForgetProof>,
}

/// One pseudonym and its proof.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForgetProof {
    /// The pseudonym, as sent in batches.
    pub pseudonym: String,
    /// `hex(HMAC-SHA-256(key = pseudonym, "optel forget v1|<tool>|<timestamp>"))`, where
    /// `<tool>` is [`ForgetRequest::tool`] (or the project's name when absent).
    pub proof: String,
}

/// Answer of `DELETE /v1/installs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForgetResponse {
    /// Events deleted.
    pub deleted: u64,
}

/// Handler of `DELETE /v1/installs`: deletes the events of the pseudonyms proven, in the
/// ingest key's project.
pub(crate) async fn delete_installs(
    State(state): State<AppState>,
    IngestKey(project): IngestKey,
    IngestJson(req): IngestJson<ForgetRequest>,
) -> Result<Json<ForgetResponse>, ApiError> {
    let now = now_ms();
    if (req.timestamp.unix_ms() - now).abs() > FORGET_SKEW_MS {
        return Err(ApiError::invalid_field(Invalid {
            field: "timestamp".into(),
            reason: format!(
                "timestamp {} is more than 10 minutes from the collector's clock: check the clock",
                req.timestamp
            ),
        }));
    }
    if req.installs.is_empty() || req.installs.len() > MAX_FORGET_PSEUDONYMS {
        return Err(ApiError::invalid_field(Invalid {
            field: "installs".into(),
            reason: format!(
                "{} installs: send 1 to {MAX_FORGET_PSEUDONYMS}",
                req.installs.len()
            ),
        }));
    }
    let bound = match &req.tool {
        Some(tool) if !optel_wire::is_valid_name(tool) => {
            return Err(ApiError::invalid_field(Invalid {
                field: "tool".into(),
                reason: "tool must be 1 to 64 bytes of [A-Za-z0-9_.:-]".into(),
            }));
        }
        Some(tool) => tool.as_str(),
        None => project.name.as_str(),
    };
    let ts = req.timestamp.to_string();
    let mut pseudonyms = Vec::new();
    for (i, p) in req.installs.iter().enumerate() {
        let expected = optel_wire::forget_proof(&p.pseudonym, bound, &ts);
        if p.pseudonym.is_empty()
            || p.pseudonym.len() > limits::MAX_PSEUDONYM_BYTES
            || !keys::token_matches(&p.proof.to_ascii_lowercase(), &expected)
        {
            return Err(ApiError::invalid_field(Invalid {
                field: format!("installs[{i}].proof"),
                reason: "proof does not match the pseudonym: compute it as documented in docs/adr/002-deletion-by-pseudonym.md".into(),
            }));
        }
        pseudonyms.push(p.pseudonym.clone());
    }
    let store = state.store.clone();
    let id = project.id;
    let deleted = crate::app::blocking(move || store.forget(Some(id), &pseudonyms)).await?;
    tracing::info!(project = %project.name, deleted, "installs forgotten on request");
    Ok(Json(ForgetResponse { deleted }))
}

impl IngestPayload for ForgetRequest {
    const WHAT: &'static str = "a forget request";
}

/// Handler of `OPTIONS /v1/events`: the CORS preflight of a page that sends with `fetch` and a
/// type other than `text/plain` (`navigator.sendBeacon` with `text/plain` needs none). Allowed
/// only for a browser key (`?key=`) and one of its origins.
pub(crate) async fn preflight(
    State(state): State<AppState>,
    parts: Parts,
) -> Result<Response, ApiError> {
    let key = browser_key_param(parts.uri.query())
        .filter(|k| k.starts_with(keys::BROWSER_KEY_PREFIX))
        .ok_or_else(|| ApiError::unauthenticated("a preflight needs `?key=` with a browser key"))?;
    let grant = grant_for(&state, &keys::hash_key(key)).await?;
    let origin = allowed_origin(&parts.headers, &grant)?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    let h = response.headers_mut();
    for (name, value) in [
        (header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.as_str()),
        (header::ACCESS_CONTROL_ALLOW_METHODS, "POST"),
        (header::ACCESS_CONTROL_ALLOW_HEADERS, "content-type"),
        (header::ACCESS_CONTROL_MAX_AGE, "600"),
        (header::VARY, "Origin"),
    ] {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(name, v);
        }
    }
    Ok(response)
}
