//! The optel batch decoder and validator on arbitrary bytes: `serde_json` into
//! `optel_wire::Batch`, then `Batch::validate`. Nothing may panic; a batch that validates must
//! survive a round trip through its JSON form and still validate.
//!
//! "Survive" allows float attributes to move by a few units in the last place: `serde_json`
//! (without its `float_roundtrip` feature) parses decimal floats to within about one ULP, so
//! `5.555555555555556e106` can come back as `5.555555555555555e106` (found by this target; seed
//! `regression_float_last_digit.json`). Harmless for telemetry; everything else must be equal.
#![no_main]

use libfuzzer_sys::fuzz_target;
use optel_wire::{AttributeValue, Batch};

/// `batch` with every float attribute replaced by 0, and the floats in order.
fn split_floats(mut batch: Batch) -> (Batch, Vec<f64>) {
    let mut floats = Vec::new();
    for e in &mut batch.events {
        for v in e.metadata.values_mut() {
            if let AttributeValue::Float(f) = v {
                floats.push(*f);
                *f = 0.0;
            }
        }
    }
    (batch, floats)
}

fuzz_target!(|data: &[u8]| {
    let Ok(batch) = serde_json::from_slice::<Batch>(data) else {
        return;
    };
    if batch.validate().is_err() {
        return;
    }
    let json = serde_json::to_vec(&batch).expect("a valid batch serializes");
    let again: Batch = serde_json::from_slice(&json).expect("its JSON parses");
    assert!(again.validate().is_ok());
    let ((a, fa), (b, fb)) = (split_floats(batch), split_floats(again));
    assert_eq!(a, b);
    assert_eq!(fa.len(), fb.len());
    for (x, y) in fa.into_iter().zip(fb) {
        assert!(
            (x - y).abs() <= 4.0 * f64::EPSILON * x.abs().max(y.abs()),
            "{x} vs {y}"
        );
    }
});
