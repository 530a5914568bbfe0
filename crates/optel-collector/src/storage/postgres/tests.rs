//! Unit tests of the PostgreSQL backend that reach inside it (sessions, migration 0008).
#![allow(clippy::unwrap_used)]

use super::*;
use crate::rollup::BucketCounts;

/// `--durability` reaches PostgreSQL: every session of the store runs with
/// `synchronous_commit` on or off whatever the server's default, and a `search_path` set
/// in the URL's options is kept beside it.
#[test]
fn durability_sets_synchronous_commit() {
    let url = std::env::var("OPTEL_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "host=127.0.0.1 user=postgres dbname=test".into());
    for (durability, expected) in [(Durability::Fsync, "on"), (Durability::CrashSafe, "off")] {
        let schema = format!("optel_durability_{}_{expected}", std::process::id());
        let store = PgStore::connect_with(&url, Some(&schema), durability).unwrap();
        let (commit, path) = store
            .run(|pool| async move {
                let client = get(&pool).await?;
                let commit = client.query_one("SHOW synchronous_commit", &[]).await?;
                let path = client.query_one("SHOW search_path", &[]).await?;
                Ok((commit.get::<_, String>(0), path.get::<_, String>(0)))
            })
            .unwrap();
        assert_eq!(commit, expected, "{durability:?}");
        assert_eq!(path, schema);
        store.drop_schema().unwrap();
    }
}

/// A store written by schema 7 (phase histograms as JSONB) keeps its phase rows through
/// migration 0008, at the top level and with no start; `optel_hist_add` on `int8[]` adds
/// exactly as `BucketCounts::merge` does, a histogram minus itself being empty.
#[test]
fn phase_histograms_migrate_to_arrays() {
    let url = std::env::var("OPTEL_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "host=127.0.0.1 user=postgres dbname=test".into());
    let schema = format!("optel_phase_upgrade_{}", std::process::id());
    let b = crate::rollup::value_bucket(20.0);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(&url, NoTls).await.unwrap();
        let task = tokio::spawn(conn);
        client
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema};
                 SET search_path TO {schema}"
            ))
            .await
            .unwrap();
        for sql in &PG_MIGRATIONS[..7] {
            client.batch_execute(sql).await.unwrap();
        }
        client
            .batch_execute(
                "CREATE TABLE optel_schema (version BIGINT NOT NULL);
                 INSERT INTO optel_schema (version) VALUES (7);
                 INSERT INTO projects (id, name, created_ms) VALUES (1, 'tool', 1)",
            )
            .await
            .unwrap();
        for (day, hist) in [
            (20_000_i64, format!(r#"{{"{b}":2,"{}":1}}"#, b + 2)),
            (20_001, format!(r#"{{"{}":4,"{b}":1}}"#, b - 20)),
            (20_002, "{}".to_owned()),
        ] {
            client
                .execute(
                    "INSERT INTO rollup_phases (project_id, day, command, phase, version, hist)
                     VALUES (1, $1, 'build', 'resolve', '1.0.0', $2::text::jsonb)",
                    &[&day, &hist],
                )
                .await
                .unwrap();
        }
        drop(client);
        let _ = task.await;
    });

    let store = PgStore::connect_with(&url, Some(&schema), Durability::default()).unwrap();
    let days = DayRange {
        first: 20_000,
        last: 20_002,
    };
    let rows = store.phases(1, days).unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!((rows[0].parent.as_str(), rows[0].start_ms_sum), ("", 0));
    assert_eq!(
        rows[0].hist.iter().collect::<Vec<_>>(),
        vec![(b - 20, 4), (b, 3), (b + 2, 1)]
    );

    let cases: [(&[i64], &[i64]); 6] = [
        (&[400, 2, 0, 1], &[400, -2]),
        (&[400, 1], &[400, -1]),
        (&[], &[5, 1]),
        (&[3, 1], &[6, 2]),
        (&[6, 2, 1], &[-3, 1, 0, 0, 0, 0, 0, 0, 0, 0, -1]),
        (&[], &[]),
    ];
    for (x, y) in cases {
        let (xs, ys) = (x.to_vec(), y.to_vec());
        let got: Vec<i64> = store
            .run(|pool| async move {
                let client = get(&pool).await?;
                let r = client
                    .query_one("SELECT optel_hist_add($1::int8[], $2::int8[])", &[&xs, &ys])
                    .await?;
                Ok(r.get::<_, Vec<i64>>(0))
            })
            .unwrap();
        let mut want = BucketCounts::from_array(x);
        want.merge(&BucketCounts::from_array(y));
        assert_eq!(got, want.to_array(), "{x:?} + {y:?}");
    }
    store.drop_schema().unwrap();
}
