// Public views against subtraction (included by collector.rs, run on both backends).

/// An install's batch: `version` on `os arch`, the commands `cmds` (a failure when a name ends
/// in `!`, with code `E_<NAME>`) and the features `features`, all a minute ago.
fn install_batch(install: u32, version: &str, os: &str, arch: &str, cmds: &[&str], features: &[&str]) -> Batch {
    let mut b = Batch::new("acme", version, pseudonym(install), os, arch);
    let session = uuid();
    let ts = Timestamp::from_unix_ms(now_ms() - (now_ms() % 86_400_000).min(60_000));
    for c in cmds {
        let name = c.trim_end_matches('!');
        let mut e = Event::new(uuid(), EventType::Command, name, ts, session.clone());
        e.duration_ms = Some(120);
        e.success = Some(!c.ends_with('!'));
        if c.ends_with('!') {
            e.error_code = Some(format!("E_{}", name.to_uppercase()));
        }
        b.events.push(e);
    }
    for f in features {
        b.events.push(Event::new(uuid(), EventType::Feature, *f, ts, session.clone()));
    }
    b
}

/// Every public view's answer, without the `suppressed_rows` counts (which say that rows were
/// hidden, never what they held).
fn public_answers(st: &AppState) -> Vec<(String, Value)> {
    let views = ["overview", "timeseries", "commands", "errors", "versions", "platforms", "features"];
    rt().block_on(async {
        let mut out = Vec::new();
        for view in views {
            for q in ["", "?granularity=week"] {
                let uri = format!("/public/v1/projects/acme/{view}{q}");
                let (s, mut v) = get_json(st, &uri, None).await;
                assert_eq!(s, StatusCode::OK, "{uri}: {v}");
                if let Some(o) = v.as_object_mut() {
                    o.remove("suppressed_rows");
                    // The range ends now: `from`/`to` move between two calls.
                    o.remove("from");
                    o.remove("to");
                    // The day's privacy ledger (DP mode) depends on the questions asked, not
                    // on the data.
                    if let Some(dp) = o.get_mut("dp").and_then(Value::as_object_mut) {
                        for k in ["spent", "remaining", "cached"] {
                            dp.remove(k);
                        }
                    }
                }
                out.push((uri, v));
            }
        }
        out
    })
}

fn public_views_resist_subtraction(make: fn() -> TestStore) {
    subtraction_case(make, false);
}

/// The same with the differential-privacy mode on: the noise of a view depends only on the
/// numbers of its population (here the test fixes the noise's seed, so that the two stores draw
/// the same noise), so adding lone installs still changes no public number.
fn public_views_resist_subtraction_with_dp(make: fn() -> TestStore) {
    subtraction_case(make, true);
}

fn subtraction_case(make: fn() -> TestStore, dp: bool) {
    // Five ordinary installs: 1.0.0 on linux x86_64, `build` twice and failing once with
    // E_BUILD, the feature `fast`.
    let ordinary = |st: &AppState, key: &str| {
        rt().block_on(async {
            for i in 0..5 {
                let b = install_batch(i, "1.0.0", "linux", "x86_64", &["build", "build", "build!"], &["fast"]);
                assert_eq!(post_batch(st, key, &b).await.0, StatusCode::OK);
            }
        })
    };
    let alone = make();
    let key = project(&*alone.store, "acme");
    let st_alone = state(&alone.store);
    ordinary(&st_alone, &key);
    alone.store.set_public("acme", true).unwrap();

    // The same five, plus installs each of which is alone in some group: on version 9.9.9; on
    // macos aarch64; running a command, a failure code and a feature nobody else uses.
    let with = make();
    let key = project(&*with.store, "acme");
    let st_with = state(&with.store);
    ordinary(&st_with, &key);
    rt().block_on(async {
        let odd = [
            install_batch(100, "9.9.9", "linux", "x86_64", &["build", "build!"], &["fast"]),
            install_batch(101, "1.0.0", "macos", "aarch64", &["build", "build!"], &["fast"]),
        ];
        for b in &odd {
            assert_eq!(post_batch(&st_with, &key, b).await.0, StatusCode::OK);
        }
        // An ordinary install that also uses what nobody else does.
        let b = install_batch(3, "1.0.0", "linux", "x86_64", &["secret", "deploy!"], &["rare"]);
        assert_eq!(post_batch(&st_with, &key, &b).await.0, StatusCode::OK);
    });
    with.store.set_public("acme", true).unwrap();

    let (st_alone, st_with) = if dp {
        let exact = public_answers(&st_alone);
        let settings = DpSettings::new(1.0, 100.0).unwrap();
        alone.store.set_public_dp("acme", Some(settings)).unwrap();
        with.store.set_public_dp("acme", Some(settings)).unwrap();
        let (st_alone, st_with) = (
            st_alone.with_dp_noise_seed([9; 32]),
            st_with.with_dp_noise_seed([9; 32]),
        );
        let noisy = public_answers(&st_alone);
        assert_ne!(exact, noisy, "DP mode added no noise");
        for (uri, v) in &noisy {
            assert_eq!(v["dp"]["mechanism"], "two-sided geometric", "{uri}: {v}");
            assert_eq!(v["dp"]["epsilon"], 1.0, "{uri}: {v}");
        }
        (st_alone, st_with)
    } else {
        (st_alone, st_with)
    };
    let a = public_answers(&st_alone);
    let b = public_answers(&st_with);
    for ((uri, va), (_, vb)) in a.iter().zip(&b) {
        assert_eq!(va, vb, "{uri}: a number changed when lone installs were added");
    }
    if dp {
        // With noise, totals no longer equal the sums of rows: each number has its own noise.
        return;
    }
    // And the admin sees them all, so the test data did arrive.
    rt().block_on(async {
        let (_, v) = get_json(&st_with, "/v1/projects/acme/overview", Some(ADMIN)).await;
        assert_eq!(v["active_installs"], 7, "{v}");
        let (_, v) = get_json(&st_with, "/public/v1/projects/acme/overview", None).await;
        assert_eq!(v["active_installs"], 5, "{v}");
        // Totals equal the sums of the rows shown.
        let (_, c) = get_json(&st_with, "/public/v1/projects/acme/commands", None).await;
        let rows = c["commands"].as_array().unwrap();
        let sum = |k: &str| rows.iter().map(|r| r[k].as_u64().unwrap()).sum::<u64>();
        assert_eq!(v["invocations"].as_u64(), Some(sum("count")), "{v} {c}");
        assert_eq!(v["failures"].as_u64(), Some(sum("failures")), "{v} {c}");
        let (_, e) = get_json(&st_with, "/public/v1/projects/acme/errors", None).await;
        let errs: u64 = e["errors"].as_array().unwrap().iter().map(|r| r["count"].as_u64().unwrap()).sum();
        assert_eq!(v["failures"].as_u64(), Some(errs), "{v} {e}");
        for (view, list) in [("versions", "versions"), ("platforms", "platforms")] {
            let (_, l) = get_json(&st_with, &format!("/public/v1/projects/acme/{view}"), None).await;
            let events: u64 = l[list].as_array().unwrap().iter().map(|r| r["events"].as_u64().unwrap()).sum();
            assert_eq!(v["events"].as_u64(), Some(events), "{view}: {v} {l}");
        }
    });
}

/// DP mode: each new question spends ε; the same question is answered from the day's ledger
/// (so repeating it cannot average the noise away, and later events do not show); once the
/// budget is spent, a view answers with its latest answer of the day, or 429 if it has none.
fn dp_budget_is_spent_then_answers_are_cached(t: TestStore) {
    let key = project(&*t.store, "acme");
    let st = state(&t.store);
    rt().block_on(async {
        for i in 0..6 {
            let b = install_batch(i, "1.0.0", "linux", "x86_64", &["build", "build!"], &["fast"]);
            assert_eq!(post_batch(&st, &key, &b).await.0, StatusCode::OK);
        }
    });
    t.store.set_public("acme", true).unwrap();
    t.store
        .set_public_dp("acme", Some(DpSettings::new(0.5, 1.5).unwrap()))
        .unwrap();
    rt().block_on(async {
        let get = |uri: &'static str| {
            let st = st.clone();
            async move { get_json(&st, uri, None).await }
        };
        let (s, first) = get("/public/v1/projects/acme/overview").await;
        assert_eq!(s, StatusCode::OK, "{first}");
        assert_eq!(first["dp"]["spent"], 0.5, "{first}");
        assert_eq!(first["dp"]["remaining"], 1.0, "{first}");
        assert_eq!(first["dp"]["sensitivity"], 7, "{first}");
        assert_eq!(first["dp"]["cached"], false, "{first}");
        // The same question again: the same noisy numbers, nothing spent.
        let (_, again) = get("/public/v1/projects/acme/overview").await;
        assert_eq!(again["dp"]["cached"], true, "{again}");
        assert_eq!(again["dp"]["spent"], 0.5, "{again}");
        for k in ["events", "invocations", "failures", "active_installs", "dau", "wau", "mau"] {
            assert_eq!(first[k], again[k], "{k}: {first} {again}");
        }
        // More events do not show in the day's answer.
        let b = install_batch(50, "1.0.0", "linux", "x86_64", &["build"; 40], &[]);
        assert_eq!(post_batch(&st, &key, &b).await.0, StatusCode::OK);
        let (_, later) = get("/public/v1/projects/acme/overview").await;
        assert_eq!(first["invocations"], later["invocations"], "{first} {later}");

        let (s, c) = get("/public/v1/projects/acme/commands").await;
        assert_eq!(s, StatusCode::OK, "{c}");
        assert_eq!(c["dp"]["spent"], 1.0, "{c}");
        assert_eq!(c["commands"][0]["p50_ms"], 0, "durations are not released: {c}");
        let (_, e) = get("/public/v1/projects/acme/errors").await;
        assert_eq!(e["dp"]["spent"], 1.5, "{e}");
        assert_eq!(e["dp"]["remaining"], 0.0, "{e}");
        // Spent: a view answered today answers from its latest answer, whatever the range...
        let (s, o30) = get("/public/v1/projects/acme/overview?since=30d").await;
        assert_eq!(s, StatusCode::OK, "{o30}");
        assert_eq!(o30["dp"]["cached"], true, "{o30}");
        assert_eq!(o30["dp"]["first_day"], first["dp"]["first_day"], "{o30}");
        assert_eq!(o30["invocations"], first["invocations"], "{o30}");
        // ...and one not answered today is refused until the next UTC day.
        let (s, v) = get("/public/v1/projects/acme/versions").await;
        assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{v}");
        assert_eq!(v["error"]["code"], "privacy_budget_spent", "{v}");
        // The admin's views have no noise and no budget.
        let (s, v) = get_json(&st, "/v1/projects/acme/overview", Some(ADMIN)).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(v["invocations"], 52, "{v}");
        assert!(v.get("dp").is_none(), "{v}");
    });
    // Off again: exact public numbers.
    t.store.set_public_dp("acme", None).unwrap();
    rt().block_on(async {
        let (_, v) = get_json(&st, "/public/v1/projects/acme/overview", None).await;
        assert!(v.get("dp").is_none(), "{v}");
    });
    let id = t.store.project_by_name("acme").unwrap().unwrap().id;
    assert_eq!(t.store.public_dp(id).unwrap(), None);
}
