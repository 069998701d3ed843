//! Local transport: the controller itself. With a root directory (`deploy_root`), every host
//! path is put under it, so a folder stands in for a host's `/`; that is how the example fleet
//! and many tests run with no setup at all.

use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use async_trait::async_trait;

use sha2::{Digest, Sha256};

use super::{
    CommandOutput, EntryKind, FileOp, FileState, MAX_HELD_LOCK, MAX_TREE_ENTRIES, ReadLimits,
    ReadResult, RemoteFile, Swept, Transport, TransportError, TreeEntry, WriteFile,
    too_many_entries, under_root,
};

pub struct LocalTransport {
    root: Option<PathBuf>,
    limits: ReadLimits,
}

impl LocalTransport {
    /// Removes deploy's own stale temporary files (`.NAME.deploy-*.tmp`, regular files only)
    /// from the folders `ops` writes to; returns their host paths.
    fn sweep(&self, ops: &[FileOp]) -> Swept {
        let mut dirs: Vec<String> = Vec::new();
        for op in ops {
            if let FileOp::Write(f) = op {
                let dir = match f.path.rsplit_once('/') {
                    Some(("", _)) => "/".to_string(),
                    Some((d, _)) => d.to_string(),
                    None => continue,
                };
                if !dirs.contains(&dir) {
                    dirs.push(dir);
                }
            }
        }
        let mut swept = Vec::new();
        for dir in dirs {
            let Ok(entries) = fs::read_dir(self.path(&dir)) else {
                continue;
            };
            for entry in entries.filter_map(Result::ok) {
                let name = entry.file_name().to_string_lossy().into_owned();
                let ours =
                    name.starts_with('.') && name.ends_with(".tmp") && name.contains(".deploy-");
                let regular = entry.file_type().is_ok_and(|t| t.is_file());
                if ours && regular && fs::remove_file(entry.path()).is_ok() {
                    swept.push(format!("{}/{name}", dir.trim_end_matches('/')));
                }
            }
        }
        swept
    }

    pub fn new(root: Option<&Path>) -> LocalTransport {
        LocalTransport {
            root: root.map(Path::to_path_buf),
            limits: ReadLimits::default(),
        }
    }

    /// The nearest folder on the way to `host_path` (below the root) that is a symbolic link.
    fn linked_folder(&self, host_path: &str) -> Option<String> {
        let mut p = host_path;
        while let Some(i) = p.rfind('/') {
            p = &p[..i];
            if p.is_empty() {
                break;
            }
            if fs::symlink_metadata(self.path(p)).is_ok_and(|m| m.file_type().is_symlink()) {
                return Some(p.to_string());
            }
        }
        None
    }

    /// The same transport reading at most `limits`.
    pub fn with_limits(self, limits: ReadLimits) -> LocalTransport {
        LocalTransport { limits, ..self }
    }

    fn path(&self, host_path: &str) -> PathBuf {
        under_root(self.root.as_deref(), host_path)
    }
}

#[async_trait]
impl Transport for LocalTransport {
    async fn read(&self, paths: &[String], trees: &[String]) -> Result<ReadResult, TransportError> {
        let mut total: u64 = 0;
        let mut files = Vec::with_capacity(paths.len());
        let through = paths.iter().map(|p| self.linked_folder(p)).collect();
        for p in paths {
            let file = read_one(&self.path(p), &self.limits);
            if let RemoteFile::Present(f) = &file {
                total = total.saturating_add(f.content.len() as u64);
                if total > self.limits.host {
                    return Err(TransportError::Io(self.limits.host_too_much(total)));
                }
            }
            files.push(file);
        }
        let mut budget = MAX_TREE_ENTRIES;
        let mut listed = Vec::with_capacity(trees.len());
        for root in trees {
            match list_tree(&self.path(root), &mut budget) {
                Ok(entries) => listed.push(Ok(entries)),
                Err(ListError::Io(why)) => listed.push(Err(why)),
                Err(ListError::TooMany) => {
                    let why = too_many_entries(trees);
                    listed = trees.iter().map(|_| Err(why.clone())).collect();
                    break;
                }
            }
        }
        Ok(ReadResult {
            files,
            trees: listed,
            through,
        })
    }

    async fn write_batch(&self, ops: &[FileOp]) -> Result<Swept, TransportError> {
        let swept = self.sweep(ops);
        let mut staged: Vec<PathBuf> = Vec::new();
        let cleanup = |staged: &[PathBuf]| {
            for tmp in staged {
                let _ = fs::remove_file(tmp);
            }
        };
        for op in ops {
            let result = match op {
                FileOp::Write(file) => stage(&self.path(&file.path), file).map(|tmp| {
                    staged.push(tmp);
                }),
                // Refused before anything is replaced; `remove_file` would refuse it too.
                FileOp::Remove(path) => match fs::symlink_metadata(self.path(path)) {
                    Ok(meta) if meta.is_dir() => Err(std::io::Error::other(
                        "a directory (deploy removes only files and symbolic links)",
                    )),
                    _ => Ok(()),
                },
            };
            if let Err(e) = result {
                cleanup(&staged);
                return Err(TransportError::Io(format!(
                    "{}: {e} (nothing was replaced)",
                    op.path()
                )));
            }
        }
        // Ansible's `validate`: each new copy checked where it lies, before anything is
        // replaced.
        let mut next_tmp = 0;
        for op in ops {
            let FileOp::Write(file) = op else { continue };
            next_tmp += 1;
            let (Some(command), Some(tmp)) = (&file.validate, staged.get(next_tmp - 1)) else {
                continue;
            };
            let quoted = super::ssh::sh_quote(&tmp.to_string_lossy());
            let mut cmd = std::process::Command::new("/bin/sh");
            cmd.arg("-c")
                .arg(command.replace("%s", &quoted))
                .stdin(std::process::Stdio::null());
            if let Some(root) = &self.root {
                cmd.env("DEPLOY_ROOT", root);
            }
            let failed = match cmd.output() {
                Ok(out) if out.status.success() => None,
                Ok(out) => Some(format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                )),
                Err(e) => Some(e.to_string()),
            };
            if let Some(output) = failed {
                cleanup(&staged);
                return Err(TransportError::Io(format!(
                    "validate of {} failed: {} (nothing was replaced)",
                    file.path,
                    output.trim()
                )));
            }
        }
        // Every temporary file is complete; now each rename replaces one destination whole.
        let mut next_tmp = 0;
        for (i, op) in ops.iter().enumerate() {
            let dest = self.path(op.path());
            let done = match op {
                FileOp::Write(_) => {
                    next_tmp += 1;
                    match staged.get(next_tmp - 1) {
                        Some(tmp) => fs::rename(tmp, &dest).map_err(|e| format!("rename: {e}")),
                        None => Err("no temporary file".to_string()),
                    }
                }
                FileOp::Remove(_) => match fs::remove_file(&dest) {
                    Err(e) if e.kind() != ErrorKind::NotFound => Err(format!("remove: {e}")),
                    _ => Ok(()),
                },
            };
            if let Err(e) = done {
                // The failed write's temporary file is still there, and those after it.
                let from = match op {
                    FileOp::Write(_) => next_tmp - 1,
                    FileOp::Remove(_) => next_tmp,
                };
                cleanup(staged.get(from..).unwrap_or_default());
                let before = if i == 0 {
                    "nothing was replaced"
                } else {
                    "the files before it in this batch were already replaced"
                };
                return Err(TransportError::Io(format!(
                    "{}: {e} ({before})",
                    dest.display()
                )));
            }
            if let Some(dir) = dest.parent() {
                // Make the rename (or unlink) itself durable.
                let _ = fs::File::open(dir).and_then(|d| d.sync_all());
            }
        }
        Ok(swept)
    }

    async fn run(&self, command: &str) -> Result<CommandOutput, TransportError> {
        let mut cmd = tokio::process::Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(command)
            .stdin(std::process::Stdio::null());
        if let Some(root) = &self.root {
            cmd.env("DEPLOY_ROOT", root);
        }
        let out = cmd
            .output()
            .await
            .map_err(|e| TransportError::Io(format!("cannot run /bin/sh: {e}")))?;
        Ok(CommandOutput {
            status: out.status.code(),
            stdout: out.stdout,
            stderr: out.stderr,
        })
    }

    async fn create_exclusive(
        &self,
        path: &str,
        content: &[u8],
    ) -> Result<Option<Vec<u8>>, TransportError> {
        let dest = self.path(path);
        let io = |e: std::io::Error| TransportError::Io(format!("{path}: {e}"));
        if let Some(dir) = dest.parent() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(io)?;
        }
        let opened = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&dest);
        match opened {
            Ok(mut f) => {
                f.write_all(content)
                    .and_then(|()| f.sync_all())
                    .map_err(io)?;
                Ok(None)
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                let mut held = Vec::new();
                if let Ok(f) = fs::File::open(&dest) {
                    let _ = f.take(MAX_HELD_LOCK as u64 + 1).read_to_end(&mut held);
                }
                Ok(Some(held))
            }
            Err(e) => Err(io(e)),
        }
    }

    async fn remove(&self, path: &str) -> Result<(), TransportError> {
        match fs::remove_file(self.path(path)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(TransportError::Io(format!("{path}: {e}"))),
        }
    }
}

fn read_one(path: &Path, limits: &ReadLimits) -> RemoteFile {
    // A link is reported, never read through (see `RemoteFile::Symlink`).
    if fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
        if path.is_dir() {
            return RemoteFile::Unusable("a symbolic link to a directory".into());
        }
        let target = fs::read_link(path)
            .map(|t| t.to_string_lossy().into_owned())
            .unwrap_or_else(|e| format!("? ({e})"));
        return RemoteFile::Symlink(target);
    }
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::NotFound => return RemoteFile::Missing,
        Err(e) => return RemoteFile::Unusable(e.to_string()),
    };
    if !meta.is_file() {
        let what = if meta.is_dir() {
            "a directory"
        } else {
            "not a regular file"
        };
        return RemoteFile::Unusable(what.to_string());
    }
    if meta.len() > limits.file {
        return RemoteFile::Unusable(limits.file_too_big(meta.len()));
    }
    // Never more than the limit, even when the file grows while it is read.
    let mut content = Vec::new();
    let read = fs::File::open(path).and_then(|f| {
        f.take(limits.file.saturating_add(1))
            .read_to_end(&mut content)
    });
    if content.len() as u64 > limits.file {
        return RemoteFile::Unusable(limits.file_too_big(content.len() as u64));
    }
    match read.map(|_| content) {
        Ok(content) => RemoteFile::Present(FileState {
            content,
            mode: meta.mode() & 0o7777,
            uid: meta.uid(),
            gid: meta.gid(),
            owner: name_of("/etc/passwd", meta.uid()),
            group: name_of("/etc/group", meta.gid()),
        }),
        Err(e) => RemoteFile::Unusable(e.to_string()),
    }
}

/// Why a tree could not be listed.
enum ListError {
    /// More than the budget of entries (for all of a read's trees together).
    TooMany,
    /// A folder or entry that cannot be looked at: listing part of a tree would let
    /// `delete: true` miss files, so the whole tree is refused.
    Io(String),
}

/// Everything under `root` by `lstat` (links not followed), each folder's entries sorted by
/// name; `budget` entries at most.
fn list_tree(root: &Path, budget: &mut usize) -> Result<Vec<TreeEntry>, ListError> {
    let mut out = Vec::new();
    let mut stack: Vec<(PathBuf, String)> = vec![(root.to_path_buf(), String::new())];
    let io = |path: &Path, e: std::io::Error| ListError::Io(format!("{}: {e}", path.display()));
    while let Some((path, rel)) = stack.pop() {
        let meta = match fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(io(&path, e)),
        };
        *budget = budget.checked_sub(1).ok_or(ListError::TooMany)?;
        let kind = if meta.file_type().is_symlink() {
            EntryKind::Symlink {
                target: fs::read_link(&path)
                    .map(|t| t.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            }
        } else if meta.is_file() {
            match sha256_of(&path) {
                Ok(sha256) => EntryKind::File {
                    size: meta.len(),
                    sha256,
                },
                Err(_) => EntryKind::Unreadable,
            }
        } else if meta.is_dir() {
            let mut names = Vec::new();
            for entry in fs::read_dir(&path).map_err(|e| io(&path, e))? {
                names.push(entry.map_err(|e| io(&path, e))?.file_name());
            }
            names.sort();
            for name in names.into_iter().rev() {
                let child = path.join(&name);
                let name = name.into_string().map_err(|_| {
                    ListError::Io(format!("{}: a name that is not UTF-8", child.display()))
                })?;
                let child_rel = if rel.is_empty() {
                    name
                } else {
                    format!("{rel}/{name}")
                };
                stack.push((child, child_rel));
            }
            EntryKind::Dir
        } else {
            EntryKind::Other("not a regular file".to_string())
        };
        out.push(TreeEntry { rel, kind });
    }
    Ok(out)
}

fn sha256_of(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut f = fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Writes `file` to a new temporary file beside `dest` (created 0600, fsynced, then given its
/// mode and owner) and returns its path.
fn stage(dest: &Path, file: &WriteFile) -> std::io::Result<PathBuf> {
    let dir = dest
        .parent()
        .ok_or_else(|| std::io::Error::other("no parent directory"))?;
    fs::create_dir_all(dir)?;
    let base = dest.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let mut last_err = None;
    for attempt in 0..16u32 {
        let tmp = dir.join(format!(
            ".{base}.deploy-{}-{attempt}.tmp",
            std::process::id()
        ));
        let opened = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp);
        let mut f = match opened {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                last_err = Some(e);
                continue;
            }
            Err(e) => return Err(e),
        };
        let result = (|| {
            f.write_all(&file.content)?;
            f.sync_all()?;
            let uid = file
                .owner
                .as_deref()
                .map(|o| id_of("/etc/passwd", o))
                .transpose()?;
            let gid = file
                .group
                .as_deref()
                .map(|g| id_of("/etc/group", g))
                .transpose()?;
            if uid.is_some() || gid.is_some() {
                std::os::unix::fs::chown(&tmp, uid, gid)?;
            }
            fs::set_permissions(&tmp, fs::Permissions::from_mode(file.mode))
        })();
        return match result {
            Ok(()) => Ok(tmp),
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                Err(e)
            }
        };
    }
    Err(last_err.unwrap_or_else(|| std::io::Error::other("no free temporary name")))
}

/// The name of `id` in an `/etc/passwd`-style file (name:x:id:...).
fn name_of(db: &str, id: u32) -> Option<String> {
    let text = fs::read_to_string(db).ok()?;
    text.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let id_field = fields.nth(1)?;
        (id_field.parse::<u32>().ok()? == id).then(|| name.to_string())
    })
}

/// The id of `name` (or `name` itself when numeric) in an `/etc/passwd`-style file.
fn id_of(db: &str, name: &str) -> std::io::Result<u32> {
    if let Ok(id) = name.parse::<u32>() {
        return Ok(id);
    }
    let text = fs::read_to_string(db)?;
    text.lines()
        .find_map(|line| {
            let mut fields = line.split(':');
            (fields.next()? == name).then(|| fields.nth(1)?.parse::<u32>().ok())?
        })
        .ok_or_else(|| std::io::Error::other(format!("no such user or group `{name}` in {db}")))
}
