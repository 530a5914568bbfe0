//! The `optel` binary: everything lives in the library so that tests can reach it.

use std::process::ExitCode;

fn main() -> ExitCode {
    optel_cli::main_exit_code()
}
