//! `deploy plan`: render, read each host, print the plan.

use std::process::ExitCode;

use crate::cli::{Global, PlanArgs};
use crate::error::Error;
use crate::ops;
use crate::output;
use crate::saved::{self, SavedPlan};

pub fn run(global: &Global, args: PlanArgs) -> Result<ExitCode, Error> {
    let mut opts = ops::Options::new(global, &args.selection)?;
    opts.verbose = args.verbose;
    if args.list_hosts {
        for host in ops::list_hosts(&opts)? {
            println!("{host}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let rt = super::runtime()?;
    let prepared = rt.block_on(ops::prepare(&opts))?;
    if args.json {
        output::print_json(&prepared.plan)?;
    } else {
        output::print_plan(&prepared.plan);
    }
    rt.block_on(ops::close(&prepared.connected));
    if let Some(out) = &args.out {
        let hosts = saved::fingerprint(
            &prepared.plan,
            &prepared.desired,
            &prepared.connected,
            &prepared.masker,
        )
        .map_err(|why| {
            Error::usage(format!("not saving a plan with a failed host: {why}"), None)
        })?;
        SavedPlan {
            format: saved::FORMAT.to_string(),
            commit: prepared.plan.commit.as_ref().map(|c| c.id.clone()),
            hosts_selected: opts.hosts.clone(),
            groups_selected: opts.groups.clone(),
            limit: opts.limit.clone(),
            inventories: opts
                .inventories
                .iter()
                .map(|p| std::path::absolute(p).map_err(|e| Error::io(p, e)))
                .collect::<Result<_, _>>()?,
            extra_vars: opts.extra_vars.clone(),
            hosts,
        }
        .write(out)?;
        println!(
            "Saved the plan to {}; apply it with: deploy apply {}",
            out.display(),
            out.display()
        );
    }
    let summary = prepared.plan.summary();
    Ok(if summary.hosts_failed > 0 {
        ExitCode::from(1)
    } else if args.detailed_exitcode && prepared.plan.has_work() {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}
