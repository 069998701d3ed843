//! A plan saved by `deploy plan --out FILE` (Terraform's `-out`) and applied by
//! `deploy apply FILE`. It holds what to render again (the selection, `-e` vars and the
//! commit) and, per host, the SHA-256 of each file as it was when the plan was made and as it
//! will be, and of each file it removes: never file contents, so no secret in clear text
//! (paths are masked as printed, and known by their SHA-256 besides). Apply renders and reads again
//! and refuses the whole plan when any of it differs (Terraform's "saved plan is stale").

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::desired::HostDesired;
use crate::diff::{Action, octal};
use crate::error::Error;
use crate::inventory::Vars;
use crate::mask::Masker;
use crate::plan::Plan;
use crate::remote::Connected;
use crate::state::sha256_hex as sha256;
use crate::transport::RemoteFile;

pub const FORMAT: &str = "deploy-plan/1";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedPlan {
    pub format: String,
    /// The commit the plan was rendered from (`--rev`); `None`: the working tree.
    pub commit: Option<String>,
    pub hosts_selected: Vec<String>,
    pub groups_selected: Vec<String>,
    /// `--limit PATTERN`, as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<String>,
    /// `-i` inventory files or folders, absolute (empty: the repo's hosts/).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inventories: Vec<std::path::PathBuf>,
    pub extra_vars: Vars,
    pub hosts: Vec<SavedHost>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedHost {
    pub host: String,
    pub files: Vec<SavedFile>,
    /// Files and links it removes (`state: absent`, `delete: true`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<SavedRemoval>,
    /// Handlers that will run, in order.
    pub handlers: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedFile {
    /// As printed: secrets masked (a `dest:` may use one).
    pub path: String,
    /// SHA-256 of the real path, which tells apart two paths that mask alike (a secret in a
    /// `dest:` that changed since the plan).
    #[serde(default)]
    pub path_sha256: String,
    /// SHA-256 of the host's file when the plan was made (`None`: missing).
    pub before: Option<String>,
    /// SHA-256 of what apply writes (or keeps).
    pub after: String,
    pub mode: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedRemoval {
    /// As printed: secrets masked.
    pub path: String,
    /// SHA-256 of the real path (see [`SavedFile::path_sha256`]).
    #[serde(default)]
    pub path_sha256: String,
    /// What is there when the plan is made: the file's SHA-256, `symlink -> TARGET`, or
    /// `unreadable`.
    pub before: String,
}

/// The fingerprint of a computed plan: per host, every file before and after, and the
/// handlers. `Err` when a host could not be planned (such a plan cannot be saved). Every
/// path and text in it goes through `masker`, as what is printed does: the file is kept and
/// shared like a plan's output.
pub fn fingerprint(
    plan: &Plan,
    desired: &[HostDesired],
    connected: &[Connected],
    masker: &Masker,
) -> Result<Vec<SavedHost>, String> {
    let mut hosts = Vec::new();
    for ((host, want), conn) in plan.hosts.iter().zip(desired).zip(connected) {
        if let Some(e) = &host.error {
            return Err(format!("host {}: {e}", host.host));
        }
        let current = conn
            .current
            .as_ref()
            .map_err(|e| masker.mask(&format!("host {}: {e}", host.host)))?;
        let files = want
            .files
            .iter()
            .zip(&current.files)
            .zip(&host.files)
            .map(|((w, c), p)| SavedFile {
                path: masker.mask(&w.dest),
                path_sha256: sha256(w.dest.as_bytes()),
                before: match c {
                    RemoteFile::Present(state) => Some(sha256(&state.content)),
                    _ => None,
                },
                after: sha256(&w.content),
                mode: octal(p.change.final_mode),
            })
            .collect();
        let remove = host
            .files
            .iter()
            .filter(|f| f.change.action == Action::Remove)
            .map(|f| SavedRemoval {
                path: masker.mask(&f.path),
                path_sha256: sha256(f.path.as_bytes()),
                before: masker.mask(f.removing.as_deref().unwrap_or_default()),
            })
            .collect();
        hosts.push(SavedHost {
            host: host.host.clone(),
            files,
            remove,
            handlers: host.handlers.iter().map(|h| h.name.clone()).collect(),
        });
    }
    Ok(hosts)
}

/// The same destination: the masked text and the real path's hash.
fn same_path(a: &SavedFile, b: &SavedFile) -> bool {
    a.path == b.path && a.path_sha256 == b.path_sha256
}

impl SavedPlan {
    pub fn write(&self, path: &Path) -> Result<(), Error> {
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| Error::usage(format!("cannot write the plan: {e}"), None))?;
        std::fs::write(path, text + "\n").map_err(|e| Error::io(path, e))
    }

    pub fn read(path: &Path) -> Result<SavedPlan, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let plan: SavedPlan = serde_json::from_str(&text).map_err(|e| {
            Error::config(path.display(), format!("not a saved plan: {e}"))
                .with_hint("make one with `deploy plan --out FILE`")
        })?;
        if plan.format != FORMAT {
            return Err(Error::config(
                path.display(),
                format!(
                    "saved plan format `{}`, this deploy reads `{FORMAT}`",
                    plan.format
                ),
            ));
        }
        Ok(plan)
    }

    /// Why `now` (the same plan computed again) is not what was saved; empty when it is.
    pub fn stale_reasons(&self, now: &[SavedHost]) -> Vec<String> {
        let mut reasons = Vec::new();
        let names = |hosts: &[SavedHost]| hosts.iter().map(|h| h.host.clone()).collect::<Vec<_>>();
        if names(&self.hosts) != names(now) {
            reasons.push(format!(
                "the hosts differ: saved {:?}, now {:?}",
                names(&self.hosts),
                names(now)
            ));
            return reasons;
        }
        for (saved, current) in self.hosts.iter().zip(now) {
            let h = &saved.host;
            for file in &saved.files {
                match current.files.iter().find(|f| same_path(f, file)) {
                    None => reasons.push(format!("host {h}: {} is no longer managed", file.path)),
                    Some(c) if c.before != file.before => reasons.push(format!(
                        "host {h}: {} changed on the host since the plan was made",
                        file.path
                    )),
                    Some(c) if c.after != file.after || c.mode != file.mode => {
                        reasons.push(format!(
                            "host {h}: {} would now be written differently (the inputs changed)",
                            file.path
                        ))
                    }
                    Some(_) => {}
                }
            }
            for file in &current.files {
                if !saved.files.iter().any(|f| same_path(f, file)) {
                    reasons.push(format!("host {h}: {} is newly managed", file.path));
                }
            }
            for gone in &saved.remove {
                match current
                    .remove
                    .iter()
                    .find(|r| r.path == gone.path && r.path_sha256 == gone.path_sha256)
                {
                    None => reasons.push(format!(
                        "host {h}: {} was to be removed, and is no longer (gone from the host, \
                         or the inputs changed)",
                        gone.path
                    )),
                    Some(now) if now.before != gone.before => reasons.push(format!(
                        "host {h}: {}, to be removed, changed on the host since the plan was made",
                        gone.path
                    )),
                    Some(_) => {}
                }
            }
            for now in &current.remove {
                if !saved
                    .remove
                    .iter()
                    .any(|r| r.path == now.path && r.path_sha256 == now.path_sha256)
                {
                    reasons.push(format!("host {h}: {} is now to be removed", now.path));
                }
            }
            if saved.handlers != current.handlers {
                reasons.push(format!(
                    "host {h}: handlers to run were {:?}, now {:?}",
                    saved.handlers, current.handlers
                ));
            }
        }
        reasons
    }
}
