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
                }
                out.push((uri, v));
            }
        }
        out
    })
}

fn public_views_resist_subtraction(make: fn() -> TestStore) {
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

    let a = public_answers(&st_alone);
    let b = public_answers(&st_with);
    for ((uri, va), (_, vb)) in a.iter().zip(&b) {
        assert_eq!(va, vb, "{uri}: a number changed when lone installs were added");
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
