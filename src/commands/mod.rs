//! One file per subcommand, each thin: turn arguments into options and call the operations.

pub mod apply;
pub mod check;
pub mod completions;
pub mod plan;
pub mod secrets;
pub mod status;
pub mod unlock;

use std::process::ExitCode;

use crate::cli::{Cli, Command};
use crate::error::Error;

/// Runs the parsed command line; the returned code is the process's exit code.
pub fn run(cli: Cli) -> Result<ExitCode, Error> {
    match cli.command {
        Command::Plan(args) => plan::run(&cli.global, args),
        Command::Apply(args) => apply::run(&cli.global, args),
        Command::Secrets(args) => secrets::run(&cli.global, args),
        Command::Check(args) => check::run(&cli.global, args),
        Command::Status(args) => status::run(&cli.global, args),
        Command::Unlock(args) => unlock::run(&cli.global, args),
        Command::Completions(args) => completions::run(args),
    }
}

/// The async runtime the network stages run on.
fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::usage(format!("cannot start the async runtime: {e}"), None))
}
