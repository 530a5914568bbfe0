//! Unit tests of the `export` module.
use super::*;

#[test]
fn status_classes() {
    assert!(classify(200, None).is_ok());
    assert!(classify(202, None).is_ok());
    assert!(matches!(classify(400, None), Err(ExportError::Rejected(_))));
    assert!(matches!(classify(413, None), Err(ExportError::Rejected(_))));
    assert!(matches!(
        classify(401, None),
        Err(ExportError::Retryable { .. })
    ));
    assert!(matches!(
        classify(429, Some(Duration::from_secs(3))),
        Err(ExportError::Retryable { retry_after: Some(d), .. }) if d == Duration::from_secs(3)
    ));
    assert!(matches!(
        classify(503, None),
        Err(ExportError::Retryable { .. })
    ));
}

#[test]
fn retry_after_seconds() {
    assert_eq!(parse_retry_after(" 7 "), Some(Duration::from_secs(7)));
    assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
}

#[test]
fn gzip_round_trips() {
    use std::io::Read;
    let body = br#"{"events":[]}"#.repeat(100);
    let packed = gzip(&body).unwrap();
    assert!(packed.len() < body.len() / 4);
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(&packed[..])
        .read_to_end(&mut out)
        .unwrap();
    assert_eq!(out, body);
}

#[cfg(feature = "testing")]
#[test]
#[should_panic(expected = "no command event named \"build\" was exported; exported: []")]
fn assert_event_fails_with_what_was_exported() {
    MemoryExporter::new().assert_event(optel_wire::EventType::Command, "build");
}

#[cfg(any(feature = "tls", feature = "rustls"))]
#[test]
fn root_certificates_are_read_and_checked() {
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../optel-collector/tests/fixtures/tls-test.crt");
    assert!(agent_with_roots("ua", Some(&RootCertificates::File(fixture))).is_ok());
    let dir = tempfile::tempdir().unwrap();
    let not_pem = dir.path().join("not.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    let e = agent_with_roots("ua", Some(&RootCertificates::File(not_pem))).unwrap_err();
    assert!(e.contains("holds no certificate"), "{e}");
    let missing = dir.path().join("missing.pem");
    let e = agent_with_roots("ua", Some(&RootCertificates::File(missing))).unwrap_err();
    assert!(e.contains("cannot read the CA file"), "{e}");
    // A bad CA file keeps the batch queued (retryable), never drops it.
    let exporter = HttpExporter::new("https://127.0.0.1:9/v1/events", None, "ua")
        .with_roots(Some(RootCertificates::File(dir.path().join("missing.pem"))));
    let batch = Batch::new("acme", "1.0.0", "p", "linux", "x86_64");
    assert!(matches!(
        exporter.export(&batch, Duration::from_secs(1)),
        Err(ExportError::Retryable { .. })
    ));
}

#[test]
fn debug_output_never_shows_the_ingest_key() {
    let e = HttpExporter::new("http://h/v1/events", Some("secret-key-123".into()), "ua");
    let shown = format!("{e:?}");
    assert!(!shown.contains("secret-key-123"), "{shown}");
    assert!(shown.contains("<set>"), "{shown}");
}

#[test]
fn exporter_is_object_safe() {
    let exporters: Vec<Box<dyn Exporter>> = vec![Box::new(NoopExporter)];
    let batch = Batch::new("acme", "1.0.0", "p", "linux", "x86_64");
    assert!(
        exporters[0]
            .export(&batch, Duration::from_millis(1))
            .is_ok()
    );
}

#[test]
fn jsonl_files_are_private_and_expire() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = JsonlFileExporter::new(dir.path().join("a").join("ledger")).retention_days(2);
    let batch = Batch::new("acme", "1.0.0", "p", "linux", "x86_64");
    ledger.export(&batch, Duration::from_secs(1)).unwrap();
    ledger.export(&batch, Duration::from_secs(1)).unwrap();
    let files = ledger.files().unwrap();
    assert_eq!(files.len(), 1);
    assert_eq!(ledger.read_lines().unwrap().len(), 2);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&files[0]).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // Old files: one inside the retention, one outside, one not ours.
    std::fs::write(ledger.dir().join("2000-01-01.jsonl"), "{}\n").unwrap();
    std::fs::write(ledger.dir().join("notes.txt"), "keep").unwrap();
    let now = std::time::SystemTime::now();
    let yesterday = now - Duration::from_secs(86_400);
    let mut name = humantime::format_rfc3339_seconds(yesterday).to_string();
    name.truncate(10);
    std::fs::write(ledger.dir().join(format!("{name}.jsonl")), "{}\n").unwrap();
    assert_eq!(ledger.purge_expired(now).unwrap(), 1);
    assert_eq!(ledger.files().unwrap().len(), 2);
    assert!(ledger.dir().join("notes.txt").exists());
    assert_eq!(ledger.purge_all().unwrap(), 2);
    assert!(ledger.files().unwrap().is_empty());
}

#[test]
fn the_ledger_stays_under_its_size_bound() {
    let dir = tempfile::tempdir().unwrap();
    let batch = Batch::new("acme", "1.0.0", "p", "linux", "x86_64");
    let line = serde_json::to_vec(&batch).unwrap().len() as u64 + 1;
    let ledger = JsonlFileExporter::new(dir.path().join("ledger")).max_bytes(3 * line);
    std::fs::create_dir_all(ledger.dir()).unwrap();
    // An older day holding two records: deleted first to make room.
    let old = ledger.dir().join("2000-01-01.jsonl");
    std::fs::write(&old, "{}\n".repeat(usize::try_from(line).unwrap())).unwrap();
    let ledger = ledger.retention_days(0);
    assert_eq!(ledger.append(&batch).unwrap(), Appended::Written);
    assert!(!old.exists(), "the oldest day made room");
    assert_eq!(ledger.append(&batch).unwrap(), Appended::Written);
    assert_eq!(ledger.append(&batch).unwrap(), Appended::Written);
    // Today's file alone fills the bound: the record is not written, and export says so.
    assert_eq!(ledger.append(&batch).unwrap(), Appended::Full);
    assert!(matches!(
        ledger.export(&batch, Duration::from_secs(1)),
        Err(ExportError::Rejected(e)) if e.contains("is full")
    ));
    assert_eq!(ledger.read_lines().unwrap().len(), 3);
    let total: u64 = ledger
        .files()
        .unwrap()
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    assert!(total <= 3 * line);
}

#[test]
fn the_stderr_exporter_prints_one_json_line_per_event() {
    let mut batch = Batch::new("acme", "1.0.0", "p", "linux", "x86_64");
    for name in ["build", "test"] {
        batch.events.push(optel_wire::Event::new(
            "e",
            optel_wire::EventType::Command,
            name,
            optel_wire::Timestamp::from_unix_ms(0),
            "s",
        ));
    }
    let text = StderrExporter::lines(&batch);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2);
    for (line, name) in lines.iter().zip(["build", "test"]) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["name"], name);
    }
}
