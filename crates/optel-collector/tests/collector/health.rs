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
