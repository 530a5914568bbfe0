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
//!
//! # Durability
//! A 2xx answer to an ingest request means its events are committed: the group-commit
//! writer answers each request only after the transaction holding it commits.
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

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
pub use keys::{INGEST_KEY_PREFIX, generate_ingest_key, hash_key};
pub use query::{now_ms, parse_lookback};
pub use ratelimit::RateConfig;
pub use server::serve;
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub use server::serve_tls;
pub use writer::DEFAULT_QUEUE;
