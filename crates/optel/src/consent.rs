//! Consent: whether telemetry runs at all, and which layer decided it.
//!
//! Layers, highest first: the user's environment before any file (`DO_NOT_TRACK` is the
//! convention shared by many tools, so one variable silences them all), what a project commits
//! before what one user chose, and the author's default last:
//!
//! | layer | where | example |
//! |---|---|---|
//! | `DO_NOT_TRACK` | environment | `DO_NOT_TRACK=1` |
//! | the tool's variable | environment | `ACME_TELEMETRY=off\|local\|on` |
//! | project policy | `.optel.toml` in the working directory or a parent | `telemetry = "off"` |
//! | user config | `<config dir>/optel/<tool>.toml` | `telemetry = "local"` |
//! | shared consent | `<config dir>/optel/consent.toml` | `telemetry = "off"`, `[tools] acme = "on"` |
//! | author default | the builder | [`crate::TelemetryBuilder::default_consent`] |
//!
//! `<config dir>` is the platform config directory of the `directories` crate (on Linux
//! `$XDG_CONFIG_HOME` or `~/.config`). The project policy and the shared consent file have the
//! same shape: a `telemetry` key for every optel tool and a `[tools]` table of per-tool
//! overrides (the per-tool entry wins). A value that is not understood, or a file that cannot be
//! parsed, turns telemetry off and says so in `status` (fail closed).
//!
//! Resolution reads environment variables first and stops at the first layer that decides:
//! with `DO_NOT_TRACK=1` no file is even opened.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::fsutil;

pub(crate) mod prompt;

/// The name of the project policy file looked for in the working directory and its parents.
pub const PROJECT_POLICY_FILE: &str = ".optel.toml";

/// Largest consent or policy file read: 64 KiB. Larger files are ignored with a note.
const MAX_CONSENT_FILE_BYTES: u64 = 64 * 1024;

/// Most parent directories searched for [`PROJECT_POLICY_FILE`].
const MAX_WALK_UP: usize = 64;

/// The consent state of a tool on this machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Consent {
    /// Nothing runs: no thread, no file, no socket, no hashing.
    Off,
    /// Events are recorded in a local ledger only (see `telemetry log`); nothing is sent.
    Local,
    /// Events are recorded, queued locally and sent to the endpoint.
    On,
}

impl Consent {
    /// `"off"`, `"local"` or `"on"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Local => "local",
            Self::On => "on",
        }
    }

    /// Parses a consent value: `off`/`0`/`false`/`no`/`disable(d)`, `local`, or
    /// `on`/`1`/`true`/`yes`/`enable(d)`, case-insensitive. `None` for anything else.
    pub fn parse(v: &str) -> Option<Self> {
        match v.trim().to_ascii_lowercase().as_str() {
            "off" | "0" | "false" | "no" | "disable" | "disabled" => Some(Self::Off),
            "local" => Some(Self::Local),
            "on" | "1" | "true" | "yes" | "enable" | "enabled" => Some(Self::On),
            _ => None,
        }
    }
}

impl fmt::Display for Consent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The layer that decided the consent state, as `status` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConsentSource {
    /// `DO_NOT_TRACK` was set to a true value (<https://consoledonottrack.com>).
    DoNotTrack,
    /// The tool's own environment variable, e.g. `ACME_TELEMETRY`; holds the variable's name.
    ToolEnv(String),
    /// A project policy file ([`PROJECT_POLICY_FILE`]) in the working directory or a parent.
    ProjectPolicy(PathBuf),
    /// The user's per-tool config file (written by `telemetry enable|disable|local` and by the
    /// answer to the opt-in question).
    UserConfig(PathBuf),
    /// The consent file shared by every optel-instrumented tool of this user.
    SharedConsent(PathBuf),
    /// Nothing else decided: the author's default passed to the builder.
    AuthorDefault,
}

impl ConsentSource {
    /// The file of the deciding layer, for file layers.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Self::ProjectPolicy(p) | Self::UserConfig(p) | Self::SharedConsent(p) => Some(p),
            _ => None,
        }
    }

    /// A short stable name of the layer: `do_not_track`, `tool_env`, `project_policy`,
    /// `user_config`, `shared_consent` or `author_default`.
    pub const fn layer(&self) -> &'static str {
        match self {
            Self::DoNotTrack => "do_not_track",
            Self::ToolEnv(_) => "tool_env",
            Self::ProjectPolicy(_) => "project_policy",
            Self::UserConfig(_) => "user_config",
            Self::SharedConsent(_) => "shared_consent",
            Self::AuthorDefault => "author_default",
        }
    }
}

impl fmt::Display for ConsentSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::DoNotTrack => f.write_str("environment variable DO_NOT_TRACK"),
            Self::ToolEnv(var) => write!(f, "environment variable {var}"),
            Self::ProjectPolicy(p) => write!(f, "project policy file {}", p.display()),
            Self::UserConfig(p) => write!(f, "user config file {}", p.display()),
            Self::SharedConsent(p) => write!(f, "shared consent file {}", p.display()),
            Self::AuthorDefault => f.write_str("the tool's default"),
        }
    }
}

/// How the tool asks the user, when no layer above the author's default decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Asking {
    /// Never ask or tell: the author's default applies as is. The default.
    #[default]
    Silent,
    /// Opt-in: ask once on an interactive terminal, showing what is
    /// collected, what never is, and a sample payload. Nothing is recorded before the answer,
    /// which is kept in the user config. Without a terminal, or in CI, the state is `off`.
    OptIn,
    /// Opt-out with a notice: the state is `on`; the first run on an interactive
    /// terminal prints a notice on stderr, once. Never printed in CI, without a terminal, or
    /// after the user made a choice.
    Notice,
}

/// The outcome of resolution.
#[derive(Debug, Clone)]
pub(crate) struct Resolution {
    pub(crate) consent: Consent,
    pub(crate) source: ConsentSource,
    pub(crate) note: Option<String>,
}

/// What resolution reads, injectable for tests.
pub(crate) struct Inputs<'a> {
    pub(crate) env: &'a dyn Fn(&str) -> Option<String>,
    pub(crate) tool: &'a str,
    pub(crate) cwd: Option<PathBuf>,
    pub(crate) config_dir: Option<PathBuf>,
    pub(crate) default: Consent,
}

/// The environment variable prefix of a tool: its name upper-cased, every character outside
/// `[A-Z0-9]` replaced by `_` (`my-cli` → `MY_CLI`).
pub(crate) fn env_prefix(tool: &str) -> String {
    tool.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// The user's per-tool config file: `<config dir>/optel/<tool>.toml`.
pub(crate) fn user_config_path(config_dir: &Path, tool: &str) -> PathBuf {
    config_dir.join("optel").join(format!("{tool}.toml"))
}

/// The consent file shared by all optel tools: `<config dir>/optel/consent.toml`.
pub(crate) fn shared_consent_path(config_dir: &Path) -> PathBuf {
    config_dir.join("optel").join("consent.toml")
}

/// The platform config directory (on Linux `$XDG_CONFIG_HOME` or `~/.config`).
pub(crate) fn platform_config_dir() -> Option<PathBuf> {
    directories::BaseDirs::new().map(|b| b.config_dir().to_owned())
}

/// Resolves consent, highest layer first.
pub(crate) fn resolve(inputs: &Inputs<'_>) -> Resolution {
    let env = inputs.env;
    if env("DO_NOT_TRACK").is_some_and(|v| is_truthy(&v)) {
        return decided(Consent::Off, ConsentSource::DoNotTrack);
    }
    let tool_var = format!("{}_TELEMETRY", env_prefix(inputs.tool));
    if let Some(value) = env(&tool_var) {
        let source = ConsentSource::ToolEnv(tool_var.clone());
        return match Consent::parse(&value) {
            Some(consent) => decided(consent, source),
            None => Resolution {
                consent: Consent::Off,
                source,
                note: Some(format!(
                    "{tool_var}={value:?} is not understood, so telemetry is off: use off, local or on"
                )),
            },
        };
    }
    if let Some(cwd) = &inputs.cwd
        && let Some(path) = find_project_policy(cwd)
        && let Some(r) = from_file(&path, inputs.tool, true, ConsentSource::ProjectPolicy)
    {
        return r;
    }
    if let Some(config) = &inputs.config_dir {
        let user = user_config_path(config, inputs.tool);
        if let Some(r) = from_file(&user, inputs.tool, false, ConsentSource::UserConfig) {
            return r;
        }
        let shared = shared_consent_path(config);
        if let Some(r) = from_file(&shared, inputs.tool, true, ConsentSource::SharedConsent) {
            return r;
        }
    }
    decided(inputs.default, ConsentSource::AuthorDefault)
}

fn decided(consent: Consent, source: ConsentSource) -> Resolution {
    Resolution {
        consent,
        source,
        note: None,
    }
}

/// The nearest [`PROJECT_POLICY_FILE`] in `cwd` or its parents.
pub(crate) fn find_project_policy(cwd: &Path) -> Option<PathBuf> {
    cwd.ancestors()
        .take(MAX_WALK_UP)
        .map(|dir| dir.join(PROJECT_POLICY_FILE))
        // Found whatever it is (a link, a FIFO): reading it then refuses it, and telemetry is
        // off with a note, rather than the layer being silently skipped.
        .find(|p| fs::symlink_metadata(p).is_ok())
}

/// The shape of every consent file. Unknown keys are ignored so that tools can keep their own
/// settings next to ours.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ConsentFile {
    /// The state for every tool (or, in the per-tool file, this tool).
    pub(crate) telemetry: Option<String>,
    /// Per-tool overrides (project policy and shared consent file only).
    #[serde(default)]
    pub(crate) tools: std::collections::BTreeMap<String, String>,
    /// Whether the notice was printed (per-tool file only).
    #[serde(default)]
    pub(crate) notice_shown: bool,
    /// The data categories of the catalog (attributes and measurements,
    /// `Catalog::data_categories`) the user has been shown by the opt-in question, the notice
    /// or `telemetry enable` (per-tool file only; docs/adr/010-event-catalog.md).
    #[serde(default)]
    pub(crate) seen_categories: Vec<String>,
    /// Where delivery sends, chosen by the user (per-tool file only; the tool may forbid it):
    /// `optel`, `otlp_http`, `stdout` or `file`.
    pub(crate) exporter: Option<String>,
    /// Days the local ledger keeps records, chosen by the user (per-tool file only).
    pub(crate) local_retention_days: Option<u32>,
    /// `[upload]`: the endpoint and compression, chosen by the user (per-tool file only; the
    /// tool may forbid it).
    #[serde(default)]
    pub(crate) upload: Upload,
}

/// The `[upload]` table of the per-tool file.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Upload {
    /// The collector's base URL or OTLP endpoint, replacing the tool's.
    pub(crate) endpoint: Option<String>,
    /// `gzip` (the default) or `none`.
    pub(crate) compression: Option<String>,
}

/// Reads a consent file: `Ok(None)` when it does not exist.
pub(crate) fn read_file(path: &Path) -> Result<Option<ConsentFile>, String> {
    // Bounded while reading, never by the reported size (0 for `/dev/zero` or `/proc`), and
    // neither a link (a policy linked to `/proc/kmsg`) nor a FIFO (which would block) is read.
    let bytes = match fsutil::read_private(path, MAX_CONSENT_FILE_BYTES) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.kind() == io::ErrorKind::InvalidData => {
            return Err(format!("{e}: shorten it"));
        }
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let text =
        String::from_utf8(bytes).map_err(|_| format!("{} is not UTF-8 text", path.display()))?;
    toml::from_str(&text)
        .map(Some)
        .map_err(|e| format!("{} is not valid TOML: {e}", path.display()))
}

/// The decision of one file layer, if it decides.
fn from_file(
    path: &Path,
    tool: &str,
    with_tools_table: bool,
    source: fn(PathBuf) -> ConsentSource,
) -> Option<Resolution> {
    let file = match read_file(path) {
        Ok(Some(f)) => f,
        Ok(None) => return None,
        Err(note) => {
            return Some(Resolution {
                consent: Consent::Off,
                source: source(path.to_owned()),
                note: Some(format!("{note}; telemetry is off until it is fixed")),
            });
        }
    };
    let value = if with_tools_table {
        file.tools.get(tool).or(file.telemetry.as_ref())
    } else {
        file.telemetry.as_ref()
    }?;
    Some(match Consent::parse(value) {
        Some(consent) => decided(consent, source(path.to_owned())),
        None => Resolution {
            consent: Consent::Off,
            source: source(path.to_owned()),
            note: Some(format!(
                "{}: telemetry = {value:?} is not understood, so telemetry is off: use off, local or on",
                path.display()
            )),
        },
    })
}

/// Writes the user's choice to the per-tool config file, with `notice_shown` and the data
/// categories the user has seen: `seen`, or (when `None`) those the file already lists. Every
/// other line of the file (the user's `exporter`, `local_retention_days`, `[upload]`, comments,
/// a tool's own keys) is kept as it was; only the top-level `telemetry`, `notice_shown` and
/// `seen_categories` keys are replaced.
///
/// # Errors
/// When the directory or the file cannot be written.
pub(crate) fn write_user_choice(
    path: &Path,
    consent: Option<Consent>,
    notice_shown: bool,
    seen: Option<&std::collections::BTreeSet<String>>,
) -> io::Result<()> {
    let old = fsutil::read_private(path, MAX_CONSENT_FILE_BYTES)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .unwrap_or_default();
    let is_key = |line: &str, key: &str| {
        line.trim_start()
            .strip_prefix(key)
            .is_some_and(|rest| rest.trim_start().starts_with('='))
    };
    // Top-level keys must come before the first table header. A value may span lines (an
    // array): its lines go with its key, kept or replaced together.
    let (mut top, mut tables) = (Vec::new(), Vec::new());
    let (mut replaced, mut depth) = (false, 0i64);
    for line in old.lines() {
        if depth <= 0 {
            if !tables.is_empty() || line.trim_start().starts_with('[') {
                tables.push(line);
                continue;
            }
            replaced = WRITTEN_KEYS.iter().any(|key| is_key(line, key))
                || line.trim() == SEEN_CATEGORIES_COMMENT;
        }
        depth += bracket_depth(line);
        if !replaced {
            top.push(line);
        }
    }
    while top.last().is_some_and(|l| l.trim().is_empty()) {
        top.pop();
    }
    let mut text = if top.is_empty() {
        String::from("# optel telemetry settings of this tool (see `<tool> telemetry status`).\n")
    } else {
        top.join("\n") + "\n"
    };
    if let Some(consent) = consent {
        text.push_str(&format!("telemetry = \"{consent}\"\n"));
    }
    if notice_shown {
        text.push_str("notice_shown = true\n");
    }
    let kept: Vec<String> = match seen {
        Some(seen) => seen.iter().cloned().collect(),
        None => read_file(path)
            .ok()
            .flatten()
            .map(|f| f.seen_categories)
            .unwrap_or_default(),
    };
    if !kept.is_empty() {
        text.push_str(SEEN_CATEGORIES_COMMENT);
        text.push('\n');
        text.push_str("seen_categories = [\n");
        // Categories are built from wire names ([A-Za-z0-9_.:-]): no escaping is needed, and
        // anything else is left out rather than written as broken TOML.
        for c in kept.iter().filter(|c| {
            c.chars()
                .all(|ch| ch.is_ascii_alphanumeric() || "_.:-".contains(ch))
        }) {
            text.push_str(&format!("  \"{c}\",\n"));
        }
        text.push_str("]\n");
    }
    if !tables.is_empty() {
        text.push('\n');
        text.push_str(&tables.join("\n"));
        text.push('\n');
    }
    if let Some(dir) = path.parent() {
        fsutil::create_private_dir(dir)?;
    }
    fsutil::write_private_atomic(path, text.as_bytes())
}

/// Whether an environment layer decides consent for `tool` (it cannot change under a running
/// process, so no file needs watching).
pub(crate) fn env_decides(env: &dyn Fn(&str) -> Option<String>, tool: &str) -> bool {
    env("DO_NOT_TRACK").is_some_and(|v| is_truthy(&v))
        || env(&format!("{}_TELEMETRY", env_prefix(tool))).is_some()
}

/// The consent files a running process watches (the project policy wherever it may appear
/// between the working directory and the root, the user's per-tool file and the shared
/// file): [`changed`](Self::changed) compares their modification time, size and inode with
/// the last look, with one `stat` per path and no read, so a check every few seconds costs
/// next to nothing (BENCHMARKS.md, "consent re-check"). Creating it touches no file: the first
/// call to `changed` takes the first look and says `true`, so the caller resolves consent
/// once then, and only on a change after that.
#[derive(Debug)]
pub(crate) struct Watch {
    files: Vec<(PathBuf, Option<Stamp>)>,
    looked: bool,
}

type Stamp = (std::time::SystemTime, u64, u64);

impl Watch {
    /// Watches the files consent resolution reads for `tool`, from `cwd` and `config_dir`.
    pub(crate) fn new(tool: &str, cwd: Option<&Path>, config_dir: Option<&Path>) -> Self {
        let mut paths: Vec<PathBuf> = cwd
            .into_iter()
            .flat_map(|cwd| cwd.ancestors().take(MAX_WALK_UP))
            .map(|dir| dir.join(PROJECT_POLICY_FILE))
            .collect();
        if let Some(config) = config_dir {
            paths.push(user_config_path(config, tool));
            paths.push(shared_consent_path(config));
        }
        Self {
            files: paths.into_iter().map(|p| (p, None)).collect(),
            looked: false,
        }
    }

    /// Whether a watched file appeared, vanished or changed since the last call; `true` on the
    /// first call.
    pub(crate) fn changed(&mut self) -> bool {
        let mut changed = !self.looked;
        self.looked = true;
        for (path, last) in &mut self.files {
            let now = stamp(path);
            if now != *last {
                *last = now;
                changed = true;
            }
        }
        changed
    }
}

fn stamp(path: &Path) -> Option<Stamp> {
    let meta = fs::symlink_metadata(path).ok()?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&meta);
    #[cfg(not(unix))]
    let inode = 0;
    Some((meta.modified().ok()?, meta.len(), inode))
}

/// The top-level keys of the per-tool file that [`write_user_choice`] writes itself.
/// The comment written above `seen_categories`, replaced with it.
const SEEN_CATEGORIES_COMMENT: &str =
    "# Data categories you have been shown (`<tool> telemetry preview`).";

const WRITTEN_KEYS: [&str; 3] = ["telemetry", "notice_shown", "seen_categories"];

/// How many brackets a TOML line opens minus how many it closes, outside strings and
/// comments.
fn bracket_depth(line: &str) -> i64 {
    let (mut depth, mut quote, mut escaped) = (0, None, false);
    for c in line.chars() {
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' && q == '"' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                }
            }
            None => match c {
                '"' | '\'' => quote = Some(c),
                '#' => break,
                '[' => depth += 1,
                ']' => depth -= 1,
                _ => {}
            },
        }
    }
    depth
}

/// `DO_NOT_TRACK` counts when set to anything but an empty string, `0` or `false`.
fn is_truthy(v: &str) -> bool {
    let v = v.trim();
    !(v.is_empty() || v == "0" || v.eq_ignore_ascii_case("false"))
}

/// Whether the process runs in CI, by the maintained `ci_info` detection of CI vendors.
pub(crate) fn ci_vendor() -> Option<String> {
    let info = ci_info::get();
    if !info.ci {
        return None;
    }
    Some(slug(info.name.as_deref().unwrap_or("unknown")))
}

/// `GitHub Actions` → `github-actions`: the pseudonym charset `[a-z0-9:_-]`.
pub(crate) fn slug(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    let trimmed = out.trim_end_matches('-');
    let mut s = trimmed.to_owned();
    s.truncate(40);
    if s.is_empty() { "unknown".into() } else { s }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn prefix() {
        assert_eq!(env_prefix("my-cli.v2"), "MY_CLI_V2");
    }

    #[test]
    fn slugs() {
        assert_eq!(slug("GitHub Actions"), "github-actions");
        assert_eq!(slug("Travis CI"), "travis-ci");
        assert_eq!(slug("  "), "unknown");
    }

    /// A file of the fixtures both SDKs' tests read (`sdk/fixtures`, README there).
    pub(crate) fn shared_fixture(name: &str) -> serde_json::Value {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../sdk/fixtures")
            .join(name);
        let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        serde_json::from_str(&text).unwrap()
    }

    /// Every case of `sdk/fixtures/consent-precedence.json`, which the JavaScript SDK's tests
    /// read too: each pair of layers, broken files failing closed, value spellings.
    #[test]
    fn precedence_table() {
        let table = shared_fixture("consent-precedence.json");
        let cases = table["cases"].as_array().unwrap();
        assert!(cases.len() >= 30, "the table covers every pair of layers");
        for case in cases {
            let home = tempfile::tempdir().unwrap();
            let config = home.path().join("config");
            let project = home.path().join("project");
            let cwd = project.join("src").join("deep");
            fs::create_dir_all(&cwd).unwrap();
            let file = |key: &str, path: &Path| {
                if let Some(text) = case["files"][key].as_str() {
                    fs::create_dir_all(path.parent().unwrap()).unwrap();
                    fs::write(path, text).unwrap();
                }
            };
            file("project", &project.join(PROJECT_POLICY_FILE));
            file("user", &user_config_path(&config, "acme"));
            file("shared", &shared_consent_path(&config));
            let vars: Vec<(String, String)> = case["env"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                .collect();
            let env = move |k: &str| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
            let r = resolve(&Inputs {
                env: &env,
                tool: "acme",
                cwd: Some(cwd.clone()),
                config_dir: Some(config.clone()),
                default: Consent::parse(case["default"].as_str().unwrap()).unwrap(),
            });
            let want = &case["expect"];
            assert_eq!(
                Some(r.consent),
                want["consent"].as_str().and_then(Consent::parse),
                "{case}"
            );
            assert_eq!(r.source.layer(), want["layer"].as_str().unwrap(), "{case}");
            let deciding = match r.source.layer() {
                "project_policy" => Some(project.join(PROJECT_POLICY_FILE)),
                "user_config" => Some(user_config_path(&config, "acme")),
                "shared_consent" => Some(shared_consent_path(&config)),
                _ => None,
            };
            assert_eq!(r.source.path(), deciding.as_deref(), "{case}");
            if let Some(part) = want["note_contains"].as_str() {
                let note = r.note.as_deref().unwrap_or("");
                assert!(note.contains(part), "{case}: note {note:?}");
            }
        }
    }

    /// The CI slugs and variable prefixes of `sdk/fixtures/pseudonym-vectors.json`.
    #[test]
    fn shared_slugs_and_prefixes() {
        let v = shared_fixture("pseudonym-vectors.json");
        for c in v["ci_slugs"].as_array().unwrap() {
            assert_eq!(
                slug(c["name"].as_str().unwrap()),
                c["slug"].as_str().unwrap(),
                "{c}"
            );
        }
        for c in v["env_prefixes"].as_array().unwrap() {
            assert_eq!(
                env_prefix(c["tool"].as_str().unwrap()),
                c["prefix"].as_str().unwrap(),
                "{c}"
            );
        }
    }

    #[test]
    fn shared_file_global_default_applies_without_override() {
        let home = tempfile::tempdir().unwrap();
        fs::create_dir_all(home.path().join("optel")).unwrap();
        fs::write(
            shared_consent_path(home.path()),
            "telemetry = \"local\"\n[tools]\nother = \"off\"\n",
        )
        .unwrap();
        let env = |_: &str| None;
        let r = resolve(&Inputs {
            env: &env,
            tool: "acme",
            cwd: None,
            config_dir: Some(home.path().to_owned()),
            default: Consent::Off,
        });
        assert_eq!(r.consent, Consent::Local);
        assert_eq!(r.source.layer(), "shared_consent");
    }

    #[test]
    fn broken_files_fail_closed_with_a_note() {
        let home = tempfile::tempdir().unwrap();
        fs::create_dir_all(home.path().join("optel")).unwrap();
        fs::write(user_config_path(home.path(), "acme"), "telemetry = [").unwrap();
        let env = |_: &str| None;
        let r = resolve(&Inputs {
            env: &env,
            tool: "acme",
            cwd: None,
            config_dir: Some(home.path().to_owned()),
            default: Consent::On,
        });
        assert_eq!(r.consent, Consent::Off);
        assert!(r.note.unwrap().contains("not valid TOML"));
        fs::write(
            user_config_path(home.path(), "acme"),
            "telemetry = \"maybe\"",
        )
        .unwrap();
        let r = resolve(&Inputs {
            env: &env,
            tool: "acme",
            cwd: None,
            config_dir: Some(home.path().to_owned()),
            default: Consent::On,
        });
        assert_eq!(r.consent, Consent::Off);
        assert!(r.note.unwrap().contains("\"maybe\""));
    }

    #[test]
    fn a_choice_keeps_the_users_other_settings() {
        let home = tempfile::tempdir().unwrap();
        let path = user_config_path(home.path(), "acme");
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(
            &path,
            "# mine\ntelemetry = \"on\"\nexporter = \"stdout\"\nlocal_retention_days = 3\nmine = [\n  \"[x]\",\n  [1],\n]\n\n[upload]\nendpoint = \"http://127.0.0.1:9\"\ncompression = \"none\"\n",
        )
        .unwrap();
        write_user_choice(&path, Some(Consent::Off), true, None).unwrap();
        let f = read_file(&path).unwrap().unwrap();
        assert_eq!(f.telemetry.as_deref(), Some("off"));
        assert!(f.notice_shown);
        assert_eq!(f.exporter.as_deref(), Some("stdout"));
        assert_eq!(f.local_retention_days, Some(3));
        assert_eq!(f.upload.endpoint.as_deref(), Some("http://127.0.0.1:9"));
        assert_eq!(f.upload.compression.as_deref(), Some("none"));
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# mine\n"), "{text}");
        assert!(text.contains("mine = [\n  \"[x]\",\n  [1],\n]\n"), "{text}");
        assert_eq!(text.matches("telemetry =").count(), 1, "{text}");
    }

    /// Every case of `sdk/fixtures/user-choice-rewrite.json`, which the JavaScript SDK's tests
    /// read too: the exact text `write_user_choice(.., seen = None)` makes of a per-tool file.
    /// (Regression: the JavaScript SDK rewrote the file shared with a Rust tool of the same name
    /// from scratch, dropping the user's `exporter`, `[upload]` and `seen_categories`.)
    #[test]
    fn user_choice_rewrite_table() {
        let table = shared_fixture("user-choice-rewrite.json");
        let cases = table["cases"].as_array().unwrap();
        assert!(cases.len() >= 10, "{} cases", cases.len());
        for case in cases {
            let name = case["name"].as_str().unwrap();
            let home = tempfile::tempdir().unwrap();
            let path = user_config_path(home.path(), "acme");
            // What the SDK reads of the file before (no file reads as empty); `None`: unreadable.
            let before = match case["before"].as_str() {
                None => Some(ConsentFile::default()),
                Some(text) => {
                    fs::create_dir_all(path.parent().unwrap()).unwrap();
                    fs::write(&path, text).unwrap();
                    read_file(&path).ok().flatten()
                }
            };
            let consent = case["consent"].as_str().map(|c| Consent::parse(c).unwrap());
            let notice_shown = case["notice_shown"].as_bool().unwrap();
            write_user_choice(&path, consent, notice_shown, None).unwrap();
            let text = fs::read_to_string(&path).unwrap();
            assert_eq!(text, case["after"].as_str().unwrap(), "{name}");
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let mode = fs::metadata(&path).unwrap().permissions().mode();
                assert_eq!(mode & 0o777, 0o600, "{name}");
            }
            // A file the SDK could read stays readable, with the choice and the user's settings.
            if let Some(before) = before {
                let after = read_file(&path).unwrap().unwrap();
                assert_eq!(
                    after.telemetry.as_deref(),
                    consent.map(Consent::as_str),
                    "{name}"
                );
                assert_eq!(after.notice_shown, notice_shown, "{name}");
                let charset = |c: &&String| {
                    c.chars()
                        .all(|ch| ch.is_ascii_alphanumeric() || "_.:-".contains(ch))
                };
                let seen: Vec<&String> = before.seen_categories.iter().filter(charset).collect();
                assert_eq!(
                    after.seen_categories.iter().collect::<Vec<_>>(),
                    seen,
                    "{name}"
                );
                assert_eq!(after.exporter, before.exporter, "{name}");
                assert_eq!(
                    after.local_retention_days, before.local_retention_days,
                    "{name}"
                );
                assert_eq!(after.upload.endpoint, before.upload.endpoint, "{name}");
                assert_eq!(
                    after.upload.compression, before.upload.compression,
                    "{name}"
                );
                assert_eq!(after.tools, before.tools, "{name}");
            }
        }
    }

    #[test]
    fn user_choice_round_trips() {
        let home = tempfile::tempdir().unwrap();
        let path = user_config_path(home.path(), "acme");
        let seen = ["command:build:attribute:profile".to_owned()].into();
        write_user_choice(&path, Some(Consent::Local), true, Some(&seen)).unwrap();
        let f = read_file(&path).unwrap().unwrap();
        assert_eq!(f.telemetry.as_deref(), Some("local"));
        assert!(f.notice_shown);
        assert_eq!(f.seen_categories, ["command:build:attribute:profile"]);
        // `None` keeps what the file lists.
        write_user_choice(&path, Some(Consent::On), false, None).unwrap();
        let f = read_file(&path).unwrap().unwrap();
        assert_eq!(f.seen_categories, ["command:build:attribute:profile"]);
        // Rewritten in place, never twice (the choice keeps the file's other lines).
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text.matches("seen_categories =").count(), 1, "{text}");
        assert_eq!(text.matches(SEEN_CATEGORIES_COMMENT).count(), 1, "{text}");
    }
}
