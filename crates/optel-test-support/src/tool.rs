//! The instrumented example tool (`acme`) as the tests and harnesses run it: found in the
//! cargo target directory, started as a new install in a clean environment.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// A command for an instrumented tool `bin` run as a new user whose home is `home`, in a clean
/// environment: only `PATH` and `HOME`. Nothing of the caller's environment leaks in: no
/// telemetry switches (`DO_NOT_TRACK`, `<TOOL>_TELEMETRY*`), no proxy, no XDG directories, and no
/// CI variables, which would make every run share one CI pseudonym. Used by the end-to-end
/// tests and the exit-latency harness to simulate separate installs.
pub fn tool_command(bin: &Path, home: &Path) -> std::process::Command {
    let mut cmd = std::process::Command::new(bin);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home);
    cmd
}

/// Finds an example binary (such as `acme`) built in the same cargo target directory as this
/// process: beside the current executable, or one level up (test binaries live in `deps/`).
/// When this process was started by cargo (`CARGO` is set: `cargo test`, `cargo run`), first
/// runs `cargo build -p <name>` in the same profile, so that a test never runs a binary built
/// from older sources (`cargo test -p optel-cli` does not rebuild other packages' binaries);
/// when it is up to date this takes a fraction of a second.
///
/// # Errors
/// The binary is missing and cannot be built; the message says how to build it.
pub fn locate_example_binary(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find the current executable")?;
    let file = format!("{name}{}", std::env::consts::EXE_SUFFIX);
    let dirs: Vec<&Path> = exe.ancestors().skip(1).take(2).collect();
    let find = || dirs.iter().map(|d| d.join(&file)).find(|p| p.is_file());
    // Built at most once per process and name; concurrent callers wait for that build.
    static BUILT: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let mut built = BUILT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Ok(cargo) = std::env::var("CARGO")
        && !built.iter().any(|b| b == name)
    {
        let release = dirs
            .iter()
            .any(|d| d.file_name().is_some_and(|n| n == "release"));
        if find().is_none() {
            eprintln!("building the example tool `{name}` (cargo build -p {name})...");
        }
        let mut cmd = std::process::Command::new(cargo);
        cmd.args(["build", "--quiet", "-p", name]);
        // The variables cargo set for this test (`CARGO_PKG_NAME`, `CARGO_MANIFEST_DIR`, …) are
        // the test crate's, not the example's: build scripts that watch them (ring's does)
        // would rebuild everything above them each time the nested build alternates with an
        // ordinary one.
        for (k, _) in std::env::vars_os() {
            const SET_BY_CARGO_FOR_THE_TEST: [&str; 6] = [
                "CARGO_PKG_",
                "CARGO_MANIFEST_",
                "CARGO_CRATE_",
                "CARGO_BIN_",
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
            ];
            if k.to_str()
                .is_some_and(|k| SET_BY_CARGO_FOR_THE_TEST.iter().any(|p| k.starts_with(p)))
            {
                cmd.env_remove(k);
            }
        }
        if release {
            cmd.arg("--release");
        }
        let status = cmd.status().context("cannot run cargo")?;
        if !status.success() {
            bail!("`cargo build -p {name}` failed: see its output above");
        }
        built.push(name.to_owned());
    }
    drop(built);
    if let Some(found) = find() {
        return Ok(found);
    }
    bail!(
        "cannot find the example binary `{name}` next to {}: build it with `cargo build -p {name}`",
        exe.display()
    )
}
