//! Alert hooks: the collector posts a signed JSON webhook when a project's release health
//! changes (`docs/adr/013-release-health-and-alerts.md`).
//!
//! - **What fires**: [`AlertKind`]: an error code new in the latest version, a command's
//!   failure rate or p95 duration up beyond the noise ([`crate::query::release_health`]), and
//!   the ingest of a project stopping.
//! - **When**: [`run`] evaluates every [`AlertSettings::every`] (default 60 s), and only the
//!   projects that have hooks and, for release health, received events since the last
//!   evaluation: one release-health query (rollups only) per such project and round.
//! - **Once**: a condition fires once per (project, kind, version, command, detail), recorded
//!   in the database before delivery (`alert_fired`); "ingest stopped" is cleared when events
//!   arrive again, so it can fire again later.
//! - **Delivery**: `POST` of an [`AlertPayload`] with `content-type: application/json` and
//!   the [`SIGNATURE_HEADER`] `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">` keyed
//!   with the hook's secret; retried on a network error, 408, 429 or 5xx with doubling delays
//!   ([`AlertSettings::attempts`], [`AlertSettings::first_retry`]); redirects are not followed.
//!   A receiver checks the signature with [`verify`] (or its own HMAC) and refuses a `t`
//!   older than [`SIGNATURE_TOLERANCE_S`] (replays).
//! - **Addresses**: `http` and `https` URLs only; private and loopback addresses are allowed
//!   (the collector is self-hosted and receivers often run beside it). Only whoever can write
//!   the collector's database adds hooks; the collector sends nothing but the payload and reads
//!   nothing of the answer but its status, so a hook cannot read other services through it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};

use crate::query::{Change, ReleaseHealth, TimeRange};
use crate::rollup::DAY_MS;
use crate::storage::{Project, Store};

/// Header carrying the signature of a webhook body.
pub const SIGNATURE_HEADER: &str = "optel-signature";
/// Oldest signature timestamp a receiver should accept, seconds (5 minutes).
pub const SIGNATURE_TOLERANCE_S: i64 = 300;
/// Prefix of a hook's secret.
pub const SECRET_PREFIX: &str = "optel_whsec_";
/// Longest hook URL, bytes.
pub const MAX_URL_BYTES: usize = 2_048;

/// What a hook is posted for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AlertKind {
    /// A (command, error code) with failures in the latest version and none in the previous.
    NewErrorCode,
    /// A command's failure rate up beyond the noise from the previous version.
    FailureRate,
    /// A command's p95 duration up beyond the noise from the previous version.
    P95Duration,
    /// A project that was receiving events got none for [`AlertSettings::ingest_stopped_after`].
    IngestStopped,
}

impl AlertKind {
    /// Every kind.
    pub const ALL: [Self; 4] = [
        Self::NewErrorCode,
        Self::FailureRate,
        Self::P95Duration,
        Self::IngestStopped,
    ];

    /// `new-error-code`, `failure-rate`, `p95-duration` or `ingest-stopped`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NewErrorCode => "new-error-code",
            Self::FailureRate => "failure-rate",
            Self::P95Duration => "p95-duration",
            Self::IngestStopped => "ingest-stopped",
        }
    }

    /// The kind named `s` ([`AlertKind::as_str`]).
    ///
    /// # Errors
    /// A message naming the kinds there are.
    pub fn parse(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s.trim())
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|k| k.as_str()).collect();
                format!("alert kind {s:?} is not known: use {}", names.join(", "))
            })
    }

    /// Kinds of a comma-separated list (`new-error-code,failure-rate`), without repeats.
    ///
    /// # Errors
    /// An unknown or empty kind.
    pub fn parse_list(s: &str) -> Result<Vec<Self>, String> {
        let mut kinds: Vec<Self> = s.split(',').map(Self::parse).collect::<Result<_, _>>()?;
        kinds.sort_unstable();
        kinds.dedup();
        Ok(kinds)
    }
}

/// A webhook of a project, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AlertHook {
    /// Id (for `optel alerts remove`).
    pub id: i64,
    /// Project id.
    pub project_id: i64,
    /// Project name.
    pub project: String,
    /// Where the payload is posted.
    pub url: String,
    /// HMAC key of the signature; never printed after creation.
    #[serde(skip)]
    pub secret: String,
    /// What the hook is posted for.
    pub kinds: Vec<AlertKind>,
    /// Whether each alert is also written to the collector's log.
    pub log: bool,
    /// Creation time, ms since the Unix epoch.
    pub created_ms: i64,
}

/// What identifies a condition for deduplication: it fires once per project and key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AlertKey {
    /// Kind.
    pub kind: AlertKind,
    /// Tool version (empty for ingest stopped).
    pub version: String,
    /// Command (empty for ingest stopped).
    pub command: String,
    /// Error code for a new error code, else empty.
    pub detail: String,
}

/// The JSON body of a webhook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertPayload {
    /// Always `optel.alert`.
    #[serde(rename = "type")]
    pub type_: String,
    /// What happened.
    pub kind: AlertKind,
    /// Project name.
    pub project: String,
    /// Tool version the alert is about (empty for ingest stopped).
    pub version: String,
    /// Version it was compared with.
    pub previous: Option<String>,
    /// Command (empty for ingest stopped).
    pub command: String,
    /// The new error code (new-error-code only).
    pub error_code: Option<String>,
    /// A sentence for people.
    pub message: String,
    /// When the condition was found.
    pub fired_at: optel_wire::Timestamp,
    /// True for `optel alerts test`.
    #[serde(default)]
    pub test: bool,
}

impl AlertPayload {
    fn key(&self) -> AlertKey {
        AlertKey {
            kind: self.kind,
            version: self.version.clone(),
            command: self.command.clone(),
            detail: self.error_code.clone().unwrap_or_default(),
        }
    }
}

/// A new hook secret: [`SECRET_PREFIX`] and 32 hex digits (128 random bits).
///
/// # Errors
/// The OS has no randomness to give.
pub fn generate_secret() -> std::io::Result<String> {
    crate::keys::generate_key(SECRET_PREFIX)
}

/// Checks a hook URL: `http://` or `https://`, a host, at most [`MAX_URL_BYTES`], no spaces,
/// control characters or credentials.
///
/// # Errors
/// A message naming what is wrong.
pub fn check_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| format!("hook url {url:?} is not usable: use http:// or https://"))?;
    if url.len() > MAX_URL_BYTES {
        return Err(format!(
            "hook url is {} bytes long: at most {MAX_URL_BYTES}",
            url.len()
        ));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "hook url {url:?} contains spaces or control characters"
        ));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        return Err(format!(
            "hook url {url:?} carries credentials: put them in the receiver's own URL path or \
             rely on the signature"
        ));
    }
    let host = authority
        .rsplit_once(':')
        .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()) && !authority.ends_with(']'))
        .map_or(authority, |(h, _)| h);
    if host.is_empty() {
        return Err(format!("hook url {url:?} has no host"));
    }
    Ok(())
}

fn mac(secret: &str, t: i64, body: &[u8]) -> Option<Hmac<sha2::Sha256>> {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).ok()?;
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Some(mac)
}

/// The [`SIGNATURE_HEADER`] value of `body` sent at `t` (unix seconds):
/// `t=<t>,v1=<hex HMAC-SHA256 of "<t>.<body>" keyed with secret>`.
pub fn sign(secret: &str, t: i64, body: &[u8]) -> String {
    let hex = mac(secret, t, body)
        .map(|m| hex::encode(m.finalize().into_bytes()))
        .unwrap_or_default();
    format!("t={t},v1={hex}")
}

/// Whether `header` is a valid signature of `body` with `secret`, made at most `tolerance_s`
/// seconds before (or after) `now_s`. Compares in constant time.
pub fn verify(secret: &str, header: &str, body: &[u8], now_s: i64, tolerance_s: i64) -> bool {
    let mut t = None;
    let mut sigs = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("v1", v)) => sigs.extend(hex::decode(v).ok()),
            _ => {}
        }
    }
    let Some(t) = t else { return false };
    if (now_s - t).abs() > tolerance_s {
        return false;
    }
    sigs.iter()
        .any(|sig| mac(secret, t, body).is_some_and(|m| m.verify_slice(sig).is_ok()))
}

/// The alert conditions a release-health answer shows (new error codes, failure rate and p95
/// up beyond the noise), as payloads fired at `now_ms`.
pub fn conditions(health: &ReleaseHealth, now_ms: i64) -> Vec<AlertPayload> {
    let (Some(version), Some(previous)) = (&health.version, &health.previous) else {
        return Vec::new();
    };
    let at = optel_wire::Timestamp::from_unix_ms(now_ms);
    let payload = |kind, command: &str, error_code: Option<String>, message: String| AlertPayload {
        type_: "optel.alert".into(),
        kind,
        project: health.project.clone(),
        version: version.clone(),
        previous: Some(previous.clone()),
        command: command.to_owned(),
        error_code,
        message,
        fired_at: at,
        test: false,
    };
    let mut out = Vec::new();
    for e in &health.new_error_codes {
        out.push(payload(
            AlertKind::NewErrorCode,
            &e.command,
            Some(e.error_code.clone()),
            format!(
                "{} {version}: `{}` failed {} times with error code {}, never seen in {previous}",
                health.project, e.command, e.count, e.error_code
            ),
        ));
    }
    for c in &health.commands {
        let prev = c.previous.as_ref();
        if c.failure_rate_change == Change::Up {
            out.push(payload(
                AlertKind::FailureRate,
                &c.name,
                None,
                format!(
                    "{} {version}: `{}` fails {:.1} % of the time, {:.1} % in {previous} \
                     (z = {:.1})",
                    health.project,
                    c.name,
                    c.current.failure_rate * 100.0,
                    prev.map_or(0.0, |p| p.failure_rate * 100.0),
                    c.failure_rate_z.unwrap_or(0.0)
                ),
            ));
        }
        if c.p95_change == Change::Up {
            out.push(payload(
                AlertKind::P95Duration,
                &c.name,
                None,
                format!(
                    "{} {version}: `{}` p95 is {} ms, {} ms in {previous}",
                    health.project,
                    c.name,
                    c.current.p95_ms.unwrap_or(0),
                    prev.and_then(|p| p.p95_ms).unwrap_or(0)
                ),
            ));
        }
    }
    out
}

/// When each project last had events stored, in this process, and which had some since the
/// last evaluation. Fed by every ingest path after its commit.
#[derive(Debug, Default)]
pub struct IngestActivity {
    map: Mutex<HashMap<i64, (i64, bool)>>,
}

impl IngestActivity {
    /// Records that events of `project_id` were stored at `now_ms`.
    pub fn record(&self, project_id: i64, now_ms: i64) {
        let mut map = self
            .map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let slot = map.entry(project_id).or_default();
        *slot = (slot.0.max(now_ms), true);
    }

    /// The last time events of `project_id` were stored, and whether any were since the
    /// previous call for it (which resets that flag).
    pub fn take(&self, project_id: i64) -> Option<(i64, bool)> {
        let mut map = self
            .map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.get_mut(&project_id).map(|slot| {
            let out = *slot;
            slot.1 = false;
            out
        })
    }
}

/// Settings of the alert evaluation; reloadable (`optel serve --config`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlertSettings {
    /// Time between evaluations. Default 60 s.
    pub every: Duration,
    /// A project that received events in this process and then none for this long fires
    /// ingest-stopped. Default 1 h.
    pub ingest_stopped_after: Duration,
    /// Range of the release-health evaluation, ending now. Default 30 days.
    pub lookback: Duration,
    /// Delivery attempts per webhook. Default 5.
    pub attempts: u32,
    /// Delay before the first retry, doubled after each. Default 2 s (so 2+4+8+16 s at most).
    pub first_retry: Duration,
    /// Longest wait for one delivery (connect, send, status). Default 10 s.
    pub timeout: Duration,
}

impl Default for AlertSettings {
    fn default() -> Self {
        Self {
            every: Duration::from_secs(60),
            ingest_stopped_after: Duration::from_secs(3_600),
            lookback: Duration::from_secs(30 * 86_400),
            attempts: 5,
            first_retry: Duration::from_secs(2),
            timeout: Duration::from_secs(10),
        }
    }
}

/// Outcome of one webhook delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Hook id.
    pub hook: i64,
    /// Kind delivered.
    pub kind: AlertKind,
    /// Attempts made.
    pub attempts: u32,
    /// The last HTTP status, `None` if no answer came.
    pub status: Option<u16>,
    /// Whether the receiver answered 2xx.
    pub delivered: bool,
}

fn retryable(status: u16) -> bool {
    status == 408 || status == 429 || status >= 500
}

/// Posts `payload` to `hook`, retrying as [`AlertSettings`] says. Never fails: the outcome says
/// what happened (and failures are logged).
pub async fn deliver(
    hook: &AlertHook,
    payload: &AlertPayload,
    settings: &AlertSettings,
) -> Delivery {
    let body = serde_json::to_vec(payload).unwrap_or_default();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(settings.timeout))
        .max_redirects(0)
        .http_status_as_error(false)
        .user_agent(concat!("optel-collector/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    let mut delay = settings.first_retry;
    let mut out = Delivery {
        hook: hook.id,
        kind: payload.kind,
        attempts: 0,
        status: None,
        delivered: false,
    };
    for attempt in 1..=settings.attempts.max(1) {
        out.attempts = attempt;
        let t = crate::now_ms().div_euclid(1_000);
        let signature = sign(&hook.secret, t, &body);
        let (agent, url, body) = (agent.clone(), hook.url.clone(), body.clone());
        let sent = tokio::task::spawn_blocking(move || {
            agent
                .post(&url)
                .header("content-type", "application/json")
                .header(SIGNATURE_HEADER, &signature)
                .send(&body[..])
                .map(|r| r.status().as_u16())
                .map_err(|e| e.to_string())
        })
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
        match sent {
            Ok(status) if (200..300).contains(&status) => {
                out.status = Some(status);
                out.delivered = true;
                return out;
            }
            Ok(status) => {
                out.status = Some(status);
                tracing::warn!(hook = hook.id, status, attempt, "alert webhook refused");
                if !retryable(status) {
                    return out;
                }
            }
            Err(error) => {
                out.status = None;
                tracing::warn!(hook = hook.id, %error, attempt, "alert webhook unreachable");
            }
        }
        if attempt < settings.attempts {
            tokio::time::sleep(delay).await;
            delay = delay.saturating_mul(2);
        }
    }
    tracing::error!(
        hook = hook.id,
        kind = payload.kind.as_str(),
        "alert webhook not delivered"
    );
    out
}

fn ingest_stopped(project: &Project, last_ms: i64, now_ms: i64) -> AlertPayload {
    AlertPayload {
        type_: "optel.alert".into(),
        kind: AlertKind::IngestStopped,
        project: project.name.clone(),
        version: String::new(),
        previous: None,
        command: String::new(),
        error_code: None,
        message: format!(
            "{}: no events stored since {} ({} min)",
            project.name,
            optel_wire::Timestamp::from_unix_ms(last_ms),
            (now_ms - last_ms) / 60_000
        ),
        fired_at: optel_wire::Timestamp::from_unix_ms(now_ms),
        test: false,
    }
}

/// One evaluation round at `now_ms`: finds the conditions of every project with hooks, marks
/// the new ones fired, and delivers them (concurrently, each with its retries). Returns the
/// deliveries made, by hook and kind, once all are done.
///
/// # Errors
/// Database errors (nothing is delivered for the project that failed; the next round retries).
pub async fn evaluate(
    store: &Arc<dyn Store>,
    activity: &IngestActivity,
    settings: &AlertSettings,
    now_ms: i64,
) -> crate::storage::Result<Vec<Delivery>> {
    let s = store.clone();
    let hooks = blocking(move || s.alert_hooks(None)).await?;
    let mut by_project: HashMap<i64, Vec<AlertHook>> = HashMap::new();
    for h in hooks {
        by_project.entry(h.project_id).or_default().push(h);
    }
    // Deliveries run concurrently, so one slow or failing receiver (retries take ~30 s) does
    // not hold back the others.
    let mut deliveries = tokio::task::JoinSet::new();
    for (project_id, hooks) in by_project {
        let Some(name) = hooks.first().map(|h| h.project.clone()) else {
            continue;
        };
        let s = store.clone();
        let Some(project) = blocking(move || s.project_by_name(&name)).await? else {
            continue;
        };
        let mut found = Vec::new();
        let stopped_after =
            i64::try_from(settings.ingest_stopped_after.as_millis()).unwrap_or(i64::MAX);
        let stop_key = AlertKey {
            kind: AlertKind::IngestStopped,
            version: String::new(),
            command: String::new(),
            detail: String::new(),
        };
        if let Some((last, fresh)) = activity.take(project_id) {
            if now_ms.saturating_sub(last) >= stopped_after {
                found.push(ingest_stopped(&project, last, now_ms));
            } else {
                // Receiving again: a later stop fires again.
                let (s, k) = (store.clone(), stop_key);
                blocking(move || s.clear_alert(project_id, &k)).await?;
            }
            if fresh {
                let lookback = i64::try_from(settings.lookback.as_millis())
                    .unwrap_or(DAY_MS)
                    .max(DAY_MS);
                let range = TimeRange {
                    since_ms: now_ms - lookback,
                    until_ms: now_ms + 1,
                };
                let (s, p) = (store.clone(), project.clone());
                let health =
                    blocking(move || crate::query::release_health(&*s, &p, range, None, None))
                        .await?;
                found.extend(conditions(&health, now_ms));
            }
        }
        for payload in found {
            let wanted: Vec<&AlertHook> = hooks
                .iter()
                .filter(|h| h.kinds.contains(&payload.kind))
                .collect();
            if wanted.is_empty() {
                continue;
            }
            let (s, key) = (store.clone(), payload.key());
            if !blocking(move || s.mark_alert(project_id, &key, now_ms)).await? {
                continue;
            }
            for hook in wanted {
                if hook.log {
                    tracing::warn!(project = %payload.project, kind = payload.kind.as_str(), hook = hook.id, "alert: {}", payload.message);
                }
                let (hook, payload, settings) = (hook.clone(), payload.clone(), *settings);
                deliveries.spawn(async move { deliver(&hook, &payload, &settings).await });
            }
        }
    }
    let mut done = Vec::new();
    while let Some(d) = deliveries.join_next().await {
        done.extend(d.ok());
    }
    done.sort_by_key(|d| (d.hook, d.kind));
    Ok(done)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> crate::storage::Result<T> + Send + 'static,
) -> crate::storage::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| crate::storage::StorageError::Task(e.to_string()))?
}

/// Evaluates alerts for ever, every [`AlertSettings::every`] of what `settings` returns at the
/// start of each round (so a reloaded configuration applies from the next round).
pub async fn run(
    store: Arc<dyn Store>,
    activity: Arc<IngestActivity>,
    settings: impl Fn() -> AlertSettings + Send + 'static,
) {
    loop {
        let now = settings();
        tokio::time::sleep(now.every.max(Duration::from_secs(1))).await;
        match evaluate(&store, &activity, &now, crate::now_ms()).await {
            Ok(done) if !done.is_empty() => {
                tracing::info!(
                    deliveries = done.len(),
                    delivered = done.iter().filter(|d| d.delivered).count(),
                    "alerts evaluated"
                )
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "alert evaluation failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_and_expire() {
        let body = br#"{"kind":"new-error-code"}"#;
        let h = sign("optel_whsec_k", 1_700_000_000, body);
        assert!(h.starts_with("t=1700000000,v1="));
        assert!(verify("optel_whsec_k", &h, body, 1_700_000_100, 300));
        assert!(
            !verify("optel_whsec_k", &h, body, 1_700_000_400, 300),
            "replayed late"
        );
        assert!(!verify("optel_whsec_other", &h, body, 1_700_000_000, 300));
        assert!(!verify("optel_whsec_k", &h, b"{}", 1_700_000_000, 300));
        assert!(!verify("optel_whsec_k", "v1=00", body, 1_700_000_000, 300));
    }

    #[test]
    fn urls_and_kinds_are_checked() {
        for ok in [
            "https://hooks.example/optel",
            "http://127.0.0.1:9000/x?y=1",
            "http://[::1]:8080/",
        ] {
            assert_eq!(check_url(ok), Ok(()), "{ok}");
        }
        for bad in [
            "ftp://x",
            "file:///etc/passwd",
            "https://",
            "https://user:pw@host/",
            "https://a b/",
            "gopher://x",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
        assert_eq!(
            AlertKind::parse_list("failure-rate,new-error-code,failure-rate"),
            Ok(vec![AlertKind::NewErrorCode, AlertKind::FailureRate])
        );
        assert!(
            AlertKind::parse_list("nope")
                .unwrap_err()
                .contains("new-error-code")
        );
    }
}
