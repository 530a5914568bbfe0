//! Start-up: [`TelemetryBuilder::init`] resolves consent (asking if the author chose so) and,
//! when it is on, wires the recorder: the data directory, the pseudonym, the queue, the ledger
//! and the delivery thread; then installs the recorder as the process-global one.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::SystemTime;

use optel_wire::Batch;

use crate::breaker::Breaker;
use crate::builder::{TelemetryBuilder, exit_budget};
use crate::consent::{self, Asking, Consent, ConsentSource};
use crate::debug::DebugLog;
use crate::global::GLOBAL;
use crate::recorder::{Recorder, type_index};
use crate::shutdown::TelemetryGuard;
use crate::status::Status;
use crate::{delivery, identity, queue, random};

/// Why [`TelemetryBuilder::try_init`] could not start telemetry (it is then off for this run).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InitError {
    /// optel was already initialised in this process; the first guard stays in place.
    #[error(
        "optel was already initialised in this process: initialise it once, in main, and keep \
         that guard"
    )]
    AlreadyInitialized,
    /// The tool name breaks the name rules.
    #[error("tool name {name:?} is not allowed: use [A-Za-z0-9_.:-], at most 64 bytes")]
    InvalidToolName {
        /// The name given to [`Telemetry::builder`](crate::Telemetry::builder).
        name: String,
    },
    /// No home directory, so no default data directory.
    #[error(
        "no home directory to keep the telemetry queue in: set HOME, or choose a directory \
         with TelemetryBuilder::data_dir"
    )]
    NoDataDirectory,
    /// An `https://` endpoint, but optel was built without its `tls` feature.
    #[error(
        "endpoint {endpoint:?} is HTTPS, but optel was built without its `tls` feature: enable \
         it (it is a default feature) or use an http:// endpoint"
    )]
    TlsUnavailable {
        /// The endpoint.
        endpoint: String,
    },
    /// The data directory, the install secret, the queue or the delivery thread could not be
    /// set up (including a data directory refused as unsafe: a link, another user's, or
    /// writable by others).
    #[error("cannot {action}: {source}")]
    Io {
        /// What was attempted.
        action: &'static str,
        /// The operating system's error, or why the directory was refused.
        #[source]
        source: std::io::Error,
    },
    /// The catalog given to [`TelemetryBuilder::catalog`] breaks a rule
    /// (`optel_wire::Catalog::validate`).
    #[error("the event catalog is not valid: {reason}")]
    InvalidCatalog {
        /// The field and the rule it breaks.
        reason: String,
    },
}

impl InitError {
    fn invalid_catalog(e: &optel_wire::Invalid) -> Self {
        Self::InvalidCatalog {
            reason: e.to_string(),
        }
    }
}

fn io(action: &'static str) -> impl FnOnce(std::io::Error) -> InitError {
    move |source| InitError::Io { action, source }
}

/// Set by the first [`TelemetryBuilder::init`], so that a second one leaves the first in place.
static INIT_CALLED: AtomicBool = AtomicBool::new(false);

impl TelemetryBuilder {
    /// Resolves consent and, if it is on, installs the process-global recorder and starts
    /// delivery. Never fails: on any problem telemetry is disabled and
    /// [`TelemetryGuard::status`] says why ([`try_init`](Self::try_init) returns the problem
    /// instead). A second call in the same process returns a disabled guard and leaves the
    /// first in place.
    ///
    /// Keep the returned guard alive until the end of `main`: dropping it queues this run's
    /// events and waits at most the exit budget for delivery.
    pub fn init(self) -> TelemetryGuard {
        let epoch = self.epoch;
        match self.try_init_with_status() {
            Ok(guard) => guard,
            Err((error, status)) => {
                let mut status = status.map_or_else(
                    || Status::new(Consent::Off, ConsentSource::AuthorDefault, epoch, None),
                    |s| *s,
                );
                status.consent = Consent::Off;
                status.note = Some(error.to_string());
                TelemetryGuard {
                    inner: None,
                    status,
                }
            }
        }
    }

    /// [`init`](Self::init) that says why telemetry could not start. Consent off is not an
    /// error: it returns a disabled guard, as `init` does.
    ///
    /// # Errors
    /// [`InitError`]: a second init in the process (the first stays in place), an invalid
    /// tool name, no data directory, a refused or unwritable data directory, or an `https://`
    /// endpoint without the `tls` feature. Telemetry is then off for this run.
    ///
    /// # Examples
    /// ```
    /// let first = optel::Telemetry::builder("acme", "1.0.0").try_init();
    /// assert!(first.is_ok(), "consent is off by default: a disabled guard, not an error");
    /// let second = optel::Telemetry::builder("acme", "1.0.0").try_init();
    /// assert!(matches!(second, Err(optel::InitError::AlreadyInitialized)));
    /// ```
    pub fn try_init(self) -> Result<TelemetryGuard, InitError> {
        self.try_init_with_status().map_err(|(e, _)| e)
    }

    /// The error comes with the status resolution reached before it, if it got that far.
    fn try_init_with_status(self) -> Result<TelemetryGuard, (InitError, Option<Box<Status>>)> {
        if INIT_CALLED.swap(true, Ordering::AcqRel) {
            return Err((InitError::AlreadyInitialized, None));
        }
        let env = |k: &str| std::env::var(k).ok();
        let interactive = consent::prompt::interactive();
        self.init_with(&env, interactive, &consent::ci_vendor)
            .map_err(|(e, s)| (e, Some(s)))
    }

    #[cfg(test)]
    fn init_with_env(
        self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<TelemetryGuard, (InitError, Box<Status>)> {
        INIT_CALLED.store(true, Ordering::Release);
        self.init_with(env, (false, false), &|| None)
    }

    fn init_with(
        self,
        env: &dyn Fn(&str) -> Option<String>,
        (stdin_tty, stderr_tty): (bool, bool),
        ci: &dyn Fn() -> Option<String>,
    ) -> Result<TelemetryGuard, (InitError, Box<Status>)> {
        let mut resolution = self.resolve(env);
        let may_ask = self.asking != Asking::Silent
            && matches!(
                resolution.source,
                ConsentSource::AuthorDefault | ConsentSource::UserConfig(_)
            );
        // The catalog is built only when it can matter: never on the off path.
        let catalog = match self.catalog {
            Some(f) if may_ask || resolution.consent != Consent::Off => Some(f()),
            _ => None,
        };
        if let Some(Err(e)) = catalog.as_ref().map(optel_wire::Catalog::validate) {
            let e = InitError::invalid_catalog(&e);
            let mut status = Status::new(Consent::Off, resolution.source, self.epoch, None);
            status.note = Some(e.to_string());
            if cfg!(debug_assertions) {
                eprintln!("optel: telemetry is off: {e}");
            }
            return Err((e, Box::new(status)));
        }
        if may_ask {
            resolution = consent::prompt::ask_or_tell(
                resolution,
                &self,
                (stdin_tty, stderr_tty),
                ci,
                catalog.as_ref(),
            );
        }
        // What this install may send of the catalog: everything, unless consent comes from
        // the prompt or notice layers, which send only the data categories the user was shown
        // (docs/adr/010-event-catalog.md).
        let allowed = (may_ask
            && matches!(
                resolution.source,
                ConsentSource::AuthorDefault | ConsentSource::UserConfig(_)
            ))
        .then(|| {
            self.user_config_file()
                .and_then(|f| consent::read_file(&f).ok().flatten())
                .map(|f| f.seen_categories.into_iter().collect())
                .unwrap_or_default()
        });
        let mut status = Status::new(
            resolution.consent,
            resolution.source,
            self.epoch,
            resolution.note,
        );
        status.endpoint = self.effective_endpoint(env);
        let debug = DebugLog::from_env(env, &self.tool);
        debug.line(|| {
            let note = status
                .note
                .as_deref()
                .map(|n| format!(" ({n})"))
                .unwrap_or_default();
            format!(
                "consent {}, decided by {}{note}",
                status.consent, status.decided_by
            )
        });
        if resolution.consent == Consent::Off {
            return Ok(TelemetryGuard {
                inner: None,
                status,
            });
        }
        debug.line(|| match (&self.exporter, &status.endpoint) {
            // Not the exporter's Debug: it may hold credentials.
            (Some(_), _) => "an exporter set in code (TelemetryBuilder::exporter)".to_owned(),
            (None, Some(endpoint)) => format!("endpoint {endpoint}"),
            (None, None) => "no endpoint: events are only queued locally".to_owned(),
        });
        match self.start_with_catalog(env, resolution.consent, ci, catalog, allowed) {
            Ok(inner) => {
                debug.line(|| {
                    format!(
                        "data directory {}, exit budget {} ms",
                        inner.data_dir.display(),
                        inner.exit_timeout.as_millis()
                    )
                });
                status.data_dir = Some(inner.data_dir.clone());
                status.pseudonym_epoch_label = Some(inner.epoch_label.clone());
                // INIT_CALLED guarantees we are the only one to set GLOBAL.
                let inner = GLOBAL.get_or_init(|| inner);
                Ok(TelemetryGuard {
                    inner: Some(inner),
                    status,
                })
            }
            Err(e) => {
                debug.line(|| format!("telemetry off for this run: {e}"));
                Err((e, Box::new(status)))
            }
        }
    }

    /// [`start_with_catalog`](Self::start_with_catalog) with the builder's catalog (if any),
    /// every declared category allowed (tests start recorders without installing them).
    #[cfg(test)]
    pub(crate) fn start(
        self,
        env: &dyn Fn(&str) -> Option<String>,
        consent: Consent,
        ci: &dyn Fn() -> Option<String>,
    ) -> Result<Recorder, InitError> {
        let catalog = self.catalog.map(|f| f());
        if let Some(Err(e)) = catalog.as_ref().map(optel_wire::Catalog::validate) {
            return Err(InitError::invalid_catalog(&e));
        }
        self.start_with_catalog(env, consent, ci, catalog, None)
    }

    /// Starts the recorder with a validated `catalog`, of which only the data categories in
    /// `allowed` are sent (`None`: all).
    #[cold]
    fn start_with_catalog(
        self,
        env: &dyn Fn(&str) -> Option<String>,
        consent: Consent,
        ci: &dyn Fn() -> Option<String>,
        catalog: Option<optel_wire::Catalog>,
        allowed: Option<std::collections::BTreeSet<String>>,
    ) -> Result<Recorder, InitError> {
        if !optel_wire::is_valid_name(&self.tool) {
            return Err(InitError::InvalidToolName {
                name: self.tool.clone(),
            });
        }
        let prefix = consent::env_prefix(&self.tool);
        if cfg!(not(any(feature = "tls", feature = "rustls")))
            && self.exporter.is_none()
            && let Some(endpoint) = self.effective_endpoint(env)
            && endpoint.starts_with("https://")
        {
            // Without TLS every request would fail and the queue would only grow.
            return Err(InitError::TlsUnavailable { endpoint });
        }
        let plan = self.data_dir_plan().ok_or(InitError::NoDataDirectory)?;
        // Created 0700 without following links; another user's or a shared directory is
        // refused, and telemetry stays off for this run.
        plan.ensure().map_err(io("use the data directory"))?;
        let data_dir = plan.dir;
        let now = SystemTime::now();
        let epoch_label = self.epoch.label(now);
        // In CI every run of a vendor shares one pseudonym: ephemeral runners would otherwise
        // each count as a new install. No secret is created there.
        let pseudonym = match ci() {
            Some(vendor) => identity::ci_pseudonym(&vendor),
            None => {
                let secret = identity::load_or_create_secret(&data_dir)
                    .map_err(io("read or create the install secret"))?;
                identity::pseudonym(&secret, &self.tool, &epoch_label)
            }
        };
        let mut sampled_out = [false; 5];
        for (event_type, ratio) in &self.samples {
            sampled_out[type_index(*event_type)] =
                identity::sample_point(&pseudonym, event_type.as_str()) >= *ratio;
        }
        let session = random::random_bytes::<16>().map_err(io("get random bytes"))?;
        let id_bits = random::random_bytes::<16>().map_err(io("get random bytes"))?;
        let exit_timeout = exit_budget(env, &prefix, self.exit_timeout, self.ci_flush_timeout);
        let (queue, worker) = if consent == Consent::On {
            let queue = queue::Queue::open(data_dir.join("queue"))
                .map_err(io("create the queue directory"))?;
            let worker = match self.delivery_exporter(env) {
                Some(exporter) => Some(
                    delivery::Worker::start(
                        queue.clone(),
                        Breaker::new(data_dir.clone()),
                        self.delivery_policy(env),
                        exporter,
                    )
                    .map_err(io("start the delivery thread"))?,
                ),
                None => None,
            };
            (Some(queue), worker)
        } else {
            (None, None)
        };
        let ledger = self.ledger(&data_dir);
        let mut envelope = Batch::new(
            self.tool.clone(),
            self.version,
            pseudonym,
            std::env::consts::OS,
            std::env::consts::ARCH,
        );
        let catalog = catalog.map(|c| crate::catalog::ActiveCatalog::new(c, allowed));
        if let Some(c) = &catalog {
            envelope.catalog_hash = Some(c.hash.clone());
        }
        Ok(Recorder {
            envelope,
            catalog,
            session_id: identity::uuid_v4(session),
            id_bits,
            next_seq: AtomicU64::new(0),
            buffer: Mutex::new(Vec::new()),
            dropped: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            sampled_out,
            queue,
            ledger,
            worker,
            data_dir,
            epoch_label,
            exit_timeout,
            debug: DebugLog::from_env(env, &self.tool),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::Telemetry;
    use crate::global::global;

    #[test]
    fn off_returns_disabled_guard_without_touching_disk() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let env = |k: &str| (k == "DO_NOT_TRACK").then(|| "1".to_owned());
        let guard = Telemetry::builder("acme", "1.0.0")
            .data_dir(&data)
            .default_consent(Consent::On)
            .init_with_env(&env)
            .map_err(|(e, _)| e)
            .unwrap();
        assert!(!guard.is_enabled());
        assert_eq!(guard.status().decided_by, ConsentSource::DoNotTrack);
        assert!(!data.exists());
        assert!(!global().is_enabled());
    }

    #[test]
    fn init_errors_are_typed_and_init_degrades_to_a_note() {
        let dir = tempfile::tempdir().unwrap();
        let on = |_: &str| None;
        let err = |b: TelemetryBuilder| match b.default_consent(Consent::On).init_with(
            &on,
            (false, false),
            &|| None,
        ) {
            Ok(_) => panic!("expected an error"),
            Err((e, status)) => (e, status),
        };
        let (e, status) = err(Telemetry::builder("not a name", "1.0.0").data_dir(dir.path()));
        assert!(matches!(&e, InitError::InvalidToolName { name } if name == "not a name"));
        assert_eq!(status.decided_by, ConsentSource::AuthorDefault);
        let open = dir.path().join("open");
        std::fs::create_dir(&open).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
            let (e, _) = err(Telemetry::builder("acme", "1.0.0").data_dir(&open));
            assert!(
                matches!(
                    &e,
                    InitError::Io {
                        action: "use the data directory",
                        ..
                    }
                ),
                "{e:?}"
            );
            assert!(e.to_string().contains("writable by other users"), "{e}");
        }
        #[cfg(not(any(feature = "tls", feature = "rustls")))]
        {
            let (e, _) = err(Telemetry::builder("acme", "1.0.0")
                .data_dir(dir.path().join("d"))
                .endpoint("https://telemetry.example"));
            assert!(matches!(e, InitError::TlsUnavailable { .. }), "{e:?}");
        }
    }

    /// The hardening cases of the issue "Hardening": links, FIFOs, devices and hostile
    /// directories in the data and config directories, each in a temporary directory.
    #[cfg(unix)]
    mod hardening {
        use std::fs;
        use std::os::unix::fs::{PermissionsExt, symlink};
        use std::path::Path;
        use std::process::Command;
        use std::time::{Duration, Instant};

        use optel_wire::EventType;

        use crate::builder::Telemetry;
        use crate::consent::{Consent, PROJECT_POLICY_FILE, user_config_path};
        use crate::export::NoopExporter;
        use crate::recorder::Recorder;

        fn builder(dir: &Path) -> crate::TelemetryBuilder {
            Telemetry::builder("acme", "1.0.0")
                .data_dir(dir.join("data"))
                .config_dir(dir.join("config"))
                .exporter(NoopExporter)
        }

        fn start(dir: &Path, consent: Consent) -> Result<Recorder, String> {
            builder(dir)
                .start(&|_: &str| None, consent, &|| None)
                .map_err(|e| e.to_string())
        }

        fn run_once(rec: &Recorder) {
            rec.record(rec.new_event(
                EventType::Command,
                "build".into(),
                std::time::SystemTime::now(),
            ));
            rec.shutdown(Instant::now() + Duration::from_secs(5));
        }

        /// A root-owned-like private file that a planted link points at.
        fn precious(dir: &Path) -> std::path::PathBuf {
            let target = dir.join("precious");
            fs::write(&target, "keep me").unwrap();
            fs::set_permissions(&target, fs::Permissions::from_mode(0o600)).unwrap();
            target
        }

        fn assert_untouched(target: &Path) {
            assert_eq!(fs::read_to_string(target).unwrap(), "keep me");
        }

        /// Runs `f` on another thread and fails if it does not return within 10 s (a FIFO
        /// opened without `O_NONBLOCK` blocks forever).
        fn within_seconds<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let _ = tx.send(f());
            });
            rx.recv_timeout(Duration::from_secs(10))
                .expect("hung on a FIFO or a device")
        }

        fn mkfifo(path: &Path) {
            assert!(Command::new("mkfifo").arg(path).status().unwrap().success());
        }

        #[test]
        fn links_planted_in_the_data_dir_are_not_followed() {
            let dir = tempfile::tempdir().unwrap();
            let target = precious(dir.path());
            let data = dir.path().join("data");
            fs::create_dir_all(data.join("queue")).unwrap();
            fs::create_dir_all(data.join("ledger")).unwrap();
            fs::set_permissions(&data, fs::Permissions::from_mode(0o700)).unwrap();
            let mut day =
                humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
            day.truncate(10);
            for link in [
                data.join("queue/dropped"),
                data.join("delivery_state"),
                data.join(format!("ledger/{day}.jsonl")),
            ] {
                symlink(&target, &link).unwrap();
            }
            // Drops to count (so `queue/dropped` is written), a round to send (so
            // `delivery_state` is), and the ledger.
            let rec = start(dir.path(), Consent::On).unwrap();
            rec.dropped.store(3, std::sync::atomic::Ordering::Relaxed);
            run_once(&rec);
            assert_untouched(&target);
        }

        #[test]
        fn a_linked_queue_directory_is_refused() {
            let dir = tempfile::tempdir().unwrap();
            let elsewhere = dir.path().join("elsewhere");
            let data = dir.path().join("data");
            fs::create_dir(&elsewhere).unwrap();
            fs::create_dir(&data).unwrap();
            symlink(&elsewhere, data.join("queue")).unwrap();
            let e = start(dir.path(), Consent::On).unwrap_err();
            assert!(e.contains("symbolic link"), "{e}");
            assert_eq!(fs::read_dir(&elsewhere).unwrap().count(), 0);
        }

        #[test]
        fn another_users_open_directory_is_refused_and_left_alone() {
            // Another user pre-created the data directory 0777 (a world-writable
            // XDG_DATA_HOME) with links to files of the user running the tool (root in CI).
            let dir = tempfile::tempdir().unwrap();
            let target = precious(dir.path());
            let data = dir.path().join("data");
            fs::create_dir(&data).unwrap();
            fs::set_permissions(&data, fs::Permissions::from_mode(0o777)).unwrap();
            symlink(&target, data.join("install_secret")).unwrap();
            symlink(&target, data.join("delivery_state")).unwrap();
            let e = start(dir.path(), Consent::On).unwrap_err();
            assert!(e.contains("writable by other users"), "{e}");
            assert_untouched(&target);
            assert_eq!(
                fs::metadata(&data).unwrap().permissions().mode() & 0o777,
                0o777
            );
            // `telemetry status` says why.
            #[cfg(feature = "clap")]
            {
                let env = |k: &str| (k == "ACME_TELEMETRY").then(|| "on".to_owned());
                let status = crate::cli::status(&builder(dir.path()), &env);
                let note = status.note.unwrap_or_default();
                assert!(note.contains("writable by other users"), "{note}");
            }
        }

        #[test]
        fn a_fifo_as_install_secret_does_not_hang() {
            let dir = tempfile::tempdir().unwrap();
            let data = dir.path().join("data");
            fs::create_dir(&data).unwrap();
            mkfifo(&data.join("install_secret"));
            let path = dir.path().to_owned();
            let e = within_seconds(move || start(&path, Consent::On).map(|_| ())).unwrap_err();
            assert!(e.contains("not a regular file"), "{e}");
        }

        #[test]
        fn consent_files_that_are_devices_fifos_or_links_fail_closed_at_once() {
            let dir = tempfile::tempdir().unwrap();
            let config = dir.path().join("config");
            fs::create_dir_all(config.join("optel")).unwrap();
            let user = user_config_path(&config, "acme");
            let project = dir.path().join("project");
            fs::create_dir(&project).unwrap();
            type Plant = Box<dyn Fn()>;
            let cases: Vec<(&str, Plant)> = vec![
                ("user config linked to /dev/zero", {
                    let user = user.clone();
                    Box::new(move || symlink("/dev/zero", &user).unwrap())
                }),
                ("user config that is a FIFO", {
                    let user = user.clone();
                    Box::new(move || mkfifo(&user))
                }),
                ("project policy linked to /proc/kmsg", {
                    let policy = project.join(PROJECT_POLICY_FILE);
                    Box::new(move || symlink("/proc/kmsg", &policy).unwrap())
                }),
            ];
            for (case, plant) in cases {
                let _ = fs::remove_file(&user);
                let _ = fs::remove_file(project.join(PROJECT_POLICY_FILE));
                plant();
                let (config, project) = (config.clone(), project.clone());
                let r = within_seconds(move || {
                    let env = |_: &str| None;
                    crate::consent::resolve(&crate::consent::Inputs {
                        env: &env,
                        tool: "acme",
                        cwd: Some(project),
                        config_dir: Some(config),
                        default: Consent::On,
                    })
                });
                assert_eq!(r.consent, Consent::Off, "{case}");
                assert!(r.note.is_some(), "{case}: no note");
            }
        }
    }
}
