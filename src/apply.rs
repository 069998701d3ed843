//! Plan -> changes on the hosts: for each host with changes, write exactly the files the plan
//! lists (atomically, through the transport), then run its notified handlers, then poll its
//! `verify:` entries. A host that fails does not stop the others.

use futures::StreamExt;
use serde::Serialize;

use crate::handlers::{self, HandlerRun};
use crate::plan::{HostPlan, Plan};
use crate::remote::Connected;
use crate::verify;

#[derive(Debug, Clone, Serialize)]
pub struct HostOutcome {
    pub host: String,
    /// Paths written.
    pub written: Vec<String>,
    pub handlers: Vec<HandlerRun>,
    /// Names of the verify entries that passed.
    pub verified: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl HostOutcome {
    pub fn ok(&self) -> bool {
        self.error.is_none()
    }
}

/// Applies `plan`; `connected` holds each host's open connection, in plan order. `done` is
/// called as each host finishes (for progress display).
pub async fn apply(
    plan: &Plan,
    connected: &[Connected],
    forks: usize,
    done: &(dyn Fn() + Sync),
) -> Vec<HostOutcome> {
    futures::stream::iter(plan.hosts.iter().zip(connected))
        .map(|(host, conn)| async move {
            let outcome = apply_host(host, conn).await;
            done();
            outcome
        })
        .buffered(forks.max(1))
        .collect()
        .await
}

async fn apply_host(host: &HostPlan, conn: &Connected) -> HostOutcome {
    let mut outcome = HostOutcome {
        host: host.host.clone(),
        written: Vec::new(),
        handlers: Vec::new(),
        verified: Vec::new(),
        error: host.error.clone(),
    };
    if outcome.error.is_some() || !host.has_changes() {
        return outcome;
    }
    let Some(transport) = conn.transport.as_deref() else {
        outcome.error = Some("no connection".into());
        return outcome;
    };
    let writes = host.writes();
    if let Err(e) = transport.write_files(&writes).await {
        outcome.error = Some(format!("writing files: {e}"));
        return outcome;
    }
    outcome.written = writes.into_iter().map(|w| w.path).collect();
    let (runs, error) = handlers::run(transport, &host.handlers).await;
    outcome.handlers = runs;
    outcome.error = error;
    if outcome.error.is_none() {
        let (verified, error) = verify::run(&host.verify).await;
        outcome.verified = verified;
        outcome.error = error;
    }
    outcome
}
