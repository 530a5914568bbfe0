//! The optel batch decoder and validator on arbitrary bytes: `serde_json` into
//! `optel_wire::Batch`, then `Batch::validate`. Nothing may panic; a batch that validates must
//! survive a round trip through its JSON form unchanged and still validate.
#![no_main]

use libfuzzer_sys::fuzz_target;
use optel_wire::Batch;

fuzz_target!(|data: &[u8]| {
    let Ok(batch) = serde_json::from_slice::<Batch>(data) else {
        return;
    };
    if batch.validate().is_err() {
        return;
    }
    let json = serde_json::to_vec(&batch).expect("a valid batch serializes");
    let again: Batch = serde_json::from_slice(&json).expect("its JSON parses");
    assert_eq!(again, batch);
    assert!(again.validate().is_ok());
});
