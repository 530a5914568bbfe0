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

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU32, Ordering};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use optel_wire::EventType;
use tokio_postgres::NoTls;
use tokio_postgres::types::{FromSql, IsNull, ToSql, Type, accepts, to_sql_checked};
// foldhash, randomly seeded per map, as in crate::rollup: SipHash showed in the writer's profile.
use foldhash::{HashMap, HashSet};

use super::{
    InsertOutcome, PreparedBatch, Project, PurgeOutcome, Result, StorageError, Store, StoredEvent,
};
use crate::rollup::{
    CountKey, CountRow, DayRange, Delta, HistRow, InstallSketch, SketchKind, SketchRow, day_of,
};

/// Migrations of the PostgreSQL schema, applied in order; table `optel_schema` records how many
/// ran. An advisory lock serialises collectors that start at the same time.
const PG_MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/postgres/0001_init.sql"),
    include_str!("../../migrations/postgres/0002_lean_events.sql"),
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

const UPSERT_CELLS: &str = "INSERT INTO rollup_cells (project_id, day, key_id, command, failed,
        count, duration_sum)
     SELECT * FROM unnest($1::int8[], $2::int8[], $3::int8[], $4::bool[], $5::bool[],
        $6::int8[], $7::int8[])
     ON CONFLICT (project_id, day, key_id)
     DO UPDATE SET count = rollup_cells.count + excluded.count,
                   duration_sum = rollup_cells.duration_sum + excluded.duration_sum";

const CREATE_KEYS: &str = "INSERT INTO rollup_keys (project_id, event_type, name, version, os,
        arch, outcome, error_code)
     SELECT * FROM unnest($1::int8[], $2::text[], $3::text[], $4::text[], $5::text[],
        $6::text[], $7::int8[], $8::text[])
     ON CONFLICT DO NOTHING";

const READ_KEYS: &str = "SELECT r.key_id, r.project_id, r.event_type, r.name, r.version, r.os,
        r.arch, r.outcome, r.error_code
     FROM rollup_keys r
     JOIN unnest($1::int8[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
        $7::int8[], $8::text[]) AS k(p, t, n, v, os, a, o, e)
       ON r.project_id = k.p AND r.event_type = k.t AND r.name = k.n AND r.version = k.v
      AND r.os = k.os AND r.arch = k.a AND r.outcome = k.o AND r.error_code = k.e";

/// Most `rollup_keys` ids a store remembers; past that the cache starts over (names are chosen
/// by clients, so their number is bounded only by what they send).
const MAX_CACHED_KEYS: usize = 100_000;

/// The `rollup_keys` ids this store has seen: (project, count key without its day) → id.
/// Ids never change once committed, so the cache needs no invalidation.
#[derive(Debug, Default)]
struct KeyCache {
    hasher: foldhash::fast::RandomState,
    /// Hash of the key → (project, key with day 0, id); several on a hash collision.
    ids: HashMap<u64, Vec<(i64, CountKey, i64)>>,
    len: usize,
}

/// The dimensions of a count key without its day: what a `rollup_keys` row holds.
fn dims(k: &CountKey) -> (&str, &str, &str, &str, &str, i64, &str) {
    (
        &k.event_type,
        &k.name,
        &k.version,
        &k.os,
        &k.arch,
        k.outcome,
        &k.error_code,
    )
}

impl KeyCache {
    fn hash(&self, project_id: i64, k: &CountKey) -> u64 {
        use std::hash::BuildHasher;
        self.hasher.hash_one((project_id, dims(k)))
    }

    fn get(&self, project_id: i64, k: &CountKey) -> Option<i64> {
        self.ids
            .get(&self.hash(project_id, k))?
            .iter()
            .find(|(p, c, _)| *p == project_id && dims(c) == dims(k))
            .map(|&(_, _, id)| id)
    }

    fn insert(&mut self, project_id: i64, mut k: CountKey, id: i64) {
        if self.len >= MAX_CACHED_KEYS {
            self.ids.clear();
            self.len = 0;
        }
        k.day = 0;
        let h = self.hash(project_id, &k);
        self.ids.entry(h).or_default().push((project_id, k, id));
        self.len += 1;
    }
}

/// The `rollup_keys` id of each count key (aligned with `keys`). Keys not cached yet are
/// created, if missing, on a connection of their own (from [`PgStore::key_pool`]) that
/// commits at once: an id is then never one of a transaction that may still roll back, so it
/// can be cached, and the transaction of the caller never waits for another collector's new
/// keys.
// One Vec per column, as unnest() takes them: the tuples are wide on purpose.
#[allow(clippy::type_complexity)]
async fn key_ids(store: &PgStore, keys: &[(i64, &CountKey)]) -> Result<Vec<i64>> {
    let lock = || {
        store
            .keys
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    };
    // The ids known now, kept here: the shared cache may start over before this call ends.
    let mut ids: Vec<Option<i64>> = {
        let cache = lock();
        keys.iter().map(|(p, k)| cache.get(*p, k)).collect()
    };
    let mut missing: Vec<(i64, &CountKey)> = keys
        .iter()
        .zip(&ids)
        .filter(|(_, id)| id.is_none())
        .map(|(&key, _)| key)
        .collect();
    if !missing.is_empty() {
        // Each key once (a key is the same row whatever the day), in one order: two callers
        // creating the same keys then wait for each other rather than deadlock.
        missing.sort_unstable_by(|a, b| (a.0, dims(a.1)).cmp(&(b.0, dims(b.1))));
        missing.dedup_by(|a, b| a.0 == b.0 && dims(a.1) == dims(b.1));
        let mut cols: (Vec<i64>, Vec<&str>, Vec<&str>, Vec<&str>) = Default::default();
        let mut more: (Vec<&str>, Vec<&str>, Vec<i64>, Vec<&str>) = Default::default();
        for (p, k) in &missing {
            cols.0.push(*p);
            cols.1.push(&k.event_type);
            cols.2.push(&k.name);
            cols.3.push(&k.version);
            more.0.push(&k.os);
            more.1.push(&k.arch);
            more.2.push(k.outcome);
            more.3.push(&k.error_code);
        }
        let params: [&(dyn ToSql + Sync); 8] = [
            &cols.0, &cols.1, &cols.2, &cols.3, &more.0, &more.1, &more.2, &more.3,
        ];
        let own = get(&store.key_pool).await?;
        let create = own.prepare_cached(CREATE_KEYS).await?;
        let read = own.prepare_cached(READ_KEYS).await?;
        let (_, rows) = tokio::try_join!(
            biased;
            own.execute(&create, &params),
            own.query(&read, &params),
        )?;
        let found: HashMap<(i64, CountKey), i64> = rows
            .iter()
            .map(|r| {
                let key = CountKey {
                    day: 0,
                    event_type: r.get(2),
                    name: r.get(3),
                    version: r.get(4),
                    os: r.get(5),
                    arch: r.get(6),
                    outcome: r.get(7),
                    error_code: r.get(8),
                };
                ((r.get(1), key), r.get(0))
            })
            .collect();
        for (id, (p, k)) in ids.iter_mut().zip(keys) {
            if id.is_none() {
                let undated = CountKey {
                    day: 0,
                    ..CountKey::clone(k)
                };
                *id = found.get(&(*p, undated)).copied();
            }
        }
        let mut cache = lock();
        for ((p, k), id) in found {
            cache.insert(p, k, id);
        }
    }
    ids.into_iter()
        .zip(keys)
        .map(|(id, (p, k))| {
            id.ok_or_else(|| {
                StorageError::Postgres(format!("rollup key {k:?} of project {p} was not created"))
            })
        })
        .collect()
}

const UPSERT_DURATIONS: &str = "INSERT INTO rollup_durations (project_id, day, name, bucket, count)
     SELECT * FROM unnest($1::int8[], $2::int8[], $3::text[], $4::int8[], $5::int8[])
     ON CONFLICT (project_id, day, name, bucket)
     DO UPDATE SET count = rollup_durations.count + excluded.count";

const CREATE_SKETCHES: &str = "INSERT INTO rollup_installs (project_id, day, kind, value, sketch)
     SELECT p, d, kd, v, $5 FROM unnest($1::int8[], $2::int8[], $3::int8[], $4::text[])
         AS k(p, d, kd, v)
     ON CONFLICT DO NOTHING";

const LOCK_SKETCHES: &str = "SELECT r.project_id, r.day, r.kind, r.value, r.sketch
     FROM rollup_installs r
     JOIN unnest($1::int8[], $2::int8[], $3::int8[], $4::text[]) AS k(p, d, kd, v)
       ON r.project_id = k.p AND r.day = k.d AND r.kind = k.kd AND r.value = k.v
     ORDER BY r.project_id, r.day, r.kind, r.value
     FOR UPDATE OF r";

const UPDATE_SKETCHES: &str = "UPDATE rollup_installs r SET sketch = k.s
     FROM unnest($1::int8[], $2::int8[], $3::int8[], $4::text[], $5::bytea[])
          AS k(p, d, kd, v, s)
     WHERE r.project_id = k.p AND r.day = k.d AND r.kind = k.kd AND r.value = k.v";

/// Applies a rollup delta inside the open transaction, then COMMITs it. Two round trips: the
/// count and duration upserts, the creation of missing sketches and the locking read of every
/// sketch touched go out together (pipelined); then the merged sketches and the COMMIT. Rows
/// are written in key order, table by table, in the same order by every writer, so several
/// collectors on one database wait for each other instead of deadlocking, and an upsert adds
/// to the row as committed by the other (no lost update).
// One Vec per column, as unnest() takes them: the tuples are wide on purpose.
#[allow(clippy::type_complexity)]
async fn apply_delta_and_commit(
    client: &deadpool_postgres::Client,
    store: &PgStore,
    delta: &Delta,
    removing: bool,
) -> Result<()> {
    let counts = delta.sorted_counts();
    let keys: Vec<(i64, &CountKey)> = counts.iter().map(|&(p, k, _, _)| (p, k)).collect();
    let ids = key_ids(store, &keys).await?;
    let mut cells: Vec<(i64, i64, i64, bool, bool, i64, i64)> = counts
        .iter()
        .zip(&ids)
        .map(|(&(p, k, count, dur), &id)| {
            let command = k.event_type == EventType::Command.as_str();
            (p, k.day, id, command, command && k.outcome == 0, count, dur)
        })
        .collect();
    // Key order of the cells' primary key: the order every writer locks them in.
    cells.sort_unstable_by_key(|c| (c.0, c.1, c.2));
    let mut cols: (
        Vec<i64>,
        Vec<i64>,
        Vec<i64>,
        Vec<bool>,
        Vec<bool>,
        Vec<i64>,
        Vec<i64>,
    ) = Default::default();
    for (p, day, id, command, failed, count, dur) in cells {
        cols.0.push(p);
        cols.1.push(day);
        cols.2.push(id);
        cols.3.push(command);
        cols.4.push(failed);
        cols.5.push(count);
        cols.6.push(dur);
    }
    let mut durs: (Vec<i64>, Vec<i64>, Vec<&str>, Vec<i64>, Vec<i64>) = Default::default();
    for (p, day, name, bucket, count) in delta.sorted_durations() {
        durs.0.push(p);
        durs.1.push(day);
        durs.2.push(name);
        durs.3.push(bucket);
        durs.4.push(count);
    }
    let installs = delta.sorted_installs();
    let mut k: (Vec<i64>, Vec<i64>, Vec<i64>, Vec<&str>) = Default::default();
    for (p, day, kind, value, _) in &installs {
        k.0.push(*p);
        k.1.push(*day);
        k.2.push(kind.code());
        k.3.push(value);
    }
    let upsert_cells = client.prepare_cached(UPSERT_CELLS).await?;
    let upsert_durations = client.prepare_cached(UPSERT_DURATIONS).await?;
    let create_sketches = client.prepare_cached(CREATE_SKETCHES).await?;
    let lock_sketches = client.prepare_cached(LOCK_SKETCHES).await?;
    let empty = InstallSketch::default().encode();
    // `biased`: each future sends its statement when first polled, so this is the wire order.
    let (_, _, _, locked) = tokio::try_join!(
        biased;
        async {
            if cols.0.is_empty() {
                return Ok(0);
            }
            client
                .execute(
                    &upsert_cells,
                    &[
                        &cols.0, &cols.1, &cols.2, &cols.3, &cols.4, &cols.5, &cols.6,
                    ],
                )
                .await
        },
        async {
            if durs.0.is_empty() {
                return Ok(0);
            }
            client
                .execute(
                    &upsert_durations,
                    &[&durs.0, &durs.1, &durs.2, &durs.3, &durs.4],
                )
                .await
        },
        async {
            if k.0.is_empty() || removing {
                return Ok(0);
            }
            client
                .execute(&create_sketches, &[&k.0, &k.1, &k.2, &k.3, &empty])
                .await
        },
        async {
            if k.0.is_empty() {
                return Ok(Vec::new());
            }
            client
                .query(&lock_sketches, &[&k.0, &k.1, &k.2, &k.3])
                .await
        },
    )?;
    let mut stored: HashMap<(i64, i64, i64, &str), &[u8]> = HashMap::default();
    for r in &locked {
        stored.insert((r.get(0), r.get(1), r.get(2), r.get(3)), r.get(4));
    }
    let mut u: (Vec<i64>, Vec<i64>, Vec<i64>, Vec<&str>, Vec<Vec<u8>>) = Default::default();
    for (p, day, kind, value, hashes) in &installs {
        let Some(bytes) = stored.get(&(*p, *day, kind.code(), *value)) else {
            continue;
        };
        let mut sketch = InstallSketch::decode(bytes);
        let mut changed = removing;
        for &h in *hashes {
            if removing {
                sketch.remove(h);
            } else {
                changed |= sketch.insert(h);
            }
        }
        // Most installs of a busy day are in its sketches already: nothing to write then.
        if !changed {
            continue;
        }
        u.0.push(*p);
        u.1.push(*day);
        u.2.push(kind.code());
        u.3.push(value);
        u.4.push(sketch.encode());
    }
    let update_sketches = client.prepare_cached(UPDATE_SKETCHES).await?;
    tokio::try_join!(
        biased;
        async {
            if u.0.is_empty() {
                return Ok(0);
            }
            client
                .execute(&update_sketches, &[&u.0, &u.1, &u.2, &u.3, &u.4])
                .await
        },
        client.batch_execute("COMMIT"),
    )?;
    Ok(())
}

/// Which rows of a group go to the database: the first occurrence of each (project, event id),
/// in (project, event id) order. Every writer inserting in that order, two transactions that
/// meet the same ids (a client retrying while its first attempt is still being committed) wait
/// for each other in one direction only: no deadlock.
struct Group {
    /// Per batch, per event: whether it is the first occurrence in the group.
    first: Vec<Vec<bool>>,
    /// `(batch index, event index)` of the rows to store, in key order.
    order: Vec<(usize, usize)>,
}

impl Group {
    fn of(batches: &[PreparedBatch]) -> Self {
        let n = batches.iter().map(|b| b.event_ids.len()).sum();
        let mut seen = HashSet::with_capacity_and_hasher(n, Default::default());
        let mut keyed = Vec::with_capacity(n);
        let first = batches
            .iter()
            .enumerate()
            .map(|(bi, b)| {
                b.event_ids
                    .iter()
                    .enumerate()
                    .map(|(ei, id)| {
                        let key = (b.project_id, *id);
                        let new = seen.insert(key);
                        if new {
                            keyed.push((key, (bi, ei)));
                        }
                        new
                    })
                    .collect()
            })
            .collect();
        keyed.sort_unstable_by_key(|&(key, _)| key);
        Self {
            first,
            order: keyed.into_iter().map(|(_, at)| at).collect(),
        }
    }

    /// Every row to store, in key order.
    fn rows<'a>(
        &'a self,
        batches: &'a [PreparedBatch],
        uploads: &'a [i64],
    ) -> impl Iterator<Item = Row<'a>> + 'a {
        self.order.iter().filter_map(move |&(bi, ei)| {
            let p = batches.get(bi)?;
            Some(Row {
                project_id: p.project_id,
                upload: *uploads.get(bi)?,
                event: p.batch.events.get(ei)?,
                id: Uuid(*p.event_ids.get(ei)?),
                session: Uuid(*p.session_ids.get(ei)?),
                metadata: p.metadata.get(ei)?.as_deref(),
            })
        })
    }
}

/// One row of `events` to store.
struct Row<'a> {
    project_id: i64,
    upload: i64,
    event: &'a optel_wire::Event,
    id: Uuid,
    session: Uuid,
    metadata: Option<&'a str>,
}

/// Upload ids still reserved by this store: `[next, end)` of a block of the `upload_ids`
/// sequence.
#[derive(Debug, Default)]
struct UploadIds {
    next: i64,
    end: i64,
}

/// `INCREMENT BY` of the `upload_ids` sequence (migration 0002): one `nextval` reserves this
/// many upload ids for one store.
const UPLOAD_ID_BLOCK: i64 = 1024;

/// `n` fresh upload ids, from the block this store holds or from new blocks of the sequence.
async fn upload_ids(
    client: &deadpool_postgres::Client,
    held: &std::sync::Mutex<UploadIds>,
    n: usize,
) -> Result<Vec<i64>> {
    let lock = || {
        held.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    };
    let mut out = Vec::with_capacity(n);
    {
        let mut h = lock();
        while out.len() < n && h.next < h.end {
            out.push(h.next);
            h.next += 1;
        }
    }
    let missing = (n - out.len()) as i64;
    if missing > 0 {
        let blocks = (missing + UPLOAD_ID_BLOCK - 1) / UPLOAD_ID_BLOCK;
        let starts = client
            .query(
                "SELECT nextval('upload_ids') FROM generate_series(1, $1::int8)",
                &[&blocks],
            )
            .await?;
        let mut last = UploadIds::default();
        for r in &starts {
            let start: i64 = r.get(0);
            let take = (n - out.len()).min(UPLOAD_ID_BLOCK as usize) as i64;
            out.extend(start..start + take);
            last = UploadIds {
                next: start + take,
                end: start + UPLOAD_ID_BLOCK,
            };
        }
        let mut h = lock();
        if h.next >= h.end {
            *h = last;
        }
    }
    Ok(out)
}

const INSERT_UPLOADS: &str = "INSERT INTO uploads (upload_id, project_id, received_ms, pseudonym,
        service, service_version, os, arch)
     SELECT u, p, $3, ps, sv, v, os, a
     FROM unnest($1::int8[], $2::int8[], $4::text[], $5::text[], $6::text[], $7::text[],
        $8::text[]) AS k(u, p, ps, sv, v, os, a)";

/// Sends (pipelined: one round trip) BEGIN and the upload rows of the batches that have rows
/// to store; `uploads[i]` is batch `i`'s id; `insert` is [`INSERT_UPLOADS`] prepared.
///
/// Both statements go out when this future is first polled (nothing is awaited before), so a
/// statement polled after it in a `biased` join runs inside the transaction.
async fn begin_with_uploads(
    client: &deadpool_postgres::Client,
    insert: &tokio_postgres::Statement,
    batches: &[PreparedBatch],
    group: &Group,
    uploads: &[i64],
    received_ms: i64,
) -> Result<()> {
    let mut cols: (Vec<i64>, Vec<i64>, Vec<&str>, Vec<&str>) = Default::default();
    let mut platform: (Vec<&str>, Vec<&str>, Vec<&str>) = Default::default();
    for ((p, &upload), first) in batches.iter().zip(uploads).zip(&group.first) {
        if !first.contains(&true) {
            continue;
        }
        cols.0.push(upload);
        cols.1.push(p.project_id);
        cols.2.push(&p.batch.pseudonym);
        cols.3.push(&p.batch.service_name);
        platform.0.push(&p.batch.service_version);
        platform.1.push(&p.batch.os);
        platform.2.push(&p.batch.arch);
    }
    let params: [&(dyn ToSql + Sync); 8] = [
        &cols.0,
        &cols.1,
        &received_ms,
        &cols.2,
        &cols.3,
        &platform.0,
        &platform.1,
        &platform.2,
    ];
    tokio::try_join!(
        biased;
        client.batch_execute("BEGIN"),
        client.execute(insert, &params),
    )?;
    Ok(())
}

const COPY_EVENTS: &str = "COPY events (project_id, event_id, upload_id, ts_ms, duration_ms,
        session_id, success, event_type, name, error_code, metadata)
     FROM STDIN (FORMAT binary)";

/// Column types of [`COPY_EVENTS`].
const COPY_TYPES: [Type; 11] = [
    Type::INT8,
    Type::UUID,
    Type::INT8,
    Type::INT8,
    Type::INT8,
    Type::UUID,
    Type::BOOL,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
];

/// After a `COPY` that met an id stored before, this many groups go straight to `INSERT … ON
/// CONFLICT` (a client retrying is likely to retry more than once).
const SKIP_COPY_AFTER_DUPLICATE: u32 = 16;

/// The fast path: opens the transaction, stores the uploads and `COPY`s every row into
/// `events` (one index descent per row; no parameter arrays to materialise, no speculative
/// insertion). `Ok(false)` when an id was stored before (the unique index refused it): the
/// transaction is rolled back and nothing is stored, so the caller takes the `INSERT … ON
/// CONFLICT` path instead.
async fn copy_new_events(
    client: &deadpool_postgres::Client,
    batches: &[PreparedBatch],
    group: &Group,
    uploads: &[i64],
    received_ms: i64,
) -> Result<bool> {
    // Prepared first: a statement still being prepared would reach the server after the
    // ones sent below, outside the transaction.
    let insert_uploads = client.prepare_cached(INSERT_UPLOADS).await?;
    let copy = client.prepare_cached(COPY_EVENTS).await?;
    let (_, sink) = tokio::try_join!(
        biased;
        begin_with_uploads(client, &insert_uploads, batches, group, uploads, received_ms),
        async { Ok(client.copy_in::<_, bytes::Bytes>(&copy).await?) },
    )?;
    // The writer (and its sink) must be gone before anything else is sent on this connection.
    let written = async {
        let writer = tokio_postgres::binary_copy::BinaryCopyInWriter::new(sink, &COPY_TYPES);
        let mut writer = std::pin::pin!(writer);
        for r in group.rows(batches, uploads) {
            let e = r.event;
            writer
                .as_mut()
                .write(&[
                    &r.project_id,
                    &r.id,
                    &r.upload,
                    &e.timestamp.unix_ms(),
                    &e.duration_ms.map(|d| d as i64),
                    &r.session,
                    &e.success,
                    &e.event_type.as_str(),
                    &e.name,
                    &e.error_code,
                    &r.metadata,
                ])
                .await?;
        }
        writer.as_mut().finish().await
    }
    .await;
    match written {
        Ok(_) => Ok(true),
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) => {
            client.batch_execute("ROLLBACK").await?;
            Ok(false)
        }
        Err(e) => Err(e.into()),
    }
}

const INSERT_EVENTS: &str = "INSERT INTO events (project_id, event_id, upload_id, ts_ms,
        duration_ms, session_id, success, event_type, name, error_code, metadata)
     SELECT * FROM unnest($1::int8[], $2::uuid[], $3::int8[], $4::int8[], $5::int8[],
        $6::uuid[], $7::bool[], $8::text[], $9::text[], $10::text[], $11::text[])
     ON CONFLICT DO NOTHING";

/// Which of the ids sent were inserted by this transaction (not stored before): asked only
/// when the insert stored fewer rows than it was given.
const NEW_IN_THIS_TRANSACTION: &str = "SELECT e.project_id, e.event_id FROM events e
     JOIN unnest($1::int8[], $2::uuid[]) AS k(p, id) ON e.project_id = k.p AND e.event_id = k.id
     WHERE e.xmin = pg_current_xact_id()::xid";

/// The path for groups with ids stored before: opens the transaction, stores the uploads and
/// inserts with `INSERT … ON CONFLICT DO NOTHING`; `Some(ids newly stored)` when some were
/// skipped, `None` when every row was new.
// One Vec per column, as unnest() takes them: the tuples are wide on purpose.
#[allow(clippy::type_complexity)]
async fn insert_new_events(
    client: &deadpool_postgres::Client,
    batches: &[PreparedBatch],
    group: &Group,
    uploads: &[i64],
    received_ms: i64,
) -> Result<Option<HashSet<(i64, Uuid)>>> {
    let n = group.order.len();
    let mut ids: (
        Vec<i64>,
        Vec<Uuid>,
        Vec<i64>,
        Vec<i64>,
        Vec<Option<i64>>,
        Vec<Uuid>,
    ) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let mut facts: (
        Vec<Option<bool>>,
        Vec<&str>,
        Vec<&str>,
        Vec<Option<&str>>,
        Vec<Option<&str>>,
    ) = Default::default();
    for r in group.rows(batches, uploads) {
        let e = r.event;
        ids.0.push(r.project_id);
        ids.1.push(r.id);
        ids.2.push(r.upload);
        ids.3.push(e.timestamp.unix_ms());
        ids.4.push(e.duration_ms.map(|d| d as i64));
        ids.5.push(r.session);
        facts.0.push(e.success);
        facts.1.push(e.event_type.as_str());
        facts.2.push(&e.name);
        facts.3.push(e.error_code.as_deref());
        facts.4.push(r.metadata);
    }
    let insert_uploads = client.prepare_cached(INSERT_UPLOADS).await?;
    let insert = client.prepare_cached(INSERT_EVENTS).await?;
    let params: [&(dyn ToSql + Sync); 11] = [
        &ids.0, &ids.1, &ids.2, &ids.3, &ids.4, &ids.5, &facts.0, &facts.1, &facts.2, &facts.3,
        &facts.4,
    ];
    let (_, stored) = tokio::try_join!(
        biased;
        begin_with_uploads(client, &insert_uploads, batches, group, uploads, received_ms),
        async { Ok(client.execute(&insert, &params).await?) },
    )?;
    // Usually every row is new; otherwise ask which ones (retried batches, other collectors).
    if stored as usize == ids.0.len() {
        return Ok(None);
    }
    let which = client.prepare_cached(NEW_IN_THIS_TRANSACTION).await?;
    let rows = client.query(&which, &[&ids.0, &ids.1]).await?;
    Ok(Some(rows.iter().map(|r| (r.get(0), r.get(1))).collect()))
}

/// Stores a group of batches in one transaction (see [`Store::insert_batches`]): by `COPY`
/// when no id of the group was stored before (the usual case), else by
/// `INSERT … ON CONFLICT DO NOTHING`; then the rollups of the rows newly stored, then COMMIT.
async fn insert_group(
    client: &deadpool_postgres::Client,
    store: &PgStore,
    batches: &mut [PreparedBatch],
    received_ms: i64,
) -> Result<Vec<InsertOutcome>> {
    let group = Group::of(batches);
    let uploads = upload_ids(client, &store.upload_ids, batches.len()).await?;
    let skipping = store
        .skip_copy
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
        .is_ok();
    let new =
        if !skipping && copy_new_events(client, batches, &group, &uploads, received_ms).await? {
            None
        } else {
            if !skipping {
                store
                    .skip_copy
                    .store(SKIP_COPY_AFTER_DUPLICATE, Ordering::Relaxed);
            }
            insert_new_events(client, batches, &group, &uploads, received_ms).await?
        };
    // The rollup delta of what was stored: a batch stored whole brings the delta prepared off
    // the writer thread; a batch with duplicates is recomputed from its new events.
    let mut delta = Delta::default();
    let mut outcomes = Vec::with_capacity(batches.len());
    let mut empty_uploads = Vec::new();
    for ((p, first), &upload) in batches.iter_mut().zip(&group.first).zip(&uploads) {
        let stored: Vec<&optel_wire::Event> = p
            .batch
            .events
            .iter()
            .zip(first)
            .zip(&p.event_ids)
            .filter(|&((_, &f), id)| {
                f && new
                    .as_ref()
                    .is_none_or(|n| n.contains(&(p.project_id, Uuid(*id))))
            })
            .map(|((e, _), _)| e)
            .collect();
        let outcome = InsertOutcome {
            inserted: stored.len() as u64,
            duplicates: (p.batch.events.len() - stored.len()) as u64,
        };
        if outcome.inserted == 0 {
            empty_uploads.push(upload);
        } else if outcome.duplicates == 0 {
            if delta.is_empty() {
                delta = std::mem::take(&mut p.delta);
            } else {
                delta.merge_from(&p.delta);
            }
        } else {
            delta.add_batch(p.project_id, &p.batch, p.install, stored);
        }
        outcomes.push(outcome);
    }
    if new.is_some() && !empty_uploads.is_empty() {
        // A batch stored before in full (a retry) leaves no upload behind.
        client
            .execute(
                "DELETE FROM uploads WHERE upload_id = ANY($1)",
                &[&empty_uploads],
            )
            .await?;
    }
    apply_delta_and_commit(client, store, &delta, false).await?;
    Ok(outcomes)
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

    fn concurrent_commits(&self) -> usize {
        CONCURRENT_COMMITS
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
            // An upload's events lie at most an hour after it was received (ingest refuses
            // timestamps further in the future): a day's margin keeps every upload that may
            // still have events, so deletion by pseudonym can find them.
            tx.execute(
                "DELETE FROM uploads WHERE received_ms < $1",
                &[&(cutoff_ms - crate::rollup::DAY_MS)],
            )
            .await?;
            let mut rollup_rows = 0;
            for table in ["rollup_cells", "rollup_durations", "rollup_installs"] {
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
     RETURNING upload_id, ts_ms, event_type, name, duration_ms, success, error_code";
