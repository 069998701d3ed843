//! `deploy plan`: render, read each host, print the plan.

use std::process::ExitCode;

use crate::cli::{Global, PlanArgs};
use crate::error::Error;
use crate::ops;
use crate::output;

pub fn run(global: &Global, args: PlanArgs) -> Result<ExitCode, Error> {
    let opts = ops::Options::new(global, &args.selection)?;
    let rt = super::runtime()?;
    let prepared = rt.block_on(ops::prepare(&opts))?;
    if args.json {
        output::print_json(&prepared.plan)?;
    } else {
        output::print_plan(&prepared.plan);
    }
    rt.block_on(ops::close(&prepared.connected));
    let summary = prepared.plan.summary();
    Ok(if summary.hosts_failed > 0 {
        ExitCode::from(1)
    } else if args.detailed_exitcode && prepared.plan.has_work() {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}
