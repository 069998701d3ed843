//! `deploy completions SHELL`: the shell's completion script for every command and flag,
//! generated from the same clap definition the binary parses (clap_complete), on stdout.

use std::process::ExitCode;

use clap::CommandFactory;

use crate::cli::{Cli, CompletionsArgs};
use crate::error::Error;

pub fn run(args: CompletionsArgs) -> Result<ExitCode, Error> {
    let mut command = Cli::command();
    clap_complete::generate(args.shell, &mut command, "deploy", &mut std::io::stdout());
    Ok(ExitCode::SUCCESS)
}
