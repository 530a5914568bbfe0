//! Table-driven redaction cases: `sdk/fixtures/redaction.json`, which the JavaScript SDK's tests
//! read too (a case lives once; a change to either SDK that breaks one fails both).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

fn table() -> serde_json::Value {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sdk/fixtures/redaction.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

#[test]
fn redaction_table() {
    let table = table();
    let cases = table["cases"].as_array().unwrap();
    let min = table["min_cases"].as_u64().unwrap() as usize;
    assert!(
        cases.len() >= min,
        "the table has {} cases, at least {min} are expected",
        cases.len()
    );
    let mut failures = Vec::new();
    for c in cases {
        let (input, expected) = (
            c["input"].as_str().unwrap(),
            c["expected"].as_str().unwrap(),
        );
        let got = optel::redact::redact(input);
        if got != expected {
            failures.push(format!("{input:?}: got {got:?}, want {expected:?}"));
        }
        // Redacting twice changes nothing: placeholders are not themselves redacted.
        let again = optel::redact::redact(expected);
        if again != expected {
            failures.push(format!("{expected:?} is redacted again to {again:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
