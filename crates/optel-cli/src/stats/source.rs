//! Where the numbers come from: a collector's query API, remote over HTTP or the local
//! database answered in-process by the same routes.

use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;

/// Env var holding the admin token for `--server` (never a flag: flags leak into shell history
/// and process lists).
const ADMIN_TOKEN_ENV: &str = "OPTEL_ADMIN_TOKEN";

/// Largest answer read from a collector: 16 MiB.
const MAX_ANSWER_BYTES: usize = 16 << 20;

/// A collector's query API: remote over HTTP, or the local database answered in-process.
pub(crate) enum Source {
    Remote {
        base: String,
        token: String,
        agent: ureq::Agent,
    },
    Local {
        router: axum::Router,
        token: String,
        rt: tokio::runtime::Runtime,
    },
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Remote { base, .. } => f.debug_struct("Remote").field("base", base).finish(),
            Self::Local { .. } => f.write_str("Local"),
        }
    }
}

/// An HTTP answer: status and parsed JSON body (`Null` when the body was not JSON).
pub(super) struct Answer {
    pub(super) status: u16,
    body: Value,
}

impl Source {
    pub(crate) fn remote(url: &str) -> Result<Self> {
        let base = url.trim().trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            bail!("server URL {url:?} is not an http(s) URL: use e.g. http://127.0.0.1:4318");
        }
        if cfg!(not(feature = "tls")) && base.starts_with("https://") {
            bail!(
                "this optel was built without TLS, so it cannot read {base}: build it with \
                 `--features tls`, or reach the collector over http:// (e.g. an SSH tunnel)"
            );
        }
        let token = std::env::var(ADMIN_TOKEN_ENV)
            .ok()
            .filter(|t| !t.trim().is_empty());
        let Some(token) = token else {
            bail!(
                "reading stats from {base} needs the collector's admin token: set {ADMIN_TOKEN_ENV}"
            );
        };
        Ok(Self::http(base, token.trim().to_owned()))
    }

    /// A collector at `base` (an `http(s)://host:port` URL) read with `token`.
    pub(crate) fn http(base: String, token: String) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_connect(Some(Duration::from_secs(5)))
            .timeout_global(Some(Duration::from_secs(30)))
            .http_status_as_error(false)
            .user_agent(concat!("optel-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Self::Remote { base, token, agent }
    }

    pub(crate) fn local(store: &crate::args::StoreArgs) -> Result<Self> {
        let dir = store.dir();
        if store.database.is_none() && !dir.join("optel.db").is_file() {
            bail!(
                "no optel database in {}: pass the collector's --data-dir (or OPTEL_DATA_DIR) or \
                 --database URL, or read a running collector with --server URL",
                dir.display()
            );
        }
        let store = store.open()?;
        // A token that exists only inside this process: the in-process router checks it exactly
        // as a remote collector would.
        let token = optel_collector::keys::generate_ingest_key()
            .context("cannot generate a one-time token")?;
        let state = optel_collector::AppState::new(store, Some(token.clone().into()))
            .context("cannot start the query engine")?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        Ok(Self::Local {
            router: optel_collector::app(state),
            token,
            rt,
        })
    }

    pub(super) fn describe(&self) -> String {
        match self {
            Self::Remote { base, .. } => base.clone(),
            Self::Local { .. } => "the local database".into(),
        }
    }

    pub(super) fn get(&self, path: &str) -> Result<Answer> {
        match self {
            Self::Remote { base, token, agent } => {
                let url = format!("{base}{path}");
                let mut response = agent
                    .get(&url)
                    .header("Authorization", &format!("Bearer {token}"))
                    .header("Accept", "application/json")
                    .call()
                    .with_context(|| format!("cannot reach the collector at {base}"))?;
                let status = response.status().as_u16();
                let bytes = response
                    .body_mut()
                    .with_config()
                    .limit(MAX_ANSWER_BYTES as u64)
                    .read_to_vec()
                    .with_context(|| format!("cannot read the answer of {url}"))?;
                Ok(Answer {
                    status,
                    body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
                })
            }
            Self::Local { router, token, rt } => {
                use tower::ServiceExt as _;
                let request = axum::http::Request::get(path)
                    .header("authorization", format!("Bearer {token}"))
                    .body(axum::body::Body::empty())
                    .context("cannot build a query")?;
                rt.block_on(async {
                    let response = router
                        .clone()
                        .oneshot(request)
                        .await
                        .map_err(|e| anyhow!("query failed: {e}"))?;
                    let status = response.status().as_u16();
                    let bytes = axum::body::to_bytes(response.into_body(), MAX_ANSWER_BYTES)
                        .await
                        .map_err(|e| anyhow!("cannot read a query answer: {e}"))?;
                    Ok(Answer {
                        status,
                        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
                    })
                })
            }
        }
    }

    /// GET `path` and require a 2xx answer.
    fn get_ok(&self, path: &str) -> Result<Value> {
        let answer = self.get(path)?;
        self.check(path, answer)
    }

    /// The body of a 2xx answer, or an error that says what to do.
    pub(super) fn check(&self, path: &str, answer: Answer) -> Result<Value> {
        if (200..300).contains(&answer.status) {
            return Ok(answer.body);
        }
        let message = answer.body["error"]["message"]
            .as_str()
            .unwrap_or("no error message")
            .to_owned();
        match answer.status {
            401 => bail!(
                "{} did not accept the admin token ({message}): check {ADMIN_TOKEN_ENV}",
                self.describe()
            ),
            403 => bail!("{} refuses queries: {message}", self.describe()),
            status => bail!(
                "{} answered HTTP {status} to {path}: {message}",
                self.describe()
            ),
        }
    }

    /// GET an optional route: `None` if this collector does not have it (404), so that an
    /// older collector still gives the basic stats.
    pub(super) fn get_optional(&self, path: &str) -> Result<Option<Value>> {
        let answer = self.get(path)?;
        match answer.status {
            200..=299 => Ok(Some(answer.body)),
            404 => Ok(None),
            _ => self.check(path, answer).map(Some),
        }
    }

    /// The single project of the collector, for `optel stats` without `--project`.
    pub(super) fn only_project(&self) -> Result<String> {
        let body = self.get_ok("/v1/projects")?;
        // The contract answers {"projects":[..]}; the first collectors answered a bare array.
        let list = body
            .get("projects")
            .and_then(Value::as_array)
            .or(body.as_array())
            .cloned()
            .unwrap_or_default();
        let names: Vec<&str> = list.iter().filter_map(|p| p["name"].as_str()).collect();
        match names.as_slice() {
            [one] => Ok((*one).to_owned()),
            [] => bail!(
                "{} has no projects yet: create one with `optel projects create NAME`",
                self.describe()
            ),
            many => bail!(
                "{} has {} projects ({}): pick one with --project NAME",
                self.describe(),
                many.len(),
                many.join(", ")
            ),
        }
    }
}
