//! Unit tests of the SQLite backend that reach inside it (upgrade, row reuse, query plans).
#![allow(clippy::unwrap_used)]

use super::*;
use optel_wire::Batch;
use optel_wire::{Event, Timestamp};

fn batch(pseudonym: &str, seed: u8, ts_ms: i64) -> Batch {
    let mut b = Batch::new("tool", "1.0.0", pseudonym, "linux", "x86_64");
    let mut e = Event::new(
        optel_wire::format_uuid_v4([seed; 16]),
        EventType::Command,
        "build",
        Timestamp::from_unix_ms(ts_ms),
        optel_wire::format_uuid_v4([seed ^ 0xff; 16]),
    );
    e.success = Some(true);
    e.duration_ms = Some(12);
    b.events.push(e);
    b
}

fn installs_on(store: &SqliteStore, project: i64, day: i64) -> u64 {
    let rows = store
        .installs(
            project,
            DayRange {
                first: day,
                last: day,
            },
            &[SketchKind::All],
        )
        .unwrap();
    rows.iter().map(|r| r.sketch.count()).sum()
}

/// The writer keeps install sketches in memory between commits; another connection that
/// changes them (here `optel forget` from a second process) must not be overwritten by a
/// stale copy.
#[test]
fn sketch_cache_follows_changes_by_other_connections() {
    let dir = tempfile::tempdir().unwrap();
    let a = SqliteStore::open(dir.path()).unwrap();
    let project = a.create_project("tool", "hash", 1).unwrap();
    let ts = crate::now_ms();
    let day = day_of(ts);
    let p1 = "1".repeat(32);
    a.insert_batches(&[(project.id, &batch(&p1, 1, ts))], ts)
        .unwrap();
    assert_eq!(installs_on(&a, project.id, day), 1);

    let b = SqliteStore::open(dir.path()).unwrap();
    assert_eq!(
        b.forget(Some(project.id), std::slice::from_ref(&p1))
            .unwrap(),
        1
    );
    assert_eq!(installs_on(&b, project.id, day), 0);

    // `a` still caches the sketch holding p1; it must see `b`'s commit and reload.
    a.insert_batches(&[(project.id, &batch(&"2".repeat(32), 2, ts))], ts)
        .unwrap();
    assert_eq!(installs_on(&a, project.id, day), 1);
    assert_eq!(installs_on(&b, project.id, day), 1);
}

/// Retention and deletion by pseudonym find their rows through an index or a row range:
/// a scan of every event under the write lock would stall ingest (and anyone holding a
/// tool's ingest key may ask for a deletion).
#[test]
fn purge_and_forget_do_not_scan_the_events_table() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(dir.path()).unwrap();
    let conn = s.conn();
    for sql in [
        PURGE_EVENTS,
        PURGE_UPLOADS,
        FORGET_UPLOADS,
        FORGET_SELECT,
        FORGET_EVENTS,
    ] {
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        for i in 1..=stmt.parameter_count() {
            stmt.raw_bind_parameter(i, i as i64).unwrap();
        }
        let mut plan = Vec::new();
        let mut rows = stmt.raw_query();
        while let Some(row) = rows.next().unwrap() {
            plan.push(row.get::<_, String>(3).unwrap());
        }
        let plan = plan.join("; ");
        assert!(
            (plan.contains("USING INDEX") || plan.contains("USING INTEGER PRIMARY KEY"))
                && !plan.contains("SCAN"),
            "{sql}: {plan}"
        );
    }
}

fn events_in(store: &SqliteStore, project: i64) -> i64 {
    let days = DayRange {
        first: 0,
        last: i64::MAX / crate::rollup::DAY_MS,
    };
    store
        .counts(project, days)
        .unwrap()
        .iter()
        .map(|r| r.count)
        .sum()
}

/// A store written by schema 3 (pseudonyms and batch columns on every event) keeps its
/// events through the upgrade to uploads: retries of them are still duplicates, deletion
/// by pseudonym finds them and subtracts them from the rollups, and another install's
/// events stay.
#[test]
fn upgrade_from_schema_3_keeps_events_and_their_installs() {
    let dir = tempfile::tempdir().unwrap();
    let ts = crate::now_ms();
    let (a, b) = ("a".repeat(32), "b".repeat(32));
    let mut batch_a = batch(&a, 1, ts);
    batch_a.events.extend(batch(&a, 2, ts).events);
    let batch_b = batch(&b, 3, ts);
    {
        let mut conn = Connection::open(dir.path().join(SqliteStore::FILE_NAME)).unwrap();
        let tx = conn.transaction().unwrap();
        for sql in &SQLITE_MIGRATIONS[..3] {
            tx.execute_batch(sql).unwrap();
        }
        tx.pragma_update(None, "user_version", 3).unwrap();
        tx.execute(
            "INSERT INTO projects (id, name, created_ms) VALUES (1, 'tool', 1)",
            [],
        )
        .unwrap();
        let mut delta = Delta::default();
        let no_extras = crate::rollup::Extras::default();
        for (received, batch) in [(ts, &batch_b), (ts + 1, &batch_a)] {
            delta.add_batch(
                1,
                batch,
                crate::rollup::install_hash(&batch.pseudonym),
                batch.events.iter().map(|e| (e, &no_extras)),
            );
            for e in &batch.events {
                tx.execute(
                    "INSERT INTO events (project_id, event_id, event_type, name, ts_ms,
                        received_ms, service, service_version, pseudonym, session_id, os,
                        arch, duration_ms, success, error_code, metadata)
                     VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13,
                        NULL, NULL)",
                    params![
                        &super::super::uuid_bytes(&e.event_id)[..],
                        e.event_type.as_str(),
                        e.name,
                        e.timestamp.unix_ms(),
                        received,
                        batch.service_name,
                        batch.service_version,
                        batch.pseudonym,
                        &super::super::uuid_bytes(&e.session_id)[..],
                        batch.os,
                        batch.arch,
                        e.duration_ms.map(|d| d as i64),
                        e.success,
                    ],
                )
                .unwrap();
            }
        }
        // Schema 3 has no per-version histogram (migration 0008 adds it).
        delta.version_durations.clear();
        apply_delta(&tx, &delta, false, None).unwrap();
        tx.commit().unwrap();
    }

    let s = SqliteStore::open(dir.path()).unwrap();
    assert_eq!(events_in(&s, 1), 3);
    let out = s.insert_batches(&[(1, &batch_a)], ts).unwrap();
    assert_eq!(
        out[0].duplicates, 2,
        "upgraded events still deduplicate retries"
    );
    assert_eq!(s.forget(Some(1), std::slice::from_ref(&a)).unwrap(), 2);
    assert_eq!(
        events_in(&s, 1),
        1,
        "forget subtracted the upgraded rollups"
    );
    assert_eq!(installs_on(&s, 1, day_of(ts)), 1);
    assert_eq!(s.forget(None, std::slice::from_ref(&b)).unwrap(), 1);
    let conn = s.conn();
    let left: i64 = conn
        .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
        .unwrap();
    let uploads: i64 = conn
        .query_row("SELECT count(*) FROM uploads", [], |r| r.get(0))
        .unwrap();
    assert_eq!((left, uploads), (0, 0));
    // Events stored before the per-version histogram existed leave no negative rows in it.
    let negative: i64 = conn
        .query_row(
            "SELECT count(*) FROM rollup_version_durations WHERE count < 0",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(negative, 0);
}

/// Row numbers freed by a deletion are handed out again; an upload whose range now covers
/// another install's rows must still delete only its own.
#[test]
fn forget_deletes_only_its_own_rows_when_row_numbers_are_reused() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(dir.path()).unwrap();
    let project = s.create_project("tool", "hash", 1).unwrap();
    let now = crate::now_ms();
    let (a, b, c) = ("a".repeat(32), "b".repeat(32), "c".repeat(32));
    // `a` sends an event dated 3 days ago, `b` one of today; then retention drops days
    // before yesterday: `a`'s upload (received now) stays, its row goes.
    s.insert_batches(&[(project.id, &batch(&b, 1, now))], now)
        .unwrap();
    s.insert_batches(
        &[(project.id, &batch(&a, 2, now - 3 * crate::rollup::DAY_MS))],
        now,
    )
    .unwrap();
    assert_eq!(
        s.purge_before(now - crate::rollup::DAY_MS).unwrap().events,
        1
    );
    // `c`'s event takes `a`'s freed row number, inside `a`'s recorded range.
    s.insert_batches(&[(project.id, &batch(&c, 3, now))], now)
        .unwrap();
    assert_eq!(
        s.forget(Some(project.id), std::slice::from_ref(&a))
            .unwrap(),
        0
    );
    assert_eq!(events_in(&s, project.id), 2);
    assert_eq!(
        s.forget(Some(project.id), std::slice::from_ref(&c))
            .unwrap(),
        1
    );
    assert_eq!(
        s.forget(Some(project.id), std::slice::from_ref(&b))
            .unwrap(),
        1
    );
}

/// A retried batch is stored once, and only its new events reach the rollups.
#[test]
fn duplicates_within_and_across_commits_count_once() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(dir.path()).unwrap();
    let project = s.create_project("tool", "hash", 1).unwrap();
    let ts = crate::now_ms();
    let first = batch(&"1".repeat(32), 1, ts);
    let mut second = batch(&"1".repeat(32), 2, ts);
    second.events.extend(first.events.clone());
    let out = s
        .insert_batches(&[(project.id, &first), (project.id, &first)], ts)
        .unwrap();
    assert_eq!(
        out[0],
        InsertOutcome {
            inserted: 1,
            duplicates: 0
        }
    );
    assert_eq!(
        out[1],
        InsertOutcome {
            inserted: 0,
            duplicates: 1
        }
    );
    let out = s.insert_batches(&[(project.id, &second)], ts).unwrap();
    assert_eq!(
        out[0],
        InsertOutcome {
            inserted: 1,
            duplicates: 1
        }
    );
    assert_eq!(events_in(&s, project.id), 2);
    let days = DayRange {
        first: day_of(ts),
        last: day_of(ts),
    };
    let hist: i64 = s
        .durations(project.id, days)
        .unwrap()
        .iter()
        .map(|r| r.count)
        .sum();
    assert_eq!(hist, 2);
}

/// `--durability` reaches SQLite: FULL (2) syncs the WAL at each commit, NORMAL (1) does not.
#[test]
fn durability_sets_synchronous() {
    for (durability, expected) in [(Durability::Fsync, 2), (Durability::CrashSafe, 1)] {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open_with(dir.path(), durability).unwrap();
        let mode: i64 = s
            .conn()
            .pragma_query_value(None, "synchronous", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, expected, "{durability:?}");
    }
}

/// A store written by schema 9 (phase histograms as JSON objects) keeps its phase rows
/// through migration 0010: the counts read the same, at the top level and with no start, and
/// deleting events stored before the upgrade (facts without parent or start) subtracts them
/// exactly from the converted rows.
#[test]
fn upgrade_to_binary_phase_histograms() {
    use crate::rollup::{EventFacts, Extras, value_bucket};
    let dir = tempfile::tempdir().unwrap();
    let b = value_bucket(20.0);
    {
        let mut conn = Connection::open(dir.path().join(SqliteStore::FILE_NAME)).unwrap();
        let tx = conn.transaction().unwrap();
        for sql in &SQLITE_MIGRATIONS[..9] {
            tx.execute_batch(sql).unwrap();
        }
        tx.pragma_update(None, "user_version", 9).unwrap();
        tx.execute(
            "INSERT INTO projects (id, name, created_ms) VALUES (1, 'tool', 1)",
            [],
        )
        .unwrap();
        // Two days of `build resolve` on 1.0.0 as schema 9 stored them, and a row that
        // deletions emptied.
        for (day, hist) in [
            (20_000, format!(r#"{{"{b}":2,"{}":1}}"#, b + 2)),
            (20_001, format!(r#"{{"{}":4,"{b}":1}}"#, b - 20)),
            (20_002, "{}".to_owned()),
        ] {
            tx.execute(
                "INSERT INTO rollup_phases (project_id, day, command, phase, version, hist)
                 VALUES (1, ?1, 'build', 'resolve', '1.0.0', ?2)",
                params![day, hist],
            )
            .unwrap();
        }
        tx.commit().unwrap();
    }

    let s = SqliteStore::open(dir.path()).unwrap();
    let days = DayRange {
        first: 20_000,
        last: 20_002,
    };
    let rows = s.phases(1, days).unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(
        (
            rows[0].command.as_str(),
            rows[0].phase.as_str(),
            rows[0].parent.as_str()
        ),
        ("build", "resolve", "")
    );
    assert_eq!(rows[0].start_ms_sum, 0);
    assert_eq!(
        rows[0].hist.iter().collect::<Vec<_>>(),
        vec![(b - 20, 4), (b, 3), (b + 2, 1)]
    );

    // Two events of day 20000 stored before the upgrade, deleted: their facts are the old
    // form, `[name, duration_us]`.
    let old = Extras::decode(Some(r#"{"p":[["resolve",20000]]}"#));
    let mut delta = Delta::default();
    for _ in 0..2 {
        delta.add(
            &EventFacts {
                project_id: 1,
                ts_ms: 20_000 * crate::rollup::DAY_MS + 5,
                event_type: EventType::Command,
                name: "build",
                version: "1.0.0",
                os: "linux",
                arch: "x86_64",
                duration_ms: Some(25),
                success: Some(true),
                error_code: None,
                install: 1,
                extras: &old,
            },
            -1,
        );
    }
    {
        let mut conn = s.conn();
        let tx = conn.transaction().unwrap();
        apply_delta(&tx, &delta, true, None).unwrap();
        tx.commit().unwrap();
    }
    let rows = s.phases(1, days).unwrap();
    assert_eq!(
        rows[0].hist.iter().collect::<Vec<_>>(),
        vec![(b - 20, 4), (b, 1), (b + 2, 1)]
    );
    let conn = s.conn();
    let stored: Vec<u8> = conn
        .query_row(
            "SELECT hist FROM rollup_phases WHERE day = 20000 AND parent = ''",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        BucketCounts::decode(&stored).iter().collect::<Vec<_>>(),
        vec![(b + 2, 1)]
    );

    // The merge function: a BLOB plus anything malformed is the BLOB; a histogram minus
    // itself is empty.
    let mut h = BucketCounts::new();
    h.add(b, 3);
    let mut minus = BucketCounts::new();
    minus.add(b, -3);
    for (x, y, want) in [
        (
            rusqlite::types::Value::Blob(h.encode()),
            rusqlite::types::Value::Text("junk".into()),
            h.clone(),
        ),
        (
            rusqlite::types::Value::Null,
            rusqlite::types::Value::Blob(h.encode()),
            h.clone(),
        ),
        (
            rusqlite::types::Value::Blob(vec![7, 7, 7]),
            rusqlite::types::Value::Blob(h.encode()),
            h.clone(),
        ),
        (
            rusqlite::types::Value::Blob(h.encode()),
            rusqlite::types::Value::Blob(minus.encode()),
            BucketCounts::new(),
        ),
    ] {
        let got: Vec<u8> = conn
            .query_row("SELECT optel_hist_add(?1, ?2)", params![x, y], |r| r.get(0))
            .unwrap();
        assert_eq!(BucketCounts::decode(&got), want);
    }
}
