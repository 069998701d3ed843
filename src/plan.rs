//! (desired state, what each host has) -> [`Plan`]: plain data, printable and serializable,
//! with no I/O. `apply` consumes a plan and writes exactly what it lists.

use serde::Serialize;

use crate::desired::{DesiredVerify, HostDesired};
use crate::diff::{Action, FileChange, compare};
use crate::mask::Masker;
use crate::state::{HostState, short_commit};
use crate::transport::{RemoteFile, WriteFile};

#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub hosts: Vec<HostPlan>,
    /// The commit the inputs were rendered from (`--rev`); `None`: the working tree.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<crate::source::Commit>,
}

#[derive(Debug, Clone, Serialize)]
pub struct HostPlan {
    pub host: String,
    pub files: Vec<FilePlan>,
    /// Handlers that would run, in declared order, each once.
    pub handlers: Vec<PlannedHandler>,
    /// Polled after apply when the host has changes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub verify: Vec<DesiredVerify>,
    /// Why this host could not be planned (unreachable, a path that cannot be replaced...).
    /// Such a host is left alone by apply.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The commit the host's state record says was deployed last (`None`: no record).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deployed_commit: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FilePlan {
    pub path: String,
    pub template: String,
    #[serde(flatten)]
    pub change: FileChange,
    /// What apply writes; `None` for an unchanged file.
    #[serde(skip)]
    pub write: Option<WriteFile>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedHandler {
    pub name: String,
    /// The command as printed (secrets masked).
    pub command: String,
    /// The command that runs.
    #[serde(skip)]
    pub run: String,
    /// Files whose change notifies it.
    pub notified_by: Vec<String>,
    /// Short commit of the deploy that notified it when a run before this one left it
    /// pending (it failed, or deploy was stopped, before the handler succeeded).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending_from: Option<String>,
}

/// Counts for the summary line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub create: usize,
    pub change: usize,
    pub unchanged: usize,
    pub handlers: usize,
    pub hosts: usize,
    pub hosts_with_changes: usize,
    pub hosts_failed: usize,
}

impl Plan {
    /// Pairs each host's desired files with what the host has (`current`, in the same order
    /// as `desired`; an `Err` is why the host could not be read) and its deploy state record
    /// (`states`, same order; its pending handlers join the plan).
    /// Every text in the plan goes through `masker`.
    pub fn build(
        desired: &[HostDesired],
        current: &[Result<Vec<RemoteFile>, String>],
        states: &[Result<Option<HostState>, String>],
        masker: &Masker,
    ) -> Plan {
        let hosts = desired
            .iter()
            .zip(current)
            .zip(states)
            .map(|((host, read), state)| HostPlan::build(host, read, state, masker))
            .collect();
        Plan {
            hosts,
            commit: None,
        }
    }

    /// Whether apply has anything to do: a file to write or a handler to run.
    pub fn has_work(&self) -> bool {
        self.hosts.iter().any(HostPlan::has_work)
    }

    pub fn summary(&self) -> Summary {
        let mut s = Summary {
            hosts: self.hosts.len(),
            ..Summary::default()
        };
        for host in &self.hosts {
            if host.error.is_some() {
                s.hosts_failed += 1;
            }
            if host.has_changes() {
                s.hosts_with_changes += 1;
            }
            s.handlers += host.handlers.len();
            for f in &host.files {
                match f.change.action {
                    Action::Create => s.create += 1,
                    Action::Change => s.change += 1,
                    Action::Unchanged => s.unchanged += 1,
                }
            }
        }
        s
    }

    pub fn has_changes(&self) -> bool {
        self.hosts.iter().any(HostPlan::has_changes)
    }
}

impl HostPlan {
    fn failed(host: &str, why: String) -> HostPlan {
        HostPlan {
            host: host.to_string(),
            files: Vec::new(),
            handlers: Vec::new(),
            verify: Vec::new(),
            error: Some(why),
            deployed_commit: None,
        }
    }

    /// One host's plan from what it has now and its state record.
    pub fn build(
        desired: &HostDesired,
        current: &Result<Vec<RemoteFile>, String>,
        state: &Result<Option<HostState>, String>,
        masker: &Masker,
    ) -> HostPlan {
        let current = match current {
            Ok(files) => files,
            Err(why) => return HostPlan::failed(&desired.host, masker.mask(why)),
        };
        let state = match state {
            Ok(state) => state.as_ref(),
            Err(why) => {
                let why = format!("{why} (move it away to start a new record)");
                return HostPlan::failed(&desired.host, masker.mask(&why));
            }
        };
        let mut files = Vec::new();
        let mut blocked = Vec::new();
        for (want, have) in desired.files.iter().zip(current) {
            match compare(want, have, masker) {
                Ok(change) => {
                    let write = (change.action != Action::Unchanged).then(|| WriteFile {
                        path: want.dest.clone(),
                        content: want.content.clone().into(),
                        mode: change.final_mode,
                        owner: want.owner.clone(),
                        group: want.group.clone(),
                    });
                    files.push(FilePlan {
                        path: want.dest.clone(),
                        template: want.template.clone(),
                        change,
                        write,
                    });
                }
                Err(b) => blocked.push(b.0),
            }
        }
        if !blocked.is_empty() {
            return HostPlan::failed(
                &desired.host,
                masker.mask(&format!("cannot replace {}", blocked.join("; "))),
            );
        }
        let pending = |name: &str| {
            state?
                .pending_handlers
                .iter()
                .find(|p| p.name == name)
                .map(|p| short_commit(&p.since))
        };
        let handlers = desired
            .handlers
            .iter()
            .filter_map(|h| {
                let notified_by: Vec<String> = desired
                    .files
                    .iter()
                    .zip(&files)
                    .filter(|(want, plan)| {
                        plan.change.action != Action::Unchanged && want.notify.contains(&h.name)
                    })
                    .map(|(want, _)| want.dest.clone())
                    .collect();
                let pending_from = pending(&h.name);
                (!notified_by.is_empty() || pending_from.is_some()).then(|| PlannedHandler {
                    name: h.name.clone(),
                    command: h.shown.clone(),
                    run: h.command.clone(),
                    notified_by,
                    pending_from,
                })
            })
            .collect();
        HostPlan {
            host: desired.host.clone(),
            files,
            handlers,
            verify: desired.verify.clone(),
            error: None,
            deployed_commit: state.map(|s| s.commit.clone()),
        }
    }

    pub fn has_changes(&self) -> bool {
        self.files.iter().any(|f| f.write.is_some())
    }

    /// A file to write or a handler to run (one left pending by an earlier run counts).
    pub fn has_work(&self) -> bool {
        self.has_changes() || !self.handlers.is_empty()
    }

    /// The files apply writes on this host.
    pub fn writes(&self) -> Vec<WriteFile> {
        self.files.iter().filter_map(|f| f.write.clone()).collect()
    }
}
