//! The one error type of the crate: what can go wrong while a host sets plugins up. Once
//! plugins run, nothing here is returned to the host: a misbehaving plugin gets an error code
//! or a trap (see [`code`](crate::code)), and a plugin exporter's failures are
//! [`ExportError`](optel::export::ExportError)s.

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error while setting plugins up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A plugin name, attribute key or event name breaks the SDK's name rules.
    #[error(transparent)]
    Name(#[from] optel::NameError),
    /// A plugin version is empty, longer than 64 bytes, or holds a space or a control
    /// character.
    #[error(
        "plugin version {0:?} is not allowed: use 1 to 64 bytes of printable ASCII without spaces"
    )]
    Version(String),
    /// The host declared an attribute key that optel adds itself (`plugin`, `plugin_version`).
    #[error("attribute key {0:?} is reserved for the plugin's identity: choose another key")]
    ReservedKey(&'static str),
    /// The host functions could not be defined, e.g. because the linker already defines
    /// `telemetry.log`.
    #[error("cannot define the telemetry host functions: {0}")]
    Link(#[from] wasmi::errors::LinkerError),
    /// A plugin used as an exporter lacks an export the protocol needs, or it has the wrong
    /// type.
    #[error("plugin {plugin:?} cannot be an exporter: it must export {export} ({reason})")]
    MissingExport {
        /// The plugin's name.
        plugin: String,
        /// The export and its expected type.
        export: &'static str,
        /// What the runtime said.
        reason: String,
    },
    /// A plugin exporter needs an engine that meters fuel, so a looping plugin cannot hang
    /// the host's exit.
    #[error(
        "the plugin exporter's engine does not meter fuel: create it with `wasmi::Config::consume_fuel(true)`"
    )]
    FuelDisabled,
}
