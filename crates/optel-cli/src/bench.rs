//! `optel bench`: the collector's load generator (`ingest`), data generator (`fill`) and query
//! benchmark (`query`). Everything targets 127.0.0.1 or a local store, runs for a bounded time
//! or count, and stops by itself.

use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use optel_collector::RateConfig;
use optel_collector::query::{self, Audience, Granularity, TimeRange};
use optel_collector::{AppState, now_ms};
use optel_wire::catalog::{
    AttributeKind, AttributeSpec, Catalog, EventSpec, MeasurementSpec, PhaseSpec, Unit,
};
use optel_wire::{AttributeValue, Batch, Event, EventType, Phase, Timestamp};

use crate::args::StoreArgs;

/// `optel bench ...`
#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// Drive realistic gzip'd batches from many simulated installs over HTTP for a fixed time;
    /// report events/s and request latency. Without --endpoint, starts a collector in this
    /// process on 127.0.0.1 (rate limits off) over --database or a temporary SQLite store.
    Ingest(IngestArgs),
    /// Fill a store with generated events (directly, not over HTTP): N events across D days
    /// and I installs, rollups included.
    Fill(FillArgs),
    /// Time every dashboard query of a project over a store.
    Query(QueryArgs),
}

/// Flags of `optel bench ingest`.
#[derive(Debug, clap::Args)]
pub struct IngestArgs {
    /// How long to drive load, seconds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub seconds: u64,
    /// Concurrent HTTP clients.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub clients: u64,
    /// Events per batch.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub batch: u64,
    /// Simulated installs.
    #[arg(long, default_value_t = 10_000)]
    pub installs: u64,
    /// Event ids: `sdk` as the optel SDK makes them (a random 16-byte seed per process run,
    /// XOR a sequence number in the last 8 bytes, so one batch's ids share a prefix), or
    /// `random` (an independent UUID v4 per event, as other clients may send: the worst case
    /// for the collector's unique index).
    #[arg(long, value_enum, default_value_t = IdScheme::Sdk)]
    pub ids: IdScheme,
    /// Collector URL (http://127.0.0.1:PORT); needs --key.
    #[arg(long, requires = "key")]
    pub endpoint: Option<String>,
    /// Ingest key for --endpoint.
    #[arg(long)]
    pub key: Option<String>,
    /// Durability of the in-process collector's commits (as `optel serve --durability`).
    #[arg(long, value_enum, default_value_t = crate::args::Durability::CrashSafe)]
    pub durability: crate::args::Durability,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub store: StoreArgs,
}

/// How `optel bench ingest` makes event ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum IdScheme {
    /// As the optel SDK: one random seed per batch, XOR the event's sequence number.
    Sdk,
    /// An independent random UUID v4 per event.
    Random,
}

/// Flags of `optel bench fill`.
#[derive(Debug, clap::Args)]
pub struct FillArgs {
    /// Project to fill (created if missing).
    #[arg(long, default_value = "bench")]
    pub project: String,
    /// Events to generate.
    #[arg(long, default_value_t = 10_000_000)]
    pub events: u64,
    /// Distinct installs.
    #[arg(long, default_value_t = 100_000)]
    pub installs: u64,
    /// Days back from now the events spread over.
    #[arg(long, default_value_t = 30)]
    pub days: u64,
    /// Attributes the bench catalog declares on every command, 0 to 3 (`profile`: enum of 4
    /// values, `jobs`: int in 4 buckets, `cached`: bool), to measure rollup growth per declared
    /// attribute. Every batch is schema version 2 and carries the catalog; commands have two
    /// phases, and 4 % of events are `files` measurements.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(0..=3))]
    pub attributes: u8,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub store: StoreArgs,
}

/// Flags of `optel bench query`.
#[derive(Debug, clap::Args)]
pub struct QueryArgs {
    /// Project to query.
    #[arg(long, default_value = "bench")]
    pub project: String,
    /// Look-back of every query.
    #[arg(long, default_value = "30d", value_parser = crate::args::parse_since)]
    pub since: Duration,
    /// Runs of each query.
    #[arg(long, default_value_t = 10)]
    pub runs: u32,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub store: StoreArgs,
}

pub(crate) fn run(cmd: BenchCommand) -> Result<()> {
    match cmd {
        BenchCommand::Ingest(a) => ingest(a),
        BenchCommand::Fill(a) => fill(a),
        BenchCommand::Query(a) => query_bench(a),
    }
}

/// Most request bodies `optel bench ingest` prepares before the clock starts (~6 KB each).
const MAX_PREPARED_BODIES: u64 = 30_000;

/// A small xorshift generator: fast, deterministic per seed, good enough for load shapes.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn uuid(&mut self) -> String {
        let a = self.next();
        let b = self.next();
        Self::format_uuid(a, b)
    }
    /// A UUID v4 from two words, as the SDK builds ids (the second word holds the part it
    /// XORs a sequence number into).
    fn format_uuid(a: u64, b: u64) -> String {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&a.to_be_bytes());
        bytes[8..].copy_from_slice(&b.to_be_bytes());
        optel_wire::format_uuid_v4(bytes)
    }
}

fn seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(7);
    t ^ u64::from(std::process::id()).rotate_left(32)
}

const COMMANDS: [&str; 12] = [
    "build", "test", "run", "check", "fmt", "init", "publish", "clean", "doc", "add", "remove",
    "update",
];
const FEATURES: [&str; 6] = ["cache", "remote", "watch", "color", "profile", "lockfile"];
const METHODS: [&str; 4] = ["Db::connect", "Db::query", "Client::send", "Cache::get"];
const VERSIONS: [&str; 5] = ["1.0.0", "1.1.0", "1.2.0", "1.2.1", "2.0.0-beta.1"];
const PLATFORMS: [(&str, &str); 5] = [
    ("linux", "x86_64"),
    ("macos", "aarch64"),
    ("windows", "x86_64"),
    ("linux", "aarch64"),
    ("macos", "x86_64"),
];

/// The catalog of `optel bench fill`: every command with the first `attributes` of `profile`
/// (enum), `jobs` (int buckets) and `cached` (bool) and phases `resolve` and `compile`; the
/// features and methods; measurement `files`.
fn bench_catalog(attributes: u8) -> Catalog {
    let mut c = Catalog::default();
    for name in COMMANDS {
        let mut spec = EventSpec::new(name, "A bench command.");
        let declared = [
            AttributeSpec::new(
                "profile",
                "Build profile.",
                AttributeKind::Enum {
                    values: PROFILES.iter().map(|v| (*v).to_owned()).collect(),
                },
            ),
            AttributeSpec::new(
                "jobs",
                "Parallel jobs.",
                AttributeKind::Int {
                    buckets: vec![2, 8, 32],
                },
            ),
            AttributeSpec::new("cached", "Whether the cache was warm.", AttributeKind::Bool),
        ];
        spec.attributes = declared.into_iter().take(attributes.into()).collect();
        for phase in PHASES {
            spec.phases.push(PhaseSpec {
                name: phase.into(),
                purpose: "A bench phase.".into(),
            });
        }
        c.commands.push(spec);
    }
    c.features = FEATURES
        .iter()
        .map(|f| EventSpec::new(*f, "A bench feature."))
        .collect();
    c.methods = METHODS
        .iter()
        .map(|m| EventSpec::new(*m, "A bench method."))
        .collect();
    c.measurements.push(MeasurementSpec {
        name: "files".into(),
        purpose: "Files built.".into(),
        unit: Unit::Count,
    });
    c
}

const PROFILES: [&str; 4] = ["debug", "release", "bench", "test"];
const PHASES: [&str; 2] = ["resolve", "compile"];

/// Makes `batch` what a schema version 2 SDK sends with [`bench_catalog`]: each command gets
/// the three attributes (only the declared ones become breakdowns) and phases `resolve` and
/// `compile` splitting its duration, and every other method event becomes a `files`
/// measurement (4 % of events).
fn add_v2_facts(rng: &mut Rng, batch: &mut Batch, catalog: &Catalog) {
    batch.catalog_hash = Some(catalog.hash());
    batch.catalog = Some(catalog.clone());
    for e in &mut batch.events {
        match e.event_type {
            EventType::Command => {
                let us = e.duration_ms.unwrap_or(1).max(1) * 1_000;
                let split = rng.below(us);
                e.phases = PHASES
                    .iter()
                    .zip([(0, split), (split, us - split)])
                    .map(|(name, (start_us, duration_us))| Phase {
                        name: (*name).into(),
                        parent: None,
                        start_us,
                        duration_us,
                        success: true,
                    })
                    .collect();
                let profile = PROFILES[rng.below(PROFILES.len() as u64) as usize];
                e.metadata
                    .insert("profile".into(), AttributeValue::String(profile.into()));
                e.metadata
                    .insert("jobs".into(), AttributeValue::Int(rng.below(64) as i64));
                e.metadata
                    .insert("cached".into(), AttributeValue::Bool(rng.below(2) == 0));
            }
            EventType::Method if rng.below(2) == 0 => {
                e.event_type = EventType::Measurement;
                e.name = "files".into();
                e.value = Some(rng.below(500) as f64);
            }
            _ => {}
        }
    }
}

/// A realistic batch of install `install`: mostly commands (10 % failing), some features and
/// methods, timestamps in `[from_ms, to_ms)`, event ids as the optel SDK makes them.
fn make_batch(rng: &mut Rng, install: u64, events: u64, from_ms: i64, to_ms: i64) -> Batch {
    make_batch_with(rng, install, events, from_ms, to_ms, IdScheme::Sdk)
}

/// [`make_batch`] with the given event id scheme.
fn make_batch_with(
    rng: &mut Rng,
    install: u64,
    events: u64,
    from_ms: i64,
    to_ms: i64,
    ids: IdScheme,
) -> Batch {
    let (os, arch) = PLATFORMS[(install % PLATFORMS.len() as u64) as usize];
    let version = VERSIONS[((install / 7) % VERSIONS.len() as u64) as usize];
    let mut batch = Batch::new(
        "bench",
        version,
        format!(
            "{:032x}",
            u128::from(install).wrapping_mul(0x9e37_79b9_7f4a_7c15)
        ),
        os,
        arch,
    );
    let session = rng.uuid();
    let (seed_a, seed_b) = (rng.next(), rng.next());
    let mut seq = 0u64;
    let mut next_id = |rng: &mut Rng| match ids {
        IdScheme::Random => rng.uuid(),
        IdScheme::Sdk => {
            seq += 1;
            Rng::format_uuid(seed_a, seed_b ^ seq)
        }
    };
    let span = (to_ms - from_ms).max(1) as u64;
    for _ in 0..events {
        let r = rng.below(100);
        let ts = Timestamp::from_unix_ms(from_ms + rng.below(span) as i64);
        let mut e = if r < 80 {
            // Zipf-like: low indexes far more common.
            let i = (rng.below(COMMANDS.len() as u64) * rng.below(COMMANDS.len() as u64))
                / COMMANDS.len() as u64;
            let mut e = Event::new(
                next_id(rng),
                EventType::Command,
                COMMANDS[i as usize],
                ts,
                session.clone(),
            );
            e.duration_ms = Some(5 + rng.below(2_000));
            let ok = rng.below(10) != 0;
            e.success = Some(ok);
            if !ok {
                e.error_code = Some(format!("E{}", rng.below(4)));
            }
            e
        } else if r < 92 {
            let name = FEATURES[rng.below(FEATURES.len() as u64) as usize];
            Event::new(next_id(rng), EventType::Feature, name, ts, session.clone())
        } else {
            let name = METHODS[rng.below(METHODS.len() as u64) as usize];
            Event::new(next_id(rng), EventType::Method, name, ts, session.clone())
        };
        e.metadata.clear();
        batch.events.push(e);
    }
    batch
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn ingest(args: IngestArgs) -> Result<()> {
    // Without an endpoint: a collector in this process, on its own runtime.
    let mut _scratch = None;
    let mut local = None;
    let (endpoint, key, store_name) = match (&args.endpoint, &args.key) {
        (Some(e), Some(k)) => (e.trim_end_matches('/').to_owned(), k.clone(), e.clone()),
        _ => {
            let store = if args.store.database.is_some() || args.store.data_dir.is_some() {
                args.store.open_with(args.durability)?
            } else {
                let dir = tempfile::Builder::new().prefix("optel-bench-").tempdir()?;
                let s =
                    optel_collector::storage::open_with(None, dir.path(), args.durability.into())?;
                _scratch = Some(dir);
                s
            };
            let project = format!("bench-{:x}", seed() & 0xffff_ffff);
            let key = crate::projects::create_project(&*store, &project)?;
            let state = AppState::with_config(
                store.clone(),
                None,
                RateConfig {
                    per_key: 0,
                    per_addr: 0,
                    per_browser_key: 0,
                },
                1_024,
            )?;
            let rt = crate::serve::runtime()?;
            let listener = rt.block_on(tokio::net::TcpListener::bind(("127.0.0.1", 0)))?;
            let addr = listener.local_addr()?;
            let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
            let server = rt.spawn(optel_collector::serve(listener, state, async move {
                let _ = stop_rx.await;
            }));
            let name = match &_scratch {
                Some(dir) => format!("sqlite (temporary, {})", dir.path().display()),
                None => format!("{} ({})", store.backend(), args.store.describe()),
            };
            let durability = optel_collector::storage::Durability::from(args.durability);
            let name = format!("{name}, durability {}", durability.as_str());
            local = Some((rt, stop_tx, server, store, project));
            (format!("http://{addr}"), key, name)
        }
    };
    // Request bodies are generated and gzip'd before the clock starts (up to
    // MAX_PREPARED_BODIES, enough for ~150k events/s at batches of 100 for the whole run), so
    // the figure measures the collector, not this generator's JSON and gzip, which share the
    // machine's cores. Past the prepared ones, clients generate bodies on the fly.
    let prepared_total = (args.seconds * 1_500).min(MAX_PREPARED_BODIES);
    let per_client = prepared_total.div_ceil(args.clients) as usize;
    eprintln!(
        "preparing {} gzip'd request bodies of {} events ...",
        per_client as u64 * args.clients,
        args.batch
    );
    let stop = Arc::new(AtomicBool::new(false));
    let barrier = Arc::new(std::sync::Barrier::new(args.clients as usize + 1));
    let mut threads = Vec::new();
    for c in 0..args.clients {
        let url = format!("{endpoint}/v1/events");
        let key = key.clone();
        let stop = stop.clone();
        let barrier = barrier.clone();
        let args_batch = args.batch;
        let installs = args.installs;
        let ids = args.ids;
        let seconds = args.seconds;
        threads.push(std::thread::spawn(move || -> (Vec<Duration>, u64, u64) {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .build()
                .into();
            let mut rng = Rng::new(seed() ^ (c + 1).wrapping_mul(0x2545_f491_4f6c_dd1d));
            let body = |rng: &mut Rng| {
                let now = now_ms();
                let install = rng.below(installs);
                let batch = make_batch_with(rng, install, args_batch, now - 3_600_000, now, ids);
                let json = serde_json::to_vec(&batch).unwrap_or_default();
                let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                let _ = gz.write_all(&json);
                gz.finish().unwrap_or_default()
            };
            let mut prepared: std::collections::VecDeque<Vec<u8>> =
                (0..per_client).map(|_| body(&mut rng)).collect();
            barrier.wait();
            let deadline = Instant::now() + Duration::from_secs(seconds);
            let mut lat = Vec::new();
            let (mut ok_events, mut failed) = (0, 0);
            while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
                let body = prepared.pop_front().unwrap_or_else(|| body(&mut rng));
                let t = Instant::now();
                let resp = agent
                    .post(&url)
                    .header("Authorization", &format!("Bearer {key}"))
                    .header("Content-Type", "application/json")
                    .header("Content-Encoding", "gzip")
                    .send(&body[..]);
                match resp {
                    Ok(mut r) => {
                        let mut sink = Vec::new();
                        let _ = r.body_mut().as_reader().read_to_end(&mut sink);
                        lat.push(t.elapsed());
                        if r.status().is_success() {
                            ok_events += args_batch;
                        } else {
                            failed += 1;
                        }
                    }
                    Err(_) => failed += 1,
                }
            }
            (lat, ok_events, failed)
        }));
    }
    barrier.wait();
    let started = Instant::now();
    eprintln!(
        "driving {} clients x batches of {} events for {} s against {endpoint} ...",
        args.clients, args.batch, args.seconds
    );
    let mut lat = Vec::new();
    let (mut events, mut failed) = (0u64, 0u64);
    for t in threads {
        if let Ok((l, e, f)) = t.join() {
            lat.extend(l);
            events += e;
            failed += f;
        }
    }
    let elapsed = started.elapsed();
    lat.sort_unstable();
    println!("store:          {store_name}");
    println!("duration:       {:.1} s", elapsed.as_secs_f64());
    println!("requests:       {} ({} failed)", lat.len(), failed);
    println!(
        "events stored:  {} ({:.0} events/s)",
        events,
        events as f64 / elapsed.as_secs_f64()
    );
    println!(
        "latency:        p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        ms(percentile(&lat, 0.5)),
        ms(percentile(&lat, 0.99)),
        ms(lat.last().copied().unwrap_or_default())
    );
    if let Some((rt, stop_tx, server, store, project)) = local {
        let _ = stop_tx.send(());
        let _ = rt.block_on(server);
        let p = store
            .project_by_name(&project)?
            .context("bench project vanished")?;
        let counted = query::overview(
            &*store,
            &p,
            TimeRange::last(Duration::from_secs(2 * 86_400), now_ms()),
            Audience::Admin,
        )?;
        println!(
            "verified:       {} events in the rollups",
            counted.events.unwrap_or(0)
        );
        if counted.events != Some(events) {
            bail!(
                "stored {} events but {events} were acknowledged",
                counted.events.unwrap_or(0)
            );
        }
    }
    Ok(())
}

fn fill(args: FillArgs) -> Result<()> {
    let store = args.store.open()?;
    let project = match store.project_by_name(&args.project)? {
        Some(p) => p,
        None => {
            crate::projects::create_project(&*store, &args.project)?;
            store
                .project_by_name(&args.project)?
                .context("project vanished")?
        }
    };
    let now = now_ms();
    let from = now - (args.days as i64) * 86_400_000 + 3_600_000;
    let mut rng = Rng::new(seed());
    let catalog = bench_catalog(args.attributes);
    let started = Instant::now();
    let mut done = 0u64;
    const PER_BATCH: u64 = 100;
    const PER_COMMIT: usize = 50;
    while done < args.events {
        let mut group = Vec::with_capacity(PER_COMMIT);
        for _ in 0..PER_COMMIT {
            if done >= args.events {
                break;
            }
            let n = PER_BATCH.min(args.events - done);
            // One batch = one install on one day: a realistic upload of a day's use.
            let day_start = from + rng.below(args.days) as i64 * 86_400_000;
            let end = (day_start + 86_400_000).min(now);
            let install = rng.below(args.installs);
            let mut batch = make_batch(&mut rng, install, n, day_start.min(end - 1), end);
            add_v2_facts(&mut rng, &mut batch, &catalog);
            group.push(batch);
            done += n;
        }
        let refs: Vec<(i64, &Batch)> = group.iter().map(|b| (project.id, b)).collect();
        store.insert_batches(&refs, now)?;
        if done % 1_000_000 < PER_BATCH * PER_COMMIT as u64 {
            eprintln!(
                "  {done} events, {:.0} events/s",
                done as f64 / started.elapsed().as_secs_f64()
            );
        }
    }
    let took = started.elapsed();
    println!(
        "filled {} ({}) with {done} events over {} days and up to {} installs in {:.1} s ({:.0} events/s)",
        args.project,
        store.backend(),
        args.days,
        args.installs,
        took.as_secs_f64(),
        done as f64 / took.as_secs_f64()
    );
    Ok(())
}

fn query_bench(args: QueryArgs) -> Result<()> {
    let store = args.store.open()?;
    let project = store
        .project_by_name(&args.project)?
        .with_context(|| format!("no project named {:?}", args.project))?;
    let range = TimeRange::last(args.since, now_ms());
    let s = &*store;
    type Q<'a> = Box<dyn Fn() -> optel_collector::storage::Result<usize> + 'a>;
    let p = &project;
    let a = Audience::Admin;
    let queries: Vec<(&str, Q<'_>)> = vec![
        (
            "overview",
            Box::new(move || query::overview(s, p, range, a).map(|_| 1)),
        ),
        (
            "timeseries",
            Box::new(move || {
                query::timeseries(s, p, range, Granularity::Day, a).map(|t| t.buckets.len())
            }),
        ),
        (
            "commands",
            Box::new(move || query::commands(s, p, range, a).map(|r| r.rows.commands.len())),
        ),
        (
            "errors",
            Box::new(move || query::errors(s, p, range, a).map(|r| r.rows.errors.len())),
        ),
        (
            "versions",
            Box::new(move || {
                query::versions(s, p, range, Granularity::Week, a).map(|r| r.rows.versions.len())
            }),
        ),
        (
            "platforms",
            Box::new(move || query::platforms(s, p, range, a).map(|r| r.rows.platforms.len())),
        ),
        (
            "features",
            Box::new(move || query::features(s, p, range, a).map(|r| r.rows.features.len())),
        ),
        (
            "release health",
            Box::new(move || {
                query::release_health(s, p, range, None, None).map(|r| r.commands.len())
            }),
        ),
        (
            "breakdowns",
            Box::new(move || query::breakdowns(s, p, range).map(|r| r.breakdowns.len())),
        ),
        (
            "phases",
            Box::new(move || query::phases(s, p, range).map(|r| r.phases.len())),
        ),
        (
            "measurements",
            Box::new(move || query::measurements(s, p, range).map(|r| r.measurements.len())),
        ),
        (
            "adoption",
            Box::new(move || query::adoption(s, p, range).map(|r| r.series.len())),
        ),
        (
            "stats (every list)",
            Box::new(move || s.stats(p, range).map(|r| r.commands.len())),
        ),
        (
            "public commands (k=5)",
            Box::new(move || {
                query::commands(s, p, range, Audience::Public { k: 5 })
                    .map(|r| r.rows.commands.len())
            }),
        ),
    ];
    println!(
        "{:<22} {:>8} {:>8} {:>6}",
        "query", "p50 ms", "max ms", "rows"
    );
    for (name, q) in queries {
        let mut times = Vec::new();
        let mut rows = 0;
        for _ in 0..args.runs.max(1) {
            let t = Instant::now();
            rows = q()?;
            times.push(t.elapsed());
        }
        times.sort_unstable();
        println!(
            "{name:<22} {:>8.1} {:>8.1} {rows:>6}",
            ms(percentile(&times, 0.5)),
            ms(times.last().copied().unwrap_or_default())
        );
    }
    Ok(())
}
