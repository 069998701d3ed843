//! `deploy unlock --host H [--force]`: break a host's apply lock left by a run that is gone.
//! Without --force only a lock older than an hour, or one taken on this controller by a
//! process that no longer exists, is broken.

use std::process::ExitCode;
use std::time::SystemTime;

use crate::cli::{Global, UnlockArgs};
use crate::controller;
use crate::error::Error;
use crate::ops;
use crate::state::{self, Lock};
use crate::transport::{self, RemoteFile};

pub fn run(global: &Global, args: UnlockArgs) -> Result<ExitCode, Error> {
    if args.selection.hosts.is_empty()
        && args.selection.groups.is_empty()
        && args.selection.limit.is_none()
    {
        return Err(Error::usage(
            "deploy unlock needs --host (or --group, or --limit)",
            Some("name the hosts whose lock to break".into()),
        ));
    }
    let opts = ops::Options::new(global, &args.selection)?;
    let rt = super::runtime()?;
    let rendered = rt.block_on(ops::render_gathered(&opts))?;
    let here = controller::hostname();
    let mut failed = false;
    for host in &rendered.desired {
        let path = state::lock_path(&host.state_path);
        let result: Result<String, String> = rt.block_on(async {
            let t = transport::connect(&host.connection, &opts.ssh)
                .await
                .map_err(|e| e.to_string())?;
            let read = t.read_files(std::slice::from_ref(&path)).await;
            let outcome = match read.map_err(|e| e.to_string())?.pop() {
                None | Some(RemoteFile::Missing) => Ok("not locked".to_string()),
                Some(RemoteFile::Unusable(why)) => Err(format!("{path}: {why}")),
                Some(RemoteFile::Symlink(target)) => Err(format!(
                    "{path}: a symbolic link to {target}, not a lock deploy wrote; remove it \
                     on the host"
                )),
                Some(RemoteFile::Present(f)) => {
                    let holder = state::describe_holder(&f.content);
                    let lock: Option<Lock> = serde_json::from_slice(&f.content).ok();
                    match breakable(lock.as_ref(), &here, args.force) {
                        Ok(why) => t
                            .remove(&path)
                            .await
                            .map(|()| format!("broke the lock of {holder} ({why})"))
                            .map_err(|e| e.to_string()),
                        Err(why) => Err(format!("locked by {holder}: {why}")),
                    }
                }
            };
            t.close().await;
            outcome
        });
        match result {
            Ok(text) => println!("{}: {text}", host.host),
            Err(e) => {
                failed = true;
                println!("{}: {}", host.host, rendered.masker.mask(&e));
            }
        }
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Why the lock may be broken, or why not.
fn breakable(lock: Option<&Lock>, here: &str, force: bool) -> Result<&'static str, String> {
    if force {
        return Ok("--force");
    }
    let Some(lock) = lock else {
        return Err("the lock cannot be read; pass --force to break it".into());
    };
    if lock.age(SystemTime::now()) > state::STALE_LOCK {
        return Ok("older than 1 h");
    }
    if lock.controller == here && controller::process_gone_since(lock.pid, lock.started_unix) {
        return Ok("its process is gone");
    }
    Err(format!(
        "it is younger than 1 h and its process {}; pass --force if you are sure that run is \
         gone",
        if lock.controller == here {
            "is still running here".to_string()
        } else {
            format!("runs on another controller ({})", lock.controller)
        }
    ))
}
