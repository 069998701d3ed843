//! Plan -> changes on the hosts. For each host with work (a file to write or a handler to
//! run, one left pending by an earlier run included), in at most three round trips after the
//! plan's read:
//!
//! 1. take the host lock (`lock.json` beside the state record, created atomically; wait up
//!    to `lock_timeout` while another run holds it) and, in the same call, read the host's
//!    files and state record again under it; re-plan that host, so a run that waited for
//!    another one writes only what is still different;
//! 2. write the changed files, remove what `state: absent` and `delete: true` retire, and
//!    write the new state record, in one atomic batch (the record last): it names the
//!    commit, the files' SHA-256 and every handler to run as *pending*; with no handler to
//!    run, the same batch releases the lock;
//! 3. run the handlers in declared order, the host putting the record without a handler in
//!    place after it succeeded (a failed or unrun handler stays pending for the next apply),
//!    and release the lock, in one call;
//!
//! then poll the `verify:` entries. The lock is released whatever happened.
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
use crate::plan::PlannedHandler;
use crate::plan::{HostPlan, Plan};
use crate::remote::{self, Connected};
use crate::rollout::{self, Lane, Serial};
use crate::state::{self, HostState, Lock, PendingHandler, Provenance};
use crate::transport::{
    FileOp, HandlerBatch, HandlerStep, HandlersDone, LockRead, ReadResult, RecordParts, Transport,
    TransportError, WriteFile,
};
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
    /// Round trips to the host in the whole run, the plan's read included (see
    /// `Transport::round_trips`; 0 for the controller itself).
    pub round_trips: u64,
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
                    let mut outcome = apply_host(
                        index,
                        &plan.hosts[index],
                        &desired[index],
                        &connected[index],
                        masker,
                        settings,
                    )
                    .await;
                    if let Some(t) = connected[index].transport.as_deref() {
                        outcome.round_trips = t.round_trips();
                    }
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

/// The outcome of hosts an apply with nothing to do left alone (their round trips are the
/// plan's read), for `apply --json`.
pub fn untouched(plan: &Plan, connected: &[Connected]) -> Vec<HostOutcome> {
    plan.hosts
        .iter()
        .zip(connected)
        .map(|(host, conn)| HostOutcome {
            not_started: None,
            error: host.error.clone(),
            round_trips: conn.transport.as_deref().map_or(0, |t| t.round_trips()),
            ..not_started(&host.host, "")
        })
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
        round_trips: 0,
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
        round_trips: 0,
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
    let read = match acquire(transport, desired, &lock_path, settings).await {
        Ok((note, read)) => {
            outcome.notes.extend(note);
            read
        }
        Err(e) => {
            outcome.error = Some(e);
            return outcome;
        }
    };
    settings.hold(index, &lock_path, true);
    let (released, verify) = locked(
        transport,
        desired,
        read,
        &lock_path,
        masker,
        settings,
        &mut outcome,
    )
    .await;
    if let Err(why) = released {
        // The steps that release it did not run, or did not say they had.
        if let Err(e) = transport.remove(&lock_path).await {
            let released = match why {
                Some(why) => format!("releasing the lock {lock_path}: {why}; then: {e}"),
                None => format!("releasing the lock {lock_path}: {e}"),
            };
            set_error(&mut outcome, released);
        }
    }
    settings.hold(index, &lock_path, false);
    if outcome.error.is_none() {
        let (verified, error) = verify::run(&verify).await;
        outcome.verified = verified;
        outcome.error = error;
    }
    outcome
}

/// Takes the host lock and reads the host under it (one call), polling while another run
/// holds it until `lock_timeout` passes. A lock this controller took in a process that is
/// gone (a killed deploy) is broken, once, and said so in the returned note; another
/// controller's lock needs `deploy unlock`. `Ok`: the lock is held (whatever the read gave).
async fn acquire(
    transport: &dyn Transport,
    desired: &HostDesired,
    path: &str,
    settings: &Settings,
) -> Result<(Option<String>, Result<ReadResult, TransportError>), String> {
    let lock = Lock::new(&settings.run_id, &settings.who, SystemTime::now()).to_bytes();
    let (paths, trees) = remote::read_request(desired);
    let deadline = Instant::now() + settings.lock_timeout;
    let mut broke: Option<String> = None;
    loop {
        match transport.lock_and_read(path, &lock, &paths, &trees).await {
            Ok(LockRead::Taken(read)) => return Ok((broke, read)),
            Ok(LockRead::Held(holder)) => {
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

/// Everything done while holding the lock, from the read made under it; fills `outcome`.
/// Returns whether the lock was released on the way (`Err`: not, and why when a step that
/// should have released it said so) and the verify entries to poll.
async fn locked(
    transport: &dyn Transport,
    desired: &HostDesired,
    read: Result<ReadResult, TransportError>,
    lock_path: &str,
    masker: &Masker,
    settings: &Settings,
    outcome: &mut HostOutcome,
) -> (
    Result<(), Option<String>>,
    Vec<crate::desired::DesiredVerify>,
) {
    // The plan was computed before the lock: re-plan from what the host has under it, so a
    // run that waited for another one writes only what is still different and runs only
    // handlers still due.
    let (current, old_state) = remote::judge_read(desired, read);
    let host = HostPlan::build(desired, &current, &old_state, masker);
    if let Some(e) = host.error {
        outcome.error = Some(e);
        return (Err(None), Vec::new());
    }
    let verify = host.verify.clone();
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
    let mut released: Result<(), Option<String>> = Err(None);
    if !ops.is_empty() {
        if settings.cancelled() {
            outcome.error = Some("stopped (interrupted) before writing".into());
            return (released, verify);
        }
        // The record goes last in the batch: it names the handlers as pending before any
        // of them runs, and it is replaced only once every file is written or removed.
        ops.push(FileOp::Write(state_write(&desired.state_path, &record)));
        // With no handler to run, the batch also releases the lock (after the record).
        let unlock_here = to_run.is_empty();
        if unlock_here {
            ops.push(FileOp::Remove(lock_path.to_string()));
        }
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
                _ => return (released, verify),
            }
        } else {
            if unlock_here {
                ops.pop();
                released = Ok(());
            }
            ops.pop();
            for op in ops {
                match op {
                    FileOp::Write(w) => outcome.written.push(w.path),
                    FileOp::Remove(path) => outcome.removed.push(path),
                }
            }
        }
    }
    if to_run.is_empty() {
        return (released, verify);
    }
    if settings.cancelled() {
        let left = record.pending_handlers.len();
        set_error(
            outcome,
            format!("stopped (interrupted); {left} handler(s) left pending"),
        );
        return (released, verify);
    }
    let batch = handler_batch(&to_run, &record, &desired.state_path, lock_path, settings);
    let stop = || settings.cancelled();
    let ran = {
        let run = transport.run_handlers(&batch, &stop);
        tokio::pin!(run);
        // Ctrl-C: let the running handler finish, start no later one. Polled, because the
        // host's script learns of it only through its stop file.
        let mut asked = false;
        loop {
            tokio::select! {
                done = &mut run => break done,
                _ = tokio::time::sleep(Duration::from_millis(100)), if !asked => {
                    if settings.cancelled() {
                        asked = true;
                        if let Err(e) = transport.request_stop(lock_path).await {
                            outcome.notes.push(format!("could not stop the handlers: {e}"));
                        }
                    }
                }
            }
        }
    };
    match ran {
        Ok(done) => {
            released = done.unlocked.clone().map_err(Some);
            handler_outcomes(&to_run, done, outcome);
        }
        Err(e) => set_error(outcome, format!("running handlers: {e} (left pending)")),
    }
    (released, verify)
}

/// The handlers to run -> one batch, with the record cut around its pending handlers so
/// the host drops each one's entry once it succeeded.
fn handler_batch(
    to_run: &[PlannedHandler],
    record: &HostState,
    state_path: &str,
    lock_path: &str,
    settings: &Settings,
) -> HandlerBatch {
    HandlerBatch {
        steps: to_run
            .iter()
            .map(|h| HandlerStep {
                command: h.run.clone(),
                pending: record
                    .pending_handlers
                    .iter()
                    .position(|p| p.name == h.name),
            })
            .collect(),
        record: record_parts(record, state_path),
        keep_going: settings.force_handlers,
        lock: lock_path.to_string(),
    }
}

/// `record` -> its parts (see `RecordParts`): the record without pending handlers, cut
/// before its closing brace, and each pending handler's JSON.
fn record_parts(record: &HostState, path: &str) -> RecordParts {
    let mut bare = record.clone();
    bare.pending_handlers.clear();
    let text = bare.to_bytes();
    let (head, tail) = match text.strip_suffix(b"\n}\n") {
        Some(head) => (head.to_vec(), b"\n}\n".to_vec()),
        // Not how serde_json ends a pretty object; keep the record whole, list-less.
        None => (text.clone(), Vec::new()),
    };
    RecordParts {
        path: path.to_string(),
        head,
        pending: record
            .pending_handlers
            .iter()
            .map(|p| serde_json::to_vec(p).unwrap_or_default())
            .collect(),
        tail,
    }
}

/// What the host said each handler did -> `outcome`'s handler runs and errors.
fn handler_outcomes(to_run: &[PlannedHandler], done: HandlersDone, outcome: &mut HostOutcome) {
    let ran = done.ran.len();
    let mut left = to_run.len();
    for (h, step) in to_run.iter().zip(done.ran) {
        let (run, why) = handlers::judge(h, &step.output);
        outcome.handlers.push(run);
        match (why, step.recorded) {
            (Some(why), _) => set_error(outcome, format!("{why} (left pending)")),
            (None, Err(e)) => {
                set_error(outcome, format!("recording handler `{}`: {e}", h.name));
            }
            (None, _) => left -= 1,
        }
    }
    if done.stopped {
        set_error(
            outcome,
            format!("stopped (interrupted); {left} handler(s) left pending"),
        );
    } else if ran == 0 && !to_run.is_empty() {
        set_error(outcome, "no handler ran (left pending)".to_string());
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
