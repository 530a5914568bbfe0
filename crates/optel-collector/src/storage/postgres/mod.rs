//! (Over 800 lines on purpose: this file is the `Store` implementation, one method per trait
//! item beside the pool and schema it uses; the write path and the rollup-key cache, which have
//! seams of their own, are in `write` and `keys`.)
//!
//! The PostgreSQL backend: tokio-postgres behind a deadpool pool, driven by a small private
//! runtime so the [`Store`] trait stays synchronous. Schema: `migrations/postgres/` (version 2
//! explains the layout); design and measurements: `docs/adr/004-collector-storage.md` and
//! BENCHMARKS.md.
//!
//! A group commit ([`Store::insert_prepared`]) is one transaction in three round trips:
//! 1. `BEGIN`, one `uploads` row per batch, and a binary `COPY` of the group's events into
//!    `events` in (project, event id) order, pipelined. When an id was stored before (a client
//!    retrying), the unique index refuses the `COPY`; the transaction is rolled back and the
//!    group goes in by `INSERT … SELECT FROM unnest(…) ON CONFLICT DO NOTHING` instead, as do
//!    the next groups for a while;
//! 2. the rollup delta of the rows newly stored: count cells and duration buckets upserted,
//!    missing install sketches created and every sketch touched read `FOR UPDATE`, pipelined;
//! 3. the merged sketches that changed, and `COMMIT`.
//!
//! Rows are locked in key order, table by table, so several collectors (and the writer's
//! concurrent group commits, [`Store::concurrent_commits`]) wait for each other rather than
//! deadlock, and upserts add to what another transaction committed: no lost update.

mod dp;
mod keys;
mod write;

use keys::KeyCache;
use write::{UploadIds, apply_delta_and_commit, insert_group};

use std::collections::BTreeSet;
use std::sync::atomic::AtomicU32;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use optel_wire::EventType;
use tokio_postgres::NoTls;
use tokio_postgres::types::{FromSql, IsNull, ToSql, Type, accepts, to_sql_checked};
// foldhash, randomly seeded per map, as in crate::rollup: SipHash showed in the writer's profile.
use foldhash::HashMap;

use super::{
    DpEntry, DpLookup, DpRecorded, Durability, InsertOutcome, KeyGrant, PreparedBatch, Project,
    PurgeOutcome, Result, StorageError, Store, StoredCatalog, StoredEvent, kinds_column,
    kinds_of_column,
};
use crate::alerts::{AlertHook, AlertKey, AlertKind};
use crate::rollup::{
    BreakdownCount, BucketCounts, CountKey, CountRow, DayRange, HistRow, InstallSketch,
    MeasureHist, PhaseHist, SketchKind, SketchRow, VersionHistRow, day_of,
};
use optel_wire::catalog::Catalog;

/// Migrations of the PostgreSQL schema, applied in order; table `optel_schema` records how many
/// ran. An advisory lock serialises collectors that start at the same time.
const PG_MIGRATIONS: &[&str] = &[
    include_str!("../../../migrations/postgres/0001_init.sql"),
    include_str!("../../../migrations/postgres/0002_lean_events.sql"),
    include_str!("../../../migrations/postgres/0003_otlp_cumulative.sql"),
    include_str!("../../../migrations/postgres/0004_browser_keys.sql"),
    include_str!("../../../migrations/postgres/0005_analytics.sql"),
    include_str!("../../../migrations/postgres/0006_alerts.sql"),
    include_str!("../../../migrations/postgres/0007_public_dp.sql"),
    include_str!("../../../migrations/postgres/0008_phase_waterfall.sql"),
];

/// Key of the advisory lock held while migrating.
const MIGRATION_LOCK: i64 = 0x6f70_7465_6c00_0001;

/// Group commits a store runs at once ([`Store::concurrent_commits`]): while one commits its
/// rollups, the next copies its events. Measured with `optel bench ingest` (BENCHMARKS.md):
/// 1 → 51-66 k events/s, 2 → 62-73 k, 3 → 55-58 k (more transactions waiting on the same hot
/// rollup rows, and smaller groups).
const CONCURRENT_COMMITS: usize = 2;

/// How often a store whose server runs without autovacuum vacuums and analyzes its tables
/// itself ([`PgStore::upkeep`]).
const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// Connections in the pool.
const POOL_SIZE: usize = 8;
/// Connections of the pool that creates rollup keys ([`key_ids`]). A pool of its own: the
/// callers of `key_ids` hold a connection of the main pool in an open transaction, so if key
/// creation took from the same pool, enough concurrent callers could each hold one connection
/// and wait for another, for ever.
const KEY_POOL_SIZE: usize = 2;

/// The PostgreSQL backend.
pub struct PgStore {
    rt: Option<tokio::runtime::Runtime>,
    pool: Pool,
    /// Connections for [`key_ids`] only (see [`KEY_POOL_SIZE`]).
    key_pool: Pool,
    schema: Option<String>,
    /// Groups still to store with `INSERT … ON CONFLICT` before trying `COPY` again.
    skip_copy: AtomicU32,
    /// Upload ids reserved from the `upload_ids` sequence and not used yet.
    upload_ids: std::sync::Mutex<UploadIds>,
    /// `rollup_keys` ids seen.
    keys: std::sync::Mutex<KeyCache>,
    /// Whether this store vacuums and analyzes its tables itself (the server runs with
    /// `autovacuum = off`), and when it last did.
    upkeep: Option<std::sync::Mutex<std::time::Instant>>,
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

/// Adds `option` to the server options of `config`, keeping those of the URL.
fn add_option(config: &mut tokio_postgres::Config, option: &str) {
    let options = match config.get_options() {
        Some(given) if !given.trim().is_empty() => format!("{given} {option}"),
        _ => option.to_owned(),
    };
    config.options(options);
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
        Self::connect_with(url, schema, Durability::default())
    }

    /// [`PgStore::connect_in_schema`] with an explicit [`Durability`]: every session of the
    /// store runs with `synchronous_commit=on` ([`Durability::Fsync`]) or `off`
    /// ([`Durability::CrashSafe`]), whatever the server's default.
    ///
    /// # Errors
    /// As [`PgStore::connect_in_schema`].
    pub fn connect_with(url: &str, schema: Option<&str>, durability: Durability) -> Result<Self> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e: tokio_postgres::Error| StorageError::BadUrl(e.to_string()))?;
        if let Some(s) = schema {
            if !is_schema_name(s) {
                return Err(StorageError::BadUrl(format!(
                    "schema {s:?} is not [a-z_][a-z0-9_]*"
                )));
            }
            add_option(&mut config, &format!("-c search_path={s}"));
        }
        let synchronous_commit = match durability {
            Durability::Fsync => "on",
            Durability::CrashSafe => "off",
        };
        add_option(
            &mut config,
            &format!("-c synchronous_commit={synchronous_commit}"),
        );
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(std::time::Duration::from_secs(5));
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("optel-postgres")
            .enable_all()
            .build()
            .map_err(|e| StorageError::Postgres(format!("cannot start runtime: {e}")))?;
        let pool_of = |size: usize| {
            let manager = Manager::from_config(
                config.clone(),
                NoTls,
                ManagerConfig {
                    recycling_method: RecyclingMethod::Fast,
                },
            );
            let _guard = rt.enter();
            Pool::builder(manager)
                .max_size(size)
                .runtime(deadpool_postgres::Runtime::Tokio1)
                .build()
                .map_err(|e| StorageError::Postgres(e.to_string()))
        };
        let (pool, key_pool) = (pool_of(POOL_SIZE)?, pool_of(KEY_POOL_SIZE)?);
        let mut store = Self {
            rt: Some(rt),
            pool,
            key_pool,
            schema: schema.map(str::to_owned),
            skip_copy: AtomicU32::new(0),
            upload_ids: std::sync::Mutex::new(UploadIds::default()),
            keys: std::sync::Mutex::new(KeyCache::default()),
            upkeep: None,
        };
        let autovacuum = store.run(|pool| async move {
            migrate(&pool, schema_owned(schema)).await?;
            let row = get(&pool).await?.query_one("SHOW autovacuum", &[]).await?;
            Ok(row.get::<_, String>(0) == "on")
        })?;
        if !autovacuum {
            store.upkeep = Some(std::sync::Mutex::new(
                std::time::Instant::now()
                    .checked_sub(UPKEEP_EVERY)
                    .unwrap_or_else(std::time::Instant::now),
            ));
        }
        Ok(store)
    }

    /// The schema given to [`PgStore::connect_in_schema`], if any.
    pub fn schema(&self) -> Option<&str> {
        self.schema.as_deref()
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

    /// With `autovacuum = off` on the server, nothing else keeps planner statistics, clears
    /// the dead rows of the rollup tables (every commit updates them in place), or summarises
    /// new block ranges of the BRIN indexes on `events`. Dashboard queries planned without
    /// statistics sort where they should hash (measured: up to 2× slower), and deletion by
    /// pseudonym reads every unsummarised range, which is the whole table (measured: 2-6 s at
    /// 10 M events, 0.1 s once summarised; BENCHMARKS.md). So after a commit, at most every
    /// [`UPKEEP_EVERY`], the store runs `VACUUM (ANALYZE)` on its tables in the background,
    /// as autovacuum would: the visibility map limits each pass over `events` to the pages
    /// written since the last one, and nothing it locks blocks ingest or queries. With
    /// autovacuum on, it never runs.
    fn upkeep(&self) {
        let (Some(last), Some(rt)) = (&self.upkeep, &self.rt) else {
            return;
        };
        {
            let mut last = last
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if last.elapsed() < UPKEEP_EVERY {
                return;
            }
            *last = std::time::Instant::now();
        }
        let pool = self.pool.clone();
        rt.spawn(async move {
            let done = async {
                get(&pool)
                    .await?
                    .batch_execute(
                        "VACUUM (ANALYZE) rollup_keys, rollup_cells, rollup_durations,
                            rollup_installs, uploads, events",
                    )
                    .await?;
                Ok::<_, StorageError>(())
            };
            if let Err(e) = done.await {
                tracing::warn!(error = %e, "vacuum of the optel tables failed");
            }
        });
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

/// An event or session id ([`super::uuid_bytes`]) in the binary form of PostgreSQL's `uuid`
/// type: 16 bytes compared with memcmp, cheaper to send, store and index than 36 characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Uuid([u8; 16]);

impl ToSql for Uuid {
    fn to_sql(
        &self,
        _: &Type,
        out: &mut bytes::BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        out.extend_from_slice(&self.0);
        Ok(IsNull::No)
    }
    accepts!(UUID);
    to_sql_checked!();
}

impl<'a> FromSql<'a> for Uuid {
    fn from_sql(
        _: &Type,
        raw: &'a [u8],
    ) -> std::result::Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Self(raw.try_into()?))
    }
    accepts!(UUID);
}

/// Closes the connection of a failed pipelined transaction instead of returning it to the
/// pool: closing rolls the transaction back, and a failed step may have left the connection
/// out of step with the server (a `COPY` refused before it starts, in a transaction a pipelined
/// statement already aborted, is answered with two ReadyForQuery where the driver expects
/// one). Failures are rare; a new connection costs a few milliseconds.
fn discard_on_error<T>(client: deadpool_postgres::Client, result: Result<T>) -> Result<T> {
    if result.is_err() {
        drop(deadpool_postgres::Object::take(client));
    }
    result
}

/// A [`CountRow`] from the columns day, event_type, name, version, os, arch, outcome,
/// error_code, count, duration_sum.
fn count_row(r: &tokio_postgres::Row) -> CountRow {
    CountRow {
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
    }
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
            // `events` has no foreign key (an RI check per inserted event cost ~18 % of the
            // ingest's database time, migration 0002): its rows go explicitly; the rollups and
            // keys follow the project by ON DELETE CASCADE.
            let mut client = get(&pool).await?;
            let tx = client.transaction().await?;
            tx.execute(
                "DELETE FROM events WHERE project_id IN (SELECT id FROM projects WHERE name = $1)",
                &[&name],
            )
            .await?;
            let n = tx
                .execute("DELETE FROM projects WHERE name = $1", &[&name])
                .await?;
            tx.commit().await?;
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

    fn public_dp(&self, project_id: i64) -> Result<Option<crate::query::DpSettings>> {
        self.run(|pool| async move { dp::settings(&pool, project_id).await })
    }

    fn set_public_dp(&self, name: &str, settings: Option<crate::query::DpSettings>) -> Result<()> {
        self.run(|pool| async move { dp::set(&pool, name, settings).await })
    }

    fn dp_lookup(&self, project_id: i64, day: i64, view: &str, query: &str) -> Result<DpLookup> {
        self.run(|pool| async move { dp::lookup(&pool, project_id, day, view, query).await })
    }

    fn dp_record(&self, entry: &DpEntry<'_>) -> Result<DpRecorded> {
        self.run(|pool| async move { dp::record(&pool, entry).await })
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

    fn add_key_with_origins(
        &self,
        project: &str,
        key_hash: &str,
        origins: &[String],
        now_ms: i64,
    ) -> Result<()> {
        let origins = super::origins_column(origins);
        self.run(|pool| async move {
            let n = get(&pool)
                .await?
                .execute(
                    "INSERT INTO ingest_keys (key_hash, project_id, created_ms, origins)
                     SELECT $2, id, $3, $4 FROM projects WHERE name = $1",
                    &[&project, &key_hash, &now_ms, &origins],
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

    fn project_for_key(&self, key_hash: &str) -> Result<Option<KeyGrant>> {
        self.run(|pool| async move {
            let row = get(&pool)
                .await?
                .query_opt(
                    "SELECT p.id, p.name, p.created_ms, p.public, k.origins
                     FROM ingest_keys k JOIN projects p ON p.id = k.project_id
                     WHERE k.key_hash = $1 AND k.revoked_ms IS NULL",
                    &[&key_hash],
                )
                .await?;
            Ok(row.as_ref().map(|r| KeyGrant {
                project: project_from_row(r),
                origins: super::origins_of_column(r.get(4)),
            }))
        })
    }

    fn concurrent_commits(&self) -> usize {
        CONCURRENT_COMMITS
    }

    fn cumulative_marks(
        &self,
        project_id: i64,
        series: &[[u8; 32]],
    ) -> Result<Vec<([u8; 32], i64)>> {
        let keys: Vec<Vec<u8>> = series.iter().map(|k| k.to_vec()).collect();
        self.run(|pool| async move {
            let rows = get(&pool)
                .await?
                .query(
                    "SELECT series, stored FROM otlp_cumulative
                     WHERE project_id = $1 AND series = ANY($2)",
                    &[&project_id, &keys],
                )
                .await?;
            Ok(rows
                .iter()
                .filter_map(|r| {
                    let key: Vec<u8> = r.get(0);
                    Some((<[u8; 32]>::try_from(key.as_slice()).ok()?, r.get(1)))
                })
                .collect())
        })
    }

    fn advance_cumulative(
        &self,
        project_id: i64,
        marks: &[([u8; 32], i64)],
        now_ms: i64,
    ) -> Result<()> {
        let mut sorted: Vec<(Vec<u8>, i64)> = marks.iter().map(|(k, v)| (k.to_vec(), *v)).collect();
        // One order for every collector, so that two upserting the same series cannot deadlock.
        sorted.sort_unstable();
        self.run(|pool| async move {
            let mut client = get(&pool).await?;
            let tx = client.transaction().await?;
            let stmt = tx
                .prepare(
                    "INSERT INTO otlp_cumulative (project_id, series, stored, updated_ms)
                     VALUES ($1, $2, $3, $4)
                     ON CONFLICT (project_id, series) DO UPDATE
                     SET stored = GREATEST(otlp_cumulative.stored, EXCLUDED.stored),
                         updated_ms = EXCLUDED.updated_ms",
                )
                .await?;
            for (key, stored) in &sorted {
                tx.execute(&stmt, &[&project_id, key, stored, &now_ms])
                    .await?;
            }
            tx.execute(
                "DELETE FROM otlp_cumulative WHERE updated_ms < $1",
                &[&(now_ms - crate::ingest::MAX_EVENT_AGE_MS)],
            )
            .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    fn insert_prepared(
        &self,
        batches: &mut [PreparedBatch],
        received_ms: i64,
    ) -> Result<Vec<InsertOutcome>> {
        let outcomes = self.run(|pool| async move {
            let client = get(&pool).await?;
            let result = insert_group(&client, self, batches, received_ms).await;
            discard_on_error(client, result)
        })?;
        self.upkeep();
        Ok(outcomes)
    }

    fn counts(&self, project_id: i64, days: DayRange) -> Result<Vec<CountRow>> {
        self.run(|pool| async move {
            let rows = get(&pool)
                .await?
                .query(
                    "SELECT c.day, k.event_type, k.name, k.version, k.os, k.arch, k.outcome,
                            k.error_code, c.count, c.duration_sum
                     FROM rollup_cells c JOIN rollup_keys k ON k.key_id = c.key_id
                     WHERE c.project_id = $1 AND c.day >= $2 AND c.day <= $3",
                    &[&project_id, &days.first, &days.last],
                )
                .await?;
            Ok(rows.iter().map(count_row).collect())
        })
    }

    fn counts_total(&self, project_id: i64, days: DayRange) -> Result<Vec<CountRow>> {
        self.run(|pool| async move {
            let rows = get(&pool)
                .await?
                .query(
                    // Summed by key id first (integers hash fast), then named.
                    // Dated on the first day, as the trait documents; same columns as `counts`.
                    "SELECT $2::int8, k.event_type, k.name, k.version, k.os, k.arch, k.outcome,
                            k.error_code, s.count, s.duration_sum
                     FROM (SELECT key_id, SUM(count)::int8 AS count,
                                  SUM(duration_sum)::int8 AS duration_sum
                           FROM rollup_cells
                           WHERE project_id = $1 AND day >= $2 AND day <= $3
                           GROUP BY key_id) AS s
                     JOIN rollup_keys k ON k.key_id = s.key_id",
                    &[&project_id, &days.first, &days.last],
                )
                .await?;
            Ok(rows.iter().map(count_row).collect())
        })
    }

    fn day_totals(&self, project_id: i64, days: DayRange) -> Result<Vec<(i64, i64, i64, i64)>> {
        self.run(|pool| async move {
            let rows = get(&pool)
                .await?
                .query(
                    "SELECT day, SUM(count)::int8,
                            COALESCE(SUM(count) FILTER (WHERE command), 0)::int8,
                            COALESCE(SUM(count) FILTER (WHERE failed), 0)::int8
                     FROM rollup_cells WHERE project_id = $1 AND day >= $2 AND day <= $3
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

    fn catalog(&self, project_id: i64, hash: &str) -> Result<Option<Catalog>> {
        let hash = hash.to_owned();
        self.run(|pool| async move {
            let row = get(&pool)
                .await?
                .query_opt(
                    "SELECT catalog FROM catalogs WHERE project_id = $1 AND hash = $2",
                    &[&project_id, &hash],
                )
                .await?;
            Ok(row.and_then(|r| serde_json::from_str(r.get::<_, &str>(0)).ok()))
        })
    }

    fn catalogs(&self, project_id: i64) -> Result<Vec<StoredCatalog>> {
        self.run(|pool| async move {
            let rows = get(&pool)
                .await?
                .query(
                    "SELECT hash, catalog, first_seen_ms, last_seen_ms FROM catalogs
                     WHERE project_id = $1 ORDER BY last_seen_ms DESC, hash",
                    &[&project_id],
                )
                .await?;
            // A catalog that no longer parses (written by a newer optel) is skipped.
            Ok(rows
                .iter()
                .filter_map(|r| {
                    Some(StoredCatalog {
                        hash: r.get(0),
                        catalog: serde_json::from_str(r.get::<_, &str>(1)).ok()?,
                        first_seen_ms: r.get(2),
                        last_seen_ms: r.get(3),
                    })
                })
                .collect())
        })
    }

    fn breakdowns(&self, project_id: i64, days: DayRange) -> Result<Vec<BreakdownCount>> {
        self.run(|pool| async move {
            let rows = get(&pool)
                .await?
                .query(
                    "SELECT event_type, name, attribute, value, SUM(count)::int8,
                            SUM(failures)::int8
                     FROM rollup_breakdowns WHERE project_id = $1 AND day >= $2 AND day <= $3
                     GROUP BY event_type, name, attribute, value",
                    &[&project_id, &days.first, &days.last],
                )
                .await?;
            Ok(rows
                .iter()
                .map(|r| BreakdownCount {
                    event_type: r.get(0),
                    name: r.get(1),
                    attribute: r.get(2),
                    value: r.get(3),
                    count: r.get(4),
                    failures: r.get(5),
                })
                .collect())
        })
    }

    fn phases(&self, project_id: i64, days: DayRange) -> Result<Vec<PhaseHist>> {
        self.run(|pool| async move {
            let rows = get(&pool)
                .await?
                .query(
                    "SELECT command, phase, parent, version, hist, start_ms_sum
                     FROM rollup_phases WHERE project_id = $1 AND day >= $2 AND day <= $3",
                    &[&project_id, &days.first, &days.last],
                )
                .await?;
            Ok(crate::rollup::sum_phase_rows(rows.iter().map(|r| {
                PhaseHist {
                    command: r.get(0),
                    phase: r.get(1),
                    parent: r.get(2),
                    version: r.get(3),
                    // A damaged array (NULL elements) reads as empty, like a damaged BLOB.
                    hist: r
                        .try_get::<_, Vec<i64>>(4)
                        .map(|a| BucketCounts::from_array(&a))
                        .unwrap_or_default(),
                    start_ms_sum: r.get(5),
                }
            })))
        })
    }

    fn measurements(&self, project_id: i64, days: DayRange) -> Result<Vec<MeasureHist>> {
        self.run(|pool| async move {
            let rows = get(&pool)
                .await?
                .query(
                    "SELECT name, version, bucket, SUM(count)::int8, SUM(sum)::float8
                     FROM rollup_measurements WHERE project_id = $1 AND day >= $2 AND day <= $3
                     GROUP BY name, version, bucket",
                    &[&project_id, &days.first, &days.last],
                )
                .await?;
            Ok(rows
                .iter()
                .map(|r| MeasureHist {
                    name: r.get(0),
                    version: r.get(1),
                    bucket: r.get(2),
                    count: r.get(3),
                    sum: r.get(4),
                })
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

    fn version_durations(
        &self,
        project_id: i64,
        days: DayRange,
        versions: &[&str],
    ) -> Result<Vec<VersionHistRow>> {
        let versions: Vec<String> = versions.iter().map(|&v| v.to_owned()).collect();
        self.run(|pool| async move {
            let rows = get(&pool)
                .await?
                .query(
                    "SELECT name, version, bucket, SUM(count)::int8 FROM rollup_version_durations
                     WHERE project_id = $1 AND version = ANY($2) AND day >= $3 AND day <= $4
                     GROUP BY name, version, bucket",
                    &[&project_id, &versions, &days.first, &days.last],
                )
                .await?;
            Ok(rows
                .iter()
                .map(|r| VersionHistRow {
                    name: r.get(0),
                    version: r.get(1),
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

    fn add_alert_hook(
        &self,
        project: &str,
        url: &str,
        secret: &str,
        kinds: &[AlertKind],
        log: bool,
        now_ms: i64,
    ) -> Result<AlertHook> {
        let kinds_text = kinds_column(kinds);
        self.run(|pool| async move {
            let row = get(&pool)
                .await?
                .query_opt(
                    "INSERT INTO alert_hooks (project_id, url, secret, kinds, log, created_ms)
                     SELECT id, $2, $3, $4, $5, $6 FROM projects WHERE name = $1
                     RETURNING id, project_id",
                    &[&project, &url, &secret, &kinds_text, &log, &now_ms],
                )
                .await?;
            let Some(row) = row else {
                return Err(StorageError::NoProject(project.to_owned()));
            };
            Ok(AlertHook {
                id: row.get(0),
                project_id: row.get(1),
                project: project.to_owned(),
                url: url.to_owned(),
                secret: secret.to_owned(),
                kinds: kinds.to_vec(),
                log,
                created_ms: now_ms,
            })
        })
    }

    fn alert_hooks(&self, project: Option<&str>) -> Result<Vec<AlertHook>> {
        self.run(|pool| async move {
            let rows = get(&pool)
                .await?
                .query(
                    "SELECT h.id, h.project_id, p.name, h.url, h.secret, h.kinds, h.log,
                            h.created_ms
                     FROM alert_hooks h JOIN projects p ON p.id = h.project_id
                     WHERE $1::text IS NULL OR p.name = $1 ORDER BY h.id",
                    &[&project],
                )
                .await?;
            Ok(rows
                .iter()
                .map(|r| AlertHook {
                    id: r.get(0),
                    project_id: r.get(1),
                    project: r.get(2),
                    url: r.get(3),
                    secret: r.get(4),
                    kinds: kinds_of_column(r.get(5)),
                    log: r.get(6),
                    created_ms: r.get(7),
                })
                .collect())
        })
    }

    fn remove_alert_hook(&self, id: i64) -> Result<bool> {
        self.run(|pool| async move {
            let n = get(&pool)
                .await?
                .execute("DELETE FROM alert_hooks WHERE id = $1", &[&id])
                .await?;
            Ok(n > 0)
        })
    }

    fn mark_alert(&self, project_id: i64, key: &AlertKey, now_ms: i64) -> Result<bool> {
        self.run(|pool| async move {
            let n = get(&pool)
                .await?
                .execute(
                    "INSERT INTO alert_fired (project_id, kind, version, command, detail, fired_ms)
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
                    &[
                        &project_id,
                        &key.kind.as_str(),
                        &key.version,
                        &key.command,
                        &key.detail,
                        &now_ms,
                    ],
                )
                .await?;
            Ok(n > 0)
        })
    }

    fn clear_alert(&self, project_id: i64, key: &AlertKey) -> Result<()> {
        self.run(|pool| async move {
            get(&pool)
                .await?
                .execute(
                    "DELETE FROM alert_fired WHERE project_id = $1 AND kind = $2
                       AND version = $3 AND command = $4 AND detail = $5",
                    &[
                        &project_id,
                        &key.kind.as_str(),
                        &key.version,
                        &key.command,
                        &key.detail,
                    ],
                )
                .await?;
            Ok(())
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
            // An upload's events lie at most an hour after it was received (ingest refuses
            // timestamps further in the future): a day's margin keeps every upload that may
            // still have events, so deletion by pseudonym can find them.
            tx.execute(
                "DELETE FROM uploads WHERE received_ms < $1",
                &[&(cutoff_ms - crate::rollup::DAY_MS)],
            )
            .await?;
            let mut rollup_rows = 0;
            for table in [
                "rollup_cells",
                "rollup_durations",
                "rollup_version_durations",
                "rollup_installs",
                "rollup_breakdowns",
                "rollup_phases",
                "rollup_measurements",
            ] {
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
            let client = get(&pool).await?;
            let result = async {
                let uploads = client.prepare_cached(FORGET_UPLOADS).await?;
                let params: [&(dyn ToSql + Sync); 2] = [&unique, &project_id];
                // An upload's events sit in one or two BRIN ranges of `events`; without
                // statistics on `events` (a server without autovacuum never gathers them) the
                // planner would scan the whole table instead (measured: 0.8 s at 10 M events).
                let (_, uploads) = tokio::try_join!(
                    biased;
                    client.batch_execute("BEGIN; SET LOCAL enable_seqscan = off"),
                    client.query(&uploads, &params),
                )?;
                let ids: Vec<i64> = uploads.iter().map(|r| r.get(0)).collect();
                let by_id: HashMap<i64, &tokio_postgres::Row> =
                    uploads.iter().map(|r| (r.get(0), r)).collect();
                let events = client.prepare_cached(FORGET_EVENTS).await?;
                let rows = client.query(&events, &[&ids]).await?;
                let stored: Vec<StoredEvent> = rows
                    .iter()
                    .filter_map(|r| {
                        let upload = by_id.get(&r.get::<_, i64>(0))?;
                        Some(StoredEvent {
                            project_id: upload.get(1),
                            ts_ms: r.get(1),
                            event_type: EventType::parse(r.get(2)).unwrap_or(EventType::Custom),
                            name: r.get(3),
                            version: upload.get(2),
                            os: upload.get(3),
                            arch: upload.get(4),
                            duration_ms: r.get::<_, Option<i64>>(4).map(|d| d.max(0) as u64),
                            success: r.get(5),
                            error_code: r.get(6),
                            pseudonym: upload.get(5),
                            facts: r.get(7),
                        })
                    })
                    .collect();
                let delta = super::forget_delta(&stored);
                apply_delta_and_commit(&client, self, &delta, true).await?;
                Ok(stored.len() as u64)
            }
            .await;
            discard_on_error(client, result)
        })
    }
}

/// Deletes the uploads of some pseudonyms (index `uploads_by_pseudonym`), returning what the
/// rollups need of them.
const FORGET_UPLOADS: &str = "DELETE FROM uploads WHERE pseudonym = ANY($1)
       AND ($2::int8 IS NULL OR project_id = $2)
     RETURNING upload_id, project_id, service_version, os, arch, pseudonym";

/// Deletes the events of some uploads (BRIN index `events_by_upload`), returning what the
/// rollups need.
const FORGET_EVENTS: &str = "DELETE FROM events WHERE upload_id = ANY($1)
     RETURNING upload_id, ts_ms, event_type, name, duration_ms, success, error_code, facts";

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

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
}
