//! The debug bundle of `<tool> telemetry bundle` (feature `clap`): one JSON file a user can
//! read and then attach to a bug report.
//!
//! It holds exactly five entries: `versions`, `status` (the text `telemetry status` prints),
//! `consent_layers` (each layer, whether it is set and what it says), `last_events` (the last
//! recorded batches, trimmed to the last N events, as they would be sent: already redacted and
//! pseudonymous) and `delivery` (queue, drop and store counters, circuit breaker, last error).
//! Nothing else: not the install secret, not the store key, not the ingest key, no
//! environment variable but the consent ones; the home directory is written `~`, and an
//! endpoint loses any user name, password and query.
//!
//! One JSON file rather than an archive: a user can read every byte before attaching it, it
//! needs no archive library in the SDK, and issue trackers accept it as is.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::builder::TelemetryBuilder;
use crate::consent::{self, Consent};

/// Events in a bundle by default.
pub(crate) const DEFAULT_BUNDLE_EVENTS: usize = 20;

/// A debug bundle, collected and ready to write.
#[derive(Debug)]
pub(crate) struct Bundle {
    entries: Vec<(&'static str, Value)>,
    home: Option<String>,
}

impl Bundle {
    /// Collects the bundle of the tool configured by `builder`. Reads only; creates nothing
    /// (not even the store key).
    pub(crate) fn collect(
        builder: &TelemetryBuilder,
        env: &dyn Fn(&str) -> Option<String>,
        max_events: usize,
    ) -> Self {
        let status = crate::cli::status(builder, env);
        let data = builder.resolved_data_dir();
        let versions = json!({
            "tool": builder.tool,
            "tool_version": builder.version,
            "optel": env!("CARGO_PKG_VERSION"),
            "wire_schema_versions": optel_wire::SUPPORTED_SCHEMA_VERSIONS,
            "os": std::env::consts::OS,
            "arch": std::env::consts::ARCH,
            "encryption_feature": cfg!(feature = "encryption"),
        });
        let mut status_text = status.to_string();
        if let Some(endpoint) = &status.endpoint {
            status_text = status_text.replace(endpoint.as_str(), &safe_endpoint(endpoint));
        }
        let delivery = data.as_deref().map_or(Value::Null, |data| {
            let q = crate::queue::queue_status(data).unwrap_or_default();
            let store = crate::store::StoreCounters::read(data);
            json!({
                "endpoint": status.endpoint.as_deref().map(safe_endpoint),
                "exporter": status.exporter,
                "pending_events": q.pending_events,
                "pending_bytes": q.pending_bytes,
                "segments": q.segments,
                "dropped_events_total": q.dropped_events_total,
                "dropped_events_unreported": q.dropped_events_unreported,
                "breaker_open_until": q.breaker_open_until.map(crate::debug::rfc3339),
                "consecutive_failures": q.consecutive_failures,
                "requests_today": q.requests_today,
                "daily_request_cap": builder.daily_request_cap,
                "last_error": q.last_error.map(|(at, e)| json!({"at": crate::debug::rfc3339(at), "error": e})),
                "local_store_encrypted": status.store_key_file.is_some(),
                "store": {
                    "tampered": store.tampered,
                    "undecryptable": store.undecryptable,
                    "ledger_full": store.ledger_full,
                    "low_disk": store.low_disk,
                },
            })
        });
        let last_events = data
            .as_deref()
            .map(|data| last_batches(builder, data, max_events))
            .unwrap_or_default();
        Self {
            entries: vec![
                ("versions", versions),
                ("status", Value::String(status_text)),
                ("consent_layers", consent_layers(builder, env)),
                ("last_events", Value::Array(last_events)),
                ("delivery", delivery),
            ],
            home: directories::BaseDirs::new()
                .and_then(|b| b.home_dir().to_str().map(str::to_owned))
                .filter(|h| h.len() > 1),
        }
    }

    /// The bundle as pretty JSON, the home directory written `~`.
    pub(crate) fn to_json(&self) -> String {
        let map: serde_json::Map<String, Value> = self
            .entries
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        let text = serde_json::to_string_pretty(&Value::Object(map)).unwrap_or_default();
        self.without_home(text)
    }

    /// What `--preview` prints: each entry and its size.
    pub(crate) fn preview(&self) -> String {
        let mut out = String::from("the debug bundle would hold:\n");
        for (name, value) in &self.entries {
            let size = self
                .without_home(serde_json::to_string_pretty(value).unwrap_or_default())
                .len();
            let what = match (*name, value) {
                ("last_events", Value::Array(batches)) => {
                    let events: usize = batches
                        .iter()
                        .map(|b| b["events"].as_array().map_or(0, Vec::len))
                        .sum();
                    format!("{events} events as they would be sent")
                }
                ("versions", _) => "tool, optel and schema versions, OS, architecture".into(),
                ("status", _) => "the text of `telemetry status`".into(),
                ("consent_layers", _) => "each consent layer and what it says".into(),
                _ => "queue, drop and store counters, circuit breaker, last error".into(),
            };
            out.push_str(&format!("  {name}: {what} ({size} bytes)\n"));
        }
        out.push_str("and nothing else: no install secret, no key, no home directory path\n");
        out
    }

    fn without_home(&self, text: String) -> String {
        match &self.home {
            // As JSON writes the path, so that the replacement matches escaped text too.
            Some(home) => {
                let quoted = serde_json::to_string(home).unwrap_or_default();
                let escaped = quoted.trim_matches('"');
                text.replace(escaped, "~")
            }
            None => text,
        }
    }
}

/// Where `telemetry bundle [PATH]` writes: PATH, or `<tool>-telemetry-bundle.json` in PATH
/// when it is a directory, or in `cwd` without PATH.
pub(crate) fn target_path(path: Option<&Path>, cwd: &Path, tool: &str) -> PathBuf {
    let name = format!("{tool}-telemetry-bundle.json");
    match path {
        Some(p) if p.is_dir() => p.join(name),
        Some(p) => p.to_owned(),
        None => cwd.join(name),
    }
}

/// An endpoint without user name, password, query or fragment.
fn safe_endpoint(endpoint: &str) -> String {
    let cut = endpoint.find(['?', '#']).unwrap_or(endpoint.len());
    let url = &endpoint[..cut];
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let host_end = rest.find('/').unwrap_or(rest.len());
            let (authority, path) = rest.split_at(host_end);
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            format!("{scheme}://{host}{path}")
        }
        None => url.to_owned(),
    }
}

/// Each consent layer, highest first: whether it is set and the value it holds.
fn consent_layers(builder: &TelemetryBuilder, env: &dyn Fn(&str) -> Option<String>) -> Value {
    let tool_var = format!("{}_TELEMETRY", consent::env_prefix(&builder.tool));
    let file_layer = |layer: &str, path: Option<PathBuf>| {
        let file = path.as_deref().map(|p| (p, consent::read_file(p)));
        json!({
            "layer": layer,
            "file": path.as_ref().map(|p| p.display().to_string()),
            "present": file.as_ref().is_some_and(|(_, r)| matches!(r, Ok(Some(_)))),
            "error": file.as_ref().and_then(|(_, r)| r.as_ref().err().cloned()),
            "telemetry": file.as_ref().and_then(|(_, r)| match r {
                Ok(Some(f)) => f.tools.get(&builder.tool).or(f.telemetry.as_ref()).cloned(),
                _ => None,
            }),
        })
    };
    let cwd = std::env::current_dir().ok();
    let project = cwd.as_deref().and_then(consent::find_project_policy);
    let config = builder.config_path();
    let resolved = builder.resolve(env);
    json!({
        "effective": resolved.consent.as_str(),
        "decided_by": resolved.source.layer(),
        "layers": [
            {"layer": "do_not_track", "value": env("DO_NOT_TRACK")},
            {"layer": "tool_env", "variable": tool_var, "value": env(&tool_var)},
            file_layer("project_policy", project),
            file_layer("user_config", config.as_deref().map(|c| consent::user_config_path(c, &builder.tool))),
            file_layer("shared_consent", config.as_deref().map(consent::shared_consent_path)),
            {"layer": "author_default", "value": match builder.asking {
                consent::Asking::Silent => builder.default_consent,
                consent::Asking::OptIn => Consent::Off,
                consent::Asking::Notice => Consent::On,
            }.as_str()},
        ],
    })
}

/// The last recorded batches (the ledger, else the queue), trimmed so that together they hold
/// at most `max_events` events, the newest.
fn last_batches(builder: &TelemetryBuilder, data: &Path, max_events: usize) -> Vec<Value> {
    let sealer = builder.sealer(data, false).ok().flatten();
    let mut batches: Vec<optel_wire::Batch> = builder
        .ledger(data)
        .sealed(sealer)
        .read_lines()
        .unwrap_or_default()
        .iter()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    if batches.is_empty() {
        batches = crate::cli::queued(builder, data).unwrap_or_default();
    }
    let mut left = max_events;
    let mut out = Vec::new();
    for mut batch in batches.into_iter().rev() {
        if left == 0 {
            break;
        }
        let n = batch.events.len();
        if n > left {
            batch.events.drain(..n - left);
        }
        left -= batch.events.len();
        out.push(serde_json::to_value(&batch).unwrap_or(Value::Null));
    }
    out.reverse();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_home_directory_is_written_as_a_tilde() {
        let bundle = Bundle {
            entries: vec![(
                "status",
                Value::String("data directory: /home/alice/.local/share/optel/acme".into()),
            )],
            home: Some("/home/alice".into()),
        };
        let json = bundle.to_json();
        assert!(json.contains("~/.local/share/optel/acme"), "{json}");
        assert!(!json.contains("alice"));
    }

    #[test]
    fn endpoints_lose_credentials_and_queries() {
        assert_eq!(
            safe_endpoint("https://user:pw@t.example:8443/v1/events?key=abc#x"),
            "https://t.example:8443/v1/events"
        );
        assert_eq!(
            safe_endpoint("http://127.0.0.1:4318"),
            "http://127.0.0.1:4318"
        );
    }

    #[test]
    fn the_target_is_the_path_or_a_name_in_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            target_path(Some(dir.path()), Path::new("/x"), "acme"),
            dir.path().join("acme-telemetry-bundle.json")
        );
        assert_eq!(
            target_path(None, Path::new("/x"), "acme"),
            Path::new("/x/acme-telemetry-bundle.json")
        );
        let file = dir.path().join("b.json");
        assert_eq!(target_path(Some(&file), Path::new("/x"), "acme"), file);
    }
}
