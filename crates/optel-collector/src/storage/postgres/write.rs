//! The write path of a group commit: upload rows, the `COPY` (or `INSERT … ON CONFLICT`) of the
//! group's events, the rollup delta, and `COMMIT`.

use std::sync::atomic::Ordering;

use foldhash::{HashMap, HashSet};
use optel_wire::EventType;
use tokio_postgres::types::{ToSql, Type};

use super::keys::key_ids;
use super::{PgStore, Uuid};
use crate::rollup::{CountKey, Delta, InstallSketch};
use crate::storage::{InsertOutcome, MAX_CATALOG_VERSIONS, PreparedBatch, Result};

const UPSERT_BREAKDOWNS: &str = "INSERT INTO rollup_breakdowns (project_id, day, event_type, name,
        attribute, value, count, failures)
     SELECT * FROM unnest($1::int8[], $2::int8[], $3::text[], $4::text[], $5::text[], $6::text[],
        $7::int8[], $8::int8[])
     ON CONFLICT (project_id, day, event_type, name, attribute, value)
     DO UPDATE SET count = rollup_breakdowns.count + excluded.count,
                   failures = rollup_breakdowns.failures + excluded.failures";
// Histograms travel as `int8[]` literals (`{first,count,…}`): unnest() cannot take an array of
// arrays of different lengths.
const UPSERT_PHASES: &str = "INSERT INTO rollup_phases (project_id, day, command, phase, parent,
        version, hist, start_ms_sum)
     SELECT p, d, c, ph, pa, v, h::int8[], s FROM unnest($1::int8[], $2::int8[], $3::text[],
        $4::text[], $5::text[], $6::text[], $7::text[], $8::int8[])
        AS k(p, d, c, ph, pa, v, h, s)
     ON CONFLICT (project_id, day, command, phase, parent, version)
     DO UPDATE SET hist = optel_hist_add(rollup_phases.hist, excluded.hist),
                   start_ms_sum = rollup_phases.start_ms_sum + excluded.start_ms_sum";
const UPSERT_MEASUREMENTS: &str = "INSERT INTO rollup_measurements (project_id, day, name, version,
        bucket, count, sum)
     SELECT * FROM unnest($1::int8[], $2::int8[], $3::text[], $4::text[], $5::int8[],
        $6::int8[], $7::float8[])
     ON CONFLICT (project_id, day, name, version, bucket)
     DO UPDATE SET count = rollup_measurements.count + excluded.count,
                   sum = rollup_measurements.sum + excluded.sum";

/// The PostgreSQL literal of an `int8[]`: `{1,-2,3}`.
fn int8_array_literal(values: &[i64]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(2 + values.len() * 3);
    out.push('{');
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{v}");
    }
    out.push('}');
    out
}

/// Upserts the schema version 2 rollups of a delta (breakdowns, phases, measurements) inside
/// the open transaction, in key order like the other rollups; pipelined, one round trip.
// One Vec per column, as unnest() takes them: the tuples are wide on purpose.
#[allow(clippy::type_complexity)]
async fn apply_analytics(client: &deadpool_postgres::Client, delta: &Delta) -> Result<()> {
    let mut b: (
        Vec<i64>,
        Vec<i64>,
        Vec<&str>,
        Vec<&str>,
        Vec<&str>,
        Vec<&str>,
        Vec<i64>,
        Vec<i64>,
    ) = Default::default();
    for (p, (day, event_type, name, attribute, value), count, failures) in delta.sorted_breakdowns()
    {
        b.0.push(p);
        b.1.push(*day);
        b.2.push(event_type);
        b.3.push(name);
        b.4.push(attribute);
        b.5.push(value);
        b.6.push(count);
        b.7.push(failures);
    }
    let mut ph: (
        Vec<i64>,
        Vec<i64>,
        Vec<&str>,
        Vec<&str>,
        Vec<&str>,
        Vec<&str>,
        Vec<String>,
        Vec<i64>,
    ) = Default::default();
    for (p, (day, command, phase, parent, version), sum) in delta.sorted_phases() {
        ph.0.push(p);
        ph.1.push(*day);
        ph.2.push(command);
        ph.3.push(phase);
        ph.4.push(parent);
        ph.5.push(version);
        ph.6.push(int8_array_literal(&sum.hist.to_array()));
        ph.7.push(sum.start_ms_sum);
    }
    let mut m: (
        Vec<i64>,
        Vec<i64>,
        Vec<&str>,
        Vec<&str>,
        Vec<i64>,
        Vec<i64>,
        Vec<f64>,
    ) = Default::default();
    for (p, (day, name, version, bucket), count, sum) in delta.sorted_measures() {
        m.0.push(p);
        m.1.push(*day);
        m.2.push(name);
        m.3.push(version);
        m.4.push(*bucket);
        m.5.push(count);
        m.6.push(sum);
    }
    if b.0.is_empty() && ph.0.is_empty() && m.0.is_empty() {
        return Ok(());
    }
    let upsert_breakdowns = client.prepare_cached(UPSERT_BREAKDOWNS).await?;
    let upsert_phases = client.prepare_cached(UPSERT_PHASES).await?;
    let upsert_measurements = client.prepare_cached(UPSERT_MEASUREMENTS).await?;
    tokio::try_join!(
        biased;
        async {
            if b.0.is_empty() {
                return Ok(0);
            }
            client
                .execute(
                    &upsert_breakdowns,
                    &[&b.0, &b.1, &b.2, &b.3, &b.4, &b.5, &b.6, &b.7],
                )
                .await
        },
        async {
            if ph.0.is_empty() {
                return Ok(0);
            }
            client
                .execute(
                    &upsert_phases,
                    &[&ph.0, &ph.1, &ph.2, &ph.3, &ph.4, &ph.5, &ph.6, &ph.7],
                )
                .await
        },
        async {
            if m.0.is_empty() {
                return Ok(0);
            }
            client
                .execute(
                    &upsert_measurements,
                    &[&m.0, &m.1, &m.2, &m.3, &m.4, &m.5, &m.6],
                )
                .await
        },
    )?;
    Ok(())
}

/// Stores the catalogs the batches carry and marks the versions they name as seen at
/// `now_ms`, keeping at most [`MAX_CATALOG_VERSIONS`] per project (the least recently seen go
/// first), inside the open transaction.
async fn store_catalogs(
    client: &deadpool_postgres::Client,
    batches: &[PreparedBatch],
    now_ms: i64,
) -> Result<()> {
    let mut named: std::collections::BTreeMap<(i64, &str), Option<String>> = Default::default();
    for p in batches {
        if let Some(hash) = &p.batch.catalog_hash {
            let json = p
                .batch
                .catalog
                .as_ref()
                .and_then(|c| serde_json::to_string(c).ok());
            let slot = named.entry((p.project_id, hash.as_str())).or_default();
            if slot.is_none() {
                *slot = json;
            }
        }
    }
    let mut added = std::collections::BTreeSet::new();
    // In key order, as every writer locks them.
    for ((project_id, hash), json) in &named {
        match json {
            Some(json) => {
                client
                    .execute(
                        "INSERT INTO catalogs (project_id, hash, catalog, first_seen_ms,
                            last_seen_ms)
                         VALUES ($1, $2, $3, $4, $4)
                         ON CONFLICT (project_id, hash) DO UPDATE
                         SET last_seen_ms = GREATEST(catalogs.last_seen_ms, excluded.last_seen_ms)",
                        &[project_id, hash, json, &now_ms],
                    )
                    .await?;
                added.insert(*project_id);
            }
            None => {
                client
                    .execute(
                        "UPDATE catalogs SET last_seen_ms = GREATEST(last_seen_ms, $3)
                         WHERE project_id = $1 AND hash = $2",
                        &[project_id, hash, &now_ms],
                    )
                    .await?;
            }
        }
    }
    for project_id in added {
        client
            .execute(
                "DELETE FROM catalogs WHERE project_id = $1 AND hash NOT IN (
                    SELECT hash FROM catalogs WHERE project_id = $1
                    ORDER BY last_seen_ms DESC, hash LIMIT $2)",
                &[&project_id, &(MAX_CATALOG_VERSIONS as i64)],
            )
            .await?;
    }
    Ok(())
}

const UPSERT_CELLS: &str = "INSERT INTO rollup_cells (project_id, day, key_id, command, failed,
        count, duration_sum)
     SELECT * FROM unnest($1::int8[], $2::int8[], $3::int8[], $4::bool[], $5::bool[],
        $6::int8[], $7::int8[])
     ON CONFLICT (project_id, day, key_id)
     DO UPDATE SET count = rollup_cells.count + excluded.count,
                   duration_sum = rollup_cells.duration_sum + excluded.duration_sum";
const UPSERT_DURATIONS: &str = "INSERT INTO rollup_durations (project_id, day, name, bucket, count)
     SELECT * FROM unnest($1::int8[], $2::int8[], $3::text[], $4::int8[], $5::int8[])
     ON CONFLICT (project_id, day, name, bucket)
     DO UPDATE SET count = rollup_durations.count + excluded.count";
const UPSERT_VERSION_DURATIONS: &str = "INSERT INTO rollup_version_durations
        (project_id, day, name, version, bucket, count)
     SELECT * FROM unnest($1::int8[], $2::int8[], $3::text[], $4::text[], $5::int8[], $6::int8[])
     ON CONFLICT (project_id, day, name, version, bucket)
     DO UPDATE SET count = rollup_version_durations.count + excluded.count";
/// Removing updates existing rows only: events stored before migration 0006 are in no
/// per-version histogram, and forgetting them must not leave negative rows behind.
const SUBTRACT_VERSION_DURATIONS: &str = "UPDATE rollup_version_durations r
     SET count = r.count + k.c
     FROM unnest($1::int8[], $2::int8[], $3::text[], $4::text[], $5::int8[], $6::int8[])
          AS k(p, d, n, v, b, c)
     WHERE r.project_id = k.p AND r.day = k.d AND r.name = k.n AND r.version = k.v
       AND r.bucket = k.b";

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
pub(super) async fn apply_delta_and_commit(
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
    let mut vdurs: (Vec<i64>, Vec<i64>, Vec<&str>, Vec<&str>, Vec<i64>, Vec<i64>) =
        Default::default();
    for (p, day, name, version, bucket, count) in delta.sorted_version_durations() {
        vdurs.0.push(p);
        vdurs.1.push(day);
        vdurs.2.push(name);
        vdurs.3.push(version);
        vdurs.4.push(bucket);
        vdurs.5.push(count);
    }
    let installs = delta.sorted_installs();
    let mut k: (Vec<i64>, Vec<i64>, Vec<i64>, Vec<&str>) = Default::default();
    for (p, day, kind, value, _) in &installs {
        k.0.push(*p);
        k.1.push(*day);
        k.2.push(kind.code());
        k.3.push(value);
    }
    apply_analytics(client, delta).await?;
    let upsert_cells = client.prepare_cached(UPSERT_CELLS).await?;
    let upsert_durations = client.prepare_cached(UPSERT_DURATIONS).await?;
    let upsert_version_durations = client
        .prepare_cached(if removing {
            SUBTRACT_VERSION_DURATIONS
        } else {
            UPSERT_VERSION_DURATIONS
        })
        .await?;
    let create_sketches = client.prepare_cached(CREATE_SKETCHES).await?;
    let lock_sketches = client.prepare_cached(LOCK_SKETCHES).await?;
    let empty = InstallSketch::default().encode();
    // `biased`: each future sends its statement when first polled, so this is the wire order.
    let (_, _, _, _, locked) = tokio::try_join!(
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
            if vdurs.0.is_empty() {
                return Ok(0);
            }
            client
                .execute(
                    &upsert_version_durations,
                    &[
                        &vdurs.0, &vdurs.1, &vdurs.2, &vdurs.3, &vdurs.4, &vdurs.5,
                    ],
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
                facts: p.facts.get(ei)?.as_deref(),
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
    facts: Option<&'a str>,
}

/// Upload ids still reserved by this store: `[next, end)` of a block of the `upload_ids`
/// sequence.
#[derive(Debug, Default)]
pub(super) struct UploadIds {
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
        session_id, success, event_type, name, error_code, metadata, facts)
     FROM STDIN (FORMAT binary)";

/// Column types of [`COPY_EVENTS`].
const COPY_TYPES: [Type; 12] = [
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
                    &r.facts,
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
        duration_ms, session_id, success, event_type, name, error_code, metadata, facts)
     SELECT * FROM unnest($1::int8[], $2::uuid[], $3::int8[], $4::int8[], $5::int8[],
        $6::uuid[], $7::bool[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[])
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
        facts.5.push(r.facts);
    }
    let insert_uploads = client.prepare_cached(INSERT_UPLOADS).await?;
    let insert = client.prepare_cached(INSERT_EVENTS).await?;
    let params: [&(dyn ToSql + Sync); 12] = [
        &ids.0, &ids.1, &ids.2, &ids.3, &ids.4, &ids.5, &facts.0, &facts.1, &facts.2, &facts.3,
        &facts.4, &facts.5,
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
pub(super) async fn insert_group(
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
        let stored: Vec<usize> = first
            .iter()
            .zip(&p.event_ids)
            .enumerate()
            .filter(|&(_, (&f, id))| {
                f && new
                    .as_ref()
                    .is_none_or(|n| n.contains(&(p.project_id, Uuid(*id))))
            })
            .map(|(i, _)| i)
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
            p.delta_of(stored, &mut delta);
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
    store_catalogs(client, batches, received_ms).await?;
    apply_delta_and_commit(client, store, &delta, false).await?;
    Ok(outcomes)
}

#[cfg(test)]
mod tests {
    use optel_wire::{Batch, Event, Timestamp};

    use super::*;

    fn batch(ids: &[u8]) -> Batch {
        let mut b = Batch::new("tool", "1.0.0", "p1", "linux", "x86_64");
        for &i in ids {
            b.events.push(Event::new(
                optel_wire::format_uuid_v4([i; 16]),
                EventType::Feature,
                "f",
                Timestamp::from_unix_ms(1_700_000_000_000),
                optel_wire::format_uuid_v4([0; 16]),
            ));
        }
        b
    }

    #[test]
    fn a_group_stores_each_id_once_in_key_order() {
        // Two batches of one project share id 3; a batch of another project reuses id 1.
        let batches = [
            PreparedBatch::new(2, batch(&[9, 3, 3])),
            PreparedBatch::new(2, batch(&[3, 1])),
            PreparedBatch::new(1, batch(&[1])),
        ];
        let group = Group::of(&batches);
        assert_eq!(
            group.first,
            vec![vec![true, true, false], vec![false, true], vec![true]]
        );
        // (project, id) order: project 1's id 1, then project 2's ids 1, 3, 9.
        assert_eq!(group.order, vec![(2, 0), (1, 1), (0, 1), (0, 0)]);
        let uploads = [10, 11, 12];
        let rows: Vec<(i64, i64)> = group
            .rows(&batches, &uploads)
            .map(|r| (r.project_id, r.upload))
            .collect();
        assert_eq!(rows, vec![(1, 12), (2, 11), (2, 10), (2, 10)]);
    }
}
