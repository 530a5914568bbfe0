//! The plugin log: what a plugin writes with `telemetry.log(level, ptr, len)`. It goes to the
//! host (stderr by default, or the host's own [`LogSink`]), is never recorded as telemetry and
//! never sent anywhere.

use std::fmt;
use std::io::Write;
use std::sync::Arc;

/// Longest log message kept, in bytes; longer messages are cut on a character boundary and
/// end with `…`.
pub const MAX_LOG_BYTES: usize = 1024;

/// The level of a plugin's log line: the `level` argument of `telemetry.log`.
///
/// | `level` | variant |
/// |---|---|
/// | 0 | [`Error`](Self::Error) |
/// | 1 | [`Warn`](Self::Warn) |
/// | 2 | [`Info`](Self::Info) |
/// | 3 | [`Debug`](Self::Debug) |
/// | 4 | [`Trace`](Self::Trace) |
///
/// Any other value drops the line (counted in [`PluginStats::logs_dropped`](crate::PluginStats)).
///
/// # Examples
/// ```
/// use optel_wasm::LogLevel;
/// assert_eq!(LogLevel::from_code(1), Some(LogLevel::Warn));
/// assert_eq!(LogLevel::from_code(9), None);
/// assert_eq!(LogLevel::Warn.to_string(), "warn");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    /// `0`: something failed.
    Error,
    /// `1`: something looks wrong.
    Warn,
    /// `2`: progress worth telling.
    Info,
    /// `3`: details for the plugin's author.
    Debug,
    /// `4`: even more details.
    Trace,
}

impl LogLevel {
    /// The level for a plugin's `level` argument, `None` if it is not one (see the table).
    pub const fn from_code(code: i32) -> Option<Self> {
        Some(match code {
            0 => Self::Error,
            1 => Self::Warn,
            2 => Self::Info,
            3 => Self::Debug,
            4 => Self::Trace,
            _ => return None,
        })
    }

    /// The level's name in lower case (`"warn"`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Error => "error",
            Self::Warn => "warn",
            Self::Info => "info",
            Self::Debug => "debug",
            Self::Trace => "trace",
        }
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One line of a plugin's log, as a sink given to
/// [`PluginBuilder::log_sink`](crate::PluginBuilder::log_sink) receives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct LogRecord<'a> {
    /// The plugin's name, as the host registered it.
    pub plugin: &'a str,
    /// The plugin's version, as the host registered it.
    pub version: &'a str,
    /// The level.
    pub level: LogLevel,
    /// The message: at most [`MAX_LOG_BYTES`] bytes of valid UTF-8 (invalid bytes become
    /// `�`), one line (control characters, line breaks and terminal escapes included, become
    /// `�` too, so a plugin cannot forge other lines or recolour the terminal).
    pub message: &'a str,
    /// Whether the message comes from the host rather than the plugin (a rejected event, a
    /// spent budget).
    pub from_host: bool,
}

impl fmt::Display for LogRecord<'_> {
    /// `plugin <name> <version>: <level>: <message>`, or `optel-wasm: plugin <name>
    /// <version>: <level>: <message>` for the host's own lines.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.from_host {
            f.write_str("optel-wasm: ")?;
        }
        write!(
            f,
            "plugin {} {}: {}: {}",
            self.plugin, self.version, self.level, self.message
        )
    }
}

/// Where plugin log lines go: a callback given to
/// [`PluginBuilder::log_sink`](crate::PluginBuilder::log_sink), or stderr by default. Called
/// on the thread that runs the plugin; it must not block for long.
#[derive(Clone)]
pub(crate) enum LogSink {
    Stderr,
    Callback(Arc<dyn Fn(&LogRecord<'_>) + Send + Sync>),
}

impl fmt::Debug for LogSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Stderr => f.write_str("Stderr"),
            Self::Callback(_) => f.write_str("Callback"),
        }
    }
}

impl LogSink {
    pub(crate) fn write(&self, record: &LogRecord<'_>) {
        match self {
            // A closed or full stderr must not take the host down: the line is lost.
            Self::Stderr => {
                let _ = writeln!(std::io::stderr().lock(), "{record}");
            }
            Self::Callback(f) => f(record),
        }
    }
}

/// The message a sink receives for `bytes`: lossy UTF-8, at most [`MAX_LOG_BYTES`] bytes,
/// control characters replaced.
pub(crate) fn clean_message(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::with_capacity(text.len().min(MAX_LOG_BYTES + 3));
    for c in text.chars() {
        let c = if c.is_control() { '\u{FFFD}' } else { c };
        if out.len() + c.len_utf8() > MAX_LOG_BYTES {
            out.push('…');
            break;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_one_clean_bounded_line() {
        assert_eq!(clean_message(b"hello"), "hello");
        assert_eq!(
            clean_message(b"a\nb\x1b[31mc\xff"),
            "a\u{FFFD}b\u{FFFD}[31mc\u{FFFD}"
        );
        let long = clean_message(&[b'x'; 5000]);
        assert_eq!(long.len(), MAX_LOG_BYTES + '…'.len_utf8());
        // A multi-byte character is never split.
        let e = clean_message("é".repeat(600).as_bytes());
        assert!(e.ends_with('…') && e.len() <= MAX_LOG_BYTES + 3);
    }

    #[test]
    fn records_name_their_plugin() {
        let record = LogRecord {
            plugin: "fmt",
            version: "1.0.0",
            level: LogLevel::Warn,
            message: "slow",
            from_host: false,
        };
        assert_eq!(record.to_string(), "plugin fmt 1.0.0: warn: slow");
        let host = LogRecord {
            from_host: true,
            ..record
        };
        assert_eq!(host.to_string(), "optel-wasm: plugin fmt 1.0.0: warn: slow");
    }
}
