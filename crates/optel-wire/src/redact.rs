//! Redaction: free-form strings lose anything that identifies a person, a machine or a secret
//! before they are stored anywhere (memory buffer, queue, ledger, wire, the collector's
//! database). The one copy of the rules: the SDK applies them when an attribute is recorded
//! (`optel::redact` re-exports this module), the collector again to every string it stores,
//! whichever door it came through (native batches and OTLP).
//!
//! Each match is replaced by a placeholder that says what was there:
//!
//! | what | example | becomes |
//! |---|---|---|
//! | URL with credentials or a query string | `https://u:p@h/x`, `https://h/x?token=1` | `<url>` |
//! | JSON Web Token | `eyJhbGciOi...` | `<token>` |
//! | AWS access key id | `AKIAIOSFODNN7EXAMPLE` | `<token>` |
//! | GitHub token | `ghp_...`, `github_pat_...` | `<token>` |
//! | Slack token | `xoxb-...` | `<token>` |
//! | `key=`/`secret=`/`token=`/`password=` forms | `api_key=abc` | `api_key=<redacted>` |
//! | e-mail address | `jane@example.com` | `<email>` |
//! | absolute or home path | `/home/jane/x`, `~/x`, `C:\Users\x` | `<path>` |
//! | IPv4 / IPv6 address | `10.0.0.1`, `fe80::1` | `<ip>` |
//!
//! URLs without credentials or query strings (`https://docs.rs/optel`) are kept. The result is
//! cut to [`crate::limits::MAX_STRING_VALUE_BYTES`] on a character boundary. The rules
//! are pinned by the table in `sdk/fixtures/redaction.json` (read by both SDKs' tests).
//!
//! Redaction is a safety net, not a licence: attribute values should be enum-like
//! `&'static str` constants, numbers or booleans wherever possible.

use std::borrow::Cow;
use std::net::Ipv6Addr;
use std::sync::LazyLock;

use regex_lite::{Captures, Regex};

/// One rule: a pattern and what replaces its matches (`$name` expansions allowed).
struct Rule {
    re: Option<Regex>,
    with: &'static str,
}

fn rule(pattern: &str, with: &'static str) -> Rule {
    // The patterns are constants covered by tests; a pattern that failed to compile would
    // disable only its own rule, never panic in the host.
    Rule {
        re: Regex::new(pattern).ok(),
        with,
    }
}

static URL: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s<>]+").ok());

/// Dotted runs of digits; a run is an address only if it parses whole as IPv4, so that
/// `1.2.3.4.5` (a version) is kept.
static IPV4: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"\b[0-9]{1,3}(?:\.[0-9]+){3,}\b").ok());

static RULES: LazyLock<Vec<Rule>> = LazyLock::new(|| {
    vec![
        rule(
            r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*",
            "<token>",
        ),
        rule(r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA)[A-Z0-9]{16}\b", "<token>"),
        rule(r"\bgh[pousr]_[A-Za-z0-9]{30,}\b", "<token>"),
        rule(r"\bgithub_pat_[A-Za-z0-9_]{20,}", "<token>"),
        rule(r"\bxox[abposr]-[A-Za-z0-9-]{10,}", "<token>"),
        rule(
            r"(?i)\b(?P<k>[a-z0-9_.-]*(?:key|secret|token|password|passwd|pwd|credential|auth)[a-z0-9_.-]*)(?P<sep>\s*[=:]\s*)(?P<v>[^\s&;,]+)",
            "$k$sep<redacted>",
        ),
        rule(
            r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}",
            "<email>",
        ),
        // Absolute Unix paths, home paths and Windows drive or UNC paths, where a path starts:
        // at the start, after a space, a quote, `=`, `:` or `(`.
        rule(
            r#"(?P<pre>^|[\s"'=:(,])(?:~[/\\]|~$|/|[A-Za-z]:[\\/]|\\\\)[^\s"',)]*"#,
            "$pre<path>",
        ),
    ]
});

/// Redacts `input` (see the module docs); borrows when nothing changed.
///
/// # Examples
/// ```
/// let r = optel_wire::redact::redact("failed for jane@example.com at /home/jane/app");
/// assert_eq!(r, "failed for <email> at <path>");
/// assert_eq!(optel_wire::redact::redact("json"), "json");
/// ```
pub fn redact(input: &str) -> Cow<'_, str> {
    let mut s: Cow<'_, str> = Cow::Borrowed(input);
    // URLs first, so that the path rule does not cut them in half and credentials inside them
    // are not half-redacted.
    if let Some(url) = URL.as_ref()
        && url.is_match(&s)
    {
        let replaced = url
            .replace_all(&s, |c: &Captures<'_>| {
                let m = c.get(0).map_or("", |m| m.as_str());
                let authority = m.split("://").nth(1).unwrap_or("");
                let authority = authority.split(['/', '?', '#']).next().unwrap_or("");
                if authority.contains('@') || m.contains('?') || is_ip_host(authority) {
                    "<url>".to_owned()
                } else {
                    m.to_owned()
                }
            })
            .into_owned();
        s = Cow::Owned(replaced);
    }
    // Kept URLs must not be touched by the path rule: cut the string into URL and non-URL
    // pieces and redact only the latter.
    let out = match URL.as_ref() {
        Some(url) if url.is_match(&s) => {
            let mut out = String::with_capacity(s.len());
            let mut last = 0;
            for m in url.find_iter(&s) {
                out.push_str(&apply_rules(&s[last..m.start()]));
                out.push_str(m.as_str());
                last = m.end();
            }
            out.push_str(&apply_rules(&s[last..]));
            Cow::Owned(out)
        }
        _ => match apply_rules(&s) {
            Cow::Borrowed(_) => s,
            Cow::Owned(o) => Cow::Owned(o),
        },
    };
    truncate(out, crate::limits::MAX_STRING_VALUE_BYTES)
}

fn is_ip_host(authority: &str) -> bool {
    let host = authority.rsplit('@').next().unwrap_or(authority);
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.split(']').next())
        .unwrap_or_else(|| host.split(':').next().unwrap_or(host));
    host.parse::<std::net::IpAddr>().is_ok()
}

fn apply_rules(input: &str) -> Cow<'_, str> {
    let mut s: Cow<'_, str> = Cow::Borrowed(input);
    for rule in RULES.iter() {
        let Some(re) = &rule.re else { continue };
        if re.is_match(&s) {
            s = Cow::Owned(re.replace_all(&s, rule.with).into_owned());
        }
    }
    if let Some(re) = IPV4.as_ref()
        && re.is_match(&s)
    {
        let replaced = re
            .replace_all(&s, |c: &Captures<'_>| {
                let m = c.get(0).map_or("", |m| m.as_str());
                if m.parse::<std::net::Ipv4Addr>().is_ok() {
                    "<ip>".to_owned()
                } else {
                    m.to_owned()
                }
            })
            .into_owned();
        if replaced != *s {
            s = Cow::Owned(replaced);
        }
    }
    match redact_ipv6(&s) {
        Some(o) => Cow::Owned(o),
        None => s,
    }
}

/// Replaces whole tokens that parse as IPv6 addresses (optionally in brackets, with a zone or
/// a port). Tokens are runs of `[0-9A-Za-z:.%\[\]]`, so `Database::connect` stays one token
/// and does not parse.
fn redact_ipv6(s: &str) -> Option<String> {
    if !s.contains(':') {
        return None;
    }
    let is_tok = |c: char| c.is_ascii_alphanumeric() || matches!(c, ':' | '.' | '%' | '[' | ']');
    let mut out = String::with_capacity(s.len());
    let mut changed = false;
    let mut rest = s;
    while let Some(start) = rest.find(is_tok) {
        out.push_str(&rest[..start]);
        let tail = &rest[start..];
        let end = tail.find(|c: char| !is_tok(c)).unwrap_or(tail.len());
        let tok = &tail[..end];
        if looks_ipv6(tok) {
            out.push_str("<ip>");
            changed = true;
        } else {
            out.push_str(tok);
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    changed.then_some(out)
}

fn looks_ipv6(tok: &str) -> bool {
    if tok.matches(':').count() < 2 {
        return false;
    }
    let t = tok
        .strip_prefix('[')
        .map_or(tok, |t| t.split(']').next().unwrap_or(t));
    let t = t.split('%').next().unwrap_or(t);
    t.parse::<Ipv6Addr>().is_ok()
}

fn truncate(s: Cow<'_, str>, max: usize) -> Cow<'_, str> {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(s[..end].to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rule_compiles() {
        assert!(URL.is_some());
        assert!(IPV4.is_some());
        for r in RULES.iter() {
            assert!(r.re.is_some(), "a redaction pattern does not compile");
        }
    }

    #[test]
    fn unchanged_input_is_borrowed() {
        assert!(matches!(redact("plain words"), Cow::Borrowed(_)));
    }

    #[test]
    fn long_values_are_cut_on_a_char_boundary() {
        let s = "é".repeat(200);
        let r = redact(&s);
        assert!(r.len() <= crate::limits::MAX_STRING_VALUE_BYTES);
        assert!(r.chars().all(|c| c == 'é'));
    }
}
