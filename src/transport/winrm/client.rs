//! A blocking WinRS client: one HTTP endpoint, one user, the shell operations.
//!
//! In: a [`ClientConfig`] (URL, Basic credentials, timeouts). Out: the WinRS operations as
//! methods — read the service config, create a shell, start a command, send stdin, receive
//! output until the command is done, signal, delete — each one POST of one envelope (see
//! [`super::wsman`]). Errors are [`ClientError`]s whose text names the host.
//!
//! Two channels carry the envelopes. Basic: a ureq agent, which keeps its HTTP connection
//! alive between requests and takes no proxy from the environment (hosts are on the
//! operator's network). NTLM: one [`Conn`] held for the run, because NTLM
//! authenticates the connection; the handshake is an empty POST answered 401 with the
//! server's challenge, then an empty POST with the AUTHENTICATE message, as pywinrm does.
//! Over http every envelope after it is sealed ([`ntlm::wrap_winrm`]) and every answer
//! unsealed and its signature checked, which is what a listener with
//! `AllowUnencrypted=false` (the Windows default) demands; over https TLS protects them.
//! If the server closes a connection that sat idle, a new one is authenticated and the
//! envelope sent again, once.
//!
//! The methods are blocking, so callers run them on tokio's blocking pool.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use std::sync::Mutex;

use base64::Engine;

use super::AuthKind;
use super::conn::{self, Conn, Endpoint, TlsSettings};
use super::ntlm;
use super::wsman::{self, AnswerError, Element, Fault, Header, Received, ShellOptions};

/// How to reach one WinRM endpoint.
#[derive(Clone)]
pub struct ClientConfig {
    /// e.g. `http://host:5985/wsman`.
    pub url: String,
    pub user: String,
    pub password: String,
    /// `user@host:port`, for messages.
    pub label: String,
    /// The server-side wait of one Receive (`wsman:OperationTimeout`).
    pub operation_timeout: Duration,
    /// How long a TCP connect may take.
    pub connect_timeout: Duration,
    /// How https certificates are checked.
    pub tls: TlsSettings,
    /// `ansible_winrm_transport`.
    pub auth: AuthKind,
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("url", &self.url)
            .field("user", &self.user)
            .field("label", &self.label)
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

/// Why a WinRS operation failed; the text names the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientError {
    /// The endpoint could not be reached (DNS, TCP, TLS, timeout).
    Connect(String),
    /// HTTP 401: the credentials were refused.
    Auth(String),
    /// The server answered with a SOAP fault.
    Fault {
        label: String,
        operation: &'static str,
        fault: Box<Fault>,
    },
    /// Anything else (an HTTP error without a fault, a malformed answer).
    Other(String),
}

impl ClientError {
    pub fn fault(&self) -> Option<&Fault> {
        match self {
            ClientError::Fault { fault, .. } => Some(fault.as_ref()),
            _ => None,
        }
    }
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Connect(m) | ClientError::Auth(m) | ClientError::Other(m) => {
                f.write_str(m)
            }
            ClientError::Fault {
                label,
                operation,
                fault,
            } => write!(f, "{label}: WinRM {operation} failed: {fault}"),
        }
    }
}

/// Most bytes an answer may have: a Receive carries at most one envelope of output, and
/// servers allow up to a few MiB of envelope.
const MAX_ANSWER: u64 = 64 << 20;
/// The most stderr kept of one command.
const MAX_STDERR: usize = 1 << 20;

/// How envelopes travel; see the module's text.
enum Channel {
    Basic {
        agent: ureq::Agent,
        authorization: String,
    },
    Ntlm(Box<Mutex<NtlmChannel>>),
}

/// The NTLM connection and its session (none over https: TLS protects the messages).
struct NtlmChannel {
    endpoint: Endpoint,
    tls: TlsSettings,
    open: Option<(Conn, Option<ntlm::Session>)>,
}

pub struct Client {
    channel: Channel,
    config: ClientConfig,
    session_id: String,
    /// The server's `MaxEnvelopeSizekb` in bytes (default until [`Client::read_config`]).
    max_envelope: AtomicUsize,
    /// WS-Man requests sent (each a round trip to the host).
    requests: AtomicU64,
}

impl Client {
    pub fn new(config: ClientConfig) -> Result<Client, ClientError> {
        let channel = match config.auth {
            AuthKind::Basic => basic_channel(&config)?,
            AuthKind::Ntlm => Channel::Ntlm(Box::new(Mutex::new(NtlmChannel {
                endpoint: Endpoint::parse(&config.url)
                    .map_err(|e| ClientError::Connect(format!("{}: {e}", config.label)))?,
                tls: config.tls.clone(),
                open: None,
            }))),
        };
        Ok(Client {
            channel,
            config,
            session_id: wsman::uuid(),
            max_envelope: AtomicUsize::new(wsman::DEFAULT_MAX_ENVELOPE),
            requests: AtomicU64::new(0),
        })
    }

    pub fn label(&self) -> &str {
        &self.config.label
    }

    /// The largest envelope the server accepts, in bytes.
    pub fn max_envelope(&self) -> usize {
        self.max_envelope.load(Ordering::SeqCst)
    }

    /// How many WS-Man requests this client has sent.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// POSTs one envelope and returns the answer's Body.
    fn post(
        &self,
        operation: &'static str,
        action: &str,
        resource_uri: &str,
        options: &[(&str, &str, bool)],
        selectors: &[(&str, &str)],
        body: &str,
    ) -> Result<Element, ClientError> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let message_id = wsman::uuid();
        let header = Header {
            to: &self.config.url,
            resource_uri,
            message_id: &message_id,
            session_id: &self.session_id,
            max_envelope: self.max_envelope(),
            operation_timeout_s: self.config.operation_timeout.as_secs().max(1),
        };
        let envelope = wsman::envelope(action, &header, options, selectors, body);
        let label = &self.config.label;
        let (status, text) = match &self.channel {
            Channel::Basic {
                agent,
                authorization,
            } => self.post_basic(agent, authorization, operation, &envelope)?,
            Channel::Ntlm(ch) => {
                let mut ch = ch
                    .lock()
                    .map_err(|_| ClientError::Other(format!("{label}: WinRM channel poisoned")))?;
                self.post_ntlm(&mut ch, operation, &envelope)?
            }
        };
        if text.trim().is_empty() {
            return Err(ClientError::Other(format!(
                "{label}: WinRM {operation}: HTTP {status} with an empty body"
            )));
        }
        match wsman::parse_answer(&text) {
            Ok(body) if (200..300).contains(&status) => Ok(body),
            Ok(_) => Err(ClientError::Other(format!(
                "{label}: WinRM {operation}: HTTP {status}"
            ))),
            Err(AnswerError::Fault(fault)) => Err(ClientError::Fault {
                label: label.clone(),
                operation,
                fault,
            }),
            Err(AnswerError::Malformed(m)) => Err(ClientError::Other(format!(
                "{label}: WinRM {operation}: HTTP {status}, {m}"
            ))),
        }
    }

    fn post_basic(
        &self,
        agent: &ureq::Agent,
        authorization: &str,
        operation: &'static str,
        envelope: &str,
    ) -> Result<(u16, String), ClientError> {
        let label = &self.config.label;
        let mut response = agent
            .post(&self.config.url)
            .header("Content-Type", "application/soap+xml;charset=UTF-8")
            .header("Authorization", authorization)
            .send(envelope)
            .map_err(|e| ClientError::Connect(format!("{label}: {operation}: {e}")))?;
        let status = response.status().as_u16();
        if status == 401 {
            return Err(ClientError::Auth(format!(
                "{label}: the server refused the credentials of `{}` (HTTP 401; with ansible_winrm_transport basic the listener needs Auth/Basic=true, and AllowUnencrypted=true for plain http; ntlm needs neither)",
                self.config.user
            )));
        }
        let text = response
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER)
            .read_to_string()
            .map_err(|e| {
                ClientError::Connect(format!("{label}: {operation}: reading the answer: {e}"))
            })?;
        Ok((status, text))
    }

    /// Sends one envelope over the NTLM connection, authenticating one first if there is
    /// none; when a connection that was already in use turns out closed, authenticates a new
    /// one and sends again, once.
    fn post_ntlm(
        &self,
        ch: &mut NtlmChannel,
        operation: &'static str,
        envelope: &str,
    ) -> Result<(u16, String), ClientError> {
        let label = &self.config.label;
        for attempt in 0..2 {
            let reused = ch.open.as_ref().is_some_and(|(c, _)| c.is_open());
            if !reused {
                ch.open = Some(self.ntlm_connect(&ch.endpoint, &ch.tls)?);
            }
            let Some((conn, session)) = ch.open.as_mut() else {
                continue;
            };
            let sent = match session {
                Some(s) => conn.post(
                    &[("Content-Type", ntlm::ENCRYPTED_CONTENT_TYPE)],
                    &ntlm::wrap_winrm(&mut s.send, envelope.as_bytes()),
                ),
                None => conn.post(
                    &[("Content-Type", "application/soap+xml;charset=UTF-8")],
                    envelope.as_bytes(),
                ),
            };
            let response = match sent {
                Ok(r) => r,
                Err(e) if reused && attempt == 0 && e.nothing_answered => {
                    ch.open = None;
                    continue;
                }
                Err(e) => {
                    ch.open = None;
                    return Err(ClientError::Connect(format!("{label}: {operation}: {e}")));
                }
            };
            if response.status == 401 {
                ch.open = None;
                return Err(ClientError::Auth(format!(
                    "{label}: {operation}: the server refused the NTLM session of `{}` (HTTP 401)",
                    self.config.user
                )));
            }
            let encrypted = response
                .header("Content-Type")
                .is_some_and(|t| t.starts_with("multipart/encrypted"));
            let body = match session {
                Some(s) if encrypted => ntlm::unwrap_winrm(&mut s.receive, &response.body)
                    .map_err(|e| {
                        ch.open = None;
                        ClientError::Other(format!("{label}: WinRM {operation}: {e}"))
                    })?,
                Some(_) if !response.body.is_empty() => {
                    return Err(ClientError::Other(format!(
                        "{label}: WinRM {operation}: HTTP {} answered in clear text on an encrypted session",
                        response.status
                    )));
                }
                _ => response.body,
            };
            return Ok((response.status, String::from_utf8_lossy(&body).into_owned()));
        }
        Err(ClientError::Connect(format!(
            "{label}: {operation}: the server closed the connection twice"
        )))
    }

    /// Opens a connection and authenticates it: NEGOTIATE, the server's CHALLENGE (with
    /// HTTP 401), AUTHENTICATE (answered 200). The session seals messages over http only.
    fn ntlm_connect(
        &self,
        endpoint: &Endpoint,
        tls: &TlsSettings,
    ) -> Result<(Conn, Option<ntlm::Session>), ClientError> {
        let label = &self.config.label;
        let connect_err = |e: String| ClientError::Connect(format!("{label}: {e}"));
        let mut conn = Conn::connect(
            endpoint,
            self.config.connect_timeout,
            self.config.operation_timeout + Duration::from_secs(30),
            tls,
        )
        .map_err(connect_err)?;
        let b64 = base64::engine::general_purpose::STANDARD;
        let negotiate = ntlm::negotiate_message();
        let header = format!("Negotiate {}", b64.encode(&negotiate));
        let r = conn
            .post(&[("Authorization", &header)], b"")
            .map_err(|e| connect_err(format!("NTLM negotiate: {e}")))?;
        let offered: Vec<&str> = r
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("WWW-Authenticate"))
            .map(|(_, v)| v.as_str())
            .collect();
        let token = offered.iter().find_map(|v| {
            v.strip_prefix("Negotiate ")
                .or_else(|| v.strip_prefix("NTLM "))
        });
        let Some(token) = token.filter(|_| r.status == 401) else {
            return Err(ClientError::Auth(format!(
                "{label}: the server did not answer the NTLM negotiation with a challenge (HTTP {}, offers: {}); is Auth/Negotiate enabled on the listener?",
                r.status,
                if offered.is_empty() {
                    "nothing".to_string()
                } else {
                    offered.join(", ")
                }
            )));
        };
        let challenge = b64.decode(token.trim()).map_err(|e| {
            ClientError::Auth(format!("{label}: the NTLM challenge is not base64: {e}"))
        })?;
        let (authenticate, session) = ntlm::authenticate(
            &negotiate,
            &challenge,
            &self.config.user,
            &self.config.password,
            conn.channel_binding().as_deref(),
            &ntlm::Randomness::new(),
        )
        .map_err(|e| ClientError::Auth(format!("{label}: {e}")))?;
        let header = format!("Negotiate {}", b64.encode(&authenticate));
        let r = conn
            .post(&[("Authorization", &header)], b"")
            .map_err(|e| connect_err(format!("NTLM authenticate: {e}")))?;
        match r.status {
            200..300 => Ok((conn, (!endpoint.https).then_some(session))),
            401 => Err(ClientError::Auth(format!(
                "{label}: the server refused the credentials of `{}` (NTLM, HTTP 401)",
                self.config.user
            ))),
            s => Err(ClientError::Other(format!(
                "{label}: NTLM authentication ended with HTTP {s}"
            ))),
        }
    }

    /// Reads the service's `MaxEnvelopeSizekb` and uses it from now on. A fault (a user who
    /// is not an administrator may not read the config) keeps the default 150 KiB, as pypsrp
    /// does; a connection or authentication failure is an error.
    pub fn read_config(&self) -> Result<usize, ClientError> {
        match self.post(
            "Get config",
            wsman::ACTION_GET,
            wsman::RESOURCE_CONFIG,
            &[],
            &[],
            "",
        ) {
            Ok(body) => {
                if let Some(size) = wsman::max_envelope_size(&body) {
                    self.max_envelope.store(size, Ordering::SeqCst);
                }
            }
            Err(ClientError::Fault { .. }) => {}
            Err(e) => return Err(e),
        }
        Ok(self.max_envelope())
    }

    pub fn create_shell(&self, options: &ShellOptions) -> Result<String, ClientError> {
        let opts = options.options();
        let opts: Vec<(&str, &str, bool)> =
            opts.iter().map(|(k, v, m)| (*k, v.as_str(), *m)).collect();
        let body = self.post(
            "Create shell",
            wsman::ACTION_CREATE,
            wsman::RESOURCE_CMD,
            &opts,
            &[],
            &options.body(),
        )?;
        wsman::shell_id(&body).map_err(|e| self.malformed("Create shell", e))
    }

    /// Starts `command` with `args` in the shell; returns its command id. `skip_cmd_shell`
    /// runs the program directly instead of through cmd.exe.
    pub fn command(
        &self,
        shell_id: &str,
        command: &str,
        args: &[&str],
        skip_cmd_shell: bool,
    ) -> Result<String, ClientError> {
        let skip = if skip_cmd_shell { "True" } else { "False" };
        let body = self.post(
            "Command",
            wsman::ACTION_COMMAND,
            wsman::RESOURCE_CMD,
            &[("WINRS_SKIP_CMD_SHELL", skip, false)],
            &[("ShellId", shell_id)],
            &wsman::command_body(command, args),
        )?;
        wsman::command_id(&body).map_err(|e| self.malformed("Command", e))
    }

    /// Sends one stdin chunk as is (it must fit one envelope; see [`Client::send_all`]).
    pub fn send(
        &self,
        shell_id: &str,
        command_id: &str,
        data: &[u8],
        end: bool,
    ) -> Result<(), ClientError> {
        self.post(
            "Send",
            wsman::ACTION_SEND,
            wsman::RESOURCE_CMD,
            &[],
            &[("ShellId", shell_id)],
            &wsman::send_body(command_id, data, end),
        )?;
        Ok(())
    }

    /// How many stdin bytes one Send carries, from the envelope size limit.
    pub fn send_chunk_size(&self, shell_id: &str, command_id: &str) -> usize {
        let header = Header {
            to: &self.config.url,
            resource_uri: wsman::RESOURCE_CMD,
            message_id: "00000000-0000-0000-0000-000000000000",
            session_id: &self.session_id,
            max_envelope: self.max_envelope(),
            operation_timeout_s: self.config.operation_timeout.as_secs().max(1),
        };
        let empty = wsman::envelope(
            wsman::ACTION_SEND,
            &header,
            &[],
            &[("ShellId", shell_id)],
            &wsman::send_body(command_id, b"", true),
        );
        wsman::send_chunk_size(self.max_envelope(), empty.len())
    }

    /// Sends all of `data` on stdin in chunks that fit the envelope limit, the last one with
    /// `End="True"`.
    pub fn send_all(
        &self,
        shell_id: &str,
        command_id: &str,
        data: &[u8],
    ) -> Result<(), ClientError> {
        let size = self.send_chunk_size(shell_id, command_id);
        if data.is_empty() {
            return self.send(shell_id, command_id, b"", true);
        }
        let chunks: Vec<&[u8]> = data.chunks(size).collect();
        let last = chunks.len() - 1;
        for (i, chunk) in chunks.into_iter().enumerate() {
            self.send(shell_id, command_id, chunk, i == last)?;
        }
        Ok(())
    }

    /// One Receive. A `w:TimedOut` fault comes back as an error like any fault; see
    /// [`Client::receive_all`] for the loop that retries it.
    pub fn receive(
        &self,
        shell_id: &str,
        command_id: Option<&str>,
    ) -> Result<Received, ClientError> {
        let body = self.post(
            "Receive",
            wsman::ACTION_RECEIVE,
            wsman::RESOURCE_CMD,
            &[("WSMAN_CMDSHELL_OPTION_KEEPALIVE", "True", false)],
            &[("ShellId", shell_id)],
            &wsman::receive_body(command_id),
        )?;
        wsman::received(&body).map_err(|e| self.malformed("Receive", e))
    }

    /// Receives until the command is done, retrying `w:TimedOut` (the command was quiet for
    /// an OperationTimeout). Gives up after `max_wait` in all.
    pub fn receive_all(
        &self,
        shell_id: &str,
        command_id: &str,
        max_wait: Duration,
        max_stdout: usize,
    ) -> Result<Received, ClientError> {
        let start = Instant::now();
        let mut all = Received::default();
        loop {
            match self.receive(shell_id, Some(command_id)) {
                Ok(r) => {
                    // A server is not trusted to stop: past the cap, the command fails.
                    if all.stdout.len().saturating_add(r.stdout.len()) > max_stdout {
                        return Err(ClientError::Other(format!(
                            "{}: the command sent more than {} of output; deploy stopped \
                             reading it",
                            self.config.label,
                            crate::transport::size_text(max_stdout as u64)
                        )));
                    }
                    all.stdout.extend_from_slice(&r.stdout);
                    // stderr is for messages: kept up to a cap, the rest dropped.
                    let room = MAX_STDERR.saturating_sub(all.stderr.len());
                    all.stderr
                        .extend_from_slice(&r.stderr[..room.min(r.stderr.len())]);
                    if r.done {
                        all.done = true;
                        all.exit_code = r.exit_code;
                        return Ok(all);
                    }
                }
                Err(e) if e.fault().is_some_and(Fault::is_timeout) => {}
                Err(e) => return Err(e),
            }
            if start.elapsed() > max_wait {
                return Err(ClientError::Other(format!(
                    "{}: the command did not finish within {} s",
                    self.config.label,
                    max_wait.as_secs()
                )));
            }
        }
    }

    pub fn signal(&self, shell_id: &str, command_id: &str, code: &str) -> Result<(), ClientError> {
        self.post(
            "Signal",
            wsman::ACTION_SIGNAL,
            wsman::RESOURCE_CMD,
            &[],
            &[("ShellId", shell_id)],
            &wsman::signal_body(command_id, code),
        )?;
        Ok(())
    }

    pub fn delete_shell(&self, shell_id: &str) -> Result<(), ClientError> {
        self.post(
            "Delete shell",
            wsman::ACTION_DELETE,
            wsman::RESOURCE_CMD,
            &[],
            &[("ShellId", shell_id)],
            "",
        )?;
        Ok(())
    }

    /// Runs `command args` in the shell with `stdin` (closed after; none sent when empty),
    /// waits for it, then signals it terminated (which frees it on the server).
    pub fn run(
        &self,
        shell_id: &str,
        command: &str,
        args: &[&str],
        stdin: &[u8],
        max_wait: Duration,
        max_stdout: usize,
    ) -> Result<Received, ClientError> {
        let command_id = self.command(shell_id, command, args, false)?;
        let result = (|| {
            if !stdin.is_empty() {
                self.send_all(shell_id, &command_id, stdin)?;
            }
            self.receive_all(shell_id, &command_id, max_wait, max_stdout)
        })();
        // Best effort: the command has ended or failed; the answer changes nothing.
        let _ = self.signal(shell_id, &command_id, wsman::SIGNAL_TERMINATE);
        result
    }

    fn malformed(&self, operation: &str, e: AnswerError) -> ClientError {
        match e {
            AnswerError::Fault(fault) => ClientError::Fault {
                label: self.config.label.clone(),
                operation: "answer",
                fault,
            },
            AnswerError::Malformed(m) => {
                ClientError::Other(format!("{}: WinRM {operation}: {m}", self.config.label))
            }
        }
    }
}

/// Basic auth through a ureq agent.
fn basic_channel(config: &ClientConfig) -> Result<Channel, ClientError> {
    let mut builder = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .timeout_connect(Some(config.connect_timeout))
        // A Receive may legitimately wait the whole OperationTimeout before answering.
        .timeout_recv_response(Some(config.operation_timeout + Duration::from_secs(30)))
        .timeout_send_body(Some(Duration::from_secs(120)))
        .timeout_recv_body(Some(Duration::from_secs(120)));
    if config.url.starts_with("https://") {
        builder = tls(builder, config)?;
    }
    let credentials = format!("{}:{}", config.user, config.password);
    Ok(Channel::Basic {
        agent: builder.build().into(),
        authorization: format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(credentials.as_bytes())
        ),
    })
}

/// https through rustls: Mozilla's roots, or only the certificates of the CA file
/// (`ansible_winrm_ca_trust_path`), or no check at all for
/// `ansible_winrm_server_cert_validation: ignore` (the self-signed certificate a WinRM
/// https listener usually has).
fn tls(
    builder: ureq::config::ConfigBuilder<ureq::typestate::AgentScope>,
    config: &ClientConfig,
) -> Result<ureq::config::ConfigBuilder<ureq::typestate::AgentScope>, ClientError> {
    use ureq::tls::{Certificate, RootCerts, TlsConfig, TlsProvider};
    let mut tls = TlsConfig::builder()
        .provider(TlsProvider::Rustls)
        .disable_verification(config.tls.ignore_cert);
    if let Some(path) = &config.tls.ca_file {
        let ders = conn::read_ca_file(path)
            .map_err(|e| ClientError::Connect(format!("{}: {e}", config.label)))?;
        let certs: Vec<Certificate<'static>> = ders
            .iter()
            .map(|d| Certificate::from_der(d).to_owned())
            .collect();
        tls = tls.root_certs(RootCerts::new_with_certs(&certs));
    }
    Ok(builder.tls_config(tls.build()))
}
