//! Changed files -> each notified handler run once on its host, in the order deploy.yml
//! declares them, after all of that host's files are written. The first handler that fails
//! fails the host; the ones after it do not run (unless `--force-handlers`; see `apply.rs`,
//! which also records each handler as pending until it succeeds).

use serde::Serialize;

use crate::plan::PlannedHandler;
use crate::transport::Transport;

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

/// Runs `handlers` in order until one fails. Returns what ran and, when one failed or could
/// not be started, why.
pub async fn run(
    transport: &dyn Transport,
    handlers: &[PlannedHandler],
) -> (Vec<HandlerRun>, Option<String>) {
    let mut runs = Vec::new();
    for h in handlers {
        let (run, error) = run_one(transport, h).await;
        runs.extend(run);
        if error.is_some() {
            return (runs, error);
        }
    }
    (runs, None)
}

/// Runs one handler: what it printed (when it could be started) and, when it failed, why.
pub async fn run_one(
    transport: &dyn Transport,
    h: &PlannedHandler,
) -> (Option<HandlerRun>, Option<String>) {
    match transport.run(&h.run).await {
        Ok(out) => {
            let run = HandlerRun {
                name: h.name.clone(),
                status: out.status,
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            };
            if run.ok() {
                return (Some(run), None);
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
            (Some(run), Some(why))
        }
        Err(e) => (None, Some(format!("handler `{}`: {e}", h.name))),
    }
}
