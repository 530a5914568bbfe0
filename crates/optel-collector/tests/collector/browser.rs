// Browser ingest keys (included by collector.rs, run on both backends).

fn browser_keys_ingest_only_from_their_origins(t: TestStore) {
    let server_key = project(&*t.store, "acme");
    let key = optel_collector::generate_browser_key().unwrap();
    assert!(key.starts_with(optel_collector::BROWSER_KEY_PREFIX));
    t.store
        .add_key_with_origins(
            "acme",
            &optel_collector::hash_key(&key),
            &["https://app.example".to_owned()],
            now_ms(),
        )
        .unwrap();
    let st = state(&t.store);
    let body = serde_json::to_vec(&batch(1, "page-view", 1)).unwrap();
    let uri = format!("/v1/events?key={key}");
    let plain = ("content-type", "text/plain;charset=UTF-8");
    rt().block_on(async {
        // As navigator.sendBeacon sends it: text/plain, the page's Origin, the key in the URL.
        let (s, h, b) = call(&st, "POST", &uri, None, &[plain, ("origin", "https://app.example")], body.clone()).await;
        assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
        assert_eq!(h["access-control-allow-origin"], "https://app.example");
        // Another origin, or none: refused, and no CORS header lets the page read why.
        for origin in [Some("https://evil.example"), None] {
            let mut headers = vec![plain];
            if let Some(o) = origin {
                headers.push(("origin", o));
            }
            let (s, h, b) = call(&st, "POST", &uri, None, &headers, body.clone()).await;
            assert_eq!(s, StatusCode::FORBIDDEN, "{origin:?}");
            assert!(String::from_utf8_lossy(&b).contains("origin_not_allowed"));
            assert!(h.get("access-control-allow-origin").is_none());
        }
        // The preflight of a fetch with another content type.
        let (s, h, _) = call(&st, "OPTIONS", &uri, None, &[("origin", "https://app.example"), ("access-control-request-method", "POST")], vec![]).await;
        assert_eq!(s, StatusCode::NO_CONTENT);
        assert_eq!(h["access-control-allow-origin"], "https://app.example");
        assert_eq!(h["access-control-allow-methods"], "POST");
        let (s, _, _) = call(&st, "OPTIONS", &uri, None, &[("origin", "https://evil.example")], vec![]).await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        // A browser key can do nothing else: not OTLP, not deletion, not as a bearer token.
        let (s, _, b) = call(&st, "POST", &format!("/v1/traces?key={key}"), None, &[("content-type", "application/json"), ("origin", "https://app.example")], b"{}".to_vec()).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{}", String::from_utf8_lossy(&b));
        let (s, _, _) = call(&st, "POST", "/v1/events", Some(&key), &[("content-type", "application/json"), ("origin", "https://app.example")], body.clone()).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        // A server key never goes in a URL, and never sends text/plain.
        let (s, _, _) = call(&st, "POST", &format!("/v1/events?key={server_key}"), None, &[plain], body.clone()).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        let (s, _, _) = call(&st, "POST", "/v1/events", Some(&server_key), &[plain], body.clone()).await;
        assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        // Exactly the one accepted batch arrived.
        let (_, v) = get_json(&st, "/v1/projects/acme/overview", Some(ADMIN)).await;
        assert_eq!(v["events"], 1, "{v}");
    });
}
