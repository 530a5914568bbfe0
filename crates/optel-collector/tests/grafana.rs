//! The Grafana dashboard (`deploy/grafana/optel-usage.json`) against the real PostgreSQL
//! (`OPTEL_TEST_DATABASE_URL`, default `host=127.0.0.1 user=postgres dbname=test`): every SQL
//! query in it runs on rollup tables filled by the real ingest path, and its numbers equal the
//! query API's for the same range.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::{Body, to_bytes};
use axum::http::Request;
use optel_collector::storage::{PgStore, Store};
use optel_collector::{AppState, app, now_ms};
use optel_wire::{Batch, Event, EventType, Timestamp};
use serde_json::Value;
use tower::ServiceExt;

const DASHBOARD: &str = include_str!("../../../deploy/grafana/optel-usage.json");
const GOLDEN_V2: &str = include_str!("../../optel-wire/tests/golden/batch_v2.json");
const ADMIN: &str = "grafana-test-admin";
const DAY_MS: i64 = 86_400_000;

fn database_url() -> String {
    std::env::var("OPTEL_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "host=127.0.0.1 user=postgres dbname=test".into())
}

/// A fresh schema, dropped at the end of the test.
struct Schema {
    name: String,
    store: Arc<PgStore>,
}

impl Drop for Schema {
    fn drop(&mut self) {
        let _ = self.store.drop_schema();
    }
}

fn schema() -> Schema {
    static N: AtomicU64 = AtomicU64::new(0);
    let name = format!(
        "optel_grafana{}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        now_ms() % 1_000_000
    );
    let store = PgStore::connect_in_schema(&database_url(), Some(&name)).unwrap_or_else(|e| {
        panic!("PostgreSQL is needed for this test (set OPTEL_TEST_DATABASE_URL): {e}")
    });
    Schema {
        name,
        store: Arc::new(store),
    }
}

fn uuid(n: u64) -> String {
    format!("00000000-0000-4000-8000-{n:012x}")
}

/// Fixture: 6 installs over 3 versions and 2 platforms, commands over 10 days with failures,
/// features and methods; a second project whose rows must never leak into the first's panels.
fn load_fixtures(store: &dyn Store) {
    let acme = store
        .create_project("acme", &optel_collector::hash_key("k-acme"), now_ms())
        .unwrap();
    let other = store
        .create_project("other", &optel_collector::hash_key("k-other"), now_ms())
        .unwrap();
    let now = now_ms();
    let mut n = 0;
    let mut event = |t: EventType, name: &str, age_days: i64, outcome: Option<(bool, u64)>| {
        n += 1;
        let ts = Timestamp::from_unix_ms(now - age_days * DAY_MS - 60_000);
        let mut e = Event::new(uuid(n), t, name, ts, uuid(900_000 + n));
        if let Some((ok, ms)) = outcome {
            e.success = Some(ok);
            e.duration_ms = Some(ms);
            if !ok {
                e.error_code = Some(
                    if name == "build" {
                        "E_NO_MANIFEST"
                    } else {
                        "E_TEST_FAILED"
                    }
                    .into(),
                );
            }
        }
        e
    };
    for i in 0..6u64 {
        let version = ["0.1.0", "0.2.0", "0.2.0", "0.3.0", "0.3.0", "0.3.0"][i as usize];
        let (os, arch) = if i % 3 == 0 {
            ("macos", "aarch64")
        } else {
            ("linux", "x86_64")
        };
        let mut b = Batch::new("acme", version, format!("install-{i}"), os, arch);
        for day in 0..10 {
            if (day + i as i64) % 3 == 0 {
                b.events.push(event(
                    EventType::Command,
                    "build",
                    day,
                    Some((day % 4 != 1, 300 + 70 * i + 13 * day as u64)),
                ));
            }
        }
        b.events.push(event(
            EventType::Command,
            "test",
            i as i64,
            Some((i % 2 == 0, 2_000 + 100 * i)),
        ));
        b.events.push(event(EventType::Feature, "cache", 1, None));
        if i < 2 {
            b.events
                .push(event(EventType::Method, "Db::connect", 2, None));
        }
        store.insert_batch(acme.id, &b, now).unwrap();
    }
    // A schema version 2 batch with its catalog (the wire's golden batch, a day old): `build`
    // with the `profile` attribute, the phases `resolve` and `compile`, a `files` measurement.
    let mut v2: Batch = serde_json::from_str(GOLDEN_V2).unwrap();
    v2.service_version = "0.3.0".into();
    v2.pseudonym = "install-v2".into();
    for e in &mut v2.events {
        e.timestamp = Timestamp::from_unix_ms(now - DAY_MS);
    }
    store.insert_batch(acme.id, &v2, now).unwrap();
    let mut b = Batch::new("other", "9.9.9", "install-x", "windows", "x86_64");
    b.events
        .push(event(EventType::Command, "build", 0, Some((false, 50))));
    store.insert_batch(other.id, &b, now).unwrap();
}

/// The query API's answer to `path`.
async fn api(state: &AppState, path: &str) -> Value {
    let response = app(state.clone())
        .oneshot(
            Request::get(path)
                .header("authorization", format!("Bearer {ADMIN}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "{path}: {}",
        response.status()
    );
    serde_json::from_slice(&to_bytes(response.into_body(), 1 << 24).await.unwrap()).unwrap()
}

/// Grafana's macros and variables, as Grafana expands them for `project` and `[from, to]`.
fn expand(sql: &str, project: &str, from_s: i64, to_s: i64) -> String {
    let out = sql
        .replace("$__unixEpochFrom()", &from_s.to_string())
        .replace("$__unixEpochTo()", &to_s.to_string())
        .replace("${project}", project);
    assert!(!out.contains('$'), "a macro was left unexpanded: {out}");
    out
}

/// Each row as column name → value, text and numbers alike as JSON.
fn rows_as_json(rows: &[tokio_postgres::Row]) -> Vec<BTreeMap<String, Value>> {
    rows.iter()
        .map(|row| {
            row.columns()
                .iter()
                .enumerate()
                .map(|(i, col)| {
                    let v = match col.type_().name() {
                        "int8" => row.get::<_, Option<i64>>(i).map(Value::from),
                        "int4" => row.get::<_, Option<i32>>(i).map(Value::from),
                        "numeric" | "float8" => row.get::<_, Option<f64>>(i).map(Value::from),
                        "text" | "varchar" | "name" => {
                            row.get::<_, Option<String>>(i).map(Value::from)
                        }
                        "timestamptz" => row
                            .get::<_, Option<std::time::SystemTime>>(i)
                            .map(|t| Value::from(Timestamp::from_system_time(t).to_string())),
                        other => panic!("column {} has unexpected type {other}", col.name()),
                    };
                    (col.name().to_owned(), v.unwrap_or(Value::Null))
                })
                .collect()
        })
        .collect()
}

fn ts_ms(v: &Value) -> i64 {
    serde_json::from_value::<Timestamp>(v.clone())
        .unwrap()
        .unix_ms()
}

#[test]
fn every_grafana_query_runs_on_the_rollups_and_agrees_with_the_query_api() {
    let dashboard: Value = serde_json::from_str(DASHBOARD).unwrap();
    let schema = schema();
    load_fixtures(schema.store.as_ref());
    let state = AppState::new(schema.store.clone(), Some(ADMIN.into())).unwrap();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut config: tokio_postgres::Config = database_url().parse().unwrap();
        config.options(format!("-c search_path={}", schema.name));
        let (client, connection) = config.connect(tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(connection);

        let q = "since=30d";
        let overview = api(&state, &format!("/v1/projects/acme/overview?{q}")).await;
        let (from_s, to_s) = (
            ts_ms(&overview["from"]) / 1000,
            ts_ms(&overview["to"]) / 1000,
        );

        // The project variable lists the projects.
        let var = dashboard["templating"]["list"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == "project")
            .unwrap();
        let names = rows_as_json(
            &client
                .query(var["query"].as_str().unwrap(), &[])
                .await
                .unwrap(),
        );
        assert_eq!(names.len(), 2);
        assert_eq!(names[0]["name"], "acme");

        let mut results: BTreeMap<String, Vec<BTreeMap<String, Value>>> = BTreeMap::new();
        let panels = dashboard["panels"].as_array().unwrap();
        assert!(
            panels.len() >= 8,
            "the dashboard has {} panels",
            panels.len()
        );
        for panel in panels {
            let title = panel["title"].as_str().unwrap().to_owned();
            for target in panel["targets"].as_array().unwrap() {
                let sql = expand(target["rawSql"].as_str().unwrap(), "acme", from_s, to_s);
                let rows = client
                    .query(sql.as_str(), &[])
                    .await
                    .unwrap_or_else(|e| panic!("panel {title:?}: {e:?}\n{sql}"));
                // Every panel has data for this fixture.
                assert!(!rows.is_empty(), "panel {title:?} returned no rows");
                results.insert(title.clone(), rows_as_json(&rows));
            }
        }

        // The numbers are the query API's.
        assert_eq!(
            results["Invocations"][0]["invocations"],
            overview["invocations"]
        );
        assert_eq!(results["Events"][0]["events"], overview["events"]);
        let rate = results["Failure rate"][0]["failure rate"].as_f64().unwrap();
        let expected =
            overview["failures"].as_f64().unwrap() / overview["invocations"].as_f64().unwrap();
        assert!((rate - expected).abs() < 1e-9, "{rate} vs {expected}");

        let commands = api(&state, &format!("/v1/projects/acme/commands?{q}")).await;
        let table: Vec<(Value, Value, Value, Value, Value)> = results["Top commands"]
            .iter()
            .map(|r| {
                (
                    r["command"].clone(),
                    r["runs"].clone(),
                    r["failures"].clone(),
                    r["p50 (ms)"].clone(),
                    r["p95 (ms)"].clone(),
                )
            })
            .collect();
        let from_api: Vec<(Value, Value, Value, Value, Value)> = commands["commands"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["name"].clone(),
                    c["count"].clone(),
                    c["failures"].clone(),
                    c["p50_ms"].clone(),
                    c["p95_ms"].clone(),
                )
            })
            .collect();
        assert_eq!(table, from_api);

        let errors = api(&state, &format!("/v1/projects/acme/errors?{q}")).await;
        let table: Vec<(Value, Value, Value)> = results["Top error codes"]
            .iter()
            .map(|r| {
                (
                    r["command"].clone(),
                    r["error code"].clone(),
                    r["count"].clone(),
                )
            })
            .collect();
        let from_api: Vec<(Value, Value, Value)> = errors["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["command"].clone(),
                    e["error_code"].clone(),
                    e["count"].clone(),
                )
            })
            .collect();
        assert_eq!(table, from_api);

        let ts = api(&state, &format!("/v1/projects/acme/timeseries?{q}")).await;
        let per_day: i64 = results["Invocations per day"]
            .iter()
            .map(|r| r["succeeded"].as_i64().unwrap() + r["failed"].as_i64().unwrap())
            .sum();
        let api_total: i64 = ts["buckets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["invocations"].as_i64().unwrap())
            .sum();
        assert_eq!(per_day, api_total);

        let platforms = api(&state, &format!("/v1/projects/acme/platforms?{q}")).await;
        let mut sql_platforms: Vec<(String, i64)> = results["OS / architecture"]
            .iter()
            .map(|r| {
                (
                    r["platform"].as_str().unwrap().to_owned(),
                    r["events"].as_i64().unwrap(),
                )
            })
            .collect();
        let mut api_platforms: Vec<(String, i64)> = platforms["platforms"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    format!(
                        "{}/{}",
                        p["os"].as_str().unwrap(),
                        p["arch"].as_str().unwrap()
                    ),
                    p["events"].as_i64().unwrap(),
                )
            })
            .collect();
        sql_platforms.sort();
        api_platforms.sort();
        assert_eq!(sql_platforms, api_platforms);
        // The other project's windows install never shows in acme's panels.
        assert!(!sql_platforms.iter().any(|(p, _)| p.starts_with("windows")));

        let versions: Vec<String> = results["Version adoption (events per day)"]
            .iter()
            .map(|r| r["metric"].as_str().unwrap().to_owned())
            .collect();
        assert!(versions.contains(&"0.3.0".to_owned()) && !versions.contains(&"9.9.9".to_owned()));
        let features: Vec<&str> = results["Features and methods"]
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        assert_eq!(features, ["feature: cache", "method: Db::connect"]);

        // The analytics panels: the query API's breakdowns, phases and measurements.
        let breakdowns = api(&state, &format!("/v1/projects/acme/breakdowns?{q}")).await;
        let mut from_api: Vec<(String, String, String, i64, i64)> = Vec::new();
        for b in breakdowns["breakdowns"].as_array().unwrap() {
            for v in b["values"].as_array().unwrap() {
                from_api.push((
                    format!(
                        "{} {}",
                        b["event_type"].as_str().unwrap(),
                        b["name"].as_str().unwrap()
                    ),
                    b["attribute"].as_str().unwrap().to_owned(),
                    v["value"].as_str().unwrap().to_owned(),
                    v["count"].as_i64().unwrap(),
                    v["failures"].as_i64().unwrap(),
                ));
            }
        }
        let mut table: Vec<(String, String, String, i64, i64)> =
            results["Breakdowns by declared attribute"]
                .iter()
                .map(|r| {
                    (
                        r["event"].as_str().unwrap().to_owned(),
                        r["attribute"].as_str().unwrap().to_owned(),
                        r["value"].as_str().unwrap().to_owned(),
                        r["count"].as_i64().unwrap(),
                        r["failures"].as_i64().unwrap(),
                    )
                })
                .collect();
        from_api.sort();
        table.sort();
        assert_eq!(table, from_api);
        assert!(
            table
                .iter()
                .any(|r| r.1 == "profile" && r.2 == "release" && r.3 == 1),
            "{table:?}"
        );

        let phases = api(&state, &format!("/v1/projects/acme/phases?{q}")).await;
        let mut from_api: Vec<(Value, Value, Value)> = phases["phases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["command"].clone(), p["phase"].clone(), p["count"].clone()))
            .collect();
        let mut table: Vec<(Value, Value, Value)> = results["Phases per command"]
            .iter()
            .map(|r| (r["command"].clone(), r["phase"].clone(), r["count"].clone()))
            .collect();
        from_api.sort_by_key(|t| format!("{t:?}"));
        table.sort_by_key(|t| format!("{t:?}"));
        assert_eq!(table, from_api);
        assert_eq!(table.len(), 2, "resolve and compile: {table:?}");

        let measurements = api(&state, &format!("/v1/projects/acme/measurements?{q}")).await;
        let m = &measurements["measurements"][0];
        let row = &results["Measurements"][0];
        assert_eq!((&row["name"], &row["count"]), (&m["name"], &m["count"]));
        assert_eq!(row["sum"].as_f64(), m["sum"].as_f64());
        assert!(!results["Feature adoption (uses per day)"].is_empty());
    });
}
