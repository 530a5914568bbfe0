// Schema version 2 analytics: catalogs, breakdowns, phases, measurements, adoption; their
// deletion by pseudonym and retention (included by `collector.rs`; run once per backend).

/// The catalog of the `acme` example: `build` with `profile` (enum) and `jobs` (int buckets)
/// and phases `resolve` and `compile`; feature `strict` with `fix` (bool); measurement `files`.
fn acme_catalog() -> optel_wire::catalog::Catalog {
    let golden = include_str!("../../../optel-wire/tests/golden/batch_v2.json");
    let b: Batch = serde_json::from_str(golden).unwrap();
    b.catalog.unwrap()
}

/// One `acme build` run of `install`: a v2 batch with the build (profile, phases `resolve` and
/// `compile`, and `codegen` nested in `compile`), a
/// `strict` feature and a `files` measurement; carrying the catalog when `carry`.
fn acme_run(install: u32, profile: &str, carry: bool) -> Batch {
    let catalog = acme_catalog();
    let mut b = Batch::new("acme", "1.3.0", pseudonym(install), "linux", "x86_64");
    b.catalog_hash = Some(catalog.hash());
    b.catalog = carry.then_some(catalog);
    let session = uuid();
    let ts = Timestamp::from_unix_ms(now_ms() - (now_ms() % 86_400_000).min(60_000));
    let mut build = Event::new(uuid(), EventType::Command, "build", ts, session.clone());
    build.duration_ms = Some(1_250);
    build.success = Some(profile == "debug");
    build.metadata.insert(
        "profile".into(),
        optel_wire::AttributeValue::String(profile.into()),
    );
    build.metadata.insert(
        "jobs".into(),
        optel_wire::AttributeValue::String("2..8".into()),
    );
    for (name, parent, start, us) in [
        ("resolve", None, 150, 20_000),
        ("compile", None, 20_600, 1_200_000),
        ("codegen", Some(1), 400_400, 800_000),
    ] {
        build.phases.push(optel_wire::Phase {
            name: name.into(),
            parent,
            start_us: start,
            duration_us: us,
            success: true,
        });
    }
    b.events.push(build);
    let mut strict = Event::new(uuid(), EventType::Feature, "strict", ts, session.clone());
    strict
        .metadata
        .insert("fix".into(), optel_wire::AttributeValue::Bool(true));
    b.events.push(strict);
    let mut files = Event::new(uuid(), EventType::Measurement, "files", ts, session);
    files.value = Some(if profile == "debug" { 12.0 } else { 0.0 });
    b.events.push(files);
    b
}

fn value_of<'a>(breakdowns: &'a Value, name: &str, attribute: &str) -> &'a Value {
    breakdowns
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == name && b["attribute"] == attribute)
        .unwrap_or_else(|| panic!("no breakdown {name}/{attribute} in {breakdowns}"))
}

fn analytics_break_down_v2_batches(t: TestStore) {
    let key = project(&*t.store, "acme");
    let st = state(&t.store);
    t.store.set_public("acme", true).unwrap();
    rt().block_on(async {
        // Three `acme build` runs, two debug and one release, from two installs: the first
        // carries the catalog, the others name it by hash.
        for (install, profile, carry) in [(1, "debug", true), (2, "debug", false), (1, "release", false)] {
            let (s, v) = post_batch(&st, &key, &acme_run(install, profile, carry)).await;
            assert_eq!(s, StatusCode::OK, "{v}");
            assert_eq!(v["accepted"], 3);
            assert_eq!(v["catalog_known"], true, "{v}");
        }
        // A hash the collector never saw, without its catalog: `false`, and no breakdown.
        let mut unknown = acme_run(3, "debug", false);
        unknown.catalog_hash = Some("0".repeat(64));
        let (s, v) = post_batch(&st, &key, &unknown).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["catalog_known"], false);
        // A version 1 batch names no catalog: the field is absent.
        let (s, v) = post_batch(&st, &key, &batch(4, "build", 1)).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert!(v.get("catalog_known").is_none_or(Value::is_null), "{v}");

        let (s, b) = get_json(&st, "/v1/projects/acme/breakdowns?since=2d", Some(ADMIN)).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        let profile = value_of(&b["breakdowns"], "build", "profile");
        assert_eq!(profile["command"], "build");
        assert_eq!(
            profile["values"],
            serde_json::json!([
                {"value": "debug", "count": 2, "failures": 0, "installs": 2},
                {"value": "release", "count": 1, "failures": 1, "installs": 1},
            ])
        );
        assert_eq!(value_of(&b["breakdowns"], "build", "jobs")["values"][0]["count"], 3);
        let fix = value_of(&b["breakdowns"], "strict", "fix");
        assert_eq!(fix["event_type"], "feature");
        assert_eq!(fix["values"][0]["value"], "true");

        let (_, p) = get_json(&st, "/v1/projects/acme/phases?since=2d", Some(ADMIN)).await;
        let phases = p["phases"].as_array().unwrap();
        // The batch with an unknown catalog has its phases counted too (4 builds with phases).
        // In waterfall order: nested phases right after their parent, siblings by start.
        let order: Vec<(&str, &str, u64, f64)> = phases
            .iter()
            .map(|r| {
                (
                    r["phase"].as_str().unwrap(),
                    r["parent"].as_str().unwrap(),
                    r["depth"].as_u64().unwrap(),
                    r["mean_start_ms"].as_f64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            order,
            vec![
                ("resolve", "", 0, 0.0),
                ("compile", "", 0, 21.0),
                ("codegen", "compile", 1, 400.0)
            ]
        );
        for (name, ms) in [("resolve", 20.0), ("compile", 1_200.0), ("codegen", 800.0)] {
            let row = phases.iter().find(|r| r["phase"] == name).unwrap();
            assert_eq!(row["command"], "build");
            assert_eq!(row["count"], 4, "{row}");
            for q in ["p50_ms", "p95_ms", "p99_ms"] {
                let v = row[q].as_f64().unwrap();
                assert!((v - ms).abs() <= ms * 0.02, "{name} {q} {v}");
            }
            assert_eq!(row["versions"][0]["version"], "1.3.0");
        }

        let (_, m) = get_json(&st, "/v1/projects/acme/measurements?since=2d", Some(ADMIN)).await;
        let files = &m["measurements"][0];
        assert_eq!(files["name"], "files");
        assert_eq!(files["count"], 4);
        assert_eq!(files["sum"], 36.0);
        assert_eq!(files["unit"], "count");
        assert!((files["p50"].as_f64().unwrap() - 12.0).abs() <= 12.0 * 0.02, "{files}");

        let (_, a) = get_json(&st, "/v1/projects/acme/adoption?since=2d", Some(ADMIN)).await;
        let strict = &a["series"][0];
        assert_eq!(strict["event_type"], "feature");
        assert_eq!(strict["name"], "strict");
        assert_eq!(strict["count"], 4);
        assert_eq!(strict["installs"], 3);
        let daily = strict["daily"].as_array().unwrap();
        assert_eq!(daily.len(), 3, "{strict}");
        assert_eq!(daily.last().unwrap()["count"], 4);
        assert_eq!(daily.last().unwrap()["installs"], 3);

        let (_, c) = get_json(&st, "/v1/projects/acme/catalog", Some(ADMIN)).await;
        assert_eq!(c["versions"].as_array().unwrap().len(), 1);
        assert_eq!(c["versions"][0]["hash"], acme_catalog().hash());
        assert_eq!(c["latest"]["commands"][0]["name"], "build");

        let (_, s) = get_json(&st, "/v1/projects/acme/stats?since=2d", Some(ADMIN)).await;
        assert_eq!(value_of(&s["breakdowns"], "build", "profile")["values"][0]["count"], 2);
        assert_eq!(s["phases"].as_array().unwrap().len(), 3);
        assert_eq!(s["measurements"][0]["count"], 4);
        assert_eq!(s["features"][0]["daily"].as_array().unwrap().len(), 3);

        // Admin only: the public routes do not know these views (the project is public).
        for view in ["breakdowns", "phases", "measurements", "adoption", "catalog"] {
            let (s, _) = get_json(&st, &format!("/public/v1/projects/acme/{view}"), None).await;
            assert_eq!(s, StatusCode::NOT_FOUND, "{view}");
        }
        let (s, _) = get_json(&st, "/v1/projects/acme/phases", None).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
    });

    // Deletion by pseudonym subtracts exactly what install 1 added.
    assert_eq!(t.store.forget(None, &[pseudonym(1)]).unwrap(), 6);
    let p = t.store.project_by_name("acme").unwrap().unwrap();
    let range = optel_collector::query::TimeRange::last(
        std::time::Duration::from_secs(2 * 86_400),
        now_ms(),
    );
    let b = optel_collector::query::breakdowns(&*t.store, &p, range).unwrap();
    let profile = b
        .breakdowns
        .iter()
        .find(|r| r.name == "build" && r.attribute == "profile")
        .unwrap();
    assert_eq!(profile.values.len(), 1);
    assert_eq!(
        (profile.values[0].value.as_str(), profile.values[0].count, profile.values[0].installs),
        ("debug", 1, 1)
    );
    let ph = optel_collector::query::phases(&*t.store, &p, range).unwrap();
    assert_eq!(ph.phases.len(), 3, "{ph:?}");
    assert!(ph.phases.iter().all(|r| r.count == 2), "{ph:?}");
    let codegen = ph.phases.iter().find(|r| r.phase == "codegen").unwrap();
    assert_eq!((codegen.parent.as_str(), codegen.mean_start_ms), ("compile", 400.0));
    let m = optel_collector::query::measurements(&*t.store, &p, range).unwrap();
    assert_eq!((m.measurements[0].count, m.measurements[0].sum), (2, 24.0));
    let a = optel_collector::query::adoption(&*t.store, &p, range).unwrap();
    assert_eq!((a.series[0].count, a.series[0].installs), (2, 2));

    // Retention empties every analytics rollup of the days it passes.
    let purged = t.store.purge_before(now_ms() + 2 * 86_400_000).unwrap();
    assert!(purged.rollup_rows > 0);
    assert!(optel_collector::query::breakdowns(&*t.store, &p, range).unwrap().breakdowns.is_empty());
    assert!(optel_collector::query::phases(&*t.store, &p, range).unwrap().phases.is_empty());
    assert!(optel_collector::query::measurements(&*t.store, &p, range).unwrap().measurements.is_empty());
    assert!(optel_collector::query::adoption(&*t.store, &p, range).unwrap().series.is_empty());
}

/// At most `MAX_CATALOG_VERSIONS` catalog versions per project: the least recently seen go.
fn catalog_versions_are_bounded(t: TestStore) {
    let _key = project(&*t.store, "acme");
    let p = t.store.project_by_name("acme").unwrap().unwrap();
    let max = optel_collector::storage::MAX_CATALOG_VERSIONS;
    let batches: Vec<Batch> = (0..max + 2)
        .map(|i| {
            let mut b = acme_run(1, "debug", true);
            let mut c = acme_catalog();
            c.commands[0].purpose = format!("Builds a project, version {i}.");
            b.catalog_hash = Some(c.hash());
            b.catalog = Some(c);
            b
        })
        .collect();
    let first_hash = batches[0].catalog_hash.clone().unwrap();
    let last = batches.last().unwrap().catalog.clone().unwrap();
    // Two commits a millisecond apart at least, so "least recently seen" is well defined.
    let (older, newer) = batches.split_at(2);
    let older: Vec<(i64, &Batch)> = older.iter().map(|b| (p.id, b)).collect();
    let newer: Vec<(i64, &Batch)> = newer.iter().map(|b| (p.id, b)).collect();
    t.store.insert_batches(&older, now_ms() - 10).unwrap();
    t.store.insert_batches(&newer, now_ms()).unwrap();
    let stored = t.store.catalogs(p.id).unwrap();
    assert_eq!(stored.len(), max);
    assert!(stored.iter().all(|c| c.hash != first_hash));
    assert_eq!(t.store.catalog(p.id, &last.hash()).unwrap(), Some(last));
    assert_eq!(t.store.catalog(p.id, &first_hash).unwrap(), None);
}
