//! Exit-latency harness: how long does telemetry add to the exit of a real tool, healthy and in
//! every failure mode, and does every event arrive in the end?
//!
//! ```text
//! cargo build --release -p acme -p optel-cli --examples
//! cargo run --release -p optel-cli --example exit_latency -- [--runs 200] [--flap-runs 1000]
//! ```
//!
//! Runs `acme check DIR` as a real process `--runs` times in each mode (interleaved, so drift
//! affects all modes alike): telemetry off; on with a healthy collector; on with the endpoint
//! refusing connections; on with a blackhole (accepts, never answers); on with a listener that
//! answers after 10 s; on with `HTTPS_PROXY` pointing at a dead port. Prints the median and p99
//! wall time of each mode and what it adds to the off case. Then waits for every circuit
//! breaker to close, runs `acme` once per install against the healthy collector to deliver
//! what was queued, and checks the collector holds exactly one event per run with telemetry on.
//!
//! Then the flapping check: `--flap-runs` runs over 4 installs, two processes at a time, with
//! the collector stopped and restarted every 50 runs; after the drain every event must be in
//! the collector exactly once and every queue empty.
//!
//! Everything binds 127.0.0.1 and stops by itself. The `CI` variable is removed from `acme`'s
//! environment: in CI the SDK would use its 2 s blocking flush instead of the exit budget.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail, ensure};
use optel_test_support::{self as harness, LocalCollector};

#[derive(Debug)]
struct Mode {
    name: &'static str,
    /// `None`: telemetry off.
    endpoint: Option<String>,
    proxy: Option<String>,
    home: PathBuf,
    times: Vec<Duration>,
}

#[derive(Debug, Clone, Copy)]
struct Settings {
    runs: usize,
    flap_runs: usize,
}

fn parse_args() -> Result<Settings> {
    let mut settings = Settings {
        runs: 200,
        flap_runs: 1_000,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("flag {flag:?} needs a value"))?;
        let n: usize = value
            .parse()
            .with_context(|| format!("{flag} {value:?} is not a count"))?;
        ensure!(
            (1..=100_000).contains(&n),
            "{flag} {n} is out of range: use 1 to 100000"
        );
        match flag.as_str() {
            "--runs" => settings.runs = n,
            "--flap-runs" => settings.flap_runs = n,
            other => bail!("unknown flag {other:?}: use --runs N and --flap-runs N"),
        }
    }
    Ok(settings)
}

fn main() -> Result<()> {
    let settings = parse_args()?;
    let acme = harness::locate_example_binary("acme")?;
    let scratch = tempfile::tempdir()?;
    let app = scratch.path().join("app");
    let status = Command::new(&acme)
        .arg("init")
        .arg(&app)
        .env("ACME_TELEMETRY", "off")
        .stdout(Stdio::null())
        .status()?;
    ensure!(status.success(), "acme init failed");

    let mut collector = LocalCollector::start(&scratch.path().join("collector"), "acme")?;
    let healthy = collector.endpoint();
    let refusing = format!("http://{}", harness::refusing_addr()?);
    let blackhole = format!("http://{}", harness::blackhole()?);
    let slow = format!(
        "http://{}",
        harness::slow_responder(Duration::from_secs(10))?
    );
    let dead_proxy = format!("http://{}", harness::refusing_addr()?);
    // Each mode is an install with a home of its own; homes exist, as a real user's does (the
    // SDK never creates a missing one: telemetry would be off and the figures meaningless).
    let home = |name: &str| {
        let h = scratch.path().join(format!("home-{name}"));
        let _ = std::fs::create_dir_all(&h);
        h
    };
    let mut modes = vec![
        mode("off", None, None, home("off")),
        mode("healthy", Some(&healthy), None, home("healthy")),
        mode("refused", Some(&refusing), None, home("refused")),
        mode("blackhole", Some(&blackhole), None, home("blackhole")),
        mode("answers-after-10s", Some(&slow), None, home("slow")),
        mode(
            "dead-https-proxy",
            Some(&healthy),
            Some(&dead_proxy),
            home("proxy"),
        ),
    ];

    eprintln!(
        "running acme check {} times in each of {} modes...",
        settings.runs,
        modes.len()
    );
    for _ in 0..settings.runs {
        for m in &mut modes {
            let started = Instant::now();
            let ok = acme_cmd(&acme, &app, &m.home, m.endpoint.as_deref(), collector.key())
                .envs(m.proxy.iter().map(|p| ("HTTPS_PROXY", p.as_str())))
                .status()?
                .success();
            m.times.push(started.elapsed());
            ensure!(ok, "acme check failed in mode {}", m.name);
        }
    }
    let off_median = percentile(&mut modes[0].times.clone(), 50.0);
    println!(
        "{:<20} {:>10} {:>10} {:>14} {:>14}",
        "mode", "median", "p99", "added median", "added p99"
    );
    for m in &modes {
        let mut t = m.times.clone();
        let (median, p99) = (percentile(&mut t, 50.0), percentile(&mut t, 99.0));
        println!(
            "{:<20} {:>10} {:>10} {:>14} {:>14}",
            m.name,
            ms(median),
            ms(p99),
            signed_ms(median, off_median),
            signed_ms(p99, off_median)
        );
    }

    // Deliver what the failure modes queued, once the endpoint is healthy.
    let homes: Vec<PathBuf> = modes[1..].iter().map(|m| m.home.clone()).collect();
    let drained = drain(&acme, &app, &collector, &homes)?;
    let expected = (settings.runs * (modes.len() - 1) + drained) as u64;
    let stored = collector.events()?;
    println!(
        "delivery: {stored} events stored, {expected} recorded ({} runs with telemetry on + {drained} drain runs): {}",
        settings.runs * (modes.len() - 1),
        verdict(stored == expected)
    );
    ensure!(stored == expected, "lost or duplicated events");

    flapping(
        &acme,
        &app,
        &mut collector,
        scratch.path(),
        settings.flap_runs,
    )?;
    Ok(())
}

fn mode(name: &'static str, endpoint: Option<&str>, proxy: Option<&str>, home: PathBuf) -> Mode {
    Mode {
        name,
        endpoint: endpoint.map(str::to_owned),
        proxy: proxy.map(str::to_owned),
        home,
        times: Vec::new(),
    }
}

/// `acme check APP` with a private HOME; telemetry on when `endpoint` is given.
fn acme_cmd(acme: &Path, app: &Path, home: &Path, endpoint: Option<&str>, key: &str) -> Command {
    // A clean environment: no CI (its 2 s flush budget), no exit-budget override, no proxy.
    let mut cmd = harness::tool_command(acme, home);
    cmd.arg("check")
        .arg(app)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    match endpoint {
        Some(endpoint) => cmd
            .env("ACME_TELEMETRY", "on")
            .env("ACME_TELEMETRY_ENDPOINT", endpoint)
            .env("ACME_TELEMETRY_KEY", key),
        None => cmd.env("ACME_TELEMETRY", "off"),
    };
    cmd
}

/// Waits until no install's circuit breaker is open, then runs `acme` once per install with a
/// 10 s budget against the healthy collector, until every queue is empty. Returns the number
/// of drain runs (each records one event too).
fn drain(acme: &Path, app: &Path, collector: &LocalCollector, homes: &[PathBuf]) -> Result<usize> {
    let mut runs = 0;
    for round in 0..5 {
        let latest_open = homes
            .iter()
            .filter_map(|h| {
                optel::queue_status(&data_dir(h))
                    .ok()
                    .and_then(|s| s.breaker_open_until)
            })
            .max();
        if let Some(until) = latest_open {
            let wait = until.duration_since(SystemTime::now()).unwrap_or_default();
            eprintln!(
                "waiting {} for the circuit breakers to allow a probe...",
                ms(wait)
            );
            std::thread::sleep(wait + Duration::from_millis(50));
        }
        let mut pending = 0;
        for home in homes {
            if optel::queue_status(&data_dir(home))?.pending_events == 0 && round > 0 {
                continue;
            }
            let ok = acme_cmd(
                acme,
                app,
                home,
                Some(&collector.endpoint()),
                collector.key(),
            )
            .env("ACME_TELEMETRY_EXIT_TIMEOUT_MS", "10000")
            .status()?
            .success();
            ensure!(ok, "drain run failed");
            runs += 1;
            pending += optel::queue_status(&data_dir(home))?.pending_events;
        }
        if pending == 0 {
            return Ok(runs);
        }
    }
    bail!("queues still not empty after 5 drain rounds")
}

fn flapping(
    acme: &Path,
    app: &Path,
    collector: &mut LocalCollector,
    scratch: &Path,
    runs: usize,
) -> Result<()> {
    const INSTALLS: usize = 4;
    const FLAP_EVERY: usize = 50;
    let before = collector.events()?;
    let homes: Vec<PathBuf> = (0..INSTALLS)
        .map(|i| scratch.join(format!("flap-{i}")))
        .collect();
    eprintln!(
        "flapping: {runs} runs over {INSTALLS} installs, 2 at a time, collector toggled every {FLAP_EVERY} runs..."
    );
    let started = Instant::now();
    let mut up = true;
    let mut i = 0;
    while i < runs {
        if i > 0 && i % FLAP_EVERY == 0 {
            if up {
                collector.stop();
            } else {
                collector.restart()?;
            }
            up = !up;
        }
        // Two processes of the same install at once: concurrent claims on one queue.
        let home = &homes[(i / 2) % INSTALLS];
        let pair = 2.min(runs - i);
        let mut children = Vec::new();
        for _ in 0..pair {
            children.push(
                acme_cmd(
                    acme,
                    app,
                    home,
                    Some(&collector.endpoint()),
                    collector.key(),
                )
                .spawn()?,
            );
        }
        for mut child in children {
            ensure!(child.wait()?.success(), "acme failed while flapping");
        }
        i += pair;
    }
    if !up {
        collector.restart()?;
    }
    let elapsed = started.elapsed();
    let drained = drain(acme, app, collector, &homes)?;
    let stored = collector.events()? - before;
    let expected = (runs + drained) as u64;
    let queued: u64 = homes
        .iter()
        .map(|h| optel::queue_status(&data_dir(h)).map(|s| s.pending_events))
        .sum::<std::io::Result<u64>>()?;
    println!(
        "flapping: {runs} runs in {:.1} s + {drained} drain runs; {stored} events stored, {expected} recorded, {queued} still queued: {}",
        elapsed.as_secs_f64(),
        verdict(stored == expected && queued == 0)
    );
    ensure!(
        stored == expected && queued == 0,
        "not every event was delivered exactly once"
    );
    Ok(())
}

fn data_dir(home: &Path) -> PathBuf {
    home.join(".local/share/optel/acme")
}

/// The `p`-th percentile (nearest rank) of `times`.
fn percentile(times: &mut [Duration], p: f64) -> Duration {
    times.sort();
    let rank = ((p / 100.0) * times.len() as f64).ceil() as usize;
    times
        .get(rank.saturating_sub(1).min(times.len().saturating_sub(1)))
        .copied()
        .unwrap_or_default()
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn signed_ms(a: Duration, b: Duration) -> String {
    format!("{:+.1} ms", (a.as_secs_f64() - b.as_secs_f64()) * 1e3)
}

fn verdict(ok: bool) -> &'static str {
    if ok { "OK" } else { "FAILED" }
}
