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
use crate::saved::{self, SavedPlan};

pub fn run(global: &Global, args: ApplyArgs) -> Result<ExitCode, Error> {
    let mut opts = ops::Options::new(global, &args.selection)?;
    opts.verbose = args.verbose;
    let saved = match &args.plan_file {
        Some(path) => {
            let sel = &args.selection;
            if !sel.hosts.is_empty()
                || !sel.groups.is_empty()
                || sel.limit.is_some()
                || !global.inventories.is_empty()
                || !sel.extra_vars.is_empty()
                || sel.rev.is_some()
            {
                return Err(Error::usage(
                    "a saved plan carries its own -i, --host, --group, --limit, -e and --rev",
                    Some("give only the plan file (and --identity if it uses secrets)".into()),
                ));
            }
            let saved = SavedPlan::read(path)?;
            opts.hosts = saved.hosts_selected.clone();
            opts.groups = saved.groups_selected.clone();
            opts.limit = saved.limit.clone();
            opts.inventories = saved.inventories.clone();
            opts.extra_vars = saved.extra_vars.clone();
            opts.rev = saved.commit.clone();
            Some((path, saved))
        }
        None => None,
    };
    let rt = super::runtime()?;
    let prepared = rt.block_on(ops::prepare(&opts))?;
    if let Some((path, saved)) = &saved {
        let now = saved::fingerprint(
            &prepared.plan,
            &prepared.desired,
            &prepared.connected,
            &prepared.masker,
        )
        .map_err(|why| Error::usage(format!("cannot apply {}: {why}", path.display()), None))?;
        let reasons = saved.stale_reasons(&now);
        if !reasons.is_empty() {
            rt.block_on(ops::close(&prepared.connected));
            return Err(Error::usage(
                format!(
                    "saved plan {} is stale; nothing was changed:\n  {}",
                    path.display(),
                    reasons.join("\n  ")
                ),
                Some("make a new plan with `deploy plan --out FILE`".into()),
            ));
        }
    }
    if args.json {
        anstream::eprint!("{}", output::plan_text(&prepared.plan));
    } else {
        output::print_plan(&prepared.plan);
    }
    let failed_in_plan = prepared.plan.summary().hosts_failed > 0;
    if !prepared.plan.has_work() {
        if args.json {
            output::print_outcomes_json(&apply::untouched(&prepared.plan, &prepared.connected))?;
        }
        rt.block_on(ops::close(&prepared.connected));
        return Ok(if failed_in_plan {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        });
    }
    // A saved plan was reviewed when it was made, and is applied as it is (as Terraform does).
    if !args.yes && saved.is_none() {
        confirm()?;
    }
    let mut provenance = crate::controller::provenance(&opts.repo);
    if let Some(commit) = &prepared.plan.commit {
        // --rev: the hosts get that commit's files, so that is what they record.
        provenance.commit = commit.id.clone();
    }
    let mut settings = Settings::new(
        provenance,
        Duration::from_secs(args.lock_timeout),
        args.force_handlers,
    );
    settings.serial = args.serial.clone();
    settings.max_fail_percentage = args.max_fail_percentage;
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
    if args.json {
        output::print_outcomes_json(&outcomes)?;
    } else {
        output::print_outcomes(&outcomes);
    }
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
