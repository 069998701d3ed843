//! `deploy status`: render like plan, read each host once (its files and state record), and
//! say per host what was deployed, what drifted, what is not recorded and what is pending.

use std::fmt::Write as _;
use std::process::ExitCode;

use crate::cli::{Global, StatusArgs};
use crate::controller;
use crate::diff::Action;
use crate::error::Error;
use crate::ops;
use crate::output::count;
use crate::state::{HostStatus, short_commit};

pub fn run(global: &Global, args: StatusArgs) -> Result<ExitCode, Error> {
    let opts = ops::Options::new(global, &args.selection)?;
    let rt = super::runtime()?;
    let prepared = rt.block_on(ops::prepare(&opts))?;
    rt.block_on(ops::close(&prepared.connected));
    let mut out = String::new();
    let (mut failed, mut attention) = (0, 0);
    let plans = prepared.desired.iter().zip(&prepared.plan.hosts);
    for ((want, plan), conn) in plans.zip(&prepared.connected) {
        let read = conn
            .current
            .as_ref()
            .and_then(|files| conn.state.as_ref().map(|state| (files, state.clone())));
        let (files, record) = match read {
            Ok(read) => read,
            Err(e) => {
                failed += 1;
                let _ = writeln!(out, "{}: error: {}", want.host, prepared.masker.mask(e));
                continue;
            }
        };
        let desired: Vec<(String, &[u8])> = want
            .files
            .iter()
            .map(|f| (f.dest.clone(), &f.content[..]))
            .collect();
        let mut status = HostStatus::judge(&want.host, record, &desired, &files.files);
        // What `state: absent` and `delete: true` would still remove is to apply too.
        status.to_apply.extend(
            plan.files
                .iter()
                .filter(|f| f.change.action == Action::Remove)
                .map(|f| f.path.clone()),
        );
        if status.needs_attention() {
            attention += 1;
        }
        host_text(&mut out, &status, &opts.repo);
    }
    let clean = prepared.desired.len() - failed - attention;
    let mut line = format!("Status: {} clean", count(clean, "host"));
    if attention > 0 {
        let _ = write!(line, ", {attention} with drift or pending work");
    }
    if failed > 0 {
        let _ = write!(line, ", {failed} unreachable");
    }
    let _ = writeln!(out, "{line}.");
    anstream::print!("{}", prepared.masker.mask(&out));
    Ok(if failed > 0 {
        ExitCode::from(1)
    } else if attention > 0 {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

fn host_text(out: &mut String, st: &HostStatus, repo: &std::path::Path) {
    let Some(record) = &st.record else {
        let _ = writeln!(out, "{}: no deploy recorded", st.host);
        if !st.to_apply.is_empty() {
            let _ = writeln!(
                out,
                "  to apply: {} (see deploy plan)",
                count(st.to_apply.len(), "file")
            );
        }
        return;
    };
    let behind = match controller::commits_behind(repo, &record.commit) {
        Some(0) => "at HEAD".to_string(),
        Some(n) => format!("{} behind HEAD", count(n as usize, "commit")),
        None if record.commit == controller::UNKNOWN_COMMIT => "not from git".to_string(),
        None => "not in this repo's history".to_string(),
    };
    let _ = writeln!(
        out,
        "{}: deployed {} ({behind}) at {} by {}",
        st.host,
        short_commit(&record.commit),
        record.time,
        record.by
    );
    for path in &st.drifted {
        let _ = writeln!(out, "  drift: {path} changed on the host since that deploy");
    }
    for path in &st.unrecorded {
        let _ = writeln!(
            out,
            "  not recorded: {path} (managed now, unknown to the record)"
        );
    }
    for p in &record.pending_handlers {
        let _ = writeln!(
            out,
            "  pending handler: {} (from {})",
            p.name,
            short_commit(&p.since)
        );
    }
    if !st.to_apply.is_empty() {
        let _ = writeln!(
            out,
            "  to apply: {} (see deploy plan)",
            count(st.to_apply.len(), "file")
        );
    }
    if !st.needs_attention() {
        let _ = writeln!(out, "  clean");
    }
}
