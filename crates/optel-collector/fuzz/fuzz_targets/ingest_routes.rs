//! The collector's ingest routes on arbitrary bodies, through the real router over SQLite:
//! `POST /v1/events` (JSON), and OTLP `/v1/traces`, `/v1/metrics`, `/v1/logs` in protobuf or
//! JSON, plain or gzip-labelled. The first byte of the input picks the route and encoding, the
//! rest is the body. Whatever the body, the answer is never a 5xx: bad input is a 4xx.
#![no_main]

use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::http::Request;
use libfuzzer_sys::fuzz_target;
use optel_collector::storage::{SqliteStore, Store};
use optel_collector::{AppState, RateConfig, app};
use tower::ServiceExt as _;

struct Fixture {
    rt: tokio::runtime::Runtime,
    state: AppState,
    key: String,
    _dir: tempfile::TempDir,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).expect("store"));
        let key = optel_collector::generate_ingest_key().expect("key");
        store
            .create_project(
                "fuzz",
                &optel_collector::hash_key(&key),
                optel_collector::now_ms(),
            )
            .expect("project");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let state = rt.block_on(async {
            AppState::with_config(
                store,
                None,
                RateConfig {
                    per_key: 0,
                    per_addr: 0,
                    per_browser_key: 0,
                },
                64,
            )
            .expect("state")
        });
        Fixture {
            rt,
            state,
            key,
            _dir: dir,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let f = fixture();
    let (path, content_type) = match pick % 7 {
        0 => ("/v1/events", "application/json"),
        1 => ("/v1/traces", "application/x-protobuf"),
        2 => ("/v1/metrics", "application/x-protobuf"),
        3 => ("/v1/logs", "application/x-protobuf"),
        4 => ("/v1/traces", "application/json"),
        5 => ("/v1/metrics", "application/json"),
        _ => ("/v1/logs", "application/json"),
    };
    let mut req = Request::post(path)
        .header("authorization", format!("Bearer {}", f.key))
        .header("content-type", content_type);
    if pick & 0x80 != 0 {
        req = req.header("content-encoding", "gzip");
    }
    let req = req.body(Body::from(body.to_vec())).expect("request");
    let status =
        f.rt.block_on(app(f.state.clone()).oneshot(req))
            .expect("infallible")
            .status();
    assert!(!status.is_server_error(), "{path} {content_type}: {status}");
});
