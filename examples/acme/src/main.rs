//! `acme`: a small build tool, instrumented with optel the way the README recommends.
//!
//! A project is a directory with an `acme.toml` manifest:
//!
//! ```toml
//! [package]
//! name = "app"
//! version = "0.1.0"
//!
//! [build]
//! sources = ["src/main.txt"]
//! ```
//!
//! - `acme init DIR` writes a new project;
//! - `acme check DIR [--strict]` validates the manifest and that every source exists; with
//!   `--strict`, also that there is at least one source and that none is empty;
//! - `acme build DIR [--release]` concatenates the sources into `DIR/target/<name>.out`
//!   (with `--release`, `DIR/target/release/<name>.out`);
//! - `acme test DIR` builds, then checks that every line of every `DIR/tests/*.expect` file
//!   appears in the output.
//!
//! Failures exit with status 1 and print `error[CODE]: message`; the code (e.g. `E_NO_MANIFEST`)
//! is what telemetry records, never the message, which can hold a path.
//!
//! Everything acme records is declared in its event catalog ([`catalog`]): the SDK drops
//! anything else, and `acme telemetry preview` shows the catalog in plain words.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use serde::Deserialize;

/// A small build tool (the optel example).
#[derive(Debug, Parser)]
#[command(name = "acme", version)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Create a new project in DIR.
    Init { dir: PathBuf },
    /// Build the project in DIR into DIR/target.
    Build {
        dir: PathBuf,
        /// Build into DIR/target/release.
        #[arg(long)]
        release: bool,
    },
    /// Validate the manifest of the project in DIR.
    Check {
        dir: PathBuf,
        /// Also require at least one source, and no empty source.
        #[arg(long)]
        strict: bool,
    },
    /// Build, then check the output against DIR/tests/*.expect.
    Test { dir: PathBuf },
    /// See and change what telemetry acme records and sends.
    Telemetry(optel::cli::TelemetryArgs),
}

impl Cmd {
    /// The command name recorded by telemetry: a fixed string, never an argument.
    fn name(&self) -> &'static str {
        match self {
            Self::Init { .. } => "init",
            Self::Build { .. } => "build",
            Self::Check { .. } => "check",
            Self::Test { .. } => "test",
            Self::Telemetry(_) => "telemetry",
        }
    }
}

/// A failure with a stable code (recorded) and a message for the user (never recorded).
#[derive(Debug)]
struct Failure {
    code: &'static str,
    message: String,
}

fn fail(code: &'static str, message: impl Into<String>) -> Failure {
    Failure {
        code,
        message: message.into(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    package: Package,
    #[serde(default)]
    build: BuildSection,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Package {
    name: String,
    version: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct BuildSection {
    #[serde(default)]
    sources: Vec<String>,
}

/// Everything acme's telemetry records, with why: the one place to audit it. The SDK drops
/// whatever is not declared here.
fn catalog() -> optel::wire::Catalog {
    use optel::wire::catalog::Unit;
    optel::CatalogBuilder::new()
        .command(
            "init",
            "Creates a new project: how often projects are started.",
        )
        .command(
            "build",
            "Builds a project: how long builds take and how often they fail.",
        )
        .enum_attribute(
            "profile",
            "Whether the build is a debug or a release build.",
            &["debug", "release"],
        )
        .phase(
            "resolve",
            "Reads the manifest and checks the sources exist.",
        )
        .phase("compile", "Concatenates the sources and writes the output.")
        .command(
            "check",
            "Validates a manifest: how often manifests are wrong.",
        )
        .command(
            "test",
            "Builds and checks the output against the expectations.",
        )
        .phase(
            "resolve",
            "Reads the manifest and checks the sources exist.",
        )
        .phase("compile", "Concatenates the sources and writes the output.")
        .feature(
            "strict",
            "`acme check --strict` was used: whether strict checks are wanted.",
        )
        .measurement(
            "files",
            "How many source files one `acme build` built.",
            Unit::Count,
        )
        .build()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The optel integration: a builder (opt-in: asked once on an interactive terminal, never
    // in CI), the `telemetry` subcommand handled before init (so `disable` never starts
    // anything), init (consent is resolved here; with telemetry off nothing else runs), a
    // command guard, and a failure code.
    let telemetry = optel::Telemetry::builder("acme", env!("CARGO_PKG_VERSION"))
        .endpoint("http://127.0.0.1:4318")
        .asking(optel::Asking::OptIn)
        .catalog(catalog);
    if let Cmd::Telemetry(args) = &cli.command {
        return args.run(&telemetry);
    }
    let _telemetry = telemetry.init();
    let mut command = optel::track_command_execution(cli.command.name());
    match &cli.command {
        Cmd::Build { release, .. } => {
            command.attr("profile", if *release { "release" } else { "debug" });
        }
        Cmd::Check { strict: true, .. } => optel::global().feature("strict"),
        _ => {}
    }
    match run(&cli.command, &command) {
        Ok(message) => {
            println!("{message}");
            ExitCode::SUCCESS
        }
        Err(failure) => {
            eprintln!("error[{}]: {}", failure.code, failure.message);
            command.fail(failure.code);
            ExitCode::FAILURE
        }
    }
}

fn run(cmd: &Cmd, command: &optel::CommandGuard) -> Result<String, Failure> {
    match cmd {
        Cmd::Init { dir } => init(dir),
        Cmd::Check { dir, strict } => {
            let m = load(dir)?;
            if *strict {
                strict_check(dir, &m)?;
            }
            Ok(format!(
                "{} {}: manifest ok",
                m.package.name, m.package.version
            ))
        }
        Cmd::Build { dir, release } => {
            let (m, out) = build(dir, *release, command)?;
            // Counted only once the build succeeded.
            optel::global().measure("files", m.build.sources.len() as f64);
            Ok(format!(
                "built {} {} into {}",
                m.package.name,
                m.package.version,
                out.display()
            ))
        }
        Cmd::Test { dir } => test(dir, command),
        Cmd::Telemetry(_) => Ok(String::new()),
    }
}

fn io_fail(what: &str, path: &Path, e: &std::io::Error) -> Failure {
    fail("E_IO", format!("cannot {what} {}: {e}", path.display()))
}

fn init(dir: &Path) -> Result<String, Failure> {
    let manifest = dir.join("acme.toml");
    if manifest.exists() {
        return Err(fail(
            "E_ALREADY_INITIALIZED",
            format!("{} exists already", manifest.display()),
        ));
    }
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| {
            !n.is_empty()
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
        .unwrap_or("app");
    let src = dir.join("src");
    fs::create_dir_all(&src).map_err(|e| io_fail("create", &src, &e))?;
    let main = src.join("main.txt");
    fs::write(&main, "hello from acme\n").map_err(|e| io_fail("write", &main, &e))?;
    let text = format!(
        "[package]\nname = \"{name}\"\nversion = \"0.1.0\"\n\n[build]\nsources = [\"src/main.txt\"]\n"
    );
    fs::write(&manifest, text).map_err(|e| io_fail("write", &manifest, &e))?;
    Ok(format!("created project {name} in {}", dir.display()))
}

fn load(dir: &Path) -> Result<Manifest, Failure> {
    let path = dir.join("acme.toml");
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(fail(
                "E_NO_MANIFEST",
                format!(
                    "no acme.toml in {}: create a project with `acme init DIR`",
                    dir.display()
                ),
            ));
        }
        Err(e) => return Err(io_fail("read", &path, &e)),
    };
    let m: Manifest = toml::from_str(&text).map_err(|e| {
        fail(
            "E_INVALID_MANIFEST",
            format!("{} is not a valid manifest: {e}", path.display()),
        )
    })?;
    if m.package.name.is_empty() {
        return Err(fail("E_INVALID_MANIFEST", "package.name must not be empty"));
    }
    if m.package.version.split('.').count() != 3
        || !m
            .package
            .version
            .split('.')
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
    {
        return Err(fail(
            "E_INVALID_MANIFEST",
            format!(
                "package.version {:?} is not MAJOR.MINOR.PATCH",
                m.package.version
            ),
        ));
    }
    for source in &m.build.sources {
        if !dir.join(source).is_file() {
            return Err(fail(
                "E_MISSING_SOURCE",
                format!("source {source:?} does not exist"),
            ));
        }
    }
    Ok(m)
}

/// `check --strict`: at least one source, and none empty.
fn strict_check(dir: &Path, m: &Manifest) -> Result<(), Failure> {
    if m.build.sources.is_empty() {
        return Err(fail("E_STRICT", "build.sources is empty (--strict)"));
    }
    for source in &m.build.sources {
        let path = dir.join(source);
        let len = fs::metadata(&path)
            .map_err(|e| io_fail("read", &path, &e))?
            .len();
        if len == 0 {
            return Err(fail(
                "E_STRICT",
                format!("source {source:?} is empty (--strict)"),
            ));
        }
    }
    Ok(())
}

fn build(
    dir: &Path,
    release: bool,
    command: &optel::CommandGuard,
) -> Result<(Manifest, PathBuf), Failure> {
    let m = {
        let resolve = command.phase("resolve");
        match load(dir) {
            Ok(m) => m,
            Err(f) => {
                resolve.fail();
                return Err(f);
            }
        }
    };
    let compile = command.phase("compile");
    let result = compile_sources(dir, &m, release);
    if result.is_err() {
        compile.fail();
    }
    result.map(|out| (m, out))
}

fn compile_sources(dir: &Path, m: &Manifest, release: bool) -> Result<PathBuf, Failure> {
    let mut output = String::new();
    for source in &m.build.sources {
        let path = dir.join(source);
        output.push_str(&fs::read_to_string(&path).map_err(|e| io_fail("read", &path, &e))?);
    }
    let target = if release {
        dir.join("target").join("release")
    } else {
        dir.join("target")
    };
    fs::create_dir_all(&target).map_err(|e| io_fail("create", &target, &e))?;
    let out = target.join(format!("{}.out", m.package.name));
    fs::write(&out, output).map_err(|e| io_fail("write", &out, &e))?;
    Ok(out)
}

fn test(dir: &Path, command: &optel::CommandGuard) -> Result<String, Failure> {
    let (_, out) = build(dir, false, command)?;
    let output = fs::read_to_string(&out).map_err(|e| io_fail("read", &out, &e))?;
    let tests = dir.join("tests");
    let mut expectations = Vec::new();
    if let Ok(entries) = fs::read_dir(&tests) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "expect") {
                let text = fs::read_to_string(&path).map_err(|e| io_fail("read", &path, &e))?;
                expectations.extend(
                    text.lines()
                        .filter(|l| !l.trim().is_empty())
                        .map(str::to_owned),
                );
            }
        }
    }
    let failed: Vec<&String> = expectations
        .iter()
        .filter(|line| !output.contains(line.as_str()))
        .collect();
    if !failed.is_empty() {
        return Err(fail(
            "E_TEST_FAILED",
            format!(
                "{} of {} expectations not met, first: {:?}",
                failed.len(),
                expectations.len(),
                failed[0]
            ),
        ));
    }
    Ok(format!("{} expectations met", expectations.len()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_catalog_is_valid() {
        assert_eq!(super::catalog().validate(), Ok(()));
    }
}
