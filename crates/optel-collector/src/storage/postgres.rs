//! The PostgreSQL backend: tokio-postgres behind a deadpool pool, driven by a small private
//! runtime so the [`Store`] trait stays synchronous. Events go in with one multi-row
//! `INSERT … SELECT FROM unnest(…) ON CONFLICT DO NOTHING RETURNING`, rollups with multi-row
//! upserts in the same transaction; rows are locked in key order so several collectors can
//! share one database.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicU32, Ordering};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use optel_wire::{Batch, EventType};
use tokio_postgres::NoTls;
use tokio_postgres::types::{FromSql, IsNull, ToSql, Type, accepts, to_sql_checked};

use super::{InsertOutcome, Project, PurgeOutcome, Result, StorageError, Store, StoredEvent};
use crate::rollup::{
    CountKey, CountRow, DayRange, Delta, EventFacts, HistRow, InstallSketch, SketchKind, SketchRow,
    day_of, install_hash,
};

/// Migrations of the PostgreSQL schema, applied in order; table `optel_schema` records how many
/// ran. An advisory lock serialises collectors that start at the same time.
const PG_MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/postgres/0001_init.sql"),
    include_str!("../../migrations/postgres/0002_lean_events.sql"),
];

/// Key of the advisory lock held while migrating.
const MIGRATION_LOCK: i64 = 0x6f70_7465_6c00_0001;

/// Connections in the pool.
const POOL_SIZE: usize = 8;

/// The PostgreSQL backend.
pub struct PgStore {
    rt: Option<tokio::runtime::Runtime>,
    pool: Pool,
    schema: Option<String>,
    /// Groups still to store with `INSERT … ON CONFLICT` before trying `COPY` again.
    skip_copy: AtomicU32,
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
            skip_copy: AtomicU32::new(0),
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

/// An event or session id in the binary form of PostgreSQL's `uuid` type (16 bytes, compared
/// with memcmp: cheaper to send, store and index than the 36-character text).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Uuid([u8; 16]);

impl Uuid {
    /// Reads the 8-4-4-4-12 hex form in either case (what `optel_wire::is_uuid` accepts);
    /// `None` for anything else.
    fn parse(s: &str) -> Option<Self> {
        if !optel_wire::is_uuid(s) {
            return None;
        }
        let mut out = [0u8; 16];
        let digits = s.bytes().filter(|&c| c != b'-');
        let mut high = None;
        let mut i = 0;
        for c in digits {
            let v = (c as char).to_digit(16)? as u8;
            match high.take() {
                None => high = Some(v),
                Some(h) => {
                    *out.get_mut(i)? = (h << 4) | v;
                    i += 1;
                }
            }
        }
        (i == 16).then_some(Self(out))
    }
}

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

/// Ends the transaction a failed step left open (and aborted), so the pooled connection goes
/// back clean; a connection that cannot even do that is closed, and the pool drops it.
async fn rollback_on_error<T>(client: &tokio_postgres::Client, result: Result<T>) -> Result<T> {
    if result.is_err() {
        let _ = client.batch_execute("ROLLBACK").await;
    }
    result
}

const UPSERT_COUNTS: &str = "INSERT INTO rollup_counts (project_id, day, event_type, name, version,
        os, arch, outcome, error_code, count, duration_sum)
     SELECT * FROM unnest($1::int8[], $2::int8[], $3::text[], $4::text[], $5::text[],
        $6::text[], $7::text[], $8::int8[], $9::text[], $10::int8[], $11::int8[])
     ON CONFLICT (project_id, day, event_type, name, version, os, arch, outcome, error_code)
     DO UPDATE SET count = rollup_counts.count + excluded.count,
                   duration_sum = rollup_counts.duration_sum + excluded.duration_sum";

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
    delta: &Delta,
    removing: bool,
) -> Result<()> {
    let counts = delta.sorted_counts();
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
    let upsert_counts = client.prepare_cached(UPSERT_COUNTS).await?;
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
                    &upsert_counts,
                    &[
                        &cols.0, &cols.1, &cols.2, &cols.3, &cols.4, &cols.5, &more.0, &more.1,
                        &more.2, &more.3, &more.4,
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
    let mut stored: HashMap<(i64, i64, i64, &str), &[u8]> = HashMap::new();
    for r in &locked {
        stored.insert((r.get(0), r.get(1), r.get(2), r.get(3)), r.get(4));
    }
    let mut u: (Vec<i64>, Vec<i64>, Vec<i64>, Vec<&str>, Vec<Vec<u8>>) = Default::default();
    for (p, day, kind, value, hashes) in &installs {
        let Some(bytes) = stored.get(&(*p, *day, kind.code(), *value)) else {
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

/// The columns of the events of a group, as `unnest()` takes them: the first occurrence of each
/// (project, event id) only.
#[derive(Default)]
struct EventColumns<'a> {
    /// (batch index, event index) of each row.
    owner: Vec<(usize, usize)>,
    project_id: Vec<i64>,
    event_id: Vec<Uuid>,
    ts_ms: Vec<i64>,
    duration_ms: Vec<Option<i64>>,
    session_id: Vec<Uuid>,
    success: Vec<Option<bool>>,
    event_type: Vec<&'a str>,
    name: Vec<&'a str>,
    service: Vec<&'a str>,
    service_version: Vec<&'a str>,
    pseudonym: Vec<&'a str>,
    os: Vec<&'a str>,
    arch: Vec<&'a str>,
    error_code: Vec<Option<&'a str>>,
    metadata: Vec<Option<String>>,
}

impl<'a> EventColumns<'a> {
    /// # Errors
    /// An event or session id that is not a UUID (batches are validated before they get here).
    fn of(batches: &[(i64, &'a Batch)]) -> Result<Self> {
        let n = batches.iter().map(|(_, b)| b.events.len()).sum();
        let mut c = Self::default();
        let mut seen = HashSet::with_capacity(n);
        for (bi, &(project_id, batch)) in batches.iter().enumerate() {
            for (ei, e) in batch.events.iter().enumerate() {
                let bad = |what: &str, v: &str| {
                    StorageError::Postgres(format!("{what} {v:?} is not a UUID"))
                };
                let id = Uuid::parse(&e.event_id).ok_or_else(|| bad("event id", &e.event_id))?;
                if !seen.insert((project_id, id)) {
                    continue;
                }
                let session =
                    Uuid::parse(&e.session_id).ok_or_else(|| bad("session id", &e.session_id))?;
                c.owner.push((bi, ei));
                c.project_id.push(project_id);
                c.event_id.push(id);
                c.ts_ms.push(e.timestamp.unix_ms());
                c.duration_ms.push(e.duration_ms.map(|d| d as i64));
                c.session_id.push(session);
                c.success.push(e.success);
                c.event_type.push(e.event_type.as_str());
                c.name.push(&e.name);
                c.service.push(&batch.service_name);
                c.service_version.push(&batch.service_version);
                c.pseudonym.push(&batch.pseudonym);
                c.os.push(&batch.os);
                c.arch.push(&batch.arch);
                c.error_code.push(e.error_code.as_deref());
                c.metadata.push(if e.metadata.is_empty() {
                    None
                } else {
                    serde_json::to_string(&e.metadata).ok()
                });
            }
        }
        Ok(c)
    }
}

const INSERT_EVENTS: &str = "INSERT INTO events (project_id, event_id, ts_ms, received_ms,
        duration_ms, session_id, success, event_type, name, service, service_version, pseudonym,
        os, arch, error_code, metadata)
     SELECT p, id, ts, $4, d, s, ok, t, n, sv, v, ps, os, a, e, m
     FROM unnest($1::int8[], $2::uuid[], $3::int8[], $5::int8[], $6::uuid[], $7::bool[],
        $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::text[],
        $15::text[], $16::text[]) AS u(p, id, ts, d, s, ok, t, n, sv, v, ps, os, a, e, m)
     ON CONFLICT DO NOTHING";

/// Which of the ids sent were inserted by this transaction (not stored before): asked only
/// when the insert stored fewer rows than it was given.
const NEW_IN_THIS_TRANSACTION: &str = "SELECT e.project_id, e.event_id FROM events e
     JOIN unnest($1::int8[], $2::uuid[]) AS k(p, id) ON e.project_id = k.p AND e.event_id = k.id
     WHERE e.xmin = pg_current_xact_id()::xid";

const COPY_EVENTS: &str = "COPY events (project_id, event_id, ts_ms, received_ms, duration_ms,
        session_id, success, event_type, name, service, service_version, pseudonym, os, arch,
        error_code, metadata)
     FROM STDIN (FORMAT binary)";

/// Column types of [`COPY_EVENTS`].
const COPY_TYPES: [Type; 16] = [
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
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
];

/// After a `COPY` that met an id stored before, this many groups go straight to `INSERT … ON
/// CONFLICT` (a client retrying is likely to retry more than once).
const SKIP_COPY_AFTER_DUPLICATE: u32 = 16;

/// The fast path: opens the transaction and `COPY`s every row into `events` (one index descent
/// per row and unique index; no materialised arrays, no speculative insertion). `Ok(false)`
/// when an id was stored before (the unique index refused it): the transaction is rolled back
/// and nothing is stored, so the caller takes the `INSERT … ON CONFLICT` path instead.
async fn copy_new_events(
    client: &deadpool_postgres::Client,
    c: &EventColumns<'_>,
    received_ms: i64,
) -> Result<bool> {
    let copy = client.prepare_cached(COPY_EVENTS).await?;
    let (_, sink) = tokio::try_join!(
        biased;
        client.batch_execute("BEGIN"),
        client.copy_in::<_, bytes::Bytes>(&copy),
    )?;
    // The writer (and its sink) must be gone before anything else is sent on this connection.
    let written = async {
        let writer = tokio_postgres::binary_copy::BinaryCopyInWriter::new(sink, &COPY_TYPES);
        let mut writer = std::pin::pin!(writer);
        for i in 0..c.owner.len() {
            let (Some(p), Some(id), Some(ts), Some(d), Some(s), Some(ok)) = (
                c.project_id.get(i),
                c.event_id.get(i),
                c.ts_ms.get(i),
                c.duration_ms.get(i),
                c.session_id.get(i),
                c.success.get(i),
            ) else {
                continue;
            };
            let (
                Some(t),
                Some(n),
                Some(sv),
                Some(v),
                Some(ps),
                Some(os),
                Some(a),
                Some(e),
                Some(m),
            ) = (
                c.event_type.get(i),
                c.name.get(i),
                c.service.get(i),
                c.service_version.get(i),
                c.pseudonym.get(i),
                c.os.get(i),
                c.arch.get(i),
                c.error_code.get(i),
                c.metadata.get(i),
            )
            else {
                continue;
            };
            writer
                .as_mut()
                .write(&[
                    p,
                    id,
                    ts,
                    &received_ms,
                    d,
                    s,
                    ok,
                    t,
                    n,
                    sv,
                    v,
                    ps,
                    os,
                    a,
                    e,
                    m,
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

/// Stores a group of batches in one transaction (see [`Store::insert_batches`]): by `COPY`
/// when no id of the group was stored before (the usual case), else by
/// `INSERT … ON CONFLICT DO NOTHING`, then the rollups of the rows newly stored, then COMMIT.
async fn insert_group(
    client: &deadpool_postgres::Client,
    batches: &[(i64, &Batch)],
    c: &EventColumns<'_>,
    received_ms: i64,
    skip_copy: &AtomicU32,
) -> Result<Vec<InsertOutcome>> {
    let skipping = skip_copy
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
        .is_ok();
    let new = if !skipping && copy_new_events(client, c, received_ms).await? {
        None
    } else {
        if !skipping {
            skip_copy.store(SKIP_COPY_AFTER_DUPLICATE, Ordering::Relaxed);
        }
        insert_new_events(client, c, received_ms).await?
    };
    rollup_and_commit(client, batches, c, new.as_ref()).await
}

/// The path for groups with ids stored before: opens the transaction and inserts with
/// `INSERT … ON CONFLICT DO NOTHING`; `Some(ids newly stored)` when some were skipped, `None`
/// when every row was new.
async fn insert_new_events(
    client: &deadpool_postgres::Client,
    c: &EventColumns<'_>,
    received_ms: i64,
) -> Result<Option<HashSet<(i64, Uuid)>>> {
    let insert = client.prepare_cached(INSERT_EVENTS).await?;
    let params: [&(dyn ToSql + Sync); 16] = [
        &c.project_id,
        &c.event_id,
        &c.ts_ms,
        &received_ms,
        &c.duration_ms,
        &c.session_id,
        &c.success,
        &c.event_type,
        &c.name,
        &c.service,
        &c.service_version,
        &c.pseudonym,
        &c.os,
        &c.arch,
        &c.error_code,
        &c.metadata,
    ];
    let (_, stored) = tokio::try_join!(
        biased;
        client.batch_execute("BEGIN"),
        client.execute(&insert, &params),
    )?;
    // Usually every row is new; otherwise ask which ones (retried batches, other collectors).
    let new: Option<HashSet<(i64, Uuid)>> = if stored as usize == c.owner.len() {
        None
    } else {
        let which = client.prepare_cached(NEW_IN_THIS_TRANSACTION).await?;
        let rows = client.query(&which, &[&c.project_id, &c.event_id]).await?;
        Some(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    };
    Ok(new)
}

/// Computes the rollup delta of the rows newly stored (`new`; every row when `None`), applies
/// it and commits; one outcome per batch.
async fn rollup_and_commit(
    client: &deadpool_postgres::Client,
    batches: &[(i64, &Batch)],
    c: &EventColumns<'_>,
    new: Option<&HashSet<(i64, Uuid)>>,
) -> Result<Vec<InsertOutcome>> {
    let mut outcomes: Vec<InsertOutcome> = batches
        .iter()
        .map(|(_, b)| InsertOutcome {
            inserted: 0,
            duplicates: b.events.len() as u64,
        })
        .collect();
    let hashes: Vec<u64> = batches
        .iter()
        .map(|(_, b)| install_hash(&b.pseudonym))
        .collect();
    let mut delta = Delta::default();
    for (row, &(bi, ei)) in c.owner.iter().enumerate() {
        let (Some(&project_id), Some(&id)) = (c.project_id.get(row), c.event_id.get(row)) else {
            continue;
        };
        if new.is_some_and(|n| !n.contains(&(project_id, id))) {
            continue;
        }
        let (Some(&(_, batch)), Some(outcome), Some(&hash)) =
            (batches.get(bi), outcomes.get_mut(bi), hashes.get(bi))
        else {
            continue;
        };
        let Some(e) = batch.events.get(ei) else {
            continue;
        };
        outcome.inserted += 1;
        outcome.duplicates -= 1;
        delta.add(&EventFacts::of(project_id, batch, e, hash), 1);
    }
    apply_delta_and_commit(client, &delta, false).await?;
    Ok(outcomes)
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

    fn insert_batches(
        &self,
        batches: &[(i64, &Batch)],
        received_ms: i64,
    ) -> Result<Vec<InsertOutcome>> {
        let columns = EventColumns::of(batches)?;
        self.run(|pool| async move {
            let client = get(&pool).await?;
            let result =
                insert_group(&client, batches, &columns, received_ms, &self.skip_copy).await;
            rollback_on_error(&client, result).await
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
            let client = get(&pool).await?;
            let result = async {
                let delete = client.prepare_cached(FORGET_EVENTS).await?;
                let params: [&(dyn ToSql + Sync); 2] = [&unique, &project_id];
                let (_, rows) = tokio::try_join!(
                    biased;
                    client.batch_execute("BEGIN"),
                    client.query(&delete, &params),
                )?;
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
                apply_delta_and_commit(&client, &delta, true).await?;
                Ok(stored.len() as u64)
            }
            .await;
            rollback_on_error(&client, result).await
        })
    }
}

/// Deletes a pseudonym's events (index `events_by_pseudonym`), returning what the rollups need.
const FORGET_EVENTS: &str = "DELETE FROM events WHERE pseudonym = ANY($1)
       AND ($2::int8 IS NULL OR project_id = $2)
     RETURNING project_id, ts_ms, event_type, name, service_version, os, arch, duration_ms,
               success, error_code, pseudonym";
