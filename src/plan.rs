//! (desired state, what each host has) -> [`Plan`]: plain data, printable and serializable,
//! with no I/O. `apply` consumes a plan and writes exactly what it lists.

use serde::Serialize;

use std::collections::HashSet;

use crate::desired::{DesiredRemoval, DesiredVerify, FileSource, HostDesired, join_dest};
use crate::diff::{Action, FileChange, compare};
use crate::mask::Masker;
use crate::state::{HostState, short_commit};
use crate::transport::{EntryKind, FileOp, ReadResult, TreeEntry, WriteFile};

/// A host's deploy state record as read (`None`: none yet; `Err`: why it could not be).
pub type HostRecord = Result<Option<HostState>, String>;

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
    /// What the operator should know about this host's plan (a template using
    /// `ansible_date_time` differs on every run).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// The requests the plan made of the host, its facts and the read
    /// (`Transport::round_trips`; 0 for the controller itself).
    pub round_trips: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct FilePlan {
    /// The real path on the host (never printed: a `dest:` may be rendered from a secret).
    #[serde(skip)]
    pub path: String,
    /// `path` as printed, secrets masked.
    #[serde(rename = "path")]
    pub shown: String,
    /// The template it is rendered from (relative to `templates/`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// The file it is copied from (relative to `files/`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub src: Option<String>,
    #[serde(flatten)]
    pub change: FileChange,
    /// What apply does; `None` for an unchanged file.
    #[serde(skip)]
    pub op: Option<FileOp>,
    /// Handlers a change of this file notifies.
    #[serde(skip)]
    pub notify: Vec<String>,
    /// For a removal: what is there now (SHA-256, `symlink -> target`, `unreadable`), which
    /// a saved plan holds to see whether it changed before apply.
    #[serde(skip)]
    pub removing: Option<String>,
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
    pub remove: usize,
    pub unchanged: usize,
    pub handlers: usize,
    pub hosts: usize,
    pub hosts_with_changes: usize,
    pub hosts_failed: usize,
}

impl Plan {
    /// Pairs each host's desired files with what the host has and its deploy state record
    /// (`reads`, in the same order as `desired`; an `Err` is why the host could not be read;
    /// the record's pending handlers join the plan). Borrowed: what hosts hold (a folder of
    /// binaries on every host) is not copied. Every text in the plan goes through `masker`.
    pub fn build<'a>(
        desired: &[HostDesired],
        reads: impl IntoIterator<Item = (&'a Result<ReadResult, String>, &'a HostRecord)>,
        masker: &Masker,
    ) -> Plan {
        let hosts = desired
            .iter()
            .zip(reads)
            .map(|(host, (read, state))| HostPlan::build(host, read, state, masker))
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
                    Action::Remove => s.remove += 1,
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
            notes: Vec::new(),
            round_trips: 0,
        }
    }

    /// One host's plan from what it has now and its state record.
    pub fn build(
        desired: &HostDesired,
        current: &Result<ReadResult, String>,
        state: &Result<Option<HostState>, String>,
        masker: &Masker,
    ) -> HostPlan {
        let current = match current {
            Ok(read) => read,
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
        for (i, (want, have)) in desired.files.iter().zip(&current.files).enumerate() {
            match compare(want, have, masker) {
                Ok(mut change) => {
                    if change.action != Action::Unchanged
                        && let Some(Some(folder)) = current.through.get(i)
                    {
                        change.notes.push(format!(
                            "written through {folder}, a symbolic link on the host"
                        ));
                    }
                    // Host-written text (a link's target) goes out masked like the rest.
                    for note in &mut change.notes {
                        *note = masker.mask(note);
                    }
                    let write = (change.action != Action::Unchanged).then(|| {
                        FileOp::Write(WriteFile {
                            path: want.dest.clone(),
                            content: want.content.clone(),
                            mode: change.final_mode,
                            owner: want.owner.clone(),
                            group: want.group.clone(),
                            validate: want.validate.clone(),
                        })
                    });
                    let (template, src) = match &want.source {
                        FileSource::Template(t) => (Some(t.clone()), None),
                        FileSource::File(f) => (None, Some(f.clone())),
                    };
                    files.push(FilePlan {
                        shown: String::new(),
                        path: want.dest.clone(),
                        template,
                        src,
                        change,
                        op: write,
                        notify: want.notify.clone(),
                        removing: None,
                    });
                }
                Err(b) => blocked.push(format!("cannot replace {}", b.0)),
            }
        }
        // What the host keeps whatever a `delete: true` says: every file it gets, its record
        // and its lock.
        let key = |path: &str| desired.connection.path_key(path);
        let mut keep: HashSet<String> = desired.files.iter().map(|f| key(&f.dest)).collect();
        keep.insert(key(&desired.state_path));
        keep.insert(key(&crate::state::lock_path(&desired.state_path)));
        let mut removed: HashSet<String> = HashSet::new();
        for (removal, listed) in desired.removals.iter().zip(&current.trees) {
            match removals(removal, listed, &keep, &key) {
                Ok(found) => {
                    for plan in found {
                        if plan.op.is_none() || removed.insert(key(&plan.path)) {
                            files.push(plan);
                        }
                    }
                }
                Err(why) => blocked.push(why),
            }
        }
        if !blocked.is_empty() {
            return HostPlan::failed(&desired.host, masker.mask(&blocked.join("; ")));
        }
        // Every printed path goes through the masker: a `dest:` may use a secret.
        for f in &mut files {
            f.shown = masker.mask(&f.path);
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
                let notified_by: Vec<String> = files
                    .iter()
                    .filter(|plan| plan.op.is_some() && plan.notify.contains(&h.name))
                    .map(|plan| plan.shown.clone())
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
            notes: desired.notes.iter().map(|n| masker.mask(n)).collect(),
            round_trips: 0,
        }
    }

    pub fn has_changes(&self) -> bool {
        self.files.iter().any(|f| f.op.is_some())
    }

    /// A file to write or a handler to run (one left pending by an earlier run counts).
    pub fn has_work(&self) -> bool {
        self.has_changes() || !self.handlers.is_empty()
    }

    /// What apply does on this host: the writes, then the removals, in plan order.
    pub fn ops(&self) -> Vec<FileOp> {
        self.files.iter().filter_map(|f| f.op.clone()).collect()
    }
}

/// What a path to remove holds, as a saved plan compares it: the SHA-256 of a file, a
/// link's target, or `unreadable`.
fn removed_state(kind: &EntryKind) -> String {
    match kind {
        EntryKind::File { sha256, .. } => sha256.clone(),
        EntryKind::Symlink { target } => format!("symlink -> {target}"),
        _ => "unreadable".to_string(),
    }
}

/// The plan entries of one removal, from the listing of its root: `state: absent` gives one
/// (unchanged when nothing is there); `delete: true` one per file or link under the folder
/// that `keep` (path keys) does not hold. `Err` says why the host cannot be planned.
fn removals(
    removal: &DesiredRemoval,
    listed: &Result<Vec<TreeEntry>, String>,
    keep: &HashSet<String>,
    key: &dyn Fn(&str) -> String,
) -> Result<Vec<FilePlan>, String> {
    let root = &removal.root;
    let entries = listed.as_ref().map_err(|why| format!("{root}: {why}"))?;
    let top = entries.iter().find(|e| e.rel.is_empty());
    let remove = |path: String, kind: &EntryKind| FilePlan {
        shown: String::new(),
        path: path.clone(),
        template: None,
        src: None,
        change: FileChange::removal(),
        op: Some(FileOp::Remove(path)),
        notify: removal.notify.clone(),
        removing: Some(removed_state(kind)),
    };
    if !removal.tree {
        return match top.map(|e| &e.kind) {
            None => Ok(vec![FilePlan {
                shown: String::new(),
                path: root.clone(),
                template: None,
                src: None,
                change: FileChange::unchanged(),
                op: None,
                notify: Vec::new(),
                removing: None,
            }]),
            Some(
                kind @ (EntryKind::File { .. } | EntryKind::Symlink { .. } | EntryKind::Unreadable),
            ) => Ok(vec![remove(root.clone(), kind)]),
            Some(EntryKind::Dir) => Err(format!(
                "{root} is a directory; `state: absent` removes only files and symbolic links"
            )),
            Some(EntryKind::Other(what)) => Err(format!(
                "{root}: {what}; `state: absent` removes only files and symbolic links"
            )),
        };
    }
    match top.map(|e| &e.kind) {
        None | Some(EntryKind::Dir) => {}
        Some(EntryKind::Symlink { .. }) => {
            return Err(format!(
                "{root} is a symbolic link; `delete: true` needs a folder there"
            ));
        }
        Some(_) => return Err(format!("{root} is not a folder; `delete: true` needs one")),
    }
    let mut out = Vec::new();
    for entry in entries.iter().filter(|e| !e.rel.is_empty()) {
        // Folders stay (deploy never removes one), and so does anything it cannot name.
        if !matches!(
            entry.kind,
            EntryKind::File { .. } | EntryKind::Symlink { .. } | EntryKind::Unreadable
        ) {
            continue;
        }
        let path = join_dest(root, &entry.rel);
        if !keep.contains(&key(&path)) {
            out.push(remove(path, &entry.kind));
        }
    }
    Ok(out)
}
