//! The PostgreSQL backend: tokio-postgres behind a deadpool pool, driven by a small private
//! runtime so the [`Store`] trait stays synchronous. Events go in with one multi-row
//! `INSERT … SELECT FROM unnest(…) ON CONFLICT DO NOTHING RETURNING`, rollups with multi-row
//! upserts in the same transaction; rows are locked in key order so several collectors can
//! share one database.

use std::collections::{BTreeSet, HashMap, HashSet};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use optel_wire::{Batch, EventType};
use tokio_postgres::NoTls;

use super::{InsertOutcome, Project, PurgeOutcome, Result, StorageError, Store, StoredEvent};
use crate::rollup::{
    CountKey, CountRow, DayRange, Delta, EventFacts, HistRow, InstallSketch, SketchKind, SketchRow,
    day_of, install_hash,
};

/// Migrations of the PostgreSQL schema, applied in order; table `optel_schema` records how many
/// ran. An advisory lock serialises collectors that start at the same time.
const PG_MIGRATIONS: &[&str] = &[include_str!("../../migrations/postgres/0001_init.sql")];

/// Key of the advisory lock held while migrating.
const MIGRATION_LOCK: i64 = 0x6f70_7465_6c00_0001;

/// Connections in the pool.
const POOL_SIZE: usize = 8;

/// The PostgreSQL backend.
pub struct PgStore {
    rt: Option<tokio::runtime::Runtime>,
    pool: Pool,
    schema: Option<String>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which is refused inside async code; this never blocks.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

fn is_schema_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !s.starts_with(|c: char| c.is_ascii_digit())
}

impl PgStore {
    /// Connects to `url` (`postgres://user@host:port/db`, libpq key-value strings work too)
    /// and applies pending migrations.
    ///
    /// # Errors
    /// The URL is malformed, the database is unreachable, or its schema is newer than this
    /// binary.
    pub fn connect(url: &str) -> Result<Self> {
        Self::connect_in_schema(url, None)
    }

    /// Like [`PgStore::connect`], but keeps every table in `schema` (created if missing;
    /// `[a-z_][a-z0-9_]*`): several stores, such as parallel test runs, can share a database.
    ///
    /// # Errors
    /// As [`PgStore::connect`]; a schema name outside the charset.
    pub fn connect_in_schema(url: &str, schema: Option<&str>) -> Result<Self> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e: tokio_postgres::Error| StorageError::BadUrl(e.to_string()))?;
        if let Some(s) = schema {
            if !is_schema_name(s) {
                return Err(StorageError::BadUrl(format!(
                    "schema {s:?} is not [a-z_][a-z0-9_]*"
                )));
            }
            config.options(format!("-c search_path={s}"));
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(std::time::Duration::from_secs(5));
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("optel-postgres")
            .enable_all()
            .build()
            .map_err(|e| StorageError::Postgres(format!("cannot start runtime: {e}")))?;
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = {
            let _guard = rt.enter();
            Pool::builder(manager)
                .max_size(POOL_SIZE)
                .runtime(deadpool_postgres::Runtime::Tokio1)
                .build()
                .map_err(|e| StorageError::Postgres(e.to_string()))?
        };
        let store = Self {
            rt: Some(rt),
            pool,
            schema: schema.map(str::to_owned),
        };
        store.run(|pool| async move { migrate(&pool, schema_owned(schema)).await })?;
        Ok(store)
    }

    /// Drops the schema this store was opened in, with all its tables (test clean-up).
    ///
    /// # Errors
    /// Database errors; no schema was given.
    pub fn drop_schema(&self) -> Result<()> {
        let Some(schema) = self.schema.clone() else {
            return Err(StorageError::BadUrl("no schema to drop".into()));
        };
        self.run(|pool| async move {
            let client = get(&pool).await?;
            client
                .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                .await?;
            Ok(())
        })
    }

    fn run<T, F, Fut>(&self, f: F) -> Result<T>
    where
        F: FnOnce(Pool) -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let Some(rt) = &self.rt else {
            return Err(StorageError::Postgres("store is shut down".into()));
        };
        rt.block_on(f(self.pool.clone()))
    }
}

fn schema_owned(schema: Option<&str>) -> Option<String> {
    schema.map(str::to_owned)
}

async fn get(pool: &Pool) -> Result<deadpool_postgres::Object> {
    pool.get().await.map_err(|e| match e {
        deadpool_postgres::PoolError::Backend(e) => StorageError::from(e),
        other => StorageError::Postgres(other.to_string()),
    })
}

async fn migrate(pool: &Pool, schema: Option<String>) -> Result<()> {
    let mut client = get(pool).await?;
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    if let Some(s) = &schema {
        tx.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {s}"))
            .await?;
    }
    tx.batch_execute("CREATE TABLE IF NOT EXISTS optel_schema (version BIGINT NOT NULL)")
        .await?;
    let current: i64 = tx
        .query_opt("SELECT version FROM optel_schema", &[])
        .await?
        .map(|r| r.get(0))
        .unwrap_or(0);
    let supported = PG_MIGRATIONS.len() as i64;
    if current > supported {
        return Err(StorageError::SchemaTooNew {
            found: current,
            supported,
        });
    }
    for sql in PG_MIGRATIONS.iter().skip(current as usize) {
        tx.batch_execute(sql).await?;
    }
    tx.execute("DELETE FROM optel_schema", &[]).await?;
    tx.execute(
        "INSERT INTO optel_schema (version) VALUES ($1)",
        &[&supported],
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

const PROJECT_COLUMNS: &str = "id, name, created_ms, public";

fn project_from_row(r: &tokio_postgres::Row) -> Project {
    Project {
        id: r.get(0),
        name: r.get(1),
        created_ms: r.get(2),
        public: r.get(3),
    }
}

// One Vec per column, as unnest() takes them: the tuples are wide on purpose.
#[allow(clippy::type_complexity)]
async fn apply_delta(
    tx: &deadpool_postgres::Transaction<'_>,
    delta: &Delta,
    removing: bool,
) -> Result<()> {
    let counts = delta.sorted_counts();
    if !counts.is_empty() {
        let mut cols: (
            Vec<i64>,
            Vec<i64>,
            Vec<&str>,
            Vec<&str>,
            Vec<&str>,
            Vec<&str>,
        ) = Default::default();
        let mut more: (Vec<&str>, Vec<i64>, Vec<&str>, Vec<i64>, Vec<i64>) = Default::default();
        for (p, k, c, d) in &counts {
            cols.0.push(*p);
            cols.1.push(k.day);
            cols.2.push(&k.event_type);
            cols.3.push(&k.name);
            cols.4.push(&k.version);
            cols.5.push(&k.os);
            more.0.push(&k.arch);
            more.1.push(k.outcome);
            more.2.push(&k.error_code);
            more.3.push(*c);
            more.4.push(*d);
        }
        tx.execute(
            "INSERT INTO rollup_counts (project_id, day, event_type, name, version, os, arch,
                outcome, error_code, count, duration_sum)
             SELECT * FROM unnest($1::int8[], $2::int8[], $3::text[], $4::text[], $5::text[],
                $6::text[], $7::text[], $8::int8[], $9::text[], $10::int8[], $11::int8[])
             ON CONFLICT (project_id, day, event_type, name, version, os, arch, outcome, error_code)
             DO UPDATE SET count = rollup_counts.count + excluded.count,
                           duration_sum = rollup_counts.duration_sum + excluded.duration_sum",
            &[
                &cols.0, &cols.1, &cols.2, &cols.3, &cols.4, &cols.5, &more.0, &more.1, &more.2,
                &more.3, &more.4,
            ],
        )
        .await?;
    }
    let durations = delta.sorted_durations();
    if !durations.is_empty() {
        let mut c: (Vec<i64>, Vec<i64>, Vec<&str>, Vec<i64>, Vec<i64>) = Default::default();
        for (p, day, name, bucket, count) in durations {
            c.0.push(p);
            c.1.push(day);
            c.2.push(name);
            c.3.push(bucket);
            c.4.push(count);
        }
        tx.execute(
            "INSERT INTO rollup_durations (project_id, day, name, bucket, count)
             SELECT * FROM unnest($1::int8[], $2::int8[], $3::text[], $4::int8[], $5::int8[])
             ON CONFLICT (project_id, day, name, bucket)
             DO UPDATE SET count = rollup_durations.count + excluded.count",
            &[&c.0, &c.1, &c.2, &c.3, &c.4],
        )
        .await?;
    }
    let installs = delta.sorted_installs();
    if !installs.is_empty() {
        let mut k: (Vec<i64>, Vec<i64>, Vec<i64>, Vec<&str>) = Default::default();
        for (p, day, kind, value, _) in &installs {
            k.0.push(*p);
            k.1.push(*day);
            k.2.push(kind.code());
            k.3.push(value);
        }
        if !removing {
            let empty: Vec<Vec<u8>> = vec![InstallSketch::default().encode(); k.0.len()];
            tx.execute(
                "INSERT INTO rollup_installs (project_id, day, kind, value, sketch)
                 SELECT * FROM unnest($1::int8[], $2::int8[], $3::int8[], $4::text[], $5::bytea[])
                 ON CONFLICT DO NOTHING",
                &[&k.0, &k.1, &k.2, &k.3, &empty],
            )
            .await?;
        }
        // Lock the sketches in key order (another collector may merge into them right now).
        let rows = tx
            .query(
                "SELECT r.project_id, r.day, r.kind, r.value, r.sketch FROM rollup_installs r
                 JOIN unnest($1::int8[], $2::int8[], $3::int8[], $4::text[]) AS k(p, d, kd, v)
                   ON r.project_id = k.p AND r.day = k.d AND r.kind = k.kd AND r.value = k.v
                 ORDER BY r.project_id, r.day, r.kind, r.value
                 FOR UPDATE OF r",
                &[&k.0, &k.1, &k.2, &k.3],
            )
            .await?;
        let mut stored: HashMap<(i64, i64, i64, String), Vec<u8>> = HashMap::new();
        for r in rows {
            stored.insert((r.get(0), r.get(1), r.get(2), r.get(3)), r.get(4));
        }
        let mut u: (Vec<i64>, Vec<i64>, Vec<i64>, Vec<&str>, Vec<Vec<u8>>) = Default::default();
        for (p, day, kind, value, hashes) in &installs {
            let Some(bytes) = stored.get(&(*p, *day, kind.code(), (*value).to_owned())) else {
                continue;
            };
            let mut sketch = InstallSketch::decode(bytes);
            for &h in *hashes {
                if removing {
                    sketch.remove(h);
                } else {
                    sketch.insert(h);
                }
            }
            u.0.push(*p);
            u.1.push(*day);
            u.2.push(kind.code());
            u.3.push(value);
            u.4.push(sketch.encode());
        }
        tx.execute(
            "UPDATE rollup_installs r SET sketch = k.s
             FROM unnest($1::int8[], $2::int8[], $3::int8[], $4::text[], $5::bytea[])
                  AS k(p, d, kd, v, s)
             WHERE r.project_id = k.p AND r.day = k.d AND r.kind = k.kd AND r.value = k.v",
            &[&u.0, &u.1, &u.2, &u.3, &u.4],
        )
        .await?;
    }
    Ok(())
}

impl Store for PgStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    fn ping(&self) -> Result<()> {
        self.run(|pool| async move {
            get(&pool).await?.query_one("SELECT 1", &[]).await?;
            Ok(())
        })
    }

    fn create_project(&self, name: &str, key_hash: &str, now_ms: i64) -> Result<Project> {
        self.run(|pool| async move {
            let mut client = get(&pool).await?;
            let tx = client.transaction().await?;
            let row = tx
                .query_opt(
                    "INSERT INTO projects (name, created_ms) VALUES ($1, $2)
                     ON CONFLICT (name) DO NOTHING RETURNING id",
                    &[&name, &now_ms],
                )
                .await?;
            let Some(row) = row else {
                return Err(StorageError::ProjectExists(name.to_owned()));
            };
            let id: i64 = row.get(0);
            tx.execute(
                "INSERT INTO ingest_keys (key_hash, project_id, created_ms) VALUES ($1, $2, $3)",
                &[&key_hash, &id, &now_ms],
            )
            .await?;
            tx.commit().await?;
            Ok(Project {
                id,
                name: name.to_owned(),
                created_ms: now_ms,
                public: false,
            })
        })
    }

    fn delete_project(&self, name: &str) -> Result<bool> {
        self.run(|pool| async move {
            let n = get(&pool)
                .await?
                .execute("DELETE FROM projects WHERE name = $1", &[&name])
                .await?;
            Ok(n > 0)
        })
    }

    fn set_public(&self, name: &str, public: bool) -> Result<()> {
        self.run(|pool| async move {
            let n = get(&pool)
                .await?
                .execute(
                    "UPDATE projects SET public = $2 WHERE name = $1",
                    &[&name, &public],
                )
                .await?;
            if n == 0 {
                return Err(StorageError::NoProject(name.to_owned()));
            }
            Ok(())
        })
    }

    fn list_projects(&self) -> Result<Vec<Project>> {
        self.run(|pool| async move {
            let rows = get(&pool)
                .await?
                .query(
                    &format!("SELECT {PROJECT_COLUMNS} FROM projects ORDER BY name"),
                    &[],
                )
                .await?;
            Ok(rows.iter().map(project_from_row).collect())
        })
    }

    fn project_by_name(&self, name: &str) -> Result<Option<Project>> {
        self.run(|pool| async move {
            let row = get(&pool)
                .await?
                .query_opt(
                    &format!("SELECT {PROJECT_COLUMNS} FROM projects WHERE name = $1"),
                    &[&name],
                )
                .await?;
            Ok(row.as_ref().map(project_from_row))
        })
    }

    fn add_key(&self, project: &str, key_hash: &str, now_ms: i64) -> Result<()> {
        self.run(|pool| async move {
            let n = get(&pool)
                .await?
                .execute(
                    "INSERT INTO ingest_keys (key_hash, project_id, created_ms)
                     SELECT $2, id, $3 FROM projects WHERE name = $1",
                    &[&project, &key_hash, &now_ms],
                )
                .await?;
            if n == 0 {
                return Err(StorageError::NoProject(project.to_owned()));
            }
            Ok(())
        })
    }

    fn revoke_key(&self, key_hash: &str, now_ms: i64) -> Result<bool> {
        self.run(|pool| async move {
            let n = get(&pool)
                .await?
                .execute(
                    "UPDATE ingest_keys SET revoked_ms = $2
                     WHERE key_hash = $1 AND revoked_ms IS NULL",
                    &[&key_hash, &now_ms],
                )
                .await?;
            Ok(n > 0)
        })
    }

    fn project_for_key(&self, key_hash: &str) -> Result<Option<Project>> {
        self.run(|pool| async move {
            let row = get(&pool)
                .await?
                .query_opt(
                    "SELECT p.id, p.name, p.created_ms, p.public
                     FROM ingest_keys k JOIN projects p ON p.id = k.project_id
                     WHERE k.key_hash = $1 AND k.revoked_ms IS NULL",
                    &[&key_hash],
                )
                .await?;
            Ok(row.as_ref().map(project_from_row))
        })
    }

    // One Vec per column, as unnest() takes them: the tuples are wide on purpose.
    #[allow(clippy::type_complexity)]
    fn insert_batches(
        &self,
        batches: &[(i64, &Batch)],
        received_ms: i64,
    ) -> Result<Vec<InsertOutcome>> {
        self.run(|pool| async move {
            // Column arrays of the events, first occurrence of each id only.
            let mut seen = HashSet::new();
            let mut owner = Vec::new(); // (batch index, event index) per row
            let mut c1: (
                Vec<i64>,
                Vec<String>,
                Vec<&str>,
                Vec<&str>,
                Vec<i64>,
                Vec<i64>,
            ) = Default::default();
            let mut c2: (
                Vec<&str>,
                Vec<&str>,
                Vec<&str>,
                Vec<&str>,
                Vec<&str>,
                Vec<&str>,
            ) = Default::default();
            let mut c3: (
                Vec<Option<i64>>,
                Vec<Option<bool>>,
                Vec<Option<&str>>,
                Vec<Option<String>>,
            ) = Default::default();
            for (bi, &(project_id, batch)) in batches.iter().enumerate() {
                for (ei, e) in batch.events.iter().enumerate() {
                    let id = e.event_id.to_ascii_lowercase();
                    if !seen.insert((project_id, id.clone())) {
                        continue;
                    }
                    owner.push((bi, ei));
                    c1.0.push(project_id);
                    c1.1.push(id);
                    c1.2.push(e.event_type.as_str());
                    c1.3.push(&e.name);
                    c1.4.push(e.timestamp.unix_ms());
                    c1.5.push(received_ms);
                    c2.0.push(&batch.service_name);
                    c2.1.push(&batch.service_version);
                    c2.2.push(&batch.pseudonym);
                    c2.3.push(&e.session_id);
                    c2.4.push(&batch.os);
                    c2.5.push(&batch.arch);
                    c3.0.push(e.duration_ms.map(|d| d as i64));
                    c3.1.push(e.success);
                    c3.2.push(e.error_code.as_deref());
                    c3.3.push(if e.metadata.is_empty() {
                        None
                    } else {
                        serde_json::to_string(&e.metadata).ok()
                    });
                }
            }
            let mut client = get(&pool).await?;
            let tx = client.transaction().await?;
            let rows = tx
                .query(
                    "INSERT INTO events (project_id, event_id, event_type, name, ts_ms,
                        received_ms, service, service_version, pseudonym, session_id, os, arch,
                        duration_ms, success, error_code, metadata)
                     SELECT * FROM unnest($1::int8[], $2::text[], $3::text[], $4::text[],
                        $5::int8[], $6::int8[], $7::text[], $8::text[], $9::text[], $10::text[],
                        $11::text[], $12::text[], $13::int8[], $14::bool[], $15::text[],
                        $16::text[])
                     ON CONFLICT DO NOTHING RETURNING project_id, event_id",
                    &[
                        &c1.0, &c1.1, &c1.2, &c1.3, &c1.4, &c1.5, &c2.0, &c2.1, &c2.2, &c2.3,
                        &c2.4, &c2.5, &c3.0, &c3.1, &c3.2, &c3.3,
                    ],
                )
                .await?;
            let inserted: HashSet<(i64, String)> =
                rows.iter().map(|r| (r.get(0), r.get(1))).collect();
            let mut outcomes: Vec<InsertOutcome> = batches
                .iter()
                .map(|(_, b)| InsertOutcome {
                    inserted: 0,
                    duplicates: b.events.len() as u64,
                })
                .collect();
            let mut delta = Delta::default();
            let hashes: Vec<u64> = batches
                .iter()
                .map(|(_, b)| install_hash(&b.pseudonym))
                .collect();
            for (row, &(bi, ei)) in owner.iter().enumerate() {
                let project_id = c1.0[row];
                if !inserted.contains(&(project_id, c1.1[row].clone())) {
                    continue;
                }
                let (Some(batch), Some(outcome), Some(&hash)) =
                    (batches.get(bi), outcomes.get_mut(bi), hashes.get(bi))
                else {
                    continue;
                };
                let Some(e) = batch.1.events.get(ei) else {
                    continue;
                };
                outcome.inserted += 1;
                outcome.duplicates -= 1;
                delta.add(&EventFacts::of(project_id, batch.1, e, hash), 1);
            }
            apply_delta(&tx, &delta, false).await?;
            tx.commit().await?;
            Ok(outcomes)
        })
    }

    fn counts(&self, project_id: i64, days: DayRange) -> Result<Vec<CountRow>> {
        self.run(|pool| async move {
            let rows = get(&pool)
                .await?
                .query(
                    "SELECT day, event_type, name, version, os, arch, outcome, error_code, count,
                            duration_sum
                     FROM rollup_counts WHERE project_id = $1 AND day >= $2 AND day <= $3",
                    &[&project_id, &days.first, &days.last],
                )
                .await?;
            Ok(rows
                .iter()
                .map(|r| CountRow {
                    key: CountKey {
                        day: r.get(0),
                        event_type: r.get(1),
                        name: r.get(2),
                        version: r.get(3),
                        os: r.get(4),
                        arch: r.get(5),
                        outcome: r.get(6),
                        error_code: r.get(7),
                    },
                    count: r.get(8),
                    duration_sum: r.get(9),
                })
                .collect())
        })
    }

    fn counts_total(&self, project_id: i64, days: DayRange) -> Result<Vec<CountRow>> {
        self.run(|pool| async move {
            let rows = get(&pool)
                .await?
                .query(
                    "SELECT event_type, name, version, os, arch, outcome, error_code,
                            SUM(count)::int8, SUM(duration_sum)::int8
                     FROM rollup_counts WHERE project_id = $1 AND day >= $2 AND day <= $3
                     GROUP BY event_type, name, version, os, arch, outcome, error_code",
                    &[&project_id, &days.first, &days.last],
                )
                .await?;
            Ok(rows
                .iter()
                .map(|r| CountRow {
                    key: CountKey {
                        day: days.first,
                        event_type: r.get(0),
                        name: r.get(1),
                        version: r.get(2),
                        os: r.get(3),
                        arch: r.get(4),
                        outcome: r.get(5),
                        error_code: r.get(6),
                    },
                    count: r.get(7),
                    duration_sum: r.get(8),
                })
                .collect())
        })
    }

    fn day_totals(&self, project_id: i64, days: DayRange) -> Result<Vec<(i64, i64, i64, i64)>> {
        self.run(|pool| async move {
            let rows = get(&pool)
                .await?
                .query(
                    "SELECT day, SUM(count)::int8,
                            COALESCE(SUM(count) FILTER (WHERE event_type = 'command'), 0)::int8,
                            COALESCE(SUM(count) FILTER (WHERE event_type = 'command'
                                                          AND outcome = 0), 0)::int8
                     FROM rollup_counts WHERE project_id = $1 AND day >= $2 AND day <= $3
                     GROUP BY day",
                    &[&project_id, &days.first, &days.last],
                )
                .await?;
            Ok(rows
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
                .collect())
        })
    }

    fn durations(&self, project_id: i64, days: DayRange) -> Result<Vec<HistRow>> {
        self.run(|pool| async move {
            let rows = get(&pool)
                .await?
                .query(
                    "SELECT day, name, bucket, count FROM rollup_durations
                     WHERE project_id = $1 AND day >= $2 AND day <= $3",
                    &[&project_id, &days.first, &days.last],
                )
                .await?;
            Ok(rows
                .iter()
                .map(|r| HistRow {
                    day: r.get(0),
                    name: r.get(1),
                    bucket: r.get(2),
                    count: r.get(3),
                })
                .collect())
        })
    }

    fn installs(
        &self,
        project_id: i64,
        days: DayRange,
        kinds: &[SketchKind],
    ) -> Result<Vec<SketchRow>> {
        let codes: Vec<i64> = kinds.iter().map(|k| k.code()).collect();
        self.run(|pool| async move {
            let rows = get(&pool)
                .await?
                .query(
                    "SELECT day, kind, value, sketch FROM rollup_installs
                     WHERE project_id = $1 AND kind = ANY($2) AND day >= $3 AND day <= $4",
                    &[&project_id, &codes, &days.first, &days.last],
                )
                .await?;
            Ok(rows
                .iter()
                .filter_map(|r| {
                    Some(SketchRow {
                        day: r.get(0),
                        kind: SketchKind::from_code(r.get(1))?,
                        value: r.get(2),
                        sketch: InstallSketch::decode(r.get(3)),
                    })
                })
                .collect())
        })
    }

    fn purge_before(&self, cutoff_ms: i64) -> Result<PurgeOutcome> {
        self.run(|pool| async move {
            let mut client = get(&pool).await?;
            let tx = client.transaction().await?;
            let day = day_of(cutoff_ms);
            let events = tx
                .execute("DELETE FROM events WHERE ts_ms < $1", &[&cutoff_ms])
                .await?;
            let mut rollup_rows = 0;
            for table in ["rollup_counts", "rollup_durations", "rollup_installs"] {
                rollup_rows += tx
                    .execute(&format!("DELETE FROM {table} WHERE day < $1"), &[&day])
                    .await?;
            }
            tx.commit().await?;
            Ok(PurgeOutcome {
                events,
                rollup_rows,
            })
        })
    }

    fn forget(&self, project_id: Option<i64>, pseudonyms: &[String]) -> Result<u64> {
        let unique: Vec<String> = pseudonyms
            .iter()
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        self.run(|pool| async move {
            let mut client = get(&pool).await?;
            let tx = client.transaction().await?;
            let rows = tx
                .query(
                    "DELETE FROM events WHERE pseudonym = ANY($1)
                       AND ($2::int8 IS NULL OR project_id = $2)
                     RETURNING project_id, ts_ms, event_type, name, service_version, os, arch,
                               duration_ms, success, error_code, pseudonym",
                    &[&unique, &project_id],
                )
                .await?;
            let stored: Vec<StoredEvent> = rows
                .iter()
                .map(|r| StoredEvent {
                    project_id: r.get(0),
                    ts_ms: r.get(1),
                    event_type: EventType::parse(r.get(2)).unwrap_or(EventType::Custom),
                    name: r.get(3),
                    version: r.get(4),
                    os: r.get(5),
                    arch: r.get(6),
                    duration_ms: r.get::<_, Option<i64>>(7).map(|d| d.max(0) as u64),
                    success: r.get(8),
                    error_code: r.get(9),
                    pseudonym: r.get(10),
                })
                .collect();
            let delta = super::forget_delta(&stored);
            apply_delta(&tx, &delta, true).await?;
            tx.commit().await?;
            Ok(stored.len() as u64)
        })
    }
}
