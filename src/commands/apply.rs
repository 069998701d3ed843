//! `deploy apply`: the plan, a confirmation, then writes and handlers.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use crate::cli::{ApplyArgs, Global};
use crate::error::Error;
use crate::ops;
use crate::output;

pub fn run(global: &Global, args: ApplyArgs) -> Result<ExitCode, Error> {
    let opts = ops::Options::new(global, &args.selection)?;
    let rt = super::runtime()?;
    let prepared = rt.block_on(ops::prepare(&opts))?;
    output::print_plan(&prepared.plan);
    let failed_in_plan = prepared.plan.summary().hosts_failed > 0;
    if !prepared.plan.has_changes() {
        rt.block_on(ops::close(&prepared.connected));
        return Ok(if failed_in_plan {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        });
    }
    if !args.yes {
        confirm()?;
    }
    let outcomes = rt.block_on(ops::apply(&opts, &prepared));
    rt.block_on(ops::close(&prepared.connected));
    output::print_outcomes(&outcomes);
    Ok(if outcomes.iter().all(|o| o.ok()) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Asks on the terminal; refuses when stdin is not one.
fn confirm() -> Result<(), Error> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(Error::usage(
            "refusing to apply without confirmation: stdin is not a terminal",
            Some("pass --yes to apply without asking".into()),
        ));
    }
    print!("\nApply these changes? Only 'yes' is accepted: ");
    let _ = std::io::stdout().flush();
    let mut answer = String::new();
    stdin
        .lock()
        .read_line(&mut answer)
        .map_err(|e| Error::usage(format!("reading the answer: {e}"), None))?;
    if answer.trim() == "yes" {
        Ok(())
    } else {
        Err(Error::Cancelled)
    }
}
