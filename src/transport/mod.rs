//! The only code that talks to hosts.
//!
//! A [`Transport`] is a connection to one host that offers three primitives: read a set of
//! files and list a set of trees in one round trip, change a set of files atomically (write
//! and remove), and run a command through the host's shell. Everything deploy does on a host
//! is built on these; see `apply.rs` and `handlers.rs`. Each kind of connection (local, SSH, WinRM) is one module here;
//! `http.rs` is the controller's own HTTP GET, for `verify:` after apply.

pub mod escalation;
pub mod http;
pub mod known_hosts;
pub mod local;
pub mod ssh;
pub mod winrm;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

/// What a host has at a path now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteFile {
    /// Nothing is there.
    Missing,
    /// A regular file.
    Present(FileState),
    /// Something that is not a regular file (a directory, a socket, ...), or a file deploy
    /// cannot read (or will not: over the read limit). Deploy refuses to replace it; the text
    /// says what it is.
    Unusable(String),
    /// A symbolic link, and what it points at (as the host reports it, possibly cut). Nothing
    /// is read through it: a write replaces the link itself with a file, as Ansible's
    /// `template` and `copy` do by default (`follow: false`), and leaves its target alone.
    Symlink(String),
}

/// A regular file's content and metadata, as read from the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileState {
    pub content: Vec<u8>,
    /// Permission bits, e.g. `0o644`.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Owner's name, when the host knows one for `uid`.
    pub owner: Option<String>,
    /// Group's name, when the host knows one for `gid`.
    pub group: Option<String>,
}

/// One file to write: the whole new content and the metadata it must end up with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteFile {
    /// Absolute destination path on the host (for the local transport, before `deploy_root`
    /// is put in front).
    pub path: String,
    /// Shared: a file from `files/` goes to every host with one copy in memory.
    pub content: Arc<[u8]>,
    /// Permission bits the file gets.
    pub mode: u32,
    /// Owner to set (a name or a numeric id); `None` leaves the owner the writer gets.
    pub owner: Option<String>,
    /// Group to set (a name or a numeric id); `None` leaves it as is.
    pub group: Option<String>,
    /// A command the host runs with every `%s` replaced by the temporary copy's path (shell-
    /// quoted), after every temporary file of the batch is in place and before anything is
    /// replaced; a non-zero exit replaces nothing (Ansible's `validate`).
    pub validate: Option<String>,
}

/// Stale temporary files of earlier runs that a write batch removed (see
/// [`Transport::write_batch`]).
pub type Swept = Vec<String>;

/// One step of an atomic batch (see [`Transport::write_batch`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileOp {
    /// Replace (or create) a file.
    Write(WriteFile),
    /// Unlink a regular file or a symbolic link (never followed); never a directory. A
    /// missing path is not an error.
    Remove(String),
}

impl FileOp {
    pub fn path(&self) -> &str {
        match self {
            FileOp::Write(f) => &f.path,
            FileOp::Remove(p) => p,
        }
    }
}

/// At most this many entries are listed for one read's trees (all of a host's trees
/// together); more is an error naming the trees, not a silently partial listing.
pub const MAX_TREE_ENTRIES: usize = 20_000;

/// How much deploy reads from one host: a current file larger than `file` is refused (the
/// file is reported, not read), and a read whose files add up to more than `host` fails that
/// host. Both are checked on the host side before anything is sent and again on the
/// controller, which never allocates what a host claims. `--max-file-size` and
/// `--max-host-read` set them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadLimits {
    pub file: u64,
    pub host: u64,
}

impl ReadLimits {
    /// 64 MiB per file.
    pub const DEFAULT_FILE: u64 = 64 << 20;
    /// 512 MiB per host and read.
    pub const DEFAULT_HOST: u64 = 512 << 20;

    /// The text of a file over `file`, for its [`RemoteFile::Unusable`].
    pub fn file_too_big(&self, size: u64) -> String {
        format!(
            "{} on the host, more than the {} deploy reads of one file (--max-file-size raises \
             the limit)",
            size_text(size),
            size_text(self.file)
        )
    }

    /// The error for a read whose files add up to `total` bytes, over `host`.
    pub fn host_too_much(&self, total: u64) -> String {
        format!(
            "the files to read add up to {}, more than the {} deploy reads from one host \
             (--max-host-read raises the limit)",
            size_text(total),
            size_text(self.host)
        )
    }
}

/// `n` bytes for messages: exact below 1 KiB, else in the largest binary unit that keeps
/// at least 1 (one decimal), with the exact count: `10 GiB (10737418240 bytes)`.
pub fn size_text(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} bytes");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    let shown = if value.fract() == 0.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    };
    format!("{shown} {} ({n} bytes)", UNITS[unit])
}

/// A size as an operator writes it: `1048576`, `64M`, `64MiB`, `1G`, `512k` (binary units;
/// `B` optional). The error says what is accepted.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(digits);
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => {
            return Err(format!(
                "`{text}` is not a size (write e.g. 64M, 1G or 1048576)"
            ));
        }
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a size (write e.g. 64M, 1G or 1048576)"))?;
    n.checked_mul(1u64 << shift)
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("`{text}` is not a size deploy can use (1 byte to 16 EiB)"))
}

impl Default for ReadLimits {
    fn default() -> Self {
        ReadLimits {
            file: Self::DEFAULT_FILE,
            host: Self::DEFAULT_HOST,
        }
    }
}

/// The most of an existing lock file deploy reads (a lock deploy writes is a few hundred
/// bytes; what is cut is shown as an unreadable lock).
pub const MAX_HELD_LOCK: usize = 64 << 10;

/// One thing found under a listed tree, by `lstat` (symbolic links are not followed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeEntry {
    /// Path relative to the tree's root, `/`-separated; empty for the root itself.
    pub rel: String,
    pub kind: EntryKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file and the SHA-256 (hex) of its content.
    File {
        size: u64,
        sha256: String,
    },
    /// A regular file deploy cannot read.
    Unreadable,
    /// A symbolic link and what it points at.
    Symlink {
        target: String,
    },
    Dir,
    /// Anything else (a socket, a device, a Windows directory link...); the text says what.
    Other(String),
}

/// Each asked tree's entries, in order (`Err`: why that tree could not be listed). A
/// missing tree root has no entries.
pub type Listings = Vec<Result<Vec<TreeEntry>, String>>;

/// What one read found: each asked path's file, in order, and each asked tree's entries.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReadResult {
    pub files: Vec<RemoteFile>,
    pub trees: Listings,
    /// Per path (or empty when the transport does not tell): the folder on its way that is
    /// a symbolic link, through which a write lands elsewhere.
    pub through: Vec<Option<String>>,
}

/// The error for a read whose trees hold more than [`MAX_TREE_ENTRIES`] entries.
pub fn too_many_entries(trees: &[String]) -> String {
    format!(
        "more than {MAX_TREE_ENTRIES} entries under {}; deploy lists at most that many for \
         `delete: true` and `state: absent`",
        trees.join(", ")
    )
}

/// `(root, full path)` -> the path relative to `root` (`/`-separated; empty for the root),
/// for listings that print full paths. `None` when `full` is not under `root`.
pub fn relative_to(root: &str, full: &str, separator: char) -> Option<String> {
    if full == root {
        return Some(String::new());
    }
    let rest = full.strip_prefix(root)?;
    let rest = rest.strip_prefix(separator).or_else(|| {
        // A root ending in a separator (`/`) already ends with it.
        root.ends_with(separator).then_some(rest)
    })?;
    Some(if separator == '/' {
        rest.to_string()
    } else {
        rest.replace(separator, "/")
    })
}

/// What a command run on a host printed and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOutput {
    /// Exit status; `None` when the command was killed by a signal or the host did not say.
    pub status: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl CommandOutput {
    pub fn success(&self) -> bool {
        self.status == Some(0)
    }
}

/// What [`Transport::lock_and_read`] found.
#[derive(Debug)]
pub enum LockRead {
    /// This call created the lock and then read the host holding it (`Err`: the lock is
    /// held, but the read failed).
    Taken(Result<ReadResult, TransportError>),
    /// Something already holds the lock: what the lock file holds. Nothing was read.
    Held(Vec<u8>),
}

/// One handler of [`Transport::run_handlers`].
#[derive(Debug, Clone)]
pub struct HandlerStep {
    /// The handler's command, run through the host's shell with stdin closed.
    pub command: String,
    /// Its entry in [`RecordParts::pending`], dropped from the record once it succeeded.
    pub pending: Option<usize>,
}

/// The host's state record cut around its pending handlers, so that the host can put in
/// place the record without those that succeeded, whichever they are:
/// `head` + `,\n  "pending_handlers": [` + the entries left joined by `,` + `]` + `tail`
/// (the list left out when none is left, as the record's own serialization does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordParts {
    pub path: String,
    pub head: Vec<u8>,
    /// Each pending handler's JSON object.
    pub pending: Vec<Vec<u8>>,
    pub tail: Vec<u8>,
}

impl RecordParts {
    /// The record with the pending entries `left` (indexes into `pending`, in order).
    pub fn assemble(&self, left: &[usize]) -> Vec<u8> {
        let mut out = self.head.clone();
        let entries: Vec<&[u8]> = left
            .iter()
            .filter_map(|&i| self.pending.get(i).map(Vec::as_slice))
            .collect();
        if !entries.is_empty() {
            out.extend_from_slice(b",\n  \"pending_handlers\": [");
            out.extend_from_slice(&entries.join(&b","[..]));
            out.push(b']');
        }
        out.extend_from_slice(&self.tail);
        out
    }

    /// The record as a file to write (0600, as every record).
    pub fn write(&self, left: &[usize]) -> WriteFile {
        WriteFile {
            path: self.path.clone(),
            content: self.assemble(left).into(),
            mode: 0o600,
            owner: None,
            group: None,
            validate: None,
        }
    }
}

/// A host's handlers, in the order they run, and what to do around them.
#[derive(Debug, Clone)]
pub struct HandlerBatch {
    pub steps: Vec<HandlerStep>,
    /// The record rewritten after each success.
    pub record: RecordParts,
    /// Run the later handlers after one failed (`--force-handlers`).
    pub keep_going: bool,
    /// The host lock, removed after the handlers whatever happened.
    pub lock: String,
}

impl HandlerBatch {
    /// The file whose presence stops the handlers before the next one starts (see
    /// [`Transport::request_stop`]).
    pub fn stop_path(&self) -> String {
        stop_path(&self.lock)
    }
}

/// `lock` -> the stop file beside it.
pub fn stop_path(lock: &str) -> String {
    format!("{lock}.stop")
}

/// What one handler of a [`HandlerBatch`] did.
#[derive(Debug, Clone)]
pub struct StepDone {
    pub output: CommandOutput,
    /// Whether the record without it was put in place (`Err`: why writing it failed;
    /// `Ok(false)`: the handler failed, so it stays pending).
    pub recorded: Result<bool, String>,
}

/// What [`Transport::run_handlers`] did: the handlers that ran, in order (a failure ends the
/// list unless `keep_going`), whether it stopped on request before the next one, and
/// whether the lock was released.
#[derive(Debug, Clone)]
pub struct HandlersDone {
    pub ran: Vec<StepDone>,
    pub stopped: bool,
    pub unlocked: Result<(), String>,
}

impl HandlersDone {
    /// A handlers script's `R <i> <OK|FAIL>` line (`line`, split): whether the record
    /// without handler `i`, the last one run, was put in place. `Ok(false)`: it was not, and
    /// the script ended there.
    pub fn record_line(&mut self, line: &str, i: &str, verdict: &str) -> Result<bool, String> {
        let expected = self.ran.len().checked_sub(1);
        let last = self
            .ran
            .last_mut()
            .filter(|_| i.parse::<usize>().ok() == expected)
            .ok_or_else(|| format!("unexpected line {line:?}"))?;
        let ok = verdict == "OK";
        last.recorded = if ok {
            Ok(true)
        } else {
            Err("cannot put the state record in place".to_string())
        };
        Ok(ok)
    }
}

/// Why a host could not be reached or did not do what was asked. The text is meant for the
/// operator; the caller adds the host's name.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("host key refused: {0}")]
    HostKey(String),
    #[error("authentication failed: {0}")]
    Auth(String),
    #[error("{0}")]
    Io(String),
    #[error("not supported by this connection: {0}")]
    Unsupported(String),
    /// sudo or su refused before the script ran (see [`escalation::Become::explain`]).
    #[error("become failed: {0}")]
    Become(String),
}

/// How to reach a host, from its Ansible connection variables (`ansible_connection`,
/// `ansible_host`, `ansible_port`, `ansible_user`, `ansible_ssh_private_key_file`,
/// `ansible_password` and `ansible_winrm_*` for Windows hosts, and deploy's own
/// `deploy_root` for local stand-in hosts). `Debug` never shows a password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Connection {
    /// The controller itself; every path gets `root` in front when set.
    Local {
        root: Option<PathBuf>,
    },
    Ssh(SshTarget),
    /// Windows over WS-Management (WinRS shells).
    WinRm(winrm::WinRmTarget),
}

impl Connection {
    /// Reads the connection variables of host `name`. The error text names the variable.
    pub fn from_vars(
        name: &str,
        vars: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Connection, String> {
        let text = |key: &str| var_text(vars, key);
        let kind = text("ansible_connection")?.unwrap_or_else(|| "ssh".into());
        let address = text("ansible_host")?.unwrap_or_else(|| name.to_string());
        let port = |default: u16| -> Result<u16, String> {
            match text("ansible_port")? {
                None => Ok(default),
                Some(p) => p
                    .parse()
                    .map_err(|_| format!("ansible_port `{p}` is not a port number")),
            }
        };
        let escalation = escalation::Escalation::from_vars(vars)?;
        let not_here = |what: &str| {
            format!(
                "ansible_become is set, but become is not applicable to {what} hosts (deploy \
                 writes there as the connection's user); remove it for this host"
            )
        };
        match kind.as_str() {
            "local" if escalation.requested() => Err(not_here("local")),
            "winrm" | "psrp" if escalation.requested() => Err(not_here("WinRM")),
            "local" => Ok(Connection::Local {
                root: text("deploy_root")?.map(PathBuf::from),
            }),
            "ssh" | "smart" | "paramiko" => Ok(Connection::Ssh(SshTarget {
                name: name.to_string(),
                address,
                port: port(22)?,
                user: text("ansible_user")?
                    .or_else(|| std::env::var("USER").ok())
                    .unwrap_or_else(|| "root".into()),
                private_key_file: text("ansible_ssh_private_key_file")?.map(PathBuf::from),
                escalation,
            })),
            "winrm" | "psrp" => {
                // Ansible's rule: https unless the scheme says otherwise or the port is
                // the plain-http one.
                let given_port = text("ansible_port")?;
                let scheme = match text("ansible_winrm_scheme")? {
                    Some(s) if s == "http" || s == "https" => s,
                    Some(s) => {
                        return Err(format!("ansible_winrm_scheme `{s}` must be http or https"));
                    }
                    None if given_port.as_deref() == Some("5985") => "http".into(),
                    None => "https".into(),
                };
                let auth = match text("ansible_winrm_transport")?.as_deref() {
                    None | Some("basic") => winrm::AuthKind::Basic,
                    Some("ntlm") => winrm::AuthKind::Ntlm,
                    Some(other) => {
                        return Err(format!(
                            "ansible_winrm_transport `{other}` is not supported (use basic or ntlm)"
                        ));
                    }
                };
                let ignore_cert = match text("ansible_winrm_server_cert_validation")?.as_deref() {
                    None | Some("validate") => false,
                    Some("ignore") => true,
                    Some(other) => {
                        return Err(format!(
                            "ansible_winrm_server_cert_validation `{other}` must be validate or ignore"
                        ));
                    }
                };
                let default_port = if scheme == "http" { 5985 } else { 5986 };
                Ok(Connection::WinRm(winrm::WinRmTarget {
                    name: name.to_string(),
                    address,
                    port: port(default_port)?,
                    scheme,
                    user: text("ansible_user")?
                        .ok_or_else(|| "ansible_user is required for winrm hosts".to_string())?,
                    password: text("ansible_password")?,
                    auth,
                    ignore_cert,
                    path: text("ansible_winrm_path")?.unwrap_or_else(|| "/wsman".into()),
                    ca_trust_path: text("ansible_winrm_ca_trust_path")?.map(PathBuf::from),
                }))
            }
            other => Err(format!(
                "ansible_connection `{other}` is not supported (use ssh, local or winrm)"
            )),
        }
    }
}

impl Connection {
    /// The command line's become settings, where the host's variables leave them unset (as
    /// in Ansible, the host's variables win). Only SSH hosts can become another user; `-b`
    /// leaves local and WinRM hosts as they are.
    pub fn fill_become_defaults(&mut self, defaults: &escalation::Escalation) {
        if let Connection::Ssh(target) = self {
            target.escalation.fill_defaults(defaults);
        }
    }

    /// Whether files there have Unix modes and owners. Windows has ACLs: the WinRM
    /// transport reports every file as 0644 and applies no `mode`/`owner`/`group`.
    pub fn keeps_unix_metadata(&self) -> bool {
        !matches!(self, Connection::WinRm(_))
    }

    /// Where the state record lives when `deploy_state_path` is not set.
    pub fn default_state_path(&self) -> &'static str {
        match self {
            Connection::WinRm(_) => crate::state::WINDOWS_STATE_PATH,
            _ => crate::state::UNIX_STATE_PATH,
        }
    }

    /// The become password this host uses, if any (to be masked in every output).
    pub fn become_password(&self) -> Option<&str> {
        match self {
            Connection::Ssh(t) => t.escalation.password.as_deref(),
            _ => None,
        }
    }

    /// `path` as the host's file system compares names: Windows folds case and takes `/`
    /// for `\`, so a `delete: true` never removes a file the host gets under another
    /// spelling.
    pub fn path_key(&self, path: &str) -> String {
        match self {
            Connection::WinRm(_) => path.replace('/', "\\").to_lowercase(),
            _ => path.to_string(),
        }
    }
}

/// A connection variable as text (a number is taken as written); `None` when unset or null.
/// The error names the variable.
pub fn var_text(
    vars: &serde_json::Map<String, serde_json::Value>,
    key: &str,
) -> Result<Option<String>, String> {
    match vars.get(key) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
        Some(serde_json::Value::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(format!("{key} must be a string, not {other}")),
    }
}

/// A facts command's output -> facts, or why not (the caller names the host).
pub fn facts_answer(
    out: &CommandOutput,
    parse: fn(&[u8]) -> Result<crate::facts::Facts, String>,
) -> Result<crate::facts::Facts, TransportError> {
    parse(&out.stdout).map_err(|why| {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stderr = crate::text::prefix(stderr.trim(), 300);
        if stderr.is_empty() {
            TransportError::Io(format!("gathering facts: {why}"))
        } else {
            TransportError::Io(format!("gathering facts: {why} ({stderr})"))
        }
    })
}

/// Opens a connection to a host.
pub async fn connect(
    connection: &Connection,
    ssh: &SshOptions,
) -> Result<Box<dyn Transport>, TransportError> {
    match connection {
        Connection::Local { root } => Ok(Box::new(
            local::LocalTransport::new(root.as_deref()).with_limits(ssh.read_limits),
        )),
        Connection::Ssh(target) => Ok(Box::new(ssh::SshTransport::connect(target, ssh).await?)),
        Connection::WinRm(target) => Ok(Box::new(
            winrm::WinRmTransport::connect(target, ssh.connect_timeout)
                .await?
                .with_limits(ssh.read_limits),
        )),
    }
}

/// Puts `root` in front of an absolute host path (for local stand-in hosts).
pub fn under_root(root: Option<&Path>, path: &str) -> PathBuf {
    match root {
        Some(root) => root.join(path.trim_start_matches('/')),
        None => PathBuf::from(path),
    }
}

/// How to reach a host over SSH; built from the Ansible connection variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshTarget {
    /// Inventory name, used in messages.
    pub name: String,
    /// `ansible_host`, else the inventory name.
    pub address: String,
    /// `ansible_port`, default 22.
    pub port: u16,
    /// `ansible_user`, else the controller's user (`$USER`), else `root`.
    pub user: String,
    /// `ansible_ssh_private_key_file`.
    pub private_key_file: Option<PathBuf>,
    /// `ansible_become*` (with the command line's `-b`, `--become-user`, `-K` filled in by
    /// [`Connection::fill_become_defaults`]): every script of the connection runs under it.
    pub escalation: escalation::Escalation,
}

/// Settings that hold for every connection of a run (most of them SSH's).
#[derive(Debug, Clone)]
pub struct SshOptions {
    /// known_hosts files to check host keys against; the first one is where
    /// `accept_new_host_keys` appends. Default: `~/.ssh/known_hosts`, `/etc/ssh/ssh_known_hosts`.
    pub known_hosts_files: Vec<PathBuf>,
    /// OpenSSH's `StrictHostKeyChecking=accept-new`: an unknown host's key is appended to
    /// the first known_hosts file instead of refused. A changed key is refused regardless.
    pub accept_new_host_keys: bool,
    /// The user's home, where `~/.ssh/id_*` are looked for.
    pub home: Option<PathBuf>,
    /// How long a TCP connect plus handshake may take.
    pub connect_timeout: Duration,
    /// `known_hosts_files` parsed once for all the run's connections.
    pub known_hosts: known_hosts::SharedKnownHosts,
    /// What every connection of the run (SSH, WinRM and local) reads from a host at most.
    pub read_limits: ReadLimits,
}

/// A connection to one host. Implementations hold one connection for the whole run.
#[async_trait]
pub trait Transport: Send + Sync {
    /// Reads every path of `paths` and lists every tree of `trees` (absolute paths), all in
    /// one round trip; the answers are in the same orders. A path's file is read through
    /// symbolic links; a tree is listed by `lstat`, recursively, without following links (a
    /// root that is a file or a link is one entry, `rel` empty). An I/O problem with one file
    /// (permission, not a regular file) is reported in its entry; an `Err` means the host
    /// could not be asked at all.
    async fn read(&self, paths: &[String], trees: &[String]) -> Result<ReadResult, TransportError>;

    /// [`Transport::read`] of files only.
    async fn read_files(&self, paths: &[String]) -> Result<Vec<RemoteFile>, TransportError> {
        self.read(paths, &[]).await.map(|r| r.files)
    }

    /// Changes files atomically: every [`FileOp::Write`] goes to a temporary file (mode
    /// 0600) in its destination's directory, is fsynced and gets its mode and owner; only
    /// when every temporary file is in place (and no path to remove is a directory) are the
    /// ops carried out in the order given: a rename over the destination, or an unlink.
    /// Missing parent directories are created. On error no destination has been replaced by
    /// a partial file.
    ///
    /// Before staging, deploy's own stale temporary files (`.NAME.deploy-*.tmp`, regular
    /// files only) in the folders the batch writes to are removed: what a run that died
    /// mid-write left. The paths removed are returned.
    async fn write_batch(&self, ops: &[FileOp]) -> Result<Swept, TransportError>;

    /// [`Transport::write_batch`] of writes only.
    async fn write_files(&self, files: &[WriteFile]) -> Result<(), TransportError> {
        let ops: Vec<FileOp> = files.iter().cloned().map(FileOp::Write).collect();
        self.write_batch(&ops).await.map(|_| ())
    }

    /// Runs `command` through the host's shell and waits for it.
    async fn run(&self, command: &str) -> Result<CommandOutput, TransportError>;

    /// Reads the host's facts (`facts.rs`): one read-only command whose answer is parsed on
    /// the controller. The default runs the POSIX sh script through [`Transport::run`].
    async fn facts(&self) -> Result<crate::facts::Facts, TransportError> {
        let out = self.run(crate::facts::SH_SCRIPT).await?;
        facts_answer(&out, crate::facts::parse_posix)
    }

    /// Creates `path` holding `content` only if nothing is there, atomically (the host lock):
    /// `Ok(None)` when this call created it, `Ok(Some(bytes))` with what is there when it
    /// already existed. Missing parent directories are created (mode 0700 for new ones).
    async fn create_exclusive(
        &self,
        path: &str,
        _content: &[u8],
    ) -> Result<Option<Vec<u8>>, TransportError> {
        Err(TransportError::Unsupported(format!(
            "creating {path} exclusively (host lock)"
        )))
    }

    /// Removes the file at `path`; a missing file is not an error.
    async fn remove(&self, path: &str) -> Result<(), TransportError> {
        Err(TransportError::Unsupported(format!("removing {path}")))
    }

    /// Takes the host lock (as [`Transport::create_exclusive`]) and, only when this call
    /// created it, reads as [`Transport::read`], holding it. SSH does both in one round
    /// trip; the default takes two.
    async fn lock_and_read(
        &self,
        lock: &str,
        content: &[u8],
        paths: &[String],
        trees: &[String],
    ) -> Result<LockRead, TransportError> {
        match self.create_exclusive(lock, content).await? {
            Some(held) => Ok(LockRead::Held(held)),
            None => Ok(LockRead::Taken(self.read(paths, trees).await)),
        }
    }

    /// Runs a host's handlers in order, puts each one's record in place once it succeeded,
    /// stops at the first failure (unless `keep_going`) or when `stop` says so (checked
    /// before each handler after the first) or the stop file exists, and removes the lock at
    /// the end, whatever happened. SSH does all of it in one round trip; the default runs
    /// each step on its own.
    async fn run_handlers(
        &self,
        run: &HandlerBatch,
        stop: &(dyn Fn() -> bool + Send + Sync),
    ) -> Result<HandlersDone, TransportError> {
        let mut done = HandlersDone {
            ran: Vec::new(),
            stopped: false,
            unlocked: Ok(()),
        };
        let mut left: Vec<usize> = (0..run.record.pending.len()).collect();
        for (i, step) in run.steps.iter().enumerate() {
            if i > 0 && stop() {
                done.stopped = true;
                break;
            }
            let output = match self.run(&step.command).await {
                Ok(output) => output,
                Err(e) => {
                    done.unlocked = self.remove(&run.lock).await.map_err(|e| e.to_string());
                    return Err(e);
                }
            };
            let ok = output.success();
            let recorded = if ok {
                left.retain(|k| Some(*k) != step.pending);
                self.write_files(&[run.record.write(&left)])
                    .await
                    .map(|()| true)
                    .map_err(|e| e.to_string())
            } else {
                Ok(false)
            };
            let record_failed = recorded.is_err();
            done.ran.push(StepDone { output, recorded });
            if record_failed || (!ok && !run.keep_going) {
                break;
            }
        }
        done.unlocked = self.remove(&run.lock).await.map_err(|e| e.to_string());
        Ok(done)
    }

    /// Asks a [`Transport::run_handlers`] running on another session to stop before its
    /// next handler (Ctrl-C): creates its stop file while the lock is there. The default
    /// does nothing (its `stop` callback is enough).
    async fn request_stop(&self, _lock: &str) -> Result<(), TransportError> {
        Ok(())
    }

    /// How many round trips to the host this connection has made so far (each exec session,
    /// each WS-Man command, each password prompt answered); 0 for the controller itself.
    fn round_trips(&self) -> u64 {
        0
    }

    /// Closes the connection; further calls fail.
    async fn close(&self) {}
}

#[cfg(test)]
mod tests {
    use super::winrm::AuthKind;
    use super::*;

    fn winrm(vars: serde_json::Value) -> Result<winrm::WinRmTarget, String> {
        let mut all = serde_json::json!({"ansible_connection": "winrm", "ansible_user": "mdt"});
        if let (Some(all), serde_json::Value::Object(more)) = (all.as_object_mut(), vars) {
            all.extend(more);
        }
        let serde_json::Value::Object(map) = all else {
            unreachable!("an object")
        };
        match Connection::from_vars("wintermute", &map)? {
            Connection::WinRm(t) => Ok(t),
            other => Err(format!("not winrm: {other:?}")),
        }
    }

    #[test]
    fn winrm_defaults_follow_ansible() {
        let t = winrm(serde_json::json!({})).expect("defaults");
        assert_eq!((t.scheme.as_str(), t.port), ("https", 5986));
        assert_eq!(t.address, "wintermute");
        assert_eq!(t.auth, AuthKind::Basic);
        assert!(!t.ignore_cert);
        assert_eq!(t.url(), "https://wintermute:5986/wsman");
        // Port 5985 without a scheme means http, as in Ansible.
        let t = winrm(serde_json::json!({"ansible_port": 5985})).expect("5985");
        assert_eq!(t.scheme, "http");
        let t = winrm(serde_json::json!({"ansible_winrm_scheme": "http"})).expect("http");
        assert_eq!(t.port, 5985);
        let t = winrm(serde_json::json!({
            "ansible_winrm_transport": "ntlm",
            "ansible_winrm_server_cert_validation": "ignore",
            "ansible_password": "pw",
        }))
        .expect("ntlm");
        assert_eq!(t.auth, AuthKind::Ntlm);
        assert!(t.ignore_cert);
        assert!(!format!("{t:?}").contains("\"pw\""), "{t:?}");
    }

    #[test]
    fn winrm_bad_values_name_the_variable() {
        let err = winrm(serde_json::json!({"ansible_winrm_scheme": "ftp"})).expect_err("ftp");
        assert!(err.contains("ansible_winrm_scheme `ftp`"), "{err}");
        let err = winrm(serde_json::json!({"ansible_winrm_transport": "kerberos"}))
            .expect_err("kerberos");
        assert!(err.contains("ansible_winrm_transport `kerberos`"), "{err}");
        let err = winrm(serde_json::json!({"ansible_winrm_server_cert_validation": "no"}))
            .expect_err("no");
        assert!(
            err.contains("ansible_winrm_server_cert_validation"),
            "{err}"
        );
    }

    #[test]
    fn become_is_refused_where_it_cannot_apply_and_filled_from_the_command_line_on_ssh() {
        let err = winrm(serde_json::json!({"ansible_become": true})).expect_err("winrm");
        assert!(err.contains("not applicable to WinRM hosts"), "{err}");
        let vars = |v: serde_json::Value| match v {
            serde_json::Value::Object(m) => m,
            _ => serde_json::Map::new(),
        };
        let err = Connection::from_vars(
            "lab",
            &vars(serde_json::json!({"ansible_connection": "local", "ansible_become": "yes"})),
        )
        .expect_err("local");
        assert!(err.contains("not applicable to local hosts"), "{err}");
        let err = Connection::from_vars(
            "motoko",
            &vars(serde_json::json!({"ansible_become_method": "runas"})),
        )
        .expect_err("runas");
        assert!(err.contains("ansible_become_method `runas`"), "{err}");

        // -b fills in SSH hosts only; a WinRM host under -b stays as it is.
        let cli = escalation::Escalation {
            enabled: Some(true),
            ..Default::default()
        };
        let mut ssh = Connection::from_vars("motoko", &vars(serde_json::json!({}))).expect("ssh");
        ssh.fill_become_defaults(&cli);
        let Connection::Ssh(t) = &ssh else {
            panic!("not ssh")
        };
        assert_eq!(t.escalation.resolve().map(|b| b.user), Some("root".into()));
        let mut win = Connection::WinRm(winrm(serde_json::json!({})).expect("winrm"));
        let before = win.clone();
        win.fill_become_defaults(&cli);
        assert_eq!(win, before);
    }

    #[tokio::test]
    async fn winrm_ntlm_connects_and_a_missing_password_stops_it_before() {
        // Port 9 on 127.0.0.1: nothing listens, so the NTLM attempt is a connect error
        // naming the host (no longer a refusal before connecting).
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        drop(listener);
        let mut t = winrm(serde_json::json!({
            "ansible_winrm_transport": "ntlm",
            "ansible_host": "127.0.0.1",
            "ansible_port": port,
            "ansible_password": "pw",
        }))
        .expect("ntlm");
        let err = winrm::WinRmTransport::connect(&t, Duration::from_secs(1))
            .await
            .expect_err("nothing listens")
            .to_string();
        assert!(err.starts_with("cannot connect: "), "{err}");
        assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
        // Without a password, NTLM stops before connecting, naming the secret file.
        t.password = None;
        let err = winrm::WinRmTransport::connect(&t, Duration::from_secs(1))
            .await
            .expect_err("no password");
        assert!(err.to_string().contains("secrets/"), "{err}");
        assert!(err.to_string().contains("no ansible_password"), "{err}");
    }
}
