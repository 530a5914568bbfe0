//! The privacy promises of the SDK, proven on the real `acme` binary: a temporary HOME, a
//! loopback listener that counts connection attempts, and no environment inherited from the
//! test runner (so a CI runner's variables cannot change the outcome).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

use std::fs;
use std::io::ErrorKind;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const ACME: &str = env!("CARGO_BIN_EXE_acme");

/// A temporary HOME, a project directory outside it, and a listener for the endpoint.
struct World {
    root: tempfile::TempDir,
    listener: TcpListener,
}

impl World {
    fn new() -> Self {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir_all(root.path().join("home")).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let w = Self { root, listener };
        let out = w.acme(&["init", "proj"], &[]);
        assert!(out.status.success(), "{out:?}");
        w
    }

    fn home(&self) -> PathBuf {
        self.root.path().join("home")
    }

    fn project(&self) -> PathBuf {
        self.root.path().join("proj")
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.listener.local_addr().unwrap())
    }

    /// Runs acme in the project's parent with only the given variables (plus HOME, PATH and
    /// the endpoint) set.
    fn acme(&self, args: &[&str], vars: &[(&str, &str)]) -> Output {
        self.acme_in(self.root.path(), args, vars)
    }

    fn acme_in(&self, cwd: &Path, args: &[&str], vars: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(ACME);
        cmd.args(args)
            .current_dir(cwd)
            .env_clear()
            .env("HOME", self.home())
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("ACME_TELEMETRY_ENDPOINT", self.endpoint())
            .env("ACME_TELEMETRY_EXIT_TIMEOUT_MS", "300")
            .stdin(Stdio::null());
        for (k, v) in vars {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    }

    /// Connection attempts so far. The child has exited when this is called, and a client's
    /// `connect` returns only once the kernel queued the connection on our listener, so every
    /// attempt is in the accept queue by now.
    fn connections(&self) -> usize {
        let mut n = 0;
        loop {
            match self.listener.accept() {
                Ok(_) => n += 1,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return n,
                Err(e) => panic!("accept: {e}"),
            }
        }
    }

    /// Every file and directory under HOME.
    fn files(&self) -> Vec<PathBuf> {
        let mut all = Vec::new();
        let mut stack = vec![self.home()];
        while let Some(dir) = stack.pop() {
            for e in fs::read_dir(&dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p.clone());
                }
                all.push(p);
            }
        }
        all.sort();
        all
    }

    fn write(&self, path: &Path, text: &str) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    fn user_config(&self) -> PathBuf {
        self.home().join(".config/optel/acme.toml")
    }

    fn shared_consent(&self) -> PathBuf {
        self.home().join(".config/optel/consent.toml")
    }

    fn data_dir(&self) -> PathBuf {
        self.home().join(".local/share/optel/acme")
    }

    fn pseudonyms(&self) -> Vec<String> {
        let out = self.acme(&["telemetry", "log"], &[]);
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .filter(|l| l.starts_with('{'))
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                v["pseudonym"].as_str().unwrap().to_owned()
            })
            .collect()
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn off_in_any_layer_writes_nothing_and_opens_no_socket() {
    // Every layer below the one under test says "on", so only that layer can turn it off.
    type Setup = fn(&World) -> Vec<(&'static str, &'static str)>;
    fn files_on(w: &World) {
        w.write(&w.user_config(), "telemetry = \"on\"\n");
        w.write(&w.shared_consent(), "telemetry = \"on\"\n");
    }
    let layers: [(&str, Setup); 7] = [
        ("DO_NOT_TRACK", |w| {
            files_on(w);
            vec![("DO_NOT_TRACK", "1"), ("ACME_TELEMETRY", "on")]
        }),
        ("DO_NOT_TRACK=true", |w| {
            w.write(&w.project().join(".optel.toml"), "telemetry = \"on\"\n");
            vec![("DO_NOT_TRACK", "true")]
        }),
        ("tool variable", |w| {
            files_on(w);
            w.write(&w.project().join(".optel.toml"), "telemetry = \"on\"\n");
            vec![("ACME_TELEMETRY", "off")]
        }),
        ("project policy", |w| {
            files_on(w);
            w.write(
                &w.project().join(".optel.toml"),
                "telemetry = \"on\"\n[tools]\nacme = \"off\"\n",
            );
            vec![]
        }),
        ("user config", |w| {
            files_on(w);
            w.write(&w.user_config(), "telemetry = \"off\"\n");
            vec![]
        }),
        ("shared consent", |w| {
            w.write(
                &w.shared_consent(),
                "telemetry = \"on\"\n[tools]\nacme = \"off\"\n",
            );
            vec![]
        }),
        (
            "author default (opt-in, not asked without a terminal)",
            |_| vec![],
        ),
    ];
    for (layer, setup) in layers {
        let w = World::new();
        let vars = setup(&w);
        let before = w.files();
        for cmd in ["check", "build", "test"] {
            let out = w.acme_in(&w.project(), &[cmd, "."], &vars);
            assert!(out.status.success(), "{layer}: {out:?}");
            assert!(out.stderr.is_empty(), "{layer}: printed {:?}", stdout(&out));
        }
        assert_eq!(w.files(), before, "{layer}: files appeared under HOME");
        assert_eq!(w.connections(), 0, "{layer}: a connection was attempted");
    }
}

#[test]
fn on_connects_and_keeps_what_is_not_delivered() {
    // The control for the test above: the same setup with consent on does write and connect,
    // so "nothing happened" there is not an accident of the harness.
    let w = World::new();
    let out = w.acme(&["check", "proj"], &[("ACME_TELEMETRY", "on")]);
    assert!(out.status.success(), "{out:?}");
    assert!(w.connections() >= 1);
    assert!(w.data_dir().join("install_secret").exists());
    // Our listener never answered: the event is still queued and shows in the preview.
    let preview = stdout(&w.acme(&["telemetry", "preview"], &[]));
    assert!(preview.contains("\"name\": \"check\""), "{preview}");
    assert!(!preview.contains(w.home().to_str().unwrap()), "{preview}");
}

#[test]
fn disable_sends_nothing_and_deletes_unsent_events() {
    let w = World::new();
    // Queue one event against an endpoint that refuses connections.
    let refused = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let out = w.acme(
        &["check", "proj"],
        &[
            ("ACME_TELEMETRY", "on"),
            ("ACME_TELEMETRY_ENDPOINT", &refused),
        ],
    );
    assert!(out.status.success());
    let queued = stdout(&w.acme(&["telemetry", "status"], &[("ACME_TELEMETRY", "on")]));
    assert!(queued.contains("queued events: 1"), "{queued}");
    assert_eq!(w.connections(), 0);

    // `disable` with the environment still saying on, and the endpoint set to our listener.
    let out = w.acme(&["telemetry", "disable"], &[("ACME_TELEMETRY", "on")]);
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    assert!(text.contains("telemetry is now off"), "{text}");
    assert!(text.contains("deleted 1 unsent events"), "{text}");
    assert!(text.contains("ACME_TELEMETRY takes precedence"), "{text}");
    assert_eq!(w.connections(), 0, "disable touched the network");

    // Later runs record and send nothing.
    let before = w.files();
    assert!(w.acme(&["build", "proj"], &[]).status.success());
    assert_eq!(w.files(), before);
    assert_eq!(w.connections(), 0);
    let status = stdout(&w.acme(&["telemetry", "status"], &[]));
    assert!(
        status.contains("telemetry: off (decided by user config file"),
        "{status}"
    );
    assert!(status.contains("queued events: 0"), "{status}");
}

#[test]
fn status_names_the_deciding_layer_and_its_file() {
    let w = World::new();
    let status =
        |vars: &[(&str, &str)]| stdout(&w.acme_in(&w.project(), &["telemetry", "status"], vars));
    assert!(status(&[]).contains("telemetry: off (decided by the tool's default)"));
    w.write(&w.shared_consent(), "telemetry = \"local\"\n");
    let s = status(&[]);
    assert!(
        s.contains(&format!("deciding file: {}", w.shared_consent().display())),
        "{s}"
    );
    assert!(
        s.contains("telemetry: local (decided by shared consent file"),
        "{s}"
    );
    assert!(w.acme(&["telemetry", "enable"], &[]).status.success());
    let s = status(&[]);
    assert!(
        s.contains("telemetry: on (decided by user config file"),
        "{s}"
    );
    assert!(
        s.contains(&format!("deciding file: {}", w.user_config().display())),
        "{s}"
    );
    w.write(
        &w.project().join(".optel.toml"),
        "[tools]\nacme = \"off\"\n",
    );
    let s = status(&[]);
    assert!(
        s.contains("telemetry: off (decided by project policy file"),
        "{s}"
    );
    assert!(s.contains(".optel.toml"), "{s}");
    let s = status(&[("ACME_TELEMETRY", "local")]);
    assert!(
        s.contains("telemetry: local (decided by environment variable ACME_TELEMETRY)"),
        "{s}"
    );
    let s = status(&[("ACME_TELEMETRY", "on"), ("DO_NOT_TRACK", "1")]);
    assert!(
        s.contains("telemetry: off (decided by environment variable DO_NOT_TRACK)"),
        "{s}"
    );
}

#[test]
fn local_keeps_a_ledger_and_sends_nothing() {
    let w = World::new();
    assert!(w.acme(&["telemetry", "local"], &[]).status.success());
    for cmd in ["check", "build"] {
        assert!(w.acme(&[cmd, "proj"], &[]).status.success());
    }
    assert_eq!(w.connections(), 0);
    assert!(!w.data_dir().join("queue").exists());
    let log = stdout(&w.acme(&["telemetry", "log"], &[]));
    assert_eq!(log.lines().count(), 2, "{log}");
    assert!(log.contains("\"name\":\"build\""), "{log}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for f in fs::read_dir(w.data_dir().join("ledger")).unwrap() {
            let mode = f.unwrap().metadata().unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
    // purge removes every byte of local telemetry data.
    let out = w.acme(&["telemetry", "purge"], &[]);
    assert!(stdout(&out).contains("deleted all local telemetry data"));
    assert!(!w.data_dir().exists());
    assert_eq!(w.connections(), 0);
}

#[test]
fn pseudonyms_are_stable_per_install_and_rotate_on_reset() {
    let a = World::new();
    let b = World::new();
    for w in [&a, &b] {
        assert!(w.acme(&["telemetry", "local"], &[]).status.success());
        assert!(w.acme(&["check", "proj"], &[]).status.success());
        assert!(w.acme(&["check", "proj"], &[]).status.success());
    }
    let pa = a.pseudonyms();
    let pb = b.pseudonyms();
    assert_eq!(pa.len(), 2);
    assert_eq!(pa[0], pa[1], "stable within an install");
    assert_ne!(pa[0], pb[0], "different installs");
    assert_eq!(pa[0].len(), 32);
    let out = a.acme(&["telemetry", "reset"], &[]);
    assert!(stdout(&out).contains("new pseudonym"));
    assert!(a.acme(&["check", "proj"], &[]).status.success());
    let after = a.pseudonyms();
    assert_eq!(after.len(), 3);
    assert_ne!(after[2], pa[0], "reset rotates the pseudonym");
}

#[test]
fn ci_runs_share_one_pseudonym_per_vendor_and_keep_no_secret() {
    let w = World::new();
    let ci = [
        ("ACME_TELEMETRY", "local"),
        ("CI", "true"),
        ("GITHUB_ACTIONS", "true"),
    ];
    assert!(w.acme(&["check", "proj"], &ci).status.success());
    assert_eq!(w.pseudonyms(), ["ci:github-actions"]);
    assert!(!w.data_dir().join("install_secret").exists());
}

/// Runs `acme check proj` under a real pseudo-terminal, feeding `input` to it.
fn acme_on_a_terminal(w: &World, vars: &[(&str, &str)], input: &str) -> String {
    acme_args_on_a_terminal(w, "check proj", vars, input)
}

/// Runs `acme ARGS` under a real pseudo-terminal (util-linux `script`), feeding `input` to it.
fn acme_args_on_a_terminal(w: &World, args: &str, vars: &[(&str, &str)], input: &str) -> String {
    use std::io::Write;
    let mut cmd = Command::new("script");
    cmd.args(["-qec", &format!("{ACME} {args}"), "/dev/null"])
        .current_dir(w.root.path())
        .env_clear()
        .env("HOME", w.home())
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("ACME_TELEMETRY_ENDPOINT", w.endpoint())
        .env("ACME_TELEMETRY_EXIT_TIMEOUT_MS", "300")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let mut child = cmd
        .spawn()
        .expect("the `script` command of util-linux is needed for terminal tests");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn opt_in_asks_on_a_terminal_but_never_in_ci() {
    // In CI, even on a terminal: no question, nothing written, nothing sent.
    let w = World::new();
    let before = w.files();
    let text = acme_on_a_terminal(&w, &[("CI", "true"), ("GITHUB_ACTIONS", "true")], "");
    assert!(text.contains("manifest ok"), "{text}");
    assert!(!text.contains("usage statistics"), "asked in CI: {text}");
    assert_eq!(w.files(), before);
    assert_eq!(w.connections(), 0);

    // Outside CI the question comes once; "s" shows a sample payload, "n" declines and the
    // answer is kept, so the next run does not ask again.
    let w = World::new();
    let text = acme_on_a_terminal(&w, &[], "s\nn\n");
    assert!(text.contains("usage statistics"), "{text}");
    assert!(text.contains("\"service_name\": \"acme\""), "{text}");
    assert!(text.contains("manifest ok"), "{text}");
    let saved = fs::read_to_string(w.user_config()).unwrap();
    assert!(saved.contains("telemetry = \"off\""), "{saved}");
    assert!(!w.data_dir().exists());
    let text = acme_on_a_terminal(&w, &[], "");
    assert!(!text.contains("usage statistics"), "asked twice: {text}");
    assert_eq!(w.connections(), 0);
}

/// Answers `n` HTTP requests on a fresh loopback listener with 200, returning the bodies.
fn http_200(n: usize) -> (String, std::thread::JoinHandle<Vec<String>>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || {
        let mut bodies = Vec::new();
        for _ in 0..n {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream);
            let mut len = 0;
            let mut gzip = false;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if line == "\r\n" || line.is_empty() {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap();
                }
                if lower.starts_with("content-encoding:") && lower.contains("gzip") {
                    gzip = true;
                }
            }
            let mut body = vec![0; len];
            reader.read_exact(&mut body).unwrap();
            if gzip {
                let mut plain = Vec::new();
                flate2::read::GzDecoder::new(&body[..])
                    .read_to_end(&mut plain)
                    .unwrap();
                body = plain;
            }
            bodies.push(String::from_utf8(body).unwrap());
            let body = r#"{"accepted":1,"duplicates":0}"#;
            write!(
                reader.get_mut(),
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            )
            .unwrap();
        }
        bodies
    });
    (url, handle)
}

#[test]
fn flush_sends_the_queue_within_its_deadline() {
    let w = World::new();
    let refused = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let on_refused = [
        ("ACME_TELEMETRY", "on"),
        ("ACME_TELEMETRY_ENDPOINT", refused.as_str()),
    ];
    assert!(w.acme(&["check", "proj"], &on_refused).status.success());
    assert!(w.acme(&["build", "proj"], &on_refused).status.success());
    let (url, server) = http_200(1);
    let out = w.acme(
        &["telemetry", "flush", "--timeout-ms", "10000"],
        &[
            ("ACME_TELEMETRY", "on"),
            ("ACME_TELEMETRY_ENDPOINT", url.as_str()),
        ],
    );
    let text = stdout(&out);
    // check, build and the build's `files` measurement.
    assert!(text.contains("sent 3 of 3 queued events"), "{text} {out:?}");
    let bodies = server.join().unwrap();
    assert!(bodies[0].contains("\"name\":\"check\"") && bodies[0].contains("\"name\":\"build\""));
    let status = stdout(&w.acme(&["telemetry", "status"], &[("ACME_TELEMETRY", "on")]));
    assert!(status.contains("queued events: 0"), "{status}");
}

#[test]
fn debug_lines_and_status_explain_delivery_trouble() {
    // Regression: delivery trouble was silent; nothing said the endpoint refused every
    // request, and `telemetry status` showed neither the breaker nor the last error.
    let w = World::new();
    let refused = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let on = [
        ("ACME_TELEMETRY", "on"),
        ("ACME_TELEMETRY_ENDPOINT", refused.as_str()),
    ];
    let quiet = w.acme(&["check", "proj"], &on);
    assert!(quiet.status.success(), "{quiet:?}");
    let stderr = String::from_utf8_lossy(&quiet.stderr);
    assert!(
        !stderr.contains("optel debug"),
        "debug lines only when asked: {stderr}"
    );

    let mut vars = on.to_vec();
    vars.push(("ACME_TELEMETRY_DEBUG", "1"));
    let out = w.acme(&["check", "proj"], &vars);
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    for line in [
        "optel debug (acme): consent on, decided by environment variable ACME_TELEMETRY",
        &format!("optel debug (acme): endpoint {refused}"),
        "optel debug (acme): exit: 1 events queued",
        "events (",
        "bytes of JSON",
        "will retry",
        "failures in a row",
        "requests today",
    ] {
        assert!(stderr.contains(line), "no {line:?} in:\n{stderr}");
    }

    let status = w.acme(&["telemetry", "status"], &on);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains("last error: will retry: "), "{text}");
    assert!(text.contains("failed attempts in a row"), "{text}");
    assert!(text.contains("requests today: "), "{text}");
}

/// The user config of someone who opted in to an earlier acme whose catalog had no `profile`
/// attribute: they saw the `files` measurement only.
const OPTED_IN_BEFORE_PROFILE: &str =
    "telemetry = \"on\"\nseen_categories = [\"measurement:files\"]\n";

#[test]
fn a_catalog_with_a_new_attribute_asks_again_on_a_terminal_never_in_ci() {
    // In CI, on a terminal: not asked, and the new attribute is held back (the rest is sent).
    let w = World::new();
    w.write(&w.user_config(), OPTED_IN_BEFORE_PROFILE);
    let ci = [("CI", "true"), ("GITHUB_ACTIONS", "true")];
    let text = acme_args_on_a_terminal(&w, "build proj", &ci, "");
    assert!(text.contains("built proj"), "{text}");
    assert!(!text.contains("not been shown"), "asked in CI: {text}");
    assert_eq!(
        fs::read_to_string(w.user_config()).unwrap(),
        OPTED_IN_BEFORE_PROFILE
    );
    // Our listener never answers: the batch stays queued, and the preview shows it.
    let preview = stdout(&w.acme(&["telemetry", "preview"], &[]));
    assert!(
        preview.contains("\"start_us\""),
        "phases are sent: {preview}"
    );
    assert!(
        preview.contains("\"event_type\": \"measurement\""),
        "{preview}"
    );
    assert!(!preview.contains("\"profile\": \"debug\""), "{preview}");
    let status = stdout(&w.acme(&["telemetry", "status"], &[]));
    assert!(
        status.contains("held back until you have seen them (new data categories): 1 (attribute command:build:profile ×1)"),
        "{status}"
    );

    // Outside CI on a terminal: asked again, naming what is new; "y" keeps telemetry on and
    // records the new category as seen, so the next run neither asks nor holds it back.
    let text = acme_args_on_a_terminal(&w, "build proj", &[], "y\n");
    assert!(text.contains("not been shown yet"), "{text}");
    assert!(
        text.contains("the profile attribute of command build"),
        "{text}"
    );
    assert!(text.contains("built proj"), "{text}");
    let saved = fs::read_to_string(w.user_config()).unwrap();
    assert!(saved.contains("telemetry = \"on\""), "{saved}");
    assert!(saved.contains("command:build:attribute:profile"), "{saved}");
    let text = acme_args_on_a_terminal(&w, "build proj", &[], "");
    assert!(!text.contains("not been shown"), "asked twice: {text}");
    let preview = stdout(&w.acme(&["telemetry", "preview"], &[]));
    assert_eq!(
        preview.matches("\"profile\": \"debug\"").count(),
        2,
        "{preview}"
    );

    // Answering "n" to the new question turns telemetry off.
    let w = World::new();
    w.write(&w.user_config(), OPTED_IN_BEFORE_PROFILE);
    let text = acme_args_on_a_terminal(&w, "build proj", &[], "n\n");
    assert!(text.contains("not been shown yet"), "{text}");
    let saved = fs::read_to_string(w.user_config()).unwrap();
    assert!(saved.contains("telemetry = \"off\""), "{saved}");
}

#[test]
fn three_builds_from_two_installs_send_exactly_the_catalog() {
    // Two debug builds (one per install) and one release build: what the collector receives
    // is profile debug 2 / release 1, phases resolve and compile 3 each, files 3, and nothing
    // undeclared. Each run is one request to the capture server.
    let (url, server) = http_200(3);
    let on = [
        ("ACME_TELEMETRY", "on"),
        ("ACME_TELEMETRY_ENDPOINT", url.as_str()),
        ("ACME_TELEMETRY_EXIT_TIMEOUT_MS", "10000"),
    ];
    let a = World::new();
    let b = World::new();
    for (w, args) in [
        (&a, &["build", "proj"][..]),
        (&b, &["build", "proj"][..]),
        (&a, &["build", "proj", "--release"][..]),
    ] {
        let out = w.acme(args, &on);
        assert!(out.status.success(), "{out:?}");
        assert!(
            out.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(a.project().join("target/release/proj.out").exists());
    let bodies = server.join().unwrap();
    let mut profiles = std::collections::BTreeMap::new();
    let mut phases = std::collections::BTreeMap::new();
    let mut files = Vec::new();
    let mut pseudonyms = std::collections::BTreeSet::new();
    let mut hashes = std::collections::BTreeSet::new();
    for body in &bodies {
        let batch: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(batch["schema_version"], 2);
        assert!(
            batch["catalog"]["commands"].is_array(),
            "no catalog yet acknowledged"
        );
        hashes.insert(batch["catalog_hash"].as_str().unwrap().to_owned());
        pseudonyms.insert(batch["pseudonym"].as_str().unwrap().to_owned());
        for e in batch["events"].as_array().unwrap() {
            match (
                e["event_type"].as_str().unwrap(),
                e["name"].as_str().unwrap(),
            ) {
                ("command", "build") => {
                    let p = e["metadata"]["profile"].as_str().unwrap().to_owned();
                    *profiles.entry(p).or_insert(0) += 1;
                    assert_eq!(e["metadata"].as_object().unwrap().len(), 1, "{e}");
                    for phase in e["phases"].as_array().unwrap() {
                        assert_eq!(phase["success"], true);
                        let name = phase["name"].as_str().unwrap().to_owned();
                        *phases.entry(name).or_insert(0) += 1;
                    }
                }
                ("measurement", "files") => files.push(e["value"].as_f64().unwrap()),
                other => panic!("unexpected event {other:?}"),
            }
        }
    }
    assert_eq!(pseudonyms.len(), 2, "two installs");
    assert_eq!(hashes.len(), 1, "one catalog version");
    assert_eq!(
        profiles,
        [("debug".to_owned(), 2), ("release".to_owned(), 1)].into()
    );
    assert_eq!(
        phases,
        [("compile".to_owned(), 3), ("resolve".to_owned(), 3)].into()
    );
    assert_eq!(files, [1.0, 1.0, 1.0], "one source per build");
}

#[test]
fn check_strict_records_the_strict_feature_and_keeps_error_codes() {
    let w = World::new();
    let local = [("ACME_TELEMETRY", "local")];
    assert!(
        w.acme(&["check", "proj", "--strict"], &local)
            .status
            .success()
    );
    fs::write(w.root.path().join("proj/src/main.txt"), "").unwrap();
    let out = w.acme(&["check", "proj", "--strict"], &local);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("error[E_STRICT]"));
    assert!(
        w.acme(&["check", "proj"], &local).status.success(),
        "not strict: fine"
    );
    let log = stdout(&w.acme(&["telemetry", "log"], &[]));
    assert_eq!(log.matches("\"name\":\"strict\"").count(), 2, "{log}");
    assert!(log.contains("\"error_code\":\"E_STRICT\""), "{log}");
}
