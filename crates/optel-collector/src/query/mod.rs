//! The analytics a tool author reads, computed from the daily rollups: the answer types of the
//! query API (`docs/query-api.md`: `/overview`, `/timeseries`, `/commands`, `/errors`,
//! `/versions`, `/platforms`, `/features`, the admin-only `/breakdowns`, `/phases`,
//! `/measurements`, `/adoption` and `/catalog`, and `/stats`, which `optel stats --format
//! json` prints), `/release-health` ([`release_health`]), the usage metrics of `/v1/metrics/usage`
//! ([`usage_metrics`]), the differential-privacy mode of public views ([`DpSettings`]), and the
//! functions that compute them.

mod analytics;
mod dp;
mod health;
mod public;
mod range;
mod usage;
mod views;

pub use dp::{DpInfo, DpSettings, MAX_DAILY_BUDGET, MAX_EPSILON, MIN_EPSILON};
pub(crate) use dp::{Noise, Private, privatize};

pub use analytics::{adoption, breakdowns, catalog, measurements, phases};
pub use health::{
    Change, CommandHealth, CommandSide, MIN_DURATIONS, MIN_INVOCATIONS, NewErrorCode, NoiseRule,
    P95_MIN_RATIO, ReleaseHealth, Z_99, order_versions, quantile_interval, release_health,
    two_proportion_z,
};
pub use range::{MAX_RANGE_MS, TimeRange, now_ms, parse_lookback, parse_range};
pub use usage::{MAX_USAGE_COMMANDS, MAX_USAGE_VERSIONS, OTHER, USAGE_WINDOW_DAYS, usage_metrics};
pub use views::{commands, errors, features, overview, platforms, stats, timeseries, versions};

use optel_wire::Timestamp;

use crate::rollup::{DAY_MS, DayRange};
use serde::{Deserialize, Serialize};

/// Usage statistics of one project over a time range: every list of the other views at once,
/// in their row types (`GET /v1/projects/{p}/stats`, `optel stats --format json`).
///
/// Active installs count distinct pseudonyms; pseudonyms rotate monthly, so over a range that
/// spans several months an install may count once per month.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Project name.
    pub project: String,
    /// Start of the range (inclusive).
    pub since: Timestamp,
    /// End of the range (exclusive).
    pub until: Timestamp,
    /// Events of any type in the range.
    pub events: u64,
    /// Distinct install pseudonyms seen in the range.
    pub active_installs: u64,
    /// Commands, most invoked first.
    pub commands: Vec<CommandRow>,
    /// Failed commands by error code, most frequent first (at most 50).
    pub error_codes: Vec<ErrorRow>,
    /// Tool versions, most installs first.
    pub versions: Vec<VersionRow>,
    /// OS and architecture mix, most installs first.
    pub platforms: Vec<PlatformRow>,
    /// Features used, most used first (at most 100).
    pub features: Vec<NamedRow>,
    /// Library methods called, most called first (at most 100).
    pub methods: Vec<NamedRow>,
    /// The latest version against the previous one over the same range
    /// ([`release_health`]); `None` when an older collector, which lacked it, answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_health: Option<ReleaseHealth>,
    /// Phase durations per command and phase (`/phases`). Empty when an older collector
    /// answered.
    #[serde(default)]
    pub phases: Vec<PhaseRow>,
    /// Breakdowns by declared attributes (`/breakdowns`). Empty when an older collector
    /// answered.
    #[serde(default)]
    pub breakdowns: Vec<BreakdownRow>,
    /// Measurements (`/measurements`). Empty when an older collector answered.
    #[serde(default)]
    pub measurements: Vec<MeasurementRow>,
}

/// A project as `GET /v1/projects` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectView {
    /// Name.
    pub name: String,
    /// Whether the public view is on.
    pub public: bool,
    /// Creation time.
    pub created: optel_wire::Timestamp,
}

/// Answer of `GET /v1/projects`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectList {
    /// Projects by name.
    pub projects: Vec<ProjectView>,
}

/// Most rows in a list answer (commands, errors, versions, platforms, features, methods).
pub const MAX_ROWS: usize = 100;

/// Bucket width of a time series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Granularity {
    /// UTC days.
    Day,
    /// ISO weeks, starting on Monday.
    Week,
}

impl Granularity {
    /// Parses `day` or `week`.
    ///
    /// # Errors
    /// A message naming the accepted values.
    pub fn parse(s: &str) -> std::result::Result<Self, String> {
        match s {
            "day" => Ok(Self::Day),
            "week" => Ok(Self::Week),
            _ => Err(format!(
                "granularity {s:?} is not understood: use day or week"
            )),
        }
    }

    /// First day of the bucket containing `day`.
    pub fn bucket_start(self, day: i64) -> i64 {
        match self {
            Self::Day => day,
            // 1970-01-01 was a Thursday: Monday is 3 days before.
            Self::Week => day - (day + 3).rem_euclid(7),
        }
    }

    /// Bucket starts covering `days`, in order.
    pub fn buckets(self, days: DayRange) -> Vec<i64> {
        let step = if self == Self::Day { 1 } else { 7 };
        let mut out = Vec::new();
        let mut d = self.bucket_start(days.first);
        while d <= days.last {
            out.push(d);
            d += step;
        }
        out
    }
}

/// `YYYY-MM-DD` of a UTC day number.
pub fn day_string(day: i64) -> String {
    let s = Timestamp::from_unix_ms(day.saturating_mul(DAY_MS)).to_string();
    s.get(..10).unwrap_or(&s).to_owned()
}

/// Who reads: the admin (everything) or the public (cells with fewer than `k` installs hidden).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// Admin token holder.
    Admin,
    /// Public view with k-anonymity threshold `k`.
    Public {
        /// Least distinct installs a shown cell must have.
        k: u64,
    },
}

impl Audience {
    fn k(self) -> Option<u64> {
        match self {
            Self::Admin => None,
            Self::Public { k } => Some(k),
        }
    }

    fn hides(self, installs: u64) -> bool {
        self.k().is_some_and(|k| installs < k)
    }
}

/// Answer of `/overview`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Overview {
    /// Project name.
    pub project: String,
    /// Start of the range.
    pub from: Timestamp,
    /// End of the range (exclusive).
    pub to: Timestamp,
    /// Events of any type.
    pub events: Option<u64>,
    /// Command invocations.
    pub invocations: Option<u64>,
    /// Failed command invocations.
    pub failures: Option<u64>,
    /// Distinct installs over the range.
    pub active_installs: Option<u64>,
    /// Distinct installs on the last day of the range.
    pub dau: Option<u64>,
    /// Distinct installs in the 7 days ending at `to`.
    pub wau: Option<u64>,
    /// Distinct installs in the 30 days ending at `to`.
    pub mau: Option<u64>,
    /// Public view: counts hidden because fewer than `k` installs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suppressed: Option<bool>,
    /// Public view: the k-anonymity threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k: Option<u64>,
    /// Public view of a project in differential-privacy mode: the noise's parameters and the
    /// day's budget ([`DpInfo`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dp: Option<DpInfo>,
}

/// One bucket of `/timeseries`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesBucket {
    /// First day of the bucket, `YYYY-MM-DD`.
    pub start: String,
    /// Events.
    pub events: Option<u64>,
    /// Command invocations.
    pub invocations: Option<u64>,
    /// Failed invocations.
    pub failures: Option<u64>,
    /// Distinct installs.
    pub active_installs: Option<u64>,
    /// Public view: hidden because fewer than `k` installs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suppressed: Option<bool>,
}

/// Answer of `/timeseries`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timeseries {
    /// Bucket width.
    pub granularity: Granularity,
    /// Every bucket of the range, empty ones included.
    pub buckets: Vec<SeriesBucket>,
    /// Public view: the k-anonymity threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k: Option<u64>,
    /// Public view of a project in differential-privacy mode: the noise's parameters and the
    /// day's budget ([`DpInfo`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dp: Option<DpInfo>,
}

/// A row of `/commands`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandRow {
    /// Command name.
    pub name: String,
    /// Invocations.
    pub count: u64,
    /// Failed invocations.
    pub failures: u64,
    /// `failures / count`, in `[0, 1]`.
    /// 0 when an older collector, whose `/stats` rows lacked it, answered.
    #[serde(default)]
    pub failure_rate: f64,
    /// Distinct installs.
    pub installs: u64,
    /// Median duration, ms (from the rollup histogram, within 12.5 %).
    /// 0 when an older collector, whose `/stats` rows lacked it, answered.
    #[serde(default)]
    pub p50_ms: u64,
    /// 95th percentile duration, ms.
    /// 0 when an older collector, whose `/stats` rows lacked it, answered.
    #[serde(default)]
    pub p95_ms: u64,
}

/// A row of `/errors`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorRow {
    /// Command name.
    pub command: String,
    /// Error code (empty when none was sent).
    pub error_code: String,
    /// Failures.
    pub count: u64,
    /// Distinct installs.
    /// 0 when an older collector, whose `/stats` rows lacked it, answered.
    #[serde(default)]
    pub installs: u64,
}

/// A row of `/versions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionRow {
    /// Version.
    pub version: String,
    /// Distinct installs.
    pub installs: u64,
    /// Events.
    pub events: u64,
}

/// A bucket of `/versions`: adoption of one version over time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionBucket {
    /// First day of the bucket.
    pub start: String,
    /// Version.
    pub version: String,
    /// Distinct installs on that version in the bucket.
    pub installs: Option<u64>,
    /// Public view: hidden because fewer than `k` installs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suppressed: Option<bool>,
}

/// A row of `/platforms`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlatformRow {
    /// OS.
    pub os: String,
    /// Architecture.
    pub arch: String,
    /// Distinct installs.
    pub installs: u64,
    /// Events.
    pub events: u64,
}

/// A row of `/features` (features and methods).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamedRow {
    /// Name.
    pub name: String,
    /// Times recorded.
    pub count: u64,
    /// Distinct installs.
    pub installs: u64,
    /// Per UTC day of the range, oldest first: filled in `/stats` (as in `/adoption`), empty
    /// (and absent from the JSON) in `/features`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub daily: Vec<DailyRow>,
}

/// One UTC day of an adoption series.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DailyRow {
    /// The day, `YYYY-MM-DD`.
    pub day: String,
    /// Events that day.
    pub count: u64,
    /// Distinct installs that day.
    pub installs: u64,
}

/// One series of `/adoption`: a feature, method or custom event over the range's days.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdoptionRow {
    /// `feature`, `method` or `custom`.
    pub event_type: String,
    /// Its name.
    pub name: String,
    /// Events over the range.
    pub count: u64,
    /// Distinct installs over the range.
    pub installs: u64,
    /// Every UTC day of the range, oldest first, empty days included.
    pub daily: Vec<DailyRow>,
}

/// Answer of `/adoption` (admin only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Adoption {
    /// Features, then methods, then custom events; each most used first (at most
    /// [`MAX_ROWS`] of each type).
    pub series: Vec<AdoptionRow>,
}

/// One value of a breakdown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreakdownValue {
    /// The attribute's value (an enum value, `true`/`false`, an integer bucket label such as
    /// `2..8`), or `other` for values beyond [`crate::rollup::MAX_DIMENSION_VALUES`] and values
    /// the catalog does not declare.
    pub value: String,
    /// Events with this value.
    pub count: u64,
    /// Failed commands with this value (0 for other event types).
    pub failures: u64,
    /// Distinct installs that sent this value.
    pub installs: u64,
}

/// One breakdown: an event by one attribute its catalog declares as a dimension (enum, bool,
/// bucketed int; never text).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreakdownRow {
    /// `command`, `feature`, `method` or `custom`.
    pub event_type: String,
    /// The event's name.
    pub name: String,
    /// The command's name again, for commands only (what `optel stats --format json` readers
    /// key on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// The attribute.
    pub attribute: String,
    /// Its values, most frequent first: at most [`crate::rollup::MAX_DIMENSION_VALUES`] plus
    /// `other`.
    pub values: Vec<BreakdownValue>,
}

/// Answer of `/breakdowns` (admin only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Breakdowns {
    /// By event type, name and attribute.
    pub breakdowns: Vec<BreakdownRow>,
}

/// Phase durations of one command phase on one tool version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhaseVersionRow {
    /// Tool version.
    pub version: String,
    /// Phases recorded.
    pub count: u64,
    /// Median duration, ms (within [`crate::rollup::RELATIVE_ACCURACY`], 1.9 %).
    pub p50_ms: f64,
    /// 95th percentile duration, ms.
    pub p95_ms: f64,
    /// 99th percentile duration, ms.
    pub p99_ms: f64,
}

/// Phase durations of one command phase (under one parent phase), over every version and per
/// version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhaseRow {
    /// Command name.
    pub command: String,
    /// Phase name.
    pub phase: String,
    /// Name of the enclosing phase, empty at the top level (and for phases a collector stored
    /// before it kept parents, or when an older collector answered).
    #[serde(default)]
    pub parent: String,
    /// Nesting depth in the command's waterfall: 0 at the top level, 1 under a top-level
    /// phase, and so on (see [`Phases`] for the order). 0 when an older collector answered.
    #[serde(default)]
    pub depth: u32,
    /// Mean start of the phase after its command started, ms (each start rounded to the
    /// nearest ms; phases stored before the collector kept starts count as 0). 0 when an
    /// older collector answered.
    #[serde(default)]
    pub mean_start_ms: f64,
    /// Phases recorded.
    pub count: u64,
    /// Median duration, ms (within 1.9 %).
    pub p50_ms: f64,
    /// 95th percentile duration, ms.
    pub p95_ms: f64,
    /// 99th percentile duration, ms.
    pub p99_ms: f64,
    /// The same per tool version, newest name first.
    pub versions: Vec<PhaseVersionRow>,
}

/// Answer of `/phases` (admin only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Phases {
    /// By command (in name order), each command's phases in waterfall order: depth first,
    /// every phase followed by the phases nested in it, siblings by mean start then name. A
    /// phase whose parent has no row of its own, or that only a cycle of names reaches
    /// (possible across events), is listed at depth 0.
    pub phases: Vec<PhaseRow>,
}

/// One measurement on one tool version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeasurementVersionRow {
    /// Tool version.
    pub version: String,
    /// Values recorded.
    pub count: u64,
    /// Their sum, in the measurement's unit.
    pub sum: f64,
    /// Median value (within 1.9 %).
    pub p50: f64,
    /// 95th percentile value.
    pub p95: f64,
}

/// One measurement, over every version and per version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeasurementRow {
    /// Measurement name.
    pub name: String,
    /// Values recorded.
    pub count: u64,
    /// Their sum, in `unit`.
    pub sum: f64,
    /// Median value (within 1.9 %).
    pub p50: f64,
    /// 95th percentile value.
    pub p95: f64,
    /// Its unit, from the most recently seen catalog that declares it; `null` if none does.
    pub unit: Option<optel_wire::catalog::Unit>,
    /// The same per tool version.
    pub versions: Vec<MeasurementVersionRow>,
}

/// Answer of `/measurements` (admin only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measurements {
    /// By name.
    pub measurements: Vec<MeasurementRow>,
}

/// One stored catalog version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogVersion {
    /// Its hash (`catalog_hash` of batches).
    pub hash: String,
    /// When a batch first brought it.
    pub first_seen: Timestamp,
    /// When a batch last named it.
    pub last_seen: Timestamp,
}

/// Answer of `/catalog` (admin only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogAnswer {
    /// The catalog version seen last, `null` when the project has none.
    pub latest: Option<optel_wire::catalog::Catalog>,
    /// Every stored version (at most [`crate::storage::MAX_CATALOG_VERSIONS`]), seen last
    /// first; `versions[0]` is `latest`'s.
    pub versions: Vec<CatalogVersion>,
}

/// A list answer with the public view's suppression fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Listed<T> {
    /// The rows.
    #[serde(flatten)]
    pub rows: T,
    /// Public view: rows removed because fewer than `k` installs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suppressed_rows: Option<u64>,
    /// Public view: the k-anonymity threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k: Option<u64>,
    /// Public view of a project in differential-privacy mode: the noise's parameters and the
    /// day's budget ([`DpInfo`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dp: Option<DpInfo>,
}

/// Rows of `/commands`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Commands {
    /// Most invoked first.
    pub commands: Vec<CommandRow>,
}

/// Rows of `/errors`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Errors {
    /// Most frequent first.
    pub errors: Vec<ErrorRow>,
}

/// Rows of `/versions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Versions {
    /// Most installs first.
    pub versions: Vec<VersionRow>,
    /// Bucket width.
    pub granularity: Granularity,
    /// Per bucket and version.
    pub buckets: Vec<VersionBucket>,
}

/// Rows of `/platforms`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Platforms {
    /// Most installs first.
    pub platforms: Vec<PlatformRow>,
}

/// Rows of `/features`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Features {
    /// Features, most used first.
    pub features: Vec<NamedRow>,
    /// Methods, most called first.
    pub methods: Vec<NamedRow>,
}
