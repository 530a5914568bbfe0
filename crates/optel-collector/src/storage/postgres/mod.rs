//! (This file is the `Store` implementation beside the pool and schema it uses; the bodies of
//! its methods live by topic in `projects` (projects, ingest keys), `query` (the rollup and
//! catalog reads), `alerts` (alert hooks), `dp` (differential privacy), and the write path and
//! the rollup-key cache, which have seams of their own, in `write` and `keys`.)
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

mod alerts;
mod dp;
mod keys;
mod projects;
mod query;
#[cfg(test)]
mod tests;
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
    PurgeOutcome, Result, StorageError, Store, StoredCatalog, StoredEvent,
};
use crate::alerts::{AlertHook, AlertKey, AlertKind};
use crate::rollup::{
    BreakdownCount, CountRow, DayRange, HistRow, MeasureHist, PhaseHist, SketchKind, SketchRow,
    VersionHistRow, day_of,
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
        self.run(
            |pool| async move { projects::create_project(&pool, name, key_hash, now_ms).await },
        )
    }

    fn delete_project(&self, name: &str) -> Result<bool> {
        self.run(|pool| async move { projects::delete_project(&pool, name).await })
    }

    fn set_public(&self, name: &str, public: bool) -> Result<()> {
        self.run(|pool| async move { projects::set_public(&pool, name, public).await })
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
        self.run(|pool| async move { projects::list_projects(&pool).await })
    }

    fn project_by_name(&self, name: &str) -> Result<Option<Project>> {
        self.run(|pool| async move { projects::project_by_name(&pool, name).await })
    }

    fn add_key_with_origins(
        &self,
        project: &str,
        key_hash: &str,
        origins: &[String],
        now_ms: i64,
    ) -> Result<()> {
        self.run(|pool| async move {
            projects::add_key_with_origins(&pool, project, key_hash, origins, now_ms).await
        })
    }

    fn revoke_key(&self, key_hash: &str, now_ms: i64) -> Result<bool> {
        self.run(|pool| async move { projects::revoke_key(&pool, key_hash, now_ms).await })
    }

    fn project_for_key(&self, key_hash: &str) -> Result<Option<KeyGrant>> {
        self.run(|pool| async move { projects::project_for_key(&pool, key_hash).await })
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
        self.run(|pool| async move { query::counts(&pool, project_id, days).await })
    }

    fn counts_total(&self, project_id: i64, days: DayRange) -> Result<Vec<CountRow>> {
        self.run(|pool| async move { query::counts_total(&pool, project_id, days).await })
    }

    fn day_totals(&self, project_id: i64, days: DayRange) -> Result<Vec<(i64, i64, i64, i64)>> {
        self.run(|pool| async move { query::day_totals(&pool, project_id, days).await })
    }

    fn catalog(&self, project_id: i64, hash: &str) -> Result<Option<Catalog>> {
        self.run(|pool| async move { query::catalog(&pool, project_id, hash).await })
    }

    fn catalogs(&self, project_id: i64) -> Result<Vec<StoredCatalog>> {
        self.run(|pool| async move { query::catalogs(&pool, project_id).await })
    }

    fn breakdowns(&self, project_id: i64, days: DayRange) -> Result<Vec<BreakdownCount>> {
        self.run(|pool| async move { query::breakdowns(&pool, project_id, days).await })
    }

    fn phases(&self, project_id: i64, days: DayRange) -> Result<Vec<PhaseHist>> {
        self.run(|pool| async move { query::phases(&pool, project_id, days).await })
    }

    fn measurements(&self, project_id: i64, days: DayRange) -> Result<Vec<MeasureHist>> {
        self.run(|pool| async move { query::measurements(&pool, project_id, days).await })
    }

    fn durations(&self, project_id: i64, days: DayRange) -> Result<Vec<HistRow>> {
        self.run(|pool| async move { query::durations(&pool, project_id, days).await })
    }

    fn version_durations(
        &self,
        project_id: i64,
        days: DayRange,
        versions: &[&str],
    ) -> Result<Vec<VersionHistRow>> {
        self.run(
            |pool| async move { query::version_durations(&pool, project_id, days, versions).await },
        )
    }

    fn installs(
        &self,
        project_id: i64,
        days: DayRange,
        kinds: &[SketchKind],
    ) -> Result<Vec<SketchRow>> {
        self.run(|pool| async move { query::installs(&pool, project_id, days, kinds).await })
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
        self.run(|pool| async move {
            alerts::add_alert_hook(&pool, project, url, secret, kinds, log, now_ms).await
        })
    }

    fn alert_hooks(&self, project: Option<&str>) -> Result<Vec<AlertHook>> {
        self.run(|pool| async move { alerts::alert_hooks(&pool, project).await })
    }

    fn remove_alert_hook(&self, id: i64) -> Result<bool> {
        self.run(|pool| async move { alerts::remove_alert_hook(&pool, id).await })
    }

    fn mark_alert(&self, project_id: i64, key: &AlertKey, now_ms: i64) -> Result<bool> {
        self.run(|pool| async move { alerts::mark_alert(&pool, project_id, key, now_ms).await })
    }

    fn clear_alert(&self, project_id: i64, key: &AlertKey) -> Result<()> {
        self.run(|pool| async move { alerts::clear_alert(&pool, project_id, key).await })
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
