//! `deploy check`: render every file of the selected hosts and run every check, contacting
//! no host. Exit 0 when all pass, 1 otherwise.

use std::process::ExitCode;

use crate::cli::{CheckArgs, Global};
use crate::error::Error;
use crate::ops;
use crate::output;

pub fn run(global: &Global, args: CheckArgs) -> Result<ExitCode, Error> {
    let opts = ops::Options::new(global, &args.selection)?;
    if args.list_hosts {
        for host in ops::list_hosts(&opts)? {
            println!("{host}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let checked = ops::check(&opts)?;
    if args.verbose {
        output::print_check_notes(&checked.report, &checked.rendered.masker);
    }
    output::print_check_report(&checked.report, &checked.rendered.masker);
    Ok(if checked.report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
