//! OTLP attributes through the collector's one privacy filter ([`crate::privacy`]): OTLP
//! values converted to optel's typed values first.

use std::collections::BTreeMap;

use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use optel_wire::AttributeValue;

use crate::privacy::{Dropped, Origin, filter};

/// The optel value of an OTLP attribute value, `None` for kinds optel does not store
/// (arrays, maps, bytes, empty).
fn value_of(kv: &KeyValue) -> Option<AttributeValue> {
    match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::BoolValue(b)) => Some(AttributeValue::Bool(*b)),
        Some(any_value::Value::IntValue(i)) => Some(AttributeValue::Int(*i)),
        Some(any_value::Value::DoubleValue(f)) => Some(AttributeValue::Float(*f)),
        Some(any_value::Value::StringValue(s)) => Some(AttributeValue::String(s.clone())),
        _ => None,
    }
}

/// The metadata stored of OTLP attributes from `origin`, except the keys in `consumed` (read
/// into event fields by the mapper, not stored as metadata); what is dropped is counted.
pub(super) fn metadata(
    origin: Origin,
    attrs: &[KeyValue],
    consumed: &[&str],
    dropped: &mut Dropped,
) -> BTreeMap<String, AttributeValue> {
    filter(
        origin,
        attrs
            .iter()
            .filter(|kv| !consumed.contains(&kv.key.as_str()))
            .map(|kv| (kv.key.as_str(), value_of(kv))),
        dropped,
    )
}
