//! One handler's output -> what it printed and, when it failed, why (the host runs a host's
//! handlers in one call: `Transport::run_handlers`).
//! `apply.rs` runs a host's handlers once each, in the order deploy.yml declares them, after
//! all of that host's files are written; the first that fails fails the host and stops the
//! later ones (unless `--force-handlers`), and each stays pending in the host's record until
//! it succeeds.

use serde::Serialize;

use crate::plan::PlannedHandler;
use crate::transport::CommandOutput;

#[derive(Debug, Clone, Serialize)]
pub struct HandlerRun {
    pub name: String,
    pub status: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl HandlerRun {
    pub fn ok(&self) -> bool {
        self.status == Some(0)
    }
}

/// What handler `h` printed and how it ended -> its run and, when it failed, why.
pub fn judge(h: &PlannedHandler, out: &CommandOutput) -> (HandlerRun, Option<String>) {
    let run = HandlerRun {
        name: h.name.clone(),
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    if run.ok() {
        return (run, None);
    }
    let status = run
        .status
        .map_or("a signal".to_string(), |s| format!("status {s}"));
    let detail = run.stderr.trim();
    let why = if detail.is_empty() {
        format!("handler `{}` failed with {status}", h.name)
    } else {
        format!("handler `{}` failed with {status}: {detail}", h.name)
    };
    (run, Some(why))
}
