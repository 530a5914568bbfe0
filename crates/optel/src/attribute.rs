//! Attributes: the typed values an event may carry, and the name rules every event name,
//! attribute key and error code follows.
//!
//! Values are typed so that the common cases need no free text: booleans, integers, floats and
//! enum-like `&'static str` constants (a `"json"` format, a `"fast"` mode). A [`Value::Str`] is
//! free text: it goes through [`crate::redact`] before it is stored anywhere.

use std::borrow::Cow;

use optel_wire::AttributeValue;

/// A typed attribute value.
///
/// # Examples
/// ```
/// use optel::Value;
/// let attrs = [("format", Value::from("json")), ("rows", Value::from(3)), ("dry_run", Value::from(false))];
/// optel::global().event_with("export", attrs); // a no-op before init
/// assert_eq!(Value::from("json"), Value::Enum("json"));
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Value {
    /// A boolean.
    Bool(bool),
    /// A signed 64-bit integer.
    Int(i64),
    /// A 64-bit float; non-finite values drop the attribute.
    Float(f64),
    /// An enum-like constant chosen by the author (`"json"`, `"fast"`). Redacted like any
    /// string, but being a compile-time constant it should never need it.
    Enum(&'static str),
    /// Free text, redacted before it is stored (e-mails, tokens, paths, IPs, URLs with
    /// credentials); at most [`optel_wire::limits::MAX_STRING_VALUE_BYTES`] bytes are kept.
    Str(String),
}

impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Self::Bool(v)
    }
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Self::Int(v)
    }
}

impl From<i32> for Value {
    fn from(v: i32) -> Self {
        Self::Int(i64::from(v))
    }
}

impl From<u32> for Value {
    fn from(v: u32) -> Self {
        Self::Int(i64::from(v))
    }
}

impl From<usize> for Value {
    /// Values above `i64::MAX` saturate.
    fn from(v: usize) -> Self {
        Self::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Self::Float(v)
    }
}

impl From<&'static str> for Value {
    fn from(v: &'static str) -> Self {
        Self::Enum(v)
    }
}

impl From<String> for Value {
    fn from(v: String) -> Self {
        Self::Str(v)
    }
}

impl Value {
    /// The wire value after redaction; `None` for a non-finite float.
    pub(crate) fn into_wire(self) -> Option<AttributeValue> {
        Some(match self {
            Self::Bool(b) => AttributeValue::Bool(b),
            Self::Int(i) => AttributeValue::Int(i),
            Self::Float(f) if f.is_finite() => AttributeValue::Float(f),
            Self::Float(_) => return None,
            Self::Enum(s) => AttributeValue::String(crate::redact::redact(s).into_owned()),
            Self::Str(s) => AttributeValue::String(match crate::redact::redact(&s) {
                Cow::Borrowed(_) => s,
                Cow::Owned(o) => o,
            }),
        })
    }
}

/// An event name, attribute key or error code that breaks the rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{what} {name:?} is not allowed: use [A-Za-z0-9_.:-], 1 to {max} bytes",
    max = optel_wire::limits::MAX_NAME_BYTES
)]
pub struct NameError {
    what: &'static str,
    name: String,
}

/// Checks an event name, attribute key or error code: `[A-Za-z0-9_.:-]`, 1 to 64 bytes.
/// Recording drops events that break it: in debug builds with this error on stderr, in release
/// builds silently, counted in the batch's `dropped_events`.
///
/// # Errors
/// [`NameError`] quoting the name.
///
/// # Examples
/// ```
/// assert!(optel::validate_name("build").is_ok());
/// let e = optel::validate_name("x y").unwrap_err();
/// assert_eq!(e.to_string(), "name \"x y\" is not allowed: use [A-Za-z0-9_.:-], 1 to 64 bytes");
/// ```
pub fn validate_name(name: &str) -> Result<(), NameError> {
    check("name", name)
}

pub(crate) fn check(what: &'static str, name: &str) -> Result<(), NameError> {
    if optel_wire::is_valid_name(name) {
        Ok(())
    } else {
        let mut clipped: String = name.chars().take(80).collect();
        if clipped.len() < name.len() {
            clipped.push('…');
        }
        Err(NameError {
            what,
            name: clipped,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_redacted_on_the_way_to_the_wire() {
        assert_eq!(
            Value::from("mail jane@example.com".to_owned()).into_wire(),
            Some(AttributeValue::String("mail <email>".into()))
        );
        assert_eq!(Value::Float(f64::NAN).into_wire(), None);
        assert_eq!(Value::from(3).into_wire(), Some(AttributeValue::Int(3)));
    }

    #[test]
    fn name_errors_quote_the_name() {
        let e = check("event name", "a/b").unwrap_err();
        assert_eq!(
            e.to_string(),
            "event name \"a/b\" is not allowed: use [A-Za-z0-9_.:-], 1 to 64 bytes"
        );
        assert!(check("event name", &"x".repeat(65)).is_err());
        assert!(check("event name", "").is_err());
    }
}
