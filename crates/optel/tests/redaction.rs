//! Table-driven redaction cases: `tests/redaction_cases.tsv`, one `input<TAB>expected` per line.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

#[test]
fn redaction_table() {
    let table = include_str!("redaction_cases.tsv");
    let mut n = 0;
    let mut failures = Vec::new();
    for line in table.lines().filter(|l| !l.starts_with('#')) {
        let Some((input, expected)) = line.split_once('\t') else {
            panic!("row without a tab: {line:?}");
        };
        n += 1;
        let got = optel::redact::redact(input);
        if got != expected {
            failures.push(format!("{input:?}: got {got:?}, want {expected:?}"));
        }
    }
    assert!(
        n >= 60,
        "the table has {n} cases, the issue asks for at least 60"
    );
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn redacted_output_is_stable() {
    // Redacting twice changes nothing: placeholders are not themselves redacted.
    for line in include_str!("redaction_cases.tsv")
        .lines()
        .filter(|l| !l.starts_with('#'))
    {
        if let Some((input, _)) = line.split_once('\t') {
            let once = optel::redact::redact(input).into_owned();
            assert_eq!(optel::redact::redact(&once), once, "{input:?}");
        }
    }
}
