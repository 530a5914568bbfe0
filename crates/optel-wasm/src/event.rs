//! The event a plugin sends: its JSON shape, parsed and checked against the SDK's rules and
//! the host's catalog before anything is recorded.
//!
//! ```json
//! {"name": "convert", "attributes": {"format": "yaml", "lines": 120, "strict": true}}
//! ```
//!
//! - `name` (required): a string following the SDK's name rules (`[A-Za-z0-9_.:-]`, 1 to 64
//!   bytes), and one of the host's declared event names if it declared any.
//! - `attributes` (optional): an object of at most [`MAX_PLUGIN_ATTRIBUTES`] entries whose
//!   keys follow the name rules and whose values are scalars: `true`/`false`, integers
//!   (`i64`; larger ones become floats), floats, strings (free text, recorded as
//!   [`optel::Value::Str`], which the SDK redacts with [`optel::redact`] and cuts to 256
//!   bytes before storing it anywhere). `null`, arrays and objects are refused.
//! - No other top-level field.
//!
//! Keys the host did not declare are left out (counted), not refused, so a plugin built against
//! a newer catalog still records what the host understands.

use optel::Value;
use serde_json::Value as Json;

use crate::plugin::RESERVED_KEYS;

/// Most attributes a plugin event may carry: the SDK's 32 less the two optel adds (`plugin`,
/// `plugin_version`).
pub const MAX_PLUGIN_ATTRIBUTES: usize = optel::wire::limits::MAX_ATTRIBUTES - 2;

/// A plugin event ready for the recorder.
#[derive(Debug, PartialEq)]
pub(crate) struct PluginEvent {
    pub(crate) name: String,
    pub(crate) attributes: Vec<(&'static str, Value)>,
    /// Attributes left out because the host did not declare their keys.
    pub(crate) undeclared: u32,
}

/// Why an event was refused; the text goes to the host's log (never to telemetry).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum EventError {
    #[error("event is not JSON: {0}")]
    Json(String),
    #[error("event must be a JSON object {{\"name\": \"...\", \"attributes\": {{...}}}}, got {0}")]
    NotAnObject(&'static str),
    #[error("event has no \"name\" string")]
    NoName,
    #[error("event has an unknown field {0:?}: only \"name\" and \"attributes\" are allowed")]
    UnknownField(String),
    #[error(transparent)]
    Name(#[from] optel::NameError),
    #[error("event name {0:?} is not in the host's catalog for this plugin")]
    Undeclared(String),
    #[error("\"attributes\" must be an object, got {0}")]
    AttributesNotAnObject(&'static str),
    #[error("event has {0} attributes: at most {MAX_PLUGIN_ATTRIBUTES} are allowed")]
    TooManyAttributes(usize),
    #[error("attribute {key:?} is {kind}: values must be booleans, numbers or strings")]
    NotScalar { key: String, kind: &'static str },
}

/// The catalog the host declared for a plugin.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Catalog<'a> {
    pub(crate) attribute_keys: &'a [&'static str],
    pub(crate) event_names: Option<&'a [&'static str]>,
}

fn kind(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

/// Parses and checks an event the plugin wrote (at most `MAX_EVENT_BYTES`, bounded before
/// this is called; serde_json bounds nesting itself).
pub(crate) fn parse(bytes: &[u8], catalog: Catalog<'_>) -> Result<PluginEvent, EventError> {
    let json: Json = serde_json::from_slice(bytes).map_err(|e| EventError::Json(e.to_string()))?;
    let Json::Object(mut object) = json else {
        return Err(EventError::NotAnObject(kind(&json)));
    };
    if let Some(field) = object
        .keys()
        .find(|k| k.as_str() != "name" && k.as_str() != "attributes")
    {
        return Err(EventError::UnknownField(field.clone()));
    }
    let Some(Json::String(name)) = object.remove("name") else {
        return Err(EventError::NoName);
    };
    optel::validate_name(&name)?;
    if let Some(names) = catalog.event_names
        && !names.contains(&name.as_str())
    {
        return Err(EventError::Undeclared(name));
    }
    let attributes = match object.remove("attributes") {
        None => serde_json::Map::new(),
        Some(Json::Object(map)) => map,
        Some(other) => return Err(EventError::AttributesNotAnObject(kind(&other))),
    };
    if attributes.len() > MAX_PLUGIN_ATTRIBUTES {
        return Err(EventError::TooManyAttributes(attributes.len()));
    }
    let mut event = PluginEvent {
        name,
        attributes: Vec::with_capacity(attributes.len()),
        undeclared: 0,
    };
    for (key, value) in attributes {
        optel::validate_name(&key)?;
        let value = match value {
            Json::Bool(b) => Value::Bool(b),
            Json::Number(n) => match n.as_i64() {
                Some(i) => Value::Int(i),
                // u64 above i64::MAX, or a float; serde_json never yields a non-finite one.
                None => Value::Float(n.as_f64().unwrap_or(0.0)),
            },
            // Free text: the SDK runs `optel::redact` on every `Value::Str` (and cuts it to
            // 256 bytes) before the event is stored anywhere, the in-memory buffer included.
            // Redacting here too would double the cost of the most expensive step.
            Json::String(s) => Value::Str(s),
            other => {
                return Err(EventError::NotScalar {
                    key,
                    kind: kind(&other),
                });
            }
        };
        // The host's catalog gives the key its `&'static str` (the SDK's attribute keys are
        // static) and keeps undeclared data out.
        match catalog
            .attribute_keys
            .iter()
            .find(|k| **k == key && !RESERVED_KEYS.contains(k))
        {
            Some(declared) => event.attributes.push((declared, value)),
            None => event.undeclared += 1,
        }
    }
    Ok(event)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEYS: &[&str] = &["format", "lines", "ratio", "strict", "note", "big"];

    fn open(bytes: &str) -> Result<PluginEvent, EventError> {
        parse(
            bytes.as_bytes(),
            Catalog {
                attribute_keys: KEYS,
                event_names: None,
            },
        )
    }

    #[test]
    fn the_documented_shape_parses_to_typed_values() {
        let e = open(
            r#"{"name":"convert","attributes":{"format":"yaml","lines":120,"ratio":0.5,
                "strict":true,"note":"by jane@example.com","big":18446744073709551615}}"#,
        );
        let e = e.map_err(|e| e.to_string());
        let Ok(e) = e else {
            unreachable!("{e:?}");
        };
        assert_eq!(e.name, "convert");
        assert_eq!(e.undeclared, 0);
        let get = |k: &str| {
            e.attributes
                .iter()
                .find(|(key, _)| *key == k)
                .map(|(_, v)| v)
        };
        assert_eq!(get("format"), Some(&Value::Str("yaml".into())));
        assert_eq!(get("lines"), Some(&Value::Int(120)));
        assert_eq!(get("ratio"), Some(&Value::Float(0.5)));
        assert_eq!(get("strict"), Some(&Value::Bool(true)));
        // Redacted by the SDK when recorded (consent_on.rs checks what arrives).
        assert_eq!(get("note"), Some(&Value::Str("by jane@example.com".into())));
        assert_eq!(
            get("big"),
            Some(&Value::Float(18_446_744_073_709_551_615.0))
        );
        assert!(open(r#"{"name":"bare"}"#).is_ok_and(|e| e.attributes.is_empty()));
    }

    #[test]
    fn undeclared_and_reserved_keys_are_left_out_and_counted() {
        let e = open(r#"{"name":"x","attributes":{"format":"a","user":"jane","plugin":"fake"}}"#);
        assert!(e.is_ok_and(|e| e.undeclared == 2 && e.attributes.len() == 1));
    }

    #[test]
    fn malformed_events_are_refused_with_a_reason() {
        let cases: &[(&str, &str)] = &[
            ("{", "event is not JSON"),
            ("[1]", "got an array"),
            ("\"x\"", "got a string"),
            ("{}", "no \"name\""),
            (r#"{"name":5}"#, "no \"name\""),
            (r#"{"name":"a b"}"#, "\"a b\" is not allowed"),
            (r#"{"name":"x","extra":1}"#, "unknown field \"extra\""),
            (
                r#"{"name":"x","attributes":[]}"#,
                "must be an object, got an array",
            ),
            (
                r#"{"name":"x","attributes":{"format":null}}"#,
                "\"format\" is null",
            ),
            (
                r#"{"name":"x","attributes":{"format":{"a":1}}}"#,
                "is an object",
            ),
            (
                r#"{"name":"x","attributes":{"bad key":1}}"#,
                "\"bad key\" is not allowed",
            ),
        ];
        for (input, reason) in cases {
            let e = open(input).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(e.contains(reason), "{input}: {e:?} lacks {reason:?}");
        }
        let many: Vec<String> = (0..31).map(|i| format!("\"k{i}\":1")).collect();
        let e = open(&format!(
            r#"{{"name":"x","attributes":{{{}}}}}"#,
            many.join(",")
        ));
        assert_eq!(e.err(), Some(EventError::TooManyAttributes(31)));
        let deep = format!(
            r#"{{"name":"x","attributes":{{"k":{}1{}}}}}"#,
            "[".repeat(2000),
            "]".repeat(2000)
        );
        assert!(matches!(open(&deep), Err(EventError::Json(_))));
    }

    #[test]
    fn a_catalog_of_event_names_is_enforced() {
        let catalog = Catalog {
            attribute_keys: &[],
            event_names: Some(&["convert"]),
        };
        assert!(parse(br#"{"name":"convert"}"#, catalog).is_ok());
        assert_eq!(
            parse(br#"{"name":"other"}"#, catalog).err(),
            Some(EventError::Undeclared("other".into()))
        );
    }
}
