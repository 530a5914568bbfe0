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
use crate::global::GLOBAL;
use crate::recorder::{Recorder, type_index};
use crate::shutdown::TelemetryGuard;
use crate::status::Status;
use crate::{delivery, fsutil, identity, queue, random};

/// Set by the first [`TelemetryBuilder::init`], so that a second one leaves the first in place.
static INIT_CALLED: AtomicBool = AtomicBool::new(false);

impl TelemetryBuilder {
    /// Resolves consent and, if it is on, installs the process-global recorder and starts
    /// delivery. Never fails: on any problem telemetry is disabled and
    /// [`TelemetryGuard::status`] says why. A second call in the same process returns a
    /// disabled guard and leaves the first in place.
    ///
    /// Keep the returned guard alive until the end of `main`: dropping it queues this run's
    /// events and waits at most the exit budget for delivery.
    pub fn init(self) -> TelemetryGuard {
        if INIT_CALLED.swap(true, Ordering::AcqRel) {
            let status = Status::new(
                Consent::Off,
                ConsentSource::AuthorDefault,
                self.epoch,
                Some("optel was already initialised in this process".into()),
            );
            return TelemetryGuard {
                inner: None,
                status,
            };
        }
        let env = |k: &str| std::env::var(k).ok();
        let interactive = consent::prompt::interactive();
        self.init_with(&env, interactive, &consent::ci_vendor)
    }

    #[cfg(test)]
    fn init_with_env(self, env: &dyn Fn(&str) -> Option<String>) -> TelemetryGuard {
        INIT_CALLED.store(true, Ordering::Release);
        self.init_with(env, (false, false), &|| None)
    }

    fn init_with(
        self,
        env: &dyn Fn(&str) -> Option<String>,
        (stdin_tty, stderr_tty): (bool, bool),
        ci: &dyn Fn() -> Option<String>,
    ) -> TelemetryGuard {
        let mut resolution = self.resolve(env);
        if resolution.source == ConsentSource::AuthorDefault && self.asking != Asking::Silent {
            resolution =
                consent::prompt::ask_or_tell(resolution, &self, (stdin_tty, stderr_tty), ci);
        }
        let mut status = Status::new(
            resolution.consent,
            resolution.source,
            self.epoch,
            resolution.note,
        );
        status.endpoint = self.effective_endpoint(env);
        if resolution.consent == Consent::Off {
            return TelemetryGuard {
                inner: None,
                status,
            };
        }
        match self.start(env, resolution.consent, ci) {
            Ok(inner) => {
                status.data_dir = Some(inner.data_dir.clone());
                status.pseudonym_epoch_label = Some(inner.epoch_label.clone());
                // INIT_CALLED guarantees we are the only one to set GLOBAL.
                let inner = GLOBAL.get_or_init(|| inner);
                TelemetryGuard {
                    inner: Some(inner),
                    status,
                }
            }
            Err(reason) => {
                status.consent = Consent::Off;
                status.note = Some(reason);
                TelemetryGuard {
                    inner: None,
                    status,
                }
            }
        }
    }

    #[cold]
    pub(crate) fn start(
        self,
        env: &dyn Fn(&str) -> Option<String>,
        consent: Consent,
        ci: &dyn Fn() -> Option<String>,
    ) -> Result<Recorder, String> {
        if !optel_wire::is_valid_name(&self.tool) {
            return Err(format!(
                "tool name {:?} is not allowed: use [A-Za-z0-9_.:-], at most 64 bytes",
                self.tool
            ));
        }
        let prefix = consent::env_prefix(&self.tool);
        if cfg!(not(feature = "tls"))
            && self.exporter.is_none()
            && let Some(endpoint) = self.effective_endpoint(env)
            && endpoint.starts_with("https://")
        {
            // Without TLS every request would fail and the queue would only grow.
            return Err(format!(
                "endpoint {endpoint:?} is HTTPS, but optel was built without its `tls` feature: \
                 enable it (it is a default feature) or use an http:// endpoint"
            ));
        }
        let data_dir = self
            .resolved_data_dir()
            .ok_or("no home directory to keep the telemetry queue in")?;
        fsutil::create_private_dir(&data_dir)
            .map_err(|e| format!("cannot create {}: {e}", data_dir.display()))?;
        let now = SystemTime::now();
        let epoch_label = self.epoch.label(now);
        // In CI every run of a vendor shares one pseudonym: ephemeral runners would otherwise
        // each count as a new install. No secret is created there.
        let pseudonym = match ci() {
            Some(vendor) => identity::ci_pseudonym(&vendor),
            None => {
                let secret = identity::load_or_create_secret(&data_dir)
                    .map_err(|e| format!("cannot read or create the install secret: {e}"))?;
                identity::pseudonym(&secret, &self.tool, &epoch_label)
            }
        };
        let mut sampled_out = [false; 4];
        for (event_type, ratio) in &self.samples {
            sampled_out[type_index(*event_type)] =
                identity::sample_point(&pseudonym, event_type.as_str()) >= *ratio;
        }
        let session = random::random_bytes::<16>().map_err(|e| e.to_string())?;
        let id_bits = random::random_bytes::<16>().map_err(|e| e.to_string())?;
        let exit_timeout = exit_budget(env, &prefix, self.exit_timeout, self.ci_flush_timeout);
        let (queue, worker) = if consent == Consent::On {
            let queue = queue::Queue::open(data_dir.join("queue"))
                .map_err(|e| format!("cannot create the queue directory: {e}"))?;
            let worker = match self.delivery_exporter(env) {
                Some(exporter) => Some(
                    delivery::Worker::start(
                        queue.clone(),
                        Breaker::new(data_dir.clone()),
                        self.delivery_policy(),
                        exporter,
                    )
                    .map_err(|e| format!("cannot start the delivery thread: {e}"))?,
                ),
                None => None,
            };
            (Some(queue), worker)
        } else {
            (None, None)
        };
        let ledger = self.ledger(&data_dir);
        Ok(Recorder {
            envelope: Batch::new(
                self.tool.clone(),
                self.version,
                pseudonym,
                std::env::consts::OS,
                std::env::consts::ARCH,
            ),
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
            .init_with_env(&env);
        assert!(!guard.is_enabled());
        assert_eq!(guard.status().decided_by, ConsentSource::DoNotTrack);
        assert!(!data.exists());
        assert!(!global().is_enabled());
    }
}
