//! `optel demo`: the main job end to end on one machine. A collector on an embedded SQLite
//! database, the instrumented example tool `acme` run as real processes for several simulated
//! installs (each with its own HOME, hence its own install secret and queue), including
//! failures, then the stats those runs produced.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use optel_collector::AppState;
use optel_collector::storage::SqliteStore;

use crate::args::DemoArgs;

/// Exit budget given to `acme` in the demo: generous, so that every run's events are delivered
/// before the stats are read (a real tool keeps the 40 ms default).
const DEMO_EXIT_TIMEOUT_MS: &str = "5000";

pub(crate) fn run(args: DemoArgs) -> Result<()> {
    let acme = match args.acme {
        Some(path) => path,
        None => acme_beside_this_binary()?,
    };
    let scratch = tempfile::Builder::new().prefix("optel-demo-").tempdir()?;
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| scratch.path().join("collector"));
    let store: Arc<dyn optel_collector::storage::Store> = Arc::new(SqliteStore::open(&data_dir)?);
    let project = "acme";
    let key = crate::projects::create_project(store.as_ref(), project)
        .with_context(|| format!("cannot create the demo project in {}", data_dir.display()))?;

    let rt = crate::serve::runtime()?;
    let listener = rt.block_on(async {
        match tokio::net::TcpListener::bind(args.listen).await {
            Ok(l) => Ok(l),
            Err(_) => tokio::net::TcpListener::bind((args.listen.ip(), 0)).await,
        }
    })?;
    let addr = listener.local_addr()?;
    // A fresh random admin token for this demo's dashboard and query routes.
    let admin_token = demo_admin_token()?;
    let state = AppState::new(store.clone(), Some(admin_token.clone().into()))?;
    rt.spawn(optel_collector::serve(
        listener,
        state,
        crate::serve::shutdown_signal(),
    ));
    let endpoint = format!("http://{addr}");
    eprintln!(
        "collector listening on {endpoint} (database {})",
        data_dir.display()
    );
    eprintln!(
        "driving {} as {} simulated installs...",
        acme.display(),
        args.installs
    );

    let mut runs = 0;
    let mut failures = 0;
    for install in 0..args.installs {
        let home = scratch.path().join(format!("install-{install}"));
        let work = home.join("work");
        std::fs::create_dir_all(&work)?;
        let acme_run = |cmd_args: &[&str]| -> Result<bool> {
            // Each simulated install is a new user on a developer machine (never a CI runner).
            let status = acme_command(&acme, &home)
                .args(cmd_args)
                .current_dir(&work)
                .env("ACME_TELEMETRY", "on")
                .env("ACME_TELEMETRY_ENDPOINT", &endpoint)
                .env("ACME_TELEMETRY_KEY", &key)
                .env("ACME_TELEMETRY_EXIT_TIMEOUT_MS", DEMO_EXIT_TIMEOUT_MS)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .with_context(|| format!("cannot run {}", acme.display()))?;
            Ok(status.success())
        };
        let mut log = Vec::new();
        for step in scenario(install, &work) {
            let cmd_args = match step {
                Step::Acme(cmd_args) => cmd_args,
                Step::Write(path, text) => {
                    if let Some(dir) = path.parent() {
                        std::fs::create_dir_all(dir)?;
                    }
                    std::fs::write(&path, text)?;
                    continue;
                }
            };
            let args: Vec<&str> = cmd_args.iter().map(String::as_str).collect();
            let ok = acme_run(&args)?;
            runs += 1;
            if !ok {
                failures += 1;
            }
            log.push(format!("{}{}", args[0], if ok { "" } else { " (failed)" }));
        }
        eprintln!(
            "  install {}/{}: acme {}",
            install + 1,
            args.installs,
            log.join(", ")
        );
    }
    eprintln!("{runs} runs of acme, {failures} failed on purpose\n");

    let source = crate::stats::Source::http(endpoint.clone(), admin_token.clone());
    let report =
        crate::stats::Report::fetch(&source, project, std::time::Duration::from_secs(86_400))?;
    print!("{}", report.render_for_stdout(clap::ColorChoice::Auto));
    println!("\ncollector: {endpoint}");
    println!(
        "see these numbers again: optel stats --project {project} --data-dir {}{}",
        data_dir.display(),
        if args.data_dir.is_some() {
            ""
        } else {
            "  (while the demo runs; --data-dir DIR keeps them)"
        }
    );
    if args.no_serve {
        match &args.data_dir {
            Some(dir) => println!(
                "dashboard: run `optel serve --data-dir {} --admin-token TOKEN` and open \
                 http://127.0.0.1:4318/",
                dir.display()
            ),
            None => println!("dashboard: run `optel demo` without --no-serve to browse it"),
        }
        return Ok(());
    }
    println!("dashboard: {endpoint}/  (sign in with the admin token {admin_token})");
    println!("serving until Ctrl-C...");
    rt.block_on(crate::serve::shutdown_signal());
    Ok(())
}

/// One step of a simulated install's session.
enum Step {
    /// Run `acme` with these arguments.
    Acme(Vec<String>),
    /// Write a file, as a user editing their project would.
    Write(PathBuf, &'static str),
}

/// What one simulated install does, varied by its number so that the stats show different
/// usage, including failures with several error codes, and every part of acme's event
/// catalog: the `profile` attribute both ways (`build --release` on every other install), the
/// `resolve` and `compile` phases, the `files` measurement and the `strict` feature
/// (`check --strict` on every third install).
fn scenario(install: u32, work: &Path) -> Vec<Step> {
    let acme = |cmd: &str, dir: &Path| Step::Acme(vec![cmd.to_owned(), dir.display().to_string()]);
    let with_flag = |cmd: &str, dir: &Path, flag: &str| {
        Step::Acme(vec![
            cmd.to_owned(),
            dir.display().to_string(),
            flag.to_owned(),
        ])
    };
    let app = work.join("app");
    let mut steps = vec![acme("init", &app), acme("check", &app)];
    if install.is_multiple_of(3) {
        steps.push(with_flag("check", &app, "--strict"));
    }
    for _ in 0..=(install % 3) {
        steps.push(acme("build", &app));
    }
    if install % 2 == 1 {
        steps.push(with_flag("build", &app, "--release"));
    }
    steps.push(acme("test", &app));
    if install % 2 == 1 {
        // An expectation the build output does not meet: `acme test` fails with E_TEST_FAILED.
        steps.push(Step::Write(
            app.join("tests").join("farewell.expect"),
            "goodbye\n",
        ));
        steps.push(acme("test", &app));
    }
    if install.is_multiple_of(3) {
        steps.push(acme("build", &work.join("not-a-project")));
    }
    if install == 1 {
        let broken = work.join("broken");
        steps.push(Step::Write(broken.join("acme.toml"), "[package\nname = "));
        steps.push(acme("check", &broken));
    }
    steps
}

/// A random admin token for the demo collector: `demo-` and 32 hex digits (128 random bits).
fn demo_admin_token() -> Result<String> {
    let key = optel_collector::generate_ingest_key().context("cannot generate a token")?;
    let random = key.trim_start_matches(optel_collector::INGEST_KEY_PREFIX);
    Ok(format!("demo-{random}"))
}

// Why the demo has its own two helpers rather than those of `optel-test-support`: this is the
// shipped binary, run by users who may have no cargo and no source tree, so it never builds
// anything and looks only beside itself (the tests' version runs `cargo build` and also looks in
// the parent directory, where cargo puts test binaries); and a shipped crate does not depend on
// a test crate.

/// The example tool `acme` beside the running `optel` (where `cargo build -p acme` puts it
/// when `optel` was built in the same target directory and profile).
fn acme_beside_this_binary() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find the current executable")?;
    let file = format!("acme{}", std::env::consts::EXE_SUFFIX);
    if let Some(found) = exe
        .parent()
        .map(|dir| dir.join(&file))
        .filter(|p| p.is_file())
    {
        return Ok(found);
    }
    bail!(
        "cannot find the example tool `acme` next to {}: build it in the same profile as this \
         optel (`cargo build -p acme`, or `cargo build --release -p acme`), or pass its path \
         with --acme PATH",
        exe.display()
    )
}

/// A command for `acme` run as a new user whose home is `home`, in a clean environment (only
/// `PATH` and `HOME`): none of the caller's telemetry switches, proxy, XDG directories or CI
/// variables (which would make every simulated install share one CI pseudonym) leak in.
fn acme_command(acme: &Path, home: &Path) -> std::process::Command {
    let mut cmd = std::process::Command::new(acme);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home);
    cmd
}
