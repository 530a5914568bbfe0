//! Where the numbers come from: a collector's query API, remote over HTTP or the local
//! database answered in-process by the same routes.

use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use optel_collector::query::ProjectList;
use serde::Deserialize;
use serde::de::DeserializeOwned;

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

/// An HTTP answer: status and body, read later as the type the route answers.
pub(super) struct Answer {
    pub(super) status: u16,
    body: Vec<u8>,
}

/// The answer of `GET /v1/projects` as `optel stats` reads it.
#[derive(Deserialize)]
#[serde(untagged)]
enum ProjectsAnswer {
    /// What the query API answers.
    Listed(ProjectList),
    /// A bare array of projects, of which only the name is read: what the first collectors
    /// answered.
    Bare(Vec<ProjectName>),
}

#[derive(Deserialize)]
struct ProjectName {
    name: String,
}

impl ProjectsAnswer {
    fn names(self) -> Vec<String> {
        match self {
            Self::Listed(list) => list.projects.into_iter().map(|p| p.name).collect(),
            Self::Bare(list) => list.into_iter().map(|p| p.name).collect(),
        }
    }
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
        let token =
            optel_collector::generate_ingest_key().context("cannot generate a one-time token")?;
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
                    body: bytes,
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
                        body: bytes.to_vec(),
                    })
                })
            }
        }
    }

    /// GET `path`, require a 2xx answer and read it as a `T`.
    fn get_ok<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let answer = self.get(path)?;
        self.read(path, answer)
    }

    /// The body of a 2xx answer read as a `T`, or an error that says what to do.
    pub(super) fn read<T: DeserializeOwned>(&self, path: &str, answer: Answer) -> Result<T> {
        if (200..300).contains(&answer.status) {
            return serde_json::from_slice(&answer.body).with_context(|| {
                format!(
                    "the answer of {} to {path} is not in the expected shape",
                    self.describe()
                )
            });
        }
        let message = serde_json::from_slice::<optel_wire::ErrorBody>(&answer.body)
            .map_or_else(|_| "no error message".to_owned(), |b| b.error.message);
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
    pub(super) fn get_optional<T: DeserializeOwned>(&self, path: &str) -> Result<Option<T>> {
        let answer = self.get(path)?;
        match answer.status {
            404 => Ok(None),
            _ => self.read(path, answer).map(Some),
        }
    }

    /// The single project of the collector, for `optel stats` without `--project`.
    pub(super) fn only_project(&self) -> Result<String> {
        let names = self.get_ok::<ProjectsAnswer>("/v1/projects")?.names();
        match names.as_slice() {
            [one] => Ok(one.clone()),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_project_list_is_read_as_answered_now_and_by_the_first_collectors() {
        let listed: ProjectsAnswer = serde_json::from_str(
            r#"{"projects":[{"name":"acme","public":false,"created":"2026-11-21T22:40:00.000Z"}]}"#,
        )
        .unwrap();
        assert_eq!(listed.names(), ["acme"]);
        let bare: ProjectsAnswer =
            serde_json::from_str(r#"[{"name":"acme","created_ms":1},{"name":"b"}]"#).unwrap();
        assert_eq!(bare.names(), ["acme", "b"]);
    }
}
