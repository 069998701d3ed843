//! The only exit: parse arguments, run the command, turn the result into an exit code.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = deploy::cli::Cli::parse();
    match deploy::commands::run(cli) {
        Ok(code) => code,
        Err(e) => {
            anstream::eprintln!(
                "{}error:{} {e}",
                anstyle::AnsiColor::Red.on_default().bold().render(),
                anstyle::Reset.render()
            );
            ExitCode::from(1)
        }
    }
}
