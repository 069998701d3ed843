//! Desired state -> what each host has now: opens one connection per host (at most `forks`
//! hosts in flight at once) and reads all of a host's destination paths in one call. The
//! connections stay open for apply, so a run uses one connection per host.

use futures::StreamExt;

use crate::desired::HostDesired;
use crate::transport::{self, RemoteFile, SshOptions, Transport};

/// One host after reading: its open connection (when it could be reached) and its files.
pub struct Connected {
    pub transport: Option<Box<dyn Transport>>,
    /// What each desired file's path holds now, in the same order; `Err` is why the host
    /// could not be read.
    pub current: Result<Vec<RemoteFile>, String>,
}

/// Connects to and reads every host, `forks` at once; `done` is called as each finishes
/// (for progress display).
pub async fn read_all(
    hosts: &[HostDesired],
    ssh: &SshOptions,
    forks: usize,
    done: &(dyn Fn() + Sync),
) -> Vec<Connected> {
    futures::stream::iter(hosts)
        .map(|host| async move {
            let connected = read_host(host, ssh).await;
            done();
            connected
        })
        .buffered(forks.max(1))
        .collect()
        .await
}

async fn read_host(host: &HostDesired, ssh: &SshOptions) -> Connected {
    let transport = match transport::connect(&host.connection, ssh).await {
        Ok(t) => t,
        Err(e) => {
            return Connected {
                transport: None,
                current: Err(e.to_string()),
            };
        }
    };
    let paths: Vec<String> = host.files.iter().map(|f| f.dest.clone()).collect();
    let current = match transport.read_files(&paths).await {
        Ok(files) if files.len() == paths.len() => Ok(files),
        Ok(files) => Err(format!(
            "asked for {} files, the host answered for {}",
            paths.len(),
            files.len()
        )),
        Err(e) => Err(format!("reading files: {e}")),
    };
    Connected {
        transport: Some(transport),
        current,
    }
}
