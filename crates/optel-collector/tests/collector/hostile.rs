// Included by collector.rs: at least 200 malformed, oversized, wrongly encoded,
// unauthenticated and cross-project requests, each answered 4xx with a reason, never 5xx.

fn hostile_requests_get_4xx(t: TestStore) {
    let key = project(&*t.store, "acme");
    let other = project(&*t.store, "other");
    let revoked = optel_collector::generate_ingest_key().unwrap();
    t.store.add_key("acme", &optel_collector::hash_key(&revoked), now_ms()).unwrap();
    t.store.revoke_key(&optel_collector::hash_key(&revoked), now_ms()).unwrap();
    let st = state(&t.store);
    let good = batch(1, "build", 3);
    let good_json = serde_json::to_vec(&good).unwrap();

    type Req = (&'static str, String, Option<String>, Vec<(&'static str, String)>, Vec<u8>);
    let json_ct = || vec![("content-type", "application/json".to_owned())];
    let mut reqs: Vec<Req> = Vec::new();
    let ev = |r: &mut Vec<Req>, k: &str, body: Vec<u8>| {
        r.push(("POST", "/v1/events".into(), Some(k.to_owned()), json_ct(), body));
    };

    // Field-level violations of a valid batch.
    type Mutation = Box<dyn Fn(&mut Batch)>;
    let mutations: Vec<Mutation> = vec![
        // Version 2 is accepted since the catalog schema (optel_wire::SUPPORTED_SCHEMA_VERSIONS).
        Box::new(|b| b.schema_version = 3),
        Box::new(|b| b.service_name = "a b".into()),
        Box::new(|b| b.service_name = "x".repeat(65)),
        Box::new(|b| b.service_name = String::new()),
        Box::new(|b| b.service_version = "1.0 beta".into()),
        Box::new(|b| b.pseudonym = "UPPER".into()),
        Box::new(|b| b.pseudonym = "p".repeat(65)),
        // An odd OS or architecture is stored as `unknown`, not refused (`crate::privacy`,
        // `optel_wire::platform`).
        Box::new(|b| b.events.clear()),
        Box::new(|b| {
            let e = b.events[0].clone();
            b.events = vec![e; 1001];
        }),
        Box::new(|b| b.events[0].event_id = "not-a-uuid".into()),
        Box::new(|b| b.events[1].session_id = "x".into()),
        Box::new(|b| b.events[0].name = "rm -rf /".into()),
        Box::new(|b| b.events[0].name = "n".repeat(65)),
        Box::new(|b| b.events[0].duration_ms = Some(8 * 24 * 3_600_000)),
        Box::new(|b| b.events[0].error_code = Some("has space".into())),
        Box::new(|b| b.events[2].timestamp = Timestamp::from_unix_ms(now_ms() - 91 * 86_400_000)),
        Box::new(|b| b.events[2].timestamp = Timestamp::from_unix_ms(now_ms() + 2 * 3_600_000)),
        Box::new(|b| {
            for i in 0..33 {
                b.events[0].metadata.insert(format!("k{i}"), optel_wire::AttributeValue::Int(i));
            }
        }),
        Box::new(|b| {
            b.events[0].metadata.insert("k".into(), optel_wire::AttributeValue::String("v".repeat(257)));
        }),
        Box::new(|b| {
            b.events[0].metadata.insert("bad key".into(), optel_wire::AttributeValue::Bool(true));
        }),
    ];
    for m in &mutations {
        let mut b = good.clone();
        m(&mut b);
        ev(&mut reqs, &key, serde_json::to_vec(&b).unwrap());
    }
    // Type confusion in JSON.
    for bad in [
        r#"{"schema_version":"1"}"#,
        r#"[]"#,
        r#"null"#,
        r#"{"events":{}}"#,
        r#"{"schema_version":1,"service_name":1}"#,
        "\u{0}\u{1}",
        r#"{"schema_version":1e999}"#,
        r#"{"a":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}"#,
    ] {
        ev(&mut reqs, &key, bad.as_bytes().to_vec());
    }
    let mut v: Value = serde_json::from_slice(&good_json).unwrap();
    v["events"][0]["timestamp"] = "yesterday".into();
    ev(&mut reqs, &key, serde_json::to_vec(&v).unwrap());
    v["events"][0]["event_type"] = "hack".into();
    ev(&mut reqs, &key, serde_json::to_vec(&v).unwrap());
    // Truncated bodies.
    for cut in (1..good_json.len()).step_by(good_json.len() / 40 + 1) {
        ev(&mut reqs, &key, good_json[..cut].to_vec());
    }
    // Garbage bytes.
    let mut x: u64 = 0x1234_5678;
    for n in 0..25 {
        let body: Vec<u8> = (0..(n * 37 + 1)).map(|_| { x ^= x << 13; x ^= x >> 7; x ^= x << 17; x as u8 }).collect();
        ev(&mut reqs, &key, body);
    }
    // Wrong content types and encodings.
    for ct in ["text/plain", "application/xml", "", "application/x-www-form-urlencoded", "application/jsonp"] {
        reqs.push(("POST", "/v1/events".into(), Some(key.clone()), vec![("content-type", ct.to_owned())], good_json.clone()));
    }
    for enc in ["br", "deflate", "zstd", "gzip, br", "compress"] {
        let mut h = json_ct();
        h.push(("content-encoding", enc.to_owned()));
        reqs.push(("POST", "/v1/events".into(), Some(key.clone()), h, good_json.clone()));
    }
    for body in [good_json.clone(), b"\x1f\x8b\x08\x00garbage".to_vec(), gzip(&good_json)[..20].to_vec()] {
        let mut h = json_ct();
        h.push(("content-encoding", "gzip".to_owned()));
        reqs.push(("POST", "/v1/events".into(), Some(key.clone()), h, body));
    }
    // Oversized: raw, and a gzip bomb (64 MiB of zeros in ~64 KiB).
    ev(&mut reqs, &key, vec![b' '; optel_wire::limits::MAX_BODY_BYTES + 1]);
    let bomb = gzip(&vec![0u8; 64 << 20]);
    for route in ["/v1/events", "/v1/traces", "/v1/logs"] {
        let mut h = json_ct();
        h.push(("content-encoding", "gzip".to_owned()));
        reqs.push(("POST", route.into(), Some(key.clone()), h, bomb.clone()));
    }
    // Unauthenticated.
    for k in [None, Some(String::new()), Some("optel_ik_0000".to_owned()), Some(revoked.clone()), Some(ADMIN.to_owned())] {
        for route in ["/v1/events", "/v1/traces", "/v1/metrics", "/v1/logs", "/v1/installs"] {
            let method = if route == "/v1/installs" { "DELETE" } else { "POST" };
            reqs.push((method, route.into(), k.clone(), json_ct(), good_json.clone()));
        }
    }
    reqs.push(("POST", "/v1/events".into(), None, vec![("authorization", "Basic YTpi".into()), ("content-type", "application/json".into())], good_json.clone()));
    // Cross-project and privilege: ingest keys cannot read, forget proofs are bound to a tool
    // (the project's name by default).
    for view in ["overview", "timeseries", "commands", "errors", "versions", "platforms", "features", "stats"] {
        reqs.push(("GET", format!("/v1/projects/other/{view}"), Some(key.clone()), vec![], vec![]));
        reqs.push(("GET", format!("/v1/projects/acme/{view}"), Some(other.clone()), vec![], vec![]));
        reqs.push(("GET", format!("/public/v1/projects/other/{view}"), None, vec![], vec![]));
        reqs.push(("GET", format!("/v1/projects/acme/{view}?since=-1d"), Some(ADMIN.into()), vec![], vec![]));
        reqs.push(("GET", format!("/v1/projects/acme/{view}?from=x&to=y"), Some(ADMIN.into()), vec![], vec![]));
    }
    reqs.push(("GET", "/v1/projects".into(), Some(key.clone()), vec![], vec![]));
    reqs.push(("GET", "/v1/projects/acme/secrets".into(), Some(ADMIN.into()), vec![], vec![]));
    let ts = Timestamp::now().to_string();
    let proof_for_other = optel_wire::forget_proof(&pseudonym(1), "other", &ts);
    for body in [
        serde_json::json!({"timestamp": ts, "installs": [{"pseudonym": pseudonym(1), "proof": proof_for_other}]}),
        serde_json::json!({"timestamp": ts, "tool": "acme", "installs": [{"pseudonym": pseudonym(1), "proof": proof_for_other}]}),
        serde_json::json!({"timestamp": ts, "tool": "no/such tool", "installs": [{"pseudonym": pseudonym(1), "proof": proof_for_other}]}),
        serde_json::json!({"timestamp": ts, "tool": 7, "installs": [{"pseudonym": pseudonym(1), "proof": proof_for_other}]}),
        serde_json::json!({"timestamp": "2020-01-01T00:00:00Z", "installs": [{"pseudonym": pseudonym(1), "proof": "00"}]}),
        serde_json::json!({"timestamp": ts, "installs": []}),
        serde_json::json!({"timestamp": ts}),
    ] {
        reqs.push(("DELETE", "/v1/installs".into(), Some(key.clone()), json_ct(), serde_json::to_vec(&body).unwrap()));
    }
    // OTLP garbage in both encodings.
    for route in ["/v1/traces", "/v1/metrics", "/v1/logs"] {
        for body in [b"\xff\xff\xff\xff".to_vec(), b"\x0a\x05abc".to_vec(), vec![0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]] {
            reqs.push(("POST", route.into(), Some(key.clone()), vec![("content-type", "application/x-protobuf".into())], body));
        }
        for body in [&b"{"[..], b"[1,2]", b"{\"resourceSpans\":7,\"resourceMetrics\":7,\"resourceLogs\":7}", b"\"x\""] {
            reqs.push(("POST", route.into(), Some(key.clone()), json_ct(), body.to_vec()));
        }
        reqs.push(("POST", route.into(), Some(key.clone()), vec![("content-type", "text/plain".into())], b"hi".to_vec()));
    }

    assert!(reqs.len() >= 200, "only {} hostile requests", reqs.len());
    let n = reqs.len();
    rt().block_on(async {
        for (method, uri, auth, headers, body) in reqs {
            let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let (s, hdrs, resp) = call(&st, method, &uri, auth.as_deref(), &h, body).await;
            assert!(s.is_client_error(), "{method} {uri} answered {s}: {}", String::from_utf8_lossy(&resp));
            assert!(!resp.is_empty(), "{method} {uri}: {s} without a reason");
            let ct = hdrs.get("content-type").map(|v| v.to_str().unwrap_or("")).unwrap_or("");
            if ct == "application/json" {
                let v: Value = serde_json::from_slice(&resp).unwrap();
                let message = v["error"]["message"].as_str().or(v["message"].as_str()).unwrap_or("");
                assert!(!message.is_empty(), "{method} {uri}: no message in {v}");
            }
        }
    });
    // Nothing of it was stored.
    let p = t.store.project_by_name("acme").unwrap().unwrap();
    assert!(t.store.counts(p.id, optel_collector::rollup::DayRange { first: 0, last: i64::MAX / 2 }).unwrap().is_empty(), "{n} hostile requests stored something");
}
