//! Plan -> changes on the hosts. For each host with work (a file to write or a handler to
//! run, one left pending by an earlier run included):
//!
//! 1. take the host lock (`lock.json` beside the state record, created atomically; wait up
//!    to `lock_timeout` while another run holds it);
//! 2. read the host's files and state record again and re-plan that host, so a run that
//!    waited for another one writes only what is still different;
//! 3. write the changed files, remove what `state: absent` and `delete: true` retire, and
//!    write the new state record, in one atomic batch (the record last): it names the
//!    commit, the files' SHA-256 and every handler to run as *pending*;
//! 4. run the handlers in declared order, rewriting the record after each success to clear
//!    it; a failed or unrun handler stays pending for the next apply;
//! 5. poll the `verify:` entries; release the lock (whatever happened).
//!
//! A host that fails does not stop the others.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use futures::StreamExt;
use serde::Serialize;

use crate::desired::HostDesired;
use crate::handlers::{self, HandlerRun};
use crate::mask::Masker;
use crate::plan::{HostPlan, Plan};
use crate::remote::{self, Connected};
use crate::rollout::{self, Lane, Serial};
use crate::state::{self, HostState, Lock, PendingHandler, Provenance};
use crate::transport::{FileOp, Transport, WriteFile};
use crate::verify;

#[derive(Debug, Clone, Serialize)]
pub struct HostOutcome {
    pub host: String,
    /// Paths written.
    pub written: Vec<String>,
    /// Paths removed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<String>,
    pub handlers: Vec<HandlerRun>,
    /// Names of the verify entries that passed.
    pub verified: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Why the host was not started: an earlier batch of a rolling restart failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_started: Option<String>,
    /// What deploy cleaned up on the way (a stale lock broken, stale temporary files).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl HostOutcome {
    pub fn ok(&self) -> bool {
        self.error.is_none() && self.not_started.is_none()
    }
}

/// How a run applies: who it is (stamped into records and locks) and its policies.
pub struct Settings {
    pub who: Provenance,
    /// Random id of this run, in its locks.
    pub run_id: String,
    /// How long to wait for a host another run has locked (zero: refuse at once).
    pub lock_timeout: Duration,
    /// Run every handler due even when a step before it failed on the host: a handler that
    /// fails does not stop the later ones, and handlers left pending by earlier runs still
    /// run when this run's file writes failed.
    pub force_handlers: bool,
    /// Set on Ctrl-C: no host starts new work (lock, write, next handler) after it.
    pub cancel: AtomicBool,
    /// Locks held right now: (host index, lock path), for releasing them when the run is
    /// abandoned mid-way.
    pub held: Mutex<Vec<(usize, String)>>,
    /// `--serial`: every host follows it, whatever deploy.yml's groups say.
    pub serial: Option<Serial>,
    /// `--max-fail-percentage`: replaces every group's `max_fail_percentage`.
    pub max_fail_percentage: Option<f64>,
}

impl Settings {
    pub fn new(who: Provenance, lock_timeout: Duration, force_handlers: bool) -> Settings {
        Settings {
            who,
            run_id: format!("{:016x}", rand::random::<u64>()),
            lock_timeout,
            force_handlers,
            cancel: AtomicBool::new(false),
            held: Mutex::new(Vec::new()),
            serial: None,
            max_fail_percentage: None,
        }
    }

    fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::SeqCst)
    }

    fn hold(&self, index: usize, path: &str, held: bool) {
        if let Ok(mut locks) = self.held.lock() {
            if held {
                locks.push((index, path.to_string()));
            } else {
                locks.retain(|(i, _)| *i != index);
            }
        }
    }
}

/// Applies `plan`; `desired` and `connected` are in plan order. Hosts go in the waves of
/// their rollouts (see `rollout.rs`; without `serial` anywhere, one wave of every host), up to
/// `forks` at once within a wave; a batch that failed beyond its `max_fail_percentage` leaves
/// the later waves' hosts not started. `done` is called as each host finishes (for progress
/// display).
pub async fn apply(
    plan: &Plan,
    desired: &[HostDesired],
    connected: &[Connected],
    masker: &Masker,
    settings: &Settings,
    forks: usize,
    done: &(dyn Fn() + Sync),
) -> Vec<HostOutcome> {
    let lanes = lanes(desired, settings);
    let waves = rollout::waves(&lanes);
    let mut outcomes: Vec<Option<HostOutcome>> = vec![None; plan.hosts.len()];
    let mut stopped: Option<String> = None;
    for wave in &waves {
        if let Some(reason) = &stopped {
            for i in wave.hosts() {
                outcomes[i] = Some(not_started(&plan.hosts[i].host, reason));
                done();
            }
            continue;
        }
        let indexes: Vec<usize> = wave.hosts().collect();
        let results = remote::in_order(
            futures::stream::iter(indexes.iter().enumerate())
                .map(|(slot, &index)| async move {
                    let outcome = apply_host(
                        index,
                        &plan.hosts[index],
                        &desired[index],
                        &connected[index],
                        masker,
                        settings,
                    )
                    .await;
                    done();
                    (slot, outcome)
                })
                // As in `remote::read_all`: the next host starts when any one finishes.
                .buffer_unordered(forks.max(1))
                .collect()
                .await,
        );
        for (&index, outcome) in indexes.iter().zip(results) {
            outcomes[index] = Some(outcome);
        }
        for batch in &wave.batches {
            let lane = &lanes[batch.lane];
            let failed: Vec<&str> = batch
                .hosts
                .iter()
                .filter_map(|&i| outcomes[i].as_ref())
                .filter(|o| !o.ok())
                .map(|o| o.host.as_str())
                .collect();
            if stopped.is_none()
                && rollout::stops(batch.hosts.len(), failed.len(), lane.max_fail_percentage)
            {
                stopped = Some(format!(
                    "batch {}/{} of `{}` failed ({} of {}: {})",
                    batch.number,
                    batch.of,
                    lane.name,
                    failed.len(),
                    batch.hosts.len(),
                    failed.join(", ")
                ));
            }
        }
    }
    outcomes
        .into_iter()
        .enumerate()
        .map(|(i, o)| o.unwrap_or_else(|| not_started(&plan.hosts[i].host, "not in any batch")))
        .collect()
}

fn not_started(host: &str, reason: &str) -> HostOutcome {
    HostOutcome {
        host: host.to_string(),
        written: Vec::new(),
        removed: Vec::new(),
        handlers: Vec::new(),
        verified: Vec::new(),
        error: None,
        not_started: Some(reason.to_string()),
        notes: Vec::new(),
    }
}

/// The hosts' lanes: `--serial` puts every host in one; else each deploy.yml group with
/// `serial:` or `max_fail_percentage:` is a lane of its hosts, and the rest go together.
fn lanes(desired: &[HostDesired], settings: &Settings) -> Vec<Lane> {
    if let Some(serial) = &settings.serial {
        return vec![Lane {
            name: "--serial".into(),
            serial: Some(serial.clone()),
            max_fail_percentage: settings.max_fail_percentage,
            hosts: (0..desired.len()).collect(),
        }];
    }
    let mut lanes: Vec<Lane> = Vec::new();
    for (i, d) in desired.iter().enumerate() {
        let (name, serial, pct) = match &d.rollout {
            Some(r) => (r.group.as_str(), r.serial.clone(), r.max_fail_percentage),
            None => ("", None, None),
        };
        match lanes.iter_mut().find(|l| l.name == name) {
            Some(lane) => lane.hosts.push(i),
            None => lanes.push(Lane {
                name: name.to_string(),
                serial,
                max_fail_percentage: settings.max_fail_percentage.or(pct),
                hosts: vec![i],
            }),
        }
    }
    lanes
}

/// Releases every lock `settings` still holds (after the apply was abandoned mid-way).
pub async fn release_held(desired: &[HostDesired], connected: &[Connected], settings: &Settings) {
    let held = settings
        .held
        .lock()
        .map(|mut h| std::mem::take(&mut *h))
        .unwrap_or_default();
    for (index, path) in held {
        if let (Some(Some(t)), Some(_)) = (
            connected.get(index).map(|c| c.transport.as_deref()),
            desired.get(index),
        ) {
            let _ = t.remove(&path).await;
        }
    }
}

async fn apply_host(
    index: usize,
    host: &HostPlan,
    desired: &HostDesired,
    conn: &Connected,
    masker: &Masker,
    settings: &Settings,
) -> HostOutcome {
    let mut outcome = HostOutcome {
        host: host.host.clone(),
        written: Vec::new(),
        removed: Vec::new(),
        handlers: Vec::new(),
        verified: Vec::new(),
        error: host.error.clone(),
        not_started: None,
        notes: Vec::new(),
    };
    if outcome.error.is_some() || !host.has_work() {
        return outcome;
    }
    let Some(transport) = conn.transport.as_deref() else {
        outcome.error = Some("no connection".into());
        return outcome;
    };
    if settings.cancelled() {
        outcome.error = Some("stopped (interrupted) before it started".into());
        return outcome;
    }
    let lock_path = state::lock_path(&desired.state_path);
    match acquire(transport, &lock_path, settings).await {
        Ok(Some(note)) => outcome.notes.push(note),
        Ok(None) => {}
        Err(e) => {
            outcome.error = Some(e);
            return outcome;
        }
    }
    settings.hold(index, &lock_path, true);
    locked(transport, desired, masker, settings, &mut outcome).await;
    if let Err(e) = transport.remove(&lock_path).await {
        let released = format!("releasing the lock {lock_path}: {e}");
        outcome.error = Some(match outcome.error.take() {
            Some(first) => format!("{first}; {released}"),
            None => released,
        });
    }
    settings.hold(index, &lock_path, false);
    outcome
}

/// Takes the host lock, polling while another run holds it until `lock_timeout` passes. A
/// lock this controller took in a process that is gone (a killed deploy) is broken, once,
/// and said so in the returned note; another controller's lock needs `deploy unlock`.
async fn acquire(
    transport: &dyn Transport,
    path: &str,
    settings: &Settings,
) -> Result<Option<String>, String> {
    let lock = Lock::new(&settings.run_id, &settings.who, SystemTime::now()).to_bytes();
    let deadline = Instant::now() + settings.lock_timeout;
    let mut broke: Option<String> = None;
    loop {
        match transport.create_exclusive(path, &lock).await {
            Ok(None) => return Ok(broke),
            Ok(Some(holder)) => {
                let stale = serde_json::from_slice::<Lock>(&holder).ok().filter(|held| {
                    held.controller == settings.who.controller
                        && held.pid != std::process::id()
                        && crate::controller::process_gone_since(held.pid, held.started_unix)
                });
                if let Some(held) = stale
                    && broke.is_none()
                {
                    transport
                        .remove(path)
                        .await
                        .map_err(|e| format!("cannot break the stale lock {path}: {e}"))?;
                    broke = Some(format!(
                        "broke the lock of {} (its process is gone from this controller)",
                        held.describe()
                    ));
                    continue;
                }
                let now = Instant::now();
                if now >= deadline || settings.cancelled() {
                    let waited = if settings.lock_timeout.is_zero() {
                        "; pass --lock-timeout SECONDS to wait for it".to_string()
                    } else {
                        format!(" after waiting {}s", settings.lock_timeout.as_secs())
                    };
                    return Err(format!(
                        "locked by {} ({path}){waited}; if that run is gone, `deploy unlock` \
                         breaks the lock",
                        state::describe_holder(&holder)
                    ));
                }
                let pause = Duration::from_millis(250).min(deadline - now);
                tokio::time::sleep(pause).await;
            }
            Err(e) => {
                return Err(format!(
                    "cannot take the host lock {path}: {e} (set deploy_state_path to a \
                     writable place)"
                ));
            }
        }
    }
}

/// Everything done while holding the lock; fills `outcome`.
async fn locked(
    transport: &dyn Transport,
    desired: &HostDesired,
    masker: &Masker,
    settings: &Settings,
    outcome: &mut HostOutcome,
) {
    // The plan was computed before the lock: read again so a run that waited for another
    // one writes only what is still different and runs only handlers still due.
    let (current, old_state) = remote::read_files_and_state(transport, desired).await;
    let host = HostPlan::build(desired, &current, &old_state, masker);
    if let Some(e) = host.error {
        outcome.error = Some(e);
        return;
    }
    let old_state = old_state.ok().flatten();
    let since_of = |name: &str| {
        old_state
            .as_ref()
            .and_then(|s| s.pending_handlers.iter().find(|p| p.name == name))
            .map(|p| p.since.clone())
    };
    let new_state = HostState {
        version: state::VERSION,
        commit: settings.who.commit.clone(),
        time: state::rfc3339(SystemTime::now()),
        by: settings.who.by(),
        files: desired
            .files
            .iter()
            .map(|f| (f.dest.clone(), state::sha256_hex(&f.content)))
            .collect(),
        pending_handlers: host
            .handlers
            .iter()
            .map(|h| PendingHandler {
                name: h.name.clone(),
                since: since_of(&h.name).unwrap_or_else(|| settings.who.commit.clone()),
            })
            .collect(),
    };
    let mut ops = host.ops();
    let mut record = new_state;
    let mut to_run = host.handlers.clone();
    if !ops.is_empty() {
        if settings.cancelled() {
            outcome.error = Some("stopped (interrupted) before writing".into());
            return;
        }
        // The record goes last in the batch: it names the handlers as pending before any
        // of them runs, and it is replaced only once every file is written or removed.
        ops.push(FileOp::Write(state_write(&desired.state_path, &record)));
        let written = transport.write_batch(&ops).await;
        if let Ok(swept) = &written
            && !swept.is_empty()
        {
            outcome.notes.push(format!(
                "removed {} left by an earlier run that died mid-write: {}",
                if swept.len() == 1 {
                    "a temporary file".to_string()
                } else {
                    format!("{} temporary files", swept.len())
                },
                swept.join(", ")
            ));
        }
        if let Err(e) = written {
            outcome.error = Some(format!("writing files: {e}"));
            // The old record stands; with --force-handlers, what it left pending still runs.
            match old_state {
                Some(old) if settings.force_handlers => {
                    record = old;
                    to_run.retain(|h| h.pending_from.is_some());
                }
                _ => return,
            }
        } else {
            ops.pop();
            for op in ops {
                match op {
                    FileOp::Write(w) => outcome.written.push(w.path),
                    FileOp::Remove(path) => outcome.removed.push(path),
                }
            }
        }
    }
    for h in &to_run {
        if settings.cancelled() {
            let left = record.pending_handlers.len();
            set_error(
                outcome,
                format!("stopped (interrupted); {left} handler(s) left pending"),
            );
            return;
        }
        let (run, error) = handlers::run_one(transport, h).await;
        if let Some(run) = run {
            outcome.handlers.push(run);
        }
        match error {
            None => {
                record.pending_handlers.retain(|p| p.name != h.name);
                if let Err(e) = transport
                    .write_files(&[state_write(&desired.state_path, &record)])
                    .await
                {
                    set_error(outcome, format!("recording handler `{}`: {e}", h.name));
                    return;
                }
            }
            Some(why) => {
                set_error(outcome, format!("{why} (left pending)"));
                if !settings.force_handlers {
                    return;
                }
            }
        }
    }
    if outcome.error.is_none() {
        let (verified, error) = verify::run(&host.verify).await;
        outcome.verified = verified;
        outcome.error = error;
    }
}

fn set_error(outcome: &mut HostOutcome, why: String) {
    outcome.error = Some(match outcome.error.take() {
        Some(first) => format!("{first}; {why}"),
        None => why,
    });
}

fn state_write(path: &str, record: &HostState) -> WriteFile {
    WriteFile {
        path: path.to_string(),
        content: record.to_bytes().into(),
        mode: 0o600,
        owner: None,
        group: None,
        validate: None,
    }
}
