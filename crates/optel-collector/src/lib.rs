//! The optel collector as a library: the HTTP routes ([`app`]), validation, storage
//! ([`storage::Store`], [`storage::SqliteStore`]) and the stats query ([`query::Stats`]).
//!
//! # Routes
//! | route | auth | what |
//! |---|---|---|
//! | `POST /v1/events` | ingest key (`Authorization: Bearer optel_ik_…`) | store an optel batch ([`optel_wire::Batch`]) |
//! | `POST /v1/traces`, `/v1/metrics`, `/v1/logs` | ingest key | OTLP/HTTP, protobuf or JSON (`docs/otlp.md` in the repository) |
//! | `DELETE /v1/installs` | ingest key + proof | delete an install's events (`docs/adr/002-deletion-by-pseudonym.md`) |
//! | `GET /v1/projects`, `/v1/projects/{p}/{view}` | admin token | query API ([`query`], `docs/query-api.md`) |
//! | `GET /public/v1/projects/{p}/{view}` | none, public projects only | k-anonymous query API |
//! | `GET /openapi.json` | none | OpenAPI description of all routes |
//! | `GET /v1/metrics/usage` | admin token | usage metrics per project, Prometheus text format ([`query::usage_metrics`]) |
//! | `GET /healthz`, `/readyz`, `/metrics` | none | liveness, database reachable, Prometheus |
//! | `GET /`, `/public/{p}`, `/assets/…` | none (the page reads the query API) | web dashboard |
//!
//! # Untrusted input
//! Every request may be hostile. Bodies are read up to [`optel_wire::limits::MAX_BODY_BYTES`]
//! before and after gzip decompression (413 past that), parsed, and validated field by field
//! against [`optel_wire::limits`] (400 naming the field) before anything is stored; rate limits
//! answer 429 and a full writer queue 503, both with `Retry-After`. Errors answer with a JSON
//! [`optel_wire::ErrorBody`]; the cause of a server-side failure goes to the log only. Client
//! addresses are held in memory by the rate limiter only, never stored. An OTLP body is scanned
//! before it is decoded (more than 20,000 items or 200,000 messages: 413 `too_many_items`), and
//! decoded and mapped on blocking threads, as many at once as the machine has cores. Every
//! ingest path passes one privacy filter before anything is stored: identifying attribute keys
//! dropped, an allow-list of keys, every stored string redacted, platform names normalised
//! (`PRIVACY.md`, `docs/otlp.md`).
//!
//! # Features
//! | feature | default | what |
//! |---|---|---|
//! | `tls` | off (on in the `optel` binary) | HTTPS: `serve_tls` and the `tls` module (rustls, `ring` provider) |
//! | `otlp-grpc` | off | OTLP/gRPC ingest on a second port (`grpc::serve_otlp_grpc`, tonic): same keys, limits, mapping and privacy filter as OTLP/HTTP |
//!
//! Connections are bounded too ([`ServerConfig`]): the request head must arrive within the
//! header timeout, the body within the body timeout (408), a TLS handshake within its own; a
//! `Content-Length` above the limit is refused (413) before the body is read, a body with
//! broken framing is 400 `invalid_body`. Connections are capped below the open-file limit, and
//! at the cap the oldest idle connection gives way, so idle clients cannot starve the others.
//!
//! # Durability
//! A 2xx answer to an ingest request means its events are committed: the group-commit
//! writer answers each request only after the transaction holding it commits. What the commit
//! survives is [`storage::Durability`]: a crash of the collector by default, also an OS crash
//! or power cut with [`storage::Durability::Fsync`] (`docs/adr/006-durability.md`). A batch
//! that fails (its project deleted meanwhile) fails alone, never the others of its group.
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod alerts;
mod api;
mod app;
mod dashboard;
mod error;
mod extract;
mod ingest;
mod keys;
mod metrics;
mod otlp;
mod privacy;
pub mod query;
mod ratelimit;
pub mod rollup;
mod server;
pub mod storage;
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub mod tls;
mod writer;

pub use app::{AppState, DEFAULT_K_ANONYMITY, app};
pub use ingest::KEY_CACHE_TTL;
pub use keys::{
    BROWSER_KEY_PREFIX, INGEST_KEY_PREFIX, check_origin, generate_browser_key, generate_ingest_key,
    hash_key,
};
pub use query::{now_ms, parse_lookback};
pub use ratelimit::RateConfig;
pub use server::{
    DEFAULT_BODY_MEMORY, DEFAULT_BODY_TIMEOUT, DEFAULT_HEADER_TIMEOUT, DEFAULT_MAX_CONNECTIONS,
    DEFAULT_SHUTDOWN_TIMEOUT, DEFAULT_TLS_HANDSHAKE_TIMEOUT, FD_HEADROOM, SLOW_BODY_GRACE,
    ServerConfig, serve, serve_with_config,
};
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub use server::{serve_tls, serve_tls_with_config};
pub use writer::DEFAULT_QUEUE;

/// OTLP/gRPC ingest on a port of its own (feature `otlp-grpc`, `docs/adr/016-otlp-grpc.md`).
#[cfg(feature = "otlp-grpc")]
#[cfg_attr(docsrs, doc(cfg(feature = "otlp-grpc")))]
pub mod grpc {
    pub use crate::otlp::grpc::{
        GrpcConfig, LOGS_METHOD, METRICS_METHOD, TRACES_METHOD, serve_otlp_grpc,
    };
}
