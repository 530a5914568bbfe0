// Release health (included by collector.rs, run on both backends).

/// `n` invocations of `cmd` by `install` on `version`: `failures` of them fail with `code`,
/// each takes `ms`.
fn version_batch(
    install: u32,
    version: &str,
    cmd: &str,
    n: usize,
    failures: usize,
    code: &str,
    ms: u64,
) -> Batch {
    let mut b = batch(install, cmd, n);
    b.service_version = version.into();
    for (i, e) in b.events.iter_mut().enumerate() {
        e.success = Some(i >= failures);
        e.error_code = (i < failures).then(|| code.to_owned());
        e.duration_ms = Some(ms + i as u64 % 7);
    }
    b
}

fn release_health_compares_a_version_with_the_previous(t: TestStore) {
    let key = project(&*t.store, "acme");
    let st = state(&t.store);
    rt().block_on(async {
        // 1.2.0: 200 builds, 4 failures (E_OLD), ~100 ms. 1.10.0 (after 1.2.0 by semver, not
        // by text): 200 builds, 40 failures of which 20 E_NEW, ~400 ms; `init` alike in both.
        for b in [
            version_batch(1, "1.2.0", "build", 200, 4, "E_OLD", 100),
            version_batch(2, "1.2.0", "init", 100, 1, "E_OLD", 10),
            version_batch(3, "1.10.0", "build", 100, 20, "E_OLD", 400),
            version_batch(4, "1.10.0", "build", 100, 20, "E_NEW", 400),
            version_batch(5, "1.10.0", "init", 100, 1, "E_OLD", 10),
        ] {
            let (s, v) = post_batch(&st, &key, &b).await;
            assert_eq!(s, StatusCode::OK, "{v}");
        }
        let (s, v) = get_json(&st, "/v1/projects/acme/release-health", Some(ADMIN)).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let h: optel_collector::query::ReleaseHealth = serde_json::from_value(v).unwrap();
        assert_eq!(h.versions, ["1.2.0", "1.10.0"]);
        assert_eq!(h.order, "semver");
        assert_eq!(h.version.as_deref(), Some("1.10.0"));
        assert_eq!(h.previous.as_deref(), Some("1.2.0"));
        use optel_collector::query::Change;
        let build = h.commands.iter().find(|c| c.name == "build").unwrap();
        assert_eq!(build.current.invocations, 200);
        assert_eq!(build.current.failures, 40);
        assert_eq!(build.previous.as_ref().unwrap().failures, 4);
        assert_eq!(build.failure_rate_change, Change::Up, "{build:?}");
        assert_eq!(build.p95_change, Change::Up, "{build:?}");
        assert!(build.p95_ms_delta.unwrap() > 200, "{build:?}");
        let init = h.commands.iter().find(|c| c.name == "init").unwrap();
        assert_eq!(init.failure_rate_change, Change::Unchanged, "{init:?}");
        assert_eq!(init.p95_change, Change::Unchanged, "{init:?}");
        assert_eq!(h.new_error_codes.len(), 1, "{:?}", h.new_error_codes);
        assert_eq!(h.new_error_codes[0].command, "build");
        assert_eq!(h.new_error_codes[0].error_code, "E_NEW");
        assert_eq!(h.new_error_codes[0].count, 20);

        // An explicit pair, backwards: everything goes down, no new error code.
        let (s, v) = get_json(
            &st,
            "/v1/projects/acme/release-health?version=1.2.0&previous=1.10.0",
            Some(ADMIN),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["commands"][0]["name"], "build");
        assert_eq!(v["commands"][0]["failure_rate_change"], "down");
        assert_eq!(v["commands"][0]["p95_change"], "down");
        assert_eq!(v["new_error_codes"], serde_json::json!([]));
        // The first version has nothing to compare with.
        let (_, v) = get_json(&st, "/v1/projects/acme/release-health?version=1.2.0", Some(ADMIN)).await;
        assert_eq!(v["previous"], Value::Null);
        assert_eq!(v["commands"][0]["failure_rate_change"], "no_previous");
        // `optel stats --format json` carries it too.
        let (_, v) = get_json(&st, "/v1/projects/acme/stats", Some(ADMIN)).await;
        assert_eq!(v["release_health"]["version"], "1.10.0");
        let (_, v) = get_json(&st, "/openapi.json", None).await;
        assert!(v["paths"]["/v1/projects/{project}/release-health"].is_object());
        assert!(v["components"]["schemas"]["ReleaseHealth"].is_object());
        // Admin only; a bad version is a 400 naming the parameter.
        let (s, _) = get_json(&st, "/public/v1/projects/acme/release-health", None).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        let long = "v".repeat(65);
        let (s, v) = get_json(
            &st,
            &format!("/v1/projects/acme/release-health?version={long}"),
            Some(ADMIN),
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
        assert_eq!(v["error"]["field"], "version");
    });

    // Deleting an install by pseudonym takes its durations out of its version's histogram.
    t.store.forget(None, &[pseudonym(3), pseudonym(4)]).unwrap();
    let project = t.store.project_by_name("acme").unwrap().unwrap();
    let days = optel_collector::rollup::DayRange::covering(now_ms() - 86_400_000, now_ms() + 1);
    let rows = t
        .store
        .version_durations(project.id, days, &["1.10.0"])
        .unwrap();
    let build: i64 = rows
        .iter()
        .filter(|r| r.name == "build")
        .map(|r| r.count)
        .sum();
    assert_eq!(build, 0, "{rows:?}");
}

fn alert_webhook_fires_once_for_a_new_error_code(t: TestStore) {
    use optel_collector::alerts::{self, AlertKind, AlertPayload, AlertSettings};
    let key = project(&*t.store, "acme");
    let st = state(&t.store);
    // The receiver fails the first delivery (503): the collector retries.
    let (url, received) = receiver(vec![503]);
    let secret = alerts::generate_secret().unwrap();
    let hook = t
        .store
        .add_alert_hook(
            "acme",
            &url,
            &secret,
            &[AlertKind::NewErrorCode, AlertKind::IngestStopped],
            true,
            now_ms(),
        )
        .unwrap();
    assert_eq!(t.store.alert_hooks(Some("acme")).unwrap(), std::slice::from_ref(&hook));
    let settings = AlertSettings {
        first_retry: std::time::Duration::from_millis(10),
        ..AlertSettings::default()
    };
    rt().block_on(async {
        for b in [
            version_batch(1, "1.0.0", "build", 50, 5, "E_OLD", 100),
            version_batch(2, "1.1.0", "build", 50, 5, "E_NEW", 100),
        ] {
            let (s, v) = post_batch(&st, &key, &b).await;
            assert_eq!(s, StatusCode::OK, "{v}");
        }
        let now = now_ms();
        let done = alerts::evaluate(&t.store, &st.activity, &settings, now).await.unwrap();
        assert_eq!(done.len(), 1, "{done:?}");
        assert!(done[0].delivered, "{done:?}");
        assert_eq!(done[0].attempts, 2);
        // Two requests reached the receiver, each signed with the hook's secret.
        for _ in 0..2 {
            let (signature, body) = received.recv().unwrap();
            let now_s = now_ms() / 1000;
            assert!(
                alerts::verify(&secret, &signature, &body, now_s, alerts::SIGNATURE_TOLERANCE_S),
                "{signature}"
            );
            assert!(!alerts::verify("optel_whsec_wrong", &signature, &body, now_s, 300));
            let p: AlertPayload = serde_json::from_slice(&body).unwrap();
            assert_eq!(p.kind, AlertKind::NewErrorCode);
            assert_eq!(p.version, "1.1.0");
            assert_eq!(p.previous.as_deref(), Some("1.0.0"));
            assert_eq!(p.command, "build");
            assert_eq!(p.error_code.as_deref(), Some("E_NEW"));
        }
        // More events of the same version: the condition fired already, nothing is sent.
        let (s, _) = post_batch(&st, &key, &version_batch(3, "1.1.0", "build", 5, 5, "E_NEW", 100)).await;
        assert_eq!(s, StatusCode::OK);
        let done = alerts::evaluate(&t.store, &st.activity, &settings, now + 1).await.unwrap();
        assert!(done.is_empty(), "{done:?}");
        // Two hours without events: ingest stopped, once.
        let later = now + 2 * 3_600_000;
        let done = alerts::evaluate(&t.store, &st.activity, &settings, later).await.unwrap();
        assert_eq!(done.len(), 1, "{done:?}");
        assert_eq!(done[0].kind, AlertKind::IngestStopped);
        let (_, body) = received.recv().unwrap();
        let p: AlertPayload = serde_json::from_slice(&body).unwrap();
        assert_eq!(p.kind, AlertKind::IngestStopped);
        let done = alerts::evaluate(&t.store, &st.activity, &settings, later + 1).await.unwrap();
        assert!(done.is_empty(), "{done:?}");
    });
    assert!(t.store.remove_alert_hook(hook.id).unwrap());
    assert!(!t.store.remove_alert_hook(hook.id).unwrap());
    assert!(t.store.alert_hooks(None).unwrap().is_empty());
}
