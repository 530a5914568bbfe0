//! Ingest keys and the admin token: generated from the OS's random source, stored only as a
//! SHA-256 hash, compared in constant time.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Prefix of every ingest key, so that a leaked key is recognisable (e.g. by secret scanners).
pub const INGEST_KEY_PREFIX: &str = "optel_ik_";

/// Prefix of every browser ingest key: sent in a page's `?key=`, so public by design, and
/// only valid from the origins it was created for.
pub const BROWSER_KEY_PREFIX: &str = "optel_bk_";

/// A new ingest key: `optel_ik_` followed by 32 hex digits (128 random bits).
///
/// # Errors
/// The OS has no randomness to give.
pub fn generate_ingest_key() -> std::io::Result<String> {
    generate_key(INGEST_KEY_PREFIX)
}

/// A new browser ingest key: `optel_bk_` followed by 32 hex digits (128 random bits).
///
/// # Errors
/// The OS has no randomness to give.
pub fn generate_browser_key() -> std::io::Result<String> {
    generate_key(BROWSER_KEY_PREFIX)
}

pub(crate) fn generate_key(prefix: &str) -> std::io::Result<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(format!("{prefix}{}", hex::encode(bytes)))
}

/// Checks a browser key's origin as `optel keys create --browser --origin` takes it: the
/// serialisation a browser sends in `Origin`, `scheme://host[:port]`, no path.
///
/// # Errors
/// A message quoting the value and showing the accepted form.
pub fn check_origin(origin: &str) -> Result<(), String> {
    let rest = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
        .ok_or_else(|| format!("origin {origin:?} must start with https:// (or http://)"))?;
    let ok = !rest.is_empty()
        && rest.len() <= 253
        && rest
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "origin {origin:?} is not scheme://host[:port]: give it as a browser sends it in \
             Origin, e.g. https://app.example or http://localhost:5173, without a path"
        ))
    }
}

/// SHA-256 of a key, hex: the only form in which keys are stored.
pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Whether `given` equals `expected`, in time independent of where they differ (both are hashed
/// first, so their lengths do not leak either).
pub fn token_matches(given: &str, expected: &str) -> bool {
    Sha256::digest(given.as_bytes())
        .ct_eq(&Sha256::digest(expected.as_bytes()))
        .into()
}

/// The token of an `Authorization: Bearer <token>` header value.
pub fn bearer(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty()).then(|| token.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_unique_and_prefixed() {
        let a = generate_ingest_key().unwrap();
        let b = generate_ingest_key().unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with(INGEST_KEY_PREFIX));
        assert_eq!(a.len(), INGEST_KEY_PREFIX.len() + 32);
        assert_eq!(hash_key(&a).len(), 64);
    }

    #[test]
    fn bearer_parsing() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
        assert!(token_matches("x", "x"));
        assert!(!token_matches("x", "y"));
    }
}
