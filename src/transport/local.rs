//! Local transport: the controller itself. With a root directory (`deploy_root`), every host
//! path is put under it, so a folder stands in for a host's `/`; that is how the example fleet
//! and many tests run with no setup at all.

use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use async_trait::async_trait;

use super::{
    CommandOutput, FileState, RemoteFile, Transport, TransportError, WriteFile, under_root,
};

pub struct LocalTransport {
    root: Option<PathBuf>,
}

impl LocalTransport {
    pub fn new(root: Option<&Path>) -> LocalTransport {
        LocalTransport {
            root: root.map(Path::to_path_buf),
        }
    }

    fn path(&self, host_path: &str) -> PathBuf {
        under_root(self.root.as_deref(), host_path)
    }
}

#[async_trait]
impl Transport for LocalTransport {
    async fn read_files(&self, paths: &[String]) -> Result<Vec<RemoteFile>, TransportError> {
        Ok(paths.iter().map(|p| read_one(&self.path(p))).collect())
    }

    async fn write_files(&self, files: &[WriteFile]) -> Result<(), TransportError> {
        let mut staged: Vec<(PathBuf, PathBuf)> = Vec::new();
        for file in files {
            let dest = self.path(&file.path);
            match stage(&dest, file) {
                Ok(tmp) => staged.push((tmp, dest)),
                Err(e) => {
                    for (tmp, _) in &staged {
                        let _ = fs::remove_file(tmp);
                    }
                    return Err(TransportError::Io(format!("{}: {e}", file.path)));
                }
            }
        }
        // Every temporary file is complete; now each rename replaces one destination whole.
        for (i, (tmp, dest)) in staged.iter().enumerate() {
            if let Err(e) = fs::rename(tmp, dest) {
                for (tmp, _) in &staged[i..] {
                    let _ = fs::remove_file(tmp);
                }
                return Err(TransportError::Io(format!(
                    "{}: rename: {e}",
                    dest.display()
                )));
            }
            if let Some(dir) = dest.parent() {
                // Make the rename itself durable.
                let _ = fs::File::open(dir).and_then(|d| d.sync_all());
            }
        }
        Ok(())
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
                Ok(Some(fs::read(&dest).unwrap_or_default()))
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

fn read_one(path: &Path) -> RemoteFile {
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
    match fs::read(path) {
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
