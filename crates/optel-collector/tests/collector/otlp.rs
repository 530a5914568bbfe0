// OTLP ingest against both backends (included by collector.rs): cumulative sums counted past
// 1,000 across a collector restart, failure points stored as failures.

/// Regression (issues 3 and 4): cumulative sums stopped at 1,000 ("use delta": 999 then 1001
/// counted 999), and `outcome=failure` points were accepted but never stored. The mark lives
/// in the store: a new `AppState` (a restarted collector) continues from it.
fn otlp_cumulative_sums_count_past_a_thousand_across_restarts(t: TestStore) {
    let key = project(&*t.store, "acme");
    let now_ns = (now_ms() as u64 - 5_000) * 1_000_000;
    let export = |total: i64, failures: i64, t_ns: u64| {
        let point = |outcome: &str, n: i64| serde_json::json!({
            "asInt": n.to_string(), "timeUnixNano": t_ns.to_string(),
            "startTimeUnixNano": (now_ns - 60_000_000_000).to_string(),
            "attributes": [{"key": "command", "value": {"stringValue": "sync"}},
                           {"key": "outcome", "value": {"stringValue": outcome}},
                           {"key": "error.type", "value": {"stringValue": "E_NET"}}]});
        serde_json::to_vec(&serde_json::json!({"resourceMetrics": [{"resource": {"attributes": [
                {"key": "optel.install.pseudonym", "value": {"stringValue": pseudonym(3)}}]},
            "scopeMetrics": [{"metrics": [
                {"name": "command_invocation", "sum": {"aggregationTemporality": 2, "isMonotonic": true,
                 "dataPoints": [point("success", total - failures), point("failure", failures)]}}]}]}]}))
        .unwrap()
    };
    let ct = [("content-type", "application/json")];
    for (total, failures, dt) in [(999, 2, 0), (1001, 3, 1_000_000)] {
        // A fresh state per export: the high-water mark must come from the store.
        let st = state(&t.store);
        rt().block_on(async {
            let (s, _, body) = call(&st, "POST", "/v1/metrics", Some(&key), &ct, export(total, failures, now_ns + dt)).await;
            assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
            let v: Value = serde_json::from_slice(&body).unwrap();
            assert!(v["partialSuccess"].is_null(), "{v}");
        });
    }
    let st = state(&t.store);
    rt().block_on(async {
        let (_, c) = get_json(&st, "/v1/projects/acme/commands", Some(ADMIN)).await;
        let sync = &c["commands"][0];
        assert_eq!((sync["name"].as_str(), sync["count"].as_u64(), sync["failures"].as_u64()), (Some("sync"), Some(1001), Some(3)), "{c}");
        let (_, e) = get_json(&st, "/v1/projects/acme/errors", Some(ADMIN)).await;
        assert_eq!(e["errors"][0]["error_code"], "E_NET", "{e}");
    });
}

/// Issue 7: OTLP attributes were stored verbatim. Identifying keys and keys outside the
/// allow-list never reach the database; what is kept is redacted; the drops are counted.
fn otlp_attributes_pass_the_privacy_door(t: TestStore) {
    let key = project(&*t.store, "acme");
    let st = state(&t.store);
    let now_ns = (now_ms() as u64 - 5_000) * 1_000_000;
    let s = |k: &str, v: &str| serde_json::json!({"key": k, "value": {"stringValue": v}});
    let traces = serde_json::json!({"resourceSpans": [{"resource": {"attributes": [
            s("service.name", "acme"), s("host.name", "alice-laptop")]},
        "scopeSpans": [{"spans": [{"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174",
             "name": "acme", "kind": 1, "status": {"code": 2},
             "startTimeUnixNano": now_ns.to_string(), "endTimeUnixNano": (now_ns + 1_000_000).to_string(),
             "attributes": [
                s("url.full", "https://api.example.com/u?token=abc&email=alice@example.com"),
                s("http.request.header.authorization", "Bearer sk-live-123"),
                s("code.file.path", "/home/alice/src/app.py"),
                s("db.query.text", "select * from users where email='alice@example.com'"),
                s("cache.mode", "warm"),
                s("error.type", "E_X"),
                {"key": "process.exit.code", "value": {"intValue": "2"}}]}]}]}]});
    rt().block_on(async {
        let ct = [("content-type", "application/json")];
        let (code, _, body) = call(&st, "POST", "/v1/traces", Some(&key), &ct, serde_json::to_vec(&traces).unwrap()).await;
        assert_eq!(code, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        let (_, c) = get_json(&st, "/v1/projects/acme/commands", Some(ADMIN)).await;
        assert_eq!(c["commands"][0]["failures"], 1, "{c}");
        let (_, _, m) = call(&st, "GET", "/metrics", None, &[], vec![]).await;
        let text = String::from_utf8_lossy(&m);
        assert!(text.contains("optel_attributes_dropped_total{reason=\"identifying\"} 4"), "{text}");
        assert!(text.contains("optel_attributes_dropped_total{reason=\"not_allowed\"} 1"), "{text}");
    });
}
