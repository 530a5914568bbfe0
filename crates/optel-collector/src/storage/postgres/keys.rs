//! The `rollup_keys` ids: a per-store cache of (project, count key without its day) → id, and
//! their creation on a pool of their own.

use foldhash::HashMap;

use tokio_postgres::types::ToSql;

use super::{PgStore, get};
use crate::rollup::CountKey;
use crate::storage::{Result, StorageError};

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
pub(super) struct KeyCache {
    hasher: foldhash::fast::RandomState,
    /// Hash of the key → (project, key with day 0, id); several on a hash collision.
    ids: HashMap<u64, Vec<(i64, CountKey, i64)>>,
    len: usize,
}

/// The dimensions of a count key without its day: what a `rollup_keys` row holds.
pub(super) fn dims(k: &CountKey) -> (&str, &str, &str, &str, &str, i64, &str) {
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
pub(super) async fn key_ids(store: &PgStore, keys: &[(i64, &CountKey)]) -> Result<Vec<i64>> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn key(day: i64, name: &str) -> CountKey {
        CountKey {
            day,
            event_type: "command".into(),
            name: name.into(),
            version: "1.0.0".into(),
            os: "linux".into(),
            arch: "x86_64".into(),
            outcome: 1,
            error_code: String::new(),
        }
    }

    #[test]
    fn ids_are_found_whatever_the_day_and_only_in_their_project() {
        let mut cache = KeyCache::default();
        cache.insert(1, key(20_000, "build"), 7);
        assert_eq!(cache.get(1, &key(20_000, "build")), Some(7));
        // A rollup_keys row has no day: every day of the same dimensions shares the id.
        assert_eq!(cache.get(1, &key(20_555, "build")), Some(7));
        assert_eq!(cache.get(2, &key(20_000, "build")), None, "another project");
        assert_eq!(cache.get(1, &key(20_000, "test")), None, "another name");
        let mut failed = key(20_000, "build");
        failed.outcome = 0;
        failed.error_code = "E_X".into();
        assert_eq!(cache.get(1, &failed), None, "another outcome");
    }

    #[test]
    fn the_cache_starts_over_past_its_bound() {
        let mut cache = KeyCache::default();
        for i in 0..MAX_CACHED_KEYS {
            cache.insert(1, key(0, &format!("c{i}")), i as i64);
        }
        assert_eq!(cache.get(1, &key(0, "c0")), Some(0));
        cache.insert(1, key(0, "one-more"), -1);
        assert_eq!(cache.get(1, &key(0, "c0")), None, "emptied at the bound");
        assert_eq!(cache.get(1, &key(0, "one-more")), Some(-1));
        assert_eq!(cache.len, 1);
    }
}
