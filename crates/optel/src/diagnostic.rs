//! `miette::Diagnostic` for the SDK's public errors (feature `miette`): each gets a stable
//! code (`optel::<area>::<kind>`) and, where there is something to do, a help text, so a tool
//! that reports errors with miette shows them like its own.

use std::fmt::Display;

use miette::Diagnostic;

use crate::attribute::NameError;
use crate::export::{ExportError, FileExportError};
use crate::startup::InitError;

fn boxed<'a>(text: &'static str) -> Option<Box<dyn Display + 'a>> {
    Some(Box::new(text))
}

impl Diagnostic for InitError {
    fn code<'a>(&'a self) -> Option<Box<dyn Display + 'a>> {
        boxed(match self {
            Self::AlreadyInitialized => "optel::init::already_initialized",
            Self::InvalidToolName { .. } => "optel::init::invalid_tool_name",
            Self::NoDataDirectory => "optel::init::no_data_directory",
            Self::TlsUnavailable { .. } => "optel::init::tls_unavailable",
            Self::Io { .. } => "optel::init::io",
            Self::InvalidCatalog { .. } => "optel::init::invalid_catalog",
        })
    }

    fn help<'a>(&'a self) -> Option<Box<dyn Display + 'a>> {
        boxed(match self {
            Self::AlreadyInitialized => "call init (or try_init) once, in main, and keep the guard",
            Self::InvalidToolName { .. } => {
                "the tool name is also the environment variable prefix: use [A-Za-z0-9_.:-]"
            }
            Self::NoDataDirectory => "set HOME, or TelemetryBuilder::data_dir",
            Self::TlsUnavailable { .. } => "enable optel's `tls` feature (a default feature)",
            Self::Io { .. } => "telemetry is off for this run; `<tool> telemetry status` says why",
            Self::InvalidCatalog { .. } => {
                "fix the catalog and check it in a test with `Catalog::validate`"
            }
        })
    }
}

impl Diagnostic for NameError {
    fn code<'a>(&'a self) -> Option<Box<dyn Display + 'a>> {
        boxed("optel::name::invalid")
    }

    fn help<'a>(&'a self) -> Option<Box<dyn Display + 'a>> {
        boxed("names, attribute keys and error codes use [A-Za-z0-9_.:-], at most 64 bytes")
    }
}

impl Diagnostic for ExportError {
    fn code<'a>(&'a self) -> Option<Box<dyn Display + 'a>> {
        boxed(match self {
            Self::Retryable { .. } => "optel::export::retryable",
            Self::Rejected(_) => "optel::export::rejected",
        })
    }
}

impl Diagnostic for FileExportError {
    fn code<'a>(&'a self) -> Option<Box<dyn Display + 'a>> {
        boxed(match self {
            Self::Io { .. } => "optel::file_export::io",
            Self::Encode(_) => "optel::file_export::encode",
        })
    }
}

#[cfg(feature = "clap")]
impl Diagnostic for crate::cli::CliError {
    fn code<'a>(&'a self) -> Option<Box<dyn Display + 'a>> {
        boxed(match self {
            Self::NoHome => "optel::cli::no_home",
            Self::Io { .. } => "optel::cli::io",
            Self::Output(_) => "optel::cli::output",
            Self::Forget(_) => "optel::cli::forget",
        })
    }
}

#[cfg(feature = "otlp")]
impl Diagnostic for crate::otlp::OtlpConfigError {
    fn code<'a>(&'a self) -> Option<Box<dyn Display + 'a>> {
        boxed("optel::otlp::config")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_diagnostics_with_codes() {
        let e: &dyn Diagnostic = &InitError::NoDataDirectory;
        assert_eq!(
            e.code().map(|c| c.to_string()).as_deref(),
            Some("optel::init::no_data_directory")
        );
        assert!(e.help().is_some());
        let name = crate::validate_name("x y").unwrap_err();
        assert_eq!(
            Diagnostic::code(&name).map(|c| c.to_string()).as_deref(),
            Some("optel::name::invalid")
        );
    }
}
