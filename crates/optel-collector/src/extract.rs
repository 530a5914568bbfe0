//! Request extractors with typed rejections: what a handler's signature names is checked before
//! its body runs, in argument order, and a refusal is an [`ApiError`] (or, on the OTLP routes,
//! an [`OtlpRejection`] in the request's encoding).
//!
//! Ingest routes refuse as early and as cheaply as possible:
//! 1. per-address rate limit (429 + `Retry-After`), before anything else;
//! 2. ingest key (`Authorization: Bearer optel_ik_…`, 401), then the per-key rate limit
//!    ([`IngestKey`]);
//! 3. content type (415), then the body, read up to [`optel_wire::limits::MAX_BODY_BYTES`]
//!    before and after gzip decompression (413) ([`read_body`]);
//! 4. parsing (400) ([`IngestJson`], [`OtlpExport`]); the handler then validates fields.
//!
//! Refusals of the ingest routes are counted once, by [`count_rejections`], from the
//! [`Rejected`] mark every refusal leaves on its response.

use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use crate::app::AppState;
use crate::error::ApiError;
use crate::ingest::{ClientAddr, admit, check_content_type, read_body};
use crate::keys;
use crate::otlp::{Encoding, OtlpRejection, Signal, decode_bounded};
use crate::storage::Project;

/// The mark a refusal leaves in its response's extensions: its stable error code.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rejected(pub &'static str);

/// Counts every refusal of the routes it wraps in `optel_requests_rejected_total` by its code.
pub(crate) async fn count_rejections(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let response = next.run(req).await;
    if let Some(Rejected(code)) = response.extensions().get::<Rejected>() {
        state.metrics.rejected(code);
    }
    response
}

/// The project of the request's ingest key, after the address and key rate limits (see
/// [`admit`]). A browser key's origin is left in the request's extensions
/// ([`BrowserOrigin`]) for the body extractor.
#[derive(Debug, Clone)]
pub(crate) struct IngestKey(pub Project);

/// The `Origin` of a request admitted by a browser key.
#[derive(Debug, Clone)]
pub(crate) struct BrowserOrigin;

impl FromRequestParts<AppState> for IngestKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Ok(ClientAddr(addr)) = ClientAddr::from_request_parts(parts, state).await;
        let admitted = admit(state, addr, parts).await?;
        if admitted.browser_origin.is_some() {
            parts.extensions.insert(BrowserOrigin);
        }
        Ok(Self(admitted.project))
    }
}

/// CORS for browser keys on `POST /v1/events`: a request with `?key=` and an `Origin` gets
/// `Access-Control-Allow-Origin` back unless it was refused before its origin was found
/// allowed (an unknown key, an origin not allowed, a route a browser key may not use), so a
/// page can read its answers and a page of another origin cannot.
pub(crate) async fn cors(req: Request, next: Next) -> Response {
    let origin = crate::ingest::browser_key_param(req.uri().query())
        .and(req.headers().get(header::ORIGIN).cloned());
    let mut response = next.run(req).await;
    let refused_origin = matches!(
        response.extensions().get::<Rejected>(),
        Some(Rejected(
            "unauthenticated" | "origin_not_allowed" | "browser_key_scope"
        ))
    );
    if let (Some(origin), false) = (origin, refused_origin) {
        let h = response.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        h.insert(header::VARY, HeaderValue::from_static("Origin"));
    }
    response
}

/// A valid admin token (`Authorization: Bearer <admin token>`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct AdminToken;

impl FromRequestParts<AppState> for AdminToken {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        require_admin(state, &parts.headers).map(|()| Self)
    }
}

fn require_admin(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(expected) = &state.admin_token else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "queries_disabled",
            "query routes are disabled: start the collector with --admin-token or OPTEL_ADMIN_TOKEN",
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(keys::bearer)
        .ok_or_else(|| ApiError::unauthenticated("send `Authorization: Bearer <admin token>`"))?;
    if keys::token_matches(given, expected) {
        Ok(())
    } else {
        Err(ApiError::unauthenticated("admin token is not valid"))
    }
}

/// A JSON request body of an ingest route that names what it should be, for its error text.
pub(crate) trait IngestPayload: DeserializeOwned {
    /// What the body should be, e.g. "an optel batch".
    const WHAT: &'static str;
}

impl IngestPayload for optel_wire::Batch {
    const WHAT: &'static str = "an optel batch";
}

/// A JSON body (`Content-Type: application/json`, gzip allowed), bounded and parsed.
#[derive(Debug)]
pub(crate) struct IngestJson<T>(pub T);

impl<T: IngestPayload> FromRequest<AppState> for IngestJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _: &AppState) -> Result<Self, ApiError> {
        let (parts, body) = req.into_parts();
        // A page sends `text/plain`, a CORS-safelisted type that needs no preflight
        // (`navigator.sendBeacon`); only a browser key's requests may.
        let accepted: &[&str] = if parts.extensions.get::<BrowserOrigin>().is_some() {
            &["application/json", "text/plain"]
        } else {
            &["application/json"]
        };
        check_content_type(&parts.headers, accepted)?;
        let bytes = read_body(&parts, body).await?;
        serde_json::from_slice(&bytes).map(Self).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_json",
                format!("body is not {}: {e}", T::WHAT),
            )
        })
    }
}

/// An OTLP export request of any signal: the ingest key's project, then the body in protobuf
/// or JSON (gzip allowed), bounded and decoded. Refusals answer in the request's encoding.
#[derive(Debug)]
pub(crate) struct OtlpExport<T> {
    /// The ingest key's project.
    pub project: Project,
    /// The encoding the answer must use.
    pub encoding: Encoding,
    /// The decoded request.
    pub request: T,
}

impl<T: Signal> FromRequest<AppState> for OtlpExport<T> {
    type Rejection = OtlpRejection;

    async fn from_request(req: Request<Body>, state: &AppState) -> Result<Self, OtlpRejection> {
        let (mut parts, body) = req.into_parts();
        let encoding = Encoding::of(&parts.headers);
        let answer_in = encoding.unwrap_or(Encoding::Json);
        let reject = |error| OtlpRejection {
            error,
            encoding: answer_in,
        };
        let IngestKey(project) = IngestKey::from_request_parts(&mut parts, state)
            .await
            .map_err(reject)?;
        let encoding = encoding.ok_or_else(|| reject(Encoding::unsupported(&parts.headers)))?;
        let bytes = read_body(&parts, body).await.map_err(reject)?;
        // Bounded and off the async workers (`otlp::limit`, `otlp::decode_bounded`).
        let request = decode_bounded(bytes, encoding).await.map_err(reject)?;
        Ok(Self {
            project,
            encoding,
            request,
        })
    }
}

impl IntoResponse for OtlpRejection {
    fn into_response(self) -> Response {
        crate::otlp::error_response(self.error, self.encoding)
    }
}
