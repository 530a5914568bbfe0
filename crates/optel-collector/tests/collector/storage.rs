// Included by collector.rs: storage semantics every backend shares (idempotency within and
// across group commits, all-or-nothing groups), then PostgreSQL-only ones (several stores on
// one schema, the upgrade from schema 1).

use optel_collector::query::TimeRange;
use optel_collector::rollup::DayRange;
use optel_collector::storage::InsertOutcome;

fn outcome(inserted: u64, duplicates: u64) -> InsertOutcome {
    InsertOutcome {
        inserted,
        duplicates,
    }
}

/// Events in the rollups of a project, all days.
fn rollup_events(store: &dyn Store, project_id: i64) -> i64 {
    let all = DayRange {
        first: 0,
        last: i64::MAX / 2,
    };
    store
        .counts(project_id, all)
        .unwrap()
        .iter()
        .map(|r| r.count)
        .sum()
}

fn last_two_days() -> TimeRange {
    TimeRange::last(std::time::Duration::from_secs(2 * 86_400), now_ms())
}

/// (count, installs) of a command in the stats of the last two days.
fn command(store: &dyn Store, project: &optel_collector::storage::Project, name: &str) -> (u64, u64) {
    let stats = store.stats(project, last_two_days()).unwrap();
    stats
        .commands
        .iter()
        .find(|c| c.name == name)
        .map_or((0, 0), |c| (c.count, c.installs))
}

fn duplicates_within_and_across_groups_count_once(t: TestStore) {
    let _key = project(&*t.store, "acme");
    let p = t.store.project_by_name("acme").unwrap().unwrap();
    let a = batch(1, "build", 3);
    // Another install's batch repeating two of `a`'s events and one of its own: only its two
    // own events are new.
    let mut b = batch(2, "test", 2);
    b.events.extend(a.events[..2].iter().cloned());
    b.events.push(b.events[0].clone());
    let out = t.store.insert_batches(&[(p.id, &a), (p.id, &b)], now_ms()).unwrap();
    assert_eq!(out, [outcome(3, 0), outcome(2, 3)]);
    // `a` retried in full, in one group with a new batch.
    let c = batch(3, "build", 4);
    let out = t.store.insert_batches(&[(p.id, &a), (p.id, &c)], now_ms()).unwrap();
    assert_eq!(out, [outcome(0, 3), outcome(4, 0)]);
    // The groups after one with duplicates are stored in full too (PostgreSQL stores them by
    // INSERT … ON CONFLICT for a while, then by COPY again: both paths run here).
    for i in 0..20 {
        let d = batch(10 + i, "run", 2);
        assert_eq!(t.store.insert_batch(p.id, &d, now_ms()).unwrap(), outcome(2, 0));
    }
    let more = batch(10, "run", 2);
    assert_eq!(t.store.insert_batch(p.id, &more, now_ms()).unwrap(), outcome(2, 0));

    assert_eq!(rollup_events(&*t.store, p.id), 3 + 2 + 4 + 20 * 2 + 2);
    let stats = t.store.stats(&p, last_two_days()).unwrap();
    assert_eq!(stats.events, 51);
    assert_eq!(stats.active_installs, 3 + 20);
    assert_eq!(command(&*t.store, &p, "build"), (7, 2));
    assert_eq!(command(&*t.store, &p, "test"), (2, 1));
    assert_eq!(command(&*t.store, &p, "run"), (42, 20));
}

fn a_failed_group_stores_nothing(t: TestStore) {
    let _key = project(&*t.store, "acme");
    let p = t.store.project_by_name("acme").unwrap().unwrap();
    let a = batch(1, "build", 3);
    let orphan = batch(2, "build", 2);
    // The second batch names a project that does not exist: the whole group fails, and the
    // first batch, which alone would have been fine, is not stored either.
    let missing_project = p.id + 1_000_000;
    assert!(
        t.store
            .insert_batches(&[(p.id, &a), (missing_project, &orphan)], now_ms())
            .is_err()
    );
    assert_eq!(rollup_events(&*t.store, p.id), 0);
    assert_eq!(t.store.insert_batch(p.id, &a, now_ms()).unwrap(), outcome(3, 0));
    assert_eq!(t.store.forget(Some(p.id), &[pseudonym(1)]).unwrap(), 3);
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL only.

/// Two collectors (two `PgStore`s on one schema) storing the same batches at the same time, in
/// different groupings and orders: every event is stored and counted once.
#[test]
fn postgres_two_stores_on_one_schema_count_each_event_once() {
    let t = postgres();
    let schema = t.pg.as_ref().unwrap().schema().unwrap().to_owned();
    let other = Arc::new(PgStore::connect_in_schema(&pg_url(), Some(&schema)).unwrap());
    let _key = project(&*t.store, "acme");
    let p = t.store.project_by_name("acme").unwrap().unwrap();
    let commands = ["build", "test", "run"];
    let batches: Vec<Batch> = (0..60)
        .map(|i| batch(i % 25, commands[(i % 3) as usize], 1 + (i % 7) as usize))
        .collect();
    let total: u64 = batches.iter().map(|b| b.events.len() as u64).sum();
    let stores: [Arc<dyn Store>; 2] = [t.store.clone(), other.clone()];
    let inserted: u64 = std::thread::scope(|s| {
        let runs: Vec<_> = stores
            .iter()
            .enumerate()
            .map(|(n, store)| {
                let batches = &batches;
                let p = p.id;
                s.spawn(move || {
                    // One store goes forward in groups of 4, the other backward in groups of 3.
                    let mut order: Vec<&Batch> = batches.iter().collect();
                    if n == 1 {
                        order.reverse();
                    }
                    let mut inserted = 0;
                    for group in order.chunks(4 - n) {
                        let refs: Vec<(i64, &Batch)> = group.iter().map(|b| (p, *b)).collect();
                        for o in store.insert_batches(&refs, now_ms()).unwrap() {
                            inserted += o.inserted;
                        }
                    }
                    inserted
                })
            })
            .collect();
        runs.into_iter().map(|r| r.join().unwrap()).sum()
    });
    assert_eq!(inserted, total, "each event is newly stored by exactly one of the stores");
    assert_eq!(rollup_events(&*t.store, p.id), total as i64);
    let expected = |name: &str| -> (u64, u64) {
        let mine: Vec<&Batch> = batches.iter().filter(|b| b.events[0].name == name).collect();
        let installs: std::collections::BTreeSet<&str> =
            mine.iter().map(|b| b.pseudonym.as_str()).collect();
        (
            mine.iter().map(|b| b.events.len() as u64).sum(),
            installs.len() as u64,
        )
    };
    for name in commands {
        assert_eq!(command(&*other, &p, name), expected(name), "{name}");
    }
    assert_eq!(
        t.store.stats(&p, last_two_days()).unwrap().active_installs,
        25
    );
}

/// A database created by an optel with schema 1 (text ids, pseudonyms on every event) keeps
/// its events through the upgrade: retries of them are still duplicates, and deletion by
/// pseudonym finds them.
#[test]
fn postgres_upgrade_from_schema_1_keeps_events() {
    let schema = format!("optel_up{}_{}", std::process::id(), now_ms() % 1_000_000);
    let rt = rt();
    let old = batch(4, "build", 3);
    rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(&pg_url(), tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        client
            .batch_execute(&format!(
                "CREATE SCHEMA {schema}; SET search_path = {schema};
                 CREATE TABLE optel_schema (version BIGINT NOT NULL);
                 INSERT INTO optel_schema VALUES (1);"
            ))
            .await
            .unwrap();
        client
            .batch_execute(include_str!("../../migrations/postgres/0001_init.sql"))
            .await
            .unwrap();
        client
            .execute(
                "INSERT INTO projects (name, created_ms) VALUES ('acme', 0)",
                &[],
            )
            .await
            .unwrap();
        // Their rollups as schema 1 kept them: 3 successful `build`s of 5 ms each, today.
        client
            .execute(
                "INSERT INTO rollup_counts (project_id, day, event_type, name, version, os,
                    arch, outcome, error_code, count, duration_sum)
                 SELECT id, $1, 'command', 'build', $2, $3, $4, 1, '', 3, 15 FROM projects",
                &[
                    &old.events[0].timestamp.unix_ms().div_euclid(86_400_000),
                    &old.service_version,
                    &old.os,
                    &old.arch,
                ],
            )
            .await
            .unwrap();
        for e in &old.events {
            client
                .execute(
                    "INSERT INTO events (project_id, event_id, event_type, name, ts_ms,
                        received_ms, service, service_version, pseudonym, session_id, os, arch,
                        duration_ms, success, error_code, metadata)
                     SELECT id, $1, 'command', $2, $3, $3, $4, $5, $6, $7, $8, $9, 5, true,
                        NULL, NULL FROM projects",
                    &[
                        &e.event_id,
                        &e.name,
                        &e.timestamp.unix_ms(),
                        &old.service_name,
                        &old.service_version,
                        &old.pseudonym,
                        &e.session_id,
                        &old.os,
                        &old.arch,
                    ],
                )
                .await
                .unwrap();
        }
    });
    let pg = Arc::new(PgStore::connect_in_schema(&pg_url(), Some(&schema)).unwrap());
    let t = TestStore {
        store: pg.clone(),
        pg: Some(pg),
        _dir: None,
    };
    let p = t.store.project_by_name("acme").unwrap().unwrap();
    assert_eq!(rollup_events(&*t.store, p.id), 3);
    assert_eq!(command(&*t.store, &p, "build").0, 3);
    let mut again = old.clone();
    again.events.push(batch(4, "build", 1).events.remove(0));
    assert_eq!(t.store.insert_batch(p.id, &again, now_ms()).unwrap(), outcome(1, 3));
    assert_eq!(rollup_events(&*t.store, p.id), 4);
    assert_eq!(t.store.forget(None, &[pseudonym(4)]).unwrap(), 4);
    assert_eq!(rollup_events(&*t.store, p.id), 0, "forget subtracts the upgraded rollups");
    let later = batch(5, "test", 2);
    assert_eq!(t.store.insert_batch(p.id, &later, now_ms()).unwrap(), outcome(2, 0));
}
