//! Consent: whether telemetry runs at all, and which layer decided it.
//!
//! Layers, highest first (PRODUCT.md, "Consent layers"): `DO_NOT_TRACK`, the tool's own
//! variable `<TOOL>_TELEMETRY`, then the author's default. Resolution reads environment
//! variables only: no file, no hashing, no allocation beyond the variable names.

use std::fmt;

/// The consent state of a tool on this machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Consent {
    /// Nothing runs: no thread, no file, no socket.
    Off,
    /// Events are recorded, queued locally and sent to the endpoint.
    On,
}

impl Consent {
    /// `"off"` or `"on"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::On => "on",
        }
    }
}

impl fmt::Display for Consent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The layer that decided the consent state, as `status` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConsentSource {
    /// `DO_NOT_TRACK` was set to a true value (<https://consoledonottrack.com>).
    DoNotTrack,
    /// The tool's own environment variable, e.g. `ACME_TELEMETRY`; holds the variable's name.
    ToolEnv(String),
    /// Nothing else decided: the author's default passed to the builder.
    AuthorDefault,
}

impl fmt::Display for ConsentSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::DoNotTrack => f.write_str("environment variable DO_NOT_TRACK"),
            Self::ToolEnv(var) => write!(f, "environment variable {var}"),
            Self::AuthorDefault => f.write_str("the tool's default"),
        }
    }
}

/// The environment variable prefix of a tool: its name upper-cased, every character outside
/// `[A-Z0-9]` replaced by `_` (`my-cli` → `MY_CLI`).
pub(crate) fn env_prefix(tool: &str) -> String {
    tool.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// Resolves consent from the environment, highest layer first. A value of the tool's variable
/// that is not understood turns telemetry off (fail closed) and says so in the returned note.
pub(crate) fn resolve(
    env: &dyn Fn(&str) -> Option<String>,
    tool_var: &str,
    default: Consent,
) -> (Consent, ConsentSource, Option<String>) {
    if env("DO_NOT_TRACK").is_some_and(|v| is_truthy(&v)) {
        return (Consent::Off, ConsentSource::DoNotTrack, None);
    }
    if let Some(value) = env(tool_var) {
        let source = ConsentSource::ToolEnv(tool_var.to_owned());
        return match parse_switch(&value) {
            Some(consent) => (consent, source, None),
            None => (
                Consent::Off,
                source,
                Some(format!(
                    "{tool_var}={value:?} is not understood, so telemetry is off: use off or on"
                )),
            ),
        };
    }
    (default, ConsentSource::AuthorDefault, None)
}

/// `DO_NOT_TRACK` counts when set to anything but an empty string, `0` or `false`.
fn is_truthy(v: &str) -> bool {
    let v = v.trim();
    !(v.is_empty() || v == "0" || v.eq_ignore_ascii_case("false"))
}

fn parse_switch(v: &str) -> Option<Consent> {
    match v.trim().to_ascii_lowercase().as_str() {
        "off" | "0" | "false" | "no" | "disable" | "disabled" => Some(Consent::Off),
        "on" | "1" | "true" | "yes" | "enable" | "enabled" => Some(Consent::On),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    }

    #[test]
    fn prefix() {
        assert_eq!(env_prefix("my-cli.v2"), "MY_CLI_V2");
    }

    /// Environment, author default, expected state, expected deciding layer.
    type Case = (
        &'static [(&'static str, &'static str)],
        Consent,
        Consent,
        &'static str,
    );

    #[test]
    fn precedence() {
        let cases: &[Case] = &[
            (&[], Consent::Off, Consent::Off, "default"),
            (&[], Consent::On, Consent::On, "default"),
            (
                &[("ACME_TELEMETRY", "on")],
                Consent::Off,
                Consent::On,
                "tool",
            ),
            (
                &[("ACME_TELEMETRY", "off")],
                Consent::On,
                Consent::Off,
                "tool",
            ),
            (
                &[("ACME_TELEMETRY", "maybe")],
                Consent::On,
                Consent::Off,
                "tool",
            ),
            (
                &[("DO_NOT_TRACK", "1"), ("ACME_TELEMETRY", "on")],
                Consent::On,
                Consent::Off,
                "dnt",
            ),
            (
                &[("DO_NOT_TRACK", "true")],
                Consent::On,
                Consent::Off,
                "dnt",
            ),
            (
                &[("DO_NOT_TRACK", "0"), ("ACME_TELEMETRY", "on")],
                Consent::Off,
                Consent::On,
                "tool",
            ),
            (&[("DO_NOT_TRACK", "")], Consent::On, Consent::On, "default"),
        ];
        for (vars, default, want, layer) in cases {
            let (got, source, _) = resolve(&with(vars), "ACME_TELEMETRY", *default);
            assert_eq!(got, *want, "{vars:?}");
            let got_layer = match source {
                ConsentSource::DoNotTrack => "dnt",
                ConsentSource::ToolEnv(_) => "tool",
                ConsentSource::AuthorDefault => "default",
            };
            assert_eq!(got_layer, *layer, "{vars:?}");
        }
    }
}
