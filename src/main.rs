//! The only exit: parse arguments, run the command, turn the result into an exit code.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // Terraform spells them `-out FILE` and `-auto-approve`; clap would read `-o ut`.
    let args = std::env::args_os().map(|a| match a.to_str() {
        Some("-out") => "--out".into(),
        Some(s) if s.starts_with("-out=") => format!("-{s}").into(),
        Some("-auto-approve") => "--auto-approve".into(),
        _ => a,
    });
    let cli = deploy::cli::Cli::parse_from(args);
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
