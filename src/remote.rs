//! Desired state -> what each host has now: opens one connection per host (at most `forks`
//! hosts in flight at once) and reads all of a host's destination paths, the trees of its
//! removals and its deploy state record, in one call. The connections stay open for apply, so a run uses one
//! connection per host.

use futures::StreamExt;

use crate::desired::HostDesired;
use crate::state::HostState;
use crate::transport::{self, Connection, ReadResult, SshOptions, Transport, TransportError};

/// One host after reading: its open connection (when it could be reached) and its files.
pub struct Connected {
    pub transport: Option<Box<dyn Transport>>,
    /// What each desired file's path holds now, in the same order, and the listing of each
    /// removal's root; `Err` is why the host could not be read.
    pub current: Result<ReadResult, String>,
    /// The host's deploy state record (`None`: none yet); `Err` when the host could not be
    /// read or the record is not one deploy understands.
    pub state: Result<Option<HostState>, String>,
}

/// Connects to and reads every host, `forks` at once; `done` is called as each finishes
/// (for progress display). The answer is in `hosts` order.
pub async fn read_all(
    hosts: &[HostDesired],
    ssh: &SshOptions,
    forks: usize,
    done: &(dyn Fn() + Sync),
) -> Vec<Connected> {
    let slots = hosts.iter().map(|_| Slot::New).collect();
    read_all_reusing(hosts, slots, ssh, forks, done).await
}

/// How a host is reached for its read.
pub enum Slot {
    /// Connect now.
    New,
    /// Over the connection already open (the one its facts came through).
    Open(Box<dyn Transport>),
    /// Not at all: the host already failed (its facts could not be gathered).
    Failed(String),
}

/// [`read_all`], each host reached as its slot (in `hosts` order) says.
pub async fn read_all_reusing(
    hosts: &[HostDesired],
    slots: Vec<Slot>,
    ssh: &SshOptions,
    forks: usize,
    done: &(dyn Fn() + Sync),
) -> Vec<Connected> {
    in_order(
        futures::stream::iter(hosts.iter().zip(slots).enumerate())
            .map(|(index, (host, slot))| async move {
                let connected = match slot {
                    Slot::New => read_host(host, ssh, None).await,
                    Slot::Open(t) => read_host(host, ssh, Some(t)).await,
                    Slot::Failed(why) => Connected {
                        transport: None,
                        current: Err(why.clone()),
                        state: Err(why),
                    },
                };
                done();
                (index, connected)
            })
            // Unordered: a new host starts as soon as any one finishes. (`buffered` starts
            // none while the oldest host in flight is still slow, so a large fleet went in
            // waves, the cores idle at the tail of each.)
            .buffer_unordered(forks.max(1))
            .collect()
            .await,
    )
}

/// A host's facts and the open connection they came through.
pub type FactsAnswer = Result<(crate::facts::Facts, Box<dyn Transport>), String>;

/// Connects to each host and asks for its facts (one read-only command), `forks` at once.
/// The answers are in `hosts` order; an `Err` says why (connecting, or the answer).
pub async fn gather_facts(
    hosts: &[(String, Connection)],
    ssh: &SshOptions,
    forks: usize,
    done: &(dyn Fn() + Sync),
) -> Vec<(String, FactsAnswer)> {
    in_order(
        futures::stream::iter(hosts.iter().enumerate())
            .map(|(index, (name, connection))| async move {
                let answer = async {
                    let t = transport::connect(connection, ssh)
                        .await
                        .map_err(|e| format!("gathering facts: {e}"))?;
                    match t.facts().await {
                        Ok(f) => Ok((f, t)),
                        Err(e) => {
                            t.close().await;
                            Err(e.to_string())
                        }
                    }
                }
                .await;
                done();
                (index, (name.clone(), answer))
            })
            .buffer_unordered(forks.max(1))
            .collect()
            .await,
    )
}

/// `(index, item)` pairs, finished in any order -> the items by index.
pub fn in_order<T>(mut done: Vec<(usize, T)>) -> Vec<T> {
    done.sort_by_key(|(index, _)| *index);
    done.into_iter().map(|(_, item)| item).collect()
}

async fn read_host(
    host: &HostDesired,
    ssh: &SshOptions,
    open: Option<Box<dyn Transport>>,
) -> Connected {
    let connected = match open {
        Some(t) => Ok(t),
        None => transport::connect(&host.connection, ssh).await,
    };
    let transport = match connected {
        Ok(t) => t,
        Err(e) => {
            return Connected {
                transport: None,
                current: Err(e.to_string()),
                state: Err(e.to_string()),
            };
        }
    };
    let (current, state) = read_files_and_state(transport.as_ref(), host).await;
    Connected {
        transport: Some(transport),
        current,
        state,
    }
}

/// A host's desired paths, its removals' trees and its state record, in one `read` call.
pub async fn read_files_and_state(
    transport: &dyn Transport,
    host: &HostDesired,
) -> (
    Result<ReadResult, String>,
    Result<Option<HostState>, String>,
) {
    let (paths, trees) = read_request(host);
    judge_read(host, transport.read(&paths, &trees).await)
}

/// What one read of `host` asks for: its desired paths and then its state record, and the
/// trees of its removals.
pub fn read_request(host: &HostDesired) -> (Vec<String>, Vec<String>) {
    let mut paths: Vec<String> = host.files.iter().map(|f| f.dest.clone()).collect();
    paths.push(host.state_path.clone());
    let trees: Vec<String> = host.removals.iter().map(|r| r.root.clone()).collect();
    (paths, trees)
}

/// The answer to [`read_request`] -> the current files and the state record.
pub fn judge_read(
    host: &HostDesired,
    answer: Result<ReadResult, TransportError>,
) -> (
    Result<ReadResult, String>,
    Result<Option<HostState>, String>,
) {
    let (paths, trees) = (host.files.len() + 1, host.removals.len());
    match answer {
        Ok(mut read) if read.files.len() == paths && read.trees.len() == trees => {
            let state = read.files.pop().map_or(Ok(None), |f| {
                HostState::from_remote(&f)
                    .map_err(|e| format!("state record {}: {e}", host.state_path))
            });
            (Ok(read), state)
        }
        Ok(read) => {
            let why = format!(
                "asked for {paths} files and {trees} trees, the host answered for {} and {}",
                read.files.len(),
                read.trees.len()
            );
            (Err(why.clone()), Err(why))
        }
        Err(e) => {
            let why = format!("reading files: {e}");
            (Err(why.clone()), Err(why))
        }
    }
}
