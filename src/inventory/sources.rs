//! Where an inventory is read from: Ansible's `-i PATH` (an inventory file, or a folder of
//! them), or, without `-i`, the repo's `hosts/` folder. Also which folders' `group_vars/` and
//! `host_vars/` apply (each source's own folder, as Ansible's `host_group_vars` plugin reads
//! them) and which `deploy.yml` goes with the inventory.
//!
//! A file is YAML (or JSON) or INI, decided as Ansible decides: a file named `.yml`, `.yaml`,
//! `.json` or without extension is tried as YAML first, and read as INI when it is not a YAML
//! mapping; any other file is INI. A folder holds inventory files read in name order (folders
//! in it recursively), skipping what Ansible skips (hidden names, `group_vars`, `host_vars`,
//! `vars_plugins`, `*.md`, `*.txt`, `*.rst`, `*.bak`, `*.orig`, `*.cfg`, `*.retry`, `*.swp`,
//! `*.pyc`, `*.pyo`, `*.rpm`, `*~`) and deploy's own `deploy.yml`; every file adds to the
//! same inventory (a host or group named twice is one, its vars merged, later files winning).

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{Parsed, ini, yaml};
use crate::error::Error;

/// The inventory file names looked for in the repo's `hosts/`, in this order.
pub const REPO_INVENTORY_FILES: [&str; 5] = [
    "inventory.yml",
    "inventory.yaml",
    "hosts.yml",
    "inventory.ini",
    "hosts.ini",
];

/// deploy's own file, which an inventory folder may hold beside its inventory files.
pub const MANIFEST_FILE: &str = "deploy.yml";

/// Names Ansible skips in an inventory folder (`INVENTORY_IGNORE_EXTS` and the names it
/// always ignores).
const IGNORED_SUFFIXES: [&str; 12] = [
    ".pyc", ".pyo", ".swp", ".bak", "~", ".rpm", ".md", ".txt", ".rst", ".orig", ".cfg", ".retry",
];
const IGNORED_NAMES: [&str; 3] = ["host_vars", "group_vars", "vars_plugins"];

/// The inventory's sources, in the order they are read.
#[derive(Debug, Clone)]
pub struct Sources {
    entries: Vec<Entry>,
}

#[derive(Debug, Clone)]
enum Entry {
    /// An inventory file given with `-i`.
    File(PathBuf),
    /// A folder given with `-i`: every inventory file in it.
    Folder(PathBuf),
    /// The repo's `hosts/` folder: its first [`REPO_INVENTORY_FILES`].
    RepoHosts(PathBuf),
}

impl Sources {
    /// No `-i`: the repo's `hosts/` folder.
    pub fn repo_hosts(dir: &Path) -> Sources {
        Sources {
            entries: vec![Entry::RepoHosts(dir.to_path_buf())],
        }
    }

    /// `-i PATH...`: inventory files or folders. A folder that is a deploy repo (with
    /// `hosts/`) rather than an inventory is refused: the repo is `--repo` now.
    pub fn paths(paths: &[PathBuf]) -> Result<Sources, Error> {
        let mut entries = Vec::new();
        for path in paths {
            if path.is_dir() {
                refuse_repo(path)?;
                entries.push(Entry::Folder(path.clone()));
            } else if path.is_file() {
                entries.push(Entry::File(path.clone()));
            } else {
                return Err(Error::usage(
                    format!("-i {}: no such inventory file or folder", path.display()),
                    Some(
                        "-i names an inventory file (YAML or INI) or a folder of them, \
                         relative to the current directory"
                            .into(),
                    ),
                ));
            }
        }
        Ok(Sources { entries })
    }

    /// The folders whose `group_vars/` and `host_vars/` apply, in order: each source's folder
    /// (a file's parent, a folder itself), each once.
    pub fn var_dirs(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = Vec::new();
        for e in &self.entries {
            let dir = match e {
                Entry::File(f) => f
                    .parent()
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|| PathBuf::from(".")),
                Entry::Folder(d) | Entry::RepoHosts(d) => d.clone(),
            };
            let dir = if dir.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                dir
            };
            if !dirs.contains(&dir) {
                dirs.push(dir);
            }
        }
        dirs
    }

    /// The folder whose `deploy.yml` goes with this inventory: the one source folder (of a
    /// file, or a folder) that has one, else `fallback` (the repo's `hosts/`). Two different
    /// ones are an error.
    pub fn manifest_dir(&self, fallback: &Path) -> Result<PathBuf, Error> {
        let found: Vec<PathBuf> = self
            .var_dirs()
            .into_iter()
            .filter(|d| d.join(MANIFEST_FILE).is_file())
            .collect();
        match found.as_slice() {
            [] => Ok(fallback.to_path_buf()),
            [one] => Ok(one.clone()),
            [a, b, ..] => Err(Error::usage(
                format!(
                    "two {MANIFEST_FILE} files go with these inventories: {} and {}",
                    a.join(MANIFEST_FILE).display(),
                    b.join(MANIFEST_FILE).display()
                ),
                Some(format!("keep one {MANIFEST_FILE}")),
            )),
        }
    }

    /// Reads every source into `parsed`, in order.
    pub fn read_into(&self, parsed: &mut Parsed) -> Result<(), Error> {
        for e in &self.entries {
            match e {
                Entry::File(f) => read_file(f, parsed)?,
                Entry::Folder(d) => read_folder(d, parsed, true)?,
                Entry::RepoHosts(d) => {
                    let file = REPO_INVENTORY_FILES
                        .iter()
                        .map(|name| d.join(name))
                        .find(|p| p.is_file())
                        .ok_or_else(|| {
                            Error::usage(
                                format!("no inventory in {}", d.display()),
                                Some(format!(
                                    "create {} (an Ansible YAML inventory), or pass -i PATH \
                                     (an inventory file or folder), or --repo DIR",
                                    d.join(REPO_INVENTORY_FILES[0]).display()
                                )),
                            )
                        })?;
                    read_file(&file, parsed)?;
                }
            }
        }
        Ok(())
    }
}

/// A folder that holds a deploy repo's `hosts/` and no inventory file of its own.
fn refuse_repo(dir: &Path) -> Result<(), Error> {
    let hosts = dir.join("hosts");
    let repo_like = hosts.join(MANIFEST_FILE).is_file() || hosts.join("inventory.yml").is_file();
    if !repo_like {
        return Ok(());
    }
    let own_inventory = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(Result::ok)
        .any(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let ext = Path::new(&name).extension().and_then(|x| x.to_str());
            e.path().is_file()
                && !name.starts_with('.')
                && (matches!(ext, Some("yml" | "yaml" | "json" | "ini"))
                    || name == "hosts"
                    || name == "inventory")
        });
    if own_inventory {
        return Ok(());
    }
    Err(Error::usage(
        format!(
            "-i {}: this is a deploy repo (it has {}), not an inventory",
            dir.display(),
            hosts.display()
        ),
        Some(format!(
            "the repo is --repo {} now; -i/--inventory names an inventory file or folder, as in \
             Ansible (default: the repo's hosts/)",
            dir.display()
        )),
    ))
}

fn ignored(name: &str) -> bool {
    name.starts_with('.')
        || IGNORED_NAMES.contains(&name)
        || IGNORED_SUFFIXES.iter().any(|s| name.ends_with(s))
}

fn read_folder(dir: &Path, parsed: &mut Parsed, top: bool) -> Result<(), Error> {
    let mut names: Vec<std::ffi::OsString> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.file_name()))
        .collect();
    // Python sorts os.listdir's bytes.
    names.sort_by(|a, b| a.as_encoded_bytes().cmp(b.as_encoded_bytes()));
    for name in names {
        let text = name.to_string_lossy();
        if ignored(&text) || (top && text == MANIFEST_FILE) {
            continue;
        }
        let path = dir.join(&name);
        if path.is_dir() {
            read_folder(&path, parsed, false)?;
        } else {
            read_file(&path, parsed)?;
        }
    }
    Ok(())
}

/// One inventory file, YAML or INI as Ansible decides.
pub fn read_file(path: &Path, parsed: &mut Parsed) -> Result<(), Error> {
    let ext = path.extension().and_then(|e| e.to_str());
    if ext == Some("toml") {
        return Err(
            Error::config(path.display(), "TOML inventories are not supported")
                .with_hint("write it as YAML or INI"),
        );
    }
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    if bytes.starts_with(b"#!") && is_executable(path) {
        return Err(Error::config(
            path.display(),
            "an executable inventory script: Ansible runs it, deploy does not",
        )
        .with_hint(
            "save its output (`ansible-inventory -i SCRIPT --list -y > hosts.yml`) and use that",
        ));
    }
    let text = String::from_utf8(bytes)
        .map_err(|_| Error::config(path.display(), "an inventory file must be UTF-8 text"))?;
    let yaml_first = matches!(ext, None | Some("yml" | "yaml" | "json"));
    if !yaml_first {
        return ini::parse(path, &text, parsed);
    }
    let yaml_problem = match crate::yaml::parse::<Value>(path, &text) {
        Ok(doc) => match yaml::parse(path, &doc, parsed)? {
            yaml::Read::Inventory => return Ok(()),
            yaml::Read::NotAMapping => Error::config(
                path.display(),
                "an inventory is a mapping of groups (usually `all:`)",
            ),
        },
        Err(e) => e,
    };
    // Ansible goes on with INI. When that fails too, a file named .yml/.yaml/.json is
    // reported as the YAML it was meant to be, one without extension as INI.
    let mut attempt = parsed.clone();
    match ini::parse(path, &text, &mut attempt) {
        Ok(()) => {
            *parsed = attempt;
            Ok(())
        }
        Err(ini_error) if ext.is_none() => {
            Err(ini_error.with_hint(format!("not a YAML inventory either: {yaml_problem}")))
        }
        Err(_) => Err(yaml_problem),
    }
}

#[cfg(unix)]
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(_: &Path) -> bool {
    false
}
