//! `<TOOL>_TELEMETRY_DEBUG=1`: one line on stderr per decision telemetry takes (consent and
//! its layer, endpoint, data directory, each request's size and outcome, the breaker and the
//! daily cap, the exit wait), so that silent delivery trouble can be seen. Off by default:
//! telemetry never writes to the host's terminal otherwise.

use crate::consent;

/// Where debug lines go: stderr when `<TOOL>_TELEMETRY_DEBUG` is set to a true value.
#[derive(Debug, Clone, Default)]
pub(crate) struct DebugLog {
    /// The tool's name, when debugging is on.
    tool: Option<String>,
}

impl DebugLog {
    /// On when `<TOOL>_TELEMETRY_DEBUG` is set to anything but empty, `0`, `false` or `off`.
    pub(crate) fn from_env(env: &dyn Fn(&str) -> Option<String>, tool: &str) -> Self {
        let var = format!("{}_TELEMETRY_DEBUG", consent::env_prefix(tool));
        let on = env(&var).is_some_and(|v| {
            let v = v.trim();
            !(v.is_empty()
                || v == "0"
                || v.eq_ignore_ascii_case("false")
                || v.eq_ignore_ascii_case("off"))
        });
        Self {
            tool: on.then(|| tool.to_owned()),
        }
    }

    /// Whether lines are printed.
    #[cfg(test)]
    pub(crate) fn enabled(&self) -> bool {
        self.tool.is_some()
    }

    /// Prints the line `line()` makes, when debugging is on (it is not even made otherwise).
    pub(crate) fn line(&self, line: impl FnOnce() -> String) {
        if let Some(tool) = &self.tool {
            eprintln!("optel debug ({tool}): {}", line());
        }
    }
}

/// A point in time as RFC 3339 UTC seconds, for debug and status lines.
pub(crate) fn rfc3339(t: std::time::SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_only_when_asked() {
        let with = |v: &'static str| {
            DebugLog::from_env(
                &move |k: &str| (k == "MY_CLI_TELEMETRY_DEBUG").then(|| v.to_owned()),
                "my-cli",
            )
            .enabled()
        };
        assert!(with("1"));
        assert!(with("true"));
        assert!(!with("0"));
        assert!(!with("off"));
        assert!(!with(""));
        assert!(!DebugLog::from_env(&|_: &str| None, "my-cli").enabled());
    }
}
