//! Storage behind one trait, [`Store`], with two backends: the embedded SQLite default
//! ([`SqliteStore`], one file, WAL) and PostgreSQL ([`PgStore`], for several collectors sharing
//! one database). Both keep raw events (for idempotency, retention and deletion) and the daily
//! rollups of [`crate::rollup`] in the same transaction; every analytics query reads rollups.
//!
//! The trait is synchronous: async callers run it on a blocking thread, and ingest goes through
//! the collector's single group-commit writer. See `docs/adr/004-collector-storage.md`.

mod postgres;
mod sqlite;

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

use std::path::PathBuf;
use std::sync::Arc;

use optel_wire::{Batch, EventType};
use serde::Serialize;

use crate::alerts::{AlertHook, AlertKey, AlertKind};
use crate::query::{DpSettings, Stats, TimeRange};
use crate::rollup::{
    BreakdownCount, CountRow, DayRange, Extras, HistRow, MeasureHist, PhaseHist, SketchKind,
    SketchRow, VersionHistRow,
};
use optel_wire::catalog::Catalog;

/// Most catalog versions kept per project (100): storing a new one beyond that drops the
/// version seen least recently. A batch naming a dropped version gets `catalog_known: false`
/// and its SDK sends the catalog again.
pub const MAX_CATALOG_VERSIONS: usize = 100;

/// One stored catalog version of a project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCatalog {
    /// [`Catalog::hash`].
    pub hash: String,
    /// The catalog.
    pub catalog: Catalog,
    /// When a batch first brought it, ms since the epoch.
    pub first_seen_ms: i64,
    /// When a batch last named it, ms since the epoch.
    pub last_seen_ms: i64,
}

/// Errors of a storage backend.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The SQLite database reported an error.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The PostgreSQL database reported an error.
    #[error("postgresql error: {0}")]
    Postgres(String),
    /// A project of that name exists already.
    #[error("project {0:?} already exists: pick another name or use the existing project's key")]
    ProjectExists(String),
    /// No project of that name.
    #[error("no project named {0:?}: list them with `optel projects list`")]
    NoProject(String),
    /// The database schema is newer than this binary.
    #[error(
        "database schema version {found} is newer than this optel ({supported}): upgrade optel"
    )]
    SchemaTooNew {
        /// Version found in the database.
        found: i64,
        /// Newest version this binary knows.
        supported: i64,
    },
    /// Creating the data directory failed.
    #[error("cannot create data directory {}: {source}", path.display())]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A blocking storage task of an async caller did not finish (it panicked or was
    /// cancelled at shutdown).
    #[error("a storage task did not finish: {0}")]
    Task(String),
    /// A database URL that cannot be used.
    #[error("database url is not usable ({0}): use postgres://USER@HOST:PORT/DB")]
    BadUrl(String),
}

impl From<tokio_postgres::Error> for StorageError {
    fn from(e: tokio_postgres::Error) -> Self {
        // The Display of a tokio-postgres error hides the server's message in `source`.
        let detail = e
            .as_db_error()
            .map(|d| format!("{}: {}", d.code().code(), d.message()));
        Self::Postgres(detail.unwrap_or_else(|| e.to_string()))
    }
}

/// The 16 bytes stored for an event or session id: the UUID's own bytes
/// ([`optel_wire::parse_uuid`]; ingest validates both ids as UUIDs). Anything else, which
/// validation never lets through, maps to the first 16 bytes of its SHA-256 rather than failing
/// the whole group commit.
pub fn uuid_bytes(id: &str) -> [u8; 16] {
    optel_wire::parse_uuid(id).unwrap_or_else(|| {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(id.as_bytes());
        let mut out = [0u8; 16];
        out.copy_from_slice(&digest[..16]);
        out
    })
}

/// `Result` with [`StorageError`].
pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// A project: one tool whose events are collected, with its own ingest keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Project {
    /// Database id.
    pub id: i64,
    /// Unique name, e.g. `acme`.
    pub name: String,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_ms: i64,
    /// Whether the k-anonymous public view (`/public/v1/projects/{name}/...`) is on.
    pub public: bool,
}

/// A validated batch with the work that does not need the database done in advance, on the
/// request's own thread rather than the single writer's: event and session ids as 16 bytes,
/// metadata as JSON text, the install hash of the pseudonym, and the rollup delta of the batch
/// as if every event were new (a backend recomputes it for the rare batch with duplicates).
#[derive(Debug)]
pub struct PreparedBatch {
    /// Project the batch belongs to.
    pub project_id: i64,
    /// The batch itself.
    pub batch: Batch,
    /// [`uuid_bytes`] of each event's `event_id`, in event order.
    pub event_ids: Vec<[u8; 16]>,
    /// [`uuid_bytes`] of each event's `session_id`, in event order.
    pub session_ids: Vec<[u8; 16]>,
    /// Each event's metadata as a JSON object, `None` when empty.
    pub metadata: Vec<Option<String>>,
    /// Each event's [`Extras`] (breakdown values from the batch's catalog, phases, value).
    pub extras: Vec<Extras>,
    /// Each event's [`Extras::encode`], stored in `events.facts`.
    pub facts: Vec<Option<String>>,
    /// [`crate::rollup::install_hash`] of the batch's pseudonym.
    pub install: u64,
    /// Rollup delta of all the batch's events ([`crate::rollup::Delta::add_batch`]).
    pub delta: crate::rollup::Delta,
}

impl PreparedBatch {
    /// Prepares `batch` of project `project_id`, breaking it down by the catalog it carries
    /// (if any): [`PreparedBatch::with_catalog`].
    pub fn new(project_id: i64, batch: Batch) -> Self {
        let catalog = batch.catalog.clone();
        Self::with_catalog(project_id, batch, catalog.as_ref())
    }

    /// Prepares `batch` of project `project_id`, breaking its events down by `catalog`: the
    /// catalog its `catalog_hash` names (`None` when it names none or the collector does not
    /// know it: then no breakdown rows, see [`Extras::of`]).
    pub fn with_catalog(project_id: i64, batch: Batch, catalog: Option<&Catalog>) -> Self {
        let install = crate::rollup::install_hash(&batch.pseudonym);
        let extras: Vec<Extras> = batch
            .events
            .iter()
            .map(|e| Extras::of(e, catalog))
            .collect();
        let mut delta = crate::rollup::Delta::default();
        delta.add_batch(
            project_id,
            &batch,
            install,
            batch.events.iter().zip(&extras),
        );
        Self {
            project_id,
            event_ids: batch
                .events
                .iter()
                .map(|e| uuid_bytes(&e.event_id))
                .collect(),
            session_ids: batch
                .events
                .iter()
                .map(|e| uuid_bytes(&e.session_id))
                .collect(),
            metadata: batch
                .events
                .iter()
                .map(|e| {
                    (!e.metadata.is_empty())
                        .then(|| serde_json::to_string(&e.metadata).ok())
                        .flatten()
                })
                .collect(),
            facts: extras.iter().map(Extras::encode).collect(),
            extras,
            install,
            delta,
            batch,
        }
    }

    /// The same batch with its rollup delta computed again (after a failed commit took it).
    pub fn reprepared(self) -> Self {
        let mut delta = crate::rollup::Delta::default();
        delta.add_batch(
            self.project_id,
            &self.batch,
            self.install,
            self.batch.events.iter().zip(&self.extras),
        );
        Self { delta, ..self }
    }

    /// The rollup delta of some of its events (those a backend newly stored).
    pub fn delta_of(
        &self,
        stored: impl IntoIterator<Item = usize>,
        into: &mut crate::rollup::Delta,
    ) {
        into.add_batch(
            self.project_id,
            &self.batch,
            self.install,
            stored
                .into_iter()
                .filter_map(|i| Some((self.batch.events.get(i)?, self.extras.get(i)?))),
        );
    }
}

/// The stored form of alert kinds: comma-separated names.
pub(crate) fn kinds_column(kinds: &[AlertKind]) -> String {
    kinds
        .iter()
        .map(|k| k.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// The alert kinds of a stored column (unknown names, from a newer collector, are skipped).
pub(crate) fn kinds_of_column(column: &str) -> Vec<AlertKind> {
    column
        .split(',')
        .filter_map(|k| AlertKind::parse(k).ok())
        .collect()
}

/// What [`Store::insert_batches`] did with one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct InsertOutcome {
    /// Events newly stored.
    pub inserted: u64,
    /// Events already stored by an earlier request (same event id), not stored again.
    pub duplicates: u64,
}

/// What [`Store::purge_before`] deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PurgeOutcome {
    /// Raw events deleted.
    pub events: u64,
    /// Rollup rows deleted (every rollup table).
    pub rollup_rows: u64,
}

/// A stored event as the rollups see it (deletion by pseudonym subtracts these).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// Project id.
    pub project_id: i64,
    /// Timestamp, ms since the epoch.
    pub ts_ms: i64,
    /// Event type.
    pub event_type: EventType,
    /// Event name.
    pub name: String,
    /// Tool version.
    pub version: String,
    /// OS.
    pub os: String,
    /// Architecture.
    pub arch: String,
    /// Command duration, ms.
    pub duration_ms: Option<u64>,
    /// Command outcome.
    pub success: Option<bool>,
    /// Error code.
    pub error_code: Option<String>,
    /// Install pseudonym.
    pub pseudonym: String,
    /// Its stored [`Extras`] (`events.facts`).
    pub facts: Option<String>,
}

/// What an ingest key grants: writes to a project, from anywhere (a server key) or, for a
/// browser key, only from its origins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyGrant {
    /// The project the key writes to.
    pub project: Project,
    /// The origins a browser key may ingest from; empty for a server key.
    pub origins: Vec<String>,
}

/// The stored form of a key's origins: newline-separated, `NULL` for none.
pub(crate) fn origins_column(origins: &[String]) -> Option<String> {
    (!origins.is_empty()).then(|| origins.join("\n"))
}

/// The origins of a stored `origins` column.
pub(crate) fn origins_of_column(column: Option<String>) -> Vec<String> {
    column
        .map(|c| c.lines().map(str::to_owned).collect())
        .unwrap_or_default()
}

/// A noisy answer of a public view in differential-privacy mode, as the day's ledger keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct DpAnswer {
    /// First UTC day (days since the epoch) the answer covers.
    pub first_day: i64,
    /// Last UTC day it covers.
    pub last_day: i64,
    /// The answer's JSON, noise included.
    pub body: String,
}

/// What the day's differential-privacy ledger of a project holds for one question
/// ([`Store::dp_lookup`]).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DpLookup {
    /// ε spent on the day so far.
    pub spent: f64,
    /// The answer given to the same question earlier that day.
    pub same: Option<DpAnswer>,
    /// The latest answer of the same view that day (any range).
    pub latest: Option<DpAnswer>,
}

/// What [`Store::dp_record`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum DpRecorded {
    /// The answer was stored and its ε spent; ε spent on the day, this answer included.
    Stored {
        /// ε spent on the day.
        spent: f64,
    },
    /// Another request answered the same question first: serve its answer.
    Raced {
        /// ε spent on the day.
        spent: f64,
        /// The answer stored first.
        answer: DpAnswer,
    },
    /// The day's budget cannot pay for the answer: nothing was stored.
    Spent {
        /// ε spent on the day.
        spent: f64,
        /// The latest answer of the same view that day, if any.
        latest: Option<DpAnswer>,
    },
}

/// One fresh noisy answer to record ([`Store::dp_record`]).
#[derive(Debug, Clone, Copy)]
pub struct DpEntry<'a> {
    /// Project id.
    pub project_id: i64,
    /// The UTC day of the budget (days since the epoch).
    pub day: i64,
    /// The view (`overview`, `commands`, …).
    pub view: &'a str,
    /// The question: view, range and granularity, as the API spells it.
    pub query: &'a str,
    /// First UTC day the answer covers.
    pub first_day: i64,
    /// Last UTC day it covers.
    pub last_day: i64,
    /// ε the answer spends.
    pub epsilon: f64,
    /// The day's budget.
    pub daily_budget: f64,
    /// The answer's JSON.
    pub body: &'a str,
    /// Now, ms since the epoch (orders the day's answers).
    pub now_ms: i64,
}

/// A storage backend. Methods block: async callers run them on a blocking thread.
pub trait Store: Send + Sync + 'static {
    /// `"sqlite"` or `"postgres"`.
    fn backend(&self) -> &'static str;
    /// Checks that the database answers (`/readyz`).
    ///
    /// # Errors
    /// The database does not answer.
    fn ping(&self) -> Result<()>;
    /// Creates a project with its first ingest key, given as the key's SHA-256 hex.
    ///
    /// # Errors
    /// [`StorageError::ProjectExists`] if the name is taken; database errors.
    fn create_project(&self, name: &str, key_hash: &str, now_ms: i64) -> Result<Project>;
    /// Deletes a project with its keys, events and rollups; `false` if there was none.
    ///
    /// # Errors
    /// Database errors.
    fn delete_project(&self, name: &str) -> Result<bool>;
    /// Switches the public view of a project on or off.
    ///
    /// # Errors
    /// [`StorageError::NoProject`]; database errors.
    fn set_public(&self, name: &str, public: bool) -> Result<()>;
    /// The differential-privacy settings of a project's public views; `None` when off.
    ///
    /// # Errors
    /// Database errors.
    fn public_dp(&self, project_id: i64) -> Result<Option<DpSettings>>;
    /// Switches the differential-privacy mode of a project's public views on (with these
    /// settings) or off. The day's ledger is kept either way.
    ///
    /// # Errors
    /// [`StorageError::NoProject`]; database errors.
    fn set_public_dp(&self, name: &str, dp: Option<DpSettings>) -> Result<()>;
    /// The day's differential-privacy ledger of a project for one question of one view.
    ///
    /// # Errors
    /// Database errors.
    fn dp_lookup(&self, project_id: i64, day: i64, view: &str, query: &str) -> Result<DpLookup>;
    /// Records a fresh noisy answer and spends its ε, in one transaction, if the day's budget
    /// allows and no other request answered the same question first; deletes the ledger rows
    /// of the project's days before yesterday.
    ///
    /// # Errors
    /// Database errors.
    fn dp_record(&self, entry: &DpEntry<'_>) -> Result<DpRecorded>;
    /// All projects, by name.
    ///
    /// # Errors
    /// Database errors.
    fn list_projects(&self) -> Result<Vec<Project>>;
    /// The project with this name.
    ///
    /// # Errors
    /// Database errors.
    fn project_by_name(&self, name: &str) -> Result<Option<Project>>;
    /// Adds an ingest key (SHA-256 hex) to a project.
    ///
    /// # Errors
    /// [`StorageError::NoProject`]; database errors.
    fn add_key(&self, project: &str, key_hash: &str, now_ms: i64) -> Result<()> {
        self.add_key_with_origins(project, key_hash, &[], now_ms)
    }
    /// Adds an ingest key (SHA-256 hex) to a project: a server key when `origins` is empty,
    /// else a browser key that may only ingest from those origins (`https://app.example`).
    ///
    /// # Errors
    /// [`StorageError::NoProject`]; database errors.
    fn add_key_with_origins(
        &self,
        project: &str,
        key_hash: &str,
        origins: &[String],
        now_ms: i64,
    ) -> Result<()>;
    /// Revokes an ingest key (SHA-256 hex); `false` if no such unrevoked key.
    ///
    /// # Errors
    /// Database errors.
    fn revoke_key(&self, key_hash: &str, now_ms: i64) -> Result<bool>;
    /// The project an unrevoked ingest key (as SHA-256 hex) writes to, and its origins.
    ///
    /// # Errors
    /// Database errors.
    fn project_for_key(&self, key_hash: &str) -> Result<Option<KeyGrant>>;
    /// Stores validated batches, each for its project, in ONE transaction with their rollups,
    /// skipping events whose id is already stored (in the database or earlier in `batches`).
    /// Returns only after the commit, one outcome per batch. The default prepares each batch
    /// ([`PreparedBatch::new`], on the caller's thread) and calls [`Store::insert_prepared`].
    ///
    /// # Errors
    /// Database errors; nothing of any batch is stored then.
    fn insert_batches(
        &self,
        batches: &[(i64, &Batch)],
        received_ms: i64,
    ) -> Result<Vec<InsertOutcome>> {
        let mut prepared = Vec::with_capacity(batches.len());
        for &(project_id, b) in batches {
            let catalog = match (&b.catalog, &b.catalog_hash) {
                (Some(c), _) => Some(c.clone()),
                (None, Some(hash)) => self.catalog(project_id, hash)?,
                (None, None) => None,
            };
            prepared.push(PreparedBatch::with_catalog(
                project_id,
                b.clone(),
                catalog.as_ref(),
            ));
        }
        self.insert_prepared(&mut prepared, received_ms)
    }
    /// [`Store::insert_batches`] for batches prepared off the writer thread
    /// ([`PreparedBatch::new`]). A backend may take the prepared rollup deltas out of
    /// `batches`, and recomputes the delta of a batch some of whose events were stored before.
    ///
    /// # Errors
    /// As [`Store::insert_batches`].
    fn insert_prepared(
        &self,
        batches: &mut [PreparedBatch],
        received_ms: i64,
    ) -> Result<Vec<InsertOutcome>>;
    /// How many group commits the group-commit writer may run at once: 1
    /// (the default) for a database with a single writer such as SQLite; more where
    /// transactions can overlap, each group's raw inserts running while another commits.
    fn concurrent_commits(&self) -> usize {
        1
    }
    /// The high-water marks of cumulative OTLP series (see `otlp::metrics`): for each of
    /// `series` (SHA-256 keys) with a mark, how many of its invocations are stored.
    ///
    /// # Errors
    /// Database errors.
    fn cumulative_marks(
        &self,
        project_id: i64,
        series: &[[u8; 32]],
    ) -> Result<Vec<([u8; 32], i64)>>;
    /// Raises the marks of cumulative OTLP series to `marks` (never lowers one), and forgets
    /// marks no export updated in the 90 days before `now_ms` (the oldest event ingest accepts).
    ///
    /// # Errors
    /// Database errors.
    fn advance_cumulative(
        &self,
        project_id: i64,
        marks: &[([u8; 32], i64)],
        now_ms: i64,
    ) -> Result<()>;
    /// The catalog version `hash` of a project, if stored.
    ///
    /// # Errors
    /// Database errors.
    fn catalog(&self, project_id: i64, hash: &str) -> Result<Option<Catalog>>;
    /// Every stored catalog version of a project (at most [`MAX_CATALOG_VERSIONS`]), the one
    /// seen last first.
    ///
    /// # Errors
    /// Database errors.
    fn catalogs(&self, project_id: i64) -> Result<Vec<StoredCatalog>>;
    /// `rollup_breakdowns` rows of a project summed over a day range.
    ///
    /// # Errors
    /// Database errors.
    fn breakdowns(&self, project_id: i64, days: DayRange) -> Result<Vec<BreakdownCount>>;
    /// `rollup_phases` rows of a project summed over a day range.
    ///
    /// # Errors
    /// Database errors.
    fn phases(&self, project_id: i64, days: DayRange) -> Result<Vec<PhaseHist>>;
    /// `rollup_measurements` rows of a project summed over a day range.
    ///
    /// # Errors
    /// Database errors.
    fn measurements(&self, project_id: i64, days: DayRange) -> Result<Vec<MeasureHist>>;
    /// `rollup_counts` rows of a project over a day range.
    ///
    /// # Errors
    /// Database errors.
    fn counts(&self, project_id: i64, days: DayRange) -> Result<Vec<CountRow>>;
    /// `rollup_counts` rows of a project summed over a day range (every row's `day` is
    /// `days.first`): what views without buckets read, so the database does the summing.
    ///
    /// # Errors
    /// Database errors.
    fn counts_total(&self, project_id: i64, days: DayRange) -> Result<Vec<CountRow>> {
        let mut sums: std::collections::HashMap<crate::rollup::CountKey, (i64, i64)> =
            std::collections::HashMap::new();
        for r in self.counts(project_id, days)? {
            let mut key = r.key;
            key.day = days.first;
            let s = sums.entry(key).or_default();
            s.0 += r.count;
            s.1 += r.duration_sum;
        }
        Ok(sums
            .into_iter()
            .map(|(key, (count, duration_sum))| CountRow {
                key,
                count,
                duration_sum,
            })
            .collect())
    }
    /// Per-day totals of a project over a day range: `(day, events, invocations, failures)`,
    /// what `/timeseries` reads.
    ///
    /// # Errors
    /// Database errors.
    fn day_totals(&self, project_id: i64, days: DayRange) -> Result<Vec<(i64, i64, i64, i64)>> {
        Ok(crate::rollup::day_totals(&self.counts(project_id, days)?))
    }
    /// `rollup_durations` rows of a project over a day range.
    ///
    /// # Errors
    /// Database errors.
    fn durations(&self, project_id: i64, days: DayRange) -> Result<Vec<HistRow>>;
    /// `rollup_version_durations` rows of a project's `versions` summed over a day range: the
    /// duration histogram of each command of each of those tool versions.
    ///
    /// # Errors
    /// Database errors.
    fn version_durations(
        &self,
        project_id: i64,
        days: DayRange,
        versions: &[&str],
    ) -> Result<Vec<VersionHistRow>>;
    /// `rollup_installs` rows of some kinds of a project over a day range.
    ///
    /// # Errors
    /// Database errors.
    fn installs(
        &self,
        project_id: i64,
        days: DayRange,
        kinds: &[SketchKind],
    ) -> Result<Vec<SketchRow>>;
    /// Deletes raw events older than `cutoff_ms` and rollup days entirely before it.
    ///
    /// # Errors
    /// Database errors.
    fn purge_before(&self, cutoff_ms: i64) -> Result<PurgeOutcome>;
    /// Deletes every event of these pseudonyms (in one project, or all with `None`) and
    /// subtracts them from the rollups. Returns the events deleted.
    ///
    /// # Errors
    /// Database errors.
    fn forget(&self, project_id: Option<i64>, pseudonyms: &[String]) -> Result<u64>;

    /// Adds a webhook to a project ([`crate::alerts`]); `url` checked by
    /// [`crate::alerts::check_url`], `secret` from [`crate::alerts::generate_secret`].
    ///
    /// # Errors
    /// [`StorageError::NoProject`]; database errors.
    fn add_alert_hook(
        &self,
        project: &str,
        url: &str,
        secret: &str,
        kinds: &[AlertKind],
        log: bool,
        now_ms: i64,
    ) -> Result<AlertHook>;
    /// The webhooks of one project, or of all with `None`, by id.
    ///
    /// # Errors
    /// Database errors.
    fn alert_hooks(&self, project: Option<&str>) -> Result<Vec<AlertHook>>;
    /// Removes a webhook; `false` if there was none with that id.
    ///
    /// # Errors
    /// Database errors.
    fn remove_alert_hook(&self, id: i64) -> Result<bool>;
    /// Records that an alert condition fired; `false` if it had fired before (deliver nothing).
    ///
    /// # Errors
    /// Database errors.
    fn mark_alert(&self, project_id: i64, key: &AlertKey, now_ms: i64) -> Result<bool>;
    /// Forgets that an alert condition fired, so it can fire again.
    ///
    /// # Errors
    /// Database errors.
    fn clear_alert(&self, project_id: i64, key: &AlertKey) -> Result<()>;

    /// Stores one batch: [`Store::insert_batches`] of one.
    ///
    /// # Errors
    /// Database errors.
    fn insert_batch(
        &self,
        project_id: i64,
        batch: &Batch,
        received_ms: i64,
    ) -> Result<InsertOutcome> {
        Ok(self
            .insert_batches(&[(project_id, batch)], received_ms)?
            .into_iter()
            .next()
            .unwrap_or_default())
    }

    /// Usage statistics of a project over a time range, from the rollups (whole UTC days).
    ///
    /// # Errors
    /// Database errors.
    fn stats(&self, project: &Project, range: TimeRange) -> Result<Stats> {
        crate::query::stats(self, project, range)
    }
}

/// What a commit, and so a 2xx answer to an ingest request, survives
/// (`docs/adr/006-durability.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Durability {
    /// A commit is on disk before it is acknowledged: it survives a crash of the collector,
    /// of the database server, of the OS, and a power cut. SQLite `synchronous=FULL`;
    /// PostgreSQL `synchronous_commit=on` for the collector's sessions, whatever the server's
    /// default (a server run with `fsync=off` still cannot keep it).
    Fsync,
    /// A commit survives a crash of the collector process, not of the OS or a power cut (nor,
    /// on PostgreSQL, a crash of the database server): SQLite `synchronous=NORMAL` in WAL
    /// mode (the WAL is written but not synced at each commit); PostgreSQL
    /// `synchronous_commit=off` (the server syncs its WAL within about 3 × `wal_writer_delay`,
    /// 600 ms by default). Cheaper per commit.
    #[default]
    CrashSafe,
}

impl Durability {
    /// `"fsync"` or `"crash-safe"`, as `optel serve --durability` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fsync => "fsync",
            Self::CrashSafe => "crash-safe",
        }
    }
}

/// Opens the store a command line names: a `postgres://` (or `postgresql://`) URL, else the
/// SQLite database in `data_dir`, with [`Durability::default`].
///
/// # Errors
/// The database cannot be opened or migrated.
pub fn open(database: Option<&str>, data_dir: &std::path::Path) -> Result<Arc<dyn Store>> {
    open_with(database, data_dir, Durability::default())
}

/// [`open`] with an explicit [`Durability`].
///
/// # Errors
/// The database cannot be opened or migrated.
pub fn open_with(
    database: Option<&str>,
    data_dir: &std::path::Path,
    durability: Durability,
) -> Result<Arc<dyn Store>> {
    match database {
        Some(url) if !url.trim().is_empty() => {
            Ok(Arc::new(PgStore::connect_with(url, None, durability)?))
        }
        _ => Ok(Arc::new(SqliteStore::open_with(data_dir, durability)?)),
    }
}

/// The rollup delta that removes `events`: negative counts, and the install hashes to take out
/// of the (still exact) sketches.
pub(crate) fn forget_delta(events: &[StoredEvent]) -> crate::rollup::Delta {
    let mut delta = crate::rollup::Delta::default();
    for e in events {
        let extras = Extras::decode(e.facts.as_deref());
        delta.add(
            &crate::rollup::EventFacts {
                project_id: e.project_id,
                ts_ms: e.ts_ms,
                event_type: e.event_type,
                name: &e.name,
                version: &e.version,
                os: &e.os,
                arch: &e.arch,
                duration_ms: e.duration_ms,
                success: e.success,
                error_code: e.error_code.as_deref(),
                install: crate::rollup::install_hash(&e.pseudonym),
                extras: &extras,
            },
            -1,
        );
    }
    delta
}
