//! SSH transport (russh): one connection per host for the whole run.
//!
//! In: an [`SshTarget`] (address, port, user, optional key file) and the run's [`SshOptions`]
//! (known_hosts files, accept-new, home, connect timeout). Out: an [`SshTransport`] that
//! implements [`Transport`] over a single authenticated SSH connection.
//!
//! Every script runs on one long-lived channel, the session: the first script opens it with
//! a small POSIX sh loop ([`session_script`], under become when it is on, whose password
//! prompt is answered once), and each later script is one request on it (a header line,
//! the script, its stdin) and one answer (its stdout and stderr up to an end marker, and its
//! exit status). A new channel would cost three round trips (open, exec, answer); a request
//! costs one. A session out of step (a cut, a host past its output cap) is dropped; the next
//! script opens another. Only what must not wait for the session (asking running handlers to
//! stop) gets a channel of its own.
//!
//! - `read`: one request for all paths and trees; a POSIX sh script reports what each path
//!   is, then one `stat` and one `cat` over the readable regular files; the bytes are split by
//!   size. Trees (when asked) come first: one GNU `find` lists them without following links,
//!   one `sha256sum` hashes their regular files.
//! - `write_batch`: one request for the whole batch; a generated sh script reads every file's
//!   bytes from stdin into a temporary file next to its destination, checks the size, fsyncs,
//!   sets mode and owner, and only once every one is in place renames them over their
//!   destinations and unlinks the paths to remove, in the batch's order.
//! - `run`: the command through the remote user's shell, on a channel of its own.
//!
//! The server's host key is checked against known_hosts (see [`super::known_hosts`]) before
//! anything is sent; authentication tries the target's key file only, else ssh-agent, else
//! `~/.ssh/id_ed25519`, `id_ecdsa`, `id_rsa`.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use russh::client::{self, Handle};
use russh::keys::agent::AgentIdentity;
use russh::keys::agent::client::AgentClient;
use russh::keys::{
    Algorithm, HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate,
};
use russh::{ChannelMsg, Disconnect, Preferred};

use super::escalation::Become;
use super::known_hosts::{KnownHosts, Verdict, host_string};
use super::{
    CommandOutput, EntryKind, FileOp, FileState, HandlerBatch, HandlersDone, Listings, LockRead,
    MAX_HELD_LOCK, MAX_TREE_ENTRIES, ReadLimits, ReadResult, RemoteFile, SshOptions, SshTarget,
    StepDone, Swept, Transport, TransportError, TreeEntry, WriteFile, relative_to, stop_path,
    too_many_entries,
};

/// How a read that saw a file change under it ends its error, and how often `read` tries.
const CHANGED_WHILE_READ: &str = "a file changed while it was read, try again";
const READ_ATTEMPTS: u32 = 3;

/// Scripts up to this size go in the exec request (well under Linux's 128 KiB cap on one
/// argument, even quoted); longer ones on stdin.
const INLINE_SCRIPT_MAX: usize = 32 * 1024;

/// Send a keepalive when the server has been silent this long; after `KEEPALIVE_MAX`
/// unanswered ones the connection is considered dead (about a minute).
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(15);
const KEEPALIVE_MAX: usize = 3;
/// Drop a connection nothing has used for this long. Generous, because a run may sit idle
/// (other hosts, an operator reading a diff); dead peers are caught by the keepalives.
const INACTIVITY_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// One SSH connection to one host.
pub struct SshTransport {
    handle: Handle<ClientHandler>,
    /// `user@address:port`, for messages.
    label: String,
    /// The inventory name and the login user, for become's messages.
    host: String,
    login: String,
    /// Every script and command runs under this when set (`ansible_become`).
    escalation: Option<Become>,
    /// What a read takes from the host at most.
    limits: ReadLimits,
    closed: AtomicBool,
    /// Requests answered and become prompts answered (see [`Transport::round_trips`]).
    turns: AtomicU64,
    /// The channel every script goes through, opened by the first one.
    session: tokio::sync::Mutex<Option<Session>>,
}

impl std::fmt::Debug for SshTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshTransport")
            .field("label", &self.label)
            .finish_non_exhaustive()
    }
}

/// Checks the server's host key during the handshake. russh only learns "refused", so the
/// reason is left in `refusal` for `connect` to report.
struct ClientHandler {
    host: String,
    port: u16,
    /// The run's shared copy (see `SshOptions::known_hosts`).
    known: Arc<KnownHosts>,
    files: Vec<PathBuf>,
    accept_new: bool,
    /// The key accepted as new in this connection (a re-key shows it again).
    accepted_new: Option<PublicKey>,
    refusal: Arc<Mutex<Option<TransportError>>>,
}

impl ClientHandler {
    fn refuse(&self, message: String) -> Result<bool, russh::Error> {
        if let Ok(mut slot) = self.refusal.lock() {
            *slot = Some(TransportError::HostKey(message));
        }
        Ok(false)
    }
}

impl client::Handler for ClientHandler {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        server_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let name = host_string(&self.host, self.port);
        let key = match server_key {
            PublicKeyOrCertificate::PublicKey { key, .. } => key,
            PublicKeyOrCertificate::Certificate(_) => {
                return self.refuse(format!(
                    "{name} presented a host certificate; deploy only checks plain host keys"
                ));
            }
        };
        let fingerprint = key.fingerprint(HashAlg::Sha256);
        let alg = key.algorithm();
        let alg = alg.as_str();
        let mut verdict = self.known.check(&self.host, self.port, key);
        if !matches!(verdict, Verdict::Match { .. }) {
            // The shared copy may predate an edit its time stamps did not show (within their
            // granularity): anything but a match is decided on the files as they are now.
            if let Ok(fresh) = KnownHosts::load(&self.files) {
                verdict = fresh.check(&self.host, self.port, key);
            }
        }
        match verdict {
            Verdict::Match { .. } => Ok(true),
            Verdict::Revoked { file, line } => self.refuse(format!(
                "the {alg} host key {fingerprint} of {name} is marked @revoked in {}:{line}",
                file.display()
            )),
            Verdict::Changed {
                file,
                line,
                known_type,
            } => self.refuse(format!(
                "the host key of {name} has CHANGED: it presented {alg} {fingerprint}, but {}:{line} \
                 holds another {known_type} key for it. Someone may be intercepting the \
                 connection, or the host was reinstalled; if you are sure the new key is right, \
                 remove that line",
                file.display()
            )),
            Verdict::Unknown => {
                if self
                    .accepted_new
                    .as_ref()
                    .is_some_and(|k| k.key_data() == key.key_data())
                {
                    return Ok(true);
                }
                if !self.accept_new {
                    return self.refuse(format!(
                        "{name} is not in known_hosts ({}); it presented {alg} {fingerprint}. Check \
                         that fingerprint, then pass --accept-new-host-keys to record it",
                        display_files(&self.files)
                    ));
                }
                let Some(file) = self.files.first() else {
                    return self.refuse(format!(
                        "{name} is unknown ({alg} {fingerprint}) and no known_hosts file is \
                         configured to record it in"
                    ));
                };
                if let Err(e) = KnownHosts::append(file, &self.host, self.port, key) {
                    return self.refuse(format!(
                        "cannot record the new host key of {name} ({alg} {fingerprint}): {e}"
                    ));
                }
                self.accepted_new = Some(key.clone());
                Ok(true)
            }
        }
    }
}

fn display_files(files: &[PathBuf]) -> String {
    if files.is_empty() {
        return "no known_hosts file configured".to_string();
    }
    files
        .iter()
        .map(|f| f.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// `io::Error` text without the "(os error N)" tail, which means nothing to an operator.
fn io_text(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error ") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

fn russh_text(e: &russh::Error) -> String {
    match e {
        russh::Error::IO(io) => io_text(io),
        other => other.to_string(),
    }
}

impl SshTransport {
    /// Connects, checks the host key and authenticates, all within `opts.connect_timeout`.
    /// The ssh-agent, if any, is the one `SSH_AUTH_SOCK` names.
    pub async fn connect(
        target: &SshTarget,
        opts: &SshOptions,
    ) -> Result<SshTransport, TransportError> {
        let agent = std::env::var_os("SSH_AUTH_SOCK").map(PathBuf::from);
        Self::connect_with_agent(target, opts, agent.as_deref()).await
    }

    /// [`SshTransport::connect`] with an explicit ssh-agent socket (`None`: no agent), for
    /// callers that must not depend on the process environment (tests, a future option).
    pub async fn connect_with_agent(
        target: &SshTarget,
        opts: &SshOptions,
        agent_socket: Option<&Path>,
    ) -> Result<SshTransport, TransportError> {
        let known = opts
            .known_hosts
            .get(&opts.known_hosts_files)
            .map_err(|e| TransportError::HostKey(format!("cannot read known_hosts: {e}")))?;

        // Ask first for the key types known_hosts holds for this host, so the server shows a
        // key we can check (OpenSSH does the same).
        let mut key_algs = known.known_algorithms(&target.address, target.port);
        for alg in Preferred::DEFAULT.key.iter() {
            if !key_algs.contains(alg) {
                key_algs.push(alg.clone());
            }
        }
        let config = client::Config {
            preferred: Preferred {
                key: Cow::Owned(key_algs),
                ..Preferred::DEFAULT
            },
            keepalive_interval: Some(KEEPALIVE_INTERVAL),
            keepalive_max: KEEPALIVE_MAX,
            inactivity_timeout: Some(INACTIVITY_TIMEOUT),
            nodelay: true,
            ..Default::default()
        };

        let refusal = Arc::new(Mutex::new(None));
        let handler = ClientHandler {
            host: target.address.clone(),
            port: target.port,
            known,
            files: opts.known_hosts_files.clone(),
            accept_new: opts.accept_new_host_keys,
            accepted_new: None,
            refusal: refusal.clone(),
        };
        let place = format!("{}:{}", target.address, target.port);
        let label = format!("{}@{place}", target.user);

        let attempt = async {
            let tcp = tokio::net::TcpStream::connect((target.address.as_str(), target.port))
                .await
                .map_err(|e| TransportError::Connect(format!("{place}: {}", io_text(&e))))?;
            // Small request/response exchanges: do not let Nagle delay them.
            let _ = tcp.set_nodelay(true);
            let mut handle = client::connect_stream(Arc::new(config), tcp, handler)
                .await
                .map_err(|e| {
                    let refused = refusal.lock().ok().and_then(|mut slot| slot.take());
                    refused.unwrap_or_else(|| {
                        TransportError::Connect(format!(
                            "{place}: SSH handshake failed: {}",
                            russh_text(&e)
                        ))
                    })
                })?;
            authenticate(&mut handle, target, opts, agent_socket, &label).await?;
            Ok::<_, TransportError>(handle)
        };
        let handle = tokio::time::timeout(opts.connect_timeout, attempt)
            .await
            .map_err(|_| {
                TransportError::Connect(format!(
                    "{place}: timed out after {:.1} s",
                    opts.connect_timeout.as_secs_f64()
                ))
            })??;
        Ok(SshTransport {
            handle,
            label,
            host: target.name.clone(),
            login: target.user.clone(),
            escalation: target.escalation.resolve(),
            limits: opts.read_limits,
            closed: AtomicBool::new(false),
            turns: AtomicU64::new(0),
            session: tokio::sync::Mutex::new(None),
        })
    }

    /// The read script's output (from `rest` on) -> what each path and tree holds.
    fn parse_read(
        &self,
        paths: &[String],
        trees: &[String],
        out: &CommandOutput,
        rest: &[u8],
    ) -> Result<ReadResult, TransportError> {
        if !out.success() {
            return Err(TransportError::Io(format!(
                "reading files on {} failed: {}",
                self.label,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let context = |e: String| {
            TransportError::Io(format!(
                "reading files on {}: {e}{}",
                self.label,
                stderr_suffix(&out.stderr)
            ))
        };
        let (listed, rest) = if trees.is_empty() {
            (Vec::new(), rest)
        } else {
            parse_list_output(trees, rest).map_err(context)?
        };
        let (files, through) = parse_read_output(paths, rest, &self.limits).map_err(context)?;
        Ok(ReadResult {
            files,
            trees: listed,
            through,
        })
    }

    /// An error once the connection is closed (by deploy or the server).
    fn ensure_open(&self) -> Result<(), TransportError> {
        if self.closed.load(Ordering::SeqCst) || self.handle.is_closed() {
            return Err(TransportError::Io(format!(
                "the connection to {} is closed",
                self.label
            )));
        }
        Ok(())
    }

    /// `user@address:port`.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Runs `command` on a new channel, feeding it `stdin` (then EOF), and collects its output.
    async fn exec(&self, command: &str, stdin: &[u8]) -> Result<CommandOutput, TransportError> {
        self.exec_with(command, stdin, None, MAX_OUTPUT).await
    }

    /// [`SshTransport::exec`] of a command that `become` wrapped (see [`Become::wrap`]): the
    /// password goes on stdin when sudo's prompt shows, the script's input only once the
    /// wrapped shell printed the marker (which is taken off stdout), and a refusal by sudo or
    /// su becomes one [`TransportError::Become`] line.
    async fn exec_with(
        &self,
        command: &str,
        stdin: &[u8],
        as_user: Option<&Become>,
        max_stdout: usize,
    ) -> Result<CommandOutput, TransportError> {
        self.ensure_open()?;
        self.turns.fetch_add(1, Ordering::Relaxed);
        let (mut reader, writer) = self.start(command).await?;
        let mut out = CommandOutput {
            status: None,
            stdout: Vec::new(),
            stderr: Vec::new(),
        };

        // With a password (or su), nothing of the script's input may go before sudo has taken
        // the password and the wrapped shell runs: sudo would read it as a password attempt.
        let mut marker_seen = false;
        if let Some(b) = as_user.filter(|b| b.handshake()) {
            match self.handshake(b, &mut reader, &writer, &mut out).await? {
                Handshake::Running => {
                    marker_seen = true;
                    // What sudo printed (a lecture, the prompt) is not the script's.
                    out.stderr.clear();
                }
                Handshake::Refused { answered } => {
                    return Err(self.refused(b, &out, answered));
                }
            }
        }

        let write = async {
            if !stdin.is_empty() {
                writer.data(stdin).await?;
            }
            writer.eof().await
        };
        let read = async move {
            let mut ended = false;
            let mut refused = false;
            let mut overflowed = false;
            while let Some(msg) = reader.wait().await {
                match msg {
                    ChannelMsg::Data { data } => {
                        // A host is not trusted to stop: past the cap, stop reading.
                        if out.stdout.len().saturating_add(data.len()) > max_stdout {
                            overflowed = true;
                            break;
                        }
                        out.stdout.extend_from_slice(&data)
                    }
                    // Extended data type 1 is stderr (RFC 4254, 5.2). Kept up to a cap (it
                    // is for messages); the rest is dropped.
                    ChannelMsg::ExtendedData { data, ext: 1 } => {
                        let room = MAX_STDERR.saturating_sub(out.stderr.len());
                        out.stderr.extend_from_slice(&data[..room.min(data.len())])
                    }
                    ChannelMsg::ExitStatus { exit_status } => {
                        out.status = i32::try_from(exit_status).ok();
                        ended = true;
                    }
                    ChannelMsg::ExitSignal {
                        signal_name,
                        error_message,
                        ..
                    } => {
                        ended = true;
                        out.stderr.extend_from_slice(
                            format!("killed by signal {signal_name:?} {error_message}").as_bytes(),
                        );
                    }
                    ChannelMsg::Failure => refused = true,
                    ChannelMsg::Close => {
                        ended = true;
                        break;
                    }
                    _ => {}
                }
            }
            (out, ended, refused, overflowed)
        };
        tokio::pin!(write, read);

        // Read while writing (a command may answer before it has read all its input), and stop
        // waiting for the writer once the channel is closed: a command that exits without
        // reading its stdin would otherwise leave the write pending forever.
        let mut write_done = false;
        let (mut out, ended, refused, overflowed) = loop {
            tokio::select! {
                res = &mut write, if !write_done => {
                    write_done = true;
                    // A failed write shows up as the command's own failure; nothing to add.
                    let _ = res;
                }
                res = &mut read => break res,
            }
        };
        if overflowed {
            return Err(TransportError::Io(format!(
                "{} sent more than {} of output; deploy stopped reading it",
                self.label,
                super::size_text(max_stdout as u64)
            )));
        }
        if refused {
            return Err(TransportError::Io(format!(
                "{} refused to run a command",
                self.label
            )));
        }
        if !ended {
            return Err(TransportError::Io(format!(
                "the connection to {} was lost while a command ran",
                self.label
            )));
        }
        if let Some(b) = as_user
            && !marker_seen
        {
            match take_marker(&out.stdout, b.marker()) {
                Some(rest) => out.stdout = rest.to_vec(),
                None => return Err(self.refused(b, &out, false)),
            }
        }
        Ok(out)
    }

    /// Waits, within [`BECOME_HANDSHAKE_TIMEOUT`], for the wrapped shell's marker, answering
    /// sudo's (or su's) first password prompt with the password. A second prompt means the
    /// password was wrong: stdin is closed so that sudo gives up after that one attempt.
    async fn handshake(
        &self,
        b: &Become,
        reader: &mut russh::ChannelReadHalf,
        writer: &russh::ChannelWriteHalf<client::Msg>,
        out: &mut CommandOutput,
    ) -> Result<Handshake, TransportError> {
        let mut answered = false;
        let mut closed_stdin = false;
        let wait = async {
            while let Some(msg) = reader.wait().await {
                match msg {
                    ChannelMsg::Data { data } => {
                        out.stdout.extend_from_slice(&data);
                        if let Some(rest) = take_marker(&out.stdout, b.marker()) {
                            out.stdout = rest.to_vec();
                            return Ok(Handshake::Running);
                        }
                        if out.stdout.len() > MAX_BEFORE_MARKER {
                            break;
                        }
                    }
                    ChannelMsg::ExtendedData { data, ext: 1 } => {
                        out.stderr.extend_from_slice(&data);
                        if out.stderr.len() > MAX_BEFORE_MARKER {
                            break;
                        }
                        let prompts = b.prompts_in(&String::from_utf8_lossy(&out.stderr));
                        if prompts == 1 && !answered && !closed_stdin {
                            match b.password() {
                                Some(pw) => {
                                    let line = format!("{pw}\n");
                                    writer.data(line.as_bytes()).await.map_err(|e| {
                                        TransportError::Io(format!(
                                            "cannot send the become password to {}: {}",
                                            self.label,
                                            russh_text(&e)
                                        ))
                                    })?;
                                    answered = true;
                                    // Waiting for sudo's prompt and answering it is a
                                    // round trip of its own inside the session.
                                    self.turns.fetch_add(1, Ordering::Relaxed);
                                }
                                None => {
                                    let _ = writer.eof().await;
                                    closed_stdin = true;
                                }
                            }
                        } else if prompts > 1 && !closed_stdin {
                            let _ = writer.eof().await;
                            closed_stdin = true;
                        }
                    }
                    ChannelMsg::ExitStatus { exit_status } => {
                        out.status = i32::try_from(exit_status).ok();
                    }
                    ChannelMsg::Close => break,
                    _ => {}
                }
            }
            Ok(Handshake::Refused { answered })
        };
        match tokio::time::timeout(BECOME_HANDSHAKE_TIMEOUT, wait).await {
            Ok(result) => result,
            Err(_) => Err(TransportError::Become(format!(
                "{}: {} did not start the command within {} s (stderr: {})",
                self.label,
                b.method.name(),
                BECOME_HANDSHAKE_TIMEOUT.as_secs(),
                String::from_utf8_lossy(&out.stderr)
                    .replace(b.prompt(), "")
                    .trim()
            ))),
        }
    }

    /// The error for a wrapped command whose shell never started.
    fn refused(&self, b: &Become, out: &CommandOutput, answered: bool) -> TransportError {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let refusal = b.refusal(&stderr, out.status, answered);
        TransportError::Become(format!(
            "{}: {}",
            self.label,
            b.explain(refusal, &self.host, &self.login, &stderr)
        ))
    }

    /// Runs a sh script with `data` on its stdin, as the become user when become is on, on
    /// the connection's session (see the module doc): one round trip.
    async fn run_script(&self, script: &str, data: &[u8]) -> Result<CommandOutput, TransportError> {
        self.run_script_capped(script, data, MAX_OUTPUT).await
    }

    /// [`SshTransport::run_script`] taking at most `max_stdout` bytes of its output.
    async fn run_script_capped(
        &self,
        script: &str,
        data: &[u8],
        max_stdout: usize,
    ) -> Result<CommandOutput, TransportError> {
        self.ensure_open()?;
        let mut slot = self.session.lock().await;
        // A new session runs a short first script without input from its exec request: sshd
        // opens a channel's window only once the command runs, so input sent with the exec
        // would wait one more round trip.
        let (mut session, sent) = match slot.take() {
            Some(session) => (session, false),
            None if data.is_empty() && script.len() <= INLINE_SCRIPT_MAX => {
                (self.open_session(Some(script)).await?, true)
            }
            None => (self.open_session(None).await?, false),
        };
        self.turns.fetch_add(1, Ordering::Relaxed);
        match session.exchange(script, data, max_stdout, sent).await {
            Ok(out) => {
                *slot = Some(session);
                Ok(out)
            }
            // The session is out of step (or gone): it is dropped, and a later script opens
            // another one.
            Err(ended) => {
                let _ = session.writer.close().await;
                Err(self.ended(ended, session.become_marker.is_some(), max_stdout))
            }
        }
    }

    /// Opens the session channel: the request loop ([`session_script`], running `first` before
    /// it) under `sh`, or under become when it is on (answering its password prompt first).
    async fn open_session(&self, first: Option<&str>) -> Result<Session, TransportError> {
        let marker = format!(
            "DEPLOY-{:016x}{:016x}",
            rand::random::<u64>(),
            rand::random::<u64>()
        );
        let (mut reader, writer) = self
            .start(&self.sh_command(&session_script(&marker, first)))
            .await?;
        let mut session = Session {
            writer,
            marker,
            out: Vec::new(),
            err: Vec::new(),
            become_marker: None,
            reader: None,
        };
        match &self.escalation {
            Some(b) if b.handshake() => {
                let mut out = CommandOutput {
                    status: None,
                    stdout: Vec::new(),
                    stderr: Vec::new(),
                };
                match self
                    .handshake(b, &mut reader, &session.writer, &mut out)
                    .await?
                {
                    // What came after the marker is the loop's; what sudo printed (a lecture,
                    // the prompt) is not.
                    Handshake::Running => session.out = out.stdout,
                    Handshake::Refused { answered } => {
                        return Err(self.refused(b, &out, answered));
                    }
                }
            }
            // sudo -n: its marker comes ahead of the first answer.
            Some(b) => session.become_marker = Some(b.marker().to_string()),
            None => {}
        }
        session.reader = Some(reader);
        Ok(session)
    }

    /// `Ok` when `out` is a success, else an I/O error: `what` and the script's stderr.
    fn succeeded(
        &self,
        out: &CommandOutput,
        what: impl FnOnce() -> String,
    ) -> Result<(), TransportError> {
        if out.success() {
            Ok(())
        } else {
            Err(TransportError::Io(format!(
                "{}{}",
                what(),
                stderr_suffix(&out.stderr)
            )))
        }
    }

    /// The error for a session that ended mid-request.
    fn ended(&self, ended: Ended, become_pending: bool, max_stdout: usize) -> TransportError {
        match ended {
            Ended::Overflow => TransportError::Io(format!(
                "{} sent more than {} of output; deploy stopped reading it",
                self.label,
                super::size_text(max_stdout as u64)
            )),
            Ended::Refused => {
                TransportError::Io(format!("{} refused to run a command", self.label))
            }
            Ended::Io(e) => TransportError::Io(format!(
                "cannot send a script to {}: {}",
                self.label,
                russh_text(&e)
            )),
            Ended::Lost(out) => match &self.escalation {
                // The wrapped shell never started: sudo or su said why.
                Some(b) if become_pending => self.refused(b, &out, false),
                _ => TransportError::Io(format!(
                    "the connection to {} was lost while a command ran{}",
                    self.label,
                    stderr_suffix(&out.stderr)
                )),
            },
        }
    }

    /// Runs a short sh script (in the exec request) on a channel of its own, for what must
    /// not wait for the session (asking running handlers to stop).
    async fn run_script_apart(&self, script: &str) -> Result<CommandOutput, TransportError> {
        let command = self.sh_command(script);
        self.exec_with(&command, &[], self.escalation.as_ref(), MAX_OUTPUT)
            .await
    }

    /// The command line that runs the sh script `body`: under `sh` with `LC_ALL=C`, or as
    /// the become user when become is on.
    fn sh_command(&self, body: &str) -> String {
        match &self.escalation {
            None => format!("LC_ALL=C sh -c {}", sh_quote(body)),
            Some(b) => b.wrap(body),
        }
    }

    /// Opens a channel and starts `command` on it.
    async fn start(
        &self,
        command: &str,
    ) -> Result<(russh::ChannelReadHalf, russh::ChannelWriteHalf<client::Msg>), TransportError>
    {
        let channel = self.handle.channel_open_session().await.map_err(|e| {
            TransportError::Io(format!(
                "cannot open a session to {}: {}",
                self.label,
                russh_text(&e)
            ))
        })?;
        channel.exec(true, command).await.map_err(|e| {
            TransportError::Io(format!(
                "cannot start a command on {}: {}",
                self.label,
                russh_text(&e)
            ))
        })?;
        Ok(channel.split())
    }
}

/// The connection's long-lived channel: a POSIX sh loop ([`session_script`]) that runs one
/// script per request, so that each script costs one round trip and not the three of a new
/// channel (open, exec, answer).
struct Session {
    /// `None` only while it is being opened.
    reader: Option<russh::ChannelReadHalf>,
    writer: russh::ChannelWriteHalf<client::Msg>,
    /// Heads each request and ends each answer on stdout and stderr; fresh per session.
    marker: String,
    /// Bytes the host sent past the last answer (none, from a host that keeps to the loop).
    out: Vec<u8>,
    err: Vec<u8>,
    /// With become but no handshake (sudo -n): the become marker still ahead on stdout.
    become_marker: Option<String>,
}

/// Why a request on the session got no whole answer; the session is dropped.
enum Ended {
    /// More stdout than the request may take.
    Overflow,
    /// The server refused the exec request.
    Refused,
    /// The request could not be sent.
    Io(russh::Error),
    /// The channel ended (with what it had sent).
    Lost(CommandOutput),
}

impl Session {
    /// Sends one request (a header line, the script, its stdin; unless `sent`: the session
    /// was opened with it) and reads its answer up to the end markers on stdout (with the
    /// exit status) and stderr. Reads while it writes, because a script may answer before it
    /// has read all of its input.
    async fn exchange(
        &mut self,
        script: &str,
        data: &[u8],
        max_stdout: usize,
        sent: bool,
    ) -> Result<CommandOutput, Ended> {
        let Some(reader) = self.reader.as_mut() else {
            return Err(Ended::Lost(CommandOutput {
                status: None,
                stdout: Vec::new(),
                stderr: Vec::new(),
            }));
        };
        let mut head = format!("{} {} {}\n", self.marker, script.len(), data.len()).into_bytes();
        head.extend_from_slice(script.as_bytes());
        let writer = &self.writer;
        let write = async {
            if sent {
                return Ok(());
            }
            writer.data(head.as_slice()).await?;
            if !data.is_empty() {
                writer.data(data).await?;
            }
            Ok::<(), russh::Error>(())
        };
        let out_end = format!("\n{} ", self.marker).into_bytes();
        let err_end = format!("\n{}\n", self.marker).into_bytes();
        let become_marker = &mut self.become_marker;
        let out = &mut self.out;
        let err = &mut self.err;
        // Where the marker searches go on from (what was searched cannot hold the start of
        // one, but for its last marker-length bytes).
        let read = async move {
            let mut status: Option<i32> = None;
            let mut stdout_end: Option<usize> = None;
            let mut stderr_end: Option<usize> = None;
            let mut out_from = 0usize;
            let mut err_from = 0usize;
            let cap = max_stdout.saturating_add(out_end.len() + 24);
            loop {
                if let Some(rest) = become_marker.as_deref().and_then(|m| take_marker(out, m)) {
                    *out = rest.to_vec();
                    *become_marker = None;
                }
                if become_marker.is_none() && stdout_end.is_none() {
                    if let Some((at, st, len)) = find_end(out, &out_end, out_from) {
                        stdout_end = Some(at);
                        status = st;
                        out_from = len;
                    } else {
                        out_from = out.len().saturating_sub(out_end.len() + 24);
                    }
                }
                if stderr_end.is_none() {
                    match find(err, &err_end, err_from) {
                        Some(at) => stderr_end = Some(at),
                        None => {
                            // Kept up to a cap (stderr is for messages): past it, the middle
                            // goes, and the tail stays for the marker search.
                            if err.len() > MAX_STDERR + 2 * err_end.len() {
                                let keep = err.len() - err_end.len();
                                err.drain(MAX_STDERR..keep);
                            }
                            err_from = err.len().saturating_sub(err_end.len());
                        }
                    }
                }
                if let (Some(o), Some(e)) = (stdout_end, stderr_end) {
                    let rest_out = out.split_off(out_from);
                    let mut stdout = std::mem::replace(out, rest_out);
                    stdout.truncate(o);
                    let rest_err = err.split_off(e + err_end.len());
                    let mut stderr = std::mem::replace(err, rest_err);
                    stderr.truncate(e);
                    return Ok(CommandOutput {
                        status,
                        stdout,
                        stderr,
                    });
                }
                if out.len() > cap && stdout_end.is_none() {
                    return Err(Ended::Overflow);
                }
                match reader.wait().await {
                    Some(ChannelMsg::Data { data }) => out.extend_from_slice(&data),
                    // Extended data type 1 is stderr (RFC 4254, 5.2).
                    Some(ChannelMsg::ExtendedData { data, ext: 1 }) => err.extend_from_slice(&data),
                    Some(ChannelMsg::ExitStatus { exit_status }) => {
                        status = i32::try_from(exit_status).ok();
                    }
                    Some(ChannelMsg::Failure) => return Err(Ended::Refused),
                    Some(ChannelMsg::Eof) | Some(ChannelMsg::Close) | None => {
                        let mut stderr = std::mem::take(err);
                        stderr.truncate(MAX_STDERR);
                        return Err(Ended::Lost(CommandOutput {
                            status,
                            stdout: std::mem::take(out),
                            stderr,
                        }));
                    }
                    Some(_) => {}
                }
            }
        };
        tokio::pin!(write, read);
        let mut write_done = false;
        loop {
            tokio::select! {
                res = &mut write, if !write_done => {
                    write_done = true;
                    if let Err(e) = res {
                        return Err(Ended::Io(e));
                    }
                }
                res = &mut read => return res,
            }
        }
    }
}

/// `needle` in `hay` at or after `from`.
fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

/// The stdout end of an answer (`\n<marker> <status>\n`) in `out` at or after `from`, once
/// whole: where it starts, the status, and where it ends.
fn find_end(out: &[u8], end: &[u8], from: usize) -> Option<(usize, Option<i32>, usize)> {
    let at = find(out, end, from)?;
    let after = at + end.len();
    let line = out.get(after..)?;
    let nl = line.iter().position(|&b| b == b'\n')?;
    let status = std::str::from_utf8(&line[..nl])
        .ok()
        .and_then(|s| s.parse().ok());
    Some((at, status, after + nl + 1))
}

/// The session's request loop. Each request is a line `<marker> <script bytes> <stdin
/// bytes>`, then the script, then its stdin. The script runs in a subshell (its `exit`,
/// traps, umask and variables end with it) with exactly its stdin bytes (the rest of what it
/// left unread is drained, so the next header is read where it starts); then the answer's
/// end goes to stdout (`\n<marker> <status>`) and stderr (`\n<marker>`). A header out of
/// step ends the loop, and the session with it. `first`, when given, is run the same way
/// (with no input) before the loop reads its first header.
fn session_script(marker: &str, first: Option<&str>) -> String {
    // One script run: in a subshell, without the loop's variables; then the answer's end.
    let run = "( eval \"unset _dq_m _dq_h _dq_s; $_dq_s\" )";
    let end = "_dq_st=$?\n\
               printf '\\n%s %s\\n' \"$_dq_m\" \"$_dq_st\"\n\
               printf '\\n%s\\n' \"$_dq_m\" >&2\n";
    let first = first.map_or(String::new(), |script| {
        format!("_dq_s={}\n{run} </dev/null\n{end}", sh_quote(script))
    });
    format!(
        "_dq_m={marker}\n\
         {first}\
         while IFS= read -r _dq_h; do\n\
         case $_dq_h in \"$_dq_m \"*) ;; *) exit 97 ;; esac\n\
         set -- ${{_dq_h#\"$_dq_m \"}}\n\
         _dq_s=$(head -c \"$1\") || exit 98\n\
         if [ \"$2\" -gt 0 ]; then\n\
         head -c \"$2\" | {{ {run}; _dq_st=$?; cat >/dev/null; exit $_dq_st; }}\n\
         else\n\
         {run} </dev/null\n\
         fi\n\
         {end}\
         done\n"
    )
}

/// What the become handshake found.
enum Handshake {
    /// The wrapped shell runs as the become user.
    Running,
    /// sudo or su ended before it; `answered` says whether a password was sent.
    Refused { answered: bool },
}

/// How long sudo or su may take to ask for a password and start the command (PAM's delay
/// after a wrong password is a few seconds).
const BECOME_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);
/// The most stdout deploy takes from one command on a host (a handler's output, a write
/// script's report); a read takes what its limits allow instead.
const MAX_OUTPUT: usize = 64 << 20;
/// The most stderr kept of one command (it is for messages); the rest is dropped.
const MAX_STDERR: usize = 1 << 20;
/// What a tree listing may take: 20001 entries with their hashes, at up to about 6 KiB each.
const MAX_LISTING_BYTES: usize = 128 << 20;

/// What sudo or su may print before the marker (a lecture, prompts); more is not sudo.
const MAX_BEFORE_MARKER: usize = 64 * 1024;

/// `stdout` after the first `marker` line, when it holds one.
fn take_marker<'a>(stdout: &'a [u8], marker: &str) -> Option<&'a [u8]> {
    let line = format!("{marker}\n");
    let at = stdout
        .windows(line.len())
        .position(|w| w == line.as_bytes())?;
    Some(&stdout[at + line.len()..])
}

/// Tries the configured key file only; else each ssh-agent identity; else the default key
/// files that exist. Passphrase-protected key files are skipped (use the agent for those).
async fn authenticate(
    handle: &mut Handle<ClientHandler>,
    target: &SshTarget,
    opts: &SshOptions,
    agent_socket: Option<&Path>,
    label: &str,
) -> Result<(), TransportError> {
    let user = target.user.as_str();
    if let Some(path) = &target.private_key_file {
        let key = load_key(path).map_err(TransportError::Auth)?;
        let fp = key.public_key().fingerprint(HashAlg::Sha256);
        if try_key(handle, user, key).await? {
            return Ok(());
        }
        return Err(TransportError::Auth(format!(
            "{label}: the server refused the key {} ({fp})",
            path.display()
        )));
    }

    let mut tried: Vec<String> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    if let Some(socket) = agent_socket {
        match AgentClient::connect_uds(socket).await {
            Ok(mut agent) => match agent.request_identities().await {
                Ok(identities) => {
                    for identity in identities {
                        let AgentIdentity::PublicKey { key, comment } = identity else {
                            continue;
                        };
                        let hash = rsa_hash(handle, &key.algorithm()).await;
                        match handle
                            .authenticate_publickey_with(user, key.clone(), hash, &mut agent)
                            .await
                        {
                            Ok(r) if r.success() => return Ok(()),
                            Ok(_) => tried.push(format!("agent key {comment}")),
                            Err(e) => notes.push(format!("ssh-agent could not sign: {e}")),
                        }
                    }
                }
                Err(e) => notes.push(format!("ssh-agent: {e}")),
            },
            Err(e) => notes.push(format!("ssh-agent: {e}")),
        }
    }

    if let Some(home) = &opts.home {
        for name in ["id_ed25519", "id_ecdsa", "id_rsa"] {
            let path = home.join(".ssh").join(name);
            if !path.exists() {
                continue;
            }
            match load_key(&path) {
                Ok(key) => {
                    if try_key(handle, user, key).await? {
                        return Ok(());
                    }
                    tried.push(path.display().to_string());
                }
                Err(e) => notes.push(e),
            }
        }
    }

    let mut message = if tried.is_empty() {
        format!("{label}: no key to offer (no key file given, no ssh-agent key, no ~/.ssh/id_*)")
    } else {
        format!("{label}: the server refused {}", tried.join(", "))
    };
    if !notes.is_empty() {
        message.push_str(&format!(" ({})", notes.join("; ")));
    }
    Err(TransportError::Auth(message))
}

fn load_key(path: &Path) -> Result<PrivateKey, String> {
    russh::keys::load_secret_key(path, None).map_err(|e| match e {
        russh::keys::Error::KeyIsEncrypted => format!(
            "{} is protected by a passphrase; add it to ssh-agent instead",
            path.display()
        ),
        russh::keys::Error::IO(io) => format!("cannot read {}: {}", path.display(), io_text(&io)),
        other => format!("cannot use {} as a private key: {other}", path.display()),
    })
}

/// For RSA keys, the best signature hash the server accepts; `None` for other key types.
async fn rsa_hash(handle: &Handle<ClientHandler>, alg: &Algorithm) -> Option<HashAlg> {
    if !matches!(alg, Algorithm::Rsa { .. }) {
        return None;
    }
    handle
        .best_supported_rsa_hash()
        .await
        .ok()
        .flatten()
        .flatten()
}

async fn try_key(
    handle: &mut Handle<ClientHandler>,
    user: &str,
    key: PrivateKey,
) -> Result<bool, TransportError> {
    let hash = rsa_hash(handle, &key.algorithm()).await;
    let key = PrivateKeyWithHashAlg::new(Arc::new(key), hash);
    let result = handle
        .authenticate_publickey(user, key)
        .await
        .map_err(|e| TransportError::Auth(russh_text(&e)))?;
    Ok(result.success())
}

/// Quotes `s` for POSIX sh: single quotes, with `'` written as `'\''`.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The largest limit the read script compares sizes against (18 digits).
const SH_MAX_SIZE: u64 = 999_999_999_999_999_999;

/// Reports, per path, `P <n>` when the folder `n` levels above it is a symbolic link (the
/// nearest such), then one status line: `F` readable regular file, `U` unreadable regular
/// file, `L <target>` a symbolic link (never followed: its target may be anything on the
/// host, so nothing is read through it), `O <what>` something else, `M` missing; keeping
/// the `F` ones as the positional parameters. Then one `stat` line per `F` file and the
/// bytes of those within the limits, concatenated: a file over `limits.file` is skipped,
/// and nothing is sent when the rest add up to more than `limits.host` (the controller
/// sees both from the sizes). `head` cuts the bytes at what `stat` announced plus one, so a
/// file growing meanwhile is seen, never streamed. Only shell builtins run per path (and
/// `readlink` per link); `stat`, `cat` and `head` run once.
fn read_script(limits: &ReadLimits) -> String {
    format!(
        r#"
nl='
'
for p do
  shift
  d=${{p%/*}}; k=1
  while [ -n "$d" ]; do
    if [ -L "$d" ]; then echo "P $k"; break; fi
    d=${{d%/*}}; k=$((k + 1))
  done
  if [ -L "$p" ] && [ -d "$p" ]; then echo 'O a symbolic link to a directory'
  elif [ -L "$p" ]; then
    t=$(readlink -- "$p" | head -c 4096); printf 'L %s' "$t" | tr -c '[:print:]' '?'; echo
  elif [ -f "$p" ]; then
    if [ -r "$p" ]; then echo F; set -- "$@" "$p"; else echo U; fi
  elif [ -d "$p" ]; then echo 'O a directory'
  elif [ -e "$p" ]; then echo 'O not a regular file'
  else echo M
  fi
done
[ "$#" -eq 0 ] && exit 0
st=$(stat -c '%s %a %u %g %U %G' -- "$@") || exit 3
printf '%s\n' "$st"
sum=0
for p do
  shift
  line=${{st%%"$nl"*}}; st=${{st#*"$nl"}}
  s=${{line%% *}}
  case $s in ''|*[!0-9]*) exit 4;; esac
  if [ ${{#s}} -gt 18 ] || [ "$s" -gt {file} ]; then continue; fi
  sum=$((sum + s))
  set -- "$@" "$p"
done
[ "$#" -eq 0 ] && exit 0
[ "$sum" -gt {host} ] && exit 0
cat -- "$@" | head -c $((sum + 1))
"#,
        // sh compares 64-bit numbers; sizes of more than 18 digits are over any limit.
        file = limits.file.min(SH_MAX_SIZE),
        host = limits.host.min(SH_MAX_SIZE),
    )
}

/// The tree-listing part of the read script (before the files part). For the roots that
/// exist: GNU find's `lstat` of everything under them, NUL-separated (`<%y> <size> <path>`;
/// a link's record is followed by its target), then `=<find's status>`, all capped by
/// `head` (a cut listing is an error, never a partial one), then `=`; then one `sha256sum`
/// over their regular files (as capped) and `=<its status>`. A missing root lists nothing.
fn list_script(trees: &[String]) -> String {
    let roots: Vec<String> = trees.iter().map(|t| sh_quote(t)).collect();
    let roots = roots.join(" ");
    let cap = MAX_TREE_ENTRIES + 1;
    // A link takes two fields.
    let fields = 2 * cap + 1;
    format!(
        "set --\n\
         for r in {roots}; do if [ -e \"$r\" ] || [ -L \"$r\" ]; then set -- \"$@\" \"$r\"; fi; done\n\
         if [ \"$#\" -gt 0 ]; then\n\
         \x20 {{ find -P \"$@\" \\( -type l -printf 'l %s %p\\0%l\\0' \\) -o -printf '%y %s %p\\0' \
         2>/dev/null; printf '=%s\\0' \"$?\"; }} | head -z -n {fields}\n\
         \x20 printf '=\\0'\n\
         \x20 find -P \"$@\" -type f -print0 2>/dev/null | head -z -n {cap} \
         | xargs -0 -r sha256sum -- 2>/dev/null\n\
         \x20 printf '=%s\\0' \"$?\"\n\
         else\n\
         \x20 printf '=0\\0=\\0=0\\0'\n\
         fi\n"
    )
}

/// Splits the listing part of the read output (see [`list_script`]) into one listing per
/// tree; returns them and the rest of the output (the files part). Public for the property
/// tests: the host writes every byte of it.
pub fn parse_list_output<'a>(
    trees: &[String],
    stdout: &'a [u8],
) -> Result<(Listings, &'a [u8]), String> {
    let mut rest = stdout;
    let mut next = || -> Result<&'a [u8], String> {
        let end = rest
            .iter()
            .position(|b| *b == 0)
            .ok_or_else(|| "the host's listing ended early".to_string())?;
        let record = &rest[..end];
        rest = &rest[end + 1..];
        Ok(record)
    };
    // (full path, kind letter, size, link target), in find's order.
    let mut found: Vec<(Result<String, String>, u8, u64, String)> = Vec::new();
    // Nested roots are listed by each: keep one record per path.
    let mut seen: std::collections::HashSet<Vec<u8>> = Default::default();
    // find's exit status; `None` when `head` cut the listing short.
    let mut find_status: Option<String> = None;
    loop {
        let record = next()?;
        if let Some(status) = record.strip_prefix(b"=") {
            if !status.is_empty() {
                find_status = Some(String::from_utf8_lossy(status).into_owned());
                if next()? != b"=" {
                    return Err("unexpected end of the host's listing".to_string());
                }
            }
            break;
        }
        let (kind, size, path) = match record {
            [kind, b' ', tail @ ..] => {
                let space = tail
                    .iter()
                    .position(|b| *b == b' ')
                    .ok_or_else(|| "a listing record without a path".to_string())?;
                let size = std::str::from_utf8(&tail[..space])
                    .ok()
                    .and_then(|n| n.parse::<u64>().ok())
                    .ok_or_else(|| "a listing record without a size".to_string())?;
                (*kind, size, &tail[space + 1..])
            }
            _ => return Err("unexpected listing record".to_string()),
        };
        let target = if kind == b'l' {
            let target = next()?;
            if target == b"=" {
                // Cut between a link and its target.
                break;
            }
            String::from_utf8_lossy(target).into_owned()
        } else {
            String::new()
        };
        if !seen.insert(path.to_vec()) {
            continue;
        }
        let path = std::str::from_utf8(path)
            .map(str::to_string)
            .map_err(|_| String::from_utf8_lossy(path).into_owned());
        found.push((path, kind, size, target));
    }
    // The hashes: `sha256sum`'s lines (a name with `\` or a newline escaped, the line then
    // prefixed with `\`), then `=<status>`.
    let hashes_text = String::from_utf8_lossy(next()?).into_owned();
    let (hash_lines, hash_status) = match hashes_text.rsplit_once("\n=") {
        Some((lines, status)) => (lines, status),
        None => ("", hashes_text.strip_prefix('=').unwrap_or("?")),
    };
    let mut hashes: std::collections::HashMap<String, String> = Default::default();
    for line in hash_lines.lines() {
        let (escaped, line) = match line.strip_prefix('\\') {
            Some(l) => (true, l),
            None => (false, line),
        };
        let (Some(hex), Some(name)) = (line.get(..64), line.get(66..)) else {
            return Err(format!("unexpected sha256sum line {line:?}"));
        };
        let name = if escaped {
            unescape(name)
        } else {
            name.to_string()
        };
        hashes.insert(name, hex.to_string());
    }

    let failed = |why: String| trees.iter().map(|_| Err(why.clone())).collect();
    let Some(find_status) = find_status else {
        return Ok((failed(too_many_entries(trees)), rest));
    };
    if find_status != "0" {
        let why = format!(
            "listing failed (find exited with {find_status}; deploy needs GNU find there, and \
             read access to every folder under {})",
            trees.join(", ")
        );
        return Ok((failed(why), rest));
    }
    // 123: some file could not be read (it is reported as unreadable); anything else means
    // no hash can be trusted.
    if hash_status != "0" && hash_status != "123" {
        let why = format!("hashing files failed (sha256sum/xargs exited with {hash_status})");
        return Ok((failed(why), rest));
    }
    if found.len() > MAX_TREE_ENTRIES {
        return Ok((failed(too_many_entries(trees)), rest));
    }
    let mut listed = Vec::with_capacity(trees.len());
    for root in trees {
        let mut entries: Vec<TreeEntry> = Vec::new();
        for (path, kind, size, target) in &found {
            let name = match path {
                Ok(p) | Err(p) => p,
            };
            let Some(rel) = relative_to(root, name, '/') else {
                continue;
            };
            let kind = match (path, kind) {
                (Err(_), _) => EntryKind::Other("a name that is not UTF-8".into()),
                (Ok(p), b'f') => match hashes.get(p) {
                    Some(sha) => EntryKind::File {
                        size: *size,
                        sha256: sha.clone(),
                    },
                    None => EntryKind::Unreadable,
                },
                (Ok(_), b'l') => EntryKind::Symlink {
                    target: target.clone(),
                },
                (Ok(_), b'd') => EntryKind::Dir,
                (Ok(_), other) => EntryKind::Other(format!(
                    "not a regular file (find type {})",
                    char::from(*other)
                )),
            };
            entries.push(TreeEntry { rel, kind });
        }
        listed.push(Ok(entries));
    }
    Ok((listed, rest))
}

/// `sha256sum`'s escaping of a file name: `\\` and `\n` (and `\r` in newer coreutils).
fn unescape(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut chars = name.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

fn check_path(path: &str) -> Result<(), TransportError> {
    if path.is_empty() || path.contains('\0') {
        return Err(TransportError::Io(format!("invalid path {path:?}")));
    }
    Ok(())
}

/// What the files part of a read found: each path's file and, where one is, the folder on
/// its way that is a symbolic link.
pub type FilesRead = (Vec<RemoteFile>, Vec<Option<String>>);

/// Splits the read script's output (see [`read_script`]) into one [`RemoteFile`] per path
/// (public for the property tests: the host writes every byte of it). Sizes are checked
/// against `limits` before any arithmetic or copy: a file over the limit is reported as
/// such, files adding up to more than the host limit fail the read.
pub fn parse_read_output(
    paths: &[String],
    stdout: &[u8],
    limits: &ReadLimits,
) -> Result<FilesRead, String> {
    let mut rest = stdout;
    let mut next_line = || -> Result<String, String> {
        let end = rest
            .iter()
            .take(MAX_STATUS_LINE)
            .position(|b| *b == b'\n')
            .ok_or_else(|| "the host's answer ended early (or a line is too long)".to_string())?;
        let line = String::from_utf8_lossy(&rest[..end]).into_owned();
        rest = &rest[end + 1..];
        Ok(line)
    };

    let mut kinds = Vec::with_capacity(paths.len());
    let mut through = Vec::with_capacity(paths.len());
    for path in paths {
        let mut line = next_line()?;
        let mut via = None;
        if let Some(levels) = line.strip_prefix("P ") {
            let levels: usize = levels
                .parse()
                .map_err(|_| format!("unexpected folder-link line {line:?} for {path}"))?;
            via = Some(ancestor(path, levels).ok_or_else(|| {
                format!("the host named a folder-link {levels} levels above {path}")
            })?);
            line = next_line()?;
        }
        through.push(via);
        kinds.push(match line.as_str() {
            "F" => None,
            "M" => Some(RemoteFile::Missing),
            "U" => Some(RemoteFile::Unusable(
                "a regular file deploy cannot read (permission denied)".to_string(),
            )),
            other => match (other.strip_prefix("L "), other.strip_prefix("O ")) {
                (Some(target), _) => Some(RemoteFile::Symlink(target.to_string())),
                (_, Some(what)) => Some(RemoteFile::Unusable(what.to_string())),
                _ => return Err(format!("unexpected status {other:?} for {path}")),
            },
        });
    }

    let mut states = Vec::new();
    for _ in kinds.iter().filter(|k| k.is_none()) {
        let line = next_line()?;
        states
            .push(parse_stat_line(&line).ok_or_else(|| format!("unexpected stat line {line:?}"))?);
    }
    // Sizes as the host's script judged them: over the file limit, not sent.
    let mut total: u64 = 0;
    for (size, _) in &states {
        if *size <= limits.file {
            total = total.saturating_add(*size);
        }
    }
    if total > limits.host {
        return Err(limits.host_too_much(total));
    }
    if total != rest.len() as u64 {
        return Err(format!(
            "got {} bytes of file content where stat said {total}; {CHANGED_WHILE_READ}",
            rest.len()
        ));
    }

    let mut states = states.into_iter();
    let mut out = Vec::with_capacity(paths.len());
    for kind in kinds {
        match kind {
            Some(file) => out.push(file),
            None => {
                let (size, mut state) = states
                    .next()
                    .ok_or_else(|| "fewer stat lines than files".to_string())?;
                if size > limits.file {
                    out.push(RemoteFile::Unusable(limits.file_too_big(size)));
                    continue;
                }
                // `total` (the sum of these sizes) is `rest.len()`: each fits.
                let size = usize::try_from(size).map_err(|_| "a size past memory".to_string())?;
                let (content, after) = rest.split_at(size.min(rest.len()));
                state.content = content.to_vec();
                rest = after;
                out.push(RemoteFile::Present(state));
            }
        }
    }
    Ok((out, through))
}

/// The longest status or stat line deploy takes from a host (a link's target is cut at 4096
/// bytes by the script).
const MAX_STATUS_LINE: usize = 8192;

/// `path` without its last `levels` components (`/etc/app/x.conf`, 1 -> `/etc/app`).
fn ancestor(path: &str, levels: usize) -> Option<String> {
    let mut p = path;
    for _ in 0..levels {
        p = &p[..p.rfind('/')?];
    }
    (!p.is_empty()).then(|| p.to_string())
}

/// `size mode uid gid owner group` as `stat -c '%s %a %u %g %U %G'` prints it.
fn parse_stat_line(line: &str) -> Option<(u64, FileState)> {
    let mut f = line.split(' ');
    let size = f.next()?.parse().ok()?;
    let mode = u32::from_str_radix(f.next()?, 8).ok()?;
    let uid = f.next()?.parse().ok()?;
    let gid = f.next()?.parse().ok()?;
    let name = |s: Option<&str>| {
        s.filter(|s| *s != "UNKNOWN" && !s.is_empty())
            .map(str::to_string)
    };
    let owner = name(f.next());
    let group = name(f.next());
    Some((
        size,
        FileState {
            content: Vec::new(),
            mode,
            uid,
            gid,
            owner,
            group,
        },
    ))
}

/// `(directory, base name)` of a path, as `dirname`/`basename` would give them.
fn split_path(path: &str) -> (String, String) {
    let trimmed = path.trim_end_matches('/');
    match trimmed.rsplit_once('/') {
        Some(("", base)) => ("/".to_string(), base.to_string()),
        Some((dir, base)) => (dir.to_string(), base.to_string()),
        None => (".".to_string(), trimmed.to_string()),
    }
}

/// Builds the write script for `ops` (the written files' bytes follow it on stdin, in
/// order). See the module doc and [`Transport::write_batch`] for what it does. On failure it
/// prints `FAIL <op index> <phase>` (`write` or `rename`) and removes every temporary file it
/// made; on success it prints `OK`.
fn write_script(ops: &[FileOp]) -> String {
    // (op index, file, temporary path, its directory), for every write.
    let mut writes: Vec<(usize, &WriteFile, String, String)> = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        let FileOp::Write(f) = op else { continue };
        let (dir, base) = split_path(&f.path);
        // Keep the name under NAME_MAX whatever the destination's name is.
        let mut short = base.as_str();
        while short.len() > 100 {
            let mut end = 100.min(short.len() - 1);
            while !short.is_char_boundary(end) {
                end -= 1;
            }
            short = &short[..end];
        }
        let tmp = format!(
            "{}/.{short}.deploy-{:016x}.tmp",
            dir.trim_end_matches('/'),
            rand::random::<u64>()
        );
        writes.push((i, f, tmp, dir));
    }
    let mut s = String::from("umask 077\nset -C\n");

    // Only temporary files this script created (noclobber guarantees that) are removed.
    s.push_str("cleanup() {\n");
    for (i, _, tmp, _) in &writes {
        s.push_str(&format!(
            "  [ -z \"${{c{i}:-}}\" ] || rm -f -- {}\n",
            sh_quote(tmp)
        ));
    }
    s.push_str("  :\n}\n");
    s.push_str(
        "fail() {\n  if [ $# -gt 1 ]; then printf '%s\\n' \"$2\" >&2; fi\n  \
         printf 'FAIL %s %s\\n' \"$1\" \"${phase:-write}\"\n  cleanup\n  exit 1\n}\n",
    );
    // A session cut by a dropped connection or a killed deploy still takes its temporary
    // files with it.
    s.push_str("trap 'cleanup; exit 129' HUP PIPE TERM INT\n");
    // What an earlier run that died harder than that (the host rebooted, sh killed) left in
    // these folders: only deploy's own temporary names, only regular files. The host lock is
    // held, so no other deploy run is writing here now.
    let mut swept: Vec<&str> = Vec::new();
    for (_, _, _, dir) in &writes {
        if !swept.contains(&dir.as_str()) {
            swept.push(dir);
            s.push_str(&format!(
                "for f in {}/.*.deploy-*.tmp; do if [ -f \"$f\" ] && [ ! -L \"$f\" ] && rm -f -- \"$f\"; then printf 'SWEPT %s\\n' \"$f\"; fi; done\n",
                sh_quote(dir.trim_end_matches('/'))
            ));
        }
    }

    for (i, op) in ops.iter().enumerate() {
        let p = sh_quote(op.path());
        match op {
            FileOp::Write(_) => s.push_str(&format!(
                "if [ -d {p} ]; then fail {i} 'the destination is a directory'; fi\n"
            )),
            FileOp::Remove(_) => s.push_str(&format!(
                "if [ -d {p} ] && [ ! -L {p} ]; then fail {i} 'a directory (deploy removes only \
                 files and symbolic links)'; fi\n"
            )),
        }
    }
    if let Some(&(first, ..)) = writes.first() {
        stage_script(&mut s, &writes, first);
    }
    // Ansible's `validate`: each new copy is checked in place before anything is replaced;
    // its output goes to stderr for the report, stdin is closed.
    s.push_str("phase=validate\n");
    for (i, f, tmp, _) in &writes {
        if let Some(command) = &f.validate {
            let command = command.replace("%s", &sh_quote(tmp));
            s.push_str(&format!(
                "if ! v_out=$( {{ {command}\n}} </dev/null 2>&1 ); then fail {i} \"$v_out\"; fi\n"
            ));
        }
    }

    s.push_str("phase=rename\n");
    let mut tmps = writes.iter().map(|(_, _, tmp, _)| tmp);
    let mut dirs: Vec<String> = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        let (dir, _) = split_path(op.path());
        if !dirs.contains(&dir) {
            dirs.push(dir);
        }
        match op {
            FileOp::Write(f) => {
                let tmp = tmps.next().map_or_else(String::new, |t| sh_quote(t));
                s.push_str(&format!(
                    "mv -f -- {tmp} {} || fail {i}\n",
                    sh_quote(&f.path)
                ));
            }
            // `rm` without `-r` refuses a directory; a symbolic link is unlinked, not followed.
            FileOp::Remove(path) => {
                s.push_str(&format!("rm -f -- {} || fail {i}\n", sh_quote(path)));
            }
        }
    }
    // Make the renames themselves durable; best effort (not every sync can take a directory).
    let dir_list: Vec<String> = dirs.iter().map(|d| sh_quote(d)).collect();
    s.push_str(&format!(
        "sync -- {} 2>/dev/null || :\n",
        dir_list.join(" ")
    ));
    s.push_str("echo OK\n");
    s
}

/// The staging part of the write script: every write's temporary file, complete, synced,
/// with its mode and owner. `first` is the op index batch-wide failures name.
fn stage_script(s: &mut String, writes: &[(usize, &WriteFile, String, String)], first: usize) {
    // Processes are what a write costs the host (a fork and an exec each), so every step
    // that can take all files at once does: one mkdir for the missing folders, one stat
    // for the sizes, one sync, one chmod per mode. When a batched step fails, it is
    // repeated file by file, so the failure names the file it concerns.
    let quoted: Vec<String> = writes.iter().map(|(_, _, t, _)| sh_quote(t)).collect();
    let all_tmps = quoted.join(" ");
    let mut dirs: Vec<&String> = Vec::new();
    for (_, _, _, dir) in writes {
        if !dirs.contains(&dir) {
            dirs.push(dir);
        }
    }
    let dir_list: Vec<String> = dirs.iter().map(|d| sh_quote(d)).collect();
    s.push_str("missing=\n");
    for d in &dir_list {
        s.push_str(&format!("[ -d {d} ] || missing=1\n"));
    }
    s.push_str(&format!(
        "if [ -n \"$missing\" ] && ! mkdir -p -- {} 2>/dev/null; then\n",
        dir_list.join(" ")
    ));
    for (i, _, _, dir) in writes {
        s.push_str(&format!("  mkdir -p -- {} || fail {i}\n", sh_quote(dir)));
    }
    s.push_str("fi\n");
    for ((i, f, _, _), t) in writes.iter().zip(&quoted) {
        s.push_str(&format!(
            ": > {t} || fail {i}\nc{i}=1\nhead -c {n} >> {t} || fail {i}\n",
            n = f.content.len()
        ));
    }
    // Every byte arrived (stdin ends early when the connection drops).
    s.push_str(&format!(
        "sizes=$(stat -c %s -- {all_tmps}) || fail {first}\nset -- $sizes\n"
    ));
    for (i, f, _, _) in writes {
        let n = f.content.len();
        s.push_str(&format!(
            "[ \"${{1:-0}}\" -eq {n} ] || fail {i} \"only ${{1:-0}} of {n} bytes arrived\"\nshift\n"
        ));
    }
    s.push_str(&format!(
        "sync -- {all_tmps} 2>/dev/null || sync || fail {first}\n"
    ));
    let mut modes: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    for (k, (_, f, _, _)) in writes.iter().enumerate() {
        modes.entry(f.mode & 0o7777).or_default().push(k);
    }
    for (mode, indexes) in &modes {
        let names: Vec<&str> = indexes.iter().map(|&k| quoted[k].as_str()).collect();
        s.push_str(&format!(
            "if ! chmod -- {mode:o} {} 2>/dev/null; then\n",
            names.join(" ")
        ));
        for &k in indexes {
            s.push_str(&format!(
                "  chmod -- {mode:o} {} || fail {}\n",
                quoted[k], writes[k].0
            ));
        }
        s.push_str("fi\n");
    }
    for ((i, f, _, _), t) in writes.iter().zip(&quoted) {
        if let Some(owner) = &f.owner {
            s.push_str(&format!("chown -- {} {t} || fail {i}\n", sh_quote(owner)));
        }
        if let Some(group) = &f.group {
            s.push_str(&format!("chgrp -- {} {t} || fail {i}\n", sh_quote(group)));
        }
        // chown clears set-id bits; put the mode back after it.
        if (f.owner.is_some() || f.group.is_some()) && f.mode & 0o6000 != 0 {
            s.push_str(&format!("chmod -- {:o} {t} || fail {i}\n", f.mode & 0o7777));
        }
    }
}

/// The script for [`Transport::create_exclusive`]: the shell's noclobber (`set -C`, an
/// `O_EXCL` open) creates the file or fails when it exists; the `len` bytes of content follow
/// the script on stdin. Prints `CREATED`, or `HELD` and what the existing file holds (at
/// most [`MAX_HELD_LOCK`] + 1 bytes: the host's file is not trusted to be small).
fn create_exclusive_script(path: &str, len: usize) -> String {
    exclusive_script(path, len, "")
}

/// [`create_exclusive_script`], running `then` (a line of sh) after a create. The create
/// runs in a subshell, noclobber with it: a failed redirection of the special built-in `:`
/// makes dash exit the whole shell.
fn exclusive_script(path: &str, len: usize, then: &str) -> String {
    let (dir, _) = split_path(path);
    let p = sh_quote(path);
    format!(
        "umask 077\n\
         mkdir -p -- {d} || exit 1\n\
         if ( set -C; : > {p} ) 2>/dev/null; then\n\
         \x20 head -c {len} >> {p} || {{ rm -f -- {p}; exit 1; }}\n\
         {then}\
         \x20 echo CREATED\n\
         elif [ -f {p} ]; then\n\
         \x20 echo HELD\n\
         \x20 head -c {held} -- {p} 2>/dev/null\n\
         \x20 exit 0\n\
         else\n\
         \x20 echo \"cannot create {path_text}\" >&2\n\
         \x20 exit 1\n\
         fi\n",
        d = sh_quote(&dir),
        held = MAX_HELD_LOCK + 1,
        path_text = path.replace(['"', '\\', '$', '`'], "_"),
    )
}

/// The read command for `paths` and `trees`: [`list_script`], then [`read_script`] within
/// `limits`.
fn read_command(
    paths: &[String],
    trees: &[String],
    limits: &ReadLimits,
) -> Result<String, TransportError> {
    let mut script = String::new();
    if !trees.is_empty() {
        for t in trees {
            check_path(t)?;
        }
        script.push_str(&list_script(trees));
    }
    script.push_str("set --");
    for p in paths {
        check_path(p)?;
        script.push(' ');
        script.push_str(&sh_quote(p));
    }
    script.push_str(&read_script(limits));
    Ok(script)
}

/// What a host may send for a read: the files' bytes within the limit, a status and stat
/// line per path, the listing; more fails the read, unread.
fn read_cap(paths: &[String], trees: &[String], limits: &ReadLimits) -> usize {
    let listing = if trees.is_empty() {
        0
    } else {
        MAX_LISTING_BYTES
    };
    usize::try_from(limits.host)
        .unwrap_or(usize::MAX)
        .saturating_add(paths.len().saturating_mul(3 * MAX_STATUS_LINE))
        .saturating_add(listing)
}

/// The lock part of [`Transport::lock_and_read`]'s script, which the read script follows:
/// creates `lock` exclusively from the `len` bytes on stdin and prints `CREATED` (and removes
/// a stop file a cancelled run may have left), or prints `HELD` and the lock's content and
/// exits before reading anything ([`exclusive_script`]).
fn lock_script(lock: &str, len: usize) -> String {
    exclusive_script(
        lock,
        len,
        &format!("\x20 rm -f -- {}\n", sh_quote(&stop_path(lock))),
    )
}

/// The script of [`Transport::run_handlers`]. Its stdin: the record's parts (head, each
/// pending entry, tail; [`super::RecordParts`]), kept in a private folder. Each handler runs
/// through `shell` with stdin closed, its output kept in that folder and printed framed
/// (`H <i> <status> <stdout bytes> <stderr bytes>`, then the bytes); after a success, the
/// record without the entries of the handlers that succeeded so far goes to a temporary
/// file beside the record, is checked, fsynced and renamed over it (`R <i> OK`, or
/// `R <i> FAIL` and the script ends). A failure ends it unless `keep_going`. Before each
/// handler after the first, an existing stop file ends it (`STOPPED`). The lock and the
/// stop file are removed on every way out, a hung-up session included.
fn handlers_script(run: &HandlerBatch, shell: &str) -> String {
    let lock = sh_quote(&run.lock);
    let stop = sh_quote(&run.stop_path());
    let parts = &run.record;
    let mut s = String::from("umask 077\nset -C\n");
    s.push_str(&format!(
        "t=\nd=\nbye() {{ [ -z \"$t\" ] || rm -f -- \"$t\"; [ -z \"$d\" ] || rm -rf -- \"$d\"; \
         rm -f -- {stop} {lock}; }}\n\
         trap bye EXIT\ntrap 'exit 129' HUP PIPE TERM INT\n\
         d=$(mktemp -d \"${{TMPDIR:-/tmp}}/deploy-handlers.XXXXXXXX\") || exit 1\n\
         head -c {h} > \"$d/head\" || exit 1\n",
        h = parts.head.len()
    ));
    for (k, entry) in parts.pending.iter().enumerate() {
        s.push_str(&format!(
            "head -c {} > \"$d/p{k}\" || exit 1\n",
            entry.len()
        ));
    }
    s.push_str(&format!(
        "head -c {} > \"$d/tail\" || exit 1\n",
        parts.tail.len()
    ));
    let all: Vec<String> = (0..parts.pending.len()).map(|k| k.to_string()).collect();
    s.push_str(&format!("left='{}'\n", all.join(" ")));
    // The record without the entries that succeeded, as `RecordParts::assemble` makes it,
    // in a temporary file named as a write batch names them (so a sweep finds it).
    s.push_str(
        "record() {\n  cat -- \"$d/head\" || return 1\n  if [ -n \"$left\" ]; then\n    \
         printf ',\\n  \"pending_handlers\": ['\n    sep=\n    \
         for k in $left; do printf '%s' \"$sep\"; cat -- \"$d/p$k\" || return 1; sep=,; done\n    \
         printf ']'\n  fi\n  cat -- \"$d/tail\"\n}\n\
         rec() {\n  t=$1\n  record > \"$t\" || return 1\n  \
         chmod 600 \"$t\" && { sync -- \"$t\" 2>/dev/null || sync; } && mv -f -- \"$t\" \"$2\" || return 1\n  \
         t=\n}\n\
         drop() {\n  n=\n  for k in $left; do [ \"$k\" = \"$1\" ] || n=\"$n $k\"; done\n  left=${n# }\n}\n",
    );
    let dest = sh_quote(&parts.path);
    let (dir, base) = split_path(&parts.path);
    for (i, step) in run.steps.iter().enumerate() {
        let tmp = sh_quote(&format!(
            "{}/.{base}.deploy-{:016x}.tmp",
            dir.trim_end_matches('/'),
            rand::random::<u64>()
        ));
        if i > 0 {
            s.push_str(&format!(
                "if [ -e {stop} ]; then echo STOPPED; exit 0; fi\n"
            ));
        }
        let drop = step
            .pending
            .map_or(String::new(), |k| format!("drop {k}; "));
        s.push_str(&format!(
            "rm -f -- \"$d/o\" \"$d/e\"\n\
             ( unset LC_ALL; exec {shell} -c {cmd} ) </dev/null >\"$d/o\" 2>\"$d/e\"; st=$?\n\
             printf 'H {i} %s %s %s\\n' \"$st\" \"$(($(wc -c < \"$d/o\")))\" \"$(($(wc -c < \"$d/e\")))\"\n\
             cat -- \"$d/o\" \"$d/e\"\n\
             if [ \"$st\" -eq 0 ]; then\n\
             \x20 {drop}if rec {tmp} {dest}; then echo 'R {i} OK'; else echo 'R {i} FAIL'; exit 0; fi\n",
            cmd = sh_quote(&step.command),
        ));
        if !run.keep_going {
            s.push_str("else\n  echo END\n  exit 0\n");
        }
        s.push_str("fi\n");
    }
    s.push_str("echo END\n");
    s
}

/// The output of [`handlers_script`] -> what each handler did. The lock is released by the
/// script's exit, so a complete answer means it is gone.
fn parse_handlers_output(stdout: &[u8]) -> Result<HandlersDone, String> {
    let mut done = HandlersDone {
        ran: Vec::new(),
        stopped: false,
        unlocked: Ok(()),
    };
    let mut rest = stdout;
    loop {
        let Some(end) = rest.iter().position(|b| *b == b'\n') else {
            return Err(format!(
                "the host's answer ended after {} handler(s)",
                done.ran.len()
            ));
        };
        let line = String::from_utf8_lossy(&rest[..end]).into_owned();
        rest = &rest[end + 1..];
        let fields: Vec<&str> = line.split(' ').collect();
        match fields.as_slice() {
            ["END"] => return Ok(done),
            ["STOPPED"] => {
                done.stopped = true;
                return Ok(done);
            }
            ["H", i, status, out_len, err_len] => {
                let parse = |t: &str| t.parse::<usize>().ok();
                let (Some(i), Some(out_len), Some(err_len)) =
                    (parse(i), parse(out_len), parse(err_len))
                else {
                    return Err(format!("unexpected line {line:?}"));
                };
                if i != done.ran.len() {
                    return Err(format!("handler {i} answered out of order"));
                }
                let total = out_len
                    .checked_add(err_len)
                    .filter(|t| *t <= rest.len())
                    .ok_or_else(|| format!("handler {i}'s output was cut"))?;
                let output = CommandOutput {
                    // A handler a signal ended shows as 128 + N, as the shell says it.
                    status: status.parse::<i32>().ok(),
                    stdout: rest[..out_len].to_vec(),
                    stderr: rest[out_len..total].to_vec(),
                };
                rest = &rest[total..];
                done.ran.push(StepDone {
                    output,
                    recorded: Ok(false),
                });
            }
            ["R", i, verdict] => {
                if !done.record_line(&line, i, verdict)? {
                    return Ok(done);
                }
            }
            _ => return Err(format!("unexpected line {line:?}")),
        }
    }
}

#[async_trait]
impl Transport for SshTransport {
    async fn read(&self, paths: &[String], trees: &[String]) -> Result<ReadResult, TransportError> {
        if paths.is_empty() && trees.is_empty() {
            return Ok(ReadResult::default());
        }
        let script = read_command(paths, trees, &self.limits)?;
        let mut attempt = 1;
        loop {
            let out = self
                .run_script_capped(&script, &[], read_cap(paths, trees, &self.limits))
                .await?;
            match self.parse_read(paths, trees, &out, &out.stdout) {
                // A file replaced between its stat and its cat (another run's write, a
                // service rewriting it): read again, a few times.
                Err(TransportError::Io(e))
                    if e.contains(CHANGED_WHILE_READ) && attempt < READ_ATTEMPTS =>
                {
                    attempt += 1;
                }
                done => return done,
            }
        }
    }

    async fn lock_and_read(
        &self,
        lock: &str,
        content: &[u8],
        paths: &[String],
        trees: &[String],
    ) -> Result<LockRead, TransportError> {
        check_path(lock)?;
        let mut script = lock_script(lock, content.len());
        script.push_str(&read_command(paths, trees, &self.limits)?);
        let cap = read_cap(paths, trees, &self.limits).saturating_add(MAX_HELD_LOCK + 64);
        let out = self.run_script_capped(&script, content, cap).await?;
        if out.success()
            && let Some(held) = out.stdout.strip_prefix(b"HELD\n")
        {
            return Ok(LockRead::Held(held.to_vec()));
        }
        match out.stdout.strip_prefix(b"CREATED\n") {
            Some(rest) => Ok(LockRead::Taken(self.parse_read(paths, trees, &out, rest))),
            None => Err(TransportError::Io(format!(
                "cannot create {lock} on {}{}",
                self.label,
                stderr_suffix(&out.stderr)
            ))),
        }
    }

    async fn run_handlers(
        &self,
        run: &HandlerBatch,
        _stop: &(dyn Fn() -> bool + Send + Sync),
    ) -> Result<HandlersDone, TransportError> {
        check_path(&run.lock)?;
        check_path(&run.record.path)?;
        // As `run`: the login user's shell, or /bin/sh as the become user.
        let shell = if self.escalation.is_some() {
            "/bin/sh"
        } else {
            "\"${SHELL:-/bin/sh}\""
        };
        let script = handlers_script(run, shell);
        let parts = &run.record;
        let mut data = parts.head.clone();
        for entry in &parts.pending {
            data.extend_from_slice(entry);
        }
        data.extend_from_slice(&parts.tail);
        let out = self.run_script(&script, &data).await?;
        parse_handlers_output(&out.stdout).map_err(|e| {
            TransportError::Io(format!(
                "running handlers on {}: {e}{}",
                self.label,
                stderr_suffix(&out.stderr)
            ))
        })
    }

    async fn request_stop(&self, lock: &str) -> Result<(), TransportError> {
        check_path(lock)?;
        let script = format!(
            "if [ -f {l} ]; then : > {s}; fi\n",
            l = sh_quote(lock),
            s = sh_quote(&stop_path(lock))
        );
        // Beside the session, which the handlers hold.
        let out = self.run_script_apart(&script).await?;
        self.succeeded(&out, || {
            format!("cannot ask {} to stop its handlers", self.label)
        })
    }

    fn round_trips(&self) -> u64 {
        self.turns.load(Ordering::Relaxed)
    }

    async fn write_batch(&self, ops: &[FileOp]) -> Result<Swept, TransportError> {
        if ops.is_empty() {
            return Ok(Vec::new());
        }
        for op in ops {
            check_path(op.path())?;
        }
        let script = write_script(ops);
        let data: Vec<u8> = ops
            .iter()
            .filter_map(|op| match op {
                FileOp::Write(f) => Some(f.content.iter().copied()),
                FileOp::Remove(_) => None,
            })
            .flatten()
            .collect();
        let out = self.run_script(&script, &data).await?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if out.success() && stdout.lines().any(|l| l == "OK") {
            return Ok(stdout
                .lines()
                .filter_map(|l| l.strip_prefix("SWEPT "))
                .map(str::to_string)
                .collect());
        }
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        let failed = stdout.lines().find_map(|l| {
            let mut f = l.strip_prefix("FAIL ")?.split(' ');
            let index: usize = f.next()?.parse().ok()?;
            Some((index, f.next().unwrap_or("write").to_string()))
        });
        Err(TransportError::Io(match failed {
            Some((index, phase)) => {
                let op = ops.get(index);
                let path = op.map_or("?", FileOp::path);
                let verb = match op {
                    Some(FileOp::Remove(_)) => "remove",
                    _ => "write",
                };
                let what = if stderr.is_empty() {
                    "failed".to_string()
                } else {
                    stderr
                };
                if phase == "validate" {
                    format!(
                        "validate of {path} failed on {}: {what} (nothing was replaced)",
                        self.label
                    )
                } else if phase == "rename" && index > 0 {
                    format!(
                        "cannot {verb} {path} on {}: {what} (the files before it in this batch \
                         were already replaced)",
                        self.label
                    )
                } else {
                    format!(
                        "cannot {verb} {path} on {}: {what} (nothing was replaced)",
                        self.label
                    )
                }
            }
            None => format!(
                "writing files on {} failed (exit status {:?}){}",
                self.label,
                out.status,
                stderr_suffix(&out.stderr)
            ),
        }))
    }

    async fn run(&self, command: &str) -> Result<CommandOutput, TransportError> {
        match &self.escalation {
            // The login user's shell, as sshd runs it.
            None => self.exec(command, &[]).await,
            // As Ansible does, /bin/sh as the become user.
            Some(b) => {
                self.exec_with(&b.wrap(command), &[], Some(b), MAX_OUTPUT)
                    .await
            }
        }
    }

    async fn facts(&self) -> Result<crate::facts::Facts, TransportError> {
        // Like every script of the session: `sh`, under become when it is on.
        let out = self.run_script(crate::facts::SH_SCRIPT, &[]).await?;
        super::facts_answer(&out, crate::facts::parse_posix)
    }

    async fn create_exclusive(
        &self,
        path: &str,
        content: &[u8],
    ) -> Result<Option<Vec<u8>>, TransportError> {
        check_path(path)?;
        let out = self
            .run_script_capped(
                &create_exclusive_script(path, content.len()),
                content,
                MAX_HELD_LOCK + 64,
            )
            .await?;
        let stdout = &out.stdout;
        if out.success() && stdout.as_slice() == b"CREATED\n" {
            return Ok(None);
        }
        if out.success()
            && let Some(held) = stdout.strip_prefix(b"HELD\n")
        {
            return Ok(Some(held.to_vec()));
        }
        Err(TransportError::Io(format!(
            "cannot create {path} on {}{}",
            self.label,
            stderr_suffix(&out.stderr)
        )))
    }

    async fn remove(&self, path: &str) -> Result<(), TransportError> {
        check_path(path)?;
        let out = self
            .run_script(&format!("rm -f -- {}\n", sh_quote(path)), &[])
            .await?;
        self.succeeded(&out, || format!("cannot remove {path} on {}", self.label))
    }

    async fn close(&self) {
        if !self.closed.swap(true, Ordering::SeqCst) {
            // The disconnect closes the host loop's stdin, which ends it: no EOF first, whose
            // answer (the loop's exit) would be one more turn on the wire.
            drop(self.session.lock().await.take());
            let _ = self
                .handle
                .disconnect(Disconnect::ByApplication, "", "en")
                .await;
        }
    }
}

fn stderr_suffix(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let text = text.trim();
    if text.is_empty() {
        String::new()
    } else {
        format!(": {text}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the write script with this machine's `sh`, the way the host runs it (script,
    /// then the bytes, on stdin), giving it `data` as the bytes.
    fn run_write_script(ops: &[FileOp], data: &[u8]) -> std::process::Output {
        run_script(&write_script(ops), data)
    }

    /// Runs `script` with this machine's `sh` as the host would (on stdin, `data` after it).
    /// One answer of the session loop: stdout, status, stderr.
    type Answer = (Vec<u8>, Option<i32>, Vec<u8>);

    /// Runs the session loop with this machine's `sh` on `requests` (script, stdin) and
    /// splits what it printed into answers as the transport does: (stdout, status, stderr).
    fn run_session(
        first: Option<&str>,
        requests: &[(&str, &[u8])],
        trailer: &[u8],
    ) -> (Vec<Answer>, Option<i32>) {
        let marker = "DEPLOY-0123456789abcdef";
        let mut input = Vec::new();
        for (script, data) in requests {
            input.extend_from_slice(
                format!("{marker} {} {}\n", script.len(), data.len()).as_bytes(),
            );
            input.extend_from_slice(script.as_bytes());
            input.extend_from_slice(data);
        }
        input.extend_from_slice(trailer);
        let out = sh_with_input(
            &format!("LC_ALL=C; export LC_ALL; {}", session_script(marker, first)),
            &input,
        );
        let out_end = format!("\n{marker} ").into_bytes();
        let err_end = format!("\n{marker}\n").into_bytes();
        let (mut stdout, mut stderr) = (out.stdout.as_slice(), out.stderr.as_slice());
        let mut answers = Vec::new();
        while let Some((at, status, end)) = find_end(stdout, &out_end, 0) {
            let e = find(stderr, &err_end, 0).expect("a stderr end per answer");
            answers.push((stdout[..at].to_vec(), status, stderr[..e].to_vec()));
            stdout = &stdout[end..];
            stderr = &stderr[e + err_end.len()..];
        }
        assert!(
            stdout.is_empty() && stderr.is_empty(),
            "{stdout:?} {stderr:?}"
        );
        (answers, out.status.code())
    }

    #[test]
    fn the_session_loop_keeps_each_request_apart_whatever_its_script_does() {
        let requests: &[(&str, &[u8])] = &[
            // `exit` ends the script, not the loop.
            ("printf 'a\\n'; exit 5", b""),
            // Input left unread is drained: the next header is read where it starts.
            ("head -c 3; echo; echo err >&2", b"xyzLEFT\nOVER\n"),
            ("printf 'no newline'", b""),
            ("set -e; false; echo never", b""),
            // Bytes come back as they are, trailing newlines included.
            ("cat", b"bin\x00ary\n\n"),
            // The loop's own variables are not the script's.
            ("echo \"[$_dq_m$_dq_h$_dq_s]\"", b""),
            // Traps, umask and `set` end with the script.
            ("trap 'echo bye' EXIT; umask 077; set -C", b""),
            ("umask; : > /dev/null && echo ok", b""),
            // A script reading all of stdin gets exactly its own bytes, then EOF.
            ("wc -c", b"12345"),
        ];
        let (answers, status) = run_session(None, requests, b"");
        let text: Vec<(String, Option<i32>, String)> = answers
            .iter()
            .map(|(o, s, e)| {
                (
                    String::from_utf8_lossy(o).into_owned(),
                    *s,
                    String::from_utf8_lossy(e).into_owned(),
                )
            })
            .collect();
        assert_eq!(text.len(), requests.len(), "{text:?}");
        assert_eq!(text[0], ("a\n".into(), Some(5), String::new()));
        assert_eq!(text[1], ("xyz\n".into(), Some(0), "err\n".into()));
        assert_eq!(text[2], ("no newline".into(), Some(0), String::new()));
        assert_eq!(text[3], (String::new(), Some(1), String::new()));
        assert_eq!(answers[4].0, b"bin\x00ary\n\n");
        assert_eq!(text[5].0, "[]\n");
        assert_eq!(text[6].0, "bye\n");
        assert_ne!(text[7].0.lines().next(), Some("0077"), "{:?}", text[7]);
        assert!(text[7].0.ends_with("ok\n"), "{:?}", text[7]);
        assert_eq!(text[8].0.trim(), "5");
        // EOF ends the loop.
        assert_eq!(status, Some(0));
    }

    #[test]
    fn the_session_loop_runs_its_first_script_before_the_first_header() {
        // The script deploy puts in the exec request when it opens a session (quotes and
        // all), then a request as usual.
        let first = "echo \"it's $((6 * 7))\"; echo 'to stderr' >&2; exit 4";
        let (answers, status) = run_session(Some(first), &[("cat", b"next")], b"");
        assert_eq!(answers.len(), 2);
        assert_eq!(
            answers[0],
            (b"it's 42\n".to_vec(), Some(4), b"to stderr\n".to_vec())
        );
        assert_eq!(answers[1], (b"next".to_vec(), Some(0), Vec::new()));
        assert_eq!(status, Some(0));
    }

    #[test]
    fn the_session_loop_ends_at_a_header_out_of_step() {
        let (answers, status) = run_session(None, &[("echo one", b"")], b"garbage\necho two\n");
        assert_eq!(answers.len(), 1);
        assert_eq!(answers[0].0, b"one\n");
        assert_eq!(status, Some(97));
    }

    fn run_script(script: &str, data: &[u8]) -> std::process::Output {
        let mut input = script.as_bytes().to_vec();
        input.extend_from_slice(data);
        sh_with_input(
            &format!("LC_ALL=C; eval \"$(head -c {})\"", script.len()),
            &input,
        )
    }

    /// `sh -c command` on this machine with `input` on its stdin, to its end.
    fn sh_with_input(command: &str, input: &[u8]) -> std::process::Output {
        use std::io::Write;
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg(command)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("sh");
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(input).expect("input");
        drop(stdin);
        child.wait_with_output().expect("wait")
    }

    fn file(path: &std::path::Path, content: &[u8], mode: u32) -> FileOp {
        FileOp::Write(WriteFile {
            path: path.to_string_lossy().into_owned(),
            content: content.into(),
            mode,
            owner: None,
            group: None,
            validate: None,
        })
    }

    fn remove(path: &std::path::Path) -> FileOp {
        FileOp::Remove(path.to_string_lossy().into_owned())
    }

    #[test]
    fn write_script_removes_after_every_file_is_staged_and_never_a_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        std::fs::write(d.join("target"), b"kept\n").expect("target");
        std::os::unix::fs::symlink(d.join("target"), d.join("link")).expect("link");
        std::fs::write(d.join("old.bin"), b"\0old").expect("old");
        std::fs::create_dir(d.join("folder")).expect("folder");
        // A directory among the paths to remove: refused before anything is replaced.
        let ops = [
            file(&d.join("new.conf"), b"new\n", 0o644),
            remove(&d.join("old.bin")),
            remove(&d.join("folder")),
        ];
        let out = run_write_script(&ops, b"new\n");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stdout.contains("FAIL 2 write"), "{stdout}{stderr}");
        assert!(stderr.contains("a directory"), "{stderr}");
        assert!(d.join("old.bin").exists() && !d.join("new.conf").exists());

        // Writes and removals in one batch: the link is unlinked, its target stays; a path
        // already gone is fine.
        let ops = [
            file(&d.join("new.conf"), b"new\n", 0o644),
            remove(&d.join("link")),
            remove(&d.join("old.bin")),
            remove(&d.join("never-was")),
            file(&d.join("sub/last"), b"last", 0o600),
        ];
        let out = run_write_script(&ops, b"new\nlast");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "OK\n", "{out:?}");
        assert!(std::fs::symlink_metadata(d.join("link")).is_err());
        assert!(!d.join("old.bin").exists());
        assert_eq!(std::fs::read(d.join("target")).expect("target"), b"kept\n");
        assert_eq!(std::fs::read(d.join("sub/last")).expect("last"), b"last");
        assert!(d.join("folder").is_dir());
        // Removals only: no staging at all.
        let script = write_script(&[remove(&d.join("new.conf"))]);
        assert!(!script.contains("stat -c"), "{script}");
        let out = run_script(&script, b"");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "OK\n", "{out:?}");
        assert!(!d.join("new.conf").exists());
    }

    #[test]
    fn trees_are_listed_without_following_links_in_the_same_script_as_the_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let root = d.join("site");
        std::fs::create_dir_all(root.join("img/empty")).expect("mkdir");
        std::fs::write(root.join("index.html"), b"<p>hi</p>\n").expect("write");
        std::fs::write(root.join("img/logo.png"), b"\x89PNG\0").expect("write");
        std::fs::write(root.join("odd\nname\\x"), b"odd").expect("write");
        std::os::unix::fs::symlink("/etc", root.join("etc-link")).expect("link");
        std::fs::write(d.join("alone"), b"alone").expect("write");
        let status = std::process::Command::new("mkfifo")
            .arg(root.join("fifo"))
            .status()
            .expect("mkfifo");
        assert!(status.success());
        let s = |p: &std::path::Path| p.to_string_lossy().into_owned();
        let trees = vec![
            s(&root),
            s(&d.join("missing")),
            s(&d.join("alone")),
            s(&root.join("img")),
        ];
        let paths = vec![s(&root.join("index.html"))];
        let mut script = list_script(&trees);
        script.push_str(&format!("set -- {}", sh_quote(&paths[0])));
        script.push_str(&read_script(&ReadLimits::default()));
        let out = run_script(&script, b"");
        assert!(out.status.success(), "{out:?}");
        let (listed, rest) = parse_list_output(&trees, &out.stdout).expect("listing");
        let (files, _) = parse_read_output(&paths, rest, &ReadLimits::default()).expect("files");
        assert!(matches!(&files[0], RemoteFile::Present(f) if f.content == b"<p>hi</p>\n"));

        let sha = |b: &[u8]| crate::state::sha256_hex(b);
        let site = listed[0].as_ref().expect("site");
        let find = |rel: &str| site.iter().find(|e| e.rel == rel).map(|e| &e.kind);
        assert_eq!(find(""), Some(&EntryKind::Dir));
        assert_eq!(find("img/empty"), Some(&EntryKind::Dir));
        assert_eq!(
            find("img/logo.png"),
            Some(&EntryKind::File {
                size: 5,
                sha256: sha(b"\x89PNG\0")
            })
        );
        assert_eq!(
            find("odd\nname\\x"),
            Some(&EntryKind::File {
                size: 3,
                sha256: sha(b"odd")
            })
        );
        assert_eq!(
            find("etc-link"),
            Some(&EntryKind::Symlink {
                target: "/etc".into()
            })
        );
        assert!(matches!(find("fifo"), Some(EntryKind::Other(_))));
        assert!(site.iter().all(|e| !e.rel.starts_with("etc-link/")));
        assert_eq!(site.len(), 8, "{site:?}");
        assert_eq!(listed[1], Ok(vec![]));
        assert_eq!(
            listed[2],
            Ok(vec![TreeEntry {
                rel: String::new(),
                kind: EntryKind::File {
                    size: 5,
                    sha256: sha(b"alone")
                }
            }])
        );
        // A root inside another is listed for both.
        let img = listed[3].as_ref().expect("img");
        assert_eq!(img.len(), 3, "{img:?}");
    }

    #[test]
    fn write_script_batches_and_checks_every_byte() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = dir.path().join("a.conf");
        let b = dir.path().join("new/sub/b.env");
        let c = dir.path().join("c.conf");
        std::fs::write(&a, b"old\n").expect("a");
        let files = [
            file(&a, b"alpha\n", 0o644),
            file(&b, b"bravo\n", 0o600),
            file(&c, b"charlie\n", 0o644),
        ];
        // The connection drops after 8 of the 20 bytes: nothing is replaced, the file
        // whose bytes are missing is named, no temporary file is left.
        let out = run_write_script(&files, b"alpha\nbr");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stdout.contains("FAIL 1 write"), "{stdout}{stderr}");
        assert!(stderr.contains("only 2 of 6 bytes arrived"), "{stderr}");
        assert_eq!(std::fs::read(&a).expect("a"), b"old\n");
        assert!(!c.exists() && !b.exists());
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .expect("dir")
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(left.is_empty(), "{left:?}");

        // With every byte: all three written, each with its mode, the folder made.
        let out = run_write_script(&files, b"alpha\nbravo\ncharlie\n");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "OK\n", "{out:?}");
        use std::os::unix::fs::PermissionsExt;
        for (path, content, mode) in [
            (&a, "alpha\n", 0o644),
            (&b, "bravo\n", 0o600),
            (&c, "charlie\n", 0o644),
        ] {
            assert_eq!(std::fs::read_to_string(path).expect("written"), content);
            let m = std::fs::metadata(path).expect("meta").permissions().mode();
            assert_eq!(m & 0o7777, mode, "{}", path.display());
        }
        // One stat and one sync for the batch, one chmod per mode, one mv per file.
        let script = write_script(&files);
        assert_eq!(script.matches("stat -c %s").count(), 1, "{script}");
        assert_eq!(
            script.matches("\nchmod").count() + script.matches("if ! chmod").count(),
            2
        );
        assert_eq!(script.matches("mv -f").count(), 3);
    }

    #[test]
    fn a_cut_or_failed_listing_is_an_error_for_every_tree_never_a_partial_one() {
        let trees = vec!["/r".to_string(), "/s".to_string()];
        let listed = |out: &[u8]| {
            let (listed, rest) = parse_list_output(&trees, out).expect("parsed");
            assert_eq!(rest, b"F\n", "the files part follows");
            listed
        };
        let ok = listed(
            b"d 0 /r\0f 2 /r/a\0=0\0=\0"
                .iter()
                .chain(format!("{}  /r/a\n=0\0F\n", "ab".repeat(32)).as_bytes())
                .copied()
                .collect::<Vec<u8>>()
                .as_slice(),
        );
        assert_eq!(ok[1], Ok(vec![]));
        assert!(matches!(&ok[0], Ok(e) if e.len() == 2));
        // `head` cut the listing (no status record), even between a link and its target.
        for cut in [
            &b"f 1 /r/a\0=\0=0\0F\n"[..],
            b"f 1 /r/a\0l 1 /r/b\0=\0=0\0F\n",
        ] {
            let l = listed(cut);
            assert!(
                l.iter()
                    .all(|t| matches!(t, Err(e) if e.contains("more than"))),
                "{l:?}"
            );
        }
        let l = listed(b"d 0 /r\0=1\0=\0=0\0F\n");
        assert!(
            matches!(&l[0], Err(e) if e.contains("find exited with 1")),
            "{l:?}"
        );
        let l = listed(b"d 0 /r\0f 1 /r/a\0=0\0=\0=127\0F\n");
        assert!(
            matches!(&l[1], Err(e) if e.contains("exited with 127")),
            "{l:?}"
        );
        // 123: a file sha256sum could not read, reported as such.
        let l = listed(b"d 0 /r\0f 1 /r/a\0=0\0=\0=123\0F\n");
        assert!(
            matches!(&l[0], Ok(e) if e[1].kind == EntryKind::Unreadable),
            "{l:?}"
        );
    }

    /// A batch of handlers over `dir`: `commands` in order, each owning pending entry k.
    fn handler_batch(dir: &std::path::Path, commands: &[&str], keep_going: bool) -> HandlerBatch {
        let names = ["first", "second", "third"];
        HandlerBatch {
            steps: commands
                .iter()
                .enumerate()
                .map(|(k, c)| super::super::HandlerStep {
                    command: c.to_string(),
                    pending: Some(k),
                })
                .collect(),
            record: super::super::RecordParts {
                path: dir.join("state.json").to_string_lossy().into_owned(),
                head: b"{\n  \"version\": 1,\n  \"commit\": \"c0ffee\"".to_vec(),
                pending: names[..commands.len()]
                    .iter()
                    .map(|n| format!("{{\"name\":\"{n}\",\"since\":\"c0ffee\"}}").into_bytes())
                    .collect(),
                tail: b"\n}\n".to_vec(),
            },
            keep_going,
            lock: dir.join("lock.json").to_string_lossy().into_owned(),
        }
    }

    /// Runs the handlers script with this machine's sh, as the host would.
    fn run_handlers_here(batch: &HandlerBatch) -> HandlersDone {
        let parts = &batch.record;
        let mut data = parts.head.clone();
        for e in &parts.pending {
            data.extend_from_slice(e);
        }
        data.extend_from_slice(&parts.tail);
        let out = run_script(&handlers_script(batch, "/bin/sh"), &data);
        assert!(out.status.success(), "{out:?}");
        parse_handlers_output(&out.stdout).expect("parsed")
    }

    #[test]
    fn the_handlers_script_records_each_success_on_the_host_and_stops_at_a_failure() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let lock = d.join("lock.json");
        let log = d.join("log");
        let log_q = sh_quote(&log.to_string_lossy());
        let ok = format!("echo one; echo first >> {log_q}");
        let fails = format!("echo two >&2; echo second >> {log_q}; exit 3");
        let third = format!("echo third >> {log_q}");
        let commands = [ok.as_str(), fails.as_str(), third.as_str()];
        let state = d.join("state.json");

        // Stop at the failure: the first is recorded done, the others stay pending; each
        // handler's output apart; the lock is gone.
        std::fs::write(&lock, b"held").expect("lock");
        let batch = handler_batch(d, &commands, false);
        let done = run_handlers_here(&batch);
        assert_eq!(done.ran.len(), 2, "{done:?}");
        assert_eq!(done.ran[0].output.stdout, b"one\n");
        assert_eq!(done.ran[0].output.status, Some(0));
        assert_eq!(done.ran[0].recorded, Ok(true));
        assert_eq!(done.ran[1].output.stderr, b"two\n");
        assert_eq!(done.ran[1].output.status, Some(3));
        assert_eq!(done.ran[1].recorded, Ok(false));
        assert!(!done.stopped);
        assert_eq!(
            std::fs::read_to_string(&log).expect("log"),
            "first\nsecond\n"
        );
        let record = std::fs::read(&state).expect("record");
        assert_eq!(record, batch.record.assemble(&[1, 2]));
        let json: serde_json::Value = serde_json::from_slice(&record).expect("JSON");
        assert_eq!(json["pending_handlers"][0]["name"], "second");
        assert_eq!(json["pending_handlers"][1]["name"], "third");
        assert!(!lock.exists(), "lock left");

        // --force-handlers: the third runs too and is recorded; only the failed one stays.
        std::fs::write(&lock, b"held").expect("lock");
        let batch = handler_batch(d, &commands, true);
        let done = run_handlers_here(&batch);
        assert_eq!(done.ran.len(), 3, "{done:?}");
        assert_eq!(done.ran[2].recorded, Ok(true));
        let record = std::fs::read(&state).expect("record");
        assert_eq!(record, batch.record.assemble(&[1]));
        let json: serde_json::Value = serde_json::from_slice(&record).expect("JSON");
        assert_eq!(json["pending_handlers"].as_array().map(Vec::len), Some(1));

        // All succeed: the record has no pending list at all, as serde writes it.
        let batch = handler_batch(d, &[ok.as_str(), third.as_str()], false);
        let done = run_handlers_here(&batch);
        assert_eq!(done.ran.len(), 2);
        let record = std::fs::read_to_string(&state).expect("record");
        assert_eq!(
            record,
            "{\n  \"version\": 1,\n  \"commit\": \"c0ffee\"\n}\n"
        );

        // A stop file (Ctrl-C) ends it after the running handler; the stop file goes too.
        std::fs::write(&lock, b"held").expect("lock");
        std::fs::write(batch.stop_path(), b"").expect("stop");
        let done = run_handlers_here(&handler_batch(d, &commands, false));
        assert!(done.stopped);
        assert_eq!(done.ran.len(), 1);
        assert!(!lock.exists() && !std::path::Path::new(&batch.stop_path()).exists());
        // Nothing but the record is left beside it (no temporary file).
        let mut names: Vec<String> = std::fs::read_dir(d)
            .expect("dir")
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["log", "state.json"]);
    }

    #[test]
    fn lock_and_read_is_one_script_that_reads_only_when_it_took_the_lock() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let lock = d.join("sub/lock.json").to_string_lossy().into_owned();
        let file = d.join("a.conf");
        std::fs::write(&file, b"alpha\n").expect("file");
        let paths = vec![file.to_string_lossy().into_owned()];
        let script = format!(
            "{}{}",
            lock_script(&lock, 4),
            read_command(&paths, &[], &ReadLimits::default()).expect("script")
        );
        let out = run_script(&script, b"mine");
        let rest = out.stdout.strip_prefix(b"CREATED\n").expect("created");
        let (files, _) = parse_read_output(&paths, rest, &ReadLimits::default()).expect("read");
        assert!(matches!(&files[0], RemoteFile::Present(f) if f.content == b"alpha\n"));
        assert_eq!(std::fs::read(&lock).expect("lock"), b"mine");
        // Held: the holder's bytes, nothing read.
        let out = run_script(&script, b"next");
        assert_eq!(out.stdout, b"HELD\nmine");
    }

    #[test]
    fn handler_answers_a_host_wrote_never_panic_the_parsers() {
        let valid: &[&[u8]] = &[
            b"H 0 0 4 2\nout\nerR 0 OK\nH 1 3 0 5\nfail\nEND\n",
            b"H 0 0 0 0\nR 0 FAIL\n",
            b"STOPPED\n",
            b"H 0 0 b3V0 ZXJy\nR 0 OK\nEND\n",
        ];
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for round in 0..20_000u32 {
            let mut bytes = valid[round as usize % valid.len()].to_vec();
            for _ in 0..(next() % 4) {
                let at = (next() as usize) % (bytes.len() + 1);
                match next() % 4 {
                    0 if at < bytes.len() => bytes[at] = next() as u8,
                    1 if at < bytes.len() => {
                        bytes.remove(at);
                    }
                    2 => bytes.insert(at, b"0123456789 \n-HRE9"[(next() % 17) as usize]),
                    _ => bytes.truncate(at),
                }
            }
            // Whatever the host wrote: an answer or an error, never a panic.
            let _ = parse_handlers_output(&bytes);
            let _ = super::super::winrm::parse_handlers_output(&bytes);
        }
        let huge = b"H 0 0 18446744073709551615 1\nx";
        assert!(parse_handlers_output(huge).is_err());
    }

    #[test]
    fn quoting() {
        assert_eq!(sh_quote("a b"), "'a b'");
        assert_eq!(sh_quote("it's"), "'it'\\''s'");
        assert_eq!(sh_quote(""), "''");
    }

    #[test]
    fn split_paths() {
        assert_eq!(split_path("/etc/x.conf"), ("/etc".into(), "x.conf".into()));
        assert_eq!(split_path("/x"), ("/".into(), "x".into()));
        assert_eq!(split_path("x"), (".".into(), "x".into()));
        assert_eq!(split_path("a/b/"), ("a".into(), "b".into()));
    }

    #[test]
    fn stat_lines() {
        let (size, st) = parse_stat_line("12 640 0 4 root UNKNOWN").unwrap();
        assert_eq!(size, 12);
        assert_eq!(st.mode, 0o640);
        assert_eq!((st.uid, st.gid), (0, 4));
        assert_eq!(st.owner.as_deref(), Some("root"));
        assert_eq!(st.group, None);
        assert!(parse_stat_line("x 640 0 0 a b").is_none());
    }

    #[test]
    fn read_output_is_split_by_size() {
        let paths: Vec<String> = ["/a", "/m", "/d", "/b", "/u"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let out = b"F\nM\nO a directory\nF\nU\n3 644 0 0 root root\n2 600 1 1 u g\nabcxy";
        let limits = ReadLimits::default();
        let (files, _) = parse_read_output(&paths, out, &limits).unwrap();
        assert_eq!(files[1], RemoteFile::Missing);
        assert_eq!(files[2], RemoteFile::Unusable("a directory".into()));
        let RemoteFile::Present(a) = &files[0] else {
            panic!()
        };
        assert_eq!(a.content, b"abc");
        let RemoteFile::Present(b) = &files[3] else {
            panic!()
        };
        assert_eq!((b.content.as_slice(), b.mode), (&b"xy"[..], 0o600));
        assert!(matches!(&files[4], RemoteFile::Unusable(t) if t.contains("cannot read")));
        assert!(parse_read_output(&paths, &out[..out.len() - 1], &limits).is_err());
    }

    /// Runs the read script on `paths` with this machine's `sh`, with `limits`.
    fn read_with_sh(paths: &[String], limits: &ReadLimits) -> Result<FilesRead, String> {
        let mut script = String::from("set --");
        for p in paths {
            script.push(' ');
            script.push_str(&sh_quote(p));
        }
        script.push_str(&read_script(limits));
        let out = run_script(&script, b"");
        if !out.status.success() {
            return Err(format!("{out:?}"));
        }
        parse_read_output(paths, &out.stdout, limits)
    }

    #[test]
    fn the_read_script_sends_no_byte_of_a_file_over_the_limit_and_stops_at_the_host_total() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        std::fs::write(d.join("small"), b"0123456789").expect("small");
        // Sparse: 10 GiB claimed, nothing on disk.
        let big = std::fs::File::create(d.join("big")).expect("big");
        big.set_len(10 << 30).expect("truncate");
        std::fs::write(d.join("other"), vec![b'x'; 30]).expect("other");
        let s = |n: &str| d.join(n).to_string_lossy().into_owned();
        let paths = vec![s("small"), s("big"), s("other")];
        let limits = ReadLimits {
            file: 64,
            host: 100,
        };
        let (files, _) = read_with_sh(&paths, &limits).expect("read");
        assert!(matches!(&files[0], RemoteFile::Present(f) if f.content == b"0123456789"));
        let RemoteFile::Unusable(why) = &files[1] else {
            panic!("{:?}", files[1])
        };
        assert!(why.contains("10 GiB (10737418240 bytes)"), "{why}");
        assert!(why.contains("--max-file-size"), "{why}");
        assert!(matches!(&files[2], RemoteFile::Present(f) if f.content.len() == 30));

        // 10 + 30 bytes over a host total of 32: the read fails, naming the limit.
        let tight = ReadLimits { file: 64, host: 32 };
        let err = read_with_sh(&paths, &tight).expect_err("over the host total");
        assert!(err.contains("add up to 40 bytes"), "{err}");
        assert!(err.contains("--max-host-read"), "{err}");
    }

    #[test]
    fn the_read_script_reports_links_and_never_reads_through_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        std::fs::write(d.join("secret"), b"not for the diff\n").expect("secret");
        std::os::unix::fs::symlink(d.join("secret"), d.join("app.conf")).expect("link");
        std::fs::create_dir(d.join("real")).expect("real");
        std::os::unix::fs::symlink(d.join("real"), d.join("linked")).expect("dir link");
        std::fs::write(d.join("real/x.conf"), b"x\n").expect("x");
        let s = |n: &str| d.join(n).to_string_lossy().into_owned();
        let paths = vec![
            s("app.conf"),
            s("linked/x.conf"),
            s("linked/sub/new.conf"),
            s("linked"),
        ];
        let (files, through) = read_with_sh(&paths, &ReadLimits::default()).expect("read");
        assert_eq!(files[0], RemoteFile::Symlink(s("secret")));
        assert!(matches!(&files[1], RemoteFile::Present(f) if f.content == b"x\n"));
        assert_eq!(files[2], RemoteFile::Missing);
        // A link to a folder is refused: a rename onto it would land inside the folder.
        assert_eq!(
            files[3],
            RemoteFile::Unusable("a symbolic link to a directory".into())
        );
        assert_eq!(through, [None, Some(s("linked")), Some(s("linked")), None]);
    }
}
