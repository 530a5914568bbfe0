//! Behaviour tests of the collector: the same storage and HTTP suite runs against SQLite and
//! against the real PostgreSQL (`OPTEL_TEST_DATABASE_URL`, default
//! `host=127.0.0.1 user=postgres dbname=test`), each test in its own fresh schema.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers: failing loudly is the point

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode};
use optel_collector::RateConfig;
use optel_collector::query::DpSettings;
use optel_collector::storage::{PgStore, SqliteStore, Store};
use optel_collector::{AppState, app, now_ms};
use optel_wire::{Batch, Event, EventType, Timestamp};
use serde_json::Value;
use tower::ServiceExt;

const ADMIN: &str = "admin-secret";

/// A store for one test, and what to clean up after it.
struct TestStore {
    store: Arc<dyn Store>,
    pg: Option<Arc<PgStore>>,
    _dir: Option<tempfile::TempDir>,
}

impl Drop for TestStore {
    fn drop(&mut self) {
        if let Some(pg) = &self.pg {
            let _ = pg.drop_schema();
        }
    }
}

fn sqlite() -> TestStore {
    let dir = tempfile::tempdir().unwrap();
    TestStore {
        store: Arc::new(SqliteStore::open(dir.path()).unwrap()),
        pg: None,
        _dir: Some(dir),
    }
}

/// The test database: `OPTEL_TEST_DATABASE_URL`, default `host=127.0.0.1 user=postgres dbname=test`.
fn pg_url() -> String {
    std::env::var("OPTEL_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "host=127.0.0.1 user=postgres dbname=test".into())
}

fn postgres() -> TestStore {
    static N: AtomicU64 = AtomicU64::new(0);
    let url = pg_url();
    let schema = format!(
        "optel_t{}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        now_ms() % 1_000_000
    );
    let pg = Arc::new(
        PgStore::connect_in_schema(&url, Some(&schema)).unwrap_or_else(|e| {
            panic!(
                "PostgreSQL at {url:?} is needed for these tests (set OPTEL_TEST_DATABASE_URL): {e}"
            )
        }),
    );
    TestStore {
        store: pg.clone(),
        pg: Some(pg),
        _dir: None,
    }
}

fn state(store: &Arc<dyn Store>) -> AppState {
    AppState::with_config(
        store.clone(),
        Some(ADMIN.into()),
        RateConfig {
            per_key: 0,
            per_addr: 0,
            per_browser_key: 0,
        },
        64,
    )
    .unwrap()
}

fn project(store: &dyn Store, name: &str) -> String {
    let key = optel_collector::generate_ingest_key().unwrap();
    store
        .create_project(name, &optel_collector::hash_key(&key), now_ms())
        .unwrap();
    key
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

static UUIDS: AtomicU64 = AtomicU64::new(1);

fn uuid() -> String {
    let n = UUIDS.fetch_add(1, Ordering::Relaxed);
    format!("{:08x}-0000-4000-8000-{:012x}", std::process::id(), n)
}

fn pseudonym(i: u32) -> String {
    format!("{:032x}", u128::from(i) + 0xabc0_0000)
}

/// A batch of `install` with `n` commands named `cmd`, every third failing with `E_X`.
fn batch(install: u32, cmd: &str, n: usize) -> Batch {
    let mut b = Batch::new("acme", "1.2.0", pseudonym(install), "linux", "x86_64");
    let session = uuid();
    for i in 0..n {
        let mut e = Event::new(
            uuid(),
            EventType::Command,
            cmd,
            // A minute ago, but never yesterday: DAU counts today's installs (regression: this
            // test failed when run in the first minute after midnight UTC).
            Timestamp::from_unix_ms(now_ms() - (now_ms() % 86_400_000).min(60_000)),
            session.clone(),
        );
        e.duration_ms = Some(100 * (i as u64 + 1));
        e.success = Some(i % 3 != 2);
        if i % 3 == 2 {
            e.error_code = Some("E_X".into());
        }
        b.events.push(e);
    }
    b
}

async fn call(
    state: &AppState,
    method: &str,
    uri: &str,
    auth: Option<&str>,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(a) = auth {
        req = req.header("authorization", format!("Bearer {a}"));
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = app(state.clone())
        .oneshot(req.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = to_bytes(resp.into_body(), 64 << 20).await.unwrap().to_vec();
    (status, headers, bytes)
}

async fn post_batch(state: &AppState, key: &str, b: &Batch) -> (StatusCode, Value) {
    let (s, _, body) = call(
        state,
        "POST",
        "/v1/events",
        Some(key),
        &[("content-type", "application/json")],
        serde_json::to_vec(b).unwrap(),
    )
    .await;
    (s, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

async fn get_json(state: &AppState, uri: &str, auth: Option<&str>) -> (StatusCode, Value) {
    let (s, _, body) = call(state, "GET", uri, auth, &[], Vec::new()).await;
    (s, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

// ---------------------------------------------------------------------------------------------
// The suite, run once per backend.

fn ingest_is_idempotent_and_feeds_rollups(t: TestStore) {
    let key = project(&*t.store, "acme");
    let st = state(&t.store);
    let b = batch(1, "build", 6);
    rt().block_on(async {
        let (s, v) = post_batch(&st, &key, &b).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["accepted"], 6);
        assert_eq!(v["duplicates"], 0);
        // A retry of the same batch (e.g. after a lost answer) is not counted twice.
        let (s, v) = post_batch(&st, &key, &b).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(v["duplicates"], 6);
        // Gzip'd bodies are accepted too.
        let b2 = batch(2, "test", 3);
        let (s, _, body) = call(
            &st,
            "POST",
            "/v1/events",
            Some(&key),
            &[
                ("content-type", "application/json"),
                ("content-encoding", "gzip"),
            ],
            gzip(&serde_json::to_vec(&b2).unwrap()),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&body));

        let (s, ov) = get_json(&st, "/v1/projects/acme/overview?since=2d", Some(ADMIN)).await;
        assert_eq!(s, StatusCode::OK, "{ov}");
        assert_eq!(ov["events"], 9);
        assert_eq!(ov["invocations"], 9);
        assert_eq!(ov["failures"], 3);
        assert_eq!(ov["active_installs"], 2);
        assert_eq!(ov["dau"], 2);
        assert_eq!(ov["mau"], 2);
        let (_, c) = get_json(&st, "/v1/projects/acme/commands?since=2d", Some(ADMIN)).await;
        let build = &c["commands"][0];
        assert_eq!(build["name"], "build");
        assert_eq!(build["count"], 6);
        assert_eq!(build["failures"], 2);
        assert_eq!(build["installs"], 1);
        assert!((build["failure_rate"].as_f64().unwrap() - 1.0 / 3.0).abs() < 1e-9);
        // Durations 100..600 ms: p50 ~300, p95 ~600 (histogram within 12.5 %).
        let p50 = build["p50_ms"].as_u64().unwrap();
        let p95 = build["p95_ms"].as_u64().unwrap();
        assert!((262..=338).contains(&p50), "p50 {p50}");
        assert!((525..=675).contains(&p95), "p95 {p95}");
        let (_, e) = get_json(&st, "/v1/projects/acme/errors?since=2d", Some(ADMIN)).await;
        assert_eq!(e["errors"][0]["command"], "build");
        assert_eq!(e["errors"][0]["error_code"], "E_X");
        assert_eq!(e["errors"][0]["count"], 2);
        let (_, s) = get_json(&st, "/v1/projects/acme/stats?since=2d", Some(ADMIN)).await;
        assert_eq!(s["events"], 9);
        assert_eq!(s["active_installs"], 2);
        assert_eq!(s["commands"][0]["count"], 6);
    });
    let p = t.store.project_by_name("acme").unwrap().unwrap();
    let stats = t
        .store
        .stats(
            &p,
            optel_collector::query::TimeRange::last(
                std::time::Duration::from_secs(86_400),
                now_ms(),
            ),
        )
        .unwrap();
    assert_eq!(stats.events, 9);
}

fn query_api_follows_the_contract(t: TestStore) {
    let key = project(&*t.store, "acme");
    let st = state(&t.store);
    rt().block_on(async {
        let mut b = batch(1, "build", 2);
        let mut f = Event::new(
            uuid(),
            EventType::Feature,
            "cache",
            Timestamp::from_unix_ms(now_ms() - 1000),
            uuid(),
        );
        f.metadata.clear();
        b.events.push(f);
        b.events.push(Event::new(
            uuid(),
            EventType::Method,
            "Db::connect",
            Timestamp::from_unix_ms(now_ms() - 1000),
            uuid(),
        ));
        assert_eq!(post_batch(&st, &key, &b).await.0, StatusCode::OK);

        let (s, v) = get_json(&st, "/v1/projects", Some(ADMIN)).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(v["projects"][0]["name"], "acme");
        assert_eq!(v["projects"][0]["public"], false);
        assert!(v["projects"][0]["created"].as_str().unwrap().ends_with('Z'));

        let (_, ts) = get_json(&st, "/v1/projects/acme/timeseries?since=7d", Some(ADMIN)).await;
        assert_eq!(ts["granularity"], "day");
        let buckets = ts["buckets"].as_array().unwrap();
        assert!(
            buckets.len() == 7 || buckets.len() == 8,
            "{}",
            buckets.len()
        );
        assert_eq!(
            buckets
                .iter()
                .map(|b| b["events"].as_u64().unwrap())
                .sum::<u64>(),
            4
        );
        assert_eq!(
            buckets[0]["events"], 0,
            "empty buckets are present with zeros"
        );
        let (_, ts) = get_json(
            &st,
            "/v1/projects/acme/timeseries?since=30d&granularity=week",
            Some(ADMIN),
        )
        .await;
        assert_eq!(ts["granularity"], "week");
        assert!((5..=6).contains(&ts["buckets"].as_array().unwrap().len()));

        let (_, v) = get_json(&st, "/v1/projects/acme/versions?since=7d", Some(ADMIN)).await;
        assert_eq!(v["versions"][0]["version"], "1.2.0");
        assert_eq!(v["versions"][0]["installs"], 1);
        assert_eq!(v["versions"][0]["events"], 4);
        assert!(!v["buckets"].as_array().unwrap().is_empty());
        let (_, v) = get_json(&st, "/v1/projects/acme/platforms", Some(ADMIN)).await;
        assert_eq!(v["platforms"][0]["os"], "linux");
        assert_eq!(v["platforms"][0]["arch"], "x86_64");
        let (_, v) = get_json(&st, "/v1/projects/acme/features", Some(ADMIN)).await;
        assert_eq!(v["features"][0]["name"], "cache");
        assert_eq!(v["features"][0]["count"], 1);
        assert_eq!(v["methods"][0]["name"], "Db::connect");

        let from_to =
            "/v1/projects/acme/overview?from=2026-01-01T00:00:00Z&to=2026-01-08T00:00:00Z";
        let (s, v) = get_json(&st, from_to, Some(ADMIN)).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(v["from"], "2026-01-01T00:00:00.000Z");
        assert_eq!(v["events"], 0);

        for (uri, field) in [
            ("/v1/projects/acme/overview?since=soon", "since"),
            ("/v1/projects/acme/overview?from=2026-01-01T00:00:00Z", "to"),
            (
                "/v1/projects/acme/overview?from=2020-01-01T00:00:00Z&to=2026-01-01T00:00:00Z",
                "to",
            ),
            (
                "/v1/projects/acme/timeseries?granularity=hour",
                "granularity",
            ),
        ] {
            let (s, v) = get_json(&st, uri, Some(ADMIN)).await;
            assert_eq!(s, StatusCode::BAD_REQUEST, "{uri}");
            assert_eq!(v["error"]["code"], "invalid_query");
            assert_eq!(v["error"]["field"], field, "{uri}");
        }
        assert_eq!(
            get_json(&st, "/v1/projects/nope/overview", Some(ADMIN))
                .await
                .0,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            get_json(&st, "/v1/projects/acme/overview", None).await.0,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            get_json(&st, "/v1/projects/acme/overview", Some("wrong"))
                .await
                .0,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            get_json(&st, "/v1/projects/acme/overview", Some(&key))
                .await
                .0,
            StatusCode::UNAUTHORIZED
        );
        let (s, v) = get_json(&st, "/openapi.json", None).await;
        assert_eq!(s, StatusCode::OK);
        assert!(v["paths"]["/v1/projects/{project}/commands"].is_object());
        assert_eq!(get_json(&st, "/readyz", None).await.0, StatusCode::OK);
        let (s, _, m) = call(&st, "GET", "/metrics", None, &[], vec![]).await;
        assert_eq!(s, StatusCode::OK);
        let m = String::from_utf8(m).unwrap();
        assert!(m.contains("optel_events_accepted_total 4"), "{m}");
        assert!(m.contains("optel_writer_queue_depth 0"));
    });
}

fn public_view_hides_small_cells(t: TestStore) {
    let key = project(&*t.store, "acme");
    let st = state(&t.store);
    rt().block_on(async {
        // `build` by 6 installs, `secret` by 2: with k = 5 only `build` may show.
        for i in 0..6 {
            assert_eq!(
                post_batch(&st, &key, &batch(i, "build", 1)).await.0,
                StatusCode::OK
            );
        }
        for i in 0..2 {
            assert_eq!(
                post_batch(&st, &key, &batch(i, "secret", 1)).await.0,
                StatusCode::OK
            );
        }
        // Not public yet: 404, exactly as an unknown project.
        let (s, _) = get_json(&st, "/public/v1/projects/acme/commands", None).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
    });
    t.store.set_public("acme", true).unwrap();
    rt().block_on(async {
        let (s, v) = get_json(&st, "/public/v1/projects/acme/commands", None).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let names: Vec<&str> = v["commands"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["build"]);
        assert_eq!(v["suppressed_rows"], 1);
        assert_eq!(v["k"], 5);
        let (_, v) = get_json(&st, "/public/v1/projects/acme/overview", None).await;
        assert_eq!(v["active_installs"], 6);
        assert_eq!(v["suppressed"], false);
        let (_, v) = get_json(&st, "/public/v1/projects/acme/timeseries", None).await;
        let buckets = v["buckets"].as_array().unwrap();
        assert!(
            buckets
                .iter()
                .any(|b| b["suppressed"] == true && b["events"].is_null())
        );
        assert!(buckets.iter().any(|b| b["active_installs"] == 6));
        let (_, v) = get_json(&st, "/public/v1/projects/acme/errors", None).await;
        assert_eq!(v["errors"].as_array().unwrap().len(), 0);
        assert_eq!(
            get_json(&st, "/public/v1/projects/acme/stats", None)
                .await
                .0,
            StatusCode::NOT_FOUND
        );
    });
}

fn forget_and_purge_delete_data(t: TestStore) {
    let key = project(&*t.store, "acme");
    let st = state(&t.store);
    rt().block_on(async {
        assert_eq!(post_batch(&st, &key, &batch(1, "build", 3)).await.0, StatusCode::OK);
        assert_eq!(post_batch(&st, &key, &batch(2, "build", 2)).await.0, StatusCode::OK);
        let ts = Timestamp::now().to_string();
        let p1 = pseudonym(1);
        let body = |proof: String| {
            serde_json::to_vec(&serde_json::json!({"timestamp": ts, "installs": [{"pseudonym": p1, "proof": proof}]})).unwrap()
        };
        let ct = [("content-type", "application/json")];
        let (s, _, b) = call(&st, "DELETE", "/v1/installs", Some(&key), &ct, body("00".repeat(32))).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{}", String::from_utf8_lossy(&b));
        // The SDK binds its proofs to the tool's name, which need not be the project's.
        let for_tool = |tool: &str| {
            let proof = optel_wire::forget_proof(&p1, "acme-cli", &ts);
            serde_json::to_vec(&serde_json::json!({"timestamp": ts, "tool": tool, "installs": [{"pseudonym": p1, "proof": proof}]})).unwrap()
        };
        let (s, _, b) = call(&st, "DELETE", "/v1/installs", Some(&key), &ct, for_tool("acme")).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{}", String::from_utf8_lossy(&b));
        assert!(String::from_utf8_lossy(&b).contains("installs[0].proof"));
        let (s, _, b) = call(&st, "DELETE", "/v1/installs", Some(&key), &ct, for_tool("acme cli")).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{}", String::from_utf8_lossy(&b));
        assert!(String::from_utf8_lossy(&b).contains("\"tool\""), "{}", String::from_utf8_lossy(&b));
        let (s, _, b) = call(&st, "DELETE", "/v1/installs", Some(&key), &ct, for_tool("acme-cli")).await;
        assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
        let v: Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["deleted"], 3);
        // Without `tool`, the project's name: nothing of p1 is left to delete.
        let proof = optel_wire::forget_proof(&p1, "acme", &ts);
        let (s, _, b) = call(&st, "DELETE", "/v1/installs", Some(&key), &ct, body(proof)).await;
        assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
        let v: Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["deleted"], 0);
        let (_, ov) = get_json(&st, "/v1/projects/acme/overview", Some(ADMIN)).await;
        assert_eq!(ov["events"], 2);
        assert_eq!(ov["active_installs"], 1, "the forgotten install no longer counts");
    });
    assert_eq!(t.store.forget(None, &[pseudonym(2)]).unwrap(), 2);
    let done = t.store.purge_before(now_ms() + 2 * 86_400_000).unwrap();
    assert!(done.rollup_rows > 0);
    let p = t.store.project_by_name("acme").unwrap().unwrap();
    assert!(
        t.store
            .counts(
                p.id,
                optel_collector::rollup::DayRange {
                    first: 0,
                    last: i64::MAX / 2
                }
            )
            .unwrap()
            .is_empty()
    );
    assert!(t.store.delete_project("acme").unwrap());
    assert!(t.store.project_by_name("acme").unwrap().is_none());
}

fn keys_are_scoped_and_revocable(t: TestStore) {
    let key_a = project(&*t.store, "a");
    let _key_b = project(&*t.store, "b");
    let extra = optel_collector::generate_ingest_key().unwrap();
    t.store
        .add_key("b", &optel_collector::hash_key(&extra), now_ms())
        .unwrap();
    assert!(t.store.add_key("nope", "x", now_ms()).is_err());
    let st = state(&t.store);
    rt().block_on(async {
        // Key of `a` writes to `a` only.
        assert_eq!(
            post_batch(&st, &key_a, &batch(1, "build", 1)).await.0,
            StatusCode::OK
        );
        assert_eq!(
            post_batch(&st, &extra, &batch(1, "build", 2)).await.0,
            StatusCode::OK
        );
        let (_, a) = get_json(&st, "/v1/projects/a/overview", Some(ADMIN)).await;
        let (_, b) = get_json(&st, "/v1/projects/b/overview", Some(ADMIN)).await;
        assert_eq!(a["events"], 1);
        assert_eq!(b["events"], 2);
    });
    assert!(
        t.store
            .revoke_key(&optel_collector::hash_key(&extra), now_ms())
            .unwrap()
    );
    assert!(
        !t.store
            .revoke_key(&optel_collector::hash_key(&extra), now_ms())
            .unwrap()
    );
    // A fresh state (no cached key) refuses the revoked key.
    let st = state(&t.store);
    rt().block_on(async {
        assert_eq!(
            post_batch(&st, &extra, &batch(1, "build", 1)).await.0,
            StatusCode::UNAUTHORIZED
        );
    });
}

fn otlp_ingest_maps_spans_metrics_and_logs(t: TestStore) {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use prost::Message;
    let key = project(&*t.store, "acme");
    let st = state(&t.store);
    let now_ns = (now_ms() as u64 - 5_000) * 1_000_000;
    let traces = serde_json::json!({
        "resourceSpans": [{
            "resource": {"attributes": [
                {"key": "service.name", "value": {"stringValue": "acme"}},
                {"key": "service.version", "value": {"stringValue": "2.0.0"}},
                {"key": "service.instance.id", "value": {"stringValue": "machine-42"}},
                {"key": "host.name", "value": {"stringValue": "alice-laptop"}},
                {"key": "optel.install.pseudonym", "value": {"stringValue": pseudonym(7)}},
                {"key": "os.type", "value": {"stringValue": "linux"}},
                {"key": "host.arch", "value": {"stringValue": "amd64"}}
            ]},
            "scopeSpans": [{"spans": [
                {"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174",
                 "name": "build", "kind": 1,
                 "startTimeUnixNano": now_ns.to_string(), "endTimeUnixNano": (now_ns + 250_000_000).to_string(),
                 "status": {"code": 2}, "attributes": [
                    {"key": "error.type", "value": {"stringValue": "E_NO_MANIFEST"}},
                    {"key": "net.peer.ip", "value": {"stringValue": "10.1.2.3"}}]},
                {"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b175",
                 "name": "test", "startTimeUnixNano": now_ns.to_string(), "endTimeUnixNano": (now_ns + 1_000_000).to_string()},
                {"traceId": "5b8e", "spanId": "eee19b7ec3c1b176", "name": "bad",
                 "startTimeUnixNano": now_ns.to_string(), "endTimeUnixNano": now_ns.to_string()}
            ]}]
        }]
    });
    let json = serde_json::to_vec(&traces).unwrap();
    rt().block_on(async {
        let ct = [("content-type", "application/json")];
        let (s, h, body) = call(&st, "POST", "/v1/traces", Some(&key), &ct, json.clone()).await;
        assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        assert_eq!(h["content-type"], "application/json");
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["partialSuccess"]["rejectedSpans"], 1, "{v}");
        assert!(v["partialSuccess"]["errorMessage"].as_str().unwrap().contains("trace id"));

        // The same export in protobuf, gzip'd, as the OTLP exporters send it: idempotent.
        let req: ExportTraceServiceRequest = serde_json::from_slice(&json).unwrap();
        let pb = gzip(&req.encode_to_vec());
        let ct = [("content-type", "application/x-protobuf"), ("content-encoding", "gzip")];
        let (s, h, body) = call(&st, "POST", "/v1/traces", Some(&key), &ct, pb).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(h["content-type"], "application/x-protobuf");
        let resp = opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse::decode(&body[..]).unwrap();
        assert_eq!(resp.partial_success.unwrap().rejected_spans, 1);

        let metrics = serde_json::json!({"resourceMetrics": [{"resource": {"attributes": [
                {"key": "optel.install.pseudonym", "value": {"stringValue": pseudonym(8)}}]},
            "scopeMetrics": [{"metrics": [
                {"name": "command_invocation", "sum": {"aggregationTemporality": 1, "isMonotonic": true, "dataPoints": [
                    {"asInt": "3", "timeUnixNano": now_ns.to_string(), "startTimeUnixNano": (now_ns - 1).to_string(),
                     "attributes": [{"key": "command", "value": {"stringValue": "deploy"}},
                                    {"key": "success", "value": {"boolValue": true}}]}]}},
                {"name": "memory", "gauge": {"dataPoints": [{"asDouble": 1.5, "timeUnixNano": now_ns.to_string()}]}}
            ]}]}]});
        let ct = [("content-type", "application/json")];
        let (s, _, body) = call(&st, "POST", "/v1/metrics", Some(&key), &ct, serde_json::to_vec(&metrics).unwrap()).await;
        assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["partialSuccess"]["rejectedDataPoints"], 1, "{v}");

        let logs = serde_json::json!({"resourceLogs": [{"scopeLogs": [{"logRecords": [
            {"timeUnixNano": now_ns.to_string(), "eventName": "cache",
             "attributes": [{"key": "optel.event_type", "value": {"stringValue": "feature"}}]}]}]}]});
        let (s, _, body) = call(&st, "POST", "/v1/logs", Some(&key), &ct, serde_json::to_vec(&logs).unwrap()).await;
        assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&body));

        let (_, c) = get_json(&st, "/v1/projects/acme/commands", Some(ADMIN)).await;
        let rows = c["commands"].as_array().unwrap();
        let find = |n: &str| rows.iter().find(|r| r["name"] == n).cloned().unwrap_or(Value::Null);
        assert_eq!(find("deploy")["count"], 3);
        assert_eq!(find("build")["count"], 1, "protobuf re-send was deduplicated");
        assert_eq!(find("build")["failures"], 1);
        let p50 = find("build")["p50_ms"].as_u64().unwrap();
        assert!((218..=282).contains(&p50), "{p50}");
        let (_, e) = get_json(&st, "/v1/projects/acme/errors", Some(ADMIN)).await;
        assert_eq!(e["errors"][0]["error_code"], "E_NO_MANIFEST");
        let (_, f) = get_json(&st, "/v1/projects/acme/features", Some(ADMIN)).await;
        assert_eq!(f["features"][0]["name"], "cache");
        let (_, p) = get_json(&st, "/v1/projects/acme/platforms", Some(ADMIN)).await;
        // One spelling whichever door: `amd64` over OTLP is the native `x86_64`.
        assert!(p["platforms"].as_array().unwrap().iter().any(|r| r["arch"] == "x86_64"), "{p}");

        // Errors are google.rpc.Status in the request's encoding; only 429/503 are retryable.
        let (s, h, body) = call(&st, "POST", "/v1/traces", None, &[("content-type", "application/x-protobuf")], vec![]).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        assert_eq!(h["content-type"], "application/x-protobuf");
        assert_eq!(body[0], 0x08);
        assert_eq!(body[1], 16);
        let (s, _, body) = call(&st, "POST", "/v1/traces", Some(&key), &[("content-type", "application/json")], b"{\"resourceSpans\": 3}".to_vec()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["code"], 3);
    });
}

macro_rules! suite {
    ($backend:ident, $make:expr) => {
        mod $backend {
            use super::*;
            #[test]
            fn ingest_is_idempotent_and_feeds_rollups() {
                super::ingest_is_idempotent_and_feeds_rollups($make);
            }
            #[test]
            fn query_api_follows_the_contract() {
                super::query_api_follows_the_contract($make);
            }
            #[test]
            fn public_view_hides_small_cells() {
                super::public_view_hides_small_cells($make);
            }
            #[test]
            fn forget_and_purge_delete_data() {
                super::forget_and_purge_delete_data($make);
            }
            #[test]
            fn keys_are_scoped_and_revocable() {
                super::keys_are_scoped_and_revocable($make);
            }
            #[test]
            fn otlp_ingest_maps_spans_metrics_and_logs() {
                super::otlp_ingest_maps_spans_metrics_and_logs($make);
            }
            #[test]
            fn otlp_cumulative_sums_count_past_a_thousand_across_restarts() {
                super::otlp_cumulative_sums_count_past_a_thousand_across_restarts($make);
            }
            #[test]
            fn otlp_attributes_pass_the_privacy_door() {
                super::otlp_attributes_pass_the_privacy_door($make);
            }
            #[test]
            fn hostile_requests_get_4xx() {
                super::hostile_requests_get_4xx($make);
            }
            #[test]
            fn duplicates_within_and_across_groups_count_once() {
                super::duplicates_within_and_across_groups_count_once($make);
            }
            #[test]
            fn a_failed_group_stores_nothing() {
                super::a_failed_group_stores_nothing($make);
            }
            #[test]
            fn browser_keys_ingest_only_from_their_origins() {
                super::browser_keys_ingest_only_from_their_origins($make);
            }
            #[test]
            fn release_health_compares_a_version_with_the_previous() {
                super::release_health_compares_a_version_with_the_previous($make);
            }
            #[test]
            fn alert_webhook_fires_once_for_a_new_error_code() {
                super::alert_webhook_fires_once_for_a_new_error_code($make);
            }
            #[test]
            fn analytics_break_down_v2_batches() {
                super::analytics_break_down_v2_batches($make);
            }
            #[test]
            fn catalog_versions_are_bounded() {
                super::catalog_versions_are_bounded($make);
            }
            #[test]
            fn public_views_resist_subtraction() {
                super::public_views_resist_subtraction(|| $make);
            }
            #[test]
            fn public_views_resist_subtraction_with_dp() {
                super::public_views_resist_subtraction_with_dp(|| $make);
            }
            #[test]
            fn dp_budget_is_spent_then_answers_are_cached() {
                super::dp_budget_is_spent_then_answers_are_cached($make);
            }
        }
    };
}

suite!(sqlite_backend, sqlite());
suite!(postgres_backend, postgres());

include!("collector/hostile.rs");
include!("collector/public.rs");
include!("collector/browser.rs");
include!("collector/otlp.rs");
include!("collector/storage.rs");
include!("collector/connections.rs");
include!("collector/health.rs");
include!("collector/webhook_receiver.rs");
include!("collector/analytics.rs");
