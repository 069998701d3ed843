//! `deploy apply`: the plan, a confirmation, then writes and handlers, each host under its
//! lock. Ctrl-C during the apply stops new work (no new lock, write or handler), lets what
//! runs finish, releases the locks and exits 130; a second Ctrl-C abandons what runs and
//! releases the locks at once.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::apply::{self, Settings};
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
    if !prepared.plan.has_work() {
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
    let mut provenance = crate::controller::provenance(&opts.repo);
    if let Some(commit) = &prepared.plan.commit {
        // --rev: the hosts get that commit's files, so that is what they record.
        provenance.commit = commit.id.clone();
    }
    let settings = Settings::new(
        provenance,
        Duration::from_secs(args.lock_timeout),
        args.force_handlers,
    );
    let outcomes = rt.block_on(async {
        let run = ops::apply(&opts, &prepared, &settings);
        tokio::pin!(run);
        loop {
            tokio::select! {
                outcomes = &mut run => break Some(outcomes),
                _ = tokio::signal::ctrl_c() => {
                    if settings.cancel.swap(true, Ordering::SeqCst) {
                        break None;
                    }
                    eprintln!(
                        "interrupted: starting nothing new; waiting for what runs (Ctrl-C \
                         again to abandon it)"
                    );
                }
            }
        }
    });
    let interrupted = settings.cancel.load(Ordering::SeqCst);
    let Some(outcomes) = outcomes else {
        rt.block_on(apply::release_held(
            &prepared.desired,
            &prepared.connected,
            &settings,
        ));
        rt.block_on(ops::close(&prepared.connected));
        eprintln!("abandoned; locks released; unfinished handlers stay pending");
        return Ok(ExitCode::from(130));
    };
    rt.block_on(ops::close(&prepared.connected));
    output::print_outcomes(&outcomes);
    Ok(if interrupted {
        ExitCode::from(130)
    } else if outcomes.iter().all(|o| o.ok()) {
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
