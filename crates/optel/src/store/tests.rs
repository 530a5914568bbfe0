//! Unit tests of the encrypted local store, and its behaviour end to end: a recorder with the
//! store on, a real HTTP capture server, a tampered segment, a lost key.

use super::*;
use capture::Capture;

fn sealer(dir: &Path, key: u8) -> Sealer {
    Sealer::new(&[key; 32], "acme", dir)
}

#[test]
fn round_trip_and_no_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let s = sealer(dir.path(), 1);
    let sealed = s.seal("queue/1-ab-1e", b"{\"name\":\"build\"}").unwrap();
    assert!(!sealed.windows(5).any(|w| w == b"build"));
    assert_eq!(
        s.open("queue/1-ab-1e", &sealed).unwrap(),
        b"{\"name\":\"build\"}"
    );
    // Two seals of the same text differ (random nonce).
    assert_ne!(
        sealed,
        s.seal("queue/1-ab-1e", b"{\"name\":\"build\"}").unwrap()
    );
}

#[test]
fn altered_moved_or_foreign_records_are_rejected_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let s = sealer(dir.path(), 1);
    let sealed = s.seal("ledger/2026-11-30", b"secret").unwrap();
    let mut flipped = sealed.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    assert_eq!(
        s.open("ledger/2026-11-30", &flipped),
        Err(Rejected::Tampered)
    );
    assert_eq!(
        s.open("ledger/2026-11-29", &sealed),
        Err(Rejected::Tampered)
    );
    assert_eq!(
        s.open("ledger/2026-11-30", &sealed[..20]),
        Err(Rejected::Tampered)
    );
    let other_tool = Sealer::new(&[1; 32], "other", dir.path());
    assert_eq!(
        other_tool.open("ledger/2026-11-30", &sealed),
        Err(Rejected::Tampered)
    );
    let other_key = sealer(dir.path(), 2);
    assert_eq!(
        other_key.open("ledger/2026-11-30", &sealed),
        Err(Rejected::Undecryptable)
    );
    assert!(s.open_counted("ledger/2026-11-30", &flipped).is_none());
    assert!(
        other_key
            .open_counted("ledger/2026-11-30", &sealed)
            .is_none()
    );
    let c = StoreCounters::read(dir.path());
    assert_eq!((c.tampered, c.undecryptable), (1, 1));
}

#[cfg(unix)]
#[test]
fn the_key_file_is_private_and_created_once() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let plan = fsutil::DirPlan::explicit(dir.path().join("optel/keys"));
    assert!(load_or_create_key(&plan, "acme", false).unwrap().is_none());
    let (key, created) = load_or_create_key(&plan, "acme", true).unwrap().unwrap();
    assert!(created);
    let (again, created) = load_or_create_key(&plan, "acme", true).unwrap().unwrap();
    assert_eq!((key, created), (again, false));
    let path = key_path(&dir.path().join("optel"), "acme");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let dir_mode = std::fs::metadata(path.parent().unwrap())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(dir_mode & 0o777, 0o700);
}

#[path = "../../tests/support/capture.rs"]
mod capture;

mod end_to_end {
    use std::fs;
    use std::time::{Duration, Instant, SystemTime};

    use optel_wire::EventType;

    use super::Capture;
    use crate::attribute::Value;
    use crate::builder::Telemetry;
    use crate::consent::Consent;
    use crate::recorder::{Recorder, add_attributes};
    use crate::store::StoreCounters;

    /// What a run records: a command name and attribute values that must never be on disk in
    /// clear.
    const COMMAND: &str = "deploy_artifacts";
    const VALUE: &str = "zstd_maximum";

    fn start(root: &std::path::Path, endpoint: Option<&str>) -> Recorder {
        let mut b = Telemetry::builder("acme", "1.0.0")
            .data_dir(root.join("data"))
            .config_dir(root.join("config"))
            .encrypt_local_store(true)
            .exit_timeout(Duration::from_secs(5));
        if let Some(url) = endpoint {
            b = b.endpoint(url);
        }
        b.start(&|_: &str| None, Consent::On, &|| None).unwrap()
    }

    fn run(rec: &Recorder) {
        let mut event = rec.new_event(EventType::Command, COMMAND.into(), SystemTime::now());
        add_attributes(
            &mut event,
            [
                ("compression", Value::Enum(VALUE)),
                ("note", Value::Str("left_untouched_text".into())),
            ],
        );
        rec.record(event);
        rec.shutdown(Instant::now() + Duration::from_secs(5));
    }

    /// Every byte of every file under `dir`.
    fn all_bytes(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_owned()];
        while let Some(d) = stack.pop() {
            for entry in fs::read_dir(&d).unwrap().flatten() {
                let p = entry.path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    out.push((p.clone(), fs::read(&p).unwrap()));
                }
            }
        }
        out
    }

    fn assert_no_plaintext(dir: &std::path::Path) {
        for (path, bytes) in all_bytes(dir) {
            for needle in [COMMAND, VALUE, "left_untouched_text", "\"events\""] {
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                    "{needle} in clear in {}",
                    path.display()
                );
            }
        }
    }

    fn sealed_segments(root: &std::path::Path) -> Vec<std::path::PathBuf> {
        fs::read_dir(root.join("data/queue"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "sealed"))
            .collect()
    }

    #[test]
    fn nothing_in_clear_on_disk_and_delivery_still_works() {
        let root = tempfile::tempdir().unwrap();
        // No endpoint: the run's events stay in the queue and the ledger.
        run(&start(root.path(), None));
        assert_eq!(sealed_segments(root.path()).len(), 1);
        assert_no_plaintext(&root.path().join("data"));
        // The key is in the config directory, not beside the data.
        assert!(root.path().join("config/optel/keys/acme.key").is_file());
        // `telemetry log` still reads the ledger.
        let b = Telemetry::builder("acme", "1.0.0")
            .config_dir(root.path().join("config"))
            .encrypt_local_store(true);
        let data = root.path().join("data");
        let lines = b
            .ledger(&data)
            .sealed(b.sealer(&data, false).unwrap())
            .read_lines()
            .unwrap();
        assert_eq!(lines.len(), 1);
        assert!(lines[0].contains(COMMAND));
        // The next run delivers the sealed segment, and its own, over a real socket.
        let capture = Capture::start();
        run(&start(root.path(), Some(&capture.url)));
        assert_eq!(capture.event_names(), [COMMAND, COMMAND]);
        assert!(sealed_segments(root.path()).is_empty());
        assert_eq!(StoreCounters::read(&data), StoreCounters::default());
    }

    #[test]
    fn a_tampered_segment_is_rejected_and_counted() {
        let root = tempfile::tempdir().unwrap();
        run(&start(root.path(), None));
        let segment = sealed_segments(root.path()).remove(0);
        let mut bytes = fs::read(&segment).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x40;
        fs::write(&segment, bytes).unwrap();
        let capture = Capture::start();
        run(&start(root.path(), Some(&capture.url)));
        // Only the new run's event is sent; the altered segment is deleted and counted.
        assert_eq!(capture.event_names(), [COMMAND]);
        assert!(!segment.exists());
        let counters = StoreCounters::read(&root.path().join("data"));
        assert_eq!((counters.tampered, counters.undecryptable), (1, 0));
        // `telemetry status` says so.
        #[cfg(feature = "clap")]
        {
            let b = Telemetry::builder("acme", "1.0.0")
                .data_dir(root.path().join("data"))
                .config_dir(root.path().join("config"))
                .encrypt_local_store(true);
            let on = |k: &str| (k == "ACME_TELEMETRY").then(|| "on".to_owned());
            let text = crate::cli::status(&b, &on).to_string();
            assert!(text.contains("local store: encrypted (key file "), "{text}");
            assert!(
                text.contains("1 tampered and 0 undecryptable records dropped"),
                "{text}"
            );
        }
    }

    #[test]
    fn a_lost_key_drops_the_old_data_and_counts_it() {
        let root = tempfile::tempdir().unwrap();
        run(&start(root.path(), None));
        run(&start(root.path(), None));
        fs::remove_file(root.path().join("config/optel/keys/acme.key")).unwrap();
        let capture = Capture::start();
        // A new key is created; nothing fails.
        run(&start(root.path(), Some(&capture.url)));
        assert_eq!(capture.event_names(), [COMMAND]);
        let counters = StoreCounters::read(&root.path().join("data"));
        // Two ledger records (dropped when the new key was created) and two queue segments
        // (dropped when delivery claimed them).
        assert_eq!((counters.tampered, counters.undecryptable), (0, 4));
        assert!(sealed_segments(root.path()).is_empty());
    }
}
