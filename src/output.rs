//! Plans and outcomes -> text for the operator. Colour goes through anstream, which drops it
//! when stdout is not a terminal or NO_COLOR is set (and honours CLICOLOR/CLICOLOR_FORCE).

use std::fmt::Write as _;

use anstyle::{AnsiColor, Style};

use crate::apply::HostOutcome;
use crate::checks::Report;
use crate::diff::Action;
use crate::error::Error;
use crate::plan::{FilePlan, HostPlan, Plan};

const GREEN: Style = AnsiColor::Green.on_default();
const RED: Style = AnsiColor::Red.on_default();
const YELLOW: Style = AnsiColor::Yellow.on_default();
const CYAN: Style = AnsiColor::Cyan.on_default();
const BOLD: Style = Style::new().bold();

fn paint(style: Style, text: &str) -> String {
    format!("{style}{text}{style:#}")
}

/// The plan as text: per host its created and changed files with diffs, the handlers that
/// would run, then a summary line.
pub fn plan_text(plan: &Plan) -> String {
    let mut out = String::new();
    if let Some(c) = &plan.commit {
        let _ = writeln!(out, "Rendered from {} ({})\n", c.rev, c.short());
    }
    let to = plan.commit.as_ref().map(|c| c.short().to_string());
    for host in &plan.hosts {
        host_text(&mut out, host, to.as_deref());
    }
    let s = plan.summary();
    // "to remove" only when there is some, so plans without removals read as they did.
    let remove = if s.remove > 0 {
        format!("{} to remove, ", s.remove)
    } else {
        String::new()
    };
    let mut line = format!(
        "Plan: {} to create, {} to change, {remove}{} unchanged on {}",
        s.create,
        s.change,
        s.unchanged,
        count(s.hosts, "host")
    );
    if s.handlers > 0 {
        let _ = write!(line, "; {} to run", count(s.handlers, "handler"));
    }
    if s.hosts_failed > 0 {
        let _ = write!(line, "; {} failed", count(s.hosts_failed, "host"));
    }
    let _ = writeln!(out, "{}.", paint(BOLD, &line));
    if s.hosts_failed > 0 {
        for host in &plan.hosts {
            if let Some(e) = &host.error {
                let _ = writeln!(out, "  {} {}: {e}", paint(RED, "failed"), host.host);
            }
        }
    }
    out
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// "1 host", "2 hosts".
pub fn count(n: usize, noun: &str) -> String {
    format!("{n} {noun}{}", plural(n))
}

/// `to`: the commit being rendered (`--rev`); `None`: the working tree.
fn host_text(out: &mut String, host: &HostPlan, to: Option<&str>) {
    if let Some(e) = &host.error {
        let _ = writeln!(
            out,
            "{}: {} {e}\n",
            paint(BOLD, &host.host),
            paint(RED, "error:")
        );
        return;
    }
    let unchanged = host
        .files
        .iter()
        .filter(|f| f.change.action == Action::Unchanged)
        .count();
    let notes = |out: &mut String| {
        for n in &host.notes {
            let _ = writeln!(out, "  {} {n}", paint(YELLOW, "note:"));
        }
    };
    if !host.has_work() {
        let _ = writeln!(
            out,
            "{}: no changes ({})",
            paint(BOLD, &host.host),
            count(unchanged, "file")
        );
        notes(out);
        let _ = writeln!(out);
        return;
    }
    let _ = writeln!(out, "{}", paint(BOLD, &host.host));
    notes(out);
    if let Some(from) = host
        .deployed_commit
        .as_ref()
        .filter(|c| c.as_str() != crate::controller::UNKNOWN_COMMIT)
    {
        let from = crate::text::prefix(from, 12);
        let _ = writeln!(out, "  commit {from} -> {}", to.unwrap_or("working tree"));
    }
    for file in host.files.iter().filter(|f| f.op.is_some()) {
        file_text(out, file);
    }
    if unchanged > 0 {
        let _ = writeln!(out, "  = {unchanged} unchanged");
    }
    for h in &host.handlers {
        let pending = h
            .pending_from
            .as_deref()
            .map(|c| format!(" (pending from {c})"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "  {} {}: {}{pending}",
            paint(CYAN, "handler"),
            h.name,
            h.command
        );
    }
    for v in &host.verify {
        let _ = writeln!(
            out,
            "  {} {}: GET {} (expect {}; up to {}s)",
            paint(CYAN, "verify"),
            v.name,
            v.url,
            crate::verify::expected(v),
            v.timeout_secs
        );
    }
    out.push('\n');
}

fn file_text(out: &mut String, file: &FilePlan) {
    let c = &file.change;
    let (sign, style) = match c.action {
        Action::Create => ("+", GREEN),
        Action::Remove => ("-", RED),
        _ => ("~", YELLOW),
    };
    let mut meta = c.notes.clone();
    if let Some(m) = &c.mode {
        meta.push(match &m.from {
            Some(from) => format!("mode {from} -> {}", m.to),
            None => format!("mode {}", m.to),
        });
    }
    for (what, change) in [("owner", &c.owner), ("group", &c.group)] {
        if let Some(ch) = change {
            meta.push(match &ch.from {
                Some(from) => format!("{what} {from} -> {}", ch.to),
                None => format!("{what} {}", ch.to),
            });
        }
    }
    let meta = if meta.is_empty() {
        String::new()
    } else {
        format!(" ({})", meta.join(", "))
    };
    let _ = writeln!(out, "  {} {}{meta}", paint(style, sign), file.shown);
    if let Some(diff) = &c.diff {
        for line in diff.lines() {
            let styled = if line.starts_with("+++") || line.starts_with("---") {
                paint(BOLD, line)
            } else if line.starts_with('+') {
                paint(GREEN, line)
            } else if line.starts_with('-') {
                paint(RED, line)
            } else if line.starts_with("@@") {
                paint(CYAN, line)
            } else {
                line.to_string()
            };
            let _ = writeln!(out, "      {styled}");
        }
    }
}

/// A progress bar on stderr for runs over many hosts; hidden when stderr is not a terminal
/// or the run is small.
pub fn progress(hosts: usize, message: &'static str) -> indicatif::ProgressBar {
    if hosts < 5 {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(hosts as u64),
        indicatif::ProgressDrawTarget::stderr(),
    );
    if let Ok(style) = indicatif::ProgressStyle::with_template("{msg} {bar:30} {pos}/{len} hosts") {
        bar.set_style(style);
    }
    bar.set_message(message);
    bar
}

pub fn print_plan(plan: &Plan) {
    anstream::print!("{}", plan_text(plan));
}

pub fn print_json(plan: &Plan) -> Result<(), Error> {
    /// The document, written as it is serialized: not first copied into a JSON value and
    /// then into one string (at 1000 hosts those copies were the plan's memory peak).
    #[derive(serde::Serialize)]
    struct Doc<'a> {
        format_version: u32,
        hosts: &'a [HostPlan],
        summary: crate::plan::Summary,
    }
    let doc = Doc {
        format_version: 1,
        hosts: &plan.hosts,
        summary: plan.summary(),
    };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    serde_json::to_writer_pretty(&mut out, &doc)
        .map_err(|e| Error::usage(format!("cannot write the plan as JSON: {e}"), None))?;
    std::io::Write::write_all(&mut out, b"\n")
        .and_then(|()| std::io::Write::flush(&mut out))
        .map_err(|e| Error::usage(format!("cannot write the plan as JSON: {e}"), None))
}

/// What apply did, per host, then a summary line.
pub fn outcomes_text(outcomes: &[HostOutcome]) -> String {
    let mut out = String::new();
    let mut written = 0;
    let mut removed = 0;
    let mut handlers = 0;
    for o in outcomes {
        written += o.written.len();
        removed += o.removed.len();
        handlers += o.handlers.iter().filter(|h| h.ok()).count();
        if o.written.is_empty()
            && o.removed.is_empty()
            && o.handlers.is_empty()
            && o.error.is_none()
            && o.notes.is_empty()
            || o.not_started.is_some()
        {
            continue;
        }
        let _ = write!(
            out,
            "{}: wrote {}",
            paint(BOLD, &o.host),
            count(o.written.len(), "file")
        );
        if !o.removed.is_empty() {
            let _ = write!(out, ", removed {}", o.removed.len());
        }
        let ran: Vec<&str> = o
            .handlers
            .iter()
            .filter(|h| h.ok())
            .map(|h| h.name.as_str())
            .collect();
        if !ran.is_empty() {
            let _ = write!(out, "; ran {}", ran.join(", "));
        }
        if !o.verified.is_empty() {
            let _ = write!(out, "; verified {}", o.verified.join(", "));
        }
        for note in &o.notes {
            let _ = write!(out, "; {note}");
        }
        if let Some(e) = &o.error {
            let _ = write!(out, "; {} {e}", paint(RED, "failed:"));
        }
        out.push('\n');
    }
    let failed: Vec<&HostOutcome> = outcomes.iter().filter(|o| o.error.is_some()).collect();
    let waiting: Vec<&HostOutcome> = outcomes
        .iter()
        .filter(|o| o.not_started.is_some())
        .collect();
    let removed = if removed > 0 {
        format!(", {removed} removed")
    } else {
        String::new()
    };
    let mut line = format!(
        "Apply: {} written{removed}, {} run on {}",
        count(written, "file"),
        count(handlers, "handler"),
        count(outcomes.len(), "host")
    );
    if !failed.is_empty() {
        let _ = write!(line, "; {} failed", count(failed.len(), "host"));
    }
    if !waiting.is_empty() {
        let _ = write!(line, "; {} not started", count(waiting.len(), "host"));
    }
    let _ = writeln!(out, "{}.", paint(BOLD, &line));
    for o in failed {
        let _ = writeln!(
            out,
            "  {} {}: {}",
            paint(RED, "failed"),
            o.host,
            o.error.as_deref().unwrap_or("")
        );
    }
    for o in waiting {
        let _ = writeln!(
            out,
            "  {} {}: {}",
            paint(RED, "not started"),
            o.host,
            o.not_started.as_deref().unwrap_or("")
        );
    }
    out
}

pub fn print_outcomes(outcomes: &[HostOutcome]) {
    anstream::print!("\n{}", outcomes_text(outcomes));
}

/// `deploy apply --json`: every host's outcome as one JSON document.
pub fn print_outcomes_json(outcomes: &[HostOutcome]) -> Result<(), Error> {
    let doc = serde_json::json!({ "format_version": 1, "hosts": outcomes });
    let text = serde_json::to_string_pretty(&doc)
        .map_err(|e| Error::usage(format!("cannot write the outcome as JSON: {e}"), None))?;
    println!("{text}");
    Ok(())
}

/// Each check failure (check, host, file, key, what is wrong, what it should be); nothing
/// when all passed.
pub fn checks_text(report: &Report) -> String {
    let mut out = String::new();
    for f in &report.failures {
        let _ = writeln!(
            out,
            "{} {}",
            paint(RED, "check failed:"),
            paint(BOLD, &f.check)
        );
        let _ = writeln!(out, "  host:     {}", f.host);
        if let Some(file) = &f.file {
            let _ = writeln!(out, "  file:     {file}");
        }
        if let Some(key) = &f.key {
            let _ = writeln!(out, "  key:      {key}");
        }
        let _ = writeln!(out, "  problem:  {}", f.problem);
        if let Some(expected) = &f.expected {
            let _ = writeln!(out, "  expected: {expected}");
        }
        out.push('\n');
    }
    out
}

/// The failures, then one summary line.
pub fn check_report_text(report: &Report) -> String {
    let mut out = checks_text(report);
    let on = count(report.hosts, "host");
    let line = if report.passed() {
        format!("Checks: all {} passed on {on}.", report.evaluated)
    } else {
        format!(
            "Checks: {} failed, {} passed on {on}.",
            report.failures.len(),
            report.evaluated.saturating_sub(report.failures.len())
        )
    };
    let _ = writeln!(out, "{}", paint(BOLD, &line));
    out
}

/// Prints the check report; check messages may quote values, so it goes through `masker`.
pub fn print_check_report(report: &Report, masker: &crate::mask::Masker) {
    anstream::print!("{}", masker.mask(&check_report_text(report)));
}

/// What the checks left alone and why, one line each (`--verbose`).
pub fn check_notes_text(report: &Report) -> String {
    let mut out = String::new();
    for n in &report.notes {
        let at = if n.key.is_empty() {
            n.file.clone()
        } else {
            format!("{} {}", n.file, n.key)
        };
        let _ = writeln!(out, "note: {} ({}): {at}: {}", n.host, n.check, n.text);
    }
    out
}

/// `--verbose` on check: the notes before the report.
pub fn print_check_notes(report: &Report, masker: &crate::mask::Masker) {
    anstream::print!("{}", masker.mask(&check_notes_text(report)));
}

/// `--verbose` on plan and apply: the notes on stderr, apart from the plan.
pub fn eprint_check_notes(report: &Report, masker: &crate::mask::Masker) {
    anstream::eprint!("{}", masker.mask(&check_notes_text(report)));
}
