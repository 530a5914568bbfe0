//! The web dashboard: a single page served at `/` (and read-only at `/public/{project}` for
//! projects marked public), with its assets embedded in the binary. It needs no CDN and works
//! offline: every byte it loads comes from this module.
//!
//! The page itself holds no data. It reads the query API (`docs/query-api.md`) from the browser:
//! with the admin token, which the user types into the sign-in form and which the page keeps in
//! `sessionStorage` (never in a URL, a cookie or a log), or without a token from the
//! `/public/v1/...` routes of a public project.
//!
//! Charts are drawn by Chart.js ([`CHART_JS_VERSION`], MIT), vendored as its minified UMD build
//! in `crates/optel-collector/dashboard/vendor/`; see `docs/adr/005-dashboard-charts.md` for why
//! and how to update it.
//!
//! # Routes
//! | route | what |
//! |---|---|
//! | `GET /` | the dashboard (sign-in, project picker, panels) |
//! | `GET /public/{project}` | the same page, read-only, for a public project |
//! | `GET /assets/{file}` | `app.js`, `app.css`, `icon.svg`, `chart.umd.min.js` |
//!
//! Every answer carries a strict `Content-Security-Policy` (scripts, styles and data only from
//! this origin, no framing), `X-Content-Type-Options: nosniff`, `Referrer-Policy: no-referrer`,
//! and a strong `ETag` so that browsers revalidate cheaply (`Cache-Control: no-cache`).

use std::sync::OnceLock;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

/// Version of the vendored Chart.js build (`dashboard/vendor/chart.umd.min.js`).
#[cfg_attr(not(test), allow(dead_code))] // read by the test that checks the vendored file
pub(crate) const CHART_JS_VERSION: &str = "4.6.1";

/// One embedded file.
#[derive(Debug)]
struct Asset {
    body: &'static [u8],
    content_type: &'static str,
}

const INDEX: Asset = Asset {
    body: include_bytes!("../dashboard/index.html"),
    content_type: "text/html; charset=utf-8",
};
const APP_JS: Asset = Asset {
    body: include_bytes!("../dashboard/app.js"),
    content_type: "text/javascript; charset=utf-8",
};
const APP_CSS: Asset = Asset {
    body: include_bytes!("../dashboard/app.css"),
    content_type: "text/css; charset=utf-8",
};
const ICON: Asset = Asset {
    body: include_bytes!("../dashboard/icon.svg"),
    content_type: "image/svg+xml",
};
const CHART_JS: Asset = Asset {
    body: include_bytes!("../dashboard/vendor/chart.umd.min.js"),
    content_type: "text/javascript; charset=utf-8",
};

/// Content-Security-Policy of every dashboard answer: nothing from another origin, no inline
/// script, no framing (clickjacking), no form posts elsewhere.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; font-src 'self'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The dashboard's routes, to merge into the collector's router (see [`crate::app`]).
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|h: HeaderMap| async move { serve(&INDEX, &h) }))
        .route(
            "/public/{project}",
            get(|h: HeaderMap| async move { serve(&INDEX, &h) }),
        )
        .route(
            "/assets/app.js",
            get(|h: HeaderMap| async move { serve(&APP_JS, &h) }),
        )
        .route(
            "/assets/app.css",
            get(|h: HeaderMap| async move { serve(&APP_CSS, &h) }),
        )
        .route(
            "/assets/icon.svg",
            get(|h: HeaderMap| async move { serve(&ICON, &h) }),
        )
        .route(
            "/assets/chart.umd.min.js",
            get(|h: HeaderMap| async move { serve(&CHART_JS, &h) }),
        )
}

/// A strong ETag of the embedded assets, computed once: they change only with the binary.
fn etag() -> &'static HeaderValue {
    static ETAG: OnceLock<HeaderValue> = OnceLock::new();
    ETAG.get_or_init(|| {
        let mut h = Sha256::new();
        for a in [&INDEX, &APP_JS, &APP_CSS, &ICON, &CHART_JS] {
            h.update(a.body);
        }
        let digest = hex::encode(&h.finalize()[..12]);
        HeaderValue::from_str(&format!("\"{digest}\""))
            .unwrap_or_else(|_| HeaderValue::from_static("\"optel\""))
    })
}

fn serve(asset: &'static Asset, request: &HeaderMap) -> Response {
    let etag = etag();
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes());
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(asset.content_type),
            )],
            asset.body,
        )
            .into_response()
    };
    let h = response.headers_mut();
    h.insert(header::ETAG, etag.clone());
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vendored_chart_js_is_the_recorded_version() {
        let head = std::str::from_utf8(&CHART_JS.body[..200]).unwrap();
        assert!(
            head.contains(&format!("Chart.js v{CHART_JS_VERSION}")),
            "vendored chart.umd.min.js does not match CHART_JS_VERSION: {head}"
        );
    }

    #[test]
    fn page_loads_nothing_from_other_origins() {
        let index = std::str::from_utf8(INDEX.body).unwrap();
        for needle in ["http://", "https://", "//cdn", "<script>", "style=\""] {
            assert!(!index.contains(needle), "index.html contains {needle:?}");
        }
        for src in [
            "/assets/chart.umd.min.js",
            "/assets/app.js",
            "/assets/app.css",
        ] {
            assert!(index.contains(src), "index.html does not load {src}");
        }
        let app = std::str::from_utf8(APP_JS.body).unwrap();
        assert!(
            !app.contains("localStorage"),
            "the token must stay in sessionStorage"
        );
        assert!(app.contains("sessionStorage"));
    }
}
