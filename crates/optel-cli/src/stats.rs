//! `optel stats`: a project's usage for the terminal (colored tables that fit its width, with
//! sparklines for the daily trends) or for scripts (`--format json|csv`).
//!
//! The numbers come from the collector's query API (`docs/query-api.md`), read either from a
//! remote collector (`--server URL`, admin token from `OPTEL_ADMIN_TOKEN`) or from a local data
//! directory, in which case the same routes are answered in-process by
//! [`optel_collector::app`] over the local database. One code path serves both, so the local and
//! the remote answer cannot drift apart.
//!
//! `--format json` prints the `/v1/projects/{p}/stats` object ([`Stats`]: at least
//! `{"commands":[{"name","count","failures",..}],"active_installs":N}`) with, when the collector
//! has the routes, `p50_ms`/`p95_ms` per command, `dau`/`wau`/`mau` and `daily` buckets added.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use optel_collector::query::Stats;
use serde_json::Value;

use crate::{Format, StatsArgs};

/// Env var holding the admin token for `--server` (never a flag: flags leak into shell history
/// and process lists).
pub(crate) const ADMIN_TOKEN_ENV: &str = "OPTEL_ADMIN_TOKEN";

/// Largest answer read from a collector: 16 MiB.
const MAX_ANSWER_BYTES: usize = 16 << 20;

pub(crate) fn run(args: StatsArgs) -> Result<()> {
    let source = match &args.server {
        Some(url) => Source::remote(url)?,
        None => Source::local(&args.store)?,
    };
    let project = match &args.project {
        Some(p) => p.clone(),
        None => source.only_project()?,
    };
    let report = Report::fetch(&source, &project, args.since)?;
    let mut out = std::io::stdout().lock();
    match args.format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut out, &report.to_json())?;
            writeln!(out)?;
        }
        Format::Csv => out.write_all(report.to_csv().as_bytes())?,
        Format::Table => {
            out.write_all(report.render_for_stdout(args.color).as_bytes())?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Where the numbers come from

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
struct Answer {
    status: u16,
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

    pub(crate) fn local(store: &crate::StoreArgs) -> Result<Self> {
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

    fn describe(&self) -> String {
        match self {
            Self::Remote { base, .. } => base.clone(),
            Self::Local { .. } => "the local database".into(),
        }
    }

    fn get(&self, path: &str) -> Result<Answer> {
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
    fn check(&self, path: &str, answer: Answer) -> Result<Value> {
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
    fn get_optional(&self, path: &str) -> Result<Option<Value>> {
        let answer = self.get(path)?;
        match answer.status {
            200..=299 => Ok(Some(answer.body)),
            404 => Ok(None),
            _ => self.check(path, answer).map(Some),
        }
    }

    /// The single project of the collector, for `optel stats` without `--project`.
    fn only_project(&self) -> Result<String> {
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

// ---------------------------------------------------------------------------------------------
// The report

/// One day (or week) of the project's trend.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Bucket {
    start: String,
    events: Option<u64>,
    invocations: Option<u64>,
    failures: Option<u64>,
    active_installs: Option<u64>,
}

/// Everything `optel stats` shows: the stats object plus what newer routes add.
#[derive(Debug, Clone)]
pub(crate) struct Report {
    stats: Stats,
    since: Duration,
    /// Command name → (p50 ms, p95 ms), from `/commands`.
    latency: Vec<(String, Option<u64>, Option<u64>)>,
    /// `(dau, wau, mau)` from `/overview`.
    active: Option<(u64, u64, u64)>,
    /// From `/timeseries`.
    daily: Vec<Bucket>,
}

fn u(v: &Value) -> Option<u64> {
    v.as_u64()
}

impl Report {
    pub(crate) fn fetch(source: &Source, project: &str, since: Duration) -> Result<Self> {
        let p = encode_segment(project);
        let q = format!("since={}s", since.as_secs().max(1));
        let path = format!("/v1/projects/{p}/stats?{q}");
        let answer = source.get(&path)?;
        if answer.status == 404 {
            bail!(
                "{} has no project named {project:?}: list them with `optel projects list`",
                source.describe()
            );
        }
        let body = source.check(&path, answer)?;
        let stats: Stats = serde_json::from_value(body)
            .context("the collector's stats answer is not in the expected shape")?;

        let latency = source
            .get_optional(&format!("/v1/projects/{p}/commands?{q}"))?
            .and_then(|v| v["commands"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|c| {
                Some((
                    c["name"].as_str()?.to_owned(),
                    u(&c["p50_ms"]),
                    u(&c["p95_ms"]),
                ))
            })
            .collect();
        let active = source
            .get_optional(&format!("/v1/projects/{p}/overview?{q}"))?
            .and_then(|o| Some((u(&o["dau"])?, u(&o["wau"])?, u(&o["mau"])?)));
        let granularity = if since > Duration::from_secs(120 * 86_400) {
            "week"
        } else {
            "day"
        };
        let daily = source
            .get_optional(&format!(
                "/v1/projects/{p}/timeseries?{q}&granularity={granularity}"
            ))?
            .and_then(|v| v["buckets"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .map(|b| Bucket {
                start: b["start"].as_str().unwrap_or_default().to_owned(),
                events: u(&b["events"]),
                invocations: u(&b["invocations"]),
                failures: u(&b["failures"]),
                active_installs: u(&b["active_installs"]),
            })
            .collect();
        Ok(Self {
            stats,
            since,
            latency,
            active,
            daily,
        })
    }

    fn latency_of(&self, command: &str) -> (Option<u64>, Option<u64>) {
        self.latency
            .iter()
            .find(|(n, _, _)| n == command)
            .map_or((None, None), |(_, a, b)| (*a, *b))
    }

    fn invocations(&self) -> u64 {
        self.stats.commands.iter().map(|c| c.count).sum()
    }

    fn failures(&self) -> u64 {
        self.stats.commands.iter().map(|c| c.failures).sum()
    }

    /// The JSON of `--format json`: the stats object, with what newer routes add.
    pub(crate) fn to_json(&self) -> Value {
        let mut v = serde_json::to_value(&self.stats).unwrap_or(Value::Null);
        if let Some(commands) = v.get_mut("commands").and_then(Value::as_array_mut) {
            for c in commands {
                let name = c["name"].as_str().unwrap_or_default().to_owned();
                let (p50, p95) = self.latency_of(&name);
                if let Some(obj) = c.as_object_mut() {
                    obj.insert("p50_ms".into(), p50.into());
                    obj.insert("p95_ms".into(), p95.into());
                }
            }
        }
        if let Some(obj) = v.as_object_mut() {
            obj.insert("invocations".into(), self.invocations().into());
            obj.insert("failures".into(), self.failures().into());
            if let Some((dau, wau, mau)) = self.active {
                obj.insert("dau".into(), dau.into());
                obj.insert("wau".into(), wau.into());
                obj.insert("mau".into(), mau.into());
            }
            let daily: Vec<Value> = self
                .daily
                .iter()
                .map(|b| {
                    serde_json::json!({
                        "start": b.start,
                        "events": b.events,
                        "invocations": b.invocations,
                        "failures": b.failures,
                        "active_installs": b.active_installs,
                    })
                })
                .collect();
            obj.insert("daily".into(), daily.into());
        }
        v
    }

    /// The CSV of `--format csv`: one table in long form, one row per thing counted, so a script
    /// can filter on `kind` (`command`, `error`, `version`, `platform`, `feature`, `method`,
    /// `day`). Empty cells are values that do not apply.
    pub(crate) fn to_csv(&self) -> String {
        let mut out =
            String::from("kind,name,detail,count,failures,installs,events,p50_ms,p95_ms\r\n");
        let o = |v: Option<u64>| v.map(|n| n.to_string()).unwrap_or_default();
        let mut row = |cells: [String; 9]| {
            let line: Vec<String> = cells.iter().map(|c| csv_cell(c)).collect();
            out.push_str(&line.join(","));
            out.push_str("\r\n");
        };
        let s = &self.stats;
        for c in &s.commands {
            let (p50, p95) = self.latency_of(&c.name);
            row([
                "command".into(),
                c.name.clone(),
                String::new(),
                c.count.to_string(),
                c.failures.to_string(),
                c.installs.to_string(),
                String::new(),
                o(p50),
                o(p95),
            ]);
        }
        for e in &s.error_codes {
            row([
                "error".into(),
                e.command.clone(),
                e.error_code.clone(),
                e.count.to_string(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
            ]);
        }
        for v in &s.versions {
            row([
                "version".into(),
                v.version.clone(),
                String::new(),
                String::new(),
                String::new(),
                v.installs.to_string(),
                v.events.to_string(),
                String::new(),
                String::new(),
            ]);
        }
        for p in &s.platforms {
            row([
                "platform".into(),
                p.os.clone(),
                p.arch.clone(),
                String::new(),
                String::new(),
                p.installs.to_string(),
                p.events.to_string(),
                String::new(),
                String::new(),
            ]);
        }
        for (kind, list) in [("feature", &s.features), ("method", &s.methods)] {
            for f in list {
                row([
                    kind.into(),
                    f.name.clone(),
                    String::new(),
                    f.count.to_string(),
                    String::new(),
                    f.installs.to_string(),
                    String::new(),
                    String::new(),
                    String::new(),
                ]);
            }
        }
        for b in &self.daily {
            row([
                "day".into(),
                b.start.clone(),
                String::new(),
                o(b.invocations),
                o(b.failures),
                o(b.active_installs),
                o(b.events),
                String::new(),
                String::new(),
            ]);
        }
        out
    }

    /// The tables as they should look on this process's stdout.
    pub(crate) fn render_for_stdout(&self, color: clap::ColorChoice) -> String {
        let tty = std::io::stdout().is_terminal();
        self.render(&Style::new(use_color(color, tty)), terminal_width(tty))
    }

    /// The tables of `--format table`, fitted to `width` columns.
    pub(crate) fn render(&self, st: &Style, width: usize) -> String {
        let s = &self.stats;
        let mut out = String::new();
        let since = short_duration(self.since);
        let range = format!("{} → {}", short_ts(&s.since), short_ts(&s.until));
        let head = format!("{} · last {since}", s.project);
        if head.chars().count() + 3 + range.chars().count() <= width {
            let _ = writeln!(
                out,
                "{} {}",
                st.bold(&s.project),
                st.dim(&format!("· last {since} · {range}"))
            );
        } else {
            let _ = writeln!(out, "{}", st.bold(&fit(&head, width)));
            let _ = writeln!(out, "{}", st.dim(&fit(&range, width)));
        }
        let invocations = self.invocations();
        let failures = self.failures();
        let mut parts = vec![
            format!("{} events", group(s.events)),
            format!("{} invocations", group(invocations)),
            format!("{} failed", percent(failures, invocations)),
            format!("{} active installs", group(s.active_installs)),
        ];
        if let Some((dau, wau, mau)) = self.active {
            parts.push(format!("DAU {}", group(dau)));
            parts.push(format!("WAU {}", group(wau)));
            parts.push(format!("MAU {}", group(mau)));
        }
        for line in wrap_parts(&parts, " · ", width) {
            let _ = writeln!(out, "{line}");
        }
        out.push('\n');
        if s.events == 0 {
            out.push_str("no events in this range yet\n");
            return out;
        }

        if self.daily.len() > 1 {
            // "  <label, 15> <sparkline>  last NNNNNN  max NNNNNN": the figures go first when
            // the terminal is narrow, then the sparkline shrinks.
            const LABEL_W: usize = 15;
            const FIGURES_W: usize = 25;
            let avail = width.saturating_sub(LABEL_W + 3);
            let with_figures = avail >= FIGURES_W + 8;
            let spark_w = if with_figures {
                avail - FIGURES_W
            } else {
                avail
            }
            .clamp(4, 60);
            let series: [(&str, Vec<Option<u64>>); 3] = [
                (
                    "invocations",
                    self.daily.iter().map(|b| b.invocations).collect(),
                ),
                ("failures", self.daily.iter().map(|b| b.failures).collect()),
                (
                    "active installs",
                    self.daily.iter().map(|b| b.active_installs).collect(),
                ),
            ];
            let per = if self.daily.first().is_some_and(|b| b.start.len() == 10)
                && self.since > Duration::from_secs(120 * 86_400)
            {
                "week"
            } else {
                "day"
            };
            let _ = writeln!(
                out,
                "{}",
                st.dim(&fit(
                    &format!(
                        "per {per}, {} → {}",
                        self.daily.first().map_or("", |b| b.start.as_str()),
                        self.daily.last().map_or("", |b| b.start.as_str())
                    ),
                    width
                ))
            );
            for (label, values) in series {
                let line = sparkline(&values, spark_w);
                let last = values.iter().rev().flatten().next().copied().unwrap_or(0);
                let max = values.iter().flatten().copied().max().unwrap_or(0);
                let _ = write!(out, "  {label:<LABEL_W$} {}", st.spark(&line));
                if with_figures {
                    let _ = write!(out, "  last {:>6}  max {:>6}", group(last), group(max));
                }
                out.push('\n');
            }
            out.push('\n');
        }

        let has_latency = self
            .latency
            .iter()
            .any(|(_, a, b)| a.is_some() || b.is_some());
        let mut rows: Vec<Vec<Cell>> = Vec::new();
        for c in &s.commands {
            let rate = if c.count == 0 {
                0.0
            } else {
                c.failures as f64 / c.count as f64
            };
            let mut row = vec![
                Cell::text(&c.name),
                Cell::num(group(c.count)),
                Cell::num(group(c.failures)),
                Cell::num(percent(c.failures, c.count)).paint(if rate >= 0.10 {
                    Paint::Bad
                } else if rate >= 0.02 {
                    Paint::Warn
                } else {
                    Paint::Plain
                }),
                Cell::num(group(c.installs)),
            ];
            if has_latency {
                let (p50, p95) = self.latency_of(&c.name);
                row.push(Cell::num(p50.map_or("-".into(), human_ms)));
                row.push(Cell::num(p95.map_or("-".into(), human_ms)));
            }
            rows.push(row);
        }
        let mut header = vec!["COMMAND", "RUNS", "FAILED", "FAIL%", "INSTALLS"];
        if has_latency {
            header.extend(["P50", "P95"]);
        }
        table(&mut out, st, width, &header, &rows);

        if !s.error_codes.is_empty() {
            out.push('\n');
            let rows: Vec<Vec<Cell>> = s
                .error_codes
                .iter()
                .map(|e| {
                    vec![
                        Cell::text(if e.error_code.is_empty() {
                            "(none)"
                        } else {
                            &e.error_code
                        })
                        .paint(Paint::Bad),
                        Cell::text(&e.command),
                        Cell::num(group(e.count)),
                    ]
                })
                .collect();
            table(
                &mut out,
                st,
                width,
                &["ERROR CODE", "COMMAND", "COUNT"],
                &rows,
            );
        }
        out.push('\n');
        let rows: Vec<Vec<Cell>> = s
            .versions
            .iter()
            .map(|v| {
                vec![
                    Cell::text(&v.version),
                    Cell::num(group(v.installs)),
                    Cell::num(share(v.installs, s.active_installs)),
                    Cell::num(group(v.events)),
                ]
            })
            .collect();
        table(
            &mut out,
            st,
            width,
            &["VERSION", "INSTALLS", "SHARE", "EVENTS"],
            &rows,
        );
        out.push('\n');
        let rows: Vec<Vec<Cell>> = s
            .platforms
            .iter()
            .map(|p| {
                vec![
                    Cell::text(&format!("{}/{}", p.os, p.arch)),
                    Cell::num(group(p.installs)),
                    Cell::num(share(p.installs, s.active_installs)),
                    Cell::num(group(p.events)),
                ]
            })
            .collect();
        table(
            &mut out,
            st,
            width,
            &["OS/ARCH", "INSTALLS", "SHARE", "EVENTS"],
            &rows,
        );
        for (title, list) in [("FEATURE", &s.features), ("METHOD", &s.methods)] {
            if !list.is_empty() {
                out.push('\n');
                let rows: Vec<Vec<Cell>> = list
                    .iter()
                    .map(|f| {
                        vec![
                            Cell::text(&f.name),
                            Cell::num(group(f.count)),
                            Cell::num(group(f.installs)),
                        ]
                    })
                    .collect();
                table(&mut out, st, width, &[title, "COUNT", "INSTALLS"], &rows);
            }
        }
        out
    }
}

/// Percent-encodes a path segment (project names are `[A-Za-z0-9_.:-]`, but a typo may not be).
fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~:".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// `24h`, `7d`, `90m`: a look-back as the user would type it.
fn short_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => humantime::format_duration(d).to_string(),
        _ if s.is_multiple_of(86_400) && s > 86_400 => format!("{}d", s / 86_400),
        _ if s.is_multiple_of(3_600) => format!("{}h", s / 3_600),
        _ if s.is_multiple_of(60) => format!("{}m", s / 60),
        _ => format!("{s}s"),
    }
}

/// `2026-11-21T22:40:00.123Z` → `2026-11-21 22:40 UTC`.
fn short_ts(t: &optel_wire::Timestamp) -> String {
    let s = t.to_string();
    match (s.get(..10), s.get(11..16)) {
        (Some(d), Some(hm)) => format!("{d} {hm} UTC"),
        _ => s,
    }
}

// ---------------------------------------------------------------------------------------------
// Formatting helpers

/// `1234567` → `1,234,567`.
pub(crate) fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

fn percent(part: u64, whole: u64) -> String {
    if whole == 0 {
        "-".into()
    } else {
        format!("{:.1}%", part as f64 * 100.0 / whole as f64)
    }
}

fn share(part: u64, whole: u64) -> String {
    if whole == 0 {
        "-".into()
    } else {
        format!("{:.0}%", part as f64 * 100.0 / whole as f64)
    }
}

/// Milliseconds for people: `840ms`, `4.2s`, `3.1m`.
fn human_ms(ms: u64) -> String {
    match ms {
        0..=999 => format!("{ms}ms"),
        1_000..=59_999 => format!("{:.1}s", ms as f64 / 1000.0),
        _ => format!("{:.1}m", ms as f64 / 60_000.0),
    }
}

/// A CSV cell (RFC 4180 quoting). Text a spreadsheet would run as a formula (`=`, `+`, `-`,
/// `@`, tab, CR first) gets a leading `'`.
pub(crate) fn csv_cell(s: &str) -> String {
    let is_number = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let s = if !is_number && s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    if s.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// A sparkline of `values` at most `max_width` characters wide: each character is the largest
/// value of its group of buckets, scaled from the smallest to the largest group (as classic
/// sparklines do, so that a trend shows even on large counts); equal values sit mid-height; a
/// missing (suppressed) value is a space.
pub(crate) fn sparkline(values: &[Option<u64>], max_width: usize) -> String {
    if values.is_empty() || max_width == 0 {
        return String::new();
    }
    let group_size = values.len().div_ceil(max_width);
    let groups: Vec<Option<u64>> = values
        .chunks(group_size)
        .map(|c| c.iter().flatten().copied().max())
        .collect();
    let max = groups.iter().flatten().copied().max().unwrap_or(0);
    let min = groups.iter().flatten().copied().min().unwrap_or(0);
    let span = u128::from(max - min);
    groups
        .iter()
        .map(|g| match *g {
            None => ' ',
            Some(_) if span == 0 => BARS[4],
            Some(v) => {
                // round((v - min) * 7 / span), in u128 so huge counts cannot overflow.
                let level = (u128::from(v - min) * 7 + span / 2) / span;
                BARS[(level as usize).min(7)]
            }
        })
        .collect()
}

/// `parts` joined by `sep` into lines of at most `width` characters (a part longer than the
/// width is cut).
fn wrap_parts(parts: &[String], sep: &str, width: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut current = String::new();
    for part in parts {
        let part = fit(part, width);
        if current.is_empty() {
            current = part;
        } else if current.chars().count() + sep.chars().count() + part.chars().count() <= width {
            current.push_str(sep);
            current.push_str(&part);
        } else {
            lines.push(std::mem::replace(&mut current, part));
        }
    }
    if !current.is_empty() {
        lines.push(current);
    }
    lines
}

/// `s` cut to `width` characters, with `…` marking the cut.
fn fit(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(width.saturating_sub(1)).collect();
    out.push('…');
    out
}

// ---------------------------------------------------------------------------------------------
// Terminal: colour and width

/// Whether to colour: `--color always|never`, or with `auto` only on a terminal, unless
/// `NO_COLOR` is set to anything non-empty (no-color.org) or `TERM=dumb`.
pub(crate) fn use_color(choice: clap::ColorChoice, tty: bool) -> bool {
    match choice {
        clap::ColorChoice::Always => true,
        clap::ColorChoice::Never => false,
        clap::ColorChoice::Auto => {
            tty && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                && std::env::var("TERM").map_or(true, |t| t != "dumb")
        }
    }
}

/// Columns to fit tables into: `COLUMNS` if set, else the terminal's width, else (a pipe or a
/// file) no limit.
fn terminal_width(tty: bool) -> usize {
    if let Some(cols) = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<usize>().ok())
        .filter(|&c| c > 0)
    {
        return cols.max(20);
    }
    if tty && let Some((terminal_size::Width(w), _)) = terminal_size::terminal_size() {
        return usize::from(w).max(20);
    }
    usize::MAX / 4
}

/// ANSI styling, or none.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Style {
    color: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Paint {
    Plain,
    Warn,
    Bad,
}

impl Style {
    pub(crate) fn new(color: bool) -> Self {
        Self { color }
    }
    fn wrap(&self, code: &str, s: &str) -> String {
        if self.color && !s.is_empty() {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_owned()
        }
    }
    fn bold(&self, s: &str) -> String {
        self.wrap("1", s)
    }
    fn dim(&self, s: &str) -> String {
        self.wrap("2", s)
    }
    fn spark(&self, s: &str) -> String {
        self.wrap("36", s)
    }
    fn paint(&self, p: Paint, s: &str) -> String {
        match p {
            Paint::Plain => s.to_owned(),
            Paint::Warn => self.wrap("33", s),
            Paint::Bad => self.wrap("31", s),
        }
    }
}

/// A table cell: its text, whether it is a number (right-aligned), its colour.
#[derive(Debug, Clone)]
struct Cell {
    text: String,
    numeric: bool,
    paint: Paint,
}

impl Cell {
    fn text(s: &str) -> Self {
        Self {
            text: s.to_owned(),
            numeric: false,
            paint: Paint::Plain,
        }
    }
    fn num(s: String) -> Self {
        Self {
            text: s,
            numeric: true,
            paint: Paint::Plain,
        }
    }
    fn paint(mut self, p: Paint) -> Self {
        self.paint = p;
        self
    }
}

/// Narrowest a text column is cut to before columns are dropped.
const MIN_TEXT_WIDTH: usize = 8;

/// Renders a table two spaces between columns, text left and numbers right (as `ls -l`),
/// fitted to `width`: the widest text columns are cut first (marked `…`), then the rightmost
/// columns are left out, never the first two.
fn table(out: &mut String, st: &Style, width: usize, header: &[&str], rows: &[Vec<Cell>]) {
    let ncols = header.len();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.text.chars().count());
        }
    }
    let numeric: Vec<bool> = (0..ncols)
        .map(|i| !rows.is_empty() && rows.iter().all(|r| r.get(i).is_some_and(|c| c.numeric)))
        .collect();
    let total = |widths: &[usize], n: usize| widths[..n].iter().sum::<usize>() + 2 * (n - 1);
    let mut shown = ncols;
    while total(&widths, shown) > width {
        // Cut the widest text column that is still above the minimum.
        let widest = (0..shown)
            .filter(|&i| !numeric[i] && widths[i] > MIN_TEXT_WIDTH.max(header[i].len()))
            .max_by_key(|&i| widths[i]);
        if let Some(i) = widest {
            let over = total(&widths, shown) - width;
            let floor = MIN_TEXT_WIDTH.max(header[i].len());
            widths[i] = widths[i].saturating_sub(over).max(floor);
        } else if shown > 2 {
            shown -= 1;
        } else {
            break;
        }
    }
    let line = |out: &mut String, cells: Vec<(String, Paint)>, is_header: bool| {
        let mut parts = Vec::with_capacity(shown);
        for (i, (text, paint)) in cells.into_iter().take(shown).enumerate() {
            let w = widths[i];
            let text = fit(&text, w);
            let padded = if numeric[i] {
                format!("{text:>w$}")
            } else if i + 1 == shown {
                text
            } else {
                format!("{text:<w$}")
            };
            parts.push(if is_header {
                st.bold(&padded)
            } else {
                st.paint(paint, &padded)
            });
        }
        out.push_str(parts.join("  ").trim_end());
        out.push('\n');
    };
    line(
        out,
        header
            .iter()
            .map(|h| ((*h).to_owned(), Paint::Plain))
            .collect(),
        true,
    );
    for row in rows {
        line(
            out,
            row.iter().map(|c| (c.text.clone(), c.paint)).collect(),
            false,
        );
    }
    if shown < ncols {
        let _ = writeln!(
            out,
            "{}",
            st.dim(&fit(
                &format!(
                    "({} more column{} hidden: widen the terminal or use --format csv)",
                    ncols - shown,
                    if ncols - shown == 1 { "" } else { "s" }
                ),
                width
            ))
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparkline_scales_from_zero_to_max_and_fits_its_width() {
        let v: Vec<Option<u64>> = [0, 1, 2, 4, 8].iter().map(|&n| Some(n)).collect();
        assert_eq!(sparkline(&v, 10), "▁▂▃▅█");
        assert_eq!(sparkline(&[Some(3), None, Some(3)], 10), "▅ ▅");
        let long: Vec<Option<u64>> = (0..90).map(Some).collect();
        let s = sparkline(&long, 30);
        assert_eq!(s.chars().count(), 30);
        assert!(s.ends_with('█'));
        assert_eq!(sparkline(&[Some(u64::MAX), Some(1)], 4), "█▁");
        assert_eq!(sparkline(&[Some(90), Some(120), Some(150)], 4), "▁▅█");
        assert_eq!(sparkline(&[], 4), "");
    }

    #[test]
    fn numbers_are_grouped() {
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(1000), "1,000");
        assert_eq!(group(1_234_567), "1,234,567");
    }

    #[test]
    fn csv_cells_are_quoted_and_defused() {
        assert_eq!(csv_cell("build"), "build");
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_cell("=cmd()"), "'=cmd()");
        assert_eq!(csv_cell("-x"), "'-x");
        assert_eq!(csv_cell("42"), "42");
    }

    fn rows(names: &[&str]) -> Vec<Vec<Cell>> {
        names
            .iter()
            .map(|n| {
                vec![
                    Cell::text(n),
                    Cell::num("12".into()),
                    Cell::num("3".into()),
                    Cell::num("25.0%".into()).paint(Paint::Bad),
                ]
            })
            .collect()
    }

    #[test]
    fn tables_fit_the_width_by_cutting_text_then_dropping_columns() {
        let header = ["COMMAND", "RUNS", "FAILED", "FAIL%"];
        let plain = Style::new(false);
        let r = rows(&["a-very-long-command-name-indeed", "build"]);

        let mut wide = String::new();
        table(&mut wide, &plain, 200, &header, &r);
        assert!(wide.contains("a-very-long-command-name-indeed"));
        assert!(wide.lines().next().unwrap().starts_with("COMMAND"));

        let mut narrow = String::new();
        table(&mut narrow, &plain, 30, &header, &r);
        assert!(narrow.lines().all(|l| l.chars().count() <= 30), "{narrow}");
        assert!(narrow.contains('…'));
        assert!(narrow.contains("FAIL%"));

        let mut tiny = String::new();
        table(&mut tiny, &plain, 20, &header, &r);
        assert!(
            tiny.lines().take(3).all(|l| l.chars().count() <= 20),
            "{tiny}"
        );
        assert!(tiny.contains("(2 more col"), "{tiny}");
        assert!(!tiny.contains("FAIL%"));
    }

    #[test]
    fn colour_only_when_asked_and_never_in_the_width() {
        let r = rows(&["build"]);
        let mut colored = String::new();
        table(
            &mut colored,
            &Style::new(true),
            80,
            &["C", "R", "F", "P"],
            &r,
        );
        assert!(colored.contains("\x1b[31m25.0%\x1b[0m"));
        let mut plain = String::new();
        table(
            &mut plain,
            &Style::new(false),
            80,
            &["C", "R", "F", "P"],
            &r,
        );
        assert!(!plain.contains('\x1b'));
        // Stripping the escapes gives the plain table: colour does not shift columns.
        let stripped: String = {
            let mut s = String::new();
            let mut in_esc = false;
            for ch in colored.chars() {
                match (in_esc, ch) {
                    (false, '\x1b') => in_esc = true,
                    (true, 'm') => in_esc = false,
                    (true, _) => {}
                    (false, c) => s.push(c),
                }
            }
            s
        };
        assert_eq!(stripped, plain);
        assert!(!use_color(clap::ColorChoice::Never, true));
        assert!(use_color(clap::ColorChoice::Always, false));
        assert!(!use_color(clap::ColorChoice::Auto, false));
    }

    fn report() -> Report {
        let stats: Stats = serde_json::from_value(serde_json::json!({
            "project": "acme",
            "since": "2026-11-14T00:00:00.000Z",
            "until": "2026-11-21T00:00:00.000Z",
            "events": 1234,
            "active_installs": 40,
            "commands": [
                {"name": "build", "count": 1000, "failures": 150, "installs": 38},
                {"name": "a-command-with-a-rather-long-name", "count": 200, "failures": 2, "installs": 9}
            ],
            "error_codes": [{"command": "build", "error_code": "E_NO_MANIFEST", "count": 150}],
            "versions": [{"version": "0.2.0", "events": 1000, "installs": 30}],
            "platforms": [{"os": "linux", "arch": "x86_64", "events": 1234, "installs": 40}],
            "features": [],
            "methods": []
        }))
        .unwrap();
        Report {
            stats,
            since: Duration::from_secs(7 * 86_400),
            latency: vec![("build".into(), Some(840), Some(4200))],
            active: Some((12, 30, 40)),
            daily: (0..7)
                .map(|i| Bucket {
                    start: format!("2026-11-{:02}", 14 + i),
                    events: Some(100 + i),
                    invocations: Some(90 + 10 * i),
                    failures: Some(i),
                    active_installs: if i == 3 { None } else { Some(10 + i) },
                })
                .collect(),
        }
    }

    #[test]
    fn report_renders_trends_and_fits_every_width() {
        let r = report();
        let wide = r.render(&Style::new(false), 120);
        assert!(wide.contains("acme · last 7d"), "{wide}");
        assert!(wide.contains("DAU 12 · WAU 30 · MAU 40"), "{wide}");
        let spark = wide
            .lines()
            .find(|l| l.trim_start().starts_with("invocations"))
            .unwrap();
        assert!(spark.contains("▁") && spark.contains("█"), "{spark}");
        assert!(spark.contains("last    150"), "{spark}");
        // A suppressed day is a gap in the installs sparkline.
        let installs = wide
            .lines()
            .find(|l| l.trim_start().starts_with("active installs"))
            .unwrap();
        let bars: String = installs
            .chars()
            .filter(|c| BARS.contains(c) || *c == ' ')
            .collect();
        assert!(bars.trim().contains("▃ "), "{installs}");
        assert!(wide.contains("840ms") && wide.contains("4.2s"), "{wide}");
        assert!(wide.contains("15.0%"));
        for width in [30, 44, 60, 80] {
            let out = r.render(&Style::new(false), width);
            for line in out.lines() {
                assert!(line.chars().count() <= width, "{width}: {line:?}");
            }
            assert!(out.contains("build"), "{out}");
        }
    }

    #[test]
    fn report_json_keeps_the_stats_shape_and_adds_trends() {
        let v = report().to_json();
        assert_eq!(v["active_installs"], 40);
        assert_eq!(v["commands"][0]["name"], "build");
        assert_eq!(v["commands"][0]["count"], 1000);
        assert_eq!(v["commands"][0]["failures"], 150);
        assert_eq!(v["commands"][0]["p95_ms"], 4200);
        assert_eq!(v["commands"][1]["p95_ms"], Value::Null);
        assert_eq!(v["dau"], 12);
        assert_eq!(v["daily"].as_array().unwrap().len(), 7);
        assert_eq!(v["daily"][3]["active_installs"], Value::Null);
        let csv = report().to_csv();
        assert!(
            csv.contains("\r\ncommand,build,,1000,150,38,,840,4200\r\n"),
            "{csv}"
        );
        assert!(
            csv.contains("\r\nday,2026-11-17,,120,3,,103,,\r\n"),
            "{csv}"
        );
    }

    #[test]
    fn human_durations() {
        assert_eq!(human_ms(840), "840ms");
        assert_eq!(human_ms(4200), "4.2s");
        assert_eq!(human_ms(180_000), "3.0m");
        assert_eq!(encode_segment("a b/c"), "a%20b%2Fc");
        assert_eq!(short_duration(Duration::from_secs(86_400)), "24h");
        assert_eq!(short_duration(Duration::from_secs(7 * 86_400)), "7d");
        assert_eq!(short_duration(Duration::from_secs(90 * 60)), "90m");
    }
}
