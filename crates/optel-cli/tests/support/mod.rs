//! Helpers of the process-level tests (`mod support;`): run the `optel` binary, start and stop
//! `optel serve` on a free loopback port.

// Each test binary uses a part of these.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The `optel` binary under test.
pub const OPTEL: &str = env!("CARGO_BIN_EXE_optel");

/// Runs `optel ARGS...` with the extra environment `env`; asserts it succeeds; returns stdout.
pub fn optel<S: AsRef<OsStr>>(args: &[S], env: &[(&str, &str)]) -> String {
    let out = Command::new(OPTEL)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "optel {:?}: {}",
        args.iter().map(AsRef::as_ref).collect::<Vec<_>>(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Creates project `name` in the SQLite store in `dir`; returns its ingest key.
pub fn create_project(dir: &Path, name: &str) -> String {
    let out = optel(
        &[
            OsStr::new("projects"),
            "create".as_ref(),
            name.as_ref(),
            "--data-dir".as_ref(),
            dir.as_ref(),
        ],
        &[],
    );
    out.lines().last().unwrap().trim().to_owned()
}

/// A running `optel serve`, killed when dropped unless [`Server::stop`] stopped it.
pub struct Server {
    /// The process.
    pub child: Child,
    /// Its base URL as it announced it (`http://127.0.0.1:PORT` or `https://…`).
    pub url: String,
}

impl Server {
    /// Starts `optel serve --listen 127.0.0.1:0 ARGS...` with the extra environment `env`;
    /// returns once it announced its URL.
    pub fn start<S: AsRef<OsStr>>(args: &[S], env: &[(&str, &OsStr)]) -> Self {
        let mut child = Command::new(OPTEL)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .envs(env.iter().copied())
            .env("OPTEL_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let url = loop {
            let line = lines
                .next()
                .expect("optel serve exited before listening")
                .unwrap();
            if let Some(rest) = line.strip_prefix("optel collector listening on ") {
                break rest.split_whitespace().next().unwrap().to_owned();
            }
        };
        // Keep draining stderr so the collector never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Self { child, url }
    }

    /// Sends SIGTERM (in-flight requests finish, the writer drains) and asserts that the
    /// process exits 0 within a minute.
    pub fn stop(&mut self) {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "optel serve did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(status.success(), "optel serve exited with {status:?}");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
