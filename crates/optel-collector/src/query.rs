//! The analytics a tool author reads: the shapes of `GET /v1/projects/{name}/stats` and of
//! `optel stats --format json`.

use optel_wire::Timestamp;
use serde::{Deserialize, Serialize};

/// A half-open time range `[since_ms, until_ms)` in milliseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    /// Start, inclusive.
    pub since_ms: i64,
    /// End, exclusive.
    pub until_ms: i64,
}

impl TimeRange {
    /// The range from `lookback` before `now_ms` to just after `now_ms`.
    pub fn last(lookback: std::time::Duration, now_ms: i64) -> Self {
        let back = i64::try_from(lookback.as_millis()).unwrap_or(i64::MAX);
        Self {
            since_ms: now_ms.saturating_sub(back),
            until_ms: now_ms.saturating_add(1),
        }
    }
}

/// Usage statistics of one project over a time range.
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
    pub commands: Vec<CommandStats>,
    /// Failed commands by error code, most frequent first (at most 50).
    pub error_codes: Vec<ErrorCodeStats>,
    /// Tool versions, most installs first.
    pub versions: Vec<VersionStats>,
    /// OS and architecture mix, most installs first.
    pub platforms: Vec<PlatformStats>,
    /// Features used, most used first (at most 100).
    pub features: Vec<NameStats>,
    /// Library methods called, most called first (at most 100).
    pub methods: Vec<NameStats>,
}

/// Invocations of one command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandStats {
    /// Command name.
    pub name: String,
    /// Invocations.
    pub count: u64,
    /// Invocations that failed.
    pub failures: u64,
    /// Distinct installs that invoked it.
    pub installs: u64,
}

/// Failures of one command with one error code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorCodeStats {
    /// Command name.
    pub command: String,
    /// Error code (empty when the SDK sent none).
    pub error_code: String,
    /// Failures.
    pub count: u64,
}

/// Use of one tool version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionStats {
    /// Version string.
    pub version: String,
    /// Events sent by this version.
    pub events: u64,
    /// Distinct installs on this version.
    pub installs: u64,
}

/// Use on one OS and architecture.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlatformStats {
    /// Operating system.
    pub os: String,
    /// CPU architecture.
    pub arch: String,
    /// Events.
    pub events: u64,
    /// Distinct installs.
    pub installs: u64,
}

/// Use of one named feature or method.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameStats {
    /// Feature or method name.
    pub name: String,
    /// Times recorded.
    pub count: u64,
    /// Distinct installs.
    pub installs: u64,
}
