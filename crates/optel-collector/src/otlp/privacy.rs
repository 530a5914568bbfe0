//! What OTLP attributes are kept: identifying keys and address-like values never are.

use std::collections::BTreeMap;

use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use optel_wire::{AttributeValue, limits};

pub fn looks_like_ip(s: &str) -> bool {
    let s = s.trim().trim_start_matches('[');
    let host = s.split(']').next().unwrap_or(s);
    host.parse::<std::net::IpAddr>().is_ok()
        || host
            .rsplit_once(':')
            .is_some_and(|(h, _)| h.parse::<std::net::Ipv4Addr>().is_ok())
}

/// Attribute keys never stored: they identify a machine or a person.
pub fn is_identifying_key(key: &str) -> bool {
    const KEYS: [&str; 8] = [
        "service.instance.id",
        "host.name",
        "host.id",
        "host.ip",
        "host.mac",
        "user.name",
        "enduser.id",
        "process.command_line",
    ];
    let k = key.to_ascii_lowercase();
    KEYS.contains(&k.as_str())
        || k.contains("address")
        || k.ends_with(".ip")
        || k.contains("peer")
        || k.starts_with("process.")
        || k.starts_with("user.")
}

/// The metadata kept of OTLP attributes: scalar values under valid names, never identifying
/// keys or address-like values, at most [`limits::MAX_ATTRIBUTES`].
pub(super) fn metadata(attrs: &[KeyValue], skip: &[&str]) -> BTreeMap<String, AttributeValue> {
    let mut out = BTreeMap::new();
    for kv in attrs {
        if out.len() >= limits::MAX_ATTRIBUTES
            || skip.contains(&kv.key.as_str())
            || !optel_wire::is_valid_name(&kv.key)
            || is_identifying_key(&kv.key)
        {
            continue;
        }
        let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
            Some(any_value::Value::BoolValue(b)) => AttributeValue::Bool(*b),
            Some(any_value::Value::IntValue(i)) => AttributeValue::Int(*i),
            Some(any_value::Value::DoubleValue(f)) if f.is_finite() => AttributeValue::Float(*f),
            Some(any_value::Value::StringValue(s))
                if s.len() <= limits::MAX_STRING_VALUE_BYTES && !looks_like_ip(s) =>
            {
                AttributeValue::String(s.clone())
            }
            _ => continue,
        };
        out.insert(kv.key.clone(), value);
    }
    out
}
